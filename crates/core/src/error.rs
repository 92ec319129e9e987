//! What can go wrong in a use case. Each variant carries a stable machine code; the HTTP layer
//! maps codes to status codes in one place. No status codes here.

use crate::ports::{SignError, StoreError};
use crate::request::State;

/// A use case refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No such request, or the caller may not see it.
    #[error("request not found")]
    NotFound,
    /// The gate named does not exist.
    #[error("unknown gate '{0}'")]
    UnknownGate(String),
    /// The input is invalid; `code` names the problem.
    #[error("{message}")]
    Invalid {
        /// e.g. `invalid_params`, `reason_required`, `invalid_duration`.
        code: &'static str,
        /// A lowercase sentence naming the offending input.
        message: String,
    },
    /// The caller may not do this.
    #[error("{message}")]
    Forbidden {
        /// e.g. `not_allowed`, `self_approval`, `not_eligible`, `workload_cannot_approve`.
        code: &'static str,
        /// Why, for the caller.
        message: String,
    },
    /// The digest posted does not match the request's.
    #[error(
        "the request changed since you looked at it (digest mismatch); reload and decide again"
    )]
    DigestMismatch,
    /// The request is not in a state that allows this.
    #[error("the request is {0}")]
    WrongState(State),
    /// The caller already decided this request.
    #[error("you already decided this request")]
    AlreadyDecided,
    /// A single-use grant was already redeemed.
    #[error("this grant was already redeemed; single-use grants give one token")]
    AlreadyRedeemed,
    /// The grant cannot be issued now (outside the approved window, say).
    #[error("{0}")]
    GrantUnavailable(String),
    /// Signing failed.
    #[error("signing failed")]
    Signing(#[source] SignError),
    /// The store failed.
    #[error("storage failure")]
    Store(#[from] StoreError),
    /// Too many concurrent changes; the caller may retry.
    #[error("the request is changing too quickly; retry")]
    Busy,
}

impl EngineError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::NotFound => "not_found",
            EngineError::UnknownGate(_) => "unknown_gate",
            EngineError::Invalid { code, .. } | EngineError::Forbidden { code, .. } => code,
            EngineError::DigestMismatch => "digest_mismatch",
            EngineError::WrongState(_) => "not_pending",
            EngineError::AlreadyDecided => "already_decided",
            EngineError::AlreadyRedeemed => "already_redeemed",
            EngineError::GrantUnavailable(_) => "grant_unavailable",
            EngineError::Store(_) | EngineError::Signing(_) => "internal",
            EngineError::Busy => "busy",
        }
    }

    pub(crate) fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        EngineError::Invalid {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        EngineError::Forbidden {
            code,
            message: message.into(),
        }
    }
}
