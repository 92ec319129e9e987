//! What the provider is told at start: its issuer, the API audience and the registered clients.

use std::fmt;

use crate::users::{DemoWorkload, demo_workload};

/// The public client of the `countersign` CLI (loopback redirect, PKCE, no secret).
pub const CLI_CLIENT_ID: &str = "countersign-cli";
/// The redirect URI registered for the CLI; being loopback `http`, any port is accepted.
pub const CLI_REDIRECT_URI: &str = "http://127.0.0.1/callback";
/// The confidential client of the countersign web UI.
pub const WEB_CLIENT_ID: &str = "countersign-web";
/// The secret of [`WEB_CLIENT_ID`]; published on purpose, this is a sandbox.
pub const WEB_CLIENT_SECRET: &str = "dev-web-secret";
/// The client of the demo CI workload (client credentials only).
pub const CI_CLIENT_ID: &str = "demo-ci";
/// The secret of [`CI_CLIENT_ID`]; published on purpose, this is a sandbox.
pub const CI_CLIENT_SECRET: &str = "demo-ci-secret";

/// The provider's settings.
#[derive(Debug, Clone)]
pub struct DevIdpConfig {
    /// The issuer identifier, exactly as it appears in `iss` and in discovery, without a trailing
    /// slash, e.g. `http://127.0.0.1:8080/dev-idp`. Endpoint URLs are built from it, so it must
    /// be where the router is reachable.
    pub issuer: String,
    /// The `aud` of every access token, e.g. `countersign`.
    pub api_audience: String,
    /// The registered clients.
    pub clients: Vec<DevClient>,
}

impl DevIdpConfig {
    /// The defaults: the CLI, web and CI clients. The web client has no redirect URI yet, since
    /// only the caller knows its callback path: see [`DevIdpConfig::with_web_redirect_uris`].
    pub fn new(issuer: impl Into<String>, api_audience: impl Into<String>) -> Self {
        let issuer = issuer.into().trim_end_matches('/').to_owned();
        Self {
            issuer,
            api_audience: api_audience.into(),
            clients: vec![
                DevClient::public(CLI_CLIENT_ID, vec![CLI_REDIRECT_URI.to_owned()]),
                DevClient::confidential(WEB_CLIENT_ID, WEB_CLIENT_SECRET, Vec::new()),
                DevClient::workload(CI_CLIENT_ID, CI_CLIENT_SECRET, demo_workload()),
            ],
        }
    }

    /// Sets the redirect URIs of the `countersign-web` client, e.g.
    /// `http://127.0.0.1:8080/auth/callback`.
    pub fn with_web_redirect_uris(self, uris: Vec<String>) -> Self {
        self.with_client(WEB_CLIENT_ID, |client| client.redirect_uris = uris)
    }

    /// Adds one redirect URI to the `countersign-web` client.
    pub fn with_web_redirect_uri(self, uri: impl Into<String>) -> Self {
        self.with_client(WEB_CLIENT_ID, |client| {
            client.redirect_uris.push(uri.into())
        })
    }

    /// Adds one post-logout redirect URI to the `countersign-web` client.
    pub fn with_web_post_logout_redirect_uri(self, uri: impl Into<String>) -> Self {
        self.with_client(WEB_CLIENT_ID, |client| {
            client.post_logout_redirect_uris.push(uri.into())
        })
    }

    /// Sets where `countersign-web` may send the browser after logout, e.g.
    /// `http://127.0.0.1:8080/`.
    pub fn with_web_post_logout_redirect_uris(self, uris: Vec<String>) -> Self {
        self.with_client(WEB_CLIENT_ID, |client| {
            client.post_logout_redirect_uris = uris
        })
    }

    fn with_client(mut self, client_id: &str, change: impl FnOnce(&mut DevClient)) -> Self {
        if let Some(client) = self.clients.iter_mut().find(|c| c.client_id == client_id) {
            change(client);
        }
        self
    }

    pub(crate) fn client(&self, client_id: &str) -> Option<&DevClient> {
        self.clients
            .iter()
            .find(|client| client.client_id == client_id)
    }
}

/// A registered client.
#[derive(Clone)]
pub struct DevClient {
    /// The `client_id`.
    pub client_id: String,
    /// `None` for a public client (it authenticates with PKCE alone); otherwise the secret for
    /// `client_secret_basic` or `client_secret_post`.
    pub secret: Option<String>,
    /// Exact-match redirect URIs; for a loopback `http` URI (`127.0.0.1`, `[::1]`, `localhost`) any
    /// port is accepted, as RFC 8252 §7.3 asks.
    pub redirect_uris: Vec<String>,
    /// Where `/logout` may send the browser back to, matched like `redirect_uris`.
    pub post_logout_redirect_uris: Vec<String>,
    /// `Some` for a workload client: it may use `client_credentials`, and its access token
    /// describes this workload. A client without one cannot use that grant.
    pub workload: Option<&'static DemoWorkload>,
}

impl DevClient {
    /// A public client: authorization code + PKCE, no secret.
    pub fn public(client_id: impl Into<String>, redirect_uris: Vec<String>) -> Self {
        Self {
            client_id: client_id.into(),
            secret: None,
            redirect_uris,
            post_logout_redirect_uris: Vec::new(),
            workload: None,
        }
    }

    /// A confidential client for the authorization-code flow.
    pub fn confidential(
        client_id: impl Into<String>,
        secret: impl Into<String>,
        redirect_uris: Vec<String>,
    ) -> Self {
        Self {
            secret: Some(secret.into()),
            ..Self::public(client_id, redirect_uris)
        }
    }

    /// A confidential client that gets client-credentials tokens for `workload`.
    pub fn workload(
        client_id: impl Into<String>,
        secret: impl Into<String>,
        workload: &'static DemoWorkload,
    ) -> Self {
        Self {
            workload: Some(workload),
            ..Self::confidential(client_id, secret, Vec::new())
        }
    }
}

// The secret stays out of logs even though the demo secrets are public: a copied configuration
// may not keep them demo secrets.
impl fmt::Debug for DevClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevClient")
            .field("client_id", &self.client_id)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("redirect_uris", &self.redirect_uris)
            .field("post_logout_redirect_uris", &self.post_logout_redirect_uris)
            .field("workload", &self.workload.map(|w| w.sub))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_trims_a_trailing_slash_and_registers_the_default_clients() {
        let config = DevIdpConfig::new("http://127.0.0.1:8080/dev-idp/", "countersign")
            .with_web_redirect_uris(vec!["http://127.0.0.1:8080/auth/callback".into()]);
        assert_eq!(config.issuer, "http://127.0.0.1:8080/dev-idp");
        assert!(
            config
                .client(CLI_CLIENT_ID)
                .is_some_and(|c| c.secret.is_none())
        );
        assert_eq!(
            config
                .client(WEB_CLIENT_ID)
                .map(|c| c.redirect_uris.clone()),
            Some(vec!["http://127.0.0.1:8080/auth/callback".to_owned()])
        );
        let config = config.with_web_redirect_uri("http://localhost:8080/auth/callback");
        assert_eq!(
            config.client(WEB_CLIENT_ID).map(|c| c.redirect_uris.len()),
            Some(2)
        );
        assert!(
            config
                .client(CI_CLIENT_ID)
                .is_some_and(|c| c.workload.is_some())
        );
    }

    #[test]
    fn debug_redacts_the_secret() {
        let client = DevClient::confidential("web", "hunter2", Vec::new());
        assert!(!format!("{client:?}").contains("hunter2"));
    }
}
