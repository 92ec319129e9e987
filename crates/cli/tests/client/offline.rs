//! The offline tools: `explain` (what a set of claims may do with a gate, and why),
//! `completions`, and the exit codes in `--help`.

use serde_json::{Value, json};

use crate::support::{Cli, config};

/// A configuration on disk whose issuers are never contacted (explain is offline).
fn write_config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("countersign.toml");
    let text = config(
        "https://idp.example.com",
        "https://ci.example.com",
        "sqlite://unused.db",
        8080,
    );
    std::fs::write(&path, text).expect("write the configuration");
    path
}

fn write_claims(dir: &std::path::Path, name: &str, claims: &Value) -> String {
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, claims.to_string()).expect("write the claims");
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_says_who_may_request_and_approve_and_why() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = write_config(dir.path()).display().to_string();
    let bob = write_claims(
        dir.path(),
        "bob",
        &json!({"iss": "https://idp.example.com", "sub": "bob", "name": "Bob Baker", "groups": ["sre"]}),
    );
    let alice = write_claims(
        dir.path(),
        "alice",
        &json!({"iss": "https://idp.example.com", "sub": "alice", "groups": ["dev"]}),
    );
    let cli = Cli::new(dir.path());

    let text = cli
        .clone()
        .args([
            "explain",
            "deploy-prod",
            "--claims",
            &bob,
            "--config",
            &config,
        ])
        .run()
        .await;
    text.expect_code(0);
    assert!(text.stdout.contains("idp:bob Bob Baker"), "{text}");
    let line = |start: &str| {
        text.stdout
            .lines()
            .find(|l| l.contains(start))
            .unwrap_or_else(|| panic!("{start:?} in {text}"))
            .to_string()
    };
    assert!(line("request ").contains("no"), "{text}");
    assert!(line("rule sre").contains("yes"), "{text}");
    assert!(
        line("rule sre").contains("\"sre\" in approver.groups"),
        "{text}"
    );
    assert!(line("rule security").contains("no"), "{text}");

    let report = cli
        .clone()
        .args([
            "explain",
            "deploy-prod",
            "--claims",
            &alice,
            "--config",
            &config,
            "-o",
            "json",
        ])
        .run()
        .await;
    report.expect_code(0);
    let report = report.json();
    assert_eq!(report["request"]["allowed"], true, "{report}");
    assert_eq!(report["auto_approve"]["matches"], false, "{report}");
    assert_eq!(report["rules"][0]["eligible"], false, "{report}");
    assert_eq!(report["principal"]["groups"], json!(["dev"]));

    let staging = cli
        .clone()
        .args([
            "explain",
            "deploy-staging",
            "--claims",
            &alice,
            "--config",
            &config,
            "-o",
            "json",
        ])
        .run()
        .await;
    staging.expect_code(0);
    assert_eq!(staging.json()["auto_approve"]["matches"], true);

    cli.clone()
        .args(["explain", "nope", "--claims", &alice, "--config", &config])
        .run()
        .await
        .expect_error(1, &["unknown gate 'nope'", "deploy-prod"]);
    let stranger = write_claims(
        dir.path(),
        "x",
        &json!({"iss": "https://other", "sub": "x"}),
    );
    cli.args([
        "explain",
        "deploy-prod",
        "--claims",
        &stranger,
        "--config",
        &config,
    ])
    .run()
    .await
    .expect_error(1, &["--issuer", "idp, ci"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_exit_codes_in_help() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let cli = Cli::new(dir.path());
    for shell in ["bash", "zsh", "fish"] {
        let out = cli.clone().args(["completions", shell]).run().await;
        out.expect_code(0);
        assert!(out.stdout.contains("countersign"), "{out}");
        assert!(out.stdout.contains("approve"), "{out}");
    }
    let help = cli.clone().args(["--help"]).run().await;
    help.expect_code(0);
    for line in [
        "Exit codes:",
        "2  the request was rejected",
        "4  not authenticated",
    ] {
        assert!(help.stdout.contains(line), "{line:?} in {help}");
    }
    let run_help = cli.args(["run", "--help"]).run().await;
    run_help.expect_code(0);
    assert!(
        run_help.stdout.contains("the command's own code"),
        "{run_help}"
    );
}
