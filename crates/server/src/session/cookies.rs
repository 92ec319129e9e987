//! The two cookies of the web UI: the session cookie and the pre-login cookie that binds a
//! sign-in in flight to the browser that started it. On https both carry the `__Host-` prefix
//! (so `Secure`, `Path=/`, no `Domain`: a sibling subdomain cannot plant them); on plain http
//! (the loopback sandbox and tests) the prefix is impossible and the plain name is used.
//! Both are `HttpOnly` and `SameSite=Lax` (the provider's redirect back is a top-level GET, so
//! the pre-login cookie still arrives); the session cookie has no expiry (it ends with the
//! browser, and the server ends it sooner).

use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

/// How long the pre-login cookie lives: as long as a sign-in may take.
pub const LOGIN_COOKIE_SECS: i64 = 600;

/// The cookie names and attributes for this deployment.
#[derive(Clone, Debug)]
pub struct CookieJar {
    secure: bool,
    session: &'static str,
    login: &'static str,
}

impl CookieJar {
    /// Names and attributes for a site served over https (`secure`) or plain http.
    pub fn new(secure: bool) -> Self {
        if secure {
            Self {
                secure,
                session: "__Host-countersign",
                login: "__Host-countersign-login",
            }
        } else {
            Self {
                secure,
                session: "countersign",
                login: "countersign-login",
            }
        }
    }

    /// The session cookie's name.
    pub fn session_name(&self) -> &'static str {
        self.session
    }

    /// The session cookie's value in this request, if it is well formed.
    pub fn session(&self, headers: &HeaderMap) -> Option<String> {
        cookie(headers, self.session).filter(|v| is_token(v))
    }

    /// The pre-login cookie's value in this request, if it is well formed.
    pub fn login(&self, headers: &HeaderMap) -> Option<String> {
        cookie(headers, self.login).filter(|v| is_token(v))
    }

    fn attributes(&self) -> &'static str {
        if self.secure {
            "; Path=/; HttpOnly; SameSite=Lax; Secure"
        } else {
            "; Path=/; HttpOnly; SameSite=Lax"
        }
    }

    /// Sets the session cookie (no expiry: a browser session cookie).
    pub fn set_session(&self, headers: &mut HeaderMap, value: &str) {
        append(
            headers,
            format!("{}={value}{}", self.session, self.attributes()),
        );
    }

    /// Removes the session cookie.
    pub fn clear_session(&self, headers: &mut HeaderMap) {
        append(
            headers,
            format!("{}=; Max-Age=0{}", self.session, self.attributes()),
        );
    }

    /// Sets the pre-login cookie.
    pub fn set_login(&self, headers: &mut HeaderMap, value: &str) {
        append(
            headers,
            format!(
                "{}={value}; Max-Age={LOGIN_COOKIE_SECS}{}",
                self.login,
                self.attributes()
            ),
        );
    }

    /// Removes the pre-login cookie.
    pub fn clear_login(&self, headers: &mut HeaderMap) {
        append(
            headers,
            format!("{}=; Max-Age=0{}", self.login, self.attributes()),
        );
    }
}

fn append(headers: &mut HeaderMap, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.append(SET_COOKIE, v);
    }
}

/// The value of cookie `name`; the last one wins when a browser sends two (a planted one
/// would otherwise shadow ours depending on order, and neither is trusted beyond its hash).
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.trim().to_owned())
        })
        .next_back()
}

/// A fresh random token: 256 bits from the operating system's CSPRNG, base64url.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// Whether `value` looks like one of our tokens (43 base64url characters).
fn is_token(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// SHA-256 of a cookie value, hex: what the store keeps instead of the cookie.
pub fn hash(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_scheme() {
        assert_eq!(CookieJar::new(true).session_name(), "__Host-countersign");
        assert_eq!(CookieJar::new(false).session_name(), "countersign");
        let mut h = HeaderMap::new();
        CookieJar::new(true).set_session(&mut h, "v");
        let set = h
            .get(SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert_eq!(
            set,
            "__Host-countersign=v; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
    }

    #[test]
    fn reads_cookies_and_refuses_malformed_values() {
        let token = random_token();
        assert_eq!(token.len(), 43);
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_str(&format!("a=b; countersign={token}; x=y"))
                .unwrap_or(HeaderValue::from_static("")),
        );
        let jar = CookieJar::new(false);
        assert_eq!(jar.session(&h).as_deref(), Some(token.as_str()));
        assert_eq!(jar.login(&h), None);
        h.insert(COOKIE, HeaderValue::from_static("countersign=short"));
        assert_eq!(jar.session(&h), None);
    }

    #[test]
    fn hashes_are_sha256_hex() {
        assert_eq!(hash("x").len(), 64);
    }
}
