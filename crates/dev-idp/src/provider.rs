//! Start-up: checks the configuration, generates the key and wires the routes.

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use url::Url;

use crate::config::DevIdpConfig;
use crate::keys::SigningKey;
use crate::store::Store;
use crate::tokens::Minter;
use crate::{authorize, discovery, logout, redirect, token, userinfo};

/// Why the provider cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DevIdpError {
    /// The issuer is not a usable issuer identifier.
    #[error("dev provider issuer `{issuer}` {problem}")]
    InvalidIssuer {
        /// The configured issuer.
        issuer: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The API audience is empty.
    #[error("dev provider api audience is empty")]
    EmptyAudience,
    /// Two clients share a `client_id`.
    #[error("dev provider client `{0}` is registered twice")]
    DuplicateClient(String),
    /// A registered redirect URI cannot be redirected to.
    #[error("redirect uri `{uri}` of dev provider client `{client_id}` {problem}")]
    InvalidRedirectUri {
        /// The client it is registered for.
        client_id: String,
        /// The URI.
        uri: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The signing key could not be generated.
    #[error("dev provider signing key: {0}")]
    Key(String),
}

/// The routes of the provider, relative to where the caller mounts them; `config.issuer` must
/// be the URL of that mount point, e.g. `Router::new().nest("/dev-idp", router(config))` for
/// the issuer `http://127.0.0.1:8080/dev-idp`.
///
/// # Panics
///
/// When the configuration is invalid or no key can be generated; [`try_router`] returns those
/// as errors instead.
pub fn router(config: DevIdpConfig) -> Router {
    try_router(config).unwrap_or_else(|error| panic!("{error}"))
}

/// [`router`], with configuration problems returned instead of panicking.
pub fn try_router(config: DevIdpConfig) -> Result<Router, DevIdpError> {
    check(&config)?;
    let provider = Provider {
        key: SigningKey::generate().map_err(DevIdpError::Key)?,
        store: Store::default(),
        config,
    };
    tracing::debug!(issuer = %provider.config.issuer, "dev provider ready");
    Ok(Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(discovery::metadata),
        )
        .route("/jwks.json", get(discovery::jwks))
        .route(
            "/authorize",
            get(authorize::show_picker).post(authorize::choose_user),
        )
        .route("/token", post(token::token))
        .route(
            "/userinfo",
            get(userinfo::userinfo).post(userinfo::userinfo),
        )
        .route(
            "/logout",
            get(logout::logout_query).post(logout::logout_form),
        )
        .with_state(Arc::new(provider)))
}

fn check(config: &DevIdpConfig) -> Result<(), DevIdpError> {
    let invalid_issuer = |problem| DevIdpError::InvalidIssuer {
        issuer: config.issuer.clone(),
        problem,
    };
    let issuer =
        Url::parse(&config.issuer).map_err(|_| invalid_issuer("is not an absolute url"))?;
    // OpenID Connect Discovery §2: an https (here also http, for loopback) URL without query or
    // fragment; a trailing slash would make `iss` differ from what verifiers are configured with.
    if !matches!(issuer.scheme(), "http" | "https") {
        return Err(invalid_issuer("is not an http or https url"));
    }
    if issuer.query().is_some() || issuer.fragment().is_some() {
        return Err(invalid_issuer("has a query or fragment"));
    }
    if config.issuer.ends_with('/') {
        return Err(invalid_issuer("ends with a slash"));
    }
    if config.api_audience.is_empty() {
        return Err(DevIdpError::EmptyAudience);
    }
    for (i, client) in config.clients.iter().enumerate() {
        if config.clients[..i]
            .iter()
            .any(|other| other.client_id == client.client_id)
        {
            return Err(DevIdpError::DuplicateClient(client.client_id.clone()));
        }
        for uri in client
            .redirect_uris
            .iter()
            .chain(&client.post_logout_redirect_uris)
        {
            if let Some(problem) = redirect::registration_problem(uri) {
                return Err(DevIdpError::InvalidRedirectUri {
                    client_id: client.client_id.clone(),
                    uri: uri.clone(),
                    problem,
                });
            }
        }
    }
    Ok(())
}

/// The state every handler shares.
#[derive(Debug)]
pub(crate) struct Provider {
    pub(crate) config: DevIdpConfig,
    pub(crate) key: SigningKey,
    pub(crate) store: Store,
}

pub(crate) type Shared = Arc<Provider>;

impl Provider {
    pub(crate) fn minter(&self) -> Minter<'_> {
        Minter {
            key: &self.key,
            issuer: &self.config.issuer,
            api_audience: &self.config.api_audience,
        }
    }

    /// The absolute URL of one of our endpoints, e.g. `endpoint("/token")`.
    pub(crate) fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.config.issuer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DevClient;

    #[test]
    fn bad_configurations_are_named() {
        let bad_issuer = DevIdpConfig {
            issuer: "127.0.0.1:8080".into(),
            ..ok()
        };
        assert!(matches!(
            check(&bad_issuer),
            Err(DevIdpError::InvalidIssuer { .. })
        ));

        let mut slash = ok();
        slash.issuer.push('/');
        assert!(matches!(
            check(&slash),
            Err(DevIdpError::InvalidIssuer { .. })
        ));

        let mut twice = ok();
        twice
            .clients
            .push(DevClient::public("countersign-cli", Vec::new()));
        let error = check(&twice).expect_err("duplicate client");
        assert_eq!(
            error.to_string(),
            "dev provider client `countersign-cli` is registered twice"
        );

        let fragment = ok().with_web_redirect_uris(vec!["http://127.0.0.1/cb#x".into()]);
        assert!(matches!(
            check(&fragment),
            Err(DevIdpError::InvalidRedirectUri { .. })
        ));
    }

    #[test]
    fn the_defaults_are_valid() {
        assert!(check(&ok()).is_ok());
        assert!(try_router(ok()).is_ok());
    }

    fn ok() -> DevIdpConfig {
        DevIdpConfig::new("http://127.0.0.1:8080/dev-idp", "countersign")
    }
}
