//! Sign-in as a relying party: the happy path against the real provider, and every refused
//! callback (state, browser binding, RFC 9207 `iss`, nonce, audience, open redirects, broken ID
//! tokens) signing nobody in and being audited.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Browser, WebApp, refused_with, spawn_web};

/// After a refusal: an error page, no session cookie, no session.
async fn assert_nobody_signed_in(page: &crate::helpers::Page, browser: &Browser) {
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    assert!(
        page.body.contains("Sign-in failed") || page.body.contains("Not a page of this site"),
        "{}",
        page.body
    );
    assert!(
        !page
            .set_cookies()
            .iter()
            .any(|c| c.starts_with("countersign=")),
        "{:?}",
        page.set_cookies()
    );
    assert!(browser.cookie("countersign").is_none());
    assert!(!browser.signed_in().await);
}

fn replace_param(url: &str, name: &str, value: &str) -> String {
    let mut parsed = url::Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .into_owned()
        .map(|(k, v)| {
            if k == name {
                (k, value.to_owned())
            } else {
                (k, v)
            }
        })
        .collect();
    parsed.query_pairs_mut().clear().extend_pairs(pairs);
    parsed.to_string()
}

fn param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn signs_in_end_to_end_against_the_real_provider() {
    let app = spawn_web().await;
    let browser = Browser::new(&app);
    let start = browser.start_sign_in("idp", Some("/requests?x=1")).await;
    assert!(start.starts_with(app.provider.issuer()), "{start}");
    // Code flow with PKCE S256, state, nonce, the exact redirect URI and the scopes.
    assert_eq!(param(&start, "response_type").as_deref(), Some("code"));
    assert_eq!(
        param(&start, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(param(&start, "code_challenge").map(|c| c.len()), Some(43));
    assert!(param(&start, "state").is_some_and(|s| s.len() >= 22));
    assert!(param(&start, "nonce").is_some_and(|s| s.len() >= 22));
    assert_eq!(
        param(&start, "redirect_uri"),
        Some(format!("{}/auth/callback", app.base))
    );
    assert!(param(&start, "scope").is_some_and(|s| s.split(' ').any(|x| x == "openid")));
    let binding = browser
        .cookie("countersign-login")
        .expect("a pre-login cookie");

    let callback = browser.authorize(&app, &start, "bob").await;
    assert_eq!(
        param(&callback, "iss").as_deref(),
        Some(app.provider.issuer())
    );
    let landed = browser.get(&callback).await;
    assert_eq!(landed.status, StatusCode::SEE_OTHER, "{}", landed.body);
    assert_eq!(landed.location(), "/requests?x=1");
    let cookies = landed.set_cookies();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("countersign="))
        .expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(session.contains(attribute), "{session}");
    }
    assert!(
        !session.contains("Max-Age") && !session.contains("Expires"),
        "{session}"
    );
    assert!(
        cookies.iter().any(|c| c.starts_with("countersign-login=;")),
        "{cookies:?}"
    );

    let inbox = browser.get("/").await;
    assert_eq!(inbox.status, StatusCode::OK);
    assert!(inbox.body.contains("Bob Baker"), "{}", inbox.body);
    assert!(inbox.body.contains("Needs you"));

    // The session holds the verified identity, its provider session and a sealed refresh token.
    let record = crate::helpers::session_of(&app, &browser).await.unwrap();
    assert_eq!(record.principal.identity().issuer, "idp");
    assert_eq!(record.principal.identity().subject, "bob");
    assert_eq!(record.principal.groups(), ["sre"]);
    assert!(record.principal.auth_time().is_some());
    let sealed = record
        .refresh_token
        .expect("the provider gives refresh tokens");
    assert!(!String::from_utf8_lossy(&sealed).contains("rt"));
    assert_eq!(record.id_hash.len(), 64);
    assert_ne!(record.id_hash, browser.cookie("countersign").unwrap());
    assert!(browser.cookie("countersign-login").is_none());
    let _ = binding;

    let events = crate::helpers::audit_actions(&app).await;
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "auth.login" && e["actor"] == "bob"),
        "{events:?}"
    );
}

