//! Grants and signing keys in PostgreSQL.

use async_trait::async_trait;
use countersign_core::audit::NewAuditEvent;
use countersign_core::grant::{GrantRecord, OutboxMessage, SigningKeyRecord};
use countersign_core::ports::KeyStore;
use countersign_core::request::State;
use countersign_core::{StoreError, Timestamp};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::audit::append_events;
use super::outbox::insert_outbox;
use super::{PgQuery, PostgresStore};
use crate::codec::{GrantRow, KeyRow};
use crate::error::{backend, grant_refused, is_unique_violation};
use crate::sql;

/// The request's state and version, locked until the transaction ends.
const REQUEST_STATE_FOR_UPDATE: &str =
    "SELECT state, version FROM requests WHERE id = $1 FOR UPDATE";

fn grant_row(row: &PgRow) -> Result<GrantRow, sqlx::Error> {
    Ok(GrantRow {
        jti: row.try_get("jti")?,
        request_id: row.try_get("request_id")?,
        kid: row.try_get("kid")?,
        issued_at: row.try_get("issued_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn key_row(row: &PgRow) -> Result<KeyRow, sqlx::Error> {
    Ok(KeyRow {
        kid: row.try_get("kid")?,
        alg: row.try_get("alg")?,
        public_jwk: row.try_get("public_jwk")?,
        sealed_private: row.try_get("sealed_private")?,
        created_at: row.try_get("created_at")?,
        signs_from: row.try_get("signs_from")?,
        publish_until: row.try_get("publish_until")?,
    })
}

/// Binds `g` and its `single_use_request` in the order of [`sql::INSERT_GRANT`].
fn bind_grant<'q>(q: PgQuery<'q>, g: &'q GrantRow, single_use: bool) -> PgQuery<'q> {
    q.bind(g.jti.as_str())
        .bind(g.request_id.as_str())
        .bind(g.kid.as_str())
        .bind(g.issued_at)
        .bind(g.expires_at)
        .bind(g.revoked_at)
        .bind(single_use.then_some(g.request_id.as_str()))
}

/// Binds `k` in the order of [`sql::INSERT_KEY`].
fn bind_key<'q>(q: PgQuery<'q>, k: &'q KeyRow) -> PgQuery<'q> {
    q.bind(k.kid.as_str())
        .bind(k.alg.as_str())
        .bind(k.public_jwk.as_str())
        .bind(k.sealed_private.as_slice())
        .bind(k.created_at)
        .bind(k.signs_from)
        .bind(k.publish_until)
}

pub(super) async fn insert(
    store: &PostgresStore,
    grant: &GrantRecord,
    request_version: i64,
    single_use: bool,
    events: &[NewAuditEvent],
    outbox: &[OutboxMessage],
) -> Result<(), StoreError> {
    let row = GrantRow::encode(grant);
    // The request row stays locked from the check to the commit: a concurrent revocation
    // (or any other change to the request) waits, then finds the grant, or commits first
    // and this check sees it. Locks in the usual order: request row, then chain head.
    let mut tx = store.begin_write().await?;
    let current = sqlx::query(REQUEST_STATE_FOR_UPDATE)
        .bind(row.request_id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| backend("reading a request", e))?;
    let Some(current) = current else {
        return Err(StoreError::NotFound);
    };
    let state: String = current
        .try_get("state")
        .map_err(|e| backend("reading a request", e))?;
    let version: i64 = current
        .try_get("version")
        .map_err(|e| backend("reading a request", e))?;
    if state != State::Approved.as_str() || version != request_version {
        return Err(StoreError::Conflict);
    }
    if let Err(e) = bind_grant(sqlx::query(sql::INSERT_GRANT), &row, single_use)
        .execute(&mut *tx)
        .await
    {
        return Err(grant_refused(e, grant));
    }
    insert_outbox(&mut tx, outbox).await?;
    append_events(&mut tx, events).await?;
    tx.commit()
        .await
        .map_err(|e| backend("committing a grant", e))
}

pub(super) async fn get(
    store: &PostgresStore,
    jti: &str,
) -> Result<Option<GrantRecord>, StoreError> {
    let row = sqlx::query(sql::SELECT_GRANT)
        .bind(jti)
        .fetch_optional(&store.pool)
        .await
        .map_err(|e| backend("reading a grant", e))?;
    row.map(|r| {
        grant_row(&r)
            .map_err(|e| backend("reading a grant", e))
            .and_then(GrantRow::decode)
    })
    .transpose()
}

pub(super) async fn revoke(
    store: &PostgresStore,
    jti: &str,
    at: Timestamp,
    events: &[NewAuditEvent],
) -> Result<bool, StoreError> {
    let mut tx = store.begin_write().await?;
    let changed = sqlx::query(sql::REVOKE_GRANT)
        .bind(at.timestamp_millis())
        .bind(jti)
        .execute(&mut *tx)
        .await
        .map_err(|e| backend("revoking a grant", e))?
        .rows_affected();
    if changed == 0 {
        // Unknown or already revoked: nothing changes, nothing is appended.
        return Ok(false);
    }
    append_events(&mut tx, events).await?;
    tx.commit()
        .await
        .map_err(|e| backend("committing a grant revocation", e))?;
    Ok(true)
}

#[async_trait]
impl KeyStore for PostgresStore {
    #[tracing::instrument(skip_all)]
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        sqlx::query(sql::SELECT_KEYS)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("reading signing keys", e))?
            .iter()
            .map(|r| {
                key_row(r)
                    .map_err(|e| backend("reading signing keys", e))
                    .and_then(KeyRow::decode)
            })
            .collect()
    }

    #[tracing::instrument(skip_all, fields(kid = %key.kid))]
    async fn add_signing_key(
        &self,
        key: &SigningKeyRecord,
        retire: &[(String, Timestamp)],
        events: &[NewAuditEvent],
    ) -> Result<(), StoreError> {
        let row = KeyRow::encode(key)?;
        let mut tx = self.begin_write().await?;
        if let Err(e) = bind_key(sqlx::query(sql::INSERT_KEY), &row)
            .execute(&mut *tx)
            .await
        {
            return Err(if is_unique_violation(&e) {
                StoreError::Duplicate(format!("signing key {} already exists", key.kid))
            } else {
                backend("storing a signing key", e)
            });
        }
        for (kid, until) in retire {
            let changed = sqlx::query(sql::RETIRE_KEY)
                .bind(until.timestamp_millis())
                .bind(kid.as_str())
                .execute(&mut *tx)
                .await
                .map_err(|e| backend("retiring a signing key", e))?
                .rows_affected();
            if changed == 0 {
                // Nothing is written: the caller read keys that are not there.
                return Err(StoreError::NotFound);
            }
        }
        append_events(&mut tx, events).await?;
        tx.commit()
            .await
            .map_err(|e| backend("committing a signing key", e))
    }
}
