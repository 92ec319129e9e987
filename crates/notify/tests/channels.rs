//! The channel layer against real counterparts: a loopback Slack that answers as Slack
//! documents (testkit `SlackReceiver`), Microsoft's Adaptive Cards parser (npm
//! `adaptivecards`), a real SMTP server (aiosmtpd with STARTTLS and AUTH), and the Standard
//! Webhooks reference verifier (`receiver.py`). Needs `python3` with
//! `crates/testkit/verifiers/requirements.txt` installed, and Node.js with npm.

// Helpers outside #[test] functions are test code too: a failed unwrap is a failed test.
#![expect(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use countersign_core::channel::{
    ChannelKind, ChannelSpec, EmailSpec, SLACK_API_URL, SlackSpec, SmtpSecurity, TeamsSpec,
    WebhookChannelSpec,
};
use countersign_core::secret::Secret;
use countersign_notify::channels::{self, Outgoing, Sender, email, slack, teams, webhook};
use countersign_notify::notice::{DecisionLine, Notice, NoticeKind, Person, SendError, ThreadRef};
use countersign_testkit::{
    SlackFailure, SlackReceiver, SmtpServer, block_kit_problems, mail_header,
    validate_adaptive_card,
};
use serde_json::Value;

const TOKEN: &str = "xoxb-test-token-1234";
const CHANNEL: &str = "C0123ABCD";
const DOMAIN: &str = "approvals.example.com";
const HOSTILE: &str = "hotfix <!channel> <https://evil.example|Approve> [Approve](https://evil.example) \
     *bold* &amp; <script>alert(1)</script> \"><img src=x onerror=alert(1)> # heading";

// ---------------------------------------------------------------- notices

fn person(name: &str) -> Person {
    Person {
        name: Some(name.to_owned()),
        email: Some(format!("{}@acme.test", name.to_lowercase())),
        subject: name.to_lowercase(),
        issuer: "okta".into(),
    }
}

fn notice(kind: NoticeKind) -> Notice {
    Notice {
        kind,
        request_id: "req_01jc5m8k2v3n4p5q6r7s8t9v0w".into(),
        gate: "deploy-prod".into(),
        gate_description: "Production deploys".into(),
        requester: person("Alice"),
        params: vec![
            ("service".into(), "api".into()),
            ("version".into(), "1.4.2".into()),
        ],
        reason: Some("hotfix INC-42".into()),
        ticket: Some("INC-42".into()),
        state: "pending".into(),
        needs: vec!["1 more from sre".into(), "1 more from api".into()],
        progress: Some("0 of 2 approvals".into()),
        decisions: vec![],
        latest: None,
        expires_at: "2026-11-29T12:00:00.000Z".into(),
        expires_at_unix: 1_795_953_600,
        digest: "sha256:3f9a0c1d2e3f4a5b6c7d8e9f00112233445566778899aabbccddeeff00112233".into(),
        url: format!("https://{DOMAIN}/requests/req_01jc5m8k2v3n4p5q6r7s8t9v0w"),
        version: 1,
    }
}

fn decision(who: &str, verdict: &str, rule: &str, comment: Option<&str>) -> DecisionLine {
    DecisionLine {
        who: person(who),
        verdict: verdict.into(),
        rule: Some(rule.into()),
        comment: comment.map(str::to_owned),
        at: "2026-11-29T11:00:00.000Z".into(),
    }
}

/// One of two approvals in.
fn progress() -> Notice {
    let mut n = notice(NoticeKind::Progress);
    n.decisions = vec![decision("Bob", "approve", "sre", Some("looks fine"))];
    n.latest = Some(0);
    n.needs = vec!["1 more from api".into()];
    n.progress = Some("1 of 2 approvals".into());
    n.version = 2;
    n
}

/// Approved by both.
fn approved() -> Notice {
    let mut n = notice(NoticeKind::Decided);
    n.state = "approved".into();
    n.decisions = vec![
        decision("Bob", "approve", "sre", Some("looks fine")),
        decision("Carol", "approve", "api", None),
    ];
    n.latest = Some(1);
    n.needs = vec![];
    n.progress = Some("2 of 2 approvals".into());
    n.version = 3;
    n
}

/// Rejected, with a comment.
fn rejected() -> Notice {
    let mut n = notice(NoticeKind::Decided);
    n.state = "rejected".into();
    n.decisions = vec![decision(
        "Bob",
        "reject",
        "sre",
        Some("not during the freeze"),
    )];
    n.latest = Some(0);
    n.needs = vec![];
    n.version = 2;
    n
}

fn reminder() -> Notice {
    notice(NoticeKind::Reminder {
        expires_in_secs: 900,
    })
}

/// Everything a requester can make long or hostile: 40 long parameters, a 10 KB reason.
fn huge() -> Notice {
    let mut n = notice(NoticeKind::Created);
    n.params = (0..40)
        .map(|i| (format!("param_{i}_{}", "n".repeat(300)), "<&>".repeat(2000)))
        .collect();
    n.reason = Some(format!("{HOSTILE} {}", "é<".repeat(5000)));
    n.ticket = Some("T".repeat(5000));
    n.requester.name = Some("N".repeat(1000));
    n.needs = (0..30).map(|i| format!("1 more from group-{i}")).collect();
    n
}

