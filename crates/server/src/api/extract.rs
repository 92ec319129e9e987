//! Request extractors that answer in the API's error shape: JSON bodies (content type, size,
//! syntax, unknown fields), query strings and request ids.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use countersign_core::RequestId;
use serde::de::DeserializeOwned;

use super::{ApiError, MAX_BODY};

/// A JSON body, parsed strictly.
#[derive(Debug)]
pub(super) struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                let mime = v.split(';').next().unwrap_or("").trim();
                mime.eq_ignore_ascii_case("application/json")
            });
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than {} KiB", MAX_BODY / 1024),
            )
        })?;
        serde_json::from_slice(&bytes).map(Body).map_err(|e| {
            ApiError::bad_request(
                "invalid_json",
                format!("invalid request body: {}", describe(&e)),
            )
        })
    }
}

/// serde_json's message without Rust type names.
fn describe(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("malformed JSON at line {} column {}", e.line(), e.column())
        }
        _ => text.replace("`", "'"),
    }
}

/// Query parameters, parsed strictly.
#[derive(Debug)]
pub(super) struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded_from_str(q).map(Query).map_err(|m| {
            ApiError::bad_request("invalid_query", format!("invalid query string: {m}"))
        })
    }
}

fn serde_urlencoded_from_str<T: DeserializeOwned>(q: &str) -> Result<T, String> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{q}")
            .parse()
            .map_err(|_| "not a query string".to_string())?,
    )
    .map(|axum::extract::Query(v)| v)
    .map_err(|e| {
        e.body_text()
            .replace("Failed to deserialize query string: ", "")
            .replace('`', "'")
    })
}

/// The `{id}` path segment as a request id; anything else cannot exist, so it is a 404.
#[derive(Debug)]
pub(super) struct PathId(pub RequestId);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| {
                    ApiError::new(StatusCode::NOT_FOUND, "not_found", "request not found")
                })?;
        raw.parse()
            .map(PathId)
            .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "not_found", "request not found"))
    }
}
