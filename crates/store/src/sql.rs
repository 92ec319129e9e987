//! SQL text shared by both dialects, and the few statements one dialect has alone (named
//! `SQLITE_…`, or kept with their backend).
//!
//! Placeholders are `$N`, numbered in the order they first appear in the statement (a later
//! mention may repeat an earlier number). PostgreSQL binds `$N` by its number; SQLite takes
//! `$N` for a named parameter and numbers each as it first meets it, which that order makes
//! the same number, so both drivers bind the values by position. A test
//! (`placeholders_are_numbered_in_order`) prepares every statement on SQLite and checks it.

use countersign_core::ports::{Order, RequestFilter};

// Column lists as macros, so that `concat!` can build whole statements from them at compile time.
macro_rules! request_columns {
    () => {
        "id, gate, state, approval, version, params, reason, ticket, requester, \
         requester_issuer, requester_subject, duration_secs, digest, created_at, expires_at, \
         decided_at, updated_at"
    };
}

macro_rules! decision_columns {
    () => {
        "request_id, approver_issuer, approver_subject, approver, verdict, comment, digest, at, \
         eligible_rules"
    };
}

macro_rules! event_columns {
    () => {
        "seq, at, actor_issuer, actor_subject, action, request_id, digest, detail, prev_hash, hash"
    };
}

macro_rules! grant_columns {
    () => {
        "jti, request_id, kid, issued_at, expires_at, revoked_at"
    };
}

macro_rules! key_columns {
    () => {
        "kid, alg, public_jwk, sealed_private, created_at, signs_from, publish_until"
    };
}

macro_rules! delivery_columns {
    () => {
        "id, gate, webhook, url, event, request_id, payload, created_at, state, attempts, \
         next_attempt_at, last_error, updated_at"
    };
}

macro_rules! notice_columns {
    () => {
        "id, request_id, channel, thread_key, kind, version, to_requester, due_at, created_at, \
         state, attempts, next_attempt_at, last_error, updated_at"
    };
}

macro_rules! login_columns {
    () => {
        "state, browser_binding, issuer, nonce, pkce_verifier, return_to, max_age, created_at, \
         expires_at"
    };
}

macro_rules! session_columns {
    () => {
        "id_hash, issuer, subject, sid, principal, id_token, refresh_token, csrf_token, \
         created_at, last_seen_at"
    };
}

/// Columns read for a request, in the order of [`crate::codec::RequestRow`]'s fields.
pub(crate) const REQUEST_COLUMNS: &str = request_columns!();

/// Columns read for a decision.
pub(crate) const DECISION_COLUMNS: &str = decision_columns!();

pub(crate) const INSERT_REQUEST: &str = "INSERT INTO requests (id, gate, state, approval, \
    version, params, reason, ticket, requester, requester_issuer, requester_subject, \
    duration_secs, digest, created_at, expires_at, decided_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)";

macro_rules! cas_request {
    () => {
        "UPDATE requests SET state = $1, approval = COALESCE($2, approval), \
        decided_at = COALESCE($3, decided_at), updated_at = $4, version = version + 1 \
        WHERE id = $5 AND version = $6"
    };
}

/// The compare-and-set: the new state, approval path, decision time and update time, then
/// the request's id and the version it is expected at. `approval` and `decided_at` are kept
/// when the transition leaves them unset: a later change (approved -> revoked) never erases how
/// and when the request was decided.
pub(crate) const CAS_REQUEST: &str = cas_request!();

/// SQLite: [`CAS_REQUEST`] for a change that records a decision, applied only while the
/// approver (`$7`, `$8`) has not decided on the request: the decision's unique key is checked
/// by the statement that changes the request, so inserting the decision after it cannot be
/// refused.
pub(crate) const SQLITE_CAS_REQUEST_UNDECIDED: &str = concat!(
    cas_request!(),
    " AND NOT EXISTS (SELECT 1 FROM decisions WHERE request_id = $5 \
    AND approver_issuer = $7 AND approver_subject = $8)"
);

/// SQLite: why [`SQLITE_CAS_REQUEST_UNDECIDED`] changed nothing: no row, no such request;
/// another version, it moved; the same version, the approver has decided already.
pub(crate) const SQLITE_REQUEST_VERSION: &str = "SELECT version FROM requests WHERE id = $1";

