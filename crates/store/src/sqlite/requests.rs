//! Requests and their decisions in SQLite.

use std::collections::HashMap;
use std::sync::Arc;

use countersign_core::audit::NewAuditEvent;
use countersign_core::grant::OutboxMessage;
use countersign_core::notice::NoticeMessage;
use countersign_core::ports::{Order, RequestFilter, Transition};
use countersign_core::request::{Request, State};
use countersign_core::{RequestId, StoreError, Timestamp};
use rusqlite::types::Value;
use rusqlite::{Connection, Params, Row, params, params_from_iter};

use super::SqliteStore;
use super::audit::append_events;
use super::notices::insert_notices;
use super::outbox::insert_outbox;
use super::writer::Batch;
use crate::codec::{DecisionRow, RequestRow, approval_name};
use crate::error::{gone_or_moved, sqlite_backend, sqlite_unique_violation};
use crate::sql::{self, Arg};

/// Reads the request columns ([`sql::REQUEST_COLUMNS`]) that open `row`.
fn request_row(row: &Row<'_>) -> rusqlite::Result<RequestRow> {
    Ok(RequestRow {
        id: row.get(0)?,
        gate: row.get(1)?,
        state: row.get(2)?,
        approval: row.get(3)?,
        version: row.get(4)?,
        params: row.get(5)?,
        reason: row.get(6)?,
        ticket: row.get(7)?,
        requester: row.get(8)?,
        requester_issuer: row.get(9)?,
        requester_subject: row.get(10)?,
        duration_secs: row.get(11)?,
        digest: row.get(12)?,
        created_at: row.get(13)?,
        expires_at: row.get(14)?,
        decided_at: row.get(15)?,
        updated_at: row.get(16)?,
    })
}

/// The column after the request's, where a decision's ([`sql::DECISION_COLUMNS`]) start.
const DECISION_AT: usize = 17;

/// Reads the decision columns of `row`, after the request's; `None` for a request without
/// decisions (a `NULL` decision).
fn decision_row(row: &Row<'_>) -> rusqlite::Result<Option<DecisionRow>> {
    let at = DECISION_AT;
    let Some(request_id) = row.get::<_, Option<String>>(at)? else {
        return Ok(None);
    };
    Ok(Some(DecisionRow {
        request_id,
        approver_issuer: row.get(at + 1)?,
        approver_subject: row.get(at + 2)?,
        approver: row.get(at + 3)?,
        verdict: row.get(at + 4)?,
        comment: row.get(at + 5)?,
        digest: row.get(at + 6)?,
        at: row.get(at + 7)?,
        eligible_rules: row.get(at + 8)?,
    }))
}

/// Runs `sql`, a statement of requests with their decisions (see
/// [`sql::SQLITE_WITH_DECISIONS_HEAD`]), and reads the requests in the order it gives them.
fn with_decisions(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    doing: &str,
) -> Result<Vec<Request>, StoreError> {
    let failed = |e| sqlite_backend(doing, e);
    let mut statement = conn.prepare_cached(sql).map_err(failed)?;
    let mut rows = statement.query(params).map_err(failed)?;
    let mut requests = Vec::new();
    let mut current: Option<(RequestRow, Vec<_>)> = None;
    while let Some(row) = rows.next().map_err(failed)? {
        let id = row.get_ref(0).map_err(failed)?;
        let same = matches!(
            (&current, id.as_str()),
            (Some((request, _)), Ok(id)) if request.id == id
        );
        if !same {
            if let Some((request, decisions)) = current.take() {
                requests.push(request.decode(decisions)?);
            }
            current = Some((request_row(row).map_err(failed)?, Vec::new()));
        }
        if let (Some((_, decisions)), Some(decision)) =
            (current.as_mut(), decision_row(row).map_err(failed)?)
        {
            decisions.push(decision.decode()?);
        }
    }
    if let Some((request, decisions)) = current {
        requests.push(request.decode(decisions)?);
    }
    Ok(requests)
}

/// `SELECT columns FROM requests` and `filter`'s clauses, with the values they bind.
fn filtered(columns: &str, filter: &RequestFilter) -> (String, Vec<Value>) {
    let mut text = format!("SELECT {columns} FROM requests{}", sql::FILTER_HEAD);
    let mut values = Vec::new();
    for (piece, arg) in sql::request_filter(filter) {
        text.push_str(piece);
        text.push('?');
        values.push(match arg {
            Arg::Text(v) => Value::Text(v.to_owned()),
            Arg::Owned(v) => Value::Text(v),
            Arg::Int(v) => Value::Integer(v),
        });
    }
    (text, values)
}

/// A page of requests with their decisions, in one statement (one snapshot).
pub(super) fn page(conn: &Connection, filter: &RequestFilter) -> Result<Vec<Request>, StoreError> {
    let (listing, values) = filtered(sql::REQUEST_COLUMNS, filter);
    let text = format!(
        "{}{listing}{}{}",
        sql::SQLITE_WITH_DECISIONS_HEAD,
        sql::SQLITE_WITH_DECISIONS_TAIL,
        match filter.order {
            Order::OldestFirst => "page.id ASC, d.ordinal",
            Order::NewestFirst => "page.id DESC, d.ordinal",
        }
    );
    with_decisions(conn, &text, params_from_iter(values), "listing requests")
}

