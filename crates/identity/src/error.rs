//! Why a bearer token was refused: a stable reason code for metrics, logs and the
//! `WWW-Authenticate` error description, and a message that is safe to show the caller.
//!
//! Messages never quote the token or a claim taken from it; the only token-derived text they may
//! carry is the URL of the configured issuer the token was matched to, which is configuration.

use std::borrow::Cow;
use std::fmt;

/// The reason a token was refused. Each variant has a stable snake_case code, see
/// [`AuthReason::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthReason {
    /// Not a compact JWS: wrong segment count, bad base64url, not a JSON object, duplicate
    /// members, too large, too deeply nested, or a header parameter of the wrong type.
    Malformed,
    /// The `alg` header is `none`, an HMAC algorithm, unknown, or not allowed for the issuer.
    UnsupportedAlg,
    /// The header carries a parameter we refuse outright (`jku`, `x5u`, `jwk`, `x5c`, `crit`,
    /// `cty`, `zip`).
    ForbiddenHeader,
    /// The token's `iss` is not the URL of any configured issuer.
    UnknownIssuer,
    /// The issuer's discovery document or key set could not be fetched or was unacceptable.
    IssuerUnavailable,
    /// No key of the issuer matches the token's `kid` (or, without a `kid`, no single key fits).
    UnknownKid,
    /// The key named by `kid` exists but may not be used with the token's algorithm.
    KeyMismatch,
    /// The signature does not verify.
    BadSignature,
    /// The header `typ` is not one this issuer's tokens may carry.
    WrongType,
    /// `exp` is in the past (beyond the leeway).
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    IssuedInFuture,
    /// `aud` does not name one of the configured audiences.
    WrongAudience,
    /// The subject claim is missing, empty, not a string or too long.
    MissingSubject,
    /// A registered claim has the wrong type or an impossible value (e.g. `exp` missing or not
    /// an integer).
    InvalidClaims,
}

impl AuthReason {
    /// The stable code, e.g. `bad_signature`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::UnsupportedAlg => "unsupported_alg",
            Self::ForbiddenHeader => "forbidden_header",
            Self::UnknownIssuer => "unknown_issuer",
            Self::IssuerUnavailable => "issuer_unavailable",
            Self::UnknownKid => "unknown_kid",
            Self::KeyMismatch => "key_mismatch",
            Self::BadSignature => "bad_signature",
            Self::WrongType => "wrong_type",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
            Self::WrongAudience => "wrong_audience",
            Self::MissingSubject => "missing_subject",
            Self::InvalidClaims => "invalid_claims",
        }
    }
}

impl fmt::Display for AuthReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused bearer token: a reason code and one lowercase sentence that is safe to return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthError {
    kind: AuthReason,
    message: Cow<'static, str>,
}

impl AuthError {
    pub(crate) fn new(kind: AuthReason, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn malformed(message: &'static str) -> Self {
        Self::new(AuthReason::Malformed, message)
    }

    /// The reason as an enum, for callers that map reasons to status codes (e.g.
    /// `issuer_unavailable` is the server's problem, not the caller's).
    pub fn kind(&self) -> AuthReason {
        self.kind
    }

    /// The stable reason code, e.g. `expired`.
    pub fn reason(&self) -> &'static str {
        self.kind.as_str()
    }

    /// One lowercase sentence without the token or its claims.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AuthError {}
