//! What the operator tells us about one trusted issuer of bearer tokens, with the defaults and
//! the checks that refuse unsafe settings before any token is seen.

use std::net::IpAddr;
use std::time::Duration;

use countersign_core::PrincipalKind;
use jsonwebtoken::Algorithm;
use url::{Host, Url};

/// The default lifetime of a cached key set.
pub const DEFAULT_JWKS_TTL: Duration = Duration::from_secs(600);

/// Settings for one issuer whose bearer tokens we accept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerSettings {
    /// The configured name; becomes `Identity.issuer` of every principal it vouches for.
    pub name: String,
    /// The issuer URL. Discovery is read from `{url}/.well-known/openid-configuration` and its
    /// `issuer` must equal this string byte for byte, as must every token's `iss`.
    pub url: String,
    /// Whether this issuer's principals are people or workloads.
    pub kind: PrincipalKind,
    /// The token's `aud` must contain one of these.
    pub audiences: Vec<String>,
    /// The signature algorithms accepted from this issuer. HMAC is never allowed: the keys come
    /// from a public document, so anyone could compute an HMAC with them.
    pub algorithms: Vec<Algorithm>,
    /// The claim that holds the stable subject (`sub`; `oid` for Entra, `uid` for Okta).
    pub subject_claim: String,
    /// A path to the groups, dotted for nested objects (`groups`, `realm_access.roles`). A
    /// top-level claim whose name contains dots (Auth0's `https://example.com/roles`) is found
    /// too, because the whole string is tried as a claim name first.
    pub groups_claim: Option<String>,
    /// For workloads: the claim naming the person behind the run (GitHub `actor_id`).
    pub actor_claim: Option<String>,
    /// The configured name of the issuer whose subjects `actor_claim` holds; this issuer when
    /// unset.
    pub actor_issuer: Option<String>,
    /// Accepted header `typ` values. Compared case-insensitively with any `application/`
    /// prefix dropped; a token without `typ` counts as `jwt`.
    pub token_types: Vec<String>,
    /// How long a fetched key set is used before it is fetched again.
    pub jwks_ttl: Duration,
}

impl IssuerSettings {
    /// Settings with the defaults: RS256, ES256 and EdDSA; subject from `sub`; no groups,
    /// no actor; `typ` `at+jwt` for people (an ID token must not pass as an access token) and
    /// `at+jwt` or `jwt` for workloads (CI providers issue plain JWTs); key sets kept 10 min.
    pub fn new(
        name: impl Into<String>,
        url: impl Into<String>,
        kind: PrincipalKind,
        audiences: Vec<String>,
    ) -> Self {
        let token_types = match kind {
            PrincipalKind::Human => vec!["at+jwt".to_owned()],
            PrincipalKind::Workload => vec!["at+jwt".to_owned(), "jwt".to_owned()],
        };
        Self {
            name: name.into(),
            url: url.into(),
            kind,
            audiences,
            algorithms: vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA],
            subject_claim: "sub".to_owned(),
            groups_claim: None,
            actor_claim: None,
            actor_issuer: None,
            token_types,
            jwks_ttl: DEFAULT_JWKS_TTL,
        }
    }

    /// Refuses settings that would make verification unsafe or impossible. The message names
    /// the issuer and the offending setting.
    pub fn validate(&self) -> Result<(), String> {
        let name = &self.name;
        if name.trim().is_empty() {
            return Err("an issuer has an empty name".to_owned());
        }
        check_url(&self.url).map_err(|e| format!("issuer {name}: url: {e}"))?;
        if self.audiences.is_empty() || self.audiences.iter().any(|a| a.is_empty()) {
            return Err(format!(
                "issuer {name}: audiences must list at least one non-empty audience"
            ));
        }
        if self.algorithms.is_empty() {
            return Err(format!(
                "issuer {name}: algorithms must list at least one algorithm"
            ));
        }
        if let Some(alg) = self.algorithms.iter().find(|a| is_hmac(**a)) {
            return Err(format!(
                "issuer {name}: algorithm {alg:?} is an hmac algorithm, which cannot be used with public keys"
            ));
        }
        if self.subject_claim.is_empty() {
            return Err(format!("issuer {name}: subject_claim is empty"));
        }
        if self.groups_claim.as_deref().is_some_and(str::is_empty) {
            return Err(format!("issuer {name}: groups_claim is empty"));
        }
        if self.actor_claim.as_deref().is_some_and(str::is_empty) {
            return Err(format!("issuer {name}: actor_claim is empty"));
        }
        if self.token_types.is_empty() || self.token_types.iter().any(|t| t.is_empty()) {
            return Err(format!(
                "issuer {name}: token_types must list at least one non-empty type"
            ));
        }
        if self.jwks_ttl.is_zero() {
            return Err(format!("issuer {name}: jwks_ttl must be longer than zero"));
        }
        Ok(())
    }
}

/// HMAC algorithms: never acceptable for keys published in a JWKS.
pub(crate) fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// An issuer URL must be https, or plain http on a loopback host (the dev sandbox and tests),
/// and carry no query or fragment (OIDC Discovery §3).
fn check_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("\"{raw}\" is not a url ({e})"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("\"{raw}\" must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("\"{raw}\" must not carry credentials"));
    }
    check_fetchable(&url).map_err(|e| format!("\"{raw}\" {e}"))?;
    Ok(url)
}

/// Whether we may fetch from this URL: https anywhere, http only to loopback.
pub(crate) fn check_fetchable(url: &Url) -> Result<(), &'static str> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" => Err("must use https (plain http is allowed only for loopback hosts)"),
        _ => Err("must use https"),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// The form in which `typ` values are compared: lowercase, without `application/`.
pub(crate) fn normalize_type(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_owned(),
        None => lower,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> IssuerSettings {
        IssuerSettings::new("idp", url, PrincipalKind::Human, vec!["api".into()])
    }

    #[test]
    fn urls() {
        assert!(settings("https://idp.example.com").validate().is_ok());
        assert!(
            settings("http://127.0.0.1:8080/realms/x")
                .validate()
                .is_ok()
        );
        assert!(settings("http://127.9.9.9").validate().is_ok());
        assert!(settings("http://[::1]:9000").validate().is_ok());
        assert!(settings("http://localhost:9000").validate().is_ok());
        assert!(settings("http://idp.example.com").validate().is_err());
        assert!(settings("http://10.0.0.1").validate().is_err());
        assert!(settings("http://localhost.example.com").validate().is_err());
        assert!(settings("ftp://idp.example.com").validate().is_err());
        assert!(settings("https://idp.example.com?x=1").validate().is_err());
        assert!(settings("https://idp.example.com#x").validate().is_err());
        assert!(settings("idp.example.com").validate().is_err());
    }

    #[test]
    fn refuses_hmac_and_empty_lists() {
        let mut s = settings("https://idp.example.com");
        s.algorithms = vec![Algorithm::RS256, Algorithm::HS256];
        let err = s.validate().unwrap_err();
        assert!(err.contains("hmac"), "{err}");
        s.algorithms.clear();
        assert!(s.validate().is_err());
        let mut s = settings("https://idp.example.com");
        s.audiences.clear();
        assert!(s.validate().is_err());
        let mut s = settings("https://idp.example.com");
        s.token_types.clear();
        assert!(s.validate().is_err());
    }

    #[test]
    fn types_normalize() {
        assert_eq!(normalize_type("application/AT+JWT"), "at+jwt");
        assert_eq!(normalize_type("JWT"), "jwt");
    }
}