#[tokio::test]
async fn the_login_page_offers_every_issuer_and_starts_at_once_with_one() {
    let app = spawn_web().await;
    let browser = Browser::new(&app);
    let page = browser.get("/login").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Continue with idp"), "{}", page.body);
    assert!(page.body.contains("Continue with stub"));
    assert!(
        page.body.contains("href=\"/login?issuer=idp\""),
        "{}",
        page.body
    );
    // A page that needs a session sends the browser to sign in and come back.
    let page = browser
        .get("/requests/req_01JZZZZZZZZZZZZZZZZZZZZZZZ")
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(
        page.location(),
        "/login?return_to=%2Frequests%2Freq_01JZZZZZZZZZZZZZZZZZZZZZZZ"
    );
    let chooser = browser.get(page.location()).await;
    assert!(
        chooser.body.contains("return_to=%2Frequests%2Freq_01J"),
        "{}",
        chooser.body
    );
    // An unknown issuer is a clear 404.
    let page = browser.get("/login?issuer=nope").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.body.contains("no sign-in issuer"));
}

#[tokio::test]
async fn a_wrong_or_replayed_state_signs_nobody_in() {
    let app = spawn_web().await;
    let browser = Browser::new(&app);
    let start = browser.start_sign_in("idp", None).await;
    let callback = browser.authorize(&app, &start, "bob").await;

    // A state we never issued.
    let forged = replace_param(
        &callback,
        "state",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    );
    let page = browser.get(&forged).await;
    assert_nobody_signed_in(&page, &browser).await;
    assert!(refused_with(&app, "unknown_state").await);

    // No state at all.
    let page = browser
        .get(&format!("{}/auth/callback?code=x", app.base))
        .await;
    assert_nobody_signed_in(&page, &browser).await;
    assert!(refused_with(&app, "missing_state").await);

    // The real callback works once...
    let page = browser.get(&callback).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert!(browser.signed_in().await);
    // ...and never again, even in the same browser.
    let other = Browser::new(&app);
    other.plant(
        "countersign-login",
        &browser
            .cookie("countersign-login")
            .unwrap_or_else(|| "x".repeat(43)),
    );
    let page = other.get(&callback).await;
    assert_nobody_signed_in(&page, &other).await;
    let replayed = browser.get(&callback).await;
    assert_eq!(replayed.status, StatusCode::BAD_REQUEST);
    assert!(replayed.body.contains("already used"), "{}", replayed.body);
}

#[tokio::test]
async fn a_callback_from_another_browser_is_refused() {
    let app = spawn_web().await;
    let victim = Browser::new(&app);
    let attacker = Browser::new(&app);
    // The attacker starts a sign-in and completes it at the provider as themselves...
    let start = attacker.start_sign_in("idp", None).await;
    let callback = attacker.authorize(&app, &start, "bob").await;
    // ...then makes the victim's browser follow the callback (login CSRF).
    let page = victim.get(&callback).await;
    assert_nobody_signed_in(&page, &victim).await;
    assert!(refused_with(&app, "browser_mismatch").await);
    // The transaction is spent: the attacker cannot use it either.
    let page = attacker.get(&callback).await;
    assert_nobody_signed_in(&page, &attacker).await;

    // A victim with a pre-login cookie of their own is refused the same way.
    let start = victim.start_sign_in("idp", None).await;
    let _ = start;
    let start = attacker.start_sign_in("idp", None).await;
    let callback = attacker.authorize(&app, &start, "bob").await;
    let page = victim.get(&callback).await;
    assert_nobody_signed_in(&page, &victim).await;
}

