//! The README's promise, against the real binary: `countersign dev` starts a sandbox on
//! loopback, `countersign dev token USER` prints bearer tokens for it, and the documented
//! `deploy-prod` flow works end to end (alice or the CI workload requests, bob approves for
//! SRE, carol for security).

mod common;

use common::{Sandbox, run_cli};
use serde_json::{Value, json};

fn ids(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("a page has items: {page}"))
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_flow_alice_requests_bob_and_carol_approve() {
    let sandbox = Sandbox::start(&[]);
    let api = sandbox.api();
    let (alice, bob, carol) = tokio::join!(
        sandbox.token("alice"),
        sandbox.token("bob"),
        sandbox.token("carol")
    );

    let created = api.create_deploy_prod(&alice).await;
    assert_eq!(
        created.status,
        201,
        "{:?}\n{}",
        created.body,
        sandbox.output()
    );
    let request = created.body;
    assert_eq!(request["state"], "pending", "{request}");
    assert_eq!(request["gate"], "deploy-prod");
    assert_eq!(request["requester"]["subject"], "alice");
    assert_eq!(request["requester"]["kind"], "human");
    assert_eq!(request["waiting_for"], json!(["sre", "security"]));
    let id = request["id"].as_str().expect("an id").to_string();
    assert!(
        request["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{request}"
    );

    // The sandbox has its outbox viewer (signed out, it sends you to sign in first), and
    // says where it is.
    let viewer = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client")
        .get(format!("{}/dev/notifications", sandbox.url))
        .header("accept", "text/html")
        .send()
        .await
        .expect("the viewer answers");
    assert!(viewer.status().is_redirection(), "{}", viewer.status());
    assert!(sandbox.output().contains("/dev/notifications"));

    // Bob's inbox lists it; alice is no approver of deploy-prod, so hers does not.
    let inbox = api.get("/api/v1/requests?role=approver", Some(&bob)).await;
    assert_eq!(inbox.status, 200, "{:?}", inbox.body);
    assert!(ids(&inbox.body).contains(&id.as_str()), "{:?}", inbox.body);
    let alice_inbox = api
        .get("/api/v1/requests?role=approver", Some(&alice))
        .await;
    assert_eq!(alice_inbox.status, 200, "{:?}", alice_inbox.body);
    assert!(
        !ids(&alice_inbox.body).contains(&id.as_str()),
        "{:?}",
        alice_inbox.body
    );

    let after_bob = api.approve(&request, &bob).await;
    assert_eq!(after_bob.status, 200, "{:?}", after_bob.body);
    assert_eq!(after_bob.body["state"], "pending", "{:?}", after_bob.body);
    assert_eq!(after_bob.body["waiting_for"], json!(["security"]));

    let after_carol = api.approve(&request, &carol).await;
    assert_eq!(after_carol.status, 200, "{:?}", after_carol.body);
    assert_eq!(
        after_carol.body["state"], "approved",
        "{:?}",
        after_carol.body
    );
    assert_eq!(after_carol.body["approval"], "quorum");
    assert_eq!(after_carol.body["waiting_for"], json!([]));

    // And it reads back the same.
    let fetched = api
        .get(&format!("/api/v1/requests/{id}"), Some(&alice))
        .await;
    assert_eq!(fetched.status, 200, "{:?}", fetched.body);
    assert_eq!(fetched.body["state"], "approved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_that_was_not_shown_is_refused() {
    let sandbox = Sandbox::start(&[]);
    let api = sandbox.api();
    let (alice, bob) = tokio::join!(sandbox.token("alice"), sandbox.token("bob"));
    let created = api.create_deploy_prod(&alice).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let mut forged = created.body.clone();
    forged["digest"] = json!(format!("sha256:{}", "0".repeat(64)));
    let refused = api.approve(&forged, &bob).await;
    assert_eq!(refused.status / 100, 4, "{:?}", refused.body);
    assert!(
        refused.body["error"]["code"].is_string(),
        "{:?}",
        refused.body
    );
    let id = created.body["id"].as_str().expect("an id");
    let unchanged = api
        .get(&format!("/api/v1/requests/{id}"), Some(&alice))
        .await;
    assert_eq!(unchanged.body["state"], "pending");
    assert_eq!(unchanged.body["decisions"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_staging_is_auto_approved_for_alice() {
    let sandbox = Sandbox::start(&[]);
    let api = sandbox.api();
    let alice = sandbox.token("alice").await;
    let created = api
        .post(
            "/api/v1/requests",
            &alice,
            &json!({"gate": "deploy-staging", "params": {"service": "api"}}),
        )
        .await;
    assert_eq!(
        created.status,
        201,
        "{:?}\n{}",
        created.body,
        sandbox.output()
    );
    assert_eq!(created.body["state"], "approved", "{:?}", created.body);
    assert_eq!(created.body["approval"], "auto_approved");
    assert_eq!(created.body["requester"]["subject"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ci_workload_requests_deploy_prod() {
    let sandbox = Sandbox::start(&[]);
    let api = sandbox.api();
    let (ci, alice, bob, carol) = tokio::join!(
        sandbox.token("ci"),
        sandbox.token("alice"),
        sandbox.token("bob"),
        sandbox.token("carol")
    );
    let created = api.create_deploy_prod(&ci).await;
    assert_eq!(
        created.status,
        201,
        "{:?}\n{}",
        created.body,
        sandbox.output()
    );
    assert_eq!(created.body["state"], "pending", "{:?}", created.body);
    assert_eq!(created.body["requester"]["kind"], "workload");
    assert_eq!(created.body["waiting_for"], json!(["sre", "security"]));

    // The workload's token carries no team; security approves it all the same.
    let after_bob = api.approve(&created.body, &bob).await;
    assert_eq!(after_bob.body["waiting_for"], json!(["security"]));
    let after_carol = api.approve(&created.body, &carol).await;
    assert_eq!(after_carol.status, 200, "{:?}", after_carol.body);
    assert_eq!(
        after_carol.body["state"], "approved",
        "{:?}",
        after_carol.body
    );

    // A workload requests, never approves.
    let other = api.create_deploy_prod(&alice).await;
    assert_eq!(other.status, 201, "{:?}", other.body);
    let refused = api.approve(&other.body, &ci).await;
    assert_eq!(refused.status / 100, 4, "{:?}", refused.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_the_database_and_both_issuers_ready() {
    let sandbox = Sandbox::start(&[]);
    let api = sandbox.api();
    let health = api.get("/healthz", None).await;
    assert_eq!(health.status, 200, "{:?}", health.body);

    let ready = api.get("/readyz", None).await;
    assert_eq!(ready.status, 200, "{:?}\n{}", ready.body, sandbox.output());
    assert_eq!(ready.body["ready"], true, "{:?}", ready.body);
    assert_eq!(ready.body["database"]["ready"], true, "{:?}", ready.body);
    let issuers = ready.body["issuers"].as_array().expect("issuers");
    let mut names: Vec<&str> = issuers.iter().filter_map(|i| i["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["dev", "dev-ci"], "{:?}", ready.body);
    assert!(
        issuers.iter().all(|i| i["ready"] == true),
        "{:?}",
        ready.body
    );
    // The issuers are the sandbox's own, on loopback.
    assert!(
        issuers.iter().all(|i| i["url"]
            .as_str()
            .is_some_and(|u| u.starts_with(&sandbox.url))),
        "{:?}",
        ready.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_token_for_an_unknown_user_fails() {
    let sandbox = Sandbox::start(&[]);
    let out = run_cli(&["dev", "token", "mallory", "--server", &sandbox.url], &[]).await;
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("mallory"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_temporary_database_is_gone_after_the_sandbox_stops() {
    let mut sandbox = Sandbox::start(&[]);
    // Serve one call first: the sandbox installs its SIGTERM handler only once it serves, after
    // printing the banner, so a SIGTERM right after the banner kills it outright and leaves the
    // database behind (a known race in `countersign dev`).
    let health = sandbox.api().get("/healthz", None).await;
    assert_eq!(health.status, 200, "{:?}", health.body);
    let output = sandbox.output();
    let database = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("database"))
        .map(|rest| {
            rest.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_else(|| panic!("the banner names the database:\n{output}"));
    let file = database
        .strip_prefix("sqlite://")
        .unwrap_or_else(|| panic!("a sqlite URL: {database}"));
    let file = std::path::PathBuf::from(file);
    assert!(
        file.starts_with(sandbox.tmp()),
        "{file:?} is not under TMPDIR"
    );
    assert!(file.is_file(), "{file:?} exists while the sandbox runs");
    assert!(output.contains("temporary"), "{output}");

    let (status, killed) = sandbox.stop().expect("it was running");
    assert!(
        status.success() && !killed,
        "SIGTERM stops the sandbox cleanly: {status:?}, killed: {killed}\n{}",
        sandbox.output()
    );
    assert!(!file.exists(), "{file:?} outlived the sandbox");
    assert!(
        !file.parent().is_some_and(std::path::Path::exists),
        "its folder outlived the sandbox"
    );
}

#[tokio::test]
async fn dev_refuses_a_non_loopback_bind() {
    // If it did bind, it would run until `run_cli`'s timeout and fail there (and be killed).
    let out = run_cli(&["dev", "--bind", "10.0.0.1", "--port", "0"], &[]).await;
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("loopback"), "{stderr}");
    assert!(stderr.contains("10.0.0.1"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("sandbox is running"),
        "no banner when refused: {stdout}"
    );
}
