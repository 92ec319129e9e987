//! A loopback Slack: incoming webhooks and the two Web API methods countersign calls
//! (`chat.postMessage`, `chat.update`), answering as Slack documents them and recording every
//! call. It also answers a Teams Workflows trigger path with 202, so one recorder serves both
//! chat channels' tests.
//!
//! Answers follow Slack's contracts: an incoming webhook answers `ok` (text) or an HTTP 4xx
//! with an error word (`invalid_payload`, `no_text`, `invalid_blocks`); the Web API answers
//! HTTP 200 with `{"ok": true, "channel", "ts", "message"}` or `{"ok": false, "error"}`
//! (`not_authed`, `invalid_auth`, `channel_not_found`, `no_text`, `message_not_found`,
//! `invalid_blocks`), and HTTP 429 with `Retry-After` when rate limited. Messages are checked
//! against the Block Kit limits ([`block_kit_problems`]) as Slack checks them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The path of the incoming webhook [`SlackReceiver::webhook_url`] gives.
const WEBHOOK_PATH: &str = "/services/T0TEST/B0TEST/webhooksecret";

/// The path of the Teams Workflows trigger [`SlackReceiver::teams_url`] gives.
const TEAMS_PATH: &str = "/workflows/0123abcd/triggers/manual/paths/invoke";

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct SlackCall {
    /// `POST`, normally.
    pub method: String,
    /// The path, e.g. `/api/chat.update` (no query).
    pub path: String,
    /// The headers, names lowercased (the last value of each).
    pub headers: BTreeMap<String, String>,
    /// The body as JSON (`Null` when it was not JSON).
    pub body: Value,
    /// The body as sent.
    pub raw: String,
    /// When it arrived.
    pub at: Instant,
}

/// An answer to force on the next calls.
#[derive(Clone, Debug)]
pub enum SlackFailure {
    /// HTTP 429 with `Retry-After: secs`.
    RateLimited {
        /// The `Retry-After` value.
        retry_after_secs: u64,
    },
    /// `{"ok": false, "error": …}` from the Web API (HTTP 200), or the word as an HTTP 400
    /// body from a webhook.
    Error(String),
    /// Any status and body.
    Status(u16, String),
}

#[derive(Debug, Default)]
struct Inner {
    calls: Vec<SlackCall>,
    failures: VecDeque<SlackFailure>,
    /// Failures for one path only (its suffix), before any in `failures`.
    path_failures: Vec<(String, SlackFailure)>,
    /// (channel, ts) → the message's latest body.
    messages: HashMap<(String, String), Value>,
    next_ts: u64,
}

#[derive(Debug)]
struct Shared {
    token: String,
    inner: Mutex<Inner>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The loopback Slack; the server task ends when this value is dropped.
#[derive(Debug)]
pub struct SlackReceiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl SlackReceiver {
    /// Starts on 127.0.0.1 (a free port) on the current Tokio runtime; the Web API accepts
    /// `Authorization: Bearer {token}` only.
    pub async fn start(token: &str) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            token: token.to_owned(),
            inner: Mutex::new(Inner::default()),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            // Ends with the runtime or when aborted; an error here fails the test's calls.
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, task })
    }

    /// An incoming webhook URL (`/services/…`).
    pub fn webhook_url(&self) -> String {
        format!("http://{}{WEBHOOK_PATH}", self.addr)
    }

    /// The Web API base URL (`…/api`), for `SlackSpec::Bot::api_url`.
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// A Teams Workflows trigger URL (answers 202), with a `sig=` credential.
    pub fn teams_url(&self) -> String {
        format!(
            "http://{}{TEAMS_PATH}?api-version=2016-06-01&sig=teamssecret",
            self.addr
        )
    }

    /// Answers the next `n` calls (any path) with `failure` instead of the normal answer.
    pub fn fail_next(&self, n: usize, failure: SlackFailure) {
        let mut inner = self.shared.lock();
        for _ in 0..n {
            inner.failures.push_back(failure.clone());
        }
    }

    /// Answers the next call whose path ends with `path` (e.g. `chat.update`) with `failure`.
    pub fn fail_next_on(&self, path: &str, failure: SlackFailure) {
        self.shared
            .lock()
            .path_failures
            .push((path.to_owned(), failure));
    }

    /// Every call so far, oldest first.
    pub fn calls(&self) -> Vec<SlackCall> {
        self.shared.lock().calls.clone()
    }

    /// The latest body of the message `(channel, ts)`, as posted or last updated.
    pub fn message(&self, channel: &str, ts: &str) -> Option<Value> {
        self.shared
            .lock()
            .messages
            .get(&(channel.to_owned(), ts.to_owned()))
            .cloned()
    }

    /// Forgets a message, as if someone deleted it: updating it then fails with
    /// `message_not_found`.
    pub fn delete_message(&self, channel: &str, ts: &str) {
        self.shared
            .lock()
            .messages
            .remove(&(channel.to_owned(), ts.to_owned()));
    }
}

