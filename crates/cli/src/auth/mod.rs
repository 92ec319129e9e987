//! Who the command line acts as, and the bearer token that proves it. In order:
//! `--id-token-file` (re-read on each call, so a rotated file is picked up),
//! `COUNTERSIGN_ID_TOKEN`, a GitHub Actions job's workload identity (asked for with the
//! audience the server expects, and asked again before it expires), then the cached
//! `countersign login` for the server (refreshed with its refresh token when it is about to
//! expire, or when the server refuses it).

pub mod browser;
pub mod cache;
pub mod device;
pub mod github;
pub mod loopback;
pub mod oauth;

use std::path::{Path, PathBuf};

use oauth::{TokenError, TokenResponse};

use crate::clock;
use crate::failure::Failure;

/// A cached access token is refreshed when it has less than this many seconds left.
const REFRESH_MARGIN: i64 = 30;
/// The lifetime assumed for an access token whose issuer names none.
const DEFAULT_LIFETIME: i64 = 300;

/// Where the token comes from.
enum Source {
    File(PathBuf),
    Env(String),
    GitHub(github::Endpoint),
    Login,
}

/// The caller's credentials for one server.
pub struct Credentials {
    server: String,
    source: Source,
    held: tokio::sync::Mutex<Held>,
}

#[derive(Default)]
struct Held {
    /// A workload token fetched from GitHub.
    workload: Option<String>,
    /// The cached login, once read.
    login: Option<cache::Login>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("server", &self.server)
            .field("source", &self.describe())
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Picks the source for `server` from the flags and the environment. Nothing is read or
    /// fetched until a token is needed.
    pub fn resolve(server: &str, id_token_file: Option<&Path>) -> Self {
        let source = if let Some(path) = id_token_file {
            Source::File(path.to_path_buf())
        } else if let Some(token) = std::env::var("COUNTERSIGN_ID_TOKEN")
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
        {
            Source::Env(token)
        } else if let Some(endpoint) = github::Endpoint::from_env() {
            Source::GitHub(endpoint)
        } else {
            Source::Login
        };
        Self {
            server: server.to_string(),
            source,
            held: tokio::sync::Mutex::new(Held::default()),
        }
    }

    /// Where the token comes from, in words.
    pub fn describe(&self) -> String {
        match &self.source {
            Source::File(path) => format!("the token in {}", path.display()),
            Source::Env(_) => "the token in COUNTERSIGN_ID_TOKEN".into(),
            Source::GitHub(_) => "the GitHub Actions ID token".into(),
            Source::Login => format!("your login to {}", self.server),
        }
    }

    /// Whether a refused token can be replaced by a fresh one without the user.
    pub fn refreshable(&self) -> bool {
        matches!(self.source, Source::GitHub(_) | Source::Login)
    }

    /// The failure for a token the server refused (401), with what to do about it.
    pub fn refused(&self, message: &str) -> Failure {
        let hint = match &self.source {
            Source::File(_) => "put a valid token for this server in the file".to_string(),
            Source::Env(_) => "set COUNTERSIGN_ID_TOKEN to a valid token for this server".into(),
            Source::GitHub(_) => "check the server's workload issuer and its audience".to_string(),
            Source::Login => format!("run `countersign login --server {}`", self.server),
        };
        Failure::denied(format!(
            "the server refused {} ({message}); {hint}",
            self.describe()
        ))
    }

    /// The bearer token to send. `fresh` asks for a new one (after the server refused the
    /// last): a refresh for a login, a new ID token for GitHub.
    pub async fn bearer(&self, http: &reqwest::Client, fresh: bool) -> Result<String, Failure> {
        let mut held = self.held.lock().await;
        match &self.source {
            Source::File(path) => read_token_file(path),
            Source::Env(token) => Ok(token.clone()),
            Source::GitHub(endpoint) => {
                if let Some(token) = &held.workload
                    && !fresh
                    && !github::stale(token, clock::now_secs())
                {
                    return Ok(token.clone());
                }
                let config = oauth::auth_config(http, &self.server).await?;
                let audience = github::audience(&config.issuers, &self.server)?;
                let token = endpoint.id_token(http, &audience).await?;
                held.workload = Some(token.clone());
                Ok(token)
            }
            Source::Login => self.login_token(http, &mut held, fresh).await,
        }
    }

    async fn login_token(
        &self,
        http: &reqwest::Client,
        held: &mut Held,
        fresh: bool,
    ) -> Result<String, Failure> {
        if held.login.is_none() {
            held.login = cache::load(&self.server)?;
        }
        let Some(login) = held.login.as_mut() else {
            return Err(Failure::denied(format!(
                "not logged in to {}; run `countersign login --server {}`",
                self.server, self.server
            )));
        };
        let now = clock::now_secs();
        if !fresh && login.expires_at - REFRESH_MARGIN > now {
            return Ok(login.access_token.clone());
        }
        let expired = || {
            Failure::denied(format!(
                "your login to {} has expired; run `countersign login --server {}`",
                self.server, self.server
            ))
        };
        let Some(refresh_token) = login.refresh_token.clone() else {
            return Err(expired());
        };
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.as_str()),
            ("client_id", login.client_id.as_str()),
        ];
        if let Some(resource) = &login.resource {
            form.push(("resource", resource.as_str()));
        }
        match oauth::post_form::<TokenResponse>(http, &login.token_endpoint, &form).await {
            Ok(tokens) => {
                login.expires_at = expires_at(&tokens, clock::now_secs());
                login.access_token = tokens.access_token;
                if let Some(rotated) = tokens.refresh_token {
                    login.refresh_token = Some(rotated);
                }
                cache::save(login)?;
                Ok(login.access_token.clone())
            }
            Err(TokenError::OAuth { .. }) => {
                // Another countersign process may have refreshed (and rotated) it meanwhile.
                match cache::load(&self.server)? {
                    Some(newer)
                        if newer.access_token != login.access_token
                            && newer.expires_at - REFRESH_MARGIN > clock::now_secs() =>
                    {
                        let token = newer.access_token.clone();
                        *login = newer;
                        Ok(token)
                    }
                    _ => Err(expired()),
                }
            }
            Err(TokenError::Failed(failure)) => Err(Failure::error(format!(
                "cannot refresh your login to {}: {}",
                self.server, failure.message
            ))),
        }
    }
}

/// When the access token of a token response expires: its `exp` when it is a JWT, else
/// `expires_in` from now, whichever is sooner.
pub fn expires_at(tokens: &TokenResponse, now: i64) -> i64 {
    let by_lifetime = now + tokens.expires_in.unwrap_or(DEFAULT_LIFETIME);
    match oauth::unverified_expiry(&tokens.access_token) {
        Some(exp) => exp.min(by_lifetime),
        None => by_lifetime,
    }
}

fn read_token_file(path: &Path) -> Result<String, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::denied(format!(
            "cannot read the token file {}: {e}; check --id-token-file",
            path.display()
        ))
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(Failure::denied(format!(
            "the token file {} is empty; check --id-token-file",
            path.display()
        )));
    }
    Ok(token.to_string())
}
