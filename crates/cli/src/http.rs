//! The HTTP client every call of the command line uses, the server URL it is pointed at, and
//! how transport failures read.

use std::time::Duration;

use crate::failure::Failure;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an ordinary call may take; long polls set their own.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A client that follows no redirects (an API, an OAuth endpoint: a redirect is a
/// misconfiguration, and following one could carry a credential elsewhere).
pub fn client() -> Result<reqwest::Client, Failure> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("countersign-cli/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Failure::error(format!("cannot set up HTTP: {}", cause(&e))))
}

/// The server URL as given, checked: http or https, no query, no trailing slash.
pub fn server_url(given: Option<&str>) -> Result<String, Failure> {
    let Some(given) = given.map(str::trim).filter(|s| !s.is_empty()) else {
        return Err(Failure::error(
            "no server given; pass --server URL or set COUNTERSIGN_SERVER",
        ));
    };
    let bad = || {
        Failure::error(format!(
            "--server must be an http(s) URL such as https://approvals.example.com, not '{given}'"
        ))
    };
    let url = url::Url::parse(given).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none()
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(bad());
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// `cannot reach <what> at <url>: <cause>; <hint>`.
pub fn unreachable(what: &str, url: &str, e: &reqwest::Error, hint: &str) -> Failure {
    Failure::error(format!(
        "cannot reach {what} at {}: {}; {hint}",
        strip_query(url),
        cause(e)
    ))
}

/// The innermost cause of a transport error, in words ("connection refused", "timed out").
pub fn cause(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    let mut innermost: &dyn std::error::Error = e;
    while let Some(next) = innermost.source() {
        innermost = next;
    }
    let text = innermost.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text).to_string();
    if text.is_empty() {
        "the connection failed".into()
    } else {
        text.to_lowercase()
    }
}

/// A URL without its query, for messages (a query may hold codes or states).
pub fn strip_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        assert_eq!(
            server_url(Some("https://a.example.com/")).unwrap(),
            "https://a.example.com"
        );
        assert_eq!(
            server_url(Some("http://127.0.0.1:8080/approvals/")).unwrap(),
            "http://127.0.0.1:8080/approvals"
        );
        for bad in [
            "",
            "a.example.com",
            "ftp://x",
            "https://u:p@x",
            "https://x/?q=1",
        ] {
            assert!(server_url(Some(bad)).is_err(), "{bad}");
        }
        assert!(server_url(None).unwrap_err().message.contains("--server"));
    }
}
