//! Webhook delivery end to end: the real `Deliverer` against an in-memory outbox and a
//! receiver (`receiver.py`) that checks every request with the Standard Webhooks reference
//! library. Needs `python3` (or `$PYTHON`) with the packages of `tests/requirements.txt`.

// Helpers outside #[test] functions are test code too: a failed unwrap is a failed test.
#![expect(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use countersign_core::audit::AuditAction;
use countersign_core::condition::Condition;
use countersign_core::gate::REQUESTER_VARIABLES;
use countersign_core::grant::{Delivery, DeliveryState, OutboxMessage};
use countersign_core::ports::{AttemptOutcome, Clock as _, ManualClock, OutboxStore};
use countersign_core::secret::Secret;
use countersign_core::{
    Gate, GateSet, GrantSpec, RequestId, Requirement, StoreError, Timestamp, WebhookSpec,
};
use countersign_notify::{Deliverer, RetryPolicy, USER_AGENT, sign};
use serde_json::{Value, json};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_SECRET: &str = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const EVENT: &str = "request.approved";
const INSTALL: &str = "pip install -r crates/notify/tests/requirements.txt";

// ---------------------------------------------------------------- in-memory outbox

/// The outbox contract in memory: claims take pending deliveries due at `now`, oldest first,
/// and push them `lease` ahead; records count attempts and move the state.
#[derive(Debug, Default)]
struct MemoryOutbox(Mutex<Vec<Delivery>>);

impl MemoryOutbox {
    fn push(&self, message: OutboxMessage) {
        let at = message.created_at;
        self.0.lock().unwrap().push(Delivery {
            message,
            state: DeliveryState::Pending,
            attempts: 0,
            next_attempt_at: at,
            last_error: None,
            updated_at: at,
        });
    }

    fn get(&self, id: &str) -> Delivery {
        self.0
            .lock()
            .unwrap()
            .iter()
            .find(|d| d.message.id == id)
            .cloned()
            .expect("no such delivery")
    }
}

#[async_trait]
impl OutboxStore for MemoryOutbox {
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        limit: u32,
        lease: chrono::Duration,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut all = self.0.lock().unwrap();
        let mut due: Vec<&mut Delivery> = all
            .iter_mut()
            .filter(|d| d.state == DeliveryState::Pending && d.next_attempt_at <= now)
            .collect();
        due.sort_by(|a, b| {
            (a.message.created_at, &a.message.id).cmp(&(b.message.created_at, &b.message.id))
        });
        Ok(due
            .into_iter()
            .take(limit as usize)
            .map(|d| {
                d.next_attempt_at = now + lease;
                d.updated_at = now;
                d.clone()
            })
            .collect())
    }

    async fn record_attempt(
        &self,
        id: &str,
        outcome: &AttemptOutcome,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut all = self.0.lock().unwrap();
        let d = all
            .iter_mut()
            .find(|d| d.message.id == id)
            .ok_or(StoreError::NotFound)?;
        d.attempts += 1;
        d.updated_at = now;
        match outcome {
            AttemptOutcome::Delivered => d.state = DeliveryState::Delivered,
            AttemptOutcome::Retry {
                next_attempt_at,
                error,
            } => {
                d.next_attempt_at = *next_attempt_at;
                d.last_error = Some(error.clone());
            }
            AttemptOutcome::Failed { error } => {
                d.state = DeliveryState::Failed;
                d.last_error = Some(error.clone());
            }
        }
        Ok(())
    }

    async fn list_deliveries(
        &self,
        state: Option<DeliveryState>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut all: Vec<Delivery> = self.0.lock().unwrap().clone();
        all.sort_by(|a, b| b.message.id.cmp(&a.message.id));
        Ok(all
            .into_iter()
            .filter(|d| state.is_none_or(|s| d.state == s))
            .filter(|d| after.is_none_or(|a| d.message.id.as_str() < a))
            .take(limit as usize)
            .collect())
    }

    async fn retry_delivery(&self, id: &str, now: Timestamp) -> Result<bool, StoreError> {
        let mut all = self.0.lock().unwrap();
        match all
            .iter_mut()
            .find(|d| d.message.id == id && d.state == DeliveryState::Failed)
        {
            Some(d) => {
                d.state = DeliveryState::Pending;
                d.attempts = 0;
                d.next_attempt_at = now;
                d.updated_at = now;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

// ---------------------------------------------------------------- the reference receiver

/// `receiver.py` as a child process, killed (by its pid) when dropped.
struct Receiver {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    /// Starts a receiver verifying with `secret` and answering per `script` (see receiver.py).
    fn start(secret: &str, script: Value) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("requests.jsonl");
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(&python)
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/receiver.py"))
            .arg("--secret")
            .arg(secret)
            .arg("--log")
            .arg(&log)
            .arg("--script")
            .arg(script.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {python} for the webhook receiver ({e}); install python3, then {INSTALL}")
            });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("the webhook receiver did not start (is standardwebhooks installed? {INSTALL})")
        });
        Self {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request received so far, in order.
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- fixtures

/// The wall clock, once, to start the manual clock: the reference verifier refuses a
/// `webhook-timestamp` more than five minutes away from its own clock.
#[expect(
    clippy::disallowed_methods,
    reason = "the receiver checks webhook timestamps against the real time, as a real one would"
)]
fn wall_now() -> Timestamp {
    countersign_core::time::truncate(chrono::Utc::now())
}

