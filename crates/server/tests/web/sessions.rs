//! Sessions: a new id at every sign-in (a planted cookie is dead afterwards), idle and
//! absolute timeouts on an injected clock, logout that ends the session server-side (and at the
//! provider), back-channel logout, and claims renewed with the refresh token.

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    Browser, Options, audit_actions, refused_with, session_of, spawn_web, spawn_with,
};

#[tokio::test]
async fn a_planted_session_cookie_is_dead_after_sign_in() {
    let app = spawn_web().await;
    // The attacker has a session of their own and plants its cookie in the victim's browser.
    let attacker = Browser::new(&app);
    attacker.sign_in(&app, "idp", "frank").await;
    let planted = attacker.cookie("countersign").unwrap();
    let victim = Browser::new(&app);
    victim.plant("countersign", &planted);
    victim.sign_in(&app, "idp", "bob").await;
    let issued = victim.cookie("countersign").unwrap();
    assert_ne!(issued, planted, "sign-in must issue a new session id");
    // The planted id was ended with the sign-in: it works for nobody any more.
    assert!(!attacker.signed_in().await);
    assert!(victim.signed_in().await);
    let me = victim.get("/").await;
    assert!(me.body.contains("Bob Baker"), "{}", me.body);

    // A made-up cookie is simply not a session, and signing in replaces it.
    let browser = Browser::new(&app);
    browser.plant("countersign", &"A".repeat(43));
    assert!(!browser.signed_in().await);
    browser.sign_in(&app, "idp", "alice").await;
    assert_ne!(browser.cookie("countersign").unwrap(), "A".repeat(43));

    // Signing in again (another person, same browser) rotates the id too.
    let before = browser.cookie("countersign").unwrap();
    browser.sign_in(&app, "idp", "carol").await;
    let after = browser.cookie("countersign").unwrap();
    assert_ne!(before, after);
    let stale = Browser::new(&app);
    stale.plant("countersign", &before);
    assert!(!stale.signed_in().await);
}

#[tokio::test]
async fn the_idle_timeout_ends_a_session() {
    let app = spawn_web().await;
    let browser = Browser::new(&app);
    browser.sign_in(&app, "idp", "bob").await;
    assert!(browser.signed_in().await);
    app.clock.advance(Duration::minutes(29));
    assert!(
        browser.signed_in().await,
        "29 minutes idle is within the default 30"
    );
    app.clock.advance(Duration::minutes(31));
    assert!(!browser.signed_in().await, "31 minutes idle ends it");
    assert!(
        session_of(&app, &browser).await.is_none(),
        "deleted server-side"
    );
    let events = audit_actions(&app).await;
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "auth.logout" && e["detail"]["reason"] == "idle_timeout"),
        "{events:?}"
    );
}

#[tokio::test]
async fn activity_extends_the_idle_timeout_but_not_the_lifetime() {
    let app = spawn_with(Options {
        server: "session_idle_timeout = \"30m\"\nsession_max_lifetime = \"45m\"",
        ..Default::default()
    })
    .await;
    let browser = Browser::new(&app);
    browser.sign_in(&app, "idp", "bob").await;
    app.clock.advance(Duration::minutes(20));
    assert!(browser.signed_in().await);
    app.clock.advance(Duration::minutes(20));
    assert!(browser.signed_in().await, "40 minutes, active every 20");
    app.clock.advance(Duration::minutes(10));
    assert!(
        !browser.signed_in().await,
        "50 minutes is past the 45-minute lifetime"
    );
    let events = audit_actions(&app).await;
    assert!(
        events
            .iter()
            .any(|e| e["detail"]["reason"] == "session_lifetime")
    );
}

#[tokio::test]
async fn logout_ends_the_session_server_side_and_at_the_provider() {
    let app = spawn_web().await;
    let browser = Browser::new(&app);
    browser.sign_in(&app, "idp", "bob").await;
    let cookie = browser.cookie("countersign").unwrap();
    let record = session_of(&app, &browser).await.unwrap();
    let inbox = browser.get("/").await;
    // GET /logout only asks; the POST needs the form's token.
    let confirm = browser.get("/logout").await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(browser.signed_in().await);
    let page = browser.post("/logout", &[("csrf", &inbox.csrf())]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let end = url::Url::parse(page.location()).unwrap();
    assert!(end.as_str().starts_with(app.provider.issuer()), "{end}");
    let q: std::collections::HashMap<String, String> = end.query_pairs().into_owned().collect();
    assert_eq!(
        q.get("id_token_hint"),
        record
            .id_token
            .as_ref()
            .map(|t| t.expose().to_owned())
            .as_ref()
    );
    assert_eq!(
        q.get("client_id").map(String::as_str),
        Some("countersign-web")
    );
    assert_eq!(
        q.get("post_logout_redirect_uri"),
        Some(&format!("{}/login", app.base))
    );
    assert!(
        page.set_cookies()
            .iter()
            .any(|c| c.starts_with("countersign=;"))
    );
    // The session is gone server-side: the old cookie, replayed, is nobody.
    let replay = Browser::new(&app);
    replay.plant("countersign", &cookie);
    assert!(!replay.signed_in().await);
    assert!(
        app.state
            .sessions
            .store()
            .get_session(&record.id_hash)
            .await
            .unwrap()
            .is_none()
    );
    // The provider accepts the end-session request and comes back to our login page.
    let outcome = app
        .provider
        .end_session(&browser.http, end.as_str())
        .await
        .unwrap();
    match outcome {
        countersign_testkit::EndSession::Redirected(url) => {
            assert!(
                url.as_str().starts_with(&format!("{}/login", app.base)),
                "{url}"
            );
        }
        other => panic!("expected the provider to return to countersign, got {other:?}"),
    }
    let events = audit_actions(&app).await;
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "auth.logout" && e["detail"]["reason"] == "signed_out")
    );
}

