//! `[notifications]` channels and the gates' and rules' routing keys: what loads, and every
//! problem named by line and key. Secrets are never quoted back.

#![expect(
    clippy::unwrap_used,
    reason = "test scaffolding: a panic is the failure report"
)]

mod common;

use common::{BASE, errors, expect, list, load};
use countersign_core::channel::{ChannelKind, SlackSpec, SmtpSecurity};

fn secret_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn channels_and_routing_load() {
    let dir = tempfile::tempdir().unwrap();
    let hook = secret_file(
        &dir,
        "hook",
        "https://hooks.slack.com/services/T0/B0/sEcReTsEcReT\n",
    );
    let bot = secret_file(&dir, "bot", "xoxb-1-2-abc");
    let teams = secret_file(
        &dir,
        "teams",
        "https://prod-01.westeurope.logic.azure.com/workflows/x?sig=sEcReT",
    );
    let smtp = secret_file(&dir, "smtp", "hunter2");
    let text = format!(
        r#"{BASE}[notifications]
[[notifications.channels]]
name = "sre-slack"
kind = "slack"
webhook_url_file = "{hook}"

[[notifications.channels]]
name = "sre-bot"
kind = "slack"
bot_token_file = "{bot}"
channel = "C0123ABCD"
api_url = "http://127.0.0.1:9/api"

[[notifications.channels]]
name = "sre-teams"
kind = "teams"
webhook_url_file = "{teams}"

[[notifications.channels]]
name = "sre-mail"
kind = "email"
smtp_url = "smtp://mail.example.com"
smtp_username = "countersign"
smtp_password_file = "{smtp}"
from = "countersign <approvals@example.com>"
to = ["sre@example.com", "eligible"]

[[gates]]
name = "deploy"
requesters = 'true'
notify = ["sre-teams"]
notify_requester = true
remind = ["5m", "30m"]
escalate_after = "15m"
escalate_to = ["sre-bot"]
  [[gates.rules]]
  name = "sre"
  approvers = 'true'
  notify = ["sre-slack", "sre-mail"]
"#
    );
    let s = load(&text);
    let channels = &s.notifications.channels;
    assert!(matches!(
        channels.get("sre-slack").unwrap().kind,
        ChannelKind::Slack(SlackSpec::Webhook { .. })
    ));
    match &channels.get("sre-bot").unwrap().kind {
        ChannelKind::Slack(SlackSpec::Bot {
            channel, api_url, ..
        }) => {
            assert_eq!(channel, "C0123ABCD");
            assert_eq!(api_url, "http://127.0.0.1:9/api");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(channels.get("sre-slack").unwrap().max_per_second, 1.0);
    assert_eq!(channels.get("sre-teams").unwrap().max_per_second, 4.0);
    match &channels.get("sre-mail").unwrap().kind {
        ChannelKind::Email(e) => {
            assert_eq!((e.host.as_str(), e.port), ("mail.example.com", 587));
            assert_eq!(e.security, SmtpSecurity::StartTls);
            assert_eq!(e.to, vec!["sre@example.com".to_owned()]);
            assert!(e.to_eligible);
            assert_eq!(e.password.as_ref().unwrap().expose(), "hunter2");
        }
        other => panic!("{other:?}"),
    }
    // The only e-mail channel carries the requester's outcome mail.
    assert_eq!(
        s.notifications.requester_channel.as_deref(),
        Some("sre-mail")
    );
    let gate = s.gates.get("deploy").unwrap();
    assert_eq!(gate.notify.channels, vec!["sre-teams".to_owned()]);
    assert_eq!(gate.notify.requester_channel.as_deref(), Some("sre-mail"));
    assert_eq!(
        gate.notify.remind,
        vec![chrono::Duration::minutes(30), chrono::Duration::minutes(5)],
        "latest first"
    );
    assert_eq!(
        gate.notify.escalate_after,
        Some(chrono::Duration::minutes(15))
    );
    assert_eq!(
        gate.rules[0].notify,
        vec!["sre-slack".to_owned(), "sre-mail".to_owned()]
    );
    assert!(gate.notifies());
}

#[test]
fn channel_problems_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let office = secret_file(
        &dir,
        "office",
        "https://acme.webhook.office.com/webhookb2/sEcReTofficE",
    );
    let text = format!(
        r#"{BASE}[notifications]
[[notifications.channels]]
name = "bot"
kind = "slack"
bot_token = "xoxb-sEcReTtOkEn"

[[notifications.channels]]
name = "legacy"
kind = "teams"
webhook_url_file = "{office}"

[[notifications.channels]]
name = "mail"
kind = "email"
smtp_url = "smtp://mail.example.com?tls=none"
from = "nobody"
to = ["eligible"]

[[notifications.channels]]
name = "missing"
kind = "slack"
webhook_url_file = "/nonexistent/secret"

[[notifications.channels]]
name = "viewer"
kind = "preview"
"#
    );
    let ps = errors(&text);
    expect(
        &ps,
        "notifications.channels[bot].channel",
        10,
        "a bot posts to one channel",
    );
    expect(
        &ps,
        "notifications.channels[legacy].webhook_url_file",
        18,
        "connectors are retired",
    );
    expect(
        &ps,
        "notifications.channels[mail].smtp_url",
        23,
        "only to a loopback address",
    );
    expect(
        &ps,
        "notifications.channels[mail].from",
        24,
        "is not an address",
    );
    expect(
        &ps,
        "notifications.channels[missing].webhook_url_file",
        30,
        "cannot read",
    );
    assert_eq!(ps.len(), 5, "{}", list(&ps));
    let all = list(&ps);
    assert!(!all.contains("sEcReT"), "a secret was quoted: {all}");
}

#[test]
fn routing_problems_are_named() {
    let text = format!(
        r#"{BASE}[notifications]
[[notifications.channels]]
name = "viewer-hook"
kind = "webhook"
url = "https://hooks.example.com/x"
secret = "whsec_c2VjcmV0"

[[gates]]
name = "deploy"
requesters = 'true'
pending_ttl = "1h"
notify = ["nope"]
notify_requester = true
remind = ["2h", "soon"]
escalate_to = ["viewer-hook"]
  [[gates.rules]]
  name = "sre"
  approvers = 'true'
  notify = ["sre-slack"]
"#
    );
    let ps = errors(&text);
    expect(
        &ps,
        "gates[deploy].notify",
        20,
        "unknown channel 'nope' (configured: viewer-hook)",
    );
    expect(
        &ps,
        "gates[deploy].notify_requester",
        21,
        "configure an e-mail channel",
    );
    let remind: Vec<_> = ps
        .iter()
        .filter(|p| p.key == "gates[deploy].remind")
        .collect();
    assert_eq!(remind.len(), 2, "{}", list(&ps));
    expect(&ps, "gates[deploy].escalate_to", 23, "needs escalate_after");
    expect(
        &ps,
        "gates[deploy].rules[sre].notify",
        27,
        "unknown channel 'sre-slack'",
    );
    assert_eq!(ps.len(), 6, "{}", list(&ps));
}

#[test]
fn the_preview_channel_is_for_loopback_servers_only() {
    let text = format!(
        "{}\n[notifications]\n[[notifications.channels]]\nname = \"viewer\"\nkind = \"preview\"\n",
        BASE.replace("[server]\n", "[server]\nlisten = \"0.0.0.0:8080\"\n")
    );
    let ps = errors(&text);
    expect(
        &ps,
        "notifications.channels",
        1,
        "served only by a server that listens on a loopback address",
    );
    assert_eq!(ps.len(), 1, "{}", list(&ps));
}
