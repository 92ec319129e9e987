//! The notification outbox and the directory of people: notifications written with their
//! change, claimed one at a time per request and thread, recorded, deferred and retried; people
//! seen and listed by recency.

use super::Db;
use super::fixtures::*;
use super::helpers::*;
use countersign_core::notice::{
    NoticeKind, NoticeMessage, NoticeOutcome, NoticeState, NoticeThread, Person, QueuedNotice,
};
use countersign_core::ports::NoticeStore;
use countersign_core::request::State;
use countersign_core::{Principal, Request, StoreError};
use countersign_store::verify_audit;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// An id no notification has.
const UNKNOWN: &str = "ntf_01ARZ3NDEKTSV4RRFFQ69G5FAV";

/// `notice`, due at `at(ms)` instead.
fn due(mut notice: NoticeMessage, ms: i64) -> NoticeMessage {
    notice.due_at = at(ms);
    notice
}

/// `notice`, as the requester's own mail.
fn to_requester(mut notice: NoticeMessage) -> NoticeMessage {
    notice.to_requester = true;
    notice
}

fn sent(thread: Option<&str>, version: i64) -> NoticeOutcome {
    NoticeOutcome::Sent {
        thread: thread.map(str::to_string),
        version,
    }
}

fn thread(thread: Option<&str>, shown_version: i64) -> NoticeThread {
    NoticeThread {
        thread: thread.map(str::to_string),
        shown_version,
    }
}

fn ids(notices: &[NoticeMessage]) -> Vec<String> {
    notices.iter().map(|n| n.id.clone()).collect()
}

fn queued_ids(queued: &[QueuedNotice]) -> Vec<String> {
    queued.iter().map(|q| q.message.id.clone()).collect()
}

async fn queued(db: &Db, state: Option<NoticeState>) -> Vec<QueuedNotice> {
    db.notices
        .list_notices(state, None, 500)
        .await
        .expect("list notifications")
}

/// The notification `id` as the store holds it now.
async fn one(db: &Db, id: &str) -> QueuedNotice {
    queued(db, None)
        .await
        .into_iter()
        .find(|q| q.message.id == id)
        .expect("listed")
}

/// The ids of what a worker claims at `at(ms)`, up to ten, with the suite's lease.
async fn claim(db: &Db, ms: i64) -> Vec<String> {
    let claimed = db
        .notices
        .claim_notices(at(ms), 10, lease())
        .await
        .expect("claim");
    queued_ids(&claimed)
}

async fn record(db: &Db, notice: &NoticeMessage, outcome: NoticeOutcome, ms: i64) {
    db.notices
        .record_notice(notice, &outcome, at(ms))
        .await
        .expect("record");
}

async fn shown(db: &Db, notice: &NoticeMessage) -> NoticeThread {
    db.notices.notice_thread(notice).await.expect("thread")
}

/// Stores a new request with `notices`, made for it by `make`.
async fn with_notices(
    db: &Db,
    ms: i64,
    make: impl FnOnce(&Request) -> Vec<NoticeMessage>,
) -> (Request, Vec<NoticeMessage>) {
    let req = request(ms, "deploy-prod", &person("okta", "alice"));
    let notices = make(&req);
    db.store
        .insert_request(&req, &created(&req), &[], &notices)
        .await
        .expect("insert");
    (req, notices)
}