#[tokio::test]
async fn back_channel_logout_from_the_provider_ends_the_session() {
    let app = spawn_web().await;
    let browser = Browser::new(&app);
    browser.sign_in(&app, "idp", "bob").await;
    let record = session_of(&app, &browser).await.unwrap();
    assert!(record.sid.is_some(), "the provider names its session (sid)");
    // The person signs out at the provider, not here: the provider tells us.
    let outcome = app
        .provider
        .end_session(
            &browser.http,
            &format!("{}/session/end", app.provider.issuer()),
        )
        .await
        .unwrap();
    assert!(
        matches!(outcome, countersign_testkit::EndSession::SignedOut),
        "{outcome:?}"
    );
    // Delivery is server to server; give it a moment.
    let mut ended = false;
    for _ in 0..50 {
        if session_of(&app, &browser).await.is_none() {
            ended = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        ended,
        "back-channel logout ended the session; provider log:\n{}",
        app.provider.output()
    );
    assert!(!browser.signed_in().await);
    let events = audit_actions(&app).await;
    assert!(
        events
            .iter()
            .any(|e| e["detail"]["reason"] == "backchannel_logout")
    );
}

#[tokio::test]
async fn back_channel_logout_tokens_are_validated() {
    let app = spawn_web().await;
    let browser = Browser::new(&app);
    browser.sign_in(&app, "stub", "mallory").await;
    assert!(browser.signed_in().await);
    let record = session_of(&app, &browser).await.unwrap();
    assert_eq!(record.sid.as_deref(), Some(app.stub.sid()));
    let http = reqwest::Client::new();
    let url = format!("{}/auth/backchannel-logout", app.base);
    let send = |token: String| {
        let http = http.clone();
        let url = url.clone();
        async move {
            http.post(&url)
                .form(&[("logout_token", token)])
                .send()
                .await
                .unwrap()
        }
    };
    let logout_header = json!({"typ": "logout+jwt"});
    type Change = Box<dyn Fn(&mut serde_json::Map<String, Value>, &mut Value)>;
    let now = app.engine.now().timestamp();
    let cases: Vec<(&str, Change)> = vec![
        ("alg none", Box::new(|_, h| h["alg"] = "none".into())),
        (
            "no typ",
            Box::new(|_, h| {
                h.as_object_mut().unwrap().remove("typ");
            }),
        ),
        ("id token typ", Box::new(|_, h| h["typ"] = "JWT".into())),
        (
            "no events",
            Box::new(|c, _| {
                c.remove("events");
            }),
        ),
        (
            "wrong event",
            Box::new(|c, _| {
                c.insert(
                    "events".into(),
                    json!({"http://schemas.openid.net/event/foobar": {}}),
                );
            }),
        ),
        (
            "nonce",
            Box::new(|c, _| {
                c.insert("nonce".into(), "n".into());
            }),
        ),
        (
            "wrong iss",
            Box::new(|c, _| {
                c.insert("iss".into(), "http://127.0.0.1:1".into());
            }),
        ),
        (
            "wrong aud",
            Box::new(|c, _| {
                c.insert("aud".into(), "another-client".into());
            }),
        ),
        (
            "neither sub nor sid",
            Box::new(|c, _| {
                c.remove("sub");
                c.remove("sid");
            }),
        ),
        (
            "old iat",
            Box::new(move |c, _| {
                c.insert("iat".into(), (now - 86_400).into());
            }),
        ),
        (
            "expired",
            Box::new(move |c, _| {
                c.insert("exp".into(), (now - 600).into());
            }),
        ),
        (
            "no jti",
            Box::new(|c, _| {
                c.remove("jti");
            }),
        ),
    ];
    for (name, change) in cases {
        let mut claims = app.stub.logout_claims();
        let mut header = logout_header.clone();
        change(&mut claims, &mut header);
        let response = send(app.stub.sign(header, Value::Object(claims))).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{name}");
        assert_eq!(response.headers()["cache-control"], "no-store", "{name}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{name}");
        assert!(browser.signed_in().await, "{name} must not end the session");
    }
    // A bad signature, and garbage.
    let token = app.stub.sign(
        logout_header.clone(),
        Value::Object(app.stub.logout_claims()),
    );
    let (input, _) = token.rsplit_once('.').unwrap();
    let forged = format!("{input}.{}", "A".repeat(86));
    assert_eq!(send(forged).await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        send("not-a-token".into()).await.status(),
        StatusCode::BAD_REQUEST
    );
    let missing = http.post(&url).form(&[("x", "y")]).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    assert!(browser.signed_in().await);
    assert!(refused_with(&app, "invalid_logout_token").await);

    // A valid token for another provider session: 200, nothing ends.
    let mut other = app.stub.logout_claims();
    other.insert("sid".into(), "some-other-sid".into());
    let response = send(app.stub.sign(logout_header.clone(), Value::Object(other))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(browser.signed_in().await);

    // The valid token: 200, no-store, the session is gone.
    let response = send(
        app.stub
            .sign(logout_header, Value::Object(app.stub.logout_claims())),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert!(!browser.signed_in().await);
}

#[tokio::test]
async fn claims_are_renewed_with_the_refresh_token() {
    let app = spawn_web().await;
    let browser = Browser::new(&app);
    browser.sign_in(&app, "stub", "mallory").await;
    let first = session_of(&app, &browser).await.unwrap();
    assert_eq!(first.principal.groups(), ["sre"]);
    // The provider changes mallory's groups; the ID token (5 minutes) expires.
    app.stub.set_claim("groups", json!(["security"]));
    app.clock.advance(Duration::minutes(6));
    assert!(browser.signed_in().await);
    let renewed = session_of(&app, &browser).await.unwrap();
    assert_eq!(renewed.principal.groups(), ["security"], "claims renewed");
    assert_eq!(
        renewed.principal.auth_time(),
        first.principal.auth_time(),
        "auth_time kept"
    );
    assert_eq!(app.stub.refresh_calls(), 1);
    assert_ne!(renewed.id_token, first.id_token);
    // A provider that refuses the refresh token ends the session.
    app.stub.refuse_refresh();
    app.clock.advance(Duration::minutes(6));
    assert!(!browser.signed_in().await);
    let events = audit_actions(&app).await;
    assert!(
        events
            .iter()
            .any(|e| e["detail"]["reason"] == "refresh_refused")
    );
}

#[tokio::test]
async fn the_api_accepts_a_session_for_reads_only() {
    let app = spawn_web().await;
    let browser = Browser::new(&app);
    browser.sign_in(&app, "idp", "alice").await;
    let read = browser
        .http
        .get(format!("{}/api/v1/requests?role=requester", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let write = browser
        .http
        .post(format!("{}/api/v1/requests", app.base))
        .json(&json!({"gate": "db-session", "params": {"database": "orders", "access": "read"}, "reason": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        write.status(),
        StatusCode::UNAUTHORIZED,
        "writes need a bearer token"
    );
    // API reads do not keep a session alive.
    let before = session_of(&app, &browser).await.unwrap().last_seen_at;
    app.clock.advance(Duration::minutes(5));
    let read = browser
        .http
        .get(format!("{}/api/v1/gates", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(
        session_of(&app, &browser).await.unwrap().last_seen_at,
        before
    );
    // Nor do the live script's page refreshes; a page the person opens does.
    let refresh = browser
        .http
        .get(format!("{}/", app.base))
        .header("x-countersign-live", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status(), StatusCode::OK);
    assert_eq!(
        session_of(&app, &browser).await.unwrap().last_seen_at,
        before
    );
    assert!(browser.signed_in().await);
    assert_eq!(
        session_of(&app, &browser).await.unwrap().last_seen_at,
        app.engine.now()
    );
}

#[tokio::test]
async fn the_sweeper_purges_idle_sessions() {
    let app = spawn_web().await;
    let browser = Browser::new(&app);
    browser.sign_in(&app, "idp", "bob").await;
    let record = session_of(&app, &browser).await.unwrap();
    app.state.sessions.purge(app.engine.now()).await;
    assert!(
        session_of(&app, &browser).await.is_some(),
        "a live session stays"
    );
    app.clock.advance(Duration::minutes(31));
    app.state.sessions.purge(app.engine.now()).await;
    let gone = app
        .state
        .sessions
        .store()
        .get_session(&record.id_hash)
        .await
        .unwrap();
    assert!(
        gone.is_none(),
        "an idle session is deleted without being touched"
    );
}