pub(crate) const REQUEST_EXISTS: &str = "SELECT COUNT(*) FROM requests WHERE id = $1";

pub(crate) const SELECT_REQUEST: &str = concat!(
    "SELECT ",
    request_columns!(),
    " FROM requests WHERE id = $1"
);

/// The ordinal is the next one for the request; the CAS before it holds the request's write
/// lock, so no other transaction computes the same ordinal concurrently.
pub(crate) const INSERT_DECISION: &str = "INSERT INTO decisions (request_id, ordinal, \
    approver_issuer, approver_subject, approver, verdict, comment, digest, at, eligible_rules) \
    VALUES ($1, (SELECT COALESCE(MAX(ordinal), 0) + 1 FROM decisions WHERE request_id = $1), \
    $2, $3, $4, $5, $6, $7, $8, $9)";

/// SQLite: requests with their decisions, in one statement (one snapshot): each request's
/// columns ([`REQUEST_COLUMNS`]) then one decision's ([`DECISION_COLUMNS`], all `NULL` for a
/// request without decisions), a row per decision, a request's rows together and its decisions
/// oldest first. The requests are selected `FROM` what precedes it, named `page`; the order of
/// the requests follows.
macro_rules! sqlite_with_decisions {
    () => {
        ") AS page LEFT JOIN decisions d ON d.request_id = page.id ORDER BY "
    };
}

/// SQLite: the head of a listing of requests with their decisions, before the listing itself
/// (`SELECT` [`REQUEST_COLUMNS`] `FROM requests …`).
macro_rules! sqlite_with_decisions_head {
    () => {
        "SELECT page.*, d.request_id, d.approver_issuer, d.approver_subject, d.approver, \
         d.verdict, d.comment, d.digest, d.at, d.eligible_rules FROM ("
    };
}

/// SQLite: see [`sqlite_with_decisions_head`] and [`sqlite_with_decisions`].
pub(crate) const SQLITE_WITH_DECISIONS_HEAD: &str = sqlite_with_decisions_head!();

/// SQLite: see [`SQLITE_WITH_DECISIONS_HEAD`]; the order of the requests follows.
pub(crate) const SQLITE_WITH_DECISIONS_TAIL: &str = sqlite_with_decisions!();

/// SQLite: one request and its decisions (no row when there is no such request).
pub(crate) const SQLITE_REQUEST_WITH_DECISIONS: &str = concat!(
    sqlite_with_decisions_head!(),
    "SELECT ",
    request_columns!(),
    " FROM requests WHERE id = $1",
    sqlite_with_decisions!(),
    "d.ordinal"
);

/// SQLite: the requests whose ids are in the JSON array `$1`, with their decisions, as
/// [`SQLITE_REQUEST_WITH_DECISIONS`], in id order.
pub(crate) const SQLITE_REQUESTS_BY_ID_WITH_DECISIONS: &str = concat!(
    sqlite_with_decisions_head!(),
    "SELECT ",
    request_columns!(),
    " FROM requests WHERE id IN (SELECT value FROM json_each($1))",
    sqlite_with_decisions!(),
    "page.id, d.ordinal"
);

pub(crate) const SELECT_DECISIONS: &str = concat!(
    "SELECT ",
    decision_columns!(),
    " FROM decisions WHERE request_id = $1 ORDER BY ordinal"
);

macro_rules! insert_events {
    () => {
        "INSERT INTO audit_events (seq, at, actor_issuer, actor_subject, action, request_id, \
        digest, detail, prev_hash, hash) VALUES "
    };
}

pub(crate) const INSERT_EVENT: &str = concat!(
    insert_events!(),
    "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
);

/// The most events [`sqlite_insert_events`] writes with one statement (ten values each, well
/// under SQLite's limit on bound values).
pub(crate) const SQLITE_EVENTS_PER_INSERT: usize = 500;