#[tokio::test]
async fn a_mismatched_iss_is_refused_before_the_code_is_redeemed() {
    let app = spawn_web().await;
    // The real provider: the response's iss is altered.
    let browser = Browser::new(&app);
    let start = browser.start_sign_in("idp", None).await;
    let callback = browser.authorize(&app, &start, "bob").await;
    let mixed = replace_param(&callback, "iss", app.stub.issuer());
    let page = browser.get(&mixed).await;
    assert_nobody_signed_in(&page, &browser).await;
    assert!(refused_with(&app, "iss_mismatch").await);

    // The stub answers with the real provider's iss (a mix-up): its token endpoint is never
    // called. A missing iss from a provider that promises one is refused too.
    let browser = Browser::new(&app);
    app.stub.set_response_iss(app.provider.issuer());
    let start = browser.start_sign_in("stub", None).await;
    let callback = browser.authorize(&app, &start, "mallory").await;
    let page = browser.get(&callback).await;
    assert_nobody_signed_in(&page, &browser).await;
    assert_eq!(app.stub.token_calls(), 0);

    app.stub.honest();
    let start = browser.start_sign_in("stub", None).await;
    let callback = browser.authorize(&app, &start, "mallory").await;
    let mut url = url::Url::parse(&callback).unwrap();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .into_owned()
        .filter(|(k, _)| k != "iss")
        .collect();
    url.query_pairs_mut().clear().extend_pairs(kept);
    let page = browser.get(url.as_str()).await;
    assert_nobody_signed_in(&page, &browser).await;
    assert!(refused_with(&app, "iss_missing").await);
    assert_eq!(app.stub.token_calls(), 0);
}

#[tokio::test]
async fn a_wrong_nonce_is_refused() {
    let app = spawn_web().await;
    let browser = Browser::new(&app);
    // The authorization request is tampered with on its way to the provider: the code is
    // bound to our PKCE challenge, but the ID token carries another nonce.
    let start = browser.start_sign_in("idp", None).await;
    let tampered = replace_param(&start, "nonce", "attacker-chosen-nonce-value");
    let callback = browser.authorize(&app, &tampered, "bob").await;
    let page = browser.get(&callback).await;
    assert_nobody_signed_in(&page, &browser).await;
    assert!(refused_with(&app, "nonce_mismatch").await);

    // The stub: the ID token has another nonce, or none.
    for mutation in [Some("0123456789"), None] {
        app.stub.mutate(move |_, claims| match mutation {
            Some(n) => {
                claims.insert("nonce".into(), n.into());
            }
            None => {
                claims.remove("nonce");
            }
        });
        let browser = Browser::new(&app);
        let start = browser.start_sign_in("stub", None).await;
        let callback = browser.authorize(&app, &start, "mallory").await;
        let page = browser.get(&callback).await;
        assert_nobody_signed_in(&page, &browser).await;
    }
}

#[tokio::test]
async fn an_id_token_for_another_audience_is_refused() {
    let app = spawn_web().await;
    let cases: Vec<(&str, Value)> = vec![
        ("another client", json!("someone-else")),
        (
            "ours and an untrusted one",
            json!(["stub-web", "someone-else"]),
        ),
        ("none", Value::Null),
    ];
    for (name, aud) in cases {
        app.stub.mutate(move |_, claims| {
            if aud.is_null() {
                claims.remove("aud");
            } else {
                claims.insert("aud".into(), aud.clone());
            }
        });
        let browser = Browser::new(&app);
        let start = browser.start_sign_in("stub", None).await;
        let callback = browser.authorize(&app, &start, "mallory").await;
        let page = browser.get(&callback).await;
        assert_nobody_signed_in(&page, &browser).await;
        assert!(refused_with(&app, "wrong_audience").await, "{name}");
    }
    // azp naming another client.
    app.stub.mutate(|_, claims| {
        claims.insert("azp".into(), "someone-else".into());
    });
    let browser = Browser::new(&app);
    let start = browser.start_sign_in("stub", None).await;
    let callback = browser.authorize(&app, &start, "mallory").await;
    assert_nobody_signed_in(&browser.get(&callback).await, &browser).await;
}