pub async fn notices_commit_with_their_change(db: Db) {
    let (req, first) = with_notices(&db, 0, |req| {
        vec![
            notice(0, req, "slack-sre", NoticeKind::Created),
            due(
                notice(
                    0,
                    req,
                    "slack-sre",
                    NoticeKind::Reminder {
                        expires_in_secs: 600,
                    },
                ),
                3_000_000,
            ),
            due(
                notice(
                    0,
                    req,
                    "email-oncall",
                    NoticeKind::Escalated { after_secs: 1800 },
                ),
                1_800_000,
            ),
        ]
    })
    .await;
    let listed = queued(&db, None).await;
    // Newest first.
    assert_eq!(
        queued_ids(&listed),
        ids(&first).into_iter().rev().collect::<Vec<_>>()
    );
    for (q, n) in listed.iter().rev().zip(&first) {
        assert_eq!(&q.message, n);
        assert_eq!(q.state, NoticeState::Pending);
        assert_eq!(q.attempts, 0);
        assert_eq!(q.next_attempt_at, n.due_at, "first attempted when due");
        assert_eq!(q.last_error, None);
        assert_eq!(q.updated_at, n.created_at);
    }

    // A change writes its notifications, the requester's own mail on a thread of its own.
    let decided = vec![
        notice(20, &req, "slack-sre", NoticeKind::Decided),
        to_requester(notice(20, &req, "email-oncall", NoticeKind::Decided)),
    ];
    let t = approve(&req, 1, &person("okta", "bob")).with_notices(decided.clone());
    db.store.apply(&t).await.expect("approve");
    let listed = queued(&db, None).await;
    assert_eq!(listed.len(), 5);
    assert_eq!(one(&db, &decided[1].id).await.message, decided[1]);
    for (n, key) in decided.iter().zip(["slack-sre", "email-oncall/requester"]) {
        let stored = db
            .text(&format!(
                "SELECT thread_key FROM notifications WHERE id = '{}'",
                n.id
            ))
            .await;
        assert_eq!(stored, key);
    }

    // A change that does not apply writes none.
    let before = (snapshot(&db, &req).await, listed);
    let stale = change(&req, 1, State::Cancelled, 30).with_notices(vec![notice(
        30,
        &req,
        "slack-sre",
        NoticeKind::Decided,
    )]);
    let err = db.store.apply(&stale).await;
    assert!(matches!(err, Err(StoreError::Conflict)), "{err:?}");
    // Nor does a refused decision, nor a refused insert.
    let twice = vote(&req, 2, &person("okta", "bob")).with_notices(vec![notice(
        31,
        &req,
        "slack-sre",
        NoticeKind::Progress,
    )]);
    let err = db.store.apply(&twice).await;
    assert!(matches!(err, Err(StoreError::Duplicate(_))), "{err:?}");
    let err = db
        .store
        .insert_request(
            &req,
            &created(&req),
            &[],
            &[notice(32, &req, "slack-sre", NoticeKind::Created)],
        )
        .await;
    assert!(matches!(err, Err(StoreError::Duplicate(_))), "{err:?}");
    assert_eq!((snapshot(&db, &req).await, queued(&db, None).await), before);
    let ((unchanged, _, _), notices_before) = before;

    // Notification ids are generated, never repeated: one that comes again anyway (here, a
    // batch repeating an id already in the outbox) is kept once, as first written, and the
    // change it came with is stored.
    let other = request(40, "deploy-prod", &person("okta", "alice"));
    let fresh = notice(41, &other, "slack-sre", NoticeKind::Created);
    db.store
        .insert_request(
            &other,
            &created(&other),
            &[],
            &[fresh.clone(), first[0].clone()],
        )
        .await
        .expect("insert");
    assert!(
        db.store
            .get_request(&other.id)
            .await
            .expect("get")
            .is_some()
    );
    let now = queued(&db, None).await;
    assert_eq!(now.len(), notices_before.len() + 1, "{now:?}");
    assert_eq!(one(&db, &first[0].id).await.message.request_id, req.id);
    assert_eq!(one(&db, &fresh.id).await.message.request_id, other.id);
    assert_eq!(db.store.get_request(&req.id).await.expect("get"), unchanged);
    assert_eq!(verify_audit(db.store.as_ref()).await, Ok(4));
}

