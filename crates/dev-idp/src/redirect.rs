//! Redirect URI matching: exact, except that a loopback `http` URI accepts any port (RFC 8252).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use url::{Host, Url};

use crate::html::error_page;

/// Whether `requested` may be used where `registered` was registered.
pub(crate) fn matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let (Ok(registered), Ok(requested)) = (Url::parse(registered), Url::parse(requested)) else {
        return false;
    };
    // RFC 8252 §7.3: a native app listens on whatever port the OS gives it, so for loopback
    // redirects the port is the only part that may differ. Everything else must be identical.
    is_loopback_http(&registered)
        && requested.scheme() == "http"
        && requested.host() == registered.host()
        && requested.path() == registered.path()
        && requested.query() == registered.query()
        && requested.fragment().is_none()
        && requested.username().is_empty()
        && requested.password().is_none()
}

/// Whether any of `registered` accepts `requested`.
pub(crate) fn matches_any(registered: &[String], requested: &str) -> bool {
    registered.iter().any(|uri| matches(uri, requested))
}

fn is_loopback_http(url: &Url) -> bool {
    url.scheme() == "http"
        && match url.host() {
            Some(Host::Ipv4(ip)) => ip.is_loopback(),
            Some(Host::Ipv6(ip)) => ip.is_loopback(),
            Some(Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
            None => false,
        }
}

/// Why a URI cannot be registered, if it cannot: it must be absolute and carry no fragment
/// (RFC 6749 §3.1.2), since we append the response parameters to it.
pub(crate) fn registration_problem(uri: &str) -> Option<&'static str> {
    match Url::parse(uri) {
        Err(_) => Some("is not an absolute URL"),
        Ok(url) if url.fragment().is_some() => Some("has a fragment"),
        Ok(url) if url.cannot_be_a_base() => Some("is not a hierarchical URL"),
        Ok(_) => None,
    }
}

/// A 303 to `uri` with the given parameters appended to its query.
pub(crate) fn see_other(uri: &str, params: &[(&str, Option<&str>)]) -> Response {
    let Ok(mut url) = Url::parse(uri) else {
        // Registered URIs were checked at start, so this means a bug, not bad input.
        return error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the redirect uri cannot be parsed",
        );
    };
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in params {
            if let Some(value) = value {
                query.append_pair(name, value);
            }
        }
    }
    match HeaderValue::from_str(url.as_str()) {
        Ok(location) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, location),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
        )
            .into_response(),
        Err(_) => error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the redirect uri is not a valid header",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_uris_match() {
        assert!(matches("https://app.example/cb", "https://app.example/cb"));
        assert!(!matches(
            "https://app.example/cb",
            "https://app.example/cb2"
        ));
        assert!(!matches(
            "https://app.example/cb",
            "https://app.example:8443/cb"
        ));
    }

    #[test]
    fn loopback_http_accepts_any_port_and_nothing_else() {
        let registered = "http://127.0.0.1/callback";
        assert!(matches(registered, "http://127.0.0.1:53682/callback"));
        assert!(matches("http://[::1]/cb", "http://[::1]:9000/cb"));
        assert!(matches("http://localhost:8080/cb", "http://localhost:9/cb"));
        assert!(!matches(registered, "http://127.0.0.1:53682/other"));
        assert!(!matches(registered, "http://127.0.0.1:53682/callback?x=1"));
        assert!(!matches(registered, "http://127.0.0.1:53682/callback#frag"));
        assert!(!matches(registered, "http://localhost:53682/callback"));
        assert!(!matches(registered, "https://127.0.0.1:53682/callback"));
        assert!(!matches(registered, "http://user@127.0.0.1:53682/callback"));
        assert!(!matches(
            "http://app.example/cb",
            "http://app.example:81/cb"
        ));
    }

    #[test]
    fn registrations_need_absolute_urls_without_fragments() {
        assert_eq!(registration_problem("http://127.0.0.1/cb"), None);
        assert!(registration_problem("/cb").is_some());
        assert!(registration_problem("http://127.0.0.1/cb#x").is_some());
    }
}
