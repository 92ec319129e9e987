//! The one error type of the pages: a status, a title and a sentence, shown as a page of its
//! own with a way back. Internal failures are logged and shown opaquely.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use countersign_core::{EngineError, StoreError};

use crate::session::ForgedForm;

use super::templates::{ErrorPage, render};

/// A page-level failure.
#[derive(Debug)]
pub(crate) struct WebError {
    status: StatusCode,
    title: &'static str,
    message: String,
    sign_in: bool,
}

impl WebError {
    /// An error page with this status, title and message.
    pub(crate) fn new(status: StatusCode, title: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            title,
            message: message.into(),
            sign_in: false,
        }
    }

    /// Offers "sign in again" on the page.
    pub(crate) fn with_sign_in(mut self) -> Self {
        self.sign_in = true;
        self
    }

    /// 404.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not found", message)
    }

    /// 403: a form without a valid CSRF token, or from another site.
    pub(crate) fn forged_form() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "This form cannot be accepted",
            "it is out of date or was sent from another site; go back, reload the page and try again",
        )
    }

    /// 500, with the cause logged and not shown.
    pub(crate) fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error on a page");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "an internal error occurred; the server log has details",
        )
    }

    /// The status.
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// The message.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }
}

impl From<EngineError> for WebError {
    /// The status comes from the one mapping the API shares; the message is the domain's,
    /// except for internal failures, which are logged and stay opaque.
    fn from(e: EngineError) -> Self {
        let Some(status) = crate::error::status_of(&e) else {
            return Self::internal(&e);
        };
        let message = e.to_string();
        let title = match status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::CONFLICT => "That did not work",
            StatusCode::UNPROCESSABLE_ENTITY => "Please check the form",
            StatusCode::SERVICE_UNAVAILABLE => "Busy, try again",
            _ => "Something went wrong",
        };
        Self::new(status, title, message)
    }
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        Self::internal(&e)
    }
}

impl From<ForgedForm> for WebError {
    fn from(_: ForgedForm) -> Self {
        Self::forged_form()
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let page = ErrorPage {
            title: self.title,
            message: &self.message,
            status: self.status.as_u16(),
            sign_in: self.sign_in,
        };
        (self.status, render(&page)).into_response()
    }
}