/// A listing of pending requests ([`list`] uses it for no other) answered from the request
/// cache where it holds the very version listed: the ids and versions come first (one light
/// statement), then the requests the cache lacks, by id. Pending requests read here are kept
/// (inboxes list them again and again; finished ones are seldom listed twice). When a request
/// moved between the two statements the listing is read again as one [`page`], so that it
/// reads as of one snapshot.
///
/// This second path for one query pays for itself in S4's inbox: when it came in (commit
/// b179f18, quick S4, three runs each) the server's CPU per inbox page went from 1.65-1.90 ms
/// to 0.68-0.78 ms and the inbox p99 from 4.26-5.28 ms to 1.84-1.89 ms.
pub(super) fn page_by_version(
    conn: &Connection,
    cache: &crate::cache::RequestCache,
    epoch: u64,
    filter: &RequestFilter,
) -> Result<Vec<Request>, StoreError> {
    let failed = |e| sqlite_backend("listing requests", e);
    let (text, values) = filtered("id, version", filter);
    let mut statement = conn.prepare_cached(&text).map_err(failed)?;
    let listed = statement
        .query_map(params_from_iter(values), |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })
        .map_err(failed)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(failed)?;
    let mut found = Vec::with_capacity(listed.len());
    let mut missing = Vec::new();
    for (id, version) in &listed {
        let hit = id
            .parse::<RequestId>()
            .ok()
            .and_then(|id| cache.get(&id))
            .filter(|r| r.version == *version);
        if hit.is_none() {
            missing.push(id.as_str());
        }
        found.push(hit.map(Arc::unwrap_or_clone));
    }
    if missing.is_empty() {
        return Ok(found.into_iter().flatten().collect());
    }
    let ids = serde_json::to_string(&missing)
        .map_err(|e| StoreError::backend_caused_by("listing requests", e))?;
    let mut read: HashMap<String, Request> = with_decisions(
        conn,
        sql::SQLITE_REQUESTS_BY_ID_WITH_DECISIONS,
        [ids],
        "listing requests",
    )?
    .into_iter()
    .map(|r| (r.id.to_string(), r))
    .collect();
    let mut requests = Vec::with_capacity(listed.len());
    for ((id, version), hit) in listed.iter().zip(found) {
        let request = match hit {
            Some(request) => request,
            None => match read.remove(id).filter(|r| r.version == *version) {
                Some(request) => {
                    if request.state == State::Pending {
                        cache.keep(epoch, &Arc::new(request.clone()));
                    }
                    request
                }
                // Moved (or gone) since it was listed.
                None => return page(conn, filter),
            },
        };
        requests.push(request);
    }
    Ok(requests)
}

/// Why a write guarded by request `id`'s version wrote nothing: gone or moved.
pub(super) fn not_applied(batch: &Batch<'_>, id: &str) -> StoreError {
    match batch.integer(sql::REQUEST_EXISTS, [id]) {
        Ok(exists) => gone_or_moved(exists.unwrap_or(0)),
        Err(e) => sqlite_backend("reading a request", e),
    }
}

pub(super) async fn insert(
    store: &SqliteStore,
    request: &Request,
    events: &[NewAuditEvent],
    outbox: &[OutboxMessage],
    notices: &[NoticeMessage],
) -> Result<(), StoreError> {
    let row = RequestRow::encode(request)?;
    let (request, events, outbox) = (request.clone(), events.to_vec(), outbox.to_vec());
    let notices = notices.to_vec();
    let request_id = request.id;
    store
        .writer
        .write_checked(
            move |batch| {
                let r = &row;
                let inserted = batch.execute(
                    sql::INSERT_REQUEST,
                    params![
                        r.id,
                        r.gate,
                        r.state,
                        r.approval,
                        r.version,
                        r.params,
                        r.reason,
                        r.ticket,
                        r.requester,
                        r.requester_issuer,
                        r.requester_subject,
                        r.duration_secs,
                        r.digest,
                        r.created_at,
                        r.expires_at,
                        r.decided_at,
                        r.updated_at,
                    ],
                );
                match inserted {
                    Ok(_) => Ok(()),
                    Err(e) if sqlite_unique_violation(&e) => Err(StoreError::Duplicate(format!(
                        "request {request_id} already exists"
                    ))),
                    Err(e) => Err(sqlite_backend("storing a request", e)),
                }
            },
            move |batch, ()| {
                insert_outbox(batch, &outbox)?;
                insert_notices(batch, &notices)?;
                append_events(batch, &events)?;
                batch.wrote(request);
                Ok(())
            },
        )
        .await
}

