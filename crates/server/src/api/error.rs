//! The one error type of the API: `{"error": {"code", "message"}}`, with the status mapping
//! for domain errors in one place. Internal failures are logged and answered opaquely.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use countersign_core::EngineError;
use serde_json::json;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    www_authenticate: Option<String>,
}

impl ApiError {
    /// An answer with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            www_authenticate: None,
        }
    }

    /// 400 with a message naming the offending input.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401 with an RFC 6750 challenge. `error` is `None` when no token was presented.
    pub fn unauthorized(error: Option<&str>, description: &str) -> Self {
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
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the server log has details",
        )
    }

    /// The machine code.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let status = match &e {
            EngineError::NotFound | EngineError::UnknownGate(_) => StatusCode::NOT_FOUND,
            EngineError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            EngineError::Forbidden { .. } => StatusCode::FORBIDDEN,
            EngineError::DigestMismatch
            | EngineError::WrongState(_)
            | EngineError::AlreadyDecided
            | EngineError::AlreadyRedeemed
            | EngineError::GrantUnavailable(_) => StatusCode::CONFLICT,
            EngineError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            EngineError::Store(cause) => return ApiError::internal(cause),
            EngineError::Signing(cause) => return ApiError::internal(cause),
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
        let mut response = (self.status, body).into_response();
        if let Some(challenge) = self.www_authenticate
            && let Ok(v) = HeaderValue::from_str(&challenge)
        {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        response
    }
}
