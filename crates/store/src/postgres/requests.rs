//! Requests and their decisions in PostgreSQL.

use std::collections::BTreeMap;
use std::sync::Arc;

use countersign_core::audit::NewAuditEvent;
use countersign_core::grant::OutboxMessage;
use countersign_core::notice::NoticeMessage;
use countersign_core::ports::{RequestFilter, Transition};
use countersign_core::request::{Decision, Request};
use countersign_core::{RequestId, StoreError, Timestamp};
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};

use super::audit::append_events;
use super::notices::insert_notices;
use super::outbox::insert_outbox;
use super::{PgQuery, PostgresStore};
use crate::codec::{DecisionRow, RequestRow, approval_name, group_decisions};
use crate::error::{backend, gone_or_moved, is_unique_violation};
use crate::sql::{self, Arg};

fn request_row(row: &PgRow) -> Result<RequestRow, sqlx::Error> {
    Ok(RequestRow {
        id: row.try_get("id")?,
        gate: row.try_get("gate")?,
        state: row.try_get("state")?,
        approval: row.try_get("approval")?,
        version: row.try_get("version")?,
        params: row.try_get("params")?,
        reason: row.try_get("reason")?,
        ticket: row.try_get("ticket")?,
        requester: row.try_get("requester")?,
        requester_issuer: row.try_get("requester_issuer")?,
        requester_subject: row.try_get("requester_subject")?,
        duration_secs: row.try_get("duration_secs")?,
        digest: row.try_get("digest")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        decided_at: row.try_get("decided_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn decision_row(row: &PgRow) -> Result<DecisionRow, sqlx::Error> {
    Ok(DecisionRow {
        request_id: row.try_get("request_id")?,
        approver_issuer: row.try_get("approver_issuer")?,
        approver_subject: row.try_get("approver_subject")?,
        approver: row.try_get("approver")?,
        verdict: row.try_get("verdict")?,
        comment: row.try_get("comment")?,
        digest: row.try_get("digest")?,
        at: row.try_get("at")?,
        eligible_rules: row.try_get("eligible_rules")?,
    })
}

/// Binds `r` in the order of [`sql::INSERT_REQUEST`].
fn bind_request<'q>(q: PgQuery<'q>, r: &'q RequestRow) -> PgQuery<'q> {
    q.bind(r.id.as_str())
        .bind(r.gate.as_str())
        .bind(r.state.as_str())
        .bind(r.approval.as_deref())
        .bind(r.version)
        .bind(r.params.as_str())
        .bind(r.reason.as_deref())
        .bind(r.ticket.as_deref())
        .bind(r.requester.as_str())
        .bind(r.requester_issuer.as_str())
        .bind(r.requester_subject.as_str())
        .bind(r.duration_secs)
        .bind(r.digest.as_str())
        .bind(r.created_at)
        .bind(r.expires_at)
        .bind(r.decided_at)
        .bind(r.updated_at)
}

/// Binds `d` in the order of [`sql::INSERT_DECISION`].
fn bind_decision<'q>(q: PgQuery<'q>, d: &'q DecisionRow) -> PgQuery<'q> {
    q.bind(d.request_id.as_str())
        .bind(d.approver_issuer.as_str())
        .bind(d.approver_subject.as_str())
        .bind(d.approver.as_str())
        .bind(d.verdict.as_str())
        .bind(d.comment.as_deref())
        .bind(d.digest.as_str())
        .bind(d.at)
        .bind(d.eligible_rules.as_str())
}

/// Loads the decisions of `ids`, grouped by request, oldest first.
async fn load_decisions(
    conn: &mut PgConnection,
    ids: &[String],
) -> Result<BTreeMap<String, Vec<Decision>>, StoreError> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new("SELECT ");
    q.push(sql::DECISION_COLUMNS)
        .push(" FROM decisions WHERE request_id IN (");
    let mut list = q.separated(", ");
    for id in ids {
        list.push_bind(id.as_str());
    }
    q.push(") ORDER BY request_id, ordinal");
    let rows = q
        .build()
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| backend("reading decisions", e))?;
    let rows = rows
        .iter()
        .map(decision_row)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| backend("reading decisions", e))?;
    group_decisions(rows)
}

pub(super) async fn insert(
    store: &PostgresStore,
    request: &Request,
    events: &[NewAuditEvent],
    outbox: &[OutboxMessage],
    notices: &[NoticeMessage],
) -> Result<(), StoreError> {
    let row = RequestRow::encode(request)?;
    let mut tx = store.begin_write().await?;
    if let Err(e) = bind_request(sqlx::query(sql::INSERT_REQUEST), &row)
        .execute(&mut *tx)
        .await
    {
        return Err(if is_unique_violation(&e) {
            StoreError::Duplicate(format!("request {} already exists", request.id))
        } else {
            backend("storing a request", e)
        });
    }
    insert_outbox(&mut tx, outbox).await?;
    insert_notices(&mut tx, notices).await?;
    append_events(&mut tx, events).await?;
    tx.commit()
        .await
        .map_err(|e| backend("committing a new request", e))
}