fn gate(name: &str, webhooks: Vec<WebhookSpec>) -> Gate {
    Gate {
        name: name.into(),
        description: String::new(),
        params: Default::default(),
        requesters: Condition::compile("true", REQUESTER_VARIABLES).unwrap(),
        reason: Requirement::Optional,
        ticket: Requirement::Optional,
        pending_ttl: chrono::Duration::hours(1),
        grant: GrantSpec {
            audience: "deploy".into(),
            scope: None,
            ttl: chrono::Duration::minutes(15),
            max_ttl: chrono::Duration::minutes(15),
            single_use: false,
        },
        rules: Vec::new(),
        auto_approve: None,
        break_glass: None,
        webhooks,
        notify: Default::default(),
    }
}

fn webhook(url: &str, secret: Option<&str>) -> WebhookSpec {
    WebhookSpec {
        url: url.into(),
        events: vec![EVENT.parse().expect("a webhook event")],
        secret: secret.map(Secret::new),
    }
}

fn message(id: &str, gate: &str, index: u32, at: Timestamp) -> OutboxMessage {
    let request_id = RequestId::generate(at);
    OutboxMessage {
        id: id.into(),
        gate: gate.into(),
        webhook: index,
        url: String::new(),
        event: EVENT.into(),
        request_id,
        // Non-ASCII and nesting, so the bytes signed must be exactly the bytes sent.
        payload: json!({
            "type": EVENT,
            "timestamp": countersign_core::time::rfc3339(&at),
            "data": {"id": request_id, "gate": gate, "reason": "déploiement — ok ✓", "params": {"n": 3}},
        }),
        created_at: at,
    }
}

struct World {
    outbox: Arc<MemoryOutbox>,
    clock: Arc<ManualClock>,
    deliverer: Deliverer,
}

impl World {
    fn new(gates: Vec<Gate>, policy: RetryPolicy) -> Self {
        let outbox = Arc::new(MemoryOutbox::default());
        let clock = Arc::new(ManualClock::new(wall_now()));
        let deliverer = Deliverer::new(
            outbox.clone(),
            Arc::new(GateSet::new(gates)),
            clock.clone(),
            policy,
        );
        Self {
            outbox,
            clock,
            deliverer,
        }
    }