#[tokio::test]
async fn broken_id_tokens_are_refused() {
    let app = spawn_web().await;
    type Mutation = Box<
        dyn Fn(&mut serde_json::Map<String, Value>, &mut serde_json::Map<String, Value>)
            + Send
            + Sync,
    >;
    let now = app.engine.now().timestamp();
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "alg none",
            Box::new(|h, _| {
                h.insert("alg".into(), "none".into());
            }),
        ),
        (
            "another issuer",
            Box::new(|_, c| {
                c.insert("iss".into(), "http://127.0.0.1:1".into());
            }),
        ),
        (
            "expired",
            Box::new(move |_, c| {
                c.insert("exp".into(), (now - 600).into());
            }),
        ),
        (
            "issued a week ago",
            Box::new(move |_, c| {
                c.insert("iat".into(), (now - 7 * 86_400).into());
            }),
        ),
        (
            "issued in the future",
            Box::new(move |_, c| {
                c.insert("iat".into(), (now + 3600).into());
            }),
        ),
        (
            "no subject",
            Box::new(|_, c| {
                c.remove("sub");
            }),
        ),
        (
            "unknown key",
            Box::new(|h, _| {
                h.insert("kid".into(), "no-such-key".into());
            }),
        ),
        (
            "key in the header",
            Box::new(|h, _| {
                h.insert("jku".into(), "http://127.0.0.1:1/keys".into());
            }),
        ),
    ];
    for (name, mutation) in cases {
        app.stub.mutate(mutation);
        let browser = Browser::new(&app);
        let start = browser.start_sign_in("stub", None).await;
        let callback = browser.authorize(&app, &start, "mallory").await;
        let page = browser.get(&callback).await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{name}: {}",
            page.body
        );
        assert!(!browser.signed_in().await, "{name}");
    }
    // The honest stub signs in.
    app.stub.honest();
    let browser = Browser::new(&app);
    browser.sign_in(&app, "stub", "mallory").await;
    assert!(browser.signed_in().await);
}

#[tokio::test]
async fn return_to_only_accepts_local_paths() {
    let app = spawn_web().await;
    for bad in [
        "//evil.example",
        "/\\evil.example",
        "https:evil.example",
        "https://evil.example/",
        "%2F%2Fevil.example",
        "/%2F%2Fevil.example",
        "javascript:alert(1)",
    ] {
        let browser = Browser::new(&app);
        let encoded: String = url::form_urlencoded::byte_serialize(bad.as_bytes()).collect();
        let page = browser
            .get(&format!("/login?issuer=idp&return_to={encoded}"))
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{bad}: {}", page.body);
        assert!(page.location().is_empty(), "{bad}");
        assert!(browser.cookie("countersign-login").is_none(), "{bad}");
        assert_nobody_signed_in(&page, &browser).await;
    }
    assert!(refused_with(&app, "return_to_refused").await);
    // A stored return_to is re-checked at the callback; a good one is honoured.
    let browser = Browser::new(&app);
    let start = browser.start_sign_in("idp", Some("/new")).await;
    let callback = browser.authorize(&app, &start, "alice").await;
    let page = browser.get(&callback).await;
    assert_eq!(page.location(), "/new");
}

#[tokio::test]
async fn a_provider_error_is_shown_as_text_and_signs_nobody_in() {
    let app: WebApp = spawn_web().await;
    let browser = Browser::new(&app);
    let start = browser.start_sign_in("idp", None).await;
    let state = param(&start, "state").unwrap();
    let page = browser
        .get(&format!(
            "/auth/callback?state={state}&iss={}&error=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
            url::form_urlencoded::byte_serialize(app.provider.issuer().as_bytes())
                .collect::<String>()
        ))
        .await;
    assert_nobody_signed_in(&page, &browser).await;
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
    assert!(page.body.contains("&#60;script&#62;"), "{}", page.body);
    // Tokens in the front channel are refused outright.
    let page = browser
        .get("/auth/callback?state=x&code=y&id_token=z")
        .await;
    assert_nobody_signed_in(&page, &browser).await;
    assert!(refused_with(&app, "token_in_callback").await);
}