pub(super) async fn get(
    store: &SqliteStore,
    id: &RequestId,
) -> Result<Option<Arc<Request>>, StoreError> {
    if let Some(request) = store.cache.get(id) {
        return Ok(Some(request));
    }
    // Noted before the read: a write committed meanwhile keeps what is read out of the cache.
    let epoch = store.cache.epoch();
    let id = id.to_string();
    // One statement: the request and its decisions come from the same snapshot.
    let request = store
        .readers
        .read(move |conn| {
            with_decisions(
                conn,
                sql::SQLITE_REQUEST_WITH_DECISIONS,
                [id],
                "reading a request",
            )
        })
        .await?
        .into_iter()
        .next()
        .map(Arc::new);
    if let Some(request) = &request {
        store.cache.keep(epoch, request);
    }
    Ok(request)
}

pub(super) async fn apply(store: &SqliteStore, transition: &Transition) -> Result<(), StoreError> {
    let decision = transition
        .decision()
        .map(|d| DecisionRow::encode(&transition.request_id(), d))
        .transpose()?;
    let transition = transition.clone();
    store
        .writer
        .write_checked(
            move |batch| {
                batch.touch(transition.request_id());
                let t = &transition;
                let id = t.request_id().to_string();
                let (state, approval) = (t.state().as_str(), t.approval().map(approval_name));
                let decided_at = t.decided_at().map(|at| at.timestamp_millis());
                let at = t.at().timestamp_millis();
                let version = t.expected_version();
                let changed = match &decision {
                    None => batch.execute(
                        sql::CAS_REQUEST,
                        params![state, approval, decided_at, at, id, version],
                    ),
                    Some(d) => batch.execute(
                        sql::SQLITE_CAS_REQUEST_UNDECIDED,
                        params![
                            state,
                            approval,
                            decided_at,
                            at,
                            id,
                            version,
                            d.approver_issuer,
                            d.approver_subject,
                        ],
                    ),
                }
                .map_err(|e| sqlite_backend("updating a request", e))?;
                if changed > 0 {
                    return Ok((transition, decision));
                }
                // Nothing was written. Say why it did not apply.
                let Some(d) = &decision else {
                    return Err(not_applied(batch, &id));
                };
                let current = batch
                    .integer(sql::SQLITE_REQUEST_VERSION, [id.as_str()])
                    .map_err(|e| sqlite_backend("reading a request", e))?;
                Err(match current {
                    None => StoreError::NotFound,
                    Some(version) if version != transition.expected_version() => {
                        StoreError::Conflict
                    }
                    Some(_) => StoreError::Duplicate(format!(
                        "{}:{} has already decided on {}",
                        d.approver_issuer,
                        d.approver_subject,
                        transition.request_id()
                    )),
                })
            },
            move |batch, (transition, decision)| {
                if let Some(d) = &decision {
                    batch
                        .execute(
                            sql::INSERT_DECISION,
                            params![
                                d.request_id,
                                d.approver_issuer,
                                d.approver_subject,
                                d.approver,
                                d.verdict,
                                d.comment,
                                d.digest,
                                d.at,
                                d.eligible_rules,
                            ],
                        )
                        .map_err(|e| sqlite_backend("storing a decision", e))?;
                }
                insert_outbox(batch, transition.outbox())?;
                insert_notices(batch, transition.notices())?;
                append_events(batch, transition.events())?;
                // The request as cached before, changed as the transition says, is what
                // the database now holds.
                if let Some(before) = batch
                    .cached(&transition.request_id())
                    .filter(|r| r.version == transition.expected_version())
                {
                    batch.wrote(transition.apply_to(Arc::unwrap_or_clone(before)));
                }
                Ok(())
            },
        )
        .await
}

pub(super) async fn list(
    store: &SqliteStore,
    filter: &RequestFilter,
) -> Result<Vec<Request>, StoreError> {
    let filter = filter.clone();
    // Only listings of pending requests (inboxes) are read against the cache: the cache
    // keeps what listings read only when it is pending, so any other listing would mostly
    // miss and pay a second statement for nothing.
    if filter.state == Some(State::Pending) {
        let cache = Arc::clone(&store.cache);
        let epoch = cache.epoch();
        return store
            .readers
            .read(move |conn| page_by_version(conn, &cache, epoch, &filter))
            .await;
    }
    store.readers.read(move |conn| page(conn, &filter)).await
}

pub(super) async fn due_for_expiry(
    store: &SqliteStore,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<RequestId>, StoreError> {
    let limit = sql::page_size(limit, sql::MAX_REQUEST_PAGE);
    store
        .readers
        .read(move |conn| {
            let failed = |e| sqlite_backend("finding expired requests", e);
            let mut statement = conn.prepare_cached(sql::DUE_FOR_EXPIRY).map_err(failed)?;
            let ids = statement
                .query_map((now.timestamp_millis(), limit), |row| {
                    row.get::<_, String>(0)
                })
                .map_err(failed)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(failed)?;
            ids.iter()
                .map(|id| {
                    id.parse()
                        .map_err(|_| StoreError::backend("a stored request id is not a request id"))
                })
                .collect()
        })
        .await
}
