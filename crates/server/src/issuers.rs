//! From an issuer's configuration to what the verifiers need: the bearer-token verifier at
//! start-up and the sign-in relying party of the sessions both build from it.

use std::time::Duration;

use countersign_config::IssuerConfig;
use countersign_identity::IssuerSettings;

/// Turns an issuer's configuration into what the verifier needs.
pub fn issuer_settings(config: &IssuerConfig) -> anyhow::Result<IssuerSettings> {
    let mut s = IssuerSettings::new(
        &config.name,
        &config.url,
        config.kind,
        config.audiences.clone(),
    );
    s.algorithms = config
        .algorithms
        .iter()
        .map(|a| {
            a.parse()
                .map_err(|_| anyhow::anyhow!("issuer {}: unsupported algorithm {a}", config.name))
        })
        .collect::<anyhow::Result<_>>()?;
    s.subject_claim = config.subject_claim.clone();
    s.groups_claim = config.groups_claim.clone();
    s.actor_claim = config.actor_claim.clone();
    s.actor_issuer = config.actor_issuer.clone();
    if let Some(types) = &config.token_types {
        s.token_types = types.clone();
    }
    s.jwks_ttl = config.jwks_ttl.to_std().unwrap_or(Duration::from_secs(600));
    Ok(s)
}
