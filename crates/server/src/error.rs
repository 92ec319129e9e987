//! The one error type of the API: `{"error": {"code", "message"}}`, and the status of each
//! domain error, in one place for the API and the pages. Internal failures are logged and
//! answered opaquely.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use countersign_api::{ErrorBody, ErrorDetail};
use countersign_core::EngineError;

/// An error answer.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    www_authenticate: Option<String>,
}

impl ApiError {
    /// An answer with this status, code and message.
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            www_authenticate: None,
        }
    }

    /// 400 with a message naming the offending input.
    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401 with an RFC 6750 challenge. `error` is `None` when no token was presented.
    pub(crate) fn unauthorized(error: Option<&str>, description: &str) -> Self {
        let mut challenge = String::from("Bearer realm=\"countersign\"");
        if let Some(e) = error {
            // The description is ours (never token content); quotes are stripped to keep the
            // header well-formed.
            challenge.push_str(&format!(
                ", error=\"{e}\", error_description=\"{}\"",
                description.replace('"', "'")
            ));
        }
        Self {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthenticated",
            message: description.to_string(),
            www_authenticate: Some(challenge),
        }
    }

    /// 500, with the cause logged and not shown.
    pub(crate) fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the server log has details",
        )
    }
}

/// The status a domain error answers with; `None` for internal failures, which are answered
/// opaquely.
pub(crate) fn status_of(e: &EngineError) -> Option<StatusCode> {
    Some(match e {
        EngineError::NotFound | EngineError::UnknownGate(_) => StatusCode::NOT_FOUND,
        EngineError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        EngineError::Forbidden { .. } => StatusCode::FORBIDDEN,
        EngineError::DigestMismatch
        | EngineError::WrongState(_)
        | EngineError::AlreadyDecided
        | EngineError::AlreadyRedeemed
        | EngineError::GrantUnavailable(_) => StatusCode::CONFLICT,
        EngineError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        EngineError::Store(_) | EngineError::Signing(_) => return None,
    })
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match status_of(&e) {
            Some(status) => ApiError::new(status, e.code(), e.to_string()),
            None => ApiError::internal(&e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        });
        let mut response = (self.status, body).into_response();
        if let Some(challenge) = self.www_authenticate
            && let Ok(v) = HeaderValue::from_str(&challenge)
        {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        response
    }
}
