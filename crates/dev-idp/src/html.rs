//! The provider's three small HTML pages: the user picker, an error page and "signed out".
//!
//! No template engine for three pages; instead every interpolated value goes through [`escape`].

use std::fmt::Write as _;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::users::demo_users;

/// Escapes text for HTML element content and for double- or single-quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// Reverses [`escape`]; the client module uses it to read the picker's hidden fields back.
pub(crate) fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:44rem;margin:2rem auto;\
padding:0 1rem;color:#1b1b1b}ul{list-style:none;padding:0}li{margin:.5rem 0}\
button{width:100%;text-align:left;padding:.75rem 1rem;border:1px solid #bbb;border-radius:.5rem;\
background:#fafafa;font:inherit;cursor:pointer}button:hover,button:focus{background:#eef4ff;\
border-color:#3b6fd8}.hint{border-color:#3b6fd8;border-width:2px}.meta{color:#555;font-size:.9em}\
.note{color:#555;font-size:.85em}code{font-size:.9em}";

/// A complete page. `body` must already be HTML (escaped where it holds input).
pub(crate) fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head>\n<body><main>\n{body}\n</main></body></html>\n",
        title = escape(title),
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        // No scripts at all; `form-action` is deliberately absent because browsers apply it to
        // the redirect that follows the form post, which goes to the client on another origin.
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// A page for a request we must not redirect back for (unknown client, unregistered redirect
/// URI, tampered form).
pub(crate) fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<h1>Sign-in request refused</h1>\n<p>{}</p>\n\
         <p class=\"note\">The countersign dev provider did not send you back to the application, \
         because it cannot trust where this request asked to go.</p>",
        escape(message)
    );
    page(status, "Sign-in request refused", &body)
}

/// What the picker form posts back, besides the chosen `user`.
#[derive(Debug)]
pub(crate) struct Picker<'a> {
    pub(crate) issuer: &'a str,
    pub(crate) client_id: &'a str,
    /// The validated authorization request, replayed as hidden fields.
    pub(crate) hidden: Vec<(&'static str, &'a str)>,
    pub(crate) login_hint: Option<&'a str>,
}

/// The user picker: one submit button per demo user in a single POST form.
pub(crate) fn user_picker(picker: &Picker<'_>) -> Response {
    let mut body = String::new();
    // `write!` into a String cannot fail; the results are ignored for that reason.
    let _ = write!(
        body,
        "<h1>Sign in to the countersign sandbox</h1>\n\
         <p>The application <code>{}</code> asks you to sign in. This development provider has \
         no passwords: choose who you want to be.</p>\n\
         <form method=\"post\" action=\"authorize\">\n",
        escape(picker.client_id)
    );
    for (name, value) in &picker.hidden {
        let _ = writeln!(
            body,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            escape(name),
            escape(value)
        );
    }
    body.push_str("<ul>\n");
    for user in demo_users() {
        let hinted = picker.login_hint == Some(user.username);
        let _ = writeln!(
            body,
            "<li><button type=\"submit\" name=\"user\" value=\"{username}\"{attrs}>\
             <strong>{name}</strong> <span class=\"meta\">({username}, {email})</span><br>\
             <span class=\"meta\">groups: {groups} &middot; team: {team}</span><br>\
             {description}</button></li>",
            username = escape(user.username),
            attrs = if hinted {
                " class=\"hint\" autofocus"
            } else {
                ""
            },
            name = escape(user.name),
            email = escape(user.email),
            groups = escape(&user.groups.join(", ")),
            team = escape(user.team),
            description = escape(user.description),
        );
    }
    let _ = write!(
        body,
        "</ul>\n</form>\n<p class=\"note\">Issuer <code>{}</code>. Anyone who can reach this \
         provider can sign in as anyone: it is for local development only.</p>",
        escape(picker.issuer)
    );
    page(StatusCode::OK, "Sign in — countersign dev", &body)
}

/// The end-session page shown when there is nowhere registered to send the browser back to.
pub(crate) fn signed_out(note: Option<&str>) -> Response {
    let mut body = "<h1>Signed out</h1>\n<p>You are signed out of the countersign dev provider. \
                    You may close this window.</p>"
        .to_owned();
    if let Some(note) = note {
        let _ = write!(body, "\n<p class=\"note\">{}</p>", escape(note));
    }
    page(StatusCode::OK, "Signed out — countersign dev", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_and_both_quotes() {
        let raw = r#"<script>alert("x" + 'y') & co</script>"#;
        let escaped = escape(raw);
        assert_eq!(
            escaped,
            "&lt;script&gt;alert(&quot;x&quot; + &#x27;y&#x27;) &amp; co&lt;/script&gt;"
        );
        assert_eq!(unescape(&escaped), raw);
    }

    #[test]
    fn unescape_does_not_decode_twice() {
        assert_eq!(unescape(&escape("&lt;")), "&lt;");
    }
}
