//! Cross-site request forgery and browser hardening: every state-changing form needs the
//! session's token and a same-origin `Origin`; pages carry the security headers.

use reqwest::StatusCode;

use crate::helpers::{Browser, Options, spawn_web, spawn_with};

const FORM: &[(&str, &str)] = &[
    ("p.database", "orders"),
    ("p.access", "read"),
    ("reason", "INC-7: look at the orders table"),
];

async fn requests_of(app: &crate::helpers::WebApp) -> usize {
    app.engine
        .store()
        .list_requests(&countersign_core::RequestFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn a_cross_origin_form_post_is_refused() {
    let app = spawn_web().await;
    let alice = Browser::new(&app);
    alice.sign_in(&app, "idp", "alice").await;
    let form = alice.get("/new/db-session").await;
    let token = form.csrf();
    let mut fields = FORM.to_vec();
    fields.push(("csrf", &token));
    // Even with the right token, a post from another origin is refused.
    for headers in [
        vec![("origin", "http://evil.example")],
        vec![("origin", "null")],
        vec![("origin", "null"), ("sec-fetch-site", "cross-site")],
        vec![
            ("origin", "http://evil.example"),
            ("sec-fetch-site", "same-origin"),
        ],
        vec![("sec-fetch-site", "cross-site")],
        vec![("referer", "http://evil.example/page")],
    ] {
        let page = alice.post_with("/new/db-session", &fields, &headers).await;
        assert_eq!(
            page.status,
            StatusCode::FORBIDDEN,
            "{headers:?}: {}",
            page.body
        );
        assert!(
            page.body.contains("sent from another site"),
            "{}",
            page.body
        );
    }
    assert_eq!(requests_of(&app).await, 0);
    // The same form from our own origin works, also as browsers send it under
    // `Referrer-Policy: no-referrer` (Origin: null, Sec-Fetch-Site: same-origin).
    let page = alice
        .post_with(
            "/new/db-session",
            &fields,
            &[("origin", "null"), ("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let page = alice.post("/new/db-session", &fields).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(requests_of(&app).await, 2);
}

#[tokio::test]
async fn a_post_without_the_token_is_refused() {
    let app = spawn_web().await;
    let alice = Browser::new(&app);
    alice.sign_in(&app, "idp", "alice").await;
    let other = Browser::new(&app);
    other.sign_in(&app, "idp", "carol").await;
    let foreign_token = other.get("/new/db-session").await.csrf();
    let wrong = "x".repeat(43);
    let cases: Vec<Option<&str>> = vec![None, Some(""), Some(&wrong), Some(&foreign_token)];
    for token in cases {
        let mut fields = FORM.to_vec();
        if let Some(t) = token {
            fields.push(("csrf", t));
        }
        let page = alice.post("/new/db-session", &fields).await;
        assert_eq!(
            page.status,
            StatusCode::FORBIDDEN,
            "{token:?}: {}",
            page.body
        );
    }
    assert_eq!(requests_of(&app).await, 0);
    // Sign-out is a form too.
    let page = alice.post("/logout", &[]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(alice.signed_in().await);
    // Without a session, a form post goes to sign in and changes nothing.
    let nobody = Browser::new(&app);
    let page = nobody.post("/new/db-session", FORM).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(page.location().starts_with("/login"));
    assert_eq!(requests_of(&app).await, 0);
}

#[tokio::test]
async fn pages_carry_the_security_headers() {
    let app = spawn_web().await;
    let browser = Browser::new(&app);
    for path in ["/login", "/", "/auth/callback?state=x"] {
        let page = browser.get(path).await;
        let csp = page.header("content-security-policy");
        for directive in [
            "frame-ancestors 'none'",
            "object-src 'none'",
            "base-uri 'none'",
            "script-src 'self'",
            "default-src 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(page.header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(page.header("referrer-policy"), "no-referrer", "{path}");
        assert_eq!(page.header("cache-control"), "no-store", "{path}");
        assert!(
            page.header("strict-transport-security").is_empty(),
            "no HSTS on http"
        );
    }
    let script = browser.get("/static/live.js").await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(script.header("content-type").starts_with("text/javascript"));
    let css = browser.get("/static/app.css").await;
    assert!(css.header("content-type").starts_with("text/css"));
    // Pages reference only our own script, never inline script.
    browser.sign_in(&app, "idp", "bob").await;
    let inbox = browser.get("/").await;
    assert!(
        inbox
            .body
            .contains("<script src=\"/static/live.js\" defer></script>")
    );
    assert_eq!(inbox.body.matches("<script").count(), 1);
}

#[tokio::test]
async fn https_sites_get_hsts_and_host_prefixed_cookies() {
    let app = spawn_with(Options {
        public_url: Some("https://approvals.example.test"),
        ..Default::default()
    })
    .await;
    let browser = Browser::new(&app);
    let page = browser.get("/login").await;
    assert_eq!(
        page.header("strict-transport-security"),
        "max-age=31536000; includeSubDomains"
    );
    let page = browser.get("/login?issuer=idp").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let cookies = page.set_cookies();
    let login = cookies
        .iter()
        .find(|c| c.starts_with("__Host-countersign-login="))
        .unwrap_or_else(|| panic!("{cookies:?}"));
    for attribute in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(login.contains(attribute), "{login}");
    }
    assert!(!login.contains("Domain"));
    // The redirect URI comes from the public URL, never from the request's Host.
    let location = url::Url::parse(page.location()).unwrap();
    let redirect = location
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.into_owned());
    assert_eq!(
        redirect.as_deref(),
        Some("https://approvals.example.test/auth/callback")
    );
    let spoofed = browser
        .http
        .get(format!("{}/login?issuer=idp", app.base))
        .header("host", "evil.example")
        .header("x-forwarded-host", "evil.example")
        .send()
        .await
        .unwrap();
    let location = spoofed.headers()["location"].to_str().unwrap().to_owned();
    assert!(!location.contains("evil.example"), "{location}");
}