/// SQLite: `n` events in one statement, each bound in the order of [`INSERT_EVENT`], one after
/// the other (positional `?`).
pub(crate) fn sqlite_insert_events(n: usize) -> String {
    const ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    let mut text = String::with_capacity(insert_events!().len() + n * (ROW.len() + 2));
    text.push_str(insert_events!());
    for i in 0..n {
        if i > 0 {
            text.push_str(", ");
        }
        text.push_str(ROW);
    }
    text
}

pub(crate) const UPDATE_HEAD: &str = "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1";

pub(crate) const DUE_FOR_EXPIRY: &str = "SELECT id FROM requests \
    WHERE state = 'pending' AND expires_at <= $1 ORDER BY expires_at, id LIMIT $2";

/// Events after `$1`, at most `$2`.
pub(crate) const SELECT_EVENTS: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2"
);

/// Events of request `$1` after `$2`, at most `$3` (served by the (request_id, seq) index).
pub(crate) const SELECT_EVENTS_OF_REQUEST: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM audit_events WHERE request_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
);

pub(crate) const INSERT_GRANT: &str = "INSERT INTO grants (jti, request_id, kid, issued_at, \
    expires_at, revoked_at, single_use_request) VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// SQLite: [`INSERT_GRANT`] only while the request is approved at version `$8`, checked and
/// inserted by one statement inside the write lock (PostgreSQL locks the row with `FOR UPDATE`
/// first). No row inserted means the request moved or is gone.
pub(crate) const SQLITE_INSERT_GRANT: &str = "INSERT INTO grants (jti, request_id, kid, \
    issued_at, expires_at, revoked_at, single_use_request) \
    SELECT $1, $2, $3, $4, $5, $6, $7 WHERE EXISTS \
    (SELECT 1 FROM requests WHERE id = $2 AND state = 'approved' AND version = $8)";

pub(crate) const SELECT_GRANT: &str =
    concat!("SELECT ", grant_columns!(), " FROM grants WHERE jti = $1");

/// The revocation time, then the grant. First revocation wins: a revoked grant is left as it is.
pub(crate) const REVOKE_GRANT: &str =
    "UPDATE grants SET revoked_at = $1 WHERE jti = $2 AND revoked_at IS NULL";

pub(crate) const INSERT_KEY: &str = concat!(
    "INSERT INTO signing_keys (",
    key_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
);

/// Oldest first; `seq` (insertion order) breaks ties between keys created in the same
/// millisecond.
pub(crate) const SELECT_KEYS: &str = concat!(
    "SELECT ",
    key_columns!(),
    " FROM signing_keys ORDER BY created_at, seq"
);

/// The end of publication, then the key.
pub(crate) const RETIRE_KEY: &str = "UPDATE signing_keys SET publish_until = $1 WHERE kid = $2";

pub(crate) const INSERT_DELIVERY: &str = concat!(
    "INSERT INTO deliveries (",
    delivery_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
);

/// Columns read for a delivery.
pub(crate) const DELIVERY_COLUMNS: &str = delivery_columns!();

/// Pending deliveries due at `$1`, oldest first, at most `$2` (SQLite, inside its write lock).
pub(crate) const DUE_DELIVERIES: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM deliveries WHERE state = 'pending' AND next_attempt_at <= $1 \
     ORDER BY next_attempt_at, id LIMIT $2"
);

/// [`DUE_DELIVERIES`], locking the rows taken and skipping rows another transaction has
/// locked (PostgreSQL only), so concurrent claimers never take the same row.
pub(crate) const DUE_DELIVERIES_SKIP_LOCKED: &str = concat!(
    "SELECT ",
    delivery_columns!(),
    " FROM deliveries WHERE state = 'pending' AND next_attempt_at <= $1 \
     ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED"
);

/// Records an attempt on a pending delivery: `$1` the new state, `$2` the next attempt time
/// (kept when NULL), `$3` the error (kept when NULL), `$4` now, `$5` the delivery. A delivery
/// that is no longer pending (delivered or failed meanwhile) is left alone.
pub(crate) const RECORD_ATTEMPT: &str = "UPDATE deliveries SET state = $1, \
    next_attempt_at = COALESCE($2, next_attempt_at), last_error = COALESCE($3, last_error), \
    attempts = attempts + 1, updated_at = $4 WHERE id = $5 AND state = 'pending'";