fn hostile() -> Notice {
    let mut n = notice(NoticeKind::Created);
    n.reason = Some(HOSTILE.into());
    n.requester.name = Some("<@U0ADMIN> & <!here>".into());
    n.params
        .push(("note".into(), "<https://evil.example|click>".into()));
    n
}

fn out(n: &Notice) -> Outgoing<'_> {
    Outgoing {
        notice: n,
        thread: None,
        recipients: &[],
        to_requester: false,
        mail_domain: DOMAIN,
    }
}

fn spec(name: &str, kind: ChannelKind) -> ChannelSpec {
    ChannelSpec {
        name: name.into(),
        kind,
        max_per_second: 50.0,
    }
}

#[expect(
    clippy::disallowed_methods,
    reason = "webhook receivers check timestamps against the real time, as a real one would"
)]
fn wall_now() -> countersign_core::Timestamp {
    countersign_core::time::truncate(chrono::Utc::now())
}

/// A clock that reads the real time, for the signed webhooks' timestamps.
#[derive(Debug)]
struct Wall;

impl countersign_core::Clock for Wall {
    fn now(&self) -> countersign_core::Timestamp {
        wall_now()
    }
}

fn sender() -> Sender {
    Sender::new(Duration::from_secs(5), std::sync::Arc::new(Wall)).unwrap()
}

fn bot(slack: &SlackReceiver) -> ChannelSpec {
    spec(
        "ops-slack",
        ChannelKind::Slack(SlackSpec::Bot {
            token: Secret::new(TOKEN),
            channel: CHANNEL.into(),
            api_url: slack.api_url(),
        }),
    )
}

fn slack_webhook(slack: &SlackReceiver) -> ChannelSpec {
    spec(
        "ops-hook",
        ChannelKind::Slack(SlackSpec::Webhook {
            url: Secret::new(slack.webhook_url()),
        }),
    )
}

/// Every string in a JSON value.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

fn all_text(value: &Value) -> String {
    let mut out = Vec::new();
    strings(value, &mut out);
    out.join("\n")
}

fn assert_retry_after(result: Result<Option<ThreadRef>, SendError>, secs: u64) {
    match result {
        Err(SendError::Retry { after, .. }) => assert_eq!(after, Some(Duration::from_secs(secs))),
        other => panic!("expected a retry after {secs}s, got {other:?}"),
    }
}