impl Drop for SlackReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw = String::from_utf8_lossy(&body).into_owned();
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = uri.path().to_owned();
    let mut inner = shared.lock();
    inner.calls.push(SlackCall {
        method: method.to_string(),
        path: path.clone(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: json.clone(),
        raw,
        at: Instant::now(),
    });
    let is_api = path.starts_with("/api/");
    if let Some(i) = inner
        .path_failures
        .iter()
        .position(|(suffix, _)| path.ends_with(suffix.as_str()))
    {
        let (_, failure) = inner.path_failures.remove(i);
        return failure_response(&failure, is_api);
    }
    if let Some(failure) = inner.failures.pop_front() {
        return failure_response(&failure, is_api);
    }
    if method != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").into_response();
    }
    if path.starts_with("/services/") {
        return webhook(&json);
    }
    if path.starts_with("/workflows/") {
        return StatusCode::ACCEPTED.into_response();
    }
    let method_name = path.trim_start_matches("/api/");
    if !is_api || !matches!(method_name, "chat.postMessage" | "chat.update") {
        return (StatusCode::NOT_FOUND, "not_found").into_response();
    }
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if auth.is_empty() {
        return slack_error("not_authed");
    }
    if auth != format!("Bearer {}", shared.token) {
        return slack_error("invalid_auth");
    }
    if json.is_null() {
        return slack_error("invalid_json");
    }
    let channel = json["channel"].as_str().unwrap_or_default().to_owned();
    if channel.is_empty() {
        return slack_error("channel_not_found");
    }
    if json["text"].as_str().is_none_or(str::is_empty) && json["blocks"].is_null() {
        return slack_error("no_text");
    }
    if !block_kit_problems(&json).is_empty() {
        return slack_error("invalid_blocks");
    }
    if method_name == "chat.update" {
        let ts = json["ts"].as_str().unwrap_or_default().to_owned();
        let key = (channel.clone(), ts.clone());
        if !inner.messages.contains_key(&key) {
            return slack_error("message_not_found");
        }
        inner.messages.insert(key, json.clone());
        return ok(json!({"ok": true, "channel": channel, "ts": ts, "text": json["text"]}));
    }
    inner.next_ts += 1;
    let ts = format!("1700000000.{:06}", inner.next_ts);
    inner
        .messages
        .insert((channel.clone(), ts.clone()), json.clone());
    ok(
        json!({"ok": true, "channel": channel, "ts": ts, "message": {"text": json["text"], "ts": ts}}),
    )
}

fn webhook(json: &Value) -> Response {
    if !json.is_object() {
        return (StatusCode::BAD_REQUEST, "invalid_payload").into_response();
    }
    if json["text"].as_str().is_none_or(str::is_empty) && json["blocks"].is_null() {
        return (StatusCode::BAD_REQUEST, "no_text").into_response();
    }
    if !block_kit_problems(json).is_empty() {
        return (StatusCode::BAD_REQUEST, "invalid_blocks").into_response();
    }
    (StatusCode::OK, "ok").into_response()
}

fn ok(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn slack_error(error: &str) -> Response {
    ok(json!({"ok": false, "error": error}))
}

fn failure_response(failure: &SlackFailure, is_api: bool) -> Response {
    match failure {
        SlackFailure::RateLimited { retry_after_secs } => {
            let body = if is_api {
                json!({"ok": false, "error": "ratelimited"}).to_string()
            } else {
                "rate_limited".to_owned()
            };
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", retry_after_secs.to_string())],
                body,
            )
                .into_response()
        }
        SlackFailure::Error(error) if is_api => slack_error(error),
        SlackFailure::Error(error) => (StatusCode::BAD_REQUEST, error.clone()).into_response(),
        SlackFailure::Status(status, body) => (
            StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body.clone(),
        )
            .into_response(),
    }
}

/// Where a message breaks Block Kit's documented limits: at most 50 blocks; a `header`'s
/// plain text at most 150 characters; a section's text at most 3000, its fields at most 10
/// of at most 2000 each; a context at most 10 elements; a `block_id` at most 255; a button's
/// text at most 75 and its url at most 3000. Empty when none.
pub fn block_kit_problems(message: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(blocks) = message["blocks"].as_array() else {
        return problems;
    };
    if blocks.len() > 50 {
        problems.push(format!("{} blocks (at most 50)", blocks.len()));
    }
    let chars = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
    for (i, block) in blocks.iter().enumerate() {
        if chars(&block["block_id"]) > 255 {
            problems.push(format!("block {i}: block_id over 255"));
        }
        match block["type"].as_str().unwrap_or_default() {
            "header" => {
                if block["text"]["type"] != "plain_text" {
                    problems.push(format!("block {i}: header text is not plain_text"));
                }
                if chars(&block["text"]["text"]) > 150 {
                    problems.push(format!("block {i}: header over 150"));
                }
            }
            "section" => {
                if chars(&block["text"]["text"]) > 3000 {
                    problems.push(format!("block {i}: section text over 3000"));
                }
                if let Some(fields) = block["fields"].as_array() {
                    if fields.len() > 10 {
                        problems.push(format!("block {i}: {} fields (at most 10)", fields.len()));
                    }
                    for (j, field) in fields.iter().enumerate() {
                        if chars(&field["text"]) > 2000 {
                            problems.push(format!("block {i}: field {j} over 2000"));
                        }
                    }
                }
                if block["text"].is_null() && block["fields"].is_null() {
                    problems.push(format!("block {i}: section without text or fields"));
                }
            }
            "context" => {
                let elements = block["elements"].as_array().map_or(0, Vec::len);
                if elements == 0 || elements > 10 {
                    problems.push(format!("block {i}: {elements} context elements (1 to 10)"));
                }
            }
            "actions" => {
                for element in block["elements"].as_array().into_iter().flatten() {
                    if chars(&element["text"]["text"]) > 75 {
                        problems.push(format!("block {i}: button text over 75"));
                    }
                    if chars(&element["url"]) > 3000 {
                        problems.push(format!("block {i}: button url over 3000"));
                    }
                }
            }
            "divider" => {}
            other => problems.push(format!("block {i}: unexpected block type {other:?}")),
        }
    }
    problems
}