pub(crate) const DELIVERY_EXISTS: &str = "SELECT COUNT(*) FROM deliveries WHERE id = $1";

/// A failed delivery (`$2`) back to pending, due at `$1`, its attempts reset.
pub(crate) const RETRY_DELIVERY: &str = "UPDATE deliveries SET state = 'pending', \
    next_attempt_at = $1, attempts = 0, updated_at = $1 WHERE id = $2 AND state = 'failed'";

/// A change's notifications, as one row: `$1` id (its first notification's), `$2` request,
/// `$3` the notifications (JSON), `$4` when.
pub(crate) const INSERT_NOTICE_BATCH: &str =
    "INSERT INTO notice_batches (id, request_id, notices, created_at) VALUES ($1, $2, $3, $4)";

/// The oldest waiting batches, at most `$1` (SQLite, inside its write lock).
pub(crate) const WAITING_BATCHES: &str =
    "SELECT id, notices FROM notice_batches ORDER BY id LIMIT $1";

/// Takes the oldest waiting batches, at most `$1`, skipping those another worker is fanning
/// out (PostgreSQL only).
pub(crate) const TAKE_BATCHES: &str = "DELETE FROM notice_batches WHERE id IN \
    (SELECT id FROM notice_batches ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) \
    RETURNING id, notices";

/// Inserts `n` notifications (14 columns each, `$1`…), leaving alone an id already stored.
pub(crate) fn insert_notices_ignoring_duplicates(n: usize) -> String {
    let mut text = format!("INSERT INTO notifications ({}) VALUES ", NOTICE_COLUMNS);
    for row in 0..n {
        text.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..14 {
            if column > 0 {
                text.push_str(", ");
            }
            text.push_str(&format!("${}", row * 14 + column + 1));
        }
        text.push(')');
    }
    text.push_str(" ON CONFLICT (id) DO NOTHING");
    text
}

/// The most batches one fan-out takes.
pub(crate) const MAX_BATCHES: i64 = 1_000;

/// Columns read for a notification.
pub(crate) const NOTICE_COLUMNS: &str = notice_columns!();

/// The condition under which a pending notification `n` may be taken at `$1`: it is due, and
/// no earlier notification (by due time, then id) of the same request and thread is still
/// pending, so a channel gets one request's messages one at a time, in order.
macro_rules! notice_due {
    () => {
        " FROM notifications n WHERE n.state = 'pending' AND n.next_attempt_at <= $1 \
         AND NOT EXISTS (SELECT 1 FROM notice_batches b WHERE b.request_id = n.request_id) \
         AND NOT EXISTS (SELECT 1 FROM notifications e WHERE e.request_id = n.request_id \
         AND e.thread_key = n.thread_key AND e.state = 'pending' \
         AND (e.due_at < n.due_at OR (e.due_at = n.due_at AND e.id < n.id))) \
         ORDER BY n.next_attempt_at, n.id LIMIT $2"
    };
}

/// Notifications that may be taken at `$1`, oldest first, at most `$2` (SQLite, inside its
/// write lock).
pub(crate) const DUE_NOTICES: &str = concat!("SELECT ", notice_columns!(), notice_due!());

/// [`DUE_NOTICES`], locking the rows taken and skipping rows another transaction has locked
/// (PostgreSQL only).
pub(crate) const DUE_NOTICES_SKIP_LOCKED: &str = concat!(
    "SELECT ",
    notice_columns!(),
    notice_due!(),
    " FOR UPDATE OF n SKIP LOCKED"
);

/// Records an attempt on a pending notification: `$1` the new state, `$2` the next attempt
/// time (kept when NULL), `$3` the error or why it was skipped (kept when NULL), `$4` now,
/// `$5` the notification. One that is no longer pending is left alone.
pub(crate) const RECORD_NOTICE: &str = "UPDATE notifications SET state = $1, \
    next_attempt_at = COALESCE($2, next_attempt_at), last_error = COALESCE($3, last_error), \
    attempts = attempts + 1, updated_at = $4 WHERE id = $5 AND state = 'pending'";