pub async fn claim_takes_a_thread_in_order_one_at_a_time(db: Db) {
    // Generated in this order, so `late` has the smallest id but the latest due time, and
    // `tie_a` and `tie_b`, due together, go by id.
    let (_, n) = with_notices(&db, 0, |req| {
        vec![
            due(notice(0, req, "slack", NoticeKind::Progress), 30),
            notice(0, req, "slack", NoticeKind::Created),
            due(notice(0, req, "slack", NoticeKind::Progress), 10),
            due(notice(0, req, "slack", NoticeKind::Progress), 10),
        ]
    })
    .await;
    let (late, first, tie_a, tie_b) = (&n[0], &n[1], &n[2], &n[3]);
    assert!(claim(&db, -1).await.is_empty(), "nothing is due yet");

    // Only the earliest of the thread, however many are due.
    let claimed = db
        .notices
        .claim_notices(at(100), 10, lease())
        .await
        .expect("claim");
    assert_eq!(queued_ids(&claimed), vec![first.id.clone()]);
    assert_eq!(&claimed[0].message, first);
    assert_eq!(claimed[0].state, NoticeState::Pending);
    assert_eq!(claimed[0].attempts, 0);
    assert_eq!(
        claimed[0].next_attempt_at,
        at(100 + 60_000),
        "leased until now + lease"
    );
    assert_eq!(one(&db, &first.id).await.next_attempt_at, at(60_100));
    assert_eq!(one(&db, &tie_a.id).await.next_attempt_at, at(10));

    // Leased and not yet recorded, it is not taken again, and it holds back the rest.
    assert!(claim(&db, 100).await.is_empty());
    assert!(claim(&db, 60_099).await.is_empty());
    // Once the lease ends it is taken again, still alone.
    assert_eq!(claim(&db, 60_100).await, vec![first.id.clone()]);

    // Each outcome that leaves `pending` lets the next one go: sent, skipped, failed.
    record(&db, first, sent(Some(r#"{"ts":"1.1"}"#), 1), 60_200).await;
    assert_eq!(claim(&db, 60_200).await, vec![tie_a.id.clone()]);
    record(
        &db,
        tie_a,
        NoticeOutcome::Skipped {
            why: "superseded".into(),
        },
        60_200,
    )
    .await;
    assert_eq!(claim(&db, 60_200).await, vec![tie_b.id.clone()]);
    record(
        &db,
        tie_b,
        NoticeOutcome::Failed {
            error: "HTTP 404".into(),
        },
        60_200,
    )
    .await;
    assert_eq!(claim(&db, 60_200).await, vec![late.id.clone()]);

    // A retry keeps it pending and due later; then nothing is left.
    record(
        &db,
        late,
        NoticeOutcome::Retry {
            next_attempt_at: at(70_000),
            error: "HTTP 503".into(),
        },
        60_300,
    )
    .await;
    assert!(claim(&db, 69_999).await.is_empty());
    assert_eq!(claim(&db, 70_000).await, vec![late.id.clone()]);
    record(&db, late, sent(None, 1), 70_100).await;
    assert!(claim(&db, 10_000_000).await.is_empty());
    assert_eq!(verify_audit(db.store.as_ref()).await, Ok(1));
}

pub async fn threads_and_requests_are_independent(db: Db) {
    let (a, an) = with_notices(&db, 0, |req| {
        vec![
            notice(0, req, "slack", NoticeKind::Created),
            due(notice(0, req, "slack", NoticeKind::Progress), 10),
            notice(0, req, "teams", NoticeKind::Created),
            notice(0, req, "email", NoticeKind::Created),
            due(notice(0, req, "email", NoticeKind::Progress), 5),
            to_requester(notice(0, req, "email", NoticeKind::Created)),
            to_requester(due(notice(0, req, "email", NoticeKind::Decided), 5)),
        ]
    })
    .await;
    let (b, bn) = with_notices(&db, 1, |req| {
        vec![
            notice(0, req, "slack", NoticeKind::Created),
            due(notice(0, req, "slack", NoticeKind::Progress), 10),
        ]
    })
    .await;
    assert_ne!(a.id, b.id);
    let [
        a_slack0,
        a_slack1,
        a_teams,
        a_email0,
        a_email1,
        a_req0,
        a_req1,
    ] = &an[..]
    else {
        panic!("seven notifications");
    };
    let [b_slack0, b_slack1] = &bn[..] else {
        panic!("two notifications");
    };

    // The head of each thread, oldest first, bounded by the limit.
    let claimed = db
        .notices
        .claim_notices(at(100), 2, lease())
        .await
        .expect("claim");
    assert_eq!(
        queued_ids(&claimed),
        vec![a_slack0.id.clone(), a_teams.id.clone()]
    );
    assert_eq!(
        claim(&db, 100).await,
        vec![a_email0.id.clone(), a_req0.id.clone(), b_slack0.id.clone()]
    );
    assert!(claim(&db, 100).await.is_empty());

    // The channel's thread and the requester's thread on the same channel go separately.
    record(&db, a_email0, sent(Some("<m1@countersign>"), 1), 200).await;
    assert_eq!(claim(&db, 200).await, vec![a_email1.id.clone()]);
    record(&db, a_req0, sent(Some("<r1@countersign>"), 1), 200).await;
    assert_eq!(claim(&db, 200).await, vec![a_req1.id.clone()]);
    assert_eq!(
        shown(&db, a_email1).await,
        thread(Some("<m1@countersign>"), 1)
    );
    assert_eq!(
        shown(&db, a_req1).await,
        thread(Some("<r1@countersign>"), 1)
    );

    // One request's thread moving on leaves the other request's alone.
    record(&db, a_slack0, sent(Some(r#"{"ts":"1.1"}"#), 1), 300).await;
    assert_eq!(claim(&db, 300).await, vec![a_slack1.id.clone()]);
    assert_eq!(shown(&db, b_slack1).await, NoticeThread::default());
    record(&db, b_slack0, sent(Some(r#"{"ts":"2.2"}"#), 1), 300).await;
    assert_eq!(claim(&db, 300).await, vec![b_slack1.id.clone()]);
    assert_eq!(
        shown(&db, b_slack1).await,
        thread(Some(r#"{"ts":"2.2"}"#), 1)
    );
    assert_eq!(
        shown(&db, a_slack1).await,
        thread(Some(r#"{"ts":"1.1"}"#), 1)
    );
    assert!(claim(&db, 300).await.is_empty());
    assert_eq!(verify_audit(db.store.as_ref()).await, Ok(2));
}

pub async fn a_future_reminder_holds_back_nothing_due_before_it(db: Db) {
    // The reminder has the smaller id: only its due time puts it behind the others.
    let (req, n) = with_notices(&db, 0, |req| {
        vec![
            due(
                notice(
                    0,
                    req,
                    "slack",
                    NoticeKind::Reminder {
                        expires_in_secs: 600,
                    },
                ),
                3_000_000,
            ),
            notice(0, req, "slack", NoticeKind::Created),
            due(
                notice(0, req, "slack", NoticeKind::Escalated { after_secs: 3050 }),
                3_050_000,
            ),
        ]
    })
    .await;
    let (reminder, created_notice, escalation) = (&n[0], &n[1], &n[2]);
    assert_eq!(claim(&db, 0).await, vec![created_notice.id.clone()]);
    record(&db, created_notice, sent(Some(r#"{"ts":"1.1"}"#), 1), 0).await;

    // A change's notification, due now, goes ahead of the reminder.
    let progress = notice(10, &req, "slack", NoticeKind::Progress);
    db.store
        .apply(&vote(&req, 1, &person("okta", "bob")).with_notices(vec![progress.clone()]))
        .await
        .expect("vote");
    assert_eq!(claim(&db, 100).await, vec![progress.id.clone()]);

    // Waiting for its retry, it is still pending, and still holds back what is due after it.
    record(
        &db,
        &progress,
        NoticeOutcome::Retry {
            next_attempt_at: at(500),
            error: "HTTP 429".into(),
        },
        100,
    )
    .await;
    let decided = notice(200, &req, "slack", NoticeKind::Decided);
    db.store
        .apply(&change(&req, 2, State::Cancelled, 200).with_notices(vec![decided.clone()]))
        .await
        .expect("cancel");
    assert!(claim(&db, 499).await.is_empty());
    assert_eq!(claim(&db, 500).await, vec![progress.id.clone()]);
    record(&db, &progress, sent(None, 2), 600).await;
    assert_eq!(claim(&db, 600).await, vec![decided.id.clone()]);
    record(&db, &decided, sent(None, 3), 700).await;

    // The reminder goes when due, and what is due after it waits for it.
    assert!(claim(&db, 2_999_999).await.is_empty());
    assert_eq!(claim(&db, 3_000_000).await, vec![reminder.id.clone()]);
    assert!(claim(&db, 3_050_000).await.is_empty());
    record(
        &db,
        reminder,
        NoticeOutcome::Skipped {
            why: "the request is no longer pending".into(),
        },
        3_050_000,
    )
    .await;
    assert_eq!(claim(&db, 3_050_000).await, vec![escalation.id.clone()]);
    assert_eq!(verify_audit(db.store.as_ref()).await, Ok(3));
}

pub async fn record_notice_outcomes(db: Db) {
    let (_, n) = with_notices(&db, 0, |req| {
        vec![
            notice(0, req, "slack", NoticeKind::Created),
            notice(10, req, "slack", NoticeKind::Progress),
            notice(20, req, "slack", NoticeKind::Progress),
            to_requester(notice(0, req, "slack", NoticeKind::Decided)),
            notice(0, req, "teams", NoticeKind::Created),
            notice(0, req, "webhook", NoticeKind::Created),
            notice(0, req, "email", NoticeKind::Created),
        ]
    })
    .await;
    let [s0, s1, s2, mine, skipped, failed, retried] = &n[..] else {
        panic!("seven notifications");
    };
    assert_eq!(shown(&db, s0).await, NoticeThread::default());

    // Sent: the version shown and the thread created, on the request's thread.
    record(
        &db,
        s0,
        sent(Some(r#"{"channel":"C1","ts":"1.1"}"#), 5),
        100,
    )
    .await;
    let q = one(&db, &s0.id).await;
    assert_eq!(&q.message, s0);
    assert_eq!(q.state, NoticeState::Sent);
    assert_eq!(q.attempts, 1);
    assert_eq!(q.last_error, None);
    assert_eq!(q.updated_at, at(100));
    let first = thread(Some(r#"{"channel":"C1","ts":"1.1"}"#), 5);
    assert_eq!(shown(&db, s0).await, first);
    assert_eq!(
        shown(&db, s2).await,
        first,
        "one thread per request and channel"
    );
    assert_eq!(
        shown(&db, mine).await,
        NoticeThread::default(),
        "the requester's mail is a thread of its own"
    );
    // An older version, with no reference of its own, keeps both.
    record(&db, s1, sent(None, 2), 200).await;
    assert_eq!(shown(&db, s0).await, first);
    assert_eq!(one(&db, &s1.id).await.state, NoticeState::Sent);
    // A newer version wins, and the reference stays.
    record(&db, s2, sent(None, 7), 300).await;
    assert_eq!(
        shown(&db, s0).await,
        thread(Some(r#"{"channel":"C1","ts":"1.1"}"#), 7)
    );
    record(&db, mine, sent(Some("<r1@countersign>"), 8), 300).await;
    assert_eq!(shown(&db, mine).await, thread(Some("<r1@countersign>"), 8));
    assert_eq!(shown(&db, s0).await.shown_version, 7);

    // Skipped and failed: the state, and the reason in `last_error`.
    let why = "superseded: the thread showed version 7";
    record(
        &db,
        skipped,
        NoticeOutcome::Skipped { why: why.into() },
        400,
    )
    .await;
    let q = one(&db, &skipped.id).await;
    assert_eq!(q.state, NoticeState::Skipped);
    assert_eq!(q.last_error.as_deref(), Some(why));
    assert_eq!(q.attempts, 1);
    assert_eq!(q.updated_at, at(400));
    assert_eq!(shown(&db, skipped).await, NoticeThread::default());
    record(
        &db,
        failed,
        NoticeOutcome::Failed {
            error: "HTTP 410 日本語".into(),
        },
        500,
    )
    .await;
    let q = one(&db, &failed.id).await;
    assert_eq!(q.state, NoticeState::Failed);
    assert_eq!(q.last_error.as_deref(), Some("HTTP 410 日本語"));
    assert_eq!(q.attempts, 1);
    assert_eq!(q.updated_at, at(500));

    // Retry: still pending, due at the given time, counted.
    record(
        &db,
        retried,
        NoticeOutcome::Retry {
            next_attempt_at: at(5_000),
            error: "HTTP 503".into(),
        },
        600,
    )
    .await;
    let q = one(&db, &retried.id).await;
    assert_eq!(q.state, NoticeState::Pending);
    assert_eq!(q.attempts, 1);
    assert_eq!(q.next_attempt_at, at(5_000));
    assert_eq!(q.last_error.as_deref(), Some("HTTP 503"));
    assert_eq!(q.updated_at, at(600));
    record(
        &db,
        retried,
        NoticeOutcome::Retry {
            next_attempt_at: at(9_000),
            error: "timed out".into(),
        },
        5_100,
    )
    .await;
    let q = one(&db, &retried.id).await;
    assert_eq!(q.attempts, 2);
    assert_eq!(q.next_attempt_at, at(9_000));
    assert_eq!(q.last_error.as_deref(), Some("timed out"));

    // An outcome for a notification that left `pending` (a lease that ran out and another
    // worker that finished first) changes nothing, its thread included.
    let before = queued(&db, None).await;
    record(
        &db,
        s0,
        NoticeOutcome::Failed {
            error: "late".into(),
        },
        9_000,
    )
    .await;
    record(&db, skipped, sent(Some("late"), 99), 9_000).await;
    record(&db, failed, sent(Some("late"), 99), 9_000).await;
    record(
        &db,
        mine,
        NoticeOutcome::Retry {
            next_attempt_at: at(10_000),
            error: "late".into(),
        },
        9_000,
    )
    .await;
    assert_eq!(queued(&db, None).await, before);
    assert_eq!(shown(&db, skipped).await, NoticeThread::default());
    assert_eq!(shown(&db, failed).await, NoticeThread::default());
    assert_eq!(
        shown(&db, s0).await,
        thread(Some(r#"{"channel":"C1","ts":"1.1"}"#), 7)
    );

    // An unknown notification, even on a known thread.
    let mut ghost = s0.clone();
    ghost.id = UNKNOWN.into();
    for outcome in [
        sent(Some("ghost"), 100),
        NoticeOutcome::Failed {
            error: "ghost".into(),
        },
    ] {
        let err = db.notices.record_notice(&ghost, &outcome, at(9_000)).await;
        assert!(matches!(err, Err(StoreError::NotFound)), "{err:?}");
    }
    assert_eq!(shown(&db, s0).await.shown_version, 7);
    assert_eq!(queued(&db, None).await, before);
    assert_eq!(verify_audit(db.store.as_ref()).await, Ok(1));
}

pub async fn defer_notice_counts_no_attempt(db: Db) {
    let (_, n) = with_notices(&db, 0, |req| {
        vec![
            notice(0, req, "slack", NoticeKind::Created),
            due(notice(0, req, "slack", NoticeKind::Progress), 10),
        ]
    })
    .await;
    let (head, next) = (&n[0], &n[1]);
    assert_eq!(claim(&db, 100).await, vec![head.id.clone()]);

    // Put back for later: pending, uncounted, and still at the head of its thread.
    db.notices
        .defer_notice(head, at(3_000))
        .await
        .expect("defer");
    let q = one(&db, &head.id).await;
    assert_eq!(q.state, NoticeState::Pending);
    assert_eq!(q.attempts, 0);
    assert_eq!(q.next_attempt_at, at(3_000));
    assert_eq!(q.last_error, None);
    assert_eq!(&q.message, head);
    assert!(claim(&db, 2_999).await.is_empty());
    assert_eq!(claim(&db, 3_000).await, vec![head.id.clone()]);

    // After a retry, a deferral keeps the count and the error.
    record(
        &db,
        head,
        NoticeOutcome::Retry {
            next_attempt_at: at(4_000),
            error: "HTTP 503".into(),
        },
        3_100,
    )
    .await;
    db.notices
        .defer_notice(head, at(6_000))
        .await
        .expect("defer");
    let q = one(&db, &head.id).await;
    assert_eq!(q.attempts, 1);
    assert_eq!(q.next_attempt_at, at(6_000));
    assert_eq!(q.last_error.as_deref(), Some("HTTP 503"));
    assert!(claim(&db, 5_999).await.is_empty());
    assert_eq!(claim(&db, 6_000).await, vec![head.id.clone()]);
    record(&db, head, sent(None, 1), 6_100).await;

    // One no longer pending is not put back.
    let done = one(&db, &head.id).await;
    db.notices
        .defer_notice(head, at(9_000))
        .await
        .expect("defer");
    assert_eq!(one(&db, &head.id).await, done);
    assert_eq!(claim(&db, 6_100).await, vec![next.id.clone()]);
    assert_eq!(verify_audit(db.store.as_ref()).await, Ok(1));
}

pub async fn retry_notice_only_for_failed(db: Db) {
    let (_, n) = with_notices(&db, 0, |req| {
        vec![
            notice(0, req, "slack", NoticeKind::Created),
            notice(0, req, "teams", NoticeKind::Created),
            notice(0, req, "email", NoticeKind::Created),
            notice(0, req, "webhook", NoticeKind::Created),
        ]
    })
    .await;
    let [failed, sent_one, skipped, pending] = &n[..] else {
        panic!("four notifications");
    };
    record(
        &db,
        failed,
        NoticeOutcome::Failed {
            error: "HTTP 500".into(),
        },
        100,
    )
    .await;
    record(&db, sent_one, sent(None, 1), 100).await;
    record(
        &db,
        skipped,
        NoticeOutcome::Skipped {
            why: "superseded".into(),
        },
        100,
    )
    .await;
    let before = queued(&db, None).await;
    // Pending, sent, skipped, unknown: nothing to retry.
    for id in [
        pending.id.as_str(),
        sent_one.id.as_str(),
        skipped.id.as_str(),
        UNKNOWN,
    ] {
        assert!(
            !db.notices.retry_notice(id, at(200)).await.expect("retry"),
            "{id}"
        );
    }
    assert_eq!(queued(&db, None).await, before);

    assert!(
        db.notices
            .retry_notice(&failed.id, at(200))
            .await
            .expect("retry")
    );
    let q = one(&db, &failed.id).await;
    assert_eq!(q.state, NoticeState::Pending);
    assert_eq!(q.attempts, 0);
    assert_eq!(q.next_attempt_at, at(200));
    assert_eq!(q.updated_at, at(200));
    assert_eq!(&q.message, failed);
    // Only once: it is pending now.
    assert!(
        !db.notices
            .retry_notice(&failed.id, at(300))
            .await
            .expect("retry")
    );
    // And the worker takes it again, after what was due before it.
    assert_eq!(
        claim(&db, 200).await,
        vec![pending.id.clone(), failed.id.clone()]
    );
    assert_eq!(verify_audit(db.store.as_ref()).await, Ok(1));
}

pub async fn list_notices_by_state_with_cursor(db: Db) {
    let (_, n) = with_notices(&db, 0, |req| {
        (0..12)
            .map(|i| notice(i, req, &format!("channel-{i}"), NoticeKind::Created))
            .collect()
    })
    .await;
    // 0, 4, 8 sent; 1, 5, 9 skipped; 2, 6, 10 failed; 3, 7, 11 pending.
    let state_of = |i: usize| {
        [
            NoticeState::Sent,
            NoticeState::Skipped,
            NoticeState::Failed,
            NoticeState::Pending,
        ][i % 4]
    };
    for (i, m) in n.iter().enumerate() {
        let outcome = match state_of(i) {
            NoticeState::Sent => sent(None, 1),
            NoticeState::Skipped => NoticeOutcome::Skipped {
                why: format!("skipped {i}"),
            },
            NoticeState::Failed => NoticeOutcome::Failed {
                error: format!("HTTP 4{i}0"),
            },
            NoticeState::Pending => continue,
        };
        record(&db, m, outcome, 1_000).await;
    }
    let newest_first: Vec<String> = ids(&n).into_iter().rev().collect();
    assert_eq!(queued_ids(&queued(&db, None).await), newest_first);
    let of_state = |state: NoticeState| -> Vec<String> {
        (0..n.len())
            .rev()
            .filter(|&i| state_of(i) == state)
            .map(|i| n[i].id.clone())
            .collect()
    };
    for state in [
        NoticeState::Pending,
        NoticeState::Sent,
        NoticeState::Skipped,
        NoticeState::Failed,
    ] {
        let listed = queued(&db, Some(state)).await;
        assert_eq!(queued_ids(&listed), of_state(state), "{state:?}");
        assert!(listed.iter().all(|q| q.state == state));
    }

    // Pages without gaps, in every filter.
    for state in [None, Some(NoticeState::Failed)] {
        let expected = state.map_or_else(|| newest_first.clone(), of_state);
        let mut paged = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = db
                .notices
                .list_notices(state, after.as_deref(), 2)
                .await
                .expect("page");
            assert!(page.len() <= 2);
            let Some(last) = page.last() else { break };
            after = Some(last.message.id.clone());
            paged.extend(queued_ids(&page));
        }
        assert_eq!(paged, expected, "{state:?}");
    }
    let after_fourth = db
        .notices
        .list_notices(None, Some(newest_first[3].as_str()), 3)
        .await
        .expect("page");
    assert_eq!(queued_ids(&after_fourth), newest_first[4..7].to_vec());
    // 0 means a full page.
    assert_eq!(
        db.notices
            .list_notices(None, None, 0)
            .await
            .expect("list")
            .len(),
        12
    );
    assert_eq!(verify_audit(db.store.as_ref()).await, Ok(1));
}

pub async fn people_are_seen_and_listed_by_recency(db: Db) {
    let see = |principal: &Principal, ms: i64| {
        let (notices, principal) = (db.notices.clone(), principal.clone());
        async move {
            notices
                .see_person(&principal, at(ms))
                .await
                .expect("see person");
        }
    };
    let seen = |principal: &Principal, ms: i64| Person {
        principal: principal.clone(),
        last_seen: at(ms),
    };
    let people = |since: i64, limit: u32| {
        let notices = db.notices.clone();
        async move { notices.people(at(since), limit).await.expect("people") }
    };
    assert!(people(-1_000_000, 10).await.is_empty());

    let alice = person("okta", "alice");
    let bob = person("okta", "bob");
    let carol = person("okta", "carol");
    // Same subject, another issuer: another person.
    let other_alice = person("github", "alice");
    let ci = workload("ci-deploy", "dave");
    see(&alice, 0).await;
    see(&bob, 100).await;
    see(&carol, 50).await;
    see(&other_alice, 75).await;
    see(&ci, -100).await;

    // Seen at or after `since`, most recent first, each principal whole.
    assert_eq!(
        people(0, 10).await,
        vec![
            seen(&bob, 100),
            seen(&other_alice, 75),
            seen(&carol, 50),
            seen(&alice, 0),
        ]
    );
    let everyone = people(-100, 10).await;
    assert_eq!(everyone.len(), 5);
    assert_eq!(everyone[4], seen(&ci, -100));
    assert_eq!(everyone[4].identity(), ci.identity());
    assert_eq!(
        people(0, 2).await,
        vec![seen(&bob, 100), seen(&other_alice, 75)]
    );
    assert!(people(101, 10).await.is_empty());
    // 0 means a full page.
    assert_eq!(people(-100, 0).await.len(), 5);

    // Seen again: the claims as verified now replace the old ones, and she moves up.
    let mut renewed = Principal::human("okta", "alice");
    renewed.testing_mut().name = Some("Alice Liddell".into());
    renewed.testing_mut().email = None;
    renewed.testing_mut().groups = vec!["payments".into()];
    if let Value::Object(map) = json!({"sub": "alice", "groups": ["payments"], "amr": ["hwk"]}) {
        renewed.testing_mut().claims = map;
    }
    see(&renewed, 200).await;
    let listed = people(0, 10).await;
    assert_eq!(
        listed,
        vec![
            seen(&renewed, 200),
            seen(&bob, 100),
            seen(&other_alice, 75),
            seen(&carol, 50),
        ]
    );
    let now = &listed[0].principal;
    assert_eq!(now.name(), Some("Alice Liddell"));
    assert_eq!(now.email(), None);
    assert_eq!(now.groups(), ["payments".to_string()]);
    assert!(!now.claims().contains_key("nested"), "old claims are gone");
    assert_eq!(people(-100, 10).await.len(), 5);
    assert_eq!(verify_audit(db.store.as_ref()).await, Ok(0));
}

/// Two store values on one database stand for two replicas, each running two workers that
/// claim and record side by side: every notification is taken exactly once, and the next of
/// a thread only after the one before it was recorded.
pub async fn concurrent_notice_claimers_never_share_a_row(db: Db) {
    let replica = countersign_store::open_stores(&db.url)
        .await
        .expect("second replica");
    let mut all = Vec::new();
    for r in 0..5_i64 {
        let (_, notices) = with_notices(&db, r, |req| {
            (0..3_i64)
                .flat_map(|step| {
                    let ms = r * 10 + step;
                    [
                        notice(ms, req, "slack", NoticeKind::Progress),
                        notice(ms, req, "teams", NoticeKind::Progress),
                        notice(ms, req, "email", NoticeKind::Progress),
                        to_requester(notice(ms, req, "email", NoticeKind::Decided)),
                    ]
                })
                .collect()
        })
        .await;
        all.extend(notices);
    }
    assert_eq!(all.len(), 60);
    let all = Arc::new(all);
    // Written before the outcome is, so a claim that follows the outcome finds it here.
    let recorded: Arc<Mutex<HashSet<String>>> = Arc::default();

    let worker = |notices: Arc<dyn NoticeStore>| {
        let (all, recorded) = (all.clone(), recorded.clone());
        async move {
            let mut mine = Vec::new();
            loop {
                let claimed = notices
                    .claim_notices(at(100), 3, lease())
                    .await
                    .expect("claim");
                if claimed.is_empty() {
                    return mine;
                }
                for q in claimed {
                    let n = &q.message;
                    {
                        let mut done = recorded.lock().expect("lock");
                        for before in all.iter().filter(|e| {
                            e.request_id == n.request_id
                                && e.thread_key() == n.thread_key()
                                && (e.due_at, &e.id) < (n.due_at, &n.id)
                        }) {
                            assert!(
                                done.contains(&before.id),
                                "{} taken before {} was recorded",
                                n.id,
                                before.id
                            );
                        }
                        done.insert(n.id.clone());
                    }
                    notices
                        .record_notice(n, &sent(None, 1), at(100))
                        .await
                        .expect("record");
                    mine.push(n.id.clone());
                }
                tokio::task::yield_now().await;
            }
        }
    };
    let (a, b, c, d) = tokio::join!(
        worker(db.notices.clone()),
        worker(db.notices.clone()),
        worker(replica.notices.clone()),
        worker(replica.notices.clone()),
    );
    let taken: Vec<String> = [a, b, c, d].concat();
    assert_eq!(taken.len(), 60, "every notification taken exactly once");
    let unique: HashSet<&String> = taken.iter().collect();
    assert_eq!(unique.len(), 60, "none taken twice");
    assert_eq!(unique, all.iter().map(|n| &n.id).collect::<HashSet<_>>());
    assert!(claim(&db, 100).await.is_empty());
    assert_eq!(queued(&db, Some(NoticeState::Sent)).await.len(), 60);
    assert_eq!(verify_audit(replica.store.as_ref()).await, Ok(5));
}

/// A message sent showing version V skips, in the same transaction, the pending messages of
/// its thread that report V or older (created, progress, decided), never a reminder or an
/// escalation, nor another thread's.
pub async fn a_sent_message_supersedes_what_it_already_showed(db: Db) {
    let req = request(0, "deploy-prod", &person("okta", "alice"));
    let with_version = |mut n: NoticeMessage, v: i64| {
        n.version = v;
        n
    };
    let first = with_version(notice(1, &req, "slack", NoticeKind::Created), 1);
    let progress = with_version(notice(2, &req, "slack", NoticeKind::Progress), 2);
    let decided = with_version(notice(3, &req, "slack", NoticeKind::Decided), 3);
    let later = with_version(notice(4, &req, "slack", NoticeKind::Decided), 4);
    let reminder = with_version(
        notice(
            5,
            &req,
            "slack",
            NoticeKind::Reminder {
                expires_in_secs: 60,
            },
        ),
        1,
    );
    let other = with_version(notice(6, &req, "mail", NoticeKind::Progress), 2);
    let mine = to_requester(with_version(
        notice(7, &req, "slack", NoticeKind::Decided),
        3,
    ));
    let all = [
        &first, &progress, &decided, &later, &reminder, &other, &mine,
    ]
    .map(|n| (*n).clone());
    db.store
        .insert_request(&req, &created(&req), &[], &all)
        .await
        .expect("insert");
    assert_eq!(claim(&db, 10).await.first(), Some(&first.id));
    // The first message went out late, when the request was already at version 3.
    record(&db, &first, sent(Some("t"), 3), 20).await;
    for n in [&progress, &decided] {
        let q = one(&db, &n.id).await;
        assert_eq!(q.state, NoticeState::Skipped, "{}", n.id);
        assert_eq!(q.attempts, 0);
        assert!(q.last_error.as_deref().expect("why").contains("version 3"));
    }
    for n in [&later, &reminder, &other, &mine] {
        assert_eq!(
            one(&db, &n.id).await.state,
            NoticeState::Pending,
            "{}",
            n.id
        );
    }
}
