//! SQL text shared by both dialects. SQLite (through sqlx) reads `$N` placeholders by number,
//! exactly as PostgreSQL does, so one statement serves both wherever the dialects agree; the
//! few that differ (locking the chain head) live with their backend.

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

/// Columns read for a request, as [`crate::codec::RequestRow::read`] expects them.
pub(crate) const REQUEST_COLUMNS: &str = request_columns!();

/// Columns read for a decision.
pub(crate) const DECISION_COLUMNS: &str = decision_columns!();

pub(crate) const INSERT_REQUEST: &str = "INSERT INTO requests (id, gate, state, approval, \
    version, params, reason, ticket, requester, requester_issuer, requester_subject, \
    duration_secs, digest, created_at, expires_at, decided_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)";

macro_rules! cas_request {
    () => {
        "UPDATE requests SET state = $3, approval = COALESCE($4, approval), \
        decided_at = COALESCE($5, decided_at), updated_at = $6, version = version + 1 \
        WHERE id = $1 AND version = $2"
    };
}

/// The compare-and-set. `approval` and `decided_at` are kept when the transition leaves them
/// unset: a later change (approved -> revoked) never erases how and when the request was
/// decided.
pub(crate) const CAS_REQUEST: &str = cas_request!();

/// SQLite: [`CAS_REQUEST`] for a change that records a decision, applied only while the
/// approver (`$7`, `$8`) has not decided on the request: the decision's unique key is checked
/// by the statement that changes the request, so inserting the decision after it cannot be
/// refused.
pub(crate) const SQLITE_CAS_REQUEST_UNDECIDED: &str = concat!(
    cas_request!(),
    " AND NOT EXISTS (SELECT 1 FROM decisions WHERE request_id = $1 \
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

/// SQLite: a request's decisions, oldest first, as one JSON array of objects named like
/// [`crate::codec::DecisionRow`]'s fields, so that a request and its decisions come from one
/// statement (one snapshot, one round trip to the database thread). `'[]'` when there are none.
macro_rules! sqlite_decisions_json {
    () => {
        "(SELECT json_group_array(json_object('request_id', d.request_id, \
         'approver_issuer', d.approver_issuer, 'approver_subject', d.approver_subject, \
         'approver', d.approver, 'verdict', d.verdict, 'comment', d.comment, \
         'digest', d.digest, 'at', d.at, 'eligible_rules', d.eligible_rules) \
         ORDER BY d.ordinal) FROM decisions d WHERE d.request_id = requests.id) \
         AS decisions_json"
    };
}

/// See [`sqlite_decisions_json`].
pub(crate) const SQLITE_DECISIONS_JSON: &str = sqlite_decisions_json!();

/// SQLite: requests with their decisions as one JSON array of objects named like
/// [`crate::codec::StoredRequest`]'s fields: one row to hand over from the database thread
/// instead of one per request. The stored JSON columns (parameters, requester, a decision's
/// approver and rules) are spliced in as they are stored, neither quoted as text nor parsed by
/// SQLite, so that each is parsed once, by the reader, straight into the domain type; every
/// other column goes through `json_quote`. A stored column that is not JSON makes the whole
/// array unreadable, and the reader falls back to reading rows. (Not ordered inside the
/// aggregate; the reader sorts by id.) The requests are selected `FROM` what follows, named
/// `page`.
macro_rules! sqlite_requests_json {
    () => {
        r#"SELECT '[' || coalesce(group_concat('{"id":' || json_quote(page.id)
         || ',"gate":' || json_quote(page.gate) || ',"state":' || json_quote(page.state)
         || ',"approval":' || json_quote(page.approval)
         || ',"version":' || json_quote(page.version) || ',"params":' || page.params
         || ',"reason":' || json_quote(page.reason) || ',"ticket":' || json_quote(page.ticket)
         || ',"requester":' || page.requester
         || ',"duration_secs":' || json_quote(page.duration_secs)
         || ',"digest":' || json_quote(page.digest)
         || ',"created_at":' || json_quote(page.created_at)
         || ',"expires_at":' || json_quote(page.expires_at)
         || ',"decided_at":' || json_quote(page.decided_at)
         || ',"updated_at":' || json_quote(page.updated_at)
         || ',"decisions":[' || coalesce((SELECT group_concat('{"approver":' || d.approver
             || ',"verdict":' || json_quote(d.verdict) || ',"comment":' || json_quote(d.comment)
             || ',"digest":' || json_quote(d.digest) || ',"at":' || json_quote(d.at)
             || ',"eligible_rules":' || d.eligible_rules || '}', ',' ORDER BY d.ordinal)
             FROM decisions d WHERE d.request_id = page.id), '')
         || ']}', ','), '') || ']' FROM "#
    };
}

/// See [`sqlite_requests_json`]; a page of requests follows, as a subquery named `page`.
pub(crate) const SQLITE_REQUESTS_JSON: &str = sqlite_requests_json!();

/// SQLite: one request and its decisions, as [`SQLITE_REQUESTS_JSON`] (an empty array when
/// there is no such request).
pub(crate) const SQLITE_REQUEST_JSON: &str = concat!(
    sqlite_requests_json!(),
    "requests AS page WHERE page.id = $1"
);

/// SQLite: the requests whose ids are in the JSON array `$1`, as [`SQLITE_REQUESTS_JSON`].
pub(crate) const SQLITE_REQUESTS_BY_ID_JSON: &str = concat!(
    sqlite_requests_json!(),
    "requests AS page WHERE page.id IN (SELECT value FROM json_each($1))"
);