/// Once a message of thread (`$3` request, `$4` thread key) showed version `$5`, the
/// pending messages of that thread that would report that version or an older one (created,
/// progress, decided; never a reminder or an escalation) are skipped at once: `$1` why, `$2`
/// now. The worker would skip each of them anyway, one pass at a time.
pub(crate) const SUPERSEDE_NOTICES: &str = "UPDATE notifications SET state = 'skipped', \
    last_error = $1, updated_at = $2 WHERE request_id = $3 AND thread_key = $4 \
    AND state = 'pending' AND version <= $5 \
    AND kind IN ('{\"kind\":\"created\"}', '{\"kind\":\"progress\"}', '{\"kind\":\"decided\"}')";

/// Why [`SUPERSEDE_NOTICES`] skipped a notification.
pub(crate) fn superseded(version: i64) -> String {
    format!("superseded: the channel already shows version {version}")
}

/// A pending notification (`$2`) put back for `$1`, no attempt counted.
pub(crate) const DEFER_NOTICE: &str = "UPDATE notifications SET next_attempt_at = $1, \
    updated_at = $1 WHERE id = $2 AND state = 'pending'";

/// Whether notification `$1` exists.
pub(crate) const NOTICE_EXISTS: &str = "SELECT COUNT(*) FROM notifications WHERE id = $1";

/// A failed notification (`$2`) back to pending, due at `$1`, its attempts reset.
pub(crate) const RETRY_NOTICE: &str = "UPDATE notifications SET state = 'pending', \
    next_attempt_at = $1, attempts = 0, updated_at = $1 WHERE id = $2 AND state = 'failed'";

/// What thread `($1, $2)` has shown.
pub(crate) const NOTICE_THREAD: &str = "SELECT thread, shown_version FROM notification_threads \
    WHERE request_id = $1 AND thread_key = $2";

/// Records what a sent notification showed on its thread: `$1` request, `$2` thread key,
/// `$3` the thread reference (kept when NULL), `$4` the version shown (the newest wins), `$5`
/// now. `$max` is the dialect's two-argument maximum.
macro_rules! show_on_thread {
    ($max:literal) => {
        concat!(
            "INSERT INTO notification_threads \
             (request_id, thread_key, thread, shown_version, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (request_id, thread_key) DO UPDATE SET \
             thread = COALESCE(excluded.thread, notification_threads.thread), shown_version = ",
            $max,
            "(excluded.shown_version, notification_threads.shown_version), \
             updated_at = excluded.updated_at"
        )
    };
}

/// [`show_on_thread!`] for SQLite.
pub(crate) const SHOW_ON_THREAD_SQLITE: &str = show_on_thread!("MAX");

/// [`show_on_thread!`] for PostgreSQL.
pub(crate) const SHOW_ON_THREAD_POSTGRES: &str = show_on_thread!("GREATEST");

/// Records that a person was seen: `$1` issuer, `$2` subject, `$3` principal (JSON), `$4`
/// when.
pub(crate) const SEE_PERSON: &str = "INSERT INTO people (issuer, subject, principal, last_seen) \
    VALUES ($1, $2, $3, $4) ON CONFLICT (issuer, subject) DO UPDATE SET \
    principal = excluded.principal, last_seen = excluded.last_seen";

/// People seen at or after `$1`, most recent first, at most `$2`.
pub(crate) const PEOPLE: &str = "SELECT principal, last_seen FROM people WHERE last_seen >= $1 \
    ORDER BY last_seen DESC, issuer, subject LIMIT $2";

/// The most notifications one page returns.
pub(crate) const MAX_NOTICE_PAGE: u32 = 500;

/// The most people a routing pass considers.
pub(crate) const MAX_PEOPLE: u32 = 10_000;

pub(crate) const INSERT_LOGIN: &str = concat!(
    "INSERT INTO login_transactions (",
    login_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
);

/// Reads and deletes a login in one statement: of concurrent takers of the same state, at
/// most one gets the row (SQLite runs it under its write lock; PostgreSQL's row lock makes a
/// second deleter wait, then find the row gone).
pub(crate) const TAKE_LOGIN: &str = concat!(
    "DELETE FROM login_transactions WHERE state = $1 RETURNING ",
    login_columns!()
);

