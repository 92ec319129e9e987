//! In CI the workload identity is picked up without a login: a GitHub-Actions-like job (the
//! two `ACTIONS_ID_TOKEN_REQUEST_*` variables, an endpoint handing out the real CI provider's
//! tokens), or `COUNTERSIGN_ID_TOKEN` / `--id-token-file`.

use std::sync::Arc;
use std::time::Duration;

use crate::support::{AUDIENCE, CLI_TIMEOUT, GitHubEndpoint, World, request_id_in};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_actions_job_requests_and_waits_without_a_login() {
    let world = World::start().await;
    let github = GitHubEndpoint::start(Arc::clone(&world.ci)).await;
    let (bob, carol) = tokio::join!(world.cli_as("bob"), world.cli_as("carol"));

    let mut job = world
        .cli()
        .env("ACTIONS_ID_TOKEN_REQUEST_URL", &github.url)
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", &github.request_token)
        .args([
            "request",
            "deploy-prod",
            "-p",
            "service=api",
            "-p",
            "version=9.9.9",
            "--reason",
            "pipeline 1234",
            "--wait",
            "--output",
            "json",
        ])
        .spawn();
    let line = job
        .wait_for_stderr(|l| l.contains("waiting for"), CLI_TIMEOUT)
        .await;
    let id = request_id_in(&line).expect("an id");
    let (by_bob, by_carol) = tokio::join!(
        bob.args(["approve", &id, "--yes"]).run(),
        carol.args(["approve", &id, "--yes"]).run()
    );
    by_bob.expect_code(0);
    by_carol.expect_code(0);

    let done = job.finish(Duration::from_secs(20)).await;
    done.expect_code(0);
    let request = done.json();
    assert_eq!(request["state"], "approved", "{done}");
    assert_eq!(request["requester"]["issuer"], "ci", "{done}");
    assert_eq!(request["requester"]["kind"], "workload", "{done}");
    assert_eq!(
        request["requester"]["subject"],
        "repo:acme/app:ref:refs/heads/main"
    );
    let audiences = github.audiences.lock().expect("not poisoned").clone();
    assert!(!audiences.is_empty(), "the job's token endpoint was asked");
    assert!(audiences.iter().all(|a| a == AUDIENCE), "{audiences:?}");
    assert!(
        !world.logins_dir().exists(),
        "nothing was cached for a workload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_token_file_or_variable_is_used_as_is() {
    let world = World::start().await;
    let token = world.ci.workload_token().await.expect("a workload token");
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{token}\n")).expect("write the token file");

    let from_file = world
        .cli()
        .args([
            "request",
            "deploy-staging",
            "-p",
            "service=api",
            "-o",
            "json",
        ])
        .args(["--id-token-file"])
        .args([file.display().to_string()])
        .run()
        .await;
    from_file.expect_code(0);
    assert_eq!(from_file.json()["requester"]["issuer"], "ci", "{from_file}");

    let from_env = world
        .cli()
        .env("COUNTERSIGN_ID_TOKEN", &token)
        .args(["gates", "-o", "json"])
        .run()
        .await;
    from_env.expect_code(0);
    // Every configured gate: the demo gates and `quick`.
    let gates = from_env.json();
    let listed = gates["items"].as_array().map(|a| {
        a.iter()
            .filter_map(|g| g["name"].as_str())
            .collect::<Vec<_>>()
    });
    assert_eq!(
        listed,
        Some(vec!["db-session", "deploy-prod", "deploy-staging", "quick"]),
        "{from_env}"
    );

    // A token the server refuses: exit 4, one line, and the token is not echoed.
    let refused = world
        .cli()
        .env(
            "COUNTERSIGN_ID_TOKEN",
            "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
        )
        .args(["gates"])
        .run()
        .await;
    refused.expect_error(4, &["COUNTERSIGN_ID_TOKEN"]);
    assert!(!refused.stderr.contains("eyJzdWIiOiJ4In0"), "{refused}");
}
