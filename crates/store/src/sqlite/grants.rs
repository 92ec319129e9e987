//! Grants and signing keys in SQLite.

use async_trait::async_trait;
use countersign_core::audit::NewAuditEvent;
use countersign_core::grant::{GrantRecord, OutboxMessage, SigningKeyRecord};
use countersign_core::ports::KeyStore;
use countersign_core::{StoreError, Timestamp};
use rusqlite::{OptionalExtension as _, Row, params};

use super::SqliteStore;
use super::audit::append_events;
use super::outbox::insert_outbox;
use super::requests::not_applied;
use crate::codec::{GrantRow, KeyRow};
use crate::error::{sqlite_backend, sqlite_grant_refused, sqlite_unique_violation};
use crate::sql;

/// Reads a grant's columns ([`sql::SELECT_GRANT`]).
fn grant_row(row: &Row<'_>) -> rusqlite::Result<GrantRow> {
    Ok(GrantRow {
        jti: row.get(0)?,
        request_id: row.get(1)?,
        kid: row.get(2)?,
        issued_at: row.get(3)?,
        expires_at: row.get(4)?,
        revoked_at: row.get(5)?,
    })
}

/// Reads a signing key's columns ([`sql::SELECT_KEYS`]).
fn key_row(row: &Row<'_>) -> rusqlite::Result<KeyRow> {
    Ok(KeyRow {
        kid: row.get(0)?,
        alg: row.get(1)?,
        public_jwk: row.get(2)?,
        sealed_private: row.get(3)?,
        created_at: row.get(4)?,
        signs_from: row.get(5)?,
        publish_until: row.get(6)?,
    })
}

pub(super) async fn insert(
    store: &SqliteStore,
    grant: &GrantRecord,
    request_version: i64,
    single_use: bool,
    events: &[NewAuditEvent],
    outbox: &[OutboxMessage],
) -> Result<(), StoreError> {
    let row = GrantRow::encode(grant);
    // `BEGIN IMMEDIATE` holds the database's write lock from here to the commit, and one
    // statement checks the request and inserts the grant.
    let (grant, events, outbox) = (grant.clone(), events.to_vec(), outbox.to_vec());
    store
        .writer
        .write_checked(
            move |batch| {
                let g = &row;
                let single_use_request = single_use.then_some(g.request_id.as_str());
                let inserted = batch
                    .execute(
                        sql::SQLITE_INSERT_GRANT,
                        params![
                            g.jti,
                            g.request_id,
                            g.kid,
                            g.issued_at,
                            g.expires_at,
                            g.revoked_at,
                            single_use_request,
                            request_version,
                        ],
                    )
                    .map_err(|e| sqlite_grant_refused(e, &grant))?;
                if inserted == 0 {
                    // Not approved, approved at another version, or gone: say which.
                    return Err(not_applied(batch, &g.request_id));
                }
                Ok(())
            },
            move |batch, ()| {
                insert_outbox(batch, &outbox)?;
                append_events(batch, &events)
            },
        )
        .await
}

pub(super) async fn get(store: &SqliteStore, jti: &str) -> Result<Option<GrantRecord>, StoreError> {
    let jti = jti.to_owned();
    store
        .readers
        .read(move |conn| {
            conn.prepare_cached(sql::SELECT_GRANT)
                .and_then(|mut s| s.query_row([jti], grant_row).optional())
                .map_err(|e| sqlite_backend("reading a grant", e))?
                .map(GrantRow::decode)
                .transpose()
        })
        .await
}

pub(super) async fn revoke(
    store: &SqliteStore,
    jti: &str,
    at: Timestamp,
    events: &[NewAuditEvent],
) -> Result<bool, StoreError> {
    let (jti, events) = (jti.to_owned(), events.to_vec());
    store
        .writer
        .write(move |batch| {
            let changed = batch
                .execute(sql::REVOKE_GRANT, (at.timestamp_millis(), jti))
                .map_err(|e| sqlite_backend("revoking a grant", e))?;
            if changed == 0 {
                // Unknown or already revoked: nothing changes, nothing is appended.
                return Ok(false);
            }
            append_events(batch, &events)?;
            Ok(true)
        })
        .await
}

#[async_trait]
impl KeyStore for SqliteStore {
    #[tracing::instrument(skip_all)]
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        self.readers
            .read(|conn| {
                conn.prepare_cached(sql::SELECT_KEYS)
                    .and_then(|mut s| s.query_map([], key_row)?.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| sqlite_backend("reading signing keys", e))?
                    .into_iter()
                    .map(KeyRow::decode)
                    .collect()
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(kid = %key.kid))]
    async fn add_signing_key(
        &self,
        key: &SigningKeyRecord,
        retire: &[(String, Timestamp)],
        events: &[NewAuditEvent],
    ) -> Result<(), StoreError> {
        let row = KeyRow::encode(key)?;
        let (kid, retire, events) = (key.kid.clone(), retire.to_vec(), events.to_vec());
        self.writer
            .write(move |batch| {
                let k = &row;
                let inserted = batch.execute(
                    sql::INSERT_KEY,
                    params![
                        k.kid,
                        k.alg,
                        k.public_jwk,
                        k.sealed_private,
                        k.created_at,
                        k.signs_from,
                        k.publish_until,
                    ],
                );
                if let Err(e) = inserted {
                    return Err(if sqlite_unique_violation(&e) {
                        StoreError::Duplicate(format!("signing key {kid} already exists"))
                    } else {
                        sqlite_backend("storing a signing key", e)
                    });
                }
                for (kid, until) in retire {
                    let changed = batch
                        .execute(sql::RETIRE_KEY, (until.timestamp_millis(), kid))
                        .map_err(|e| sqlite_backend("retiring a signing key", e))?;
                    if changed == 0 {
                        // Nothing is written: the caller read keys that are not there.
                        return Err(StoreError::NotFound);
                    }
                }
                append_events(batch, &events)
            })
            .await
    }
}
