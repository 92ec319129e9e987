//! OpenID Connect for countersign: discovering configured issuers, caching their signing keys,
//! and verifying bearer JWTs into a [`countersign_core::Principal`].
//!
//! The only way to get a principal from this crate is [`Verifier::verify`], which checks the
//! token against the keys of the one configured issuer its `iss` names, with the checks of
//! `research/anchor-security.md` (B): strict compact parsing, per-issuer algorithm allow-list,
//! no token-supplied keys, `typ`, time window with a fixed leeway, audience and subject.
//!
//! Browser sign-in lives in [`rp`]: the [`RelyingParty`] (authorization code + PKCE, ID-token
//! checks with `openidconnect`, refresh, RP-initiated and back-channel logout).

mod cache;
mod claims;
mod error;
mod issuer;
mod jws;
mod keys;
pub mod rp;
mod settings;
mod verifier;

pub use claims::{LEEWAY_SECS, MAX_SUBJECT_BYTES, principal_from_claims};
pub use error::{AuthError, AuthReason};
pub use issuer::{FAILURE_BACKOFF, IssuerStatus, KID_REFETCH_INTERVAL};
pub use jws::MAX_TOKEN_BYTES;
pub use rp::{
    AuthorizationStart, Callback, LoginClient, LoginIssuer, LoginIssuerSettings, LogoutNotice,
    Refreshed, RelyingParty, RpError, SignedIn,
};
pub use settings::{DEFAULT_JWKS_TTL, IssuerSettings};
pub use verifier::{HTTP_CONNECT_TIMEOUT, HTTP_TIMEOUT, Verifier, http_client, try_http_client};
