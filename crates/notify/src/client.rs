//! The HTTP client webhooks go out with.

use std::time::Duration;

/// The `user-agent` of every delivery.
pub const USER_AGENT: &str = concat!("countersign-webhooks/", env!("CARGO_PKG_VERSION"));

/// Builds the client for webhook deliveries: redirects are never followed (a redirect is a
/// failed attempt: following it would send a signed event to a URL nobody configured), the
/// connection and the whole exchange are bounded by `timeout`, and TLS is rustls with the
/// built-in web roots.
pub fn try_http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .timeout(timeout)
        .user_agent(USER_AGENT)
        .build()
        .map_err(|e| format!("the webhook http client could not be built: {e}"))
}

/// [`try_http_client`], for callers that cannot handle an error.
///
/// Nothing in this configuration can make reqwest refuse it (no client certificate, no TLS
/// version limits, static roots); should a later version refuse anyway, the error is logged
/// and a plain client that still refuses redirects is returned.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    match try_http_client(timeout) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "falling back to a default webhook http client");
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(timeout)
                .build()
                .unwrap_or_default()
        }
    }
}
