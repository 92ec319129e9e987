//! Liveness, readiness, and how clients sign in.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::PrincipalKind;

/// The process answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    #[schema(examples("ok"))]
    pub status: String,
}

/// Whether the server can serve: its database answers and every issuer is usable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    pub database: DatabaseStatus,
    pub issuers: Vec<IssuerStatus>,
    /// The database and every issuer are ready.
    pub ready: bool,
}

/// Whether the database answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DatabaseStatus {
    /// Why not; present only when not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub ready: bool,
}

/// Whether tokens of one configured issuer can be verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IssuerStatus {
    /// Why the last discovery or key fetch failed.
    pub error: Option<String>,
    pub name: String,
    /// Its keys are held, so its tokens can be verified now.
    pub ready: bool,
    pub url: String,
}

/// What a client needs to sign in, without signing in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuthConfig {
    /// countersign's own issuer identifier (its public URL).
    pub issuer: String,
    pub issuers: Vec<AuthIssuer>,
}

/// One configured issuer, as a client signs in with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuthIssuer {
    /// The audience (RFC 8707 resource) to ask for.
    pub audience: Option<String>,
    /// The public client id for command-line sign-in, if configured.
    pub cli_client_id: Option<String>,
    /// The issuer URL (discovery at /.well-known/openid-configuration below it).
    pub issuer: String,
    pub kind: PrincipalKind,
    pub name: String,
    pub scopes: Vec<String>,
}