fn permanent(result: Result<Option<ThreadRef>, SendError>) -> String {
    match result {
        Err(SendError::Permanent(message)) => message,
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

// ---------------------------------------------------------------- Slack: rendering

#[test]
fn slack_messages_stay_within_block_kit_limits() {
    let n = huge();
    for message in [
        slack::message(&n),
        slack::follow_up(&n),
        slack::message(&approved()),
        slack::follow_up(&reminder()),
    ] {
        assert_eq!(block_kit_problems(&message), Vec::<String>::new());
        let blocks = message["blocks"].as_array().unwrap();
        assert!(blocks.len() <= slack::MAX_BLOCKS);
        assert!(!message["text"].as_str().unwrap().is_empty());
        assert_eq!(message["unfurl_links"], false);
        assert_eq!(message["unfurl_media"], false);
    }
    let message = slack::message(&n);
    let blocks = message["blocks"].as_array().unwrap();
    let header = blocks[0]["text"]["text"].as_str().unwrap();
    assert!(header.chars().count() <= slack::HEADER_LIMIT);
    let fields = blocks[1]["fields"].as_array().unwrap();
    assert_eq!(fields.len(), slack::MAX_FIELDS);
    for field in fields {
        assert!(field["text"].as_str().unwrap().chars().count() <= slack::FIELD_LIMIT);
    }
    for block in blocks {
        if let Some(text) = block["text"]["text"].as_str() {
            assert!(text.chars().count() <= slack::SECTION_LIMIT);
        }
    }
    // The parameters that did not fit in the fields are in one more section, cut visibly.
    let rest = all_text(&message);
    assert!(rest.contains("*More parameters*"), "{rest}");
    assert!(rest.contains("truncated — see the request page"));
    // The expiry as a Slack date, with a fallback.
    assert!(rest.contains("<!date^1795953600^{date_short_pretty} {time}|2026-11-29 12:00 UTC>"));
    // The link is an mrkdwn link, never a button (URL buttons still fire interactions).
    assert!(blocks.iter().all(|b| b["type"] != "actions"));
    assert!(rest.contains(&format!("<{}|Review and decide>", n.url)));
    assert!(rest.contains("request `req_01jc5m8k2v3n4p5q6r7s8t9v0w`"));
    assert!(rest.contains("digest `sha256:3f9a0c1d2e3f`"));
}

/// What remains of mrkdwn text once our own `<…>` constructs (the link, the date) are cut
/// out: no `<` may be left, or user text made a mention or a link.
fn strip_own_constructs(text: &str, n: &Notice) -> String {
    let mut rest = text
        .replace(&format!("<{}|Review and decide>", n.url), "")
        .replace(&format!("<{}|Open the request>", n.url), "");
    while let Some(start) = rest.find("<!date^") {
        let end = rest[start..]
            .find('>')
            .map_or(rest.len(), |e| start + e + 1);
        rest.replace_range(start..end, "");
    }
    rest
}

#[test]
fn slack_user_text_is_escaped_and_inert() {
    let n = hostile();
    for message in [
        slack::message(&n),
        slack::follow_up(&n),
        slack::thread_reply(&n),
    ] {
        let text = all_text(&message);
        let rest = strip_own_constructs(&text, &n);
        assert!(!rest.contains('<'), "a raw < from user text: {rest}");
        assert!(!rest.contains('>'), "a raw > from user text: {rest}");
    }
    let text = all_text(&slack::message(&n));
    assert!(text.contains("&lt;!channel&gt;"));
    assert!(text.contains("&lt;https://evil.example|Approve&gt;"));
    assert!(text.contains("&lt;@U0ADMIN&gt; &amp; &lt;!here&gt;"));
    // `&amp;` typed by a user shows as `&amp;`, not as `&`.
    assert!(text.contains("&amp;amp;"));

    // Cutting never splits an entity.
    let mut long = notice(NoticeKind::Created);
    long.reason = Some("&".repeat(10_000));
    let message = slack::message(&long);
    let reason = message["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|b| {
            b["text"]["text"]
                .as_str()
                .filter(|t| t.starts_with("*Reason*"))
        })
        .unwrap()
        .to_owned();
    assert!(reason.chars().count() <= slack::SECTION_LIMIT);
    let body = reason
        .trim_start_matches("*Reason*\n")
        .trim_end_matches(" … (truncated — see the request page)");
    assert!(body.split("&amp;").all(str::is_empty), "{body}");
}

#[test]
fn slack_decisions_read_as_people_say_them() {
    let text = all_text(&slack::message(&approved()));
    assert!(
        text.contains("✅ Approved by Bob (for sre), Carol (for api)"),
        "{text}"
    );
    let text = all_text(&slack::message(&rejected()));
    assert!(
        text.contains("❌ Rejected by Bob: not during the freeze"),
        "{text}"
    );
    let reply = all_text(&slack::thread_reply(&progress()));
    assert!(
        reply.contains("Bob approved for sre: looks fine"),
        "{reply}"
    );
    for (state, line) in [
        ("expired", "⌛ Expired"),
        ("cancelled", "🚫 Cancelled"),
        ("revoked", "Revoked"),
    ] {
        let mut n = notice(NoticeKind::Decided);
        n.state = state.into();
        n.needs.clear();
        let text = all_text(&slack::message(&n));
        assert!(text.contains(line), "{state}: {text}");
        // The link stays: it is the request page.
        assert!(text.contains(&format!("<{}|Open the request>", n.url)));
    }
}

// ---------------------------------------------------------------- Slack: sending

#[tokio::test]
async fn slack_webhook_posts_the_message_then_a_follow_up() {
    let slack = SlackReceiver::start(TOKEN).await.unwrap();
    let sender = sender();
    let channel = slack_webhook(&slack);
    let created = notice(NoticeKind::Created);
    assert_eq!(sender.send(&channel, out(&created)).await, Ok(None));
    let decided = approved();
    assert_eq!(sender.send(&channel, out(&decided)).await, Ok(None));

    let calls = slack.calls();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c.path.starts_with("/services/")));
    assert_eq!(calls[0].body, slack::message(&created));
    assert_eq!(calls[0].body["blocks"][0]["type"], "header");
    // The follow-up names the request, says where it stands and links to it.
    let follow_up = &calls[1].body;
    assert_eq!(follow_up, &slack::follow_up(&decided));
    let text = all_text(follow_up);
    assert!(text.contains("req_01jc5m8k2v3n4p5q6r7s8t9v0w"));
    assert!(text.contains("✅ Approved by Bob"));
    assert!(text.contains(&decided.url));
    assert!(calls[0].headers["content-type"].starts_with("application/json"));
}