pub(crate) const INSERT_SESSION: &str = concat!(
    "INSERT INTO web_sessions (",
    session_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
);

pub(crate) const SELECT_SESSION: &str = concat!(
    "SELECT ",
    session_columns!(),
    " FROM web_sessions WHERE id_hash = $1"
);

/// Everything but `created_at` (the absolute timeout runs from the sign-in, not from a
/// refresh), in the order of [`INSERT_SESSION`], then the key. An update never creates a
/// session: one deleted meanwhile (a logout) stays deleted.
pub(crate) const UPDATE_SESSION: &str = "UPDATE web_sessions SET issuer = $1, subject = $2, \
    sid = $3, principal = $4, id_token = $5, refresh_token = $6, csrf_token = $7, \
    last_seen_at = $8 WHERE id_hash = $9";

pub(crate) const DELETE_SESSION: &str = "DELETE FROM web_sessions WHERE id_hash = $1";

/// Back-channel logout of an identity (served by `web_sessions_subject_sid`).
pub(crate) const DELETE_SESSIONS_OF_SUBJECT: &str =
    "DELETE FROM web_sessions WHERE issuer = $1 AND subject = $2";

/// Back-channel logout of one provider session (served by `web_sessions_sid`).
pub(crate) const DELETE_SESSIONS_OF_SID: &str =
    "DELETE FROM web_sessions WHERE issuer = $1 AND sid = $2";

/// Back-channel logout of one provider session of one identity: both must match.
pub(crate) const DELETE_SESSIONS_OF_SUBJECT_AND_SID: &str =
    "DELETE FROM web_sessions WHERE issuer = $1 AND subject = $2 AND sid = $3";

pub(crate) const PURGE_LOGINS: &str = "DELETE FROM login_transactions WHERE expires_at < $1";

pub(crate) const PURGE_SESSIONS: &str = "DELETE FROM web_sessions WHERE last_seen_at < $1";

/// The most deliveries one page (or one claim) returns.
pub(crate) const MAX_DELIVERY_PAGE: u32 = 500;

/// The most requests one page returns, whatever the caller asked for.
pub(crate) const MAX_REQUEST_PAGE: u32 = 500;

/// The most audit events one page returns.
pub(crate) const MAX_EVENT_PAGE: u32 = 5000;

/// A value bound to a statement built at run time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg<'a> {
    Text(&'a str),
    Owned(String),
    Int(i64),
}

/// `WHERE`, `ORDER BY` and `LIMIT` of a listing of `requests`, for either dialect: pieces of
/// SQL, each followed by one placeholder and its value (the last is the limit), to put after
/// [`FILTER_HEAD`].
pub(crate) fn request_filter(filter: &RequestFilter) -> Vec<(&'static str, Arg<'_>)> {
    let mut parts = Vec::with_capacity(6);
    if let Some(state) = filter.state {
        parts.push((" AND state = ", Arg::Text(state.as_str())));
    }
    if let Some(gate) = &filter.gate {
        parts.push((" AND gate = ", Arg::Text(gate)));
    }
    if let Some(who) = &filter.requester {
        parts.push((" AND requester_issuer = ", Arg::Text(&who.issuer)));
        parts.push((" AND requester_subject = ", Arg::Text(&who.subject)));
    }
    if let Some(after) = &filter.after {
        let sql = match filter.order {
            Order::OldestFirst => " AND id > ",
            Order::NewestFirst => " AND id < ",
        };
        parts.push((sql, Arg::Owned(after.to_string())));
    }
    parts.push((
        match filter.order {
            Order::OldestFirst => " ORDER BY id ASC LIMIT ",
            Order::NewestFirst => " ORDER BY id DESC LIMIT ",
        },
        Arg::Int(page_size(filter.limit, MAX_REQUEST_PAGE)),
    ));
    parts
}

/// What [`request_filter`]'s pieces follow.
pub(crate) const FILTER_HEAD: &str = " WHERE 1 = 1";

/// A caller's limit, capped; 0 (the `Default` of the query types) means "a full page".
pub(crate) fn page_size(asked: u32, max: u32) -> i64 {
    i64::from(if asked == 0 { max } else { asked.min(max) })
}
