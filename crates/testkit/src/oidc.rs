//! A real OpenID provider for tests: panva's `oidc-provider` run by Node.js as a child process.
//!
//! What it knows (users, clients, claims, keys) is set in `oidc-provider/server.js`; the JSON given
//! to [`OidcProvider::start_with`] overrides parts of it. Every start is a fresh provider with fresh
//! signing keys, listening on an ephemeral port of 127.0.0.1.

use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::child::{OutputLog, drain};
use crate::login::{self, Tokens};
use crate::node;

/// How long a start may take once the packages are installed. Alone it takes well under a
/// second, but the full suite starts providers from every test binary at once on two cores,
/// and one start was once seen to take over a minute there.
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// The defaults of `server.js`, repeated here for the requests this side builds.
const DEFAULT_AUDIENCE: &str = "api://countersign";
const DEFAULT_RESOURCE_SCOPE: &str = "countersign";
const DEFAULT_REDIRECT_URI: &str = "http://127.0.0.1/callback";

/// A running `oidc-provider`; the process is killed when this value is dropped.
///
/// Users (`sub` = user name; `email` = `<user>@example.com`, verified; `name`,
/// `preferred_username`, `groups`, `team`): `alice` (dev / payments), `bob` (sre / platform),
/// `carol` (security / security), `dave` (sre + security / platform), `erin` (admin / it),
/// `alice2` (sre / payments, e-mail `alice@example.com`), `frank` (sre / platform).
///
/// Clients: `countersign-web` (secret `web-secret`, `client_secret_basic`, code + refresh),
/// `countersign-cli` (public, native, loopback redirect on any port, code + refresh + device code),
/// `ci-workload` (secret `ci-secret`, client credentials only; its tokens carry GitHub-Actions-like
/// claims and `sub` = `repo:acme/app:ref:refs/heads/main`).
///
/// Configuration keys (all optional): `audience`, `extra_audiences`, `resource_scope`,
/// `access_token_alg`, `access_token_ttl`, `default_resource` (bool), `redirect_uris`,
/// `post_logout_redirect_uris`, `backchannel_logout_uri` (of `countersign-web`), `web_client` and
/// `cli_client` (metadata merged into those clients), `clients` (extra clients, replacing one with
/// the same `client_id`), `users` (`{"name": {"groups": [..], "team": .., "email": ..,
/// "extra_claims": {..}}}`, `null` removes one), `workloads` (`{"client_id": {claims, "sub": ..}}`),
/// `ttl` (oidc-provider's TTLs), `jwks` (private keys to use instead of fresh ones), `port`.
#[derive(Debug)]
pub struct OidcProvider {
    issuer: String,
    audience: String,
    resource_scope: String,
    web_redirect_uri: String,
    users: Vec<String>,
    child: Child,
    output: OutputLog,
}

/// The ready line `server.js` prints.
#[derive(Debug, Deserialize)]
struct Ready {
    issuer: String,
    users: Vec<String>,
}

