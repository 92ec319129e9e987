//! A real browser: headless Chromium over WebDriver, against an app wired like the sandbox
//! (the built-in development provider with its user picker at `/dev-idp`). alice signs in and
//! asks for a database session; bob, in a second browser, sees it appear in his inbox without
//! reloading and approves it; alice's page turns approved by itself. Screenshots of the pages
//! are kept under `target/web-screenshots/`.

use std::path::PathBuf;
use std::sync::Arc;

use countersign_config::DEMO_GATES;
use countersign_dev_idp::DevIdpConfig;

use crate::webdriver::{Driver, Session};

/// The request page after a successful creation.
const CREATED: &str = "document.querySelector('.notice') && document.querySelector('.notice').textContent.includes('Your request is created')";
/// The request page after a recorded decision.
const RECORDED: &str = "document.querySelector('.notice') && document.querySelector('.notice').textContent.includes('Your approval is recorded')";

fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("web-screenshots")
}

/// The app as `countersign dev` wires it, on a port of its own.
async fn sandbox() -> (String, tempfile::TempDir) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("sandbox.db").display());
    let text = format!(
        r#"
[server]
public_url = "{base}"
database = "{db}"
key_encryption_key = "Y291bnRlcnNpZ24gYnJvd3NlciB0ZXN0cyBrZXkhISE="

[[issuers]]
name = "dev"
url = "{base}/dev-idp"
client_id = "countersign-web"
client_secret = "dev-web-secret"
audiences = ["countersign"]
groups_claim = "groups"

{DEMO_GATES}
"#
    );
    let settings =
        countersign_config::load_str(&text, "sandbox.toml", &countersign_config::Env::empty())
            .unwrap_or_else(|e| panic!("{e}"));
    let people = DevIdpConfig::new(format!("{base}/dev-idp"), "countersign")
        .with_web_redirect_uri(format!("{base}/auth/callback"))
        .with_web_post_logout_redirect_uri(format!("{base}/login"));
    let routes = axum::Router::new().nest("/dev-idp", countersign_dev_idp::router(people));
    let app = countersign_server::Application::build(
        settings,
        countersign_server::BuildOptions {
            listener: Some(listener),
            extra_routes: Some(routes),
            clock: Arc::new(countersign_server::SystemClock),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    app.spawn();
    (base, dir)
}

/// Signs `user` in through the login page and the development provider's user picker.
async fn sign_in(browser: &Session, base: &str, user: &str) {
    browser.goto(&format!("{base}/")).await;
    browser
        .click("a.button.primary[href^=\"/login?issuer=dev\"]")
        .await;
    browser
        .click(&format!("button[name=\"user\"][value=\"{user}\"]"))
        .await;
    browser.wait_for("h1", 10).await;
    browser
        .wait_until(&format!("location.href === '{base}/'"), 10)
        .await;
}

#[tokio::test]
async fn two_people_in_two_browsers_request_and_approve_live() {
    let driver = Driver::start().await;
    let (base, _database) = sandbox().await;
    let shots = screenshots();
    let alice = driver.session(1280, 900).await;
    let bob = driver.session(1280, 900).await;

    sign_in(&alice, &base, "alice").await;
    assert!(alice.text(".user .who").await.contains("Alice Adams"));
    sign_in(&bob, &base, "bob").await;
    assert_eq!(bob.text("h1").await, "Needs you");

    // alice asks for a production deploy first (it stays pending: it needs security too).
    alice.goto(&format!("{base}/new/deploy-prod")).await;
    alice.type_into("#p-service", "payments-api").await;
    alice.type_into("#p-version", "2.14.0").await;
    alice
        .type_into(
            "#reason",
            "Roll out the fix for INC-4821 (duplicate refunds)",
        )
        .await;
    alice.click("#submit").await;
    alice.wait_until(CREATED, 10).await;

    // bob's inbox is live; mark the page to prove it is never reloaded.
    bob.goto(&format!("{base}/")).await;
    bob.wait_until("document.querySelector('#live').dataset.state === 'on'", 10)
        .await;
    bob.execute("window.__notReloaded = 'yes'; return 1;").await;

    // alice asks for a database session.
    alice.goto(&format!("{base}/new/db-session")).await;
    alice.click("#p-database option[value=\"orders\"]").await;
    alice.click("#p-access option[value=\"read\"]").await;
    alice
        .type_into("#reason", "Check the refund rows for INC-4821")
        .await;
    alice.click("#submit").await;
    alice.wait_until(CREATED, 10).await;
    let url = alice.url().await;
    let id = url
        .trim_start_matches(&format!("{base}/requests/"))
        .trim_end_matches("?done=created")
        .to_owned();
    // The one-time notice is taken out of the address, so a reload does not repeat it.
    alice.wait_until("location.search === ''", 5).await;
    assert!(id.starts_with("req_"), "{url}");
    alice
        .wait_until("document.querySelector('#live').dataset.state === 'on'", 10)
        .await;
    alice
        .execute("window.__notReloaded = 'yes'; return 1;")
        .await;

    // It appears in bob's inbox without a reload.
    bob.wait_for(&format!("a[data-request=\"{id}\"]"), 15).await;
    bob.wait_until("window.__notReloaded === 'yes'", 1).await;
    bob.screenshot(&shots.join("inbox.png"), 1280).await;
    bob.screenshot(&shots.join("inbox-phone.png"), 375).await;
    bob.resize(1280, 900).await;

    // bob opens it and approves.
    bob.click(&format!("a[data-request=\"{id}\"]")).await;
    bob.wait_for("#approve", 10).await;
    assert!(bob.text("#digest").await.starts_with("sha256:"));
    bob.screenshot(&shots.join("request.png"), 1280).await;
    bob.screenshot(&shots.join("request-phone.png"), 375).await;
    bob.resize(1280, 900).await;
    bob.type_into("#comment", "Read-only is fine. Done by 17:00 please.")
        .await;
    bob.click("#approve").await;
    bob.wait_until(RECORDED, 10).await;
    assert_eq!(bob.text("#state").await, "approved");

    // alice's page turns approved by itself.
    alice
        .wait_until(
            "document.querySelector('#state').textContent.trim() === 'approved'",
            15,
        )
        .await;
    alice.wait_until("window.__notReloaded === 'yes'", 1).await;
    alice
        .screenshot(&shots.join("request-approved.png"), 1280)
        .await;

    // The deploy still waits, for security: a page with two rules, one met.
    bob.goto(&format!("{base}/")).await;
    bob.click("a.item").await;
    bob.wait_for("#approve", 10).await;
    bob.click("#approve").await;
    bob.wait_until(RECORDED, 10).await;
    bob.screenshot(&shots.join("request-partly-approved.png"), 1280)
        .await;
    alice.goto(&format!("{base}/requests")).await;
    alice.screenshot(&shots.join("my-requests.png"), 1280).await;
}