/// SQLite: the ids and versions of a listing, as one text `id version,id version,…` (empty
/// when there are none); a listing of `requests` (`SELECT id, version FROM requests` and its
/// filter) follows, as a subquery named `page`.
pub(crate) const SQLITE_REQUEST_VERSIONS: &str =
    "SELECT COALESCE(group_concat(page.id || ' ' || page.version, ','), '') FROM ";

/// SQLite: one request and its decisions ([`SQLITE_DECISIONS_JSON`]).
pub(crate) const SQLITE_SELECT_REQUEST: &str = concat!(
    "SELECT ",
    request_columns!(),
    ", ",
    sqlite_decisions_json!(),
    " FROM requests WHERE id = $1"
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
macro_rules! select_events {
    () => {
        concat!(
            "SELECT ",
            event_columns!(),
            " FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2"
        )
    };
}

pub(crate) const SELECT_EVENTS: &str = select_events!();

/// Events of request `$3` after `$1`, at most `$2` (served by the (request_id, seq) index).
macro_rules! select_events_of_request {
    () => {
        concat!(
            "SELECT ",
            event_columns!(),
            " FROM audit_events WHERE request_id = $3 AND seq > $1 ORDER BY seq LIMIT $2"
        )
    };
}

pub(crate) const SELECT_EVENTS_OF_REQUEST: &str = select_events_of_request!();

/// SQLite: the rows of a page of events as one JSON array of objects named like
/// [`crate::codec::EventRow`]'s fields: one row to hand over from the database thread instead
/// of one per event. (Not ordered inside the aggregate, which would sort the page again in a
/// temporary b-tree; the reader sorts by `seq`.) `{page}` is [`SELECT_EVENTS`] or
/// [`SELECT_EVENTS_OF_REQUEST`].
macro_rules! sqlite_events_json {
    ($page:expr) => {
        concat!(
            "SELECT json_group_array(json_object('seq', seq, 'at', at, \
             'actor_issuer', actor_issuer, 'actor_subject', actor_subject, 'action', action, \
             'request_id', request_id, 'digest', digest, 'detail', detail, \
             'prev_hash', prev_hash, 'hash', hash)) FROM (",
            $page,
            ")"
        )
    };
}

/// See [`sqlite_events_json`].
pub(crate) const SQLITE_EVENTS_JSON: &str = sqlite_events_json!(select_events!());

/// See [`sqlite_events_json`].
pub(crate) const SQLITE_EVENTS_OF_REQUEST_JSON: &str =
    sqlite_events_json!(select_events_of_request!());

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

/// First revocation wins: a revoked grant is left as it is.
pub(crate) const REVOKE_GRANT: &str =
    "UPDATE grants SET revoked_at = $2 WHERE jti = $1 AND revoked_at IS NULL";

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

pub(crate) const RETIRE_KEY: &str = "UPDATE signing_keys SET publish_until = $2 WHERE kid = $1";

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

/// Records an attempt on a pending delivery: `$2` the new state, `$3` the next attempt time
/// (kept when NULL), `$4` the error (kept when NULL), `$5` now. A delivery that is no longer
/// pending (delivered or failed meanwhile) is left alone.
pub(crate) const RECORD_ATTEMPT: &str = "UPDATE deliveries SET state = $2, \
    next_attempt_at = COALESCE($3, next_attempt_at), last_error = COALESCE($4, last_error), \
    attempts = attempts + 1, updated_at = $5 WHERE id = $1 AND state = 'pending'";

pub(crate) const DELIVERY_EXISTS: &str = "SELECT COUNT(*) FROM deliveries WHERE id = $1";

/// A failed delivery back to pending, due at `$2`, its attempts reset.
pub(crate) const RETRY_DELIVERY: &str = "UPDATE deliveries SET state = 'pending', \
    next_attempt_at = $2, attempts = 0, updated_at = $2 WHERE id = $1 AND state = 'failed'";

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

/// Everything but the key and `created_at` (the absolute timeout runs from the sign-in, not
/// from a refresh), in the order of [`crate::codec::bind_session_update`]. An update never
/// creates a session: one deleted meanwhile (a logout) stays deleted.
pub(crate) const UPDATE_SESSION: &str = "UPDATE web_sessions SET issuer = $2, subject = $3, \
    sid = $4, principal = $5, id_token = $6, refresh_token = $7, csrf_token = $8, \
    last_seen_at = $9 WHERE id_hash = $1";

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

/// `WHERE`, `ORDER BY` and `LIMIT` of a listing of `requests`, for either dialect.
pub(crate) fn push_request_filter<DB>(q: &mut sqlx::QueryBuilder<DB>, filter: &RequestFilter)
where
    DB: sqlx::Database,
    for<'a> &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    q.push(" WHERE 1 = 1");
    if let Some(state) = filter.state {
        q.push(" AND state = ").push_bind(state.as_str());
    }
    if let Some(gate) = &filter.gate {
        q.push(" AND gate = ").push_bind(gate.as_str());
    }
    if let Some(who) = &filter.requester {
        q.push(" AND requester_issuer = ")
            .push_bind(who.issuer.as_str())
            .push(" AND requester_subject = ")
            .push_bind(who.subject.as_str());
    }
    if let Some(after) = &filter.after {
        let op = match filter.order {
            Order::OldestFirst => " AND id > ",
            Order::NewestFirst => " AND id < ",
        };
        q.push(op).push_bind(after.to_string());
    }
    q.push(match filter.order {
        Order::OldestFirst => " ORDER BY id ASC LIMIT ",
        Order::NewestFirst => " ORDER BY id DESC LIMIT ",
    })
    .push_bind(page_size(filter.limit, MAX_REQUEST_PAGE));
}

/// A caller's limit, capped; 0 (the `Default` of the query types) means "a full page".
pub(crate) fn page_size(asked: u32, max: u32) -> i64 {
    i64::from(if asked == 0 { max } else { asked.min(max) })
}