#[tokio::test]
async fn slack_bot_posts_then_updates_the_same_message_and_replies_in_its_thread() {
    let slack = SlackReceiver::start(TOKEN).await.unwrap();
    let sender = sender();
    let channel = bot(&slack);

    let created = notice(NoticeKind::Created);
    let root = sender.send(&channel, out(&created)).await.unwrap().unwrap();
    let ThreadRef::Slack {
        channel: posted_in,
        ts,
    } = root.clone()
    else {
        panic!("not a slack thread: {root:?}")
    };
    assert_eq!(posted_in, CHANNEL);

    let step = progress();
    let sent = sender
        .send(
            &channel,
            Outgoing {
                thread: Some(&root),
                ..out(&step)
            },
        )
        .await;
    assert_eq!(sent, Ok(None));
    let done = approved();
    let sent = sender
        .send(
            &channel,
            Outgoing {
                thread: Some(&root),
                ..out(&done)
            },
        )
        .await;
    assert_eq!(sent, Ok(None));
    let later = reminder();
    let sent = sender
        .send(
            &channel,
            Outgoing {
                thread: Some(&root),
                ..out(&later)
            },
        )
        .await;
    assert_eq!(sent, Ok(None));

    let calls = slack.calls();
    let paths: Vec<&str> = calls.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/api/chat.postMessage",
            "/api/chat.update",
            "/api/chat.postMessage",
            "/api/chat.update",
            "/api/chat.postMessage",
            "/api/chat.postMessage",
        ]
    );
    for call in &calls {
        assert_eq!(call.headers["authorization"], format!("Bearer {TOKEN}"));
    }
    // The first post is the whole message in the configured channel, not in a thread.
    assert_eq!(calls[0].body["channel"], CHANNEL);
    assert!(calls[0].body.get("thread_ts").is_none());
    // Both updates edit that very message, rebuilt with new block ids.
    for update in [&calls[1], &calls[3]] {
        assert_eq!(update.body["channel"], posted_in.as_str());
        assert_eq!(update.body["ts"], ts.as_str());
    }
    let ids = |v: &Value| -> Vec<String> {
        v["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["block_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let first = ids(&calls[0].body);
    assert!(ids(&calls[3].body).iter().all(|id| !first.contains(id)));
    // The decisions and the reminder are replies in the message's thread.
    for reply in [&calls[2], &calls[4], &calls[5]] {
        assert_eq!(reply.body["thread_ts"], ts.as_str());
        assert_eq!(reply.body["channel"], posted_in.as_str());
    }
    assert!(all_text(&calls[2].body).contains("Bob approved for sre: looks fine"));
    assert!(all_text(&calls[4].body).contains("Carol approved for api"));
    assert!(all_text(&calls[5].body).contains("expires in 15m"));
    // What the channel shows now is the decided message.
    let shown = slack.message(&posted_in, &ts).unwrap();
    assert!(all_text(&shown).contains("✅ Approved by Bob (for sre), Carol (for api)"));
    assert!(!all_text(&shown).contains("Review and decide"));
}

#[tokio::test]
async fn slack_bot_posts_anew_when_the_first_message_is_gone_or_was_never_posted() {
    let slack = SlackReceiver::start(TOKEN).await.unwrap();
    let sender = sender();
    let channel = bot(&slack);
    let created = notice(NoticeKind::Created);
    let root = sender.send(&channel, out(&created)).await.unwrap().unwrap();
    let ThreadRef::Slack { ts, .. } = &root else {
        panic!()
    };
    slack.delete_message(CHANNEL, ts);

    let done = approved();
    let new_root = sender
        .send(
            &channel,
            Outgoing {
                thread: Some(&root),
                ..out(&done)
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_ne!(new_root, root);
    let calls = slack.calls();
    assert_eq!(calls[1].path, "/api/chat.update");
    assert_eq!(calls[2].path, "/api/chat.postMessage");
    assert!(calls[2].body.get("thread_ts").is_none());
    assert!(all_text(&calls[2].body).contains("✅ Approved"));

    // A follow-up whose root was never posted posts the whole message and is the root.
    let step = progress();
    let posted = sender.send(&channel, out(&step)).await.unwrap();
    assert!(matches!(posted, Some(ThreadRef::Slack { .. })));
    assert_eq!(
        slack.calls().last().unwrap().body["blocks"][0]["type"],
        "header"
    );
}

#[tokio::test]
async fn slack_429_is_a_retry_after_what_slack_asked() {
    let slack = SlackReceiver::start(TOKEN).await.unwrap();
    let sender = sender();
    let n = notice(NoticeKind::Created);
    slack.fail_next(
        1,
        SlackFailure::RateLimited {
            retry_after_secs: 7,
        },
    );
    assert_retry_after(sender.send(&slack_webhook(&slack), out(&n)).await, 7);
    slack.fail_next(
        1,
        SlackFailure::RateLimited {
            retry_after_secs: 30,
        },
    );
    assert_retry_after(sender.send(&bot(&slack), out(&n)).await, 30);
    // And then it goes through.
    assert!(sender.send(&bot(&slack), out(&n)).await.unwrap().is_some());
}

#[tokio::test]
async fn slack_errors_are_mapped_without_secrets() {
    let slack = SlackReceiver::start(TOKEN).await.unwrap();
    let sender = sender();
    let n = notice(NoticeKind::Created);

    for code in [
        "invalid_auth",
        "not_authed",
        "channel_not_found",
        "not_in_channel",
        "account_inactive",
        "token_revoked",
        "msg_too_long",
        "invalid_blocks",
    ] {
        slack.fail_next(1, SlackFailure::Error(code.into()));
        let message = permanent(sender.send(&bot(&slack), out(&n)).await);
        assert!(message.contains(code), "{message}");
        assert!(!message.contains(TOKEN));
    }
    for code in ["internal_error", "fatal_error", "ratelimited"] {
        slack.fail_next(1, SlackFailure::Error(code.into()));
        let sent = sender.send(&bot(&slack), out(&n)).await;
        assert!(
            matches!(sent, Err(SendError::Retry { .. })),
            "{code}: {sent:?}"
        );
    }
    // A token Slack does not know is refused by the receiver itself.
    let wrong = spec(
        "wrong",
        ChannelKind::Slack(SlackSpec::Bot {
            token: Secret::new("xoxb-wrong"),
            channel: CHANNEL.into(),
            api_url: slack.api_url(),
        }),
    );
    let message = permanent(sender.send(&wrong, out(&n)).await);
    assert!(message.contains("invalid_auth"), "{message}");
    assert!(!message.contains("xoxb-wrong"));

    // Incoming webhooks: 4xx is permanent, with Slack's word; 5xx is worth a retry. The
    // URL (the credential) is never in the error.
    slack.fail_next(1, SlackFailure::Status(410, "channel_is_archived".into()));
    let message = permanent(sender.send(&slack_webhook(&slack), out(&n)).await);
    assert!(message.contains("channel_is_archived"), "{message}");
    assert!(!message.contains("webhooksecret") && !message.contains("/services/"));
    slack.fail_next(1, SlackFailure::Error("invalid_payload".into()));
    let message = permanent(sender.send(&slack_webhook(&slack), out(&n)).await);
    assert!(message.contains("invalid_payload"), "{message}");
    slack.fail_next(1, SlackFailure::Status(500, "rollup_error".into()));
    let sent = sender.send(&slack_webhook(&slack), out(&n)).await;
    assert!(matches!(sent, Err(SendError::Retry { .. })), "{sent:?}");

    // Nobody listening: a retry, and still no URL.
    let gone = spec(
        "gone",
        ChannelKind::Slack(SlackSpec::Webhook {
            url: Secret::new("http://127.0.0.1:9/services/T/B/verysecret"),
        }),
    );
    match sender.send(&gone, out(&n)).await {
        Err(SendError::Retry { error, .. }) => assert!(!error.contains("verysecret"), "{error}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(SLACK_API_URL, "https://slack.com/api");
}

// ---------------------------------------------------------------- Teams

/// Every `"type": "Action.…"` in a card.
fn action_types(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(t) = map.get("type").and_then(Value::as_str)
                && t.starts_with("Action.")
            {
                out.push(t.to_owned());
            }
            map.values().for_each(|v| action_types(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| action_types(v, out)),
        _ => {}
    }
}

#[test]
fn teams_cards_pass_microsofts_parser() {
    for n in [
        notice(NoticeKind::Created),
        notice(NoticeKind::Escalated { after_secs: 14_400 }),
        progress(),
        approved(),
        rejected(),
        reminder(),
        hostile(),
        huge(),
        channels::sample_notice("https://approvals.example.com", wall_now()),
    ] {
        let body = teams::body(&n);
        assert_eq!(body["type"], "message");
        let attachment = &body["attachments"][0];
        assert_eq!(
            attachment["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert!(attachment["contentUrl"].is_null());
        let card = &attachment["content"];
        if let Err(problems) = validate_adaptive_card(card) {
            panic!("{:?}: {problems}\n{card:#}", n.kind);
        }
        assert_eq!(card["version"], "1.4");
        assert_eq!(card["msteams"]["width"], "Full");
        let mut actions = Vec::new();
        action_types(card, &mut actions);
        assert_eq!(actions, ["Action.OpenUrl"]);
        assert_eq!(card["actions"][0]["url"], n.url.as_str());
    }
}

#[test]
fn the_validator_refuses_what_teams_would_not_take() {
    let mut card = teams::card(&notice(NoticeKind::Created));
    card["actions"][0]["type"] = "Action.Submit".into();
    assert!(
        validate_adaptive_card(&card)
            .unwrap_err()
            .contains("Action.Submit")
    );
    let mut card = teams::card(&notice(NoticeKind::Created));
    card["version"] = "1.6".into();
    assert!(validate_adaptive_card(&card).unwrap_err().contains("1.6"));
    let mut card = teams::card(&notice(NoticeKind::Created));
    card["body"][0]["size"] = "Enormous".into();
    assert!(validate_adaptive_card(&card).is_err());
}

#[test]
fn teams_body_stays_under_20_kb_with_a_10_kb_reason() {
    let n = huge();
    assert!(n.reason.as_ref().unwrap().len() > 10_000);
    let body = teams::body(&n);
    let size = serde_json::to_vec(&body).unwrap().len();
    assert!(size <= teams::MAX_BODY_BYTES, "{size} bytes");
    let text = all_text(&body);
    assert!(
        text.contains("(truncated — see the request page)"),
        "{text}"
    );
    // Even a decided card about it.
    let mut done = huge();
    done.kind = NoticeKind::Decided;
    done.state = "rejected".into();
    done.decisions = (0..50)
        .map(|_| {
            decision(
                &"B".repeat(500),
                "reject",
                &"r".repeat(500),
                Some(&"c".repeat(5000)),
            )
        })
        .collect();
    done.latest = Some(49);
    assert!(serde_json::to_vec(&teams::body(&done)).unwrap().len() <= teams::MAX_BODY_BYTES);
}

#[test]
fn teams_markdown_in_user_text_is_escaped() {
    let n = hostile();
    let text = all_text(&teams::card(&n));
    assert!(
        text.contains("\\[Approve\\]\\(https://evil.example\\)"),
        "{text}"
    );
    assert!(text.contains("\\*bold\\*"));
    assert!(text.contains("\\<script\\>"));
    assert!(text.contains("\\# heading"));
    // No user-made link can render: every `](` is escaped.
    assert!(!text.contains("]("), "{text}");
    assert!(!text.replace("\\<", "").contains('<'), "{text}");
}

#[tokio::test]
async fn teams_posts_cards_and_maps_errors() {
    let server = SlackReceiver::start(TOKEN).await.unwrap();
    let sender = sender();
    let channel = spec(
        "ops-teams",
        ChannelKind::Teams(TeamsSpec {
            url: Secret::new(server.teams_url()),
        }),
    );
    let created = notice(NoticeKind::Created);
    assert_eq!(sender.send(&channel, out(&created)).await, Ok(None));
    let decided = approved();
    assert_eq!(sender.send(&channel, out(&decided)).await, Ok(None));
    let calls = server.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].body, teams::body(&created));
    // The decision is a second, short card (a workflow cannot edit the first).
    let second = &calls[1].body["attachments"][0]["content"];
    assert!(all_text(second).contains("✅ Approved by Bob (for sre), Carol (for api)"));
    assert!(calls[1].raw.len() < calls[0].raw.len());

    server.fail_next(
        1,
        SlackFailure::RateLimited {
            retry_after_secs: 4,
        },
    );
    assert_retry_after(sender.send(&channel, out(&created)).await, 4);
    server.fail_next(
        1,
        SlackFailure::Status(413, "Request Entity Too Large".into()),
    );
    let message = permanent(sender.send(&channel, out(&created)).await);
    assert!(
        message.contains("413") && !message.contains("teamssecret"),
        "{message}"
    );
    server.fail_next(1, SlackFailure::Status(502, String::new()));
    let sent = sender.send(&channel, out(&created)).await;
    assert!(matches!(sent, Err(SendError::Retry { .. })), "{sent:?}");

    // An Office 365 connector URL is refused before anything is sent.
    let before = server.calls().len();
    let connector = spec(
        "old-teams",
        ChannelKind::Teams(TeamsSpec {
            url: Secret::new(
                "https://acme.webhook.office.com/webhookb2/1234@5678/IncomingWebhook/abcd/efgh",
            ),
        }),
    );
    let message = permanent(sender.send(&connector, out(&created)).await);
    assert!(
        message.contains("retired") && message.contains("Workflows"),
        "{message}"
    );
    assert!(!message.contains("IncomingWebhook/abcd"));
    assert_eq!(server.calls().len(), before);
}

// ---------------------------------------------------------------- e-mail

const SMTP_USER: &str = "countersign";
const SMTP_PASSWORD: &str = "s3cret-smtp-pass";

fn mail_channel(
    server: &SmtpServer,
    password: &str,
    to: &[&str],
    to_eligible: bool,
) -> ChannelSpec {
    spec(
        "ops-mail",
        ChannelKind::Email(EmailSpec {
            host: server.host().into(),
            port: server.port(),
            security: SmtpSecurity::StartTls,
            username: Some(SMTP_USER.into()),
            password: Some(Secret::new(password)),
            ca_pem: server.ca_pem().map(str::to_owned),
            from: "countersign <approvals@example.com>".into(),
            to: to.iter().map(|s| (*s).to_owned()).collect(),
            to_eligible,
        }),
    )
}

fn smtp() -> SmtpServer {
    SmtpServer::start(SMTP_USER, SMTP_PASSWORD).unwrap()
}

fn header<'a>(message: &'a Value, name: &str) -> &'a str {
    mail_header(message, name).unwrap_or_else(|| panic!("no {name} header in {message:#}"))
}

#[tokio::test]
async fn email_goes_to_the_fixed_and_eligible_recipients_over_starttls() {
    let server = smtp();
    let sender = sender();
    let channel = mail_channel(&server, SMTP_PASSWORD, &["ops@example.com"], true);
    let n = notice(NoticeKind::Created);
    let eligible = ["bob@example.com".to_owned(), "OPS@example.com".to_owned()];
    let sent = sender
        .send(
            &channel,
            Outgoing {
                recipients: &eligible,
                ..out(&n)
            },
        )
        .await;
    let root = format!("<{}.ops-mail@{DOMAIN}>", n.request_id);
    assert_eq!(
        sent,
        Ok(Some(ThreadRef::Email {
            message_id: root.clone()
        }))
    );

    let messages = server.messages();
    assert_eq!(messages.len(), 1, "{}", server.output());
    let mail = &messages[0];
    assert_eq!(
        mail["rcpt_tos"],
        serde_json::json!(["ops@example.com", "bob@example.com"])
    );
    assert_eq!(mail["tls"], true);
    assert_eq!(mail["auth_user"], SMTP_USER);
    assert_eq!(mail["mail_from"], "approvals@example.com");
    assert_eq!(header(mail, "Message-ID"), root);
    assert_eq!(
        header(mail, "Subject"),
        format!(
            "[countersign] Approval needed: deploy-prod ({})",
            n.request_id
        )
    );
    assert_eq!(header(mail, "Auto-Submitted"), "auto-generated");
    assert_eq!(header(mail, "X-Auto-Response-Suppress"), "All");
    assert!(mail_header(mail, "In-Reply-To").is_none());
    assert_eq!(mail["content_type"], "multipart/alternative");
    assert_eq!(
        mail["parts"],
        serde_json::json!(["multipart/alternative", "text/plain", "text/html"])
    );
    let text = mail["text"].as_str().unwrap();
    let html = mail["html"].as_str().unwrap();
    for part in [text, html] {
        assert!(part.contains(&n.url));
        assert!(part.contains(&n.request_id));
        assert!(part.contains("sha256:3f9a0c1d2e3f"));
        assert!(part.contains("1 more from sre"));
    }
    // Exactly one link in the HTML: the request page.
    assert_eq!(html.matches("<a ").count(), 1);
    assert!(html.contains(&format!("<a href=\"{}\"", n.url)));
    // Only the fixed address when the channel does not add the eligible people.
    let fixed = mail_channel(&server, SMTP_PASSWORD, &["ops@example.com"], false);
    sender
        .send(
            &fixed,
            Outgoing {
                recipients: &eligible,
                ..out(&n)
            },
        )
        .await
        .unwrap();
    assert_eq!(
        server.messages()[1]["rcpt_tos"],
        serde_json::json!(["ops@example.com"])
    );
}

#[tokio::test]
async fn email_threads_later_mails_under_the_first() {
    let server = smtp();
    let sender = sender();
    let channel = mail_channel(&server, SMTP_PASSWORD, &["ops@example.com"], false);
    let created = notice(NoticeKind::Created);
    let root = sender.send(&channel, out(&created)).await.unwrap().unwrap();
    let ThreadRef::Email { message_id } = &root else {
        panic!("{root:?}")
    };
    let decided = approved();
    let sent = sender
        .send(
            &channel,
            Outgoing {
                thread: Some(&root),
                ..out(&decided)
            },
        )
        .await;
    assert_eq!(sent, Ok(None));
    // Without the kept reference, the root id is recomputed: the same.
    let step = progress();
    assert_eq!(sender.send(&channel, out(&step)).await, Ok(None));

    let messages = server.messages();
    assert_eq!(messages.len(), 3);
    assert_eq!(header(&messages[0], "Message-ID"), message_id);
    for reply in &messages[1..] {
        assert_eq!(header(reply, "In-Reply-To"), message_id);
        assert_eq!(header(reply, "References"), message_id);
        assert_ne!(header(reply, "Message-ID"), message_id);
        assert_eq!(
            header(reply, "Subject"),
            format!(
                "Re: [countersign] Approval needed: deploy-prod ({})",
                created.request_id
            )
        );
        assert_eq!(header(reply, "Auto-Submitted"), "auto-generated");
    }
    assert_eq!(
        header(&messages[1], "Message-ID"),
        format!("<{}.ops-mail.3.decided@{DOMAIN}>", decided.request_id)
    );
    assert!(
        messages[1]["text"]
            .as_str()
            .unwrap()
            .contains("✅ Approved by Bob (for sre), Carol (for api)")
    );
    assert!(
        messages[2]["html"]
            .as_str()
            .unwrap()
            .contains("Bob approved for sre: looks fine")
    );
}

#[tokio::test]
async fn email_to_the_requester_goes_to_them_alone() {
    let server = smtp();
    let sender = sender();
    let channel = mail_channel(&server, SMTP_PASSWORD, &["ops@example.com"], true);
    let n = rejected();
    let requester = ["alice@acme.test".to_owned()];
    let sent = sender
        .send(
            &channel,
            Outgoing {
                recipients: &requester,
                to_requester: true,
                ..out(&n)
            },
        )
        .await;
    assert_eq!(sent, Ok(None));
    let mail = &server.messages()[0];
    assert_eq!(mail["rcpt_tos"], serde_json::json!(["alice@acme.test"]));
    assert!(
        mail["text"]
            .as_str()
            .unwrap()
            .contains("❌ Rejected by Bob: not during the freeze")
    );

    // Nobody to send to is a configuration matter.
    let nobody = mail_channel(&server, SMTP_PASSWORD, &[], true);
    let message = permanent(sender.send(&nobody, out(&n)).await);
    assert!(message.contains("no recipients"), "{message}");
    let message = permanent(
        sender
            .send(
                &channel,
                Outgoing {
                    to_requester: true,
                    ..out(&n)
                },
            )
            .await,
    );
    assert!(message.contains("no recipients"), "{message}");
}

#[tokio::test]
async fn email_html_escapes_a_hostile_reason() {
    let server = smtp();
    let sender = sender();
    let channel = mail_channel(&server, SMTP_PASSWORD, &["ops@example.com"], false);
    let n = hostile();
    sender.send(&channel, out(&n)).await.unwrap();
    let mail = &server.messages()[0];
    let html = mail["html"].as_str().unwrap();
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("<img"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
    assert!(html.contains("&amp;amp;"));
    assert_eq!(html.matches("<a ").count(), 1);
    assert_eq!(html.matches("href=").count(), 1);
    // The plain part shows the text as written.
    assert!(
        mail["text"]
            .as_str()
            .unwrap()
            .contains("<script>alert(1)</script>")
    );
    // The renderers are what was sent.
    assert_eq!(
        email::html(&n).trim_end(),
        html.replace("\r\n", "\n").trim_end()
    );
}

#[tokio::test]
async fn email_wrong_password_is_permanent_and_does_not_repeat_it() {
    let server = smtp();
    let sender = sender();
    let channel = mail_channel(&server, "wrong-password-123", &["ops@example.com"], false);
    let n = notice(NoticeKind::Created);
    let message = permanent(sender.send(&channel, out(&n)).await);
    assert!(message.contains("535"), "{message}");
    assert!(!message.contains("wrong-password-123"), "{message}");
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn email_refuses_a_server_without_starttls() {
    let server = SmtpServer::start_without_tls().unwrap();
    let sender = sender();
    let channel = mail_channel(&server, SMTP_PASSWORD, &["ops@example.com"], false);
    let n = notice(NoticeKind::Created);
    let sent = sender.send(&channel, out(&n)).await;
    assert!(sent.is_err(), "{sent:?}");
    let error = sent.unwrap_err().to_string();
    assert!(error.to_lowercase().contains("starttls"), "{error}");
    assert!(!error.contains(SMTP_PASSWORD));
    // Nothing went over the plaintext connection.
    assert!(server.messages().is_empty());
}

// ---------------------------------------------------------------- the signed webhook

const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// `receiver.py`: verifies each request with the Standard Webhooks reference library.
struct Receiver {
    child: Child,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl Receiver {
    fn start() -> Self {
        let log = tempfile::NamedTempFile::new().unwrap();
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(python)
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/receiver.py"))
            .args(["--secret", WEBHOOK_SECRET, "--log"])
            .arg(log.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the receiver did not start");
        Self { child, port, log }
    }

    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(self.log.path())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // Only the process this test started, by its PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn webhook_notices_are_signed_and_verify_with_the_reference_library() {
    let receiver = Receiver::start();
    let sender = sender();
    let channel = spec(
        "audit-hook",
        ChannelKind::Webhook(WebhookChannelSpec {
            url: format!("http://127.0.0.1:{}/notify", receiver.port),
            secret: Secret::new(WEBHOOK_SECRET),
        }),
    );
    let n = approved();
    assert_eq!(sender.send(&channel, out(&n)).await, Ok(None));
    // Sent again (a retry): the same id, so the receiver can drop it.
    assert_eq!(sender.send(&channel, out(&n)).await, Ok(None));
    let later = reminder();
    assert_eq!(sender.send(&channel, out(&later)).await, Ok(None));

    let requests = receiver.requests();
    assert_eq!(requests.len(), 3);
    assert!(
        requests.iter().all(|r| r["verified"] == true),
        "{requests:?}"
    );
    assert_eq!(requests[0]["id"], requests[1]["id"]);
    assert_ne!(requests[0]["id"], requests[2]["id"]);
    assert_eq!(requests[0]["id"], webhook::message_id(&n, "audit-hook"));
    let body: Value = serde_json::from_str(requests[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["type"], "notification.decided");
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body["data"]["channel"], "audit-hook");
    assert_eq!(body["data"]["request_id"], n.request_id.as_str());
    assert_eq!(body["data"]["state"], "approved");
    assert_eq!(body["data"]["params"]["service"], "api");
    assert_eq!(body["data"]["url"], n.url.as_str());
    assert_eq!(body["data"]["decisions"][1]["who"]["name"], "Carol");
    let reminder_body: Value = serde_json::from_str(requests[2]["body"].as_str().unwrap()).unwrap();
    assert_eq!(reminder_body["type"], "notification.reminder");
    assert_eq!(reminder_body["data"]["expires_in_secs"], 900);
}

// ---------------------------------------------------------------- preview and sample

#[tokio::test]
async fn preview_keeps_the_newest_hundred_renderings() {
    let sender = sender();
    let channel = spec("dev-preview", ChannelKind::Preview);
    for version in 1..=105 {
        let mut n = notice(NoticeKind::Created);
        n.version = version;
        assert_eq!(sender.send(&channel, out(&n)).await, Ok(None));
    }
    let previews = sender.previews();
    assert_eq!(previews.len(), channels::PREVIEWS_KEPT);
    assert_eq!(previews[0].at_version, 105);
    assert_eq!(previews[99].at_version, 6);
    let newest = &previews[0];
    assert_eq!(newest.channel, "dev-preview");
    assert_eq!(newest.kind, "created");
    assert_eq!(newest.request_id, "req_01jc5m8k2v3n4p5q6r7s8t9v0w");
    assert_eq!(newest.slack["blocks"][0]["type"], "header");
    assert_eq!(newest.teams["type"], "message");
    assert!(newest.email_subject.contains("deploy-prod"));
    assert!(newest.email_text.contains("Review and decide"));
    assert!(newest.email_html.contains("<a href="));
    // Clones share the ring.
    assert_eq!(sender.clone().previews().len(), channels::PREVIEWS_KEPT);
}

#[test]
fn the_sample_notice_is_realistic_and_renders_inert() {
    let n = channels::sample_notice("https://approvals.example.com/", wall_now());
    assert!(n.request_id.starts_with("req_sample"));
    assert_eq!(n.gate, "sample");
    assert_eq!(
        n.url,
        format!("https://approvals.example.com/requests/{}", n.request_id)
    );
    let slack_text = all_text(&slack::message(&n));
    assert!(
        !strip_own_constructs(&slack_text, &n).contains('<'),
        "{slack_text}"
    );
    let html = email::html(&n);
    assert!(!html.contains("<script") && !html.contains("<img"));
    assert_eq!(html.matches("<a ").count(), 1);
    assert!(!all_text(&teams::card(&n)).contains("]("));
}
