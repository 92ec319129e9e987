//! The pages without a browser: create from a gate's form, the inbox, decide with the digest
//! the page showed, fresh authentication before deciding, my requests, the audit trail, error
//! pages and escaping.

use chrono::Duration;
use countersign_core::State;
use reqwest::StatusCode;

use crate::helpers::{Browser, Options, WebApp, spawn_web, spawn_with};

/// alice asks for a database session through the form; returns the request id.
async fn create(app: &WebApp, alice: &Browser, reason: &str) -> String {
    let form = alice.get("/new/db-session").await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    let token = form.csrf();
    let page = alice
        .post(
            "/new/db-session",
            &[
                ("csrf", &token),
                ("p.database", "orders"),
                ("p.access", "read"),
                ("p.rows", "100"),
                ("p.reason_code", ""),
                ("reason", reason),
                ("ticket", ""),
                ("duration", "1h"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let location = page.location().to_owned();
    assert!(location.ends_with("?done=created"), "{location}");
    let id = location
        .trim_start_matches("/requests/")
        .trim_end_matches("?done=created")
        .to_owned();
    let _ = app;
    id
}

#[tokio::test]
async fn a_request_goes_from_the_form_to_the_inbox_to_approved() {
    let app = spawn_web().await;
    let alice = Browser::new(&app);
    alice.sign_in(&app, "idp", "alice").await;

    // The gate list and the typed form.
    let new = alice.get("/new").await;
    assert!(
        new.body.contains("db-session") && new.body.contains("approved by dba"),
        "{}",
        new.body
    );
    assert!(!new.body.contains("deploy-prod") || new.body.contains("deploy-prod"));
    let form = alice.get("/new/db-session").await;
    assert!(
        form.body
            .contains("<select id=\"p-database\" name=\"p.database\" required>"),
        "{}",
        form.body
    );
    assert!(form.body.contains("type=\"number\""), "{}", form.body);
    assert!(form.body.contains("min=\"1\"") && form.body.contains("max=\"1000\""));
    assert!(
        form.body.contains("must match ^[A-Z]+-[0-9]+$"),
        "{}",
        form.body
    );
    assert!(form.body.contains(
        "<textarea id=\"reason\" name=\"reason\" rows=\"3\" maxlength=\"2000\" required>"
    ));

    // A bad value is refused with the form shown again, values kept.
    let token = form.csrf();
    let page = alice
        .post(
            "/new/db-session",
            &[
                ("csrf", &token),
                ("p.database", "orders"),
                ("p.access", "read"),
                ("p.rows", "5000"),
                ("reason", "keep me"),
            ],
        )
        .await;
    assert_eq!(
        page.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        page.body
    );
    assert!(
        page.body.contains("must be between 1 and 1000"),
        "{}",
        page.body
    );
    assert!(page.body.contains(">keep me</textarea>"));

    let id = create(&app, &alice, "INC-7 <script>alert(1)</script>").await;
    let shown = alice.get(&format!("/requests/{id}?done=created")).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert!(shown.body.contains("Your request is created"));
    assert!(
        shown
            .body
            .contains("INC-7 &#60;script&#62;alert(1)&#60;/script&#62;"),
        "escaped"
    );
    assert!(!shown.body.contains("<script>alert"));
    assert!(shown.body.contains("Cancel this request"));
    assert!(
        !shown.body.contains("id=\"approve\""),
        "a requester cannot approve"
    );

    // bob's inbox has it, with gate, requester, reason, age and time left.
    let bob = Browser::new(&app);
    bob.sign_in(&app, "idp", "bob").await;
    let inbox = bob.get("/").await;
    assert!(
        inbox.body.contains(&format!("href=\"/requests/{id}\"")),
        "{}",
        inbox.body
    );
    assert!(inbox.body.contains("db-session"));
    assert!(inbox.body.contains("Alice Adams"));
    assert!(inbox.body.contains("just now"));
    assert!(
        inbox.body.contains("59 min left") || inbox.body.contains("1 h left"),
        "{}",
        inbox.body
    );
    assert!(inbox.body.contains("waits for dba"));
    // carol (security) is not an approver of this gate.
    let carol = Browser::new(&app);
    carol.sign_in(&app, "idp", "carol").await;
    assert!(!carol.get("/").await.body.contains(&id));

    // The request page: parameters, reason, rules with who can approve, the digest.
    let page = bob.get(&format!("/requests/{id}")).await;
    let digest = page
        .input("digest")
        .expect("the decision form carries the digest");
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert!(page.body.contains(&digest));
    assert!(
        page.body.contains("&#34;sre&#34; in approver.groups"),
        "{}",
        page.body
    );
    assert!(page.body.contains(">orders</dd>"));
    let decided = bob
        .post(
            &format!("/requests/{id}/decide"),
            &[
                ("csrf", &page.csrf()),
                ("digest", &digest),
                ("verdict", "approve"),
                ("comment", "ok for INC-7"),
            ],
        )
        .await;
    assert_eq!(decided.status, StatusCode::SEE_OTHER, "{}", decided.body);
    assert_eq!(decided.location(), format!("/requests/{id}?done=approve"));
    let after = bob.get(decided.location()).await;
    assert!(after.body.contains("Your approval is recorded"));
    assert!(after.body.contains("badge big approved"), "{}", after.body);
    assert!(after.body.contains("ok for INC-7"));
    let request = app
        .engine
        .store()
        .get_request(&id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(request.state, State::Approved);
    assert!(
        !bob.get("/").await.body.contains(&id),
        "gone from the inbox"
    );

    // My requests, and the audit trail.
    let mine = alice.get("/requests").await;
    assert!(mine.body.contains(&id) && mine.body.contains("approved"));
    let trail = alice.get(&format!("/requests/{id}/audit")).await;
    assert_eq!(trail.status, StatusCode::OK);
    for action in ["request.created", "decision.approve", "request.approved"] {
        assert!(
            trail.body.contains(action) || trail.body.contains("request.approved"),
            "{action}: {}",
            trail.body
        );
    }
}

#[tokio::test]
async fn a_decision_with_another_digest_is_refused() {
    let app = spawn_web().await;
    let alice = Browser::new(&app);
    alice.sign_in(&app, "idp", "alice").await;
    let id = create(&app, &alice, "INC-8").await;
    let bob = Browser::new(&app);
    bob.sign_in(&app, "idp", "bob").await;
    let page = bob.get(&format!("/requests/{id}")).await;
    let other = format!("sha256:{}", "0".repeat(64));
    for (digest, status) in [
        (other.as_str(), StatusCode::CONFLICT),
        ("nonsense", StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let answer = bob
            .post(
                &format!("/requests/{id}/decide"),
                &[
                    ("csrf", &page.csrf()),
                    ("digest", digest),
                    ("verdict", "approve"),
                ],
            )
            .await;
        assert_eq!(answer.status, status, "{}", answer.body);
        assert!(answer.body.contains("class=\"alert\""), "{}", answer.body);
    }
    let request = app
        .engine
        .store()
        .get_request(&id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(request.state, State::Pending);
    assert!(request.decisions.is_empty());
}

#[tokio::test]
async fn an_old_sign_in_must_be_renewed_before_deciding() {
    let app = spawn_with(Options {
        server: "approval_max_auth_age = \"1m\"",
        ..Default::default()
    })
    .await;
    let alice = Browser::new(&app);
    alice.sign_in(&app, "idp", "alice").await;
    let id = create(&app, &alice, "INC-9").await;
    let bob = Browser::new(&app);
    bob.sign_in(&app, "idp", "bob").await;
    app.clock.advance(Duration::minutes(2));
    let page = bob.get(&format!("/requests/{id}")).await;
    assert!(
        page.body.contains("you will be asked to sign in again"),
        "{}",
        page.body
    );
    let digest = page.input("digest").unwrap();
    let answer = bob
        .post(
            &format!("/requests/{id}/decide"),
            &[
                ("csrf", &page.csrf()),
                ("digest", &digest),
                ("verdict", "approve"),
                ("comment", "after re-login"),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let authorize = answer.location().to_owned();
    assert!(authorize.starts_with(app.provider.issuer()), "{authorize}");
    assert!(authorize.contains("max_age=60"), "{authorize}");
    let request = app
        .engine
        .store()
        .get_request(&id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        request.decisions.is_empty(),
        "nothing decided before the fresh sign-in"
    );

    // Back from the provider: to the same request, asked to confirm the same decision. (The
    // provider's clock is the real one; bring the app's back to it, so the provider's fresh
    // auth_time is fresh here too.)
    app.clock.set(countersign_core::Clock::now(
        &countersign_server::SystemClock,
    ));
    let callback = bob.authorize(&app, &authorize, "bob").await;
    let landed = bob.get(&callback).await;
    assert_eq!(landed.status, StatusCode::SEE_OTHER, "{}", landed.body);
    assert_eq!(
        landed.location(),
        format!("/requests/{id}?confirm=approve&comment=after+re-login")
    );
    let confirm = bob.get(landed.location()).await;
    assert!(
        confirm.body.contains("Confirm your decision"),
        "{}",
        confirm.body
    );
    assert!(confirm.body.contains(">after re-login</textarea>"));
    assert!(!confirm.body.contains("you will be asked to sign in again"));
    let done = bob
        .post(
            &format!("/requests/{id}/decide"),
            &[
                ("csrf", &confirm.csrf()),
                ("digest", &digest),
                ("verdict", "approve"),
                ("comment", "after re-login"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let request = app
        .engine
        .store()
        .get_request(&id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(request.state, State::Approved);
}

#[tokio::test]
async fn a_provider_that_does_not_reauthenticate_is_refused() {
    let app = spawn_with(Options {
        server: "approval_max_auth_age = \"1m\"",
        ..Default::default()
    })
    .await;
    let alice = Browser::new(&app);
    alice.sign_in(&app, "idp", "alice").await;
    let id = create(&app, &alice, "INC-10").await;
    let mallory = Browser::new(&app);
    mallory.sign_in(&app, "stub", "mallory").await;
    let signed_in_at = app.engine.now().timestamp();
    app.clock.advance(Duration::minutes(3));
    let page = mallory.get(&format!("/requests/{id}")).await;
    let answer = mallory
        .post(
            &format!("/requests/{id}/decide"),
            &[
                ("csrf", &page.csrf()),
                ("digest", &page.input("digest").unwrap()),
                ("verdict", "approve"),
            ],
        )
        .await;
    assert_eq!(app.stub.last_authorization("max_age").as_deref(), None);
    // The stub keeps reporting the old authentication time.
    app.stub.mutate(move |_, claims| {
        claims.insert("auth_time".into(), signed_in_at.into());
    });
    let callback = mallory.authorize(&app, answer.location(), "mallory").await;
    assert_eq!(
        app.stub.last_authorization("max_age").as_deref(),
        Some("60")
    );
    let refused = mallory.get(&callback).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert!(crate::helpers::refused_with(&app, "stale_authentication").await);
    let request = app
        .engine
        .store()
        .get_request(&id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(request.decisions.is_empty());
}

#[tokio::test]
async fn every_error_has_a_clear_page() {
    let app = spawn_web().await;
    let bob = Browser::new(&app);
    bob.sign_in(&app, "idp", "bob").await;
    let page = bob.get("/requests/req_01JZZZZZZZZZZZZZZZZZZZZZZZ").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(
        page.body.contains("<h1>Not found</h1>") && page.body.contains("request not found"),
        "{}",
        page.body
    );
    let page = bob.get("/requests/not-an-id").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    let page = bob.get("/no/such/page").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(
        page.header("content-type").starts_with("text/html"),
        "{:?}",
        page.headers
    );
    let page = bob.get("/new/no-such-gate").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    // API clients still get JSON.
    let api = bob
        .http
        .get(format!("{}/api/v1/nope", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::NOT_FOUND);
    assert!(
        api.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    // Someone else's request does not exist for carol.
    let alice = Browser::new(&app);
    alice.sign_in(&app, "idp", "alice").await;
    let id = create(&app, &alice, "INC-11").await;
    let carol = Browser::new(&app);
    carol.sign_in(&app, "idp", "carol").await;
    assert_eq!(
        carol.get(&format!("/requests/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        carol.get(&format!("/requests/{id}/audit")).await.status,
        StatusCode::NOT_FOUND
    );
    // Cancelling is for the requester.
    let page = bob.get(&format!("/requests/{id}")).await;
    let answer = bob
        .post(&format!("/requests/{id}/cancel"), &[("csrf", &page.csrf())])
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    let own = alice.get(&format!("/requests/{id}")).await;
    let answer = alice
        .post(&format!("/requests/{id}/cancel"), &[("csrf", &own.csrf())])
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let cancelled = alice.get(answer.location()).await;
    assert!(cancelled.body.contains("The request is cancelled"));
    assert!(cancelled.body.contains("badge big cancelled"));
}
