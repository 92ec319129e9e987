//! `request --wait`, `wait` and `run`: the exit code says how the request ended, and `run`
//! runs its command only after approval, with a grant token others can verify.

use std::time::Duration;

use crate::support::{CLI_TIMEOUT, World, request_id_in};

const DEPLOY: [&str; 8] = [
    "deploy-prod",
    "-p",
    "service=api",
    "-p",
    "version=1.4.2",
    "--reason",
    "hotfix INC-42",
    "--wait",
];

/// Waits for the "waiting for" line of a request being waited on; returns the request id.
async fn waiting_id(running: &mut crate::support::Running) -> String {
    let line = running
        .wait_for_stderr(|l| l.contains("waiting for"), CLI_TIMEOUT)
        .await;
    request_id_in(&line).unwrap_or_else(|| panic!("no request id in {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_wait_exits_0_once_two_teams_approve_in_parallel() {
    let world = World::start().await;
    let (alice, bob, carol) = tokio::join!(
        world.cli_as("alice"),
        world.cli_as("bob"),
        world.cli_as("carol")
    );
    let mut waiting = alice.args(["request"]).args(DEPLOY).spawn();
    let id = waiting_id(&mut waiting).await;
    assert!(waiting.stderr().contains("sre 0/1"), "{}", waiting.stderr());
    assert!(
        waiting
            .stderr()
            .contains(&format!("{}/requests/{id}", world.server)),
        "the request URL is shown: {}",
        waiting.stderr()
    );

    let (by_bob, by_carol) = tokio::join!(
        bob.args(["approve", &id, "--yes", "--comment", "lgtm"])
            .run(),
        carol.args(["approve", &id, "--yes"]).run()
    );
    by_bob.expect_code(0);
    by_carol.expect_code(0);

    let done = waiting.finish(Duration::from_secs(20)).await;
    done.expect_code(0);
    assert!(done.stdout.contains("approved"), "{done}");
    assert!(
        done.stderr.contains("Bob Baker (idp:bob) approved"),
        "{done}"
    );
    assert!(
        done.stderr.contains("Carol Chen (idp:carol) approved"),
        "{done}"
    );
    assert!(
        done.stderr
            .lines()
            .last()
            .is_some_and(|l| l.contains("approved")),
        "{done}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_wait_exits_2_when_an_approver_rejects() {
    let world = World::start().await;
    let (alice, bob, carol) = tokio::join!(
        world.cli_as("alice"),
        world.cli_as("bob"),
        world.cli_as("carol")
    );
    let mut waiting = alice
        .args(["request"])
        .args(DEPLOY)
        .args(["--output", "json"])
        .spawn();
    let id = waiting_id(&mut waiting).await;

    bob.args(["approve", &id, "--yes"])
        .run()
        .await
        .expect_code(0);
    carol
        .args(["reject", &id, "--yes", "--comment", "not during the freeze"])
        .run()
        .await
        .expect_code(0);

    let done = waiting.finish(Duration::from_secs(20)).await;
    done.expect_code(2);
    assert_eq!(done.json()["state"], "rejected", "{done}");
    assert!(
        done.stderr
            .contains("rejected by Carol Chen (idp:carol): not during the freeze"),
        "{done}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_exits_3_when_the_request_expires() {
    let world = World::start().await;
    let alice = world.cli_as("alice").await;
    let created = alice
        .clone()
        .args(["request", "quick", "--output", "json"])
        .run()
        .await;
    created.expect_code(0);
    let id = created.json()["id"].as_str().expect("an id").to_string();

    // A timeout shorter than the request's life: still pending, exit 1, and it says so.
    alice
        .clone()
        .args(["wait", &id, "--timeout", "1s"])
        .run()
        .await
        .expect_final_error(1, &["still pending after 1s", "countersign wait"]);

    let done = alice.args(["wait", &id]).run().await;
    done.expect_code(3);
    assert!(done.stdout.contains("expired"), "{done}");
    assert!(
        done.waited < Duration::from_secs(10),
        "the long poll wakes at expiry: {done}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_executes_the_command_after_approval_with_a_verifiable_token() {
    let world = World::start().await;
    // The requester signs in for real (browser + PKCE); the approvers use tokens.
    world.login_in_browser("alice").await.expect_code(0);
    let (bob, carol) = tokio::join!(world.cli_as("bob"), world.cli_as("carol"));
    let out = tempfile::tempdir().expect("a temp dir");
    let out_dir = out.path().display().to_string();

    let mut running = world
        .cli()
        .env("OUT_DIR", &out_dir)
        .args([
            "run",
            "deploy-prod",
            "-p",
            "service=api",
            "-p",
            "version=2.0.0",
            "--reason",
            "release",
            "--",
            "sh",
            "-c",
            r#"printf %s "$COUNTERSIGN_TOKEN" > "$OUT_DIR/token"; printf %s "$COUNTERSIGN_REQUEST_ID" > "$OUT_DIR/id"; echo ran; exit 7"#,
        ])
        .spawn();
    let id = waiting_id(&mut running).await;
    assert!(
        !out.path().join("token").exists(),
        "the command must not run before approval"
    );

    let (by_bob, by_carol) = tokio::join!(
        bob.args(["approve", &id, "--yes"]).run(),
        carol.args(["approve", &id, "--yes"]).run()
    );
    by_bob.expect_code(0);
    by_carol.expect_code(0);

    let done = running.finish(Duration::from_secs(30)).await;
    done.expect_code(7);
    assert_eq!(
        done.stdout.trim(),
        "ran",
        "the command's output passes through: {done}"
    );
    let token = std::fs::read_to_string(out.path().join("token")).expect("the command ran");
    let seen_id = std::fs::read_to_string(out.path().join("id")).expect("the command ran");
    assert_eq!(seen_id, id);
    assert!(
        !done.stderr.contains(&token),
        "the token is never printed: {done}"
    );

    let issuer = world.server.clone();
    let claims = tokio::task::spawn_blocking(move || {
        countersign_testkit::verify_with_pyjwt(&issuer, "deployer", &token)
    })
    .await
    .expect("the verifier ran")
    .unwrap_or_else(|e| panic!("PyJWT refused the grant token: {e}"));
    assert_eq!(claims["request_id"], id.as_str(), "{claims}");
    assert_eq!(claims["gate"], "deploy-prod", "{claims}");
    assert_eq!(claims["scope"], "deploy:api", "{claims}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_never_runs_the_command_when_rejected() {
    let world = World::start().await;
    let (alice, carol) = tokio::join!(world.cli_as("alice"), world.cli_as("carol"));
    let out = tempfile::tempdir().expect("a temp dir");
    let marker = out.path().join("ran");

    let mut running = alice
        .env("MARKER", &marker.display().to_string())
        .args([
            "run",
            "deploy-prod",
            "-p",
            "service=api",
            "-p",
            "version=2.0.0",
            "--reason",
            "release",
            "--",
            "sh",
            "-c",
            r#"touch "$MARKER""#,
        ])
        .spawn();
    let id = waiting_id(&mut running).await;
    carol
        .args(["reject", &id, "--yes", "--comment", "no"])
        .run()
        .await
        .expect_code(0);

    let done = running.finish(Duration::from_secs(20)).await;
    done.expect_code(2);
    assert!(!marker.exists(), "the command ran: {done}");
    assert!(done.stderr.contains("sh was not run"), "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_of_an_auto_approved_gate_runs_at_once_and_passes_exit_codes_through() {
    let world = World::start().await;
    let alice = world.cli_as("alice").await;
    let done = alice
        .args([
            "run",
            "deploy-staging",
            "-p",
            "service=api",
            "--",
            "sh",
            "-c",
            "test -n \"$COUNTERSIGN_TOKEN\" && exit 0",
        ])
        .run()
        .await;
    done.expect_code(0);
    assert!(done.stderr.contains("approved"), "{done}");
}
