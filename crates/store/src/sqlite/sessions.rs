//! Browser logins in flight and web sessions in SQLite.

use async_trait::async_trait;
use countersign_core::ports::{LoginTransaction, SessionStore, WebSession};
use countersign_core::{StoreError, Timestamp};
use rusqlite::{OptionalExtension as _, Row, params, params_from_iter};

use super::SqliteStore;
use crate::codec::{LoginRow, SessionRow};
use crate::error::{sqlite_backend, sqlite_unique_violation};
use crate::sql;

/// Reads a login's columns ([`sql::TAKE_LOGIN`]).
fn login_row(row: &Row<'_>) -> rusqlite::Result<LoginRow> {
    Ok(LoginRow {
        state: row.get(0)?,
        browser_binding: row.get(1)?,
        issuer: row.get(2)?,
        nonce: row.get(3)?,
        pkce_verifier: row.get(4)?,
        return_to: row.get(5)?,
        max_age: row.get(6)?,
        created_at: row.get(7)?,
        expires_at: row.get(8)?,
    })
}

/// Reads a session's columns ([`sql::SELECT_SESSION`]).
fn session_row(row: &Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id_hash: row.get(0)?,
        issuer: row.get(1)?,
        subject: row.get(2)?,
        sid: row.get(3)?,
        principal: row.get(4)?,
        id_token: row.get(5)?,
        refresh_token: row.get(6)?,
        csrf_token: row.get(7)?,
        created_at: row.get(8)?,
        last_seen_at: row.get(9)?,
    })
}

#[async_trait]
impl SessionStore for SqliteStore {
    // No span field names a login's state or a session's key: both are secrets.

    #[tracing::instrument(skip_all)]
    async fn insert_login(&self, login: &LoginTransaction) -> Result<(), StoreError> {
        let l = LoginRow::encode(login);
        self.writer
            .write(move |batch| {
                let inserted = batch.execute(
                    sql::INSERT_LOGIN,
                    params![
                        l.state,
                        l.browser_binding,
                        l.issuer,
                        l.nonce,
                        l.pkce_verifier,
                        l.return_to,
                        l.max_age,
                        l.created_at,
                        l.expires_at,
                    ],
                );
                match inserted {
                    Ok(_) => Ok(()),
                    Err(e) if sqlite_unique_violation(&e) => Err(StoreError::Duplicate(
                        "a login with this state already exists".into(),
                    )),
                    Err(e) => Err(sqlite_backend("storing a login", e)),
                }
            })
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn take_login(&self, state: &str) -> Result<Option<LoginTransaction>, StoreError> {
        // Read and delete in one statement, under the write lock: a second taker finds
        // nothing.
        let state = state.to_owned();
        self.writer
            .write(move |batch| {
                batch
                    .query_row(sql::TAKE_LOGIN, [state], login_row)
                    .map_err(|e| sqlite_backend("taking a login", e))?
                    .map(LoginRow::decode)
                    .transpose()
            })
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn insert_session(&self, session: &WebSession) -> Result<(), StoreError> {
        let s = SessionRow::encode(session)?;
        self.writer
            .write(move |batch| {
                let inserted = batch.execute(
                    sql::INSERT_SESSION,
                    params![
                        s.id_hash,
                        s.issuer,
                        s.subject,
                        s.sid,
                        s.principal,
                        s.id_token,
                        s.refresh_token,
                        s.csrf_token,
                        s.created_at,
                        s.last_seen_at,
                    ],
                );
                match inserted {
                    Ok(_) => Ok(()),
                    Err(e) if sqlite_unique_violation(&e) => Err(StoreError::Duplicate(
                        "a session with this id already exists".into(),
                    )),
                    Err(e) => Err(sqlite_backend("storing a session", e)),
                }
            })
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn get_session(&self, id_hash: &str) -> Result<Option<WebSession>, StoreError> {
        let id_hash = id_hash.to_owned();
        self.readers
            .read(move |conn| {
                conn.prepare_cached(sql::SELECT_SESSION)
                    .and_then(|mut st| st.query_row([id_hash], session_row).optional())
                    .map_err(|e| sqlite_backend("reading a session", e))?
                    .map(SessionRow::decode)
                    .transpose()
            })
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn update_session(&self, session: &WebSession) -> Result<(), StoreError> {
        let s = SessionRow::encode(session)?;
        self.writer
            .write(move |batch| {
                let changed = batch
                    .execute(
                        sql::UPDATE_SESSION,
                        params![
                            s.issuer,
                            s.subject,
                            s.sid,
                            s.principal,
                            s.id_token,
                            s.refresh_token,
                            s.csrf_token,
                            s.last_seen_at,
                            s.id_hash,
                        ],
                    )
                    .map_err(|e| sqlite_backend("updating a session", e))?;
                if changed == 0 {
                    // Signed out (or purged) meanwhile: the session stays gone.
                    return Err(StoreError::NotFound);
                }
                Ok(())
            })
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn delete_session(&self, id_hash: &str) -> Result<bool, StoreError> {
        let id_hash = id_hash.to_owned();
        self.writer
            .write(move |batch| {
                let changed = batch
                    .execute(sql::DELETE_SESSION, [id_hash])
                    .map_err(|e| sqlite_backend("deleting a session", e))?;
                Ok(changed > 0)
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(issuer = %issuer))]
    async fn delete_sessions(
        &self,
        issuer: &str,
        subject: Option<&str>,
        sid: Option<&str>,
    ) -> Result<u64, StoreError> {
        let (statement, binds): (&'static str, Vec<String>) = match (subject, sid) {
            (Some(subject), Some(sid)) => (
                sql::DELETE_SESSIONS_OF_SUBJECT_AND_SID,
                vec![issuer.to_owned(), subject.to_owned(), sid.to_owned()],
            ),
            (Some(subject), None) => (
                sql::DELETE_SESSIONS_OF_SUBJECT,
                vec![issuer.to_owned(), subject.to_owned()],
            ),
            (None, Some(sid)) => (
                sql::DELETE_SESSIONS_OF_SID,
                vec![issuer.to_owned(), sid.to_owned()],
            ),
            // Neither names anyone: deleting "every session at the issuer" is never meant.
            (None, None) => return Ok(0),
        };
        self.writer
            .write(move |batch| {
                let deleted = batch
                    .execute(statement, params_from_iter(binds))
                    .map_err(|e| sqlite_backend("deleting sessions", e))?;
                Ok(deleted as u64)
            })
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn purge_sessions(
        &self,
        logins_before: Timestamp,
        sessions_idle_before: Timestamp,
    ) -> Result<u64, StoreError> {
        self.writer
            .write(move |batch| {
                let logins = batch
                    .execute(sql::PURGE_LOGINS, [logins_before.timestamp_millis()])
                    .map_err(|e| sqlite_backend("purging logins", e))?;
                let sessions = batch
                    .execute(
                        sql::PURGE_SESSIONS,
                        [sessions_idle_before.timestamp_millis()],
                    )
                    .map_err(|e| sqlite_backend("purging sessions", e))?;
                Ok((logins + sessions) as u64)
            })
            .await
    }
}