    /// One gate `deploy` with one webhook.
    fn one(url: &str, secret: Option<&str>, policy: RetryPolicy) -> Self {
        Self::new(vec![gate("deploy", vec![webhook(url, secret)])], policy)
    }

    fn enqueue(&self, id: &str, gate: &str, index: u32) -> OutboxMessage {
        let m = message(id, gate, index, self.clock.now());
        self.outbox.push(m.clone());
        m
    }

    async fn run(&self) -> usize {
        self.deliverer.run_once().await.unwrap()
    }
}

fn last_error(d: &Delivery) -> &str {
    d.last_error.as_deref().unwrap_or_default()
}

/// Errors are recorded in the database and shown to operators: never the secret, never a
/// signature.
fn assert_no_secret(d: &Delivery) {
    let error = last_error(d);
    for secret in [SECRET, OTHER_SECRET] {
        assert!(
            !error.contains(secret.trim_start_matches("whsec_")),
            "{error}"
        );
    }
    assert!(!error.contains("v1,"), "{error}");
}

// ---------------------------------------------------------------- signatures

#[test]
fn sign_reproduces_the_standard_webhooks_vector() {
    // The vector the Standard Webhooks reference libraries test against.
    assert_eq!(
        sign(
            SECRET,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#
        )
        .unwrap(),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
}

#[tokio::test]
async fn the_reference_verifier_accepts_our_signature_and_refuses_tampering() {
    let receiver = Receiver::start(SECRET, json!([{"status": 200}]));
    let client = reqwest::Client::new();
    let ts = wall_now().timestamp();
    let body = br#"{"type":"request.approved","data":{"n":1}}"#;
    let good = sign(SECRET, "msg_1", ts, body).unwrap();
    // Change one character in the middle of the base64 signature. (Not the last data
    // character: its low bits are padding, which decoders ignore, so changing it may not
    // change the signature at all.)
    let mut tampered = good.clone().into_bytes();
    let middle = 3 + 10;
    tampered[middle] = if tampered[middle] == b'A' { b'Q' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let wrong_key = sign(OTHER_SECRET, "msg_1", ts, body).unwrap();

    let cases: [(&str, &[u8], &str, bool); 5] = [
        ("msg_1", body, &good, true),
        ("msg_1", body, &tampered, false),
        (
            "msg_1",
            br#"{"type":"request.approved","data":{"n":2}}"#,
            &good,
            false,
        ),
        ("msg_2", body, &good, false),
        ("msg_1", body, &wrong_key, false),
    ];
    for (id, body, signature, _) in cases {
        let status = client
            .post(receiver.url("/"))
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    let verified: Vec<bool> = receiver
        .requests()
        .iter()
        .map(|r| r["verified"].as_bool().unwrap())
        .collect();
    let expected: Vec<bool> = cases.iter().map(|c| c.3).collect();
    assert_eq!(verified, expected);
}

// ---------------------------------------------------------------- delivery

#[tokio::test]
async fn a_message_is_delivered_once_with_a_verified_signature() {
    let receiver = Receiver::start(SECRET, json!([{"status": 204}]));
    let world = World::one(
        &receiver.url("/hooks"),
        Some(SECRET),
        RetryPolicy::default(),
    );
    let m = world.enqueue("msg_01", "deploy", 0);

    assert_eq!(world.run().await, 1);

    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let r = &requests[0];
    assert_eq!(r["verified"], true, "{r}");
    assert_eq!(r["id"], "msg_01");
    assert_eq!(r["path"], "/hooks");
    assert_eq!(r["timestamp"], world.clock.now().timestamp().to_string());
    assert_eq!(r["content_type"], "application/json");
    assert_eq!(r["user_agent"], USER_AGENT);
    assert!(USER_AGENT.starts_with("countersign-webhooks/"));
    assert_eq!(
        r["body"].as_str().unwrap().as_bytes(),
        serde_json::to_vec(&m.payload).unwrap()
    );
    let signature = r["signature"].as_str().unwrap();
    assert!(signature.starts_with("v1,") && !signature.contains(' '));

    let d = world.outbox.get("msg_01");
    assert_eq!(d.state, DeliveryState::Delivered);
    assert_eq!(d.attempts, 1);

    // Delivered is final: nothing is sent again, however late it gets.
    world.clock.advance(chrono::Duration::hours(2));
    assert_eq!(world.run().await, 0);
    assert_eq!(receiver.requests().len(), 1);
}

#[tokio::test]
async fn three_500s_then_200_is_delivered_exactly_once_more() {
    let receiver = Receiver::start(
        SECRET,
        json!([{"status": 500}, {"status": 500}, {"status": 500}, {"status": 200}]),
    );
    let policy = RetryPolicy::default();
    let world = World::one(&receiver.url("/"), Some(SECRET), policy);
    world.enqueue("msg_retry", "deploy", 0);

    assert_eq!(world.run().await, 1);
    for failures in 1..=3u32 {
        let d = world.outbox.get("msg_retry");
        assert_eq!(d.state, DeliveryState::Pending);
        assert_eq!(d.attempts, failures);
        assert_eq!(last_error(&d), "http 500");
        // backoff_base × 2^(failures-1), ±20 %.
        let wait = (d.next_attempt_at - world.clock.now()).to_std().unwrap();
        let nominal = policy.backoff_base * 2u32.pow(failures - 1);
        assert!(
            wait >= nominal.mul_f64(0.8) - Duration::from_millis(1) && wait <= nominal.mul_f64(1.2),
            "wait {wait:?} after {failures} failures"
        );
        // Not before it is due (the lease is long over: the retry time rules)...
        world
            .clock
            .set(d.next_attempt_at - chrono::Duration::milliseconds(1));
        assert_eq!(world.run().await, 0);
        // ...and once it is.
        world.clock.set(d.next_attempt_at);
        assert_eq!(world.run().await, 1);
    }

    let d = world.outbox.get("msg_retry");
    assert_eq!(d.state, DeliveryState::Delivered);
    assert_eq!(d.attempts, 4);

    let requests = receiver.requests();
    assert_eq!(requests.len(), 4, "{requests:?}");
    assert!(requests.iter().all(|r| r["id"] == "msg_retry"));
    assert!(
        requests.iter().all(|r| r["verified"] == true),
        "{requests:?}"
    );
    let statuses: Vec<i64> = requests
        .iter()
        .map(|r| r["status_sent"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [500, 500, 500, 200]);
    // Each attempt is stamped (and signed) afresh.
    let stamps: Vec<i64> = requests
        .iter()
        .map(|r| r["timestamp"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");

    world.clock.advance(chrono::Duration::hours(2));
    assert_eq!(world.run().await, 0);
    assert_eq!(receiver.requests().len(), 4);
}

#[tokio::test]
async fn a_claimed_delivery_is_leased() {
    let receiver = Receiver::start(SECRET, json!([{"status": 200}]));
    let world = World::one(&receiver.url("/"), Some(SECRET), RetryPolicy::default());
    let m = world.enqueue("msg_leased", "deploy", 0);
    // Another worker claimed it first (and has not finished).
    let lease = chrono::Duration::seconds(40);
    let claimed = world
        .outbox
        .claim_deliveries(world.clock.now(), 10, lease)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(world.run().await, 0);
    // The other worker died: once the lease runs out, this one takes over.
    world.clock.set(m.created_at + lease);
    assert_eq!(world.run().await, 1);
    assert_eq!(
        world.outbox.get("msg_leased").state,
        DeliveryState::Delivered
    );
    assert_eq!(receiver.requests().len(), 1);
}

#[tokio::test]
async fn after_max_attempts_the_delivery_is_failed() {
    let receiver = Receiver::start(SECRET, json!([{"status": 500}]));
    let policy = RetryPolicy {
        max_attempts: 3,
        backoff_base: Duration::from_secs(1),
        backoff_max: Duration::from_secs(2),
        ..RetryPolicy::default()
    };
    let world = World::one(&receiver.url("/"), Some(SECRET), policy);
    world.enqueue("msg_doomed", "deploy", 0);

    for _ in 0..10 {
        world.run().await;
        world.clock.advance(chrono::Duration::seconds(3));
    }

    let d = world.outbox.get("msg_doomed");
    assert_eq!(d.state, DeliveryState::Failed);
    assert_eq!(d.attempts, 3);
    assert_eq!(last_error(&d), "http 500 (gave up after 3 attempts)");
    assert_no_secret(&d);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 3);
    assert!(requests.iter().all(|r| r["verified"] == true));
}

#[tokio::test]
async fn a_redirect_is_a_failed_attempt_and_is_not_followed() {
    let elsewhere = Receiver::start(SECRET, json!([{"status": 200}]));
    let receiver = Receiver::start(
        SECRET,
        json!([{"status": 302, "location": elsewhere.url("/stolen")}]),
    );
    let world = World::one(&receiver.url("/"), Some(SECRET), RetryPolicy::default());
    world.enqueue("msg_redirected", "deploy", 0);

    assert_eq!(world.run().await, 1);

    let d = world.outbox.get("msg_redirected");
    assert_eq!(d.state, DeliveryState::Pending);
    assert_eq!(d.attempts, 1);
    assert_eq!(last_error(&d), "http 302 (redirects are not followed)");
    assert_eq!(receiver.requests().len(), 1);
    assert!(
        elsewhere.requests().is_empty(),
        "the redirect target received {:?}",
        elsewhere.requests()
    );
}

#[tokio::test]
async fn configuration_problems_fail_at_once_without_a_request() {
    let receiver = Receiver::start(SECRET, json!([{"status": 200}]));
    let mut unsubscribed = webhook(&receiver.url("/"), Some(SECRET));
    unsubscribed.events = vec![AuditAction::RequestRejected];
    let world = World::new(
        vec![gate(
            "deploy",
            vec![
                webhook("ftp://127.0.0.1/hooks", Some(SECRET)),
                webhook("not a url", Some(SECRET)),
                webhook(&receiver.url("/"), None),
                webhook(&receiver.url("/"), Some("whsec_not*base64!")),
                unsubscribed,
                webhook("file:///etc/passwd", Some(SECRET)),
            ],
        )],
        RetryPolicy::default(),
    );
    let cases = [
        ("msg_ftp", "deploy", 0, "has a 'ftp' url"),
        ("msg_garbage", "deploy", 1, "has an invalid url"),
        ("msg_nosecret", "deploy", 2, "has no secret"),
        ("msg_badsecret", "deploy", 3, "not valid base64"),
        ("msg_unsubscribed", "deploy", 4, "no longer subscribes"),
        ("msg_file", "deploy", 5, "has a 'file' url"),
        ("msg_noindex", "deploy", 99, "has no webhook #99"),
        ("msg_u32max", "deploy", u32::MAX, "has no webhook"),
        (
            "msg_nogate",
            "vanished",
            0,
            "gate 'vanished' is no longer configured",
        ),
    ];
    for (id, gate, index, _) in cases {
        world.enqueue(id, gate, index);
    }

    assert_eq!(world.run().await, cases.len());

    for (id, _, _, why) in cases {
        let d = world.outbox.get(id);
        assert_eq!(d.state, DeliveryState::Failed, "{id}");
        assert_eq!(d.attempts, 1, "{id}");
        assert!(last_error(&d).contains(why), "{id}: {}", last_error(&d));
        assert!(!last_error(&d).contains("not*base64"), "{id}");
        assert_no_secret(&d);
    }
    assert!(receiver.requests().is_empty());
}

#[tokio::test]
async fn a_dead_port_is_retried_then_fails() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let policy = RetryPolicy {
        max_attempts: 2,
        ..RetryPolicy::default()
    };
    let world = World::one(&format!("http://127.0.0.1:{port}/"), Some(SECRET), policy);
    world.enqueue("msg_dead", "deploy", 0);

    assert_eq!(world.run().await, 1);
    let d = world.outbox.get("msg_dead");
    assert_eq!(d.state, DeliveryState::Pending);
    assert_eq!(last_error(&d), "connection refused");
    assert!(!last_error(&d).contains(&port.to_string()));

    world.clock.set(d.next_attempt_at);
    assert_eq!(world.run().await, 1);
    let d = world.outbox.get("msg_dead");
    assert_eq!(d.state, DeliveryState::Failed);
    assert_eq!(
        last_error(&d),
        "connection refused (gave up after 2 attempts)"
    );
}

#[tokio::test]
async fn a_receiver_slower_than_the_timeout_is_a_retry() {
    let receiver = Receiver::start(
        SECRET,
        json!([{"status": 200, "delay": 5}, {"status": 200}]),
    );
    let policy = RetryPolicy {
        timeout: Duration::from_secs(1),
        ..RetryPolicy::default()
    };
    let world = World::one(&receiver.url("/"), Some(SECRET), policy);
    world.enqueue("msg_slow", "deploy", 0);

    let started = Instant::now();
    assert_eq!(world.run().await, 1);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let d = world.outbox.get("msg_slow");
    assert_eq!(d.state, DeliveryState::Pending);
    assert_eq!(last_error(&d), "timeout");

    world.clock.set(d.next_attempt_at);
    assert_eq!(world.run().await, 1);
    assert_eq!(world.outbox.get("msg_slow").state, DeliveryState::Delivered);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    assert!(
        requests
            .iter()
            .all(|r| r["id"] == "msg_slow" && r["verified"] == true)
    );
}

#[tokio::test]
async fn a_batch_is_delivered_to_each_webhook_with_its_own_secret() {
    let first = Receiver::start(SECRET, json!([{"status": 200}]));
    let second = Receiver::start(OTHER_SECRET, json!([{"status": 201}]));
    let world = World::new(
        vec![
            gate("deploy", vec![webhook(&first.url("/a"), Some(SECRET))]),
            gate(
                "db",
                vec![
                    webhook("ftp://example.com/", Some(SECRET)),
                    webhook(&second.url("/b"), Some(OTHER_SECRET)),
                ],
            ),
        ],
        RetryPolicy::default(),
    );
    for i in 0..5 {
        world.enqueue(&format!("msg_a{i}"), "deploy", 0);
        world.enqueue(&format!("msg_b{i}"), "db", 1);
    }

    assert_eq!(world.run().await, 10);

    for (receiver, prefix) in [(&first, "msg_a"), (&second, "msg_b")] {
        let requests = receiver.requests();
        assert_eq!(requests.len(), 5);
        assert!(
            requests
                .iter()
                .all(|r| r["verified"] == true && r["id"].as_str().unwrap().starts_with(prefix))
        );
    }
}

#[tokio::test]
async fn the_spawned_worker_delivers_until_aborted() {
    let receiver = Receiver::start(SECRET, json!([{"status": 200}]));
    let world = World::one(&receiver.url("/"), Some(SECRET), RetryPolicy::default());
    world.enqueue("msg_bg", "deploy", 0);

    let handle = world.deliverer.clone().spawn(Duration::from_millis(20));
    let deadline = Instant::now() + Duration::from_secs(10);
    while world.outbox.get("msg_bg").state != DeliveryState::Delivered {
        assert!(Instant::now() < deadline, "not delivered in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.abort();
    assert!(handle.await.unwrap_err().is_cancelled());

    // Stopped: a new message stays put.
    world.enqueue("msg_after", "deploy", 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(world.outbox.get("msg_after").attempts, 0);
    assert_eq!(receiver.requests().len(), 1);
}
