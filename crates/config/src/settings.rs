//! The resolved runtime settings: what the rest of countersign reads. Every value here has
//! been checked, every duration parsed, every condition compiled and every secret read, so
//! nothing downstream parses configuration again.

use std::net::SocketAddr;
use std::path::PathBuf;

use countersign_core::secret::Secret;
use countersign_core::{Condition, GateSet, PrincipalKind};

/// Variables an `audit_readers` condition receives.
pub const AUDIT_READER_VARIABLES: &[&str] = &["principal"];

/// Signing algorithms an issuer may be configured to accept: asymmetric ones only, since an
/// HMAC key would have to be shared with the provider, and never `none`.
pub const SUPPORTED_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// Algorithms countersign may sign grant tokens with (`server.signing_alg`), the default
/// first.
pub const GRANT_SIGNING_ALGORITHMS: &[&str] = &["ES256", "EdDSA", "RS256"];

/// A gate's grant window when its `[grant]` does not set one; also what
/// [`Settings::max_grant_ttl`] says when there are no gates.
pub(crate) const DEFAULT_GRANT_TTL: chrono::Duration = chrono::Duration::minutes(15);

/// Everything the configuration says.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The `[server]` section.
    pub server: ServerSettings,
    /// The `[[issuers]]`, in the order written.
    pub issuers: Vec<IssuerConfig>,
    /// Every gate, from the main file and the gates directory.
    pub gates: GateSet,
    /// The `[webhooks]` section: how webhooks are delivered (defaults when absent).
    pub webhooks: WebhookSettings,
    /// The `[notifications]` section: the channels people hear about requests in.
    pub notifications: crate::notifications::NotificationSettings,
    /// The `[[resource_servers]]`, in the order written: the services that verify grant
    /// tokens and authenticate to countersign's standards endpoints.
    pub resource_servers: Vec<ResourceServerConfig>,
    /// The configuration files read from disk: the main file, then the gates directory's
    /// files in name order (empty for [`crate::load_str`]). Secret files are not listed.
    pub sources: Vec<PathBuf>,
}

impl Settings {
    /// The issuer of this name.
    pub fn issuer(&self, name: &str) -> Option<&IssuerConfig> {
        self.issuers.iter().find(|i| i.name == name)
    }

    /// The resource server of this name.
    pub fn resource_server(&self, name: &str) -> Option<&ResourceServerConfig> {
        self.resource_servers.iter().find(|r| r.name == name)
    }

    /// The longest a grant token can live: the largest `grant.max_ttl` over all gates, or
    /// 15 minutes when there are no gates. A retired signing key must stay published at
    /// least this long, so that every token it signed can still be verified.
    pub fn max_grant_ttl(&self) -> chrono::Duration {
        self.gates
            .iter()
            .map(|g| g.grant.max_ttl)
            .max()
            .unwrap_or(DEFAULT_GRANT_TTL)
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The `[server]` section.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// The address people and tokens know countersign by (the `iss` of grant tokens).
    pub public_url: url::Url,
    /// Where to listen (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// The database URL (default `sqlite://countersign.db`). May hold a password: never log.
    pub database: String,
    /// Who may read the whole audit log: a condition over `principal`.
    pub audit_readers: Option<Condition>,
    /// The longest a long-poll may wait (default 60s).
    pub max_wait: chrono::Duration,
    /// The log format (default text).
    pub log_format: LogFormat,
    /// How recent a sign-in must be to approve (default 10m).
    pub approval_max_auth_age: chrono::Duration,
    /// The directory of gate files: as configured (resolved against the config file's
    /// directory), else `gates.d` next to the config file when that exists.
    pub gates_dir: Option<PathBuf>,
    /// The key that encrypts the grant-signing keys at rest, as configured: 32 bytes as
    /// base64 (standard or URL-safe, padding optional) or 64 hex characters. Its form has
    /// been checked; the tokens crate decodes it. Never log.
    pub key_encryption_key: Secret,
    /// The algorithm grant tokens are signed with: one of [`GRANT_SIGNING_ALGORITHMS`]
    /// (default `ES256`).
    pub signing_alg: String,
    /// How long a new signing key is published before it signs anything, so that verifiers'
    /// cached key sets pick it up first (default 1h).
    pub key_rotation_delay: chrono::Duration,
    /// A browser session unused for this long ends (default 30m).
    pub session_idle_timeout: chrono::Duration,
    /// A browser session ends this long after sign-in, however active (default 12h).
    pub session_max_lifetime: chrono::Duration,
}

/// The `[webhooks]` section: delivery of webhook calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookSettings {
    /// How many times one event is tried before it is given up (1..=50, default 8).
    pub max_attempts: u32,
    /// How long one call may take (default 10s, at most 60s).
    pub timeout: chrono::Duration,
    /// The wait before the first retry; it doubles with each further one (default 5s).
    pub backoff_base: chrono::Duration,
    /// The longest wait between two tries (default 1h, at least `backoff_base`).
    pub backoff_max: chrono::Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            timeout: chrono::Duration::seconds(10),
            backoff_base: chrono::Duration::seconds(5),
            backoff_max: chrono::Duration::hours(1),
        }
    }
}

/// One resource server: a service that verifies grant tokens and authenticates to the
/// standards endpoints (introspection) with its client credentials.
#[derive(Clone, Debug)]
pub struct ResourceServerConfig {
    /// Its name in configuration (same rules as issuer names).
    pub name: String,
    /// The client id it authenticates with (unique among resource servers).
    pub client_id: String,
    /// The client secret it authenticates with.
    pub client_secret: Secret,
}

/// One trusted OIDC provider.
#[derive(Clone, Debug)]
pub struct IssuerConfig {
    /// Its name in configuration and conditions (`principal.issuer`).
    pub name: String,
    /// The issuer URL exactly as written: discovery metadata must match it byte for byte.
    pub url: String,
    /// Whether its tokens are people or workloads (workloads never approve).
    pub kind: PrincipalKind,
    /// The client id for browser login.
    pub client_id: Option<String>,
    /// The client secret for browser login.
    pub client_secret: Option<Secret>,
    /// The public client id the CLI signs in with (device flow or loopback + PKCE).
    pub cli_client_id: Option<String>,
    /// Scopes asked for at login (default `openid profile email`).
    pub scopes: Vec<String>,
    /// Accepted `aud` values of bearer tokens (never empty).
    pub audiences: Vec<String>,
    /// Accepted signing algorithms (default RS256, ES256, EdDSA).
    pub algorithms: Vec<String>,
    /// The claim holding the stable subject (default `sub`).
    pub subject_claim: String,
    /// The dotted path to the groups claim (default `groups`; `""` in configuration: none).
    pub groups_claim: Option<String>,
    /// For workloads: the claim naming the person behind the run (e.g. `actor_id`).
    pub actor_claim: Option<String>,
    /// The configured issuer the `actor_claim` value is a subject of.
    pub actor_issuer: Option<String>,
    /// Accepted `typ` values (JWT header or claim), when restricted.
    pub token_types: Option<Vec<String>>,
    /// How long fetched signing keys are kept (default 10m).
    pub jwks_ttl: chrono::Duration,
}