impl OidcProvider {
    /// Starts a provider with the default configuration.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(json!({})).await
    }

    /// Starts a provider with `config` (a JSON object) overriding parts of the default
    /// configuration; the keys are listed on [`OidcProvider`].
    pub async fn start_with(config: Value) -> anyhow::Result<Self> {
        tokio::task::spawn_blocking(move || Self::start_blocking(&config))
            .await
            .context("the provider start was cancelled")?
    }

    /// One provider with the default configuration for the whole test process, started on first
    /// use. It exits with the test process (it watches its stdin).
    pub async fn shared() -> anyhow::Result<&'static Self> {
        static SHARED: OnceCell<OidcProvider> = OnceCell::const_new();
        SHARED.get_or_try_init(Self::start).await
    }

    fn start_blocking(config: &Value) -> anyhow::Result<Self> {
        let Value::Object(fields) = config else {
            bail!("the provider configuration must be a JSON object, not {config}");
        };
        let text = |key: &str| fields.get(key).and_then(Value::as_str).map(str::to_owned);
        let audience = text("audience").unwrap_or_else(|| DEFAULT_AUDIENCE.to_owned());
        let resource_scope =
            text("resource_scope").unwrap_or_else(|| DEFAULT_RESOURCE_SCOPE.to_owned());
        let web_redirect_uri = fields
            .get("redirect_uris")
            .and_then(|uris| uris.get(0))
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_REDIRECT_URI)
            .to_owned();

        let dir = node::provider_dir();
        node::ensure_installed(&dir)?;

        let mut child = Command::new("node")
            .arg("server.js")
            .current_dir(&dir)
            .env("TESTKIT_OIDC_CONFIG", config.to_string())
            .env_remove("TESTKIT_OIDC_IGNORE_STDIN")
            // The provider exits when this pipe closes, i.e. when the test process is gone.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start node server.js in {}", dir.display()))?;

        let output = OutputLog::default();
        let (ready_tx, ready_rx) = mpsc::channel();
        let stdout = child
            .stdout
            .take()
            .context("the provider has no stdout pipe")?;
        let stderr = child
            .stderr
            .take()
            .context("the provider has no stderr pipe")?;
        drain(stdout, output.clone(), Some(ready_tx));
        let stderr_reader = drain(stderr, output.clone(), None);

        let mut provider = OidcProvider {
            issuer: String::new(),
            audience,
            resource_scope,
            web_redirect_uri,
            users: Vec::new(),
            child,
            output,
        };
        match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => {
                let ready: Ready = serde_json::from_str(&line).map_err(|err| {
                    anyhow!(
                        "the provider's ready line is not the expected JSON ({err}): {line}\n{}",
                        provider.output.contents()
                    )
                })?;
                provider.issuer = ready.issuer;
                provider.users = ready.users;
                Ok(provider)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // stdout closed before the ready line: the process ended; wait for its stderr.
                let status = provider.child.wait().ok();
                let _ = stderr_reader.join();
                bail!(
                    "the OpenID provider exited before it was ready ({}):\n{}",
                    status.map_or_else(|| "unknown status".to_owned(), |s| s.to_string()),
                    provider.output.contents()
                )
            }
            Err(mpsc::RecvTimeoutError::Timeout) => bail!(
                "the OpenID provider was not ready within {START_TIMEOUT:?}:\n{}",
                provider.output.contents()
            ),
        }
    }

    /// The issuer URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The API audience (resource indicator) JWT access tokens are issued for.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The user names the provider knows (the defaults plus the configured ones).
    pub fn users(&self) -> &[String] {
        &self.users
    }

    /// What the provider wrote to stdout and stderr so far (the newest 64 KiB).
    pub fn output(&self) -> String {
        self.output.contents()
    }

    /// Logs `user` in through the real browser flow (authorization code + PKCE S256 + state +
    /// nonce, driving the devInteractions login and consent forms with a cookie-keeping reqwest
    /// client) as `countersign-web`, with `resource=<audience>` so the access token is a JWT for
    /// the API. The redirect URI is the first configured one; nothing needs to listen there.
    pub async fn login(&self, user: &str) -> anyhow::Result<Tokens> {
        self.check_user(user)?;
        login::authorization_code(&login::BrowserLogin {
            issuer: &self.issuer,
            client_id: "countersign-web",
            client_secret: Some("web-secret"),
            redirect_uri: &self.web_redirect_uri,
            scope: &format!(
                "openid profile email groups offline_access {}",
                self.resource_scope
            ),
            resource: &self.audience,
            user,
        })
        .await
        .with_context(|| format!("login of {user} at {} failed", self.issuer))
    }

    /// Plays the user's part of a sign-in that a relying party started (the relying party
    /// redirected the browser to `authorization_url`): logs `user` in through the
    /// devInteractions forms, consents, and returns the redirect back to the relying party —
    /// the first redirect starting with `redirect_prefix` — without following it. `browser`
    /// keeps cookies (so the provider session lives on) and must not follow redirects.
    pub async fn sign_in(
        &self,
        browser: &reqwest::Client,
        authorization_url: &str,
        user: &str,
        redirect_prefix: &str,
    ) -> anyhow::Result<url::Url> {
        self.check_user(user)?;
        login::sign_in(browser, authorization_url, user, redirect_prefix)
            .await
            .with_context(|| format!("sign-in of {user} at {} failed", self.issuer))
    }

    /// Signs `browser` out at the provider (RP-Initiated Logout): opens `end_session_url`
    /// (this provider's `/session/end`, with or without parameters), confirms, and stops at the
    /// first redirect away from the provider. Clients with a `backchannel_logout_uri` get their
    /// logout tokens before this returns.
    pub async fn end_session(
        &self,
        browser: &reqwest::Client,
        end_session_url: &str,
    ) -> anyhow::Result<login::EndSession> {
        login::end_session(browser, &self.issuer, end_session_url)
            .await
            .with_context(|| format!("end-session at {} failed", self.issuer))
    }

    /// Plays the user's part of a device authorization (RFC 8628, as `countersign-cli` uses it):
    /// opens the verification page for `user_code`, confirms it, and logs `user` in and consents.
    /// The device's next token poll then succeeds.
    pub async fn approve_device(&self, user_code: &str, user: &str) -> anyhow::Result<()> {
        self.check_user(user)?;
        login::approve_device(&self.issuer, user_code, user)
            .await
            .with_context(|| {
                format!(
                    "device approval of {user_code} by {user} at {} failed",
                    self.issuer
                )
            })
    }

    /// Plays the browser's part of a login that a client started with an authorization URL of
    /// this provider (e.g. the one `countersign login --flow browser` prints): logs `user` in,
    /// consents, and follows the redirect to the client's loopback redirect URI, which must be
    /// listening. Returns the page the redirect URI answered with.
    pub async fn complete_login(
        &self,
        authorization_url: &str,
        user: &str,
    ) -> anyhow::Result<String> {
        self.check_user(user)?;
        login::complete_authorization(&self.issuer, authorization_url, user)
            .await
            .with_context(|| format!("browser login of {user} at {} failed", self.issuer))
    }

    /// oidc-provider answers an unknown account with a bare 500; say what went wrong instead.
    fn check_user(&self, user: &str) -> anyhow::Result<()> {
        if !self.users.iter().any(|known| known == user) {
            bail!(
                "unknown user {user}: the test provider knows {}",
                self.users.join(", ")
            );
        }
        Ok(())
    }

    /// A client-credentials access token (a JWT for the API audience) of `ci-workload`.
    pub async fn workload_token(&self) -> anyhow::Result<String> {
        self.client_credentials_token("ci-workload", "ci-secret")
            .await
    }

    /// A client-credentials access token (a JWT for the API audience) of any confidential client
    /// allowed that grant, e.g. one added through the `clients` configuration key.
    pub async fn client_credentials_token(
        &self,
        client_id: &str,
        client_secret: &str,
    ) -> anyhow::Result<String> {
        login::client_credentials(
            &self.issuer,
            client_id,
            client_secret,
            &self.audience,
            &self.resource_scope,
        )
        .await
        .with_context(|| {
            format!(
                "client credentials grant of {client_id} at {} failed",
                self.issuer
            )
        })
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        // Only the process this value started, by its PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
