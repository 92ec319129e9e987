//! OAuth error responses of the token and userinfo endpoints (RFC 6749 §5.2, RFC 6750 §3).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An RFC 6749 §5.2 error; the status follows from the code, in this one place.
#[derive(Debug)]
pub(crate) struct OAuthError {
    code: &'static str,
    description: String,
}

impl OAuthError {
    pub(crate) fn new(code: &'static str, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }

    pub(crate) fn invalid_request(description: impl Into<String>) -> Self {
        Self::new("invalid_request", description)
    }

    pub(crate) fn invalid_client(description: impl Into<String>) -> Self {
        Self::new("invalid_client", description)
    }

    pub(crate) fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new("invalid_grant", description)
    }

    pub(crate) fn server_error(description: impl Into<String>) -> Self {
        Self::new("server_error", description)
    }

    fn status(&self) -> StatusCode {
        match self.code {
            "invalid_client" => StatusCode::UNAUTHORIZED,
            "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self.description, "dev provider failed a token request");
        }
        let body = Json(json!({"error": self.code, "error_description": self.description}));
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6749 §5.2: a 401 names the authentication scheme the client should use.
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"countersign-dev-idp\""),
            );
        }
        response
    }
}

/// A refused bearer token at userinfo (RFC 6750 §3): 401 with a `WWW-Authenticate` challenge.
#[derive(Debug)]
pub(crate) struct BearerError {
    /// `None` when no token was sent at all: then the challenge carries no error code.
    pub(crate) description: Option<String>,
}

impl IntoResponse for BearerError {
    fn into_response(self) -> Response {
        let (challenge, body) = match &self.description {
            None => ("Bearer realm=\"countersign-dev-idp\"".to_owned(), json!({})),
            Some(description) => (
                // The description is our own text; quotes are stripped so it stays one
                // quoted-string.
                format!(
                    "Bearer realm=\"countersign-dev-idp\", error=\"invalid_token\", \
                     error_description=\"{}\"",
                    description.replace(['"', '\\'], "'")
                ),
                json!({"error": "invalid_token", "error_description": description}),
            ),
        };
        let mut response = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}
