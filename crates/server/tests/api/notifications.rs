//! Notifications end to end: requests made and decided through the API, the notification
//! worker driven by hand on the test's clock, and real receivers — a loopback Slack (bot Web
//! API, incoming webhooks, a Teams Workflows trigger) and an aiosmtpd server with STARTTLS and
//! AUTH. Each scenario runs against SQLite and PostgreSQL.

use std::time::Duration;

use countersign_core::notice::NoticeState;
use countersign_testkit::{SlackFailure, SlackReceiver, SmtpServer, mail_header};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app_with};

const BOT_TOKEN: &str = "xoxb-test-token";

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::Backend::Postgres).await
            }
        }
    )*};
}

on_both_backends!(
    a_request_is_followed_in_slack_teams_and_mail,
    reminders_and_escalation_follow_the_clock,
    a_decision_made_while_queued_sends_the_final_state,
    a_restart_sends_nothing_twice,
    slack_is_paced_and_rate_limits_are_honoured,
);

/// The receivers and the app, configured with one channel of each kind.
struct World {
    app: TestApp,
    slack: SlackReceiver,
    smtp: SmtpServer,
    _secrets: tempfile::TempDir,
}

/// The channels, and a gate `notified` routed through them: the `sre` rule (stage 1) to the
/// Slack bot and the mail, the `board` rule (stage 2) to Teams, reminders, an escalation to
/// the Slack webhook, and the outcome to the requester.
async fn world(backend: Backend, gate_extra: &str) -> World {
    world_at(backend, gate_extra, 50).await
}

/// [`world`] with the Slack bot channel at `bot_rate` messages a second.
async fn world_at(backend: Backend, gate_extra: &str, bot_rate: u32) -> World {
    let slack = SlackReceiver::start(BOT_TOKEN)
        .await
        .expect("slack receiver");
    let smtp = SmtpServer::start("countersign", "mail-password").expect("smtp server");
    let secrets = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = secrets.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let hook = write("hook", &slack.webhook_url());
    let bot = write("bot", BOT_TOKEN);
    let teams = write("teams", &slack.teams_url());
    let password = write("smtp", "mail-password");
    let ca = write("ca.pem", smtp.ca_pem().expect("a TLS server"));
    let extra = format!(
        r#"
[notifications]
[[notifications.channels]]
name = "sre-bot"
kind = "slack"
bot_token_file = "{bot}"
channel = "C0SRE"
api_url = "{api}"
max_per_second = {bot_rate}

[[notifications.channels]]
name = "oncall"
kind = "slack"
webhook_url_file = "{hook}"
max_per_second = 50

[[notifications.channels]]
name = "board-teams"
kind = "teams"
webhook_url_file = "{teams}"

[[notifications.channels]]
name = "sre-mail"
kind = "email"
smtp_url = "smtp://{host}:{port}"
smtp_username = "countersign"
smtp_password_file = "{password}"
tls_ca_file = "{ca}"
from = "countersign <approvals@example.com>"
to = ["sre-list@example.com", "eligible"]

[[gates]]
name = "notified"
description = "Two stages, announced"
requesters = '"dev" in principal.groups'
pending_ttl = "1h"
notify_requester = true
{gate_extra}
  [[gates.rules]]
  name = "sre"
  approvers = '"sre" in approver.groups'
  notify = ["sre-bot", "sre-mail"]

  [[gates.rules]]
  name = "board"
  approvers = '"security" in approver.groups'
  stage = 2
  notify = ["board-teams"]
"#,
        api = slack.api_url(),
        host = smtp.host(),
        port = smtp.port(),
    );
    let app = spawn_app_with(backend, &extra).await;
    World {
        app,
        slack,
        smtp,
        _secrets: secrets,
    }
}

impl World {
    /// Runs the worker until a pass claims nothing.
    async fn drain(&self) {
        for _ in 0..20 {
            let n = self.app.state.notifier.run_once().await.expect("a pass");
            if n == 0 {
                return;
            }
        }
        panic!("the notification worker kept finding work");
    }

