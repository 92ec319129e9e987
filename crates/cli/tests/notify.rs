//! `countersign notify test CHANNEL`: a sample message goes out over the configured channel
//! (here a loopback Slack), inert however hostile its text; a wrong channel name or a channel
//! that refuses is an error with exit code 1 that names no secret.

mod common;

use common::run_cli;
use countersign_testkit::{SlackFailure, SlackReceiver};

fn config(dir: &std::path::Path, webhook_url: &str) -> std::path::PathBuf {
    let secret = dir.join("slack-url");
    std::fs::write(&secret, webhook_url).expect("write the secret");
    let path = dir.join("countersign.toml");
    let text = format!(
        r#"[server]
public_url = "https://approvals.example.com"
key_encryption_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

[[issuers]]
name = "okta"
url = "https://acme.okta.com/oauth2/default"
audiences = ["api://countersign"]

[[notifications.channels]]
name = "sre-slack"
kind = "slack"
webhook_url_file = "{}"
"#,
        secret.display()
    );
    std::fs::write(&path, text).expect("write the config");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_reaches_the_channel_and_failures_are_named() {
    let slack = SlackReceiver::start("unused")
        .await
        .expect("slack receiver");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = config(dir.path(), &slack.webhook_url());
    let config = path.to_str().expect("utf-8 path");

    let out = run_cli(&["notify", "test", "sre-slack", "--config", config], &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("sent a sample message to 'sre-slack' (slack)"),
        "{stdout}"
    );
    let calls = slack.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(
        calls[0]
            .raw
            .contains("https://approvals.example.com/requests/req_sample")
    );
    assert!(!calls[0].raw.contains("<!channel>"), "{}", calls[0].raw);
    assert!(countersign_testkit::block_kit_problems(&calls[0].body).is_empty());

    let out = run_cli(&["notify", "test", "nope", "--config", config], &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr.contains("no channel 'nope'") && stderr.contains("sre-slack"),
        "{stderr}"
    );

    slack.fail_next(1, SlackFailure::Error("invalid_token".into()));
    let out = run_cli(&["notify", "test", "sre-slack", "--config", config], &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr.contains("channel 'sre-slack' (slack)"), "{stderr}");
    assert!(
        !stderr.contains("webhooksecret"),
        "the webhook URL leaked: {stderr}"
    );
}
