//! Live updates over server-sent events, authenticated by the session cookie: the inbox
//! stream announces a new request; the request stream follows it to approved.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{Browser, spawn_web};

/// Reads an event stream until an event named `name` whose data satisfies `want`.
async fn next_event(
    response: &mut reqwest::Response,
    buffer: &mut String,
    name: &str,
    want: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut event = "message";
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = if v.trim() == name { name } else { "other" };
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if event == name
                && let Ok(value) = serde_json::from_str::<Value>(&data)
                && want(&value)
            {
                return value;
            }
        }
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {name} event within 20s; have {buffer:?}"))
            .unwrap()
            .expect("the stream stays open");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn streams_follow_the_inbox_and_the_request() {
    let app = spawn_web().await;
    let alice = Browser::new(&app);
    alice.sign_in(&app, "idp", "alice").await;
    let bob = Browser::new(&app);
    bob.sign_in(&app, "idp", "bob").await;

    let mut inbox = bob
        .http
        .get(format!("{}/api/v1/inbox/events", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(inbox.status(), StatusCode::OK);
    assert!(
        inbox.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut inbox_buffer = String::new();
    next_event(&mut inbox, &mut inbox_buffer, "ready", |_| true).await;

    let form = alice.get("/new/db-session").await;
    let created = alice
        .post(
            "/new/db-session",
            &[
                ("csrf", &form.csrf()),
                ("p.database", "orders"),
                ("p.access", "read"),
                ("reason", "INC-1"),
            ],
        )
        .await;
    let id = created
        .location()
        .trim_start_matches("/requests/")
        .trim_end_matches("?done=created")
        .to_owned();
    let changed = next_event(&mut inbox, &mut inbox_buffer, "changed", |v| {
        v["id"] == id.as_str()
    })
    .await;
    assert_eq!(changed["version"], 1);

    let mut stream = alice
        .http
        .get(format!("{}/api/v1/requests/{id}/events", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let mut buffer = String::new();
    let first = next_event(&mut stream, &mut buffer, "request", |_| true).await;
    assert_eq!(first["state"], "pending");

    let page = bob.get(&format!("/requests/{id}")).await;
    let decided = bob
        .post(
            &format!("/requests/{id}/decide"),
            &[
                ("csrf", &page.csrf()),
                ("digest", &page.input("digest").unwrap()),
                ("verdict", "approve"),
            ],
        )
        .await;
    assert_eq!(decided.status, StatusCode::SEE_OTHER, "{}", decided.body);
    let approved = next_event(&mut stream, &mut buffer, "request", |v| {
        v["state"] == "approved"
    })
    .await;
    assert_eq!(approved["id"], id.as_str());
    next_event(&mut inbox, &mut inbox_buffer, "changed", |v| {
        v["id"] == id.as_str() && v["version"] == 2
    })
    .await;

    // Without a session or token: 401. Someone who may not see the request: 404.
    let nobody = reqwest::get(format!("{}/api/v1/requests/{id}/events", app.base))
        .await
        .unwrap();
    assert_eq!(nobody.status(), StatusCode::UNAUTHORIZED);
    let carol = Browser::new(&app);
    carol.sign_in(&app, "idp", "carol").await;
    let hidden = carol
        .http
        .get(format!("{}/api/v1/requests/{id}/events", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(hidden.status(), StatusCode::NOT_FOUND);
}
