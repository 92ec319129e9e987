//! `approve` and `reject` show what is decided and send the digest they showed; `show`, `ls`,
//! `cancel`, `token` and `revoke` from the terminal.

use crate::support::{DigestProxy, FAKE_DIGEST, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_sends_the_digest_it_showed_and_a_changed_request_is_refused() {
    let world = World::start().await;
    let (alice, bob) = tokio::join!(world.cli_as("alice"), world.cli_as("bob"));
    let created = alice
        .args([
            "request",
            "deploy-prod",
            "-p",
            "service=api",
            "-p",
            "version=1.4.2",
            "--reason",
            "hotfix",
            "--output",
            "json",
        ])
        .run()
        .await;
    created.expect_code(0);
    let request = created.json();
    let id = request["id"].as_str().expect("an id").to_string();
    let digest = request["digest"].as_str().expect("a digest").to_string();

    // Without a terminal and without --yes nothing is sent.
    bob.clone()
        .args(["approve", &id])
        .run()
        .await
        .expect_error(1, &["confirmation", "--yes"]);

    // Through a proxy that makes bob see another digest: he approves what he saw, the
    // server refuses, and the CLI says so.
    let proxy = DigestProxy::start(&world.server).await;
    let refused = bob
        .clone()
        .args(["approve", &id, "--yes", "--server", &proxy.url])
        .run()
        .await;
    refused.expect_code(1);
    assert!(
        refused.stderr.contains(FAKE_DIGEST),
        "the digest shown: {refused}"
    );
    assert!(
        refused.stderr.contains("hotfix"),
        "the reason shown: {refused}"
    );
    assert!(
        refused.stderr.contains("service=api"),
        "the params shown: {refused}"
    );
    assert!(
        refused.stderr.contains("Alice Adams (idp:alice)"),
        "the requester shown: {refused}"
    );
    let error = refused
        .stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("an error line: {refused}"));
    assert!(error.contains("digest mismatch"), "{refused}");
    assert!(error.contains("nothing was approved"), "{refused}");
    let bob_token = world.token("bob").await;
    let unchanged = world.get_request(&id, &bob_token).await;
    assert_eq!(unchanged["state"], "pending", "{unchanged}");
    assert_eq!(unchanged["decisions"], serde_json::json!([]), "{unchanged}");

    // Straight to the server, the digest shown is the real one, and the approval counts.
    let approved = bob
        .args(["approve", &id, "--yes", "--comment", "ok"])
        .run()
        .await;
    approved.expect_code(0);
    assert!(approved.stderr.contains(&digest), "{approved}");
    assert!(
        approved.stdout.contains("it still waits for security"),
        "{approved}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_ls_cancel_token_and_revoke() {
    let world = World::start().await;
    let (alice, bob, erin) = tokio::join!(
        world.cli_as("alice"),
        world.cli_as("bob"),
        world.cli_as("erin")
    );
    let pending = alice
        .clone()
        .args([
            "request",
            "deploy-prod",
            "-p",
            "service=api",
            "-p",
            "version=1",
            "--reason",
            "r",
            "-o",
            "json",
        ])
        .run()
        .await;
    pending.expect_code(0);
    let pending_id = pending.json()["id"].as_str().expect("an id").to_string();

    let shown = bob.clone().args(["show", &pending_id]).run().await;
    shown.expect_code(0);
    assert!(shown.stdout.contains("waiting"), "{shown}");
    assert!(shown.stdout.contains("deploy-prod"), "{shown}");

    let inbox = bob
        .clone()
        .args(["ls", "--inbox", "-o", "json"])
        .run()
        .await;
    inbox.expect_code(0);
    let ids: Vec<String> = inbox.json()["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(ids, std::slice::from_ref(&pending_id), "{inbox}");
    let mine = alice
        .clone()
        .args(["ls", "--mine", "--pending"])
        .run()
        .await;
    mine.expect_code(0);
    assert!(mine.stdout.contains(&pending_id), "{mine}");

    // erin may not see alice's request at all.
    erin.clone()
        .args(["show", &pending_id])
        .run()
        .await
        .expect_error(1, &["not found"]);

    let cancelled = alice.clone().args(["cancel", &pending_id]).run().await;
    cancelled.expect_code(0);
    assert!(cancelled.stdout.contains("cancelled"), "{cancelled}");
    alice
        .clone()
        .args(["wait", &pending_id])
        .run()
        .await
        .expect_code(3);

    // An auto-approved request: its token, then revoked.
    let approved = alice
        .clone()
        .args([
            "request",
            "deploy-staging",
            "-p",
            "service=api",
            "-o",
            "json",
        ])
        .run()
        .await;
    approved.expect_code(0);
    let approved_id = approved.json()["id"].as_str().expect("an id").to_string();
    assert_eq!(approved.json()["state"], "approved");
    let token = alice.clone().args(["token", &approved_id]).run().await;
    token.expect_code(0);
    assert_eq!(
        token.stdout.trim().split('.').count(),
        3,
        "one JWT: {token}"
    );
    assert!(token.stderr.is_empty(), "{token}");
    let revoked = alice.clone().args(["revoke", &approved_id]).run().await;
    revoked.expect_code(0);
    assert!(revoked.stdout.contains("revoked"), "{revoked}");
    alice
        .args(["wait", &approved_id])
        .run()
        .await
        .expect_code(3);
}