    async fn create(&self, token: &str, reason: &str) -> Value {
        let r = self
            .app
            .post(
                "/api/v1/requests",
                token,
                json!({"gate": "notified", "reason": reason}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.body
    }

    /// The Slack calls to `path` (e.g. `/api/chat.update`).
    fn slack_calls(&self, path: &str) -> Vec<countersign_testkit::SlackCall> {
        self.slack
            .calls()
            .into_iter()
            .filter(|c| c.path.ends_with(path))
            .collect()
    }

    async fn notices(&self) -> Vec<countersign_core::notice::QueuedNotice> {
        self.app
            .state
            .notices
            .list_notices(None, None, 500)
            .await
            .unwrap()
    }

    fn advance(&self, minutes: i64) {
        self.app.clock.advance(chrono::Duration::minutes(minutes));
    }
}

/// Makes `users` known to the directory (a bearer call records them, off the request path).
async fn seen(app: &TestApp, tokens: &[&str]) {
    for t in tokens {
        assert_eq!(app.get("/api/v1/gates", t).await.status, StatusCode::OK);
    }
    for _ in 0..200 {
        let people = app
            .state
            .notices
            .people(app.engine.now() - chrono::Duration::days(1), 100)
            .await
            .unwrap();
        if people.len() >= tokens.len() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the directory did not record the callers");
}

fn text_of(call: &countersign_testkit::SlackCall) -> String {
    call.raw.clone()
}

async fn a_request_is_followed_in_slack_teams_and_mail(backend: Backend) {
    let w = world(backend, "").await;
    let (alice, bob, carol, dave) = tokio::join!(
        w.app.token("alice"),
        w.app.token("bob"),
        w.app.token("carol"),
        w.app.token("dave")
    );
    seen(&w.app, &[&alice, &bob, &carol, &dave]).await;
    let hostile = "hotfix <!channel> <https://evil.example|Approve> & <script>alert(1)</script>";
    let request = w.create(&alice, hostile).await;
    let id = request["id"].as_str().unwrap().to_owned();
    w.drain().await;

    // Slack: one message in the SRE channel, escaped, with the link to the page.
    let posts = w.slack_calls("/api/chat.postMessage");
    assert_eq!(posts.len(), 1, "{posts:?}");
    let post = &posts[0];
    assert_eq!(post.headers["authorization"], format!("Bearer {BOT_TOKEN}"));
    let raw = text_of(post);
    assert!(!raw.contains("<!channel>"), "a mention survived: {raw}");
    assert!(
        !raw.contains("<https://evil"),
        "a spoofed link survived: {raw}"
    );
    assert!(raw.contains("&lt;!channel&gt;"), "{raw}");
    assert!(raw.contains(&format!("/requests/{id}")), "{raw}");
    assert_eq!(post.body["unfurl_links"], false);
    assert!(post.body["text"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(countersign_testkit::block_kit_problems(&post.body).is_empty());
    // Stage 2's Teams channel hears nothing yet; the escalation channel nothing at all.
    assert!(w.slack_calls("/paths/invoke").is_empty());
    assert!(
        w.slack_calls("/services/T0TEST/B0TEST/webhooksecret")
            .is_empty()
    );

    // Mail: the list and the eligible SRE people (bob, dave), never the requester, nor the
    // security engineer whose stage has not opened.
    let mails = w.smtp.messages();
    assert_eq!(mails.len(), 1, "{}", w.smtp.output());
    let mail = &mails[0];
    // The eligible people are not shown to each other: only the list is in `To`.
    let to_header = mail_header(mail, "To").unwrap();
    assert!(to_header.contains("sre-list@example.com"), "{to_header}");
    assert!(
        !to_header.contains("bob@") && mail_header(mail, "Bcc").is_none(),
        "{to_header}"
    );
    let mut to: Vec<&str> = mail["rcpt_tos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    to.sort_unstable();
    assert_eq!(
        to,
        [
            "bob@example.com",
            "dave@example.com",
            "sre-list@example.com"
        ]
    );
    assert_eq!(mail["tls"], true);
    assert_eq!(mail["auth_user"], "countersign");
    let root = mail_header(mail, "Message-ID").unwrap().to_owned();
    assert_eq!(mail_header(mail, "Auto-Submitted"), Some("auto-generated"));
    let html = mail["html"].as_str().unwrap();
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("&lt;script&gt;"), "{html}");
    assert!(
        mail["text"]
            .as_str()
            .unwrap()
            .contains(&format!("/requests/{id}"))
    );

    // Bob approves: the same Slack message is updated and the review goes in its thread;
    // stage 2 opens, so Teams hears of it now.
    let r = w.app.decide(&request, &bob, "approve").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    w.drain().await;
    let updates = w.slack_calls("/api/chat.update");
    assert_eq!(updates.len(), 1, "{updates:?}");
    let posts = w.slack_calls("/api/chat.postMessage");
    assert_eq!(posts.len(), 2, "the root and one thread reply: {posts:?}");
    let reply = &posts[1];
    let root_ts = updates[0].body["ts"].as_str().unwrap().to_owned();
    assert_eq!(reply.body["thread_ts"], root_ts.as_str());
    assert_eq!(updates[0].body["channel"], "C0SRE");
    let cards = w.slack_calls("/paths/invoke");
    assert_eq!(cards.len(), 1, "stage 2 announced on Teams");
    let card = &cards[0].body["attachments"][0]["content"];
    countersign_testkit::validate_adaptive_card(card).expect("a valid Adaptive Card");

    // Carol approves: the outcome everywhere the request was announced, and to alice.
    let current = w
        .app
        .get(&format!("/api/v1/requests/{id}"), &alice)
        .await
        .body;
    let r = w.app.decide(&current, &carol, "approve").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["state"], "approved");
    w.drain().await;
    let last = w.slack.message("C0SRE", &root_ts).expect("the message");
    assert!(
        last.to_string().to_lowercase().contains("approved"),
        "{last}"
    );
    assert_eq!(
        w.slack_calls("/paths/invoke").len(),
        2,
        "a second card on Teams"
    );
    let mails = w.smtp.messages();
    let to_alice: Vec<&Value> = mails
        .iter()
        .filter(|m| m["rcpt_tos"] == json!(["alice@example.com"]))
        .collect();
    assert_eq!(to_alice.len(), 1, "the requester hears the outcome");
    let replies: Vec<&Value> = mails
        .iter()
        .skip(1)
        .filter(|m| m["rcpt_tos"] != json!(["alice@example.com"]))
        .collect();
    assert!(!replies.is_empty());
    for m in replies {
        assert_eq!(mail_header(m, "In-Reply-To"), Some(root.as_str()));
        assert!(mail_header(m, "References").unwrap().contains(&root));
    }
    // Nothing is left, nothing failed, and operators see it all.
    let notices = w.notices().await;
    assert!(notices.iter().all(|n| n.state != NoticeState::Pending
        || matches!(
            n.message.kind,
            countersign_core::notice::NoticeKind::Reminder { .. }
        )));
    assert!(
        notices.iter().all(|n| n.state != NoticeState::Failed),
        "{notices:?}"
    );
    let erin = w.app.token("erin").await;
    let listed = w.app.get("/api/v1/notifications?limit=200", &erin).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert!(!listed.body["items"].as_array().unwrap().is_empty());
    let refused = w.app.get("/api/v1/notifications", &bob).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}

async fn reminders_and_escalation_follow_the_clock(backend: Backend) {
    let w = world(
        backend,
        "remind = [\"30m\", \"5m\"]\nescalate_after = \"15m\"\nescalate_to = [\"oncall\"]",
    )
    .await;
    let (alice, bob) = tokio::join!(w.app.token("alice"), w.app.token("bob"));
    let quiet = w.create(&alice, "nobody acts").await;
    let acted = w.create(&alice, "bob acts").await;
    w.drain().await;
    let hook = "/services/T0TEST/B0TEST/webhooksecret";
    assert!(w.slack_calls(hook).is_empty());
    let r = w.app.decide(&acted, &bob, "approve").await;
    assert_eq!(r.status, StatusCode::OK);
    w.drain().await;

    // 16 minutes: only the untouched request escalates.
    w.advance(16);
    w.drain().await;
    let escalations = w.slack_calls(hook);
    assert_eq!(escalations.len(), 1, "{escalations:?}");
    assert!(escalations[0].raw.contains(quiet["id"].as_str().unwrap()));
    let notices = w.notices().await;
    let skipped = notices
        .iter()
        .find(|n| {
            n.message.kind.as_str() == "escalated"
                && n.message.request_id.to_string() == acted["id"].as_str().unwrap()
        })
        .unwrap();
    assert_eq!(skipped.state, NoticeState::Skipped);
    assert!(skipped.last_error.as_deref().unwrap().contains("decided"));

    // 31 minutes: a reminder, as a thread reply under the Slack message, and in the mail
    // thread. The approved stage-1 rule's channels no longer hear about `acted`.
    let replies_before = w.slack_calls("/api/chat.postMessage").len();
    w.advance(15);
    w.drain().await;
    let posts = w.slack_calls("/api/chat.postMessage");
    let reminders: Vec<_> = posts[replies_before..].iter().collect();
    assert_eq!(
        reminders.len(),
        1,
        "one reminder, for the quiet request: {reminders:?}"
    );
    assert!(reminders[0].body["thread_ts"].is_string());
    assert!(reminders[0].raw.contains(quiet["id"].as_str().unwrap()));

    // Past expiry: the sweeper expires it; the 5-minute reminder is skipped, the outcome sent.
    w.advance(30);
    w.app.engine.expire_due().await.unwrap();
    w.drain().await;
    let notices = w.notices().await;
    assert!(
        notices.iter().all(|n| n.state != NoticeState::Pending),
        "{notices:?}"
    );
    let late = notices
        .iter()
        .filter(|n| n.message.kind.as_str() == "reminder" && n.state == NoticeState::Skipped)
        .count();
    assert!(
        late >= 2,
        "reminders after the decision or expiry are skipped"
    );
    // The escalation channel hears the outcome of the request it was told of, and nothing
    // of the one it never saw.
    let hook_calls = w.slack_calls(hook);
    assert_eq!(hook_calls.len(), 2, "{hook_calls:?}");
    assert!(hook_calls[1].raw.contains(quiet["id"].as_str().unwrap()));
    assert!(notices.iter().any(|n| {
        n.message.channel == "oncall"
            && n.message.request_id.to_string() == acted["id"].as_str().unwrap()
            && n.last_error.as_deref() == Some("this channel was never told of the request")
    }));
}

async fn a_decision_made_while_queued_sends_the_final_state(backend: Backend) {
    let w = world(backend, "").await;
    let (alice, bob, carol) = tokio::join!(
        w.app.token("alice"),
        w.app.token("bob"),
        w.app.token("carol")
    );
    let request = w.create(&alice, "decided before anything was sent").await;
    let id = request["id"].as_str().unwrap().to_owned();
    let r = w.app.decide(&request, &bob, "approve").await;
    assert_eq!(r.status, StatusCode::OK);
    let current = w
        .app
        .get(&format!("/api/v1/requests/{id}"), &alice)
        .await
        .body;
    let r = w.app.decide(&current, &carol, "approve").await;
    assert_eq!(r.body["state"], "approved");
    w.drain().await;
    // One Slack message, showing the outcome: no stale "pending" post, no needless edits.
    let posts = w.slack_calls("/api/chat.postMessage");
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert!(
        posts[0].raw.to_lowercase().contains("approved"),
        "{}",
        posts[0].raw
    );
    let header = posts[0].body["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(
        !header.contains("needed"),
        "the headline is the outcome: {header}"
    );
    assert!(w.slack_calls("/api/chat.update").is_empty());
    let superseded = w
        .notices()
        .await
        .into_iter()
        .filter(|n| {
            n.message.channel == "sre-bot"
                && n.state == NoticeState::Skipped
                && n.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("superseded"))
        })
        .count();
    assert_eq!(
        superseded, 2,
        "the progress and the outcome were already shown"
    );
}

async fn a_restart_sends_nothing_twice(backend: Backend) {
    let w = world(backend, "").await;
    let (alice, bob) = tokio::join!(w.app.token("alice"), w.app.token("bob"));
    let request = w.create(&alice, "across a restart").await;
    w.drain().await;
    assert_eq!(w.slack_calls("/api/chat.postMessage").len(), 1);
    let mails = w.smtp.messages().len();

    // The update fails (not acknowledged); then the process is replaced by another on the
    // same database, which sends only what was not acknowledged.
    let r = w.app.decide(&request, &bob, "approve").await;
    assert_eq!(r.status, StatusCode::OK);
    w.slack.fail_next_on(
        "/api/chat.update",
        SlackFailure::Status(503, "unavailable".into()),
    );
    w.drain().await;
    let updates_before = w.slack_calls("/api/chat.update").len();
    // Past the retry's backoff, a worker claims it and dies: its lease must run out before
    // another takes it.
    w.advance(1);
    let claimed = w
        .app
        .state
        .notices
        .claim_notices(w.app.engine.now(), 100, chrono::Duration::seconds(60))
        .await
        .unwrap();
    assert!(
        !claimed.is_empty(),
        "the failed update is due again after its backoff"
    );
    let other = crate::helpers::build(&w.app.config_text, w.app.clock.clone(), None).await;
    assert_eq!(
        other.notifier().run_once().await.unwrap(),
        0,
        "leased elsewhere"
    );
    w.advance(2);
    while other.notifier().run_once().await.unwrap() > 0 {}
    let updates = w.slack_calls("/api/chat.update");
    assert_eq!(updates_before, 1, "the update that failed");
    assert_eq!(updates.len(), 2, "{updates:?}");
    assert_eq!(
        w.slack_calls("/api/chat.postMessage").len(),
        2,
        "the root once, one thread reply"
    );
    assert!(
        w.smtp.messages().len() > mails,
        "the progress mail went out once"
    );
    let again = w.smtp.messages().len();
    while other.notifier().run_once().await.unwrap() > 0 {}
    assert_eq!(w.smtp.messages().len(), again);
}

async fn slack_is_paced_and_rate_limits_are_honoured(backend: Backend) {
    // The Slack bot channel at Slack's pace: one message a second.
    let w = world_at(backend, "", 1).await;
    let alice = w.app.token("alice").await;
    for i in 0..3 {
        w.create(&alice, &format!("paced {i}")).await;
    }
    w.slack.fail_next(
        1,
        SlackFailure::RateLimited {
            retry_after_secs: 1,
        },
    );
    w.drain().await;
    let posts = w.slack_calls("/api/chat.postMessage");
    // The first post was answered 429: it is retried after Retry-After, not lost.
    let limited = w
        .notices()
        .await
        .into_iter()
        .filter(|n| n.message.channel == "sre-bot" && n.state == NoticeState::Pending)
        .count();
    assert!(posts.len() >= 3, "{posts:?}");
    assert!(limited <= 1);
    w.app.clock.advance(chrono::Duration::seconds(3));
    w.drain().await;
    let posts = w.slack_calls("/api/chat.postMessage");
    assert_eq!(
        posts.len(),
        4,
        "three messages, one of them twice (after its 429)"
    );
    // Messages to one channel are a second apart, at least.
    for pair in posts.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(gap >= Duration::from_millis(950), "{gap:?}");
    }
}

/// The sandbox's outbox viewer: a `preview` channel keeps what each channel kind would send,
/// and `/dev/notifications` exists only where one is configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preview_channel_shows_what_would_be_sent() {
    let extra = r#"
[[notifications.channels]]
name = "outbox-viewer"
kind = "preview"

[[gates]]
name = "previewed"
requesters = 'true'
notify = ["outbox-viewer"]
  [[gates.rules]]
  name = "sre"
  approvers = '"sre" in approver.groups'
"#;
    let app = spawn_app_with(Backend::Sqlite, extra).await;
    let alice = app.token("alice").await;
    let r = app
        .post(
            "/api/v1/requests",
            &alice,
            json!({"gate": "previewed", "reason": "<b>look</b>"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    while app.state.notifier.run_once().await.unwrap() > 0 {}
    let previews = app.state.notifier.sender().unwrap().previews();
    assert_eq!(previews.len(), 1);
    let p = &previews[0];
    assert_eq!(p.request_id, r.body["id"].as_str().unwrap());
    assert!(p.slack["blocks"].is_array());
    countersign_testkit::validate_adaptive_card(&p.teams["attachments"][0]["content"]).unwrap();
    assert!(
        p.email_html.contains("&lt;b&gt;look&lt;/b&gt;"),
        "{}",
        p.email_html
    );
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = no_redirects
        .get(format!("{}/dev/notifications", app.base))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert!(
        page.status().is_redirection(),
        "signed out: to the login page"
    );

    let plain = crate::helpers::spawn_app(Backend::Sqlite).await;
    let page = no_redirects
        .get(format!("{}/dev/notifications", plain.base))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
}

/// The directory records the people who call, not workloads (a CI provider mints a token for
/// any run; only people approve).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_records_people_not_workloads() {
    let app = crate::helpers::spawn_app(Backend::Sqlite).await;
    let (alice, ci) = tokio::join!(app.token("alice"), app.token("ci"));
    assert_eq!(app.get("/api/v1/gates", &ci).await.status, StatusCode::OK);
    seen(&app, &[&alice]).await;
    let people = app
        .state
        .notices
        .people(app.engine.now() - chrono::Duration::days(1), 100)
        .await
        .unwrap();
    let kinds: Vec<_> = people.iter().map(|p| p.principal.kind()).collect();
    assert_eq!(
        kinds,
        vec![countersign_core::PrincipalKind::Human],
        "{people:?}"
    );
    assert_eq!(people[0].principal.identity().subject, "alice");
}