pub(super) async fn get(
    store: &PostgresStore,
    id: &RequestId,
) -> Result<Option<Arc<Request>>, StoreError> {
    // One snapshot (repeatable read): the request and its decisions agree.
    let mut tx = store.begin_read().await?;
    let id_text = id.to_string();
    let Some(row) = sqlx::query(sql::SELECT_REQUEST)
        .bind(id_text.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| backend("reading a request", e))?
    else {
        return Ok(None);
    };
    let row = request_row(&row).map_err(|e| backend("reading a request", e))?;
    let decisions = sqlx::query(sql::SELECT_DECISIONS)
        .bind(id_text.as_str())
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| backend("reading decisions", e))?
        .iter()
        .map(|r| decision_row(r).map_err(|e| backend("reading decisions", e)))
        .map(|r| r.and_then(DecisionRow::decode))
        .collect::<Result<Vec<_>, _>>()?;
    tx.rollback()
        .await
        .map_err(|e| backend("ending a read", e))?;
    row.decode(decisions).map(|r| Some(Arc::new(r)))
}

pub(super) async fn apply(
    store: &PostgresStore,
    transition: &Transition,
) -> Result<(), StoreError> {
    let id = transition.request_id().to_string();
    let decision = transition
        .decision()
        .map(|d| DecisionRow::encode(&transition.request_id(), d))
        .transpose()?;
    let mut tx = store.begin_write().await?;
    let changed = sqlx::query(sql::CAS_REQUEST)
        .bind(transition.state().as_str())
        .bind(transition.approval().map(approval_name))
        .bind(transition.decided_at().map(|t| t.timestamp_millis()))
        .bind(transition.at().timestamp_millis())
        .bind(id.as_str())
        .bind(transition.expected_version())
        .execute(&mut *tx)
        .await
        .map_err(|e| backend("updating a request", e))?
        .rows_affected();
    if changed == 0 {
        // Dropping `tx` rolls back; nothing was written. Say why it did not apply.
        let exists: i64 = sqlx::query_scalar(sql::REQUEST_EXISTS)
            .bind(id.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| backend("reading a request", e))?;
        return Err(gone_or_moved(exists));
    }
    if let Some(decision) = &decision
        && let Err(e) = bind_decision(sqlx::query(sql::INSERT_DECISION), decision)
            .execute(&mut *tx)
            .await
    {
        return Err(if is_unique_violation(&e) {
            StoreError::Duplicate(format!(
                "{}:{} has already decided on {}",
                decision.approver_issuer,
                decision.approver_subject,
                transition.request_id()
            ))
        } else {
            backend("storing a decision", e)
        });
    }
    insert_outbox(&mut tx, transition.outbox()).await?;
    insert_notices(&mut tx, transition.notices()).await?;
    append_events(&mut tx, transition.events()).await?;
    tx.commit()
        .await
        .map_err(|e| backend("committing a change", e))
}

pub(super) async fn list(
    store: &PostgresStore,
    filter: &RequestFilter,
) -> Result<Vec<Request>, StoreError> {
    let mut tx = store.begin_read().await?;
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new("SELECT ");
    q.push(sql::REQUEST_COLUMNS)
        .push(" FROM requests")
        .push(sql::FILTER_HEAD);
    for (piece, arg) in sql::request_filter(filter) {
        q.push(piece);
        match arg {
            Arg::Text(v) => q.push_bind(v.to_owned()),
            Arg::Owned(v) => q.push_bind(v),
            Arg::Int(v) => q.push_bind(v),
        };
    }
    let rows = q
        .build()
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| backend("listing requests", e))?
        .iter()
        .map(request_row)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| backend("listing requests", e))?;
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let mut decisions = load_decisions(&mut tx, &ids).await?;
    tx.rollback()
        .await
        .map_err(|e| backend("ending a read", e))?;
    rows.into_iter()
        .map(|row| {
            let own = decisions.remove(&row.id).unwrap_or_default();
            row.decode(own)
        })
        .collect()
}

pub(super) async fn due_for_expiry(
    store: &PostgresStore,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<RequestId>, StoreError> {
    let ids: Vec<String> = sqlx::query_scalar(sql::DUE_FOR_EXPIRY)
        .bind(now.timestamp_millis())
        .bind(sql::page_size(limit, sql::MAX_REQUEST_PAGE))
        .fetch_all(&store.pool)
        .await
        .map_err(|e| backend("finding expired requests", e))?;
    ids.iter()
        .map(|id| {
            id.parse()
                .map_err(|_| StoreError::backend("a stored request id is not a request id"))
        })
        .collect()
}
