//! Browser logins in flight and web sessions in PostgreSQL.

use async_trait::async_trait;
use countersign_core::ports::{LoginTransaction, SessionStore, WebSession};
use countersign_core::{StoreError, Timestamp};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{PgQuery, PostgresStore};
use crate::codec::{LoginRow, SessionRow};
use crate::error::{backend, is_unique_violation};
use crate::sql;

fn login_row(row: &PgRow) -> Result<LoginRow, sqlx::Error> {
    Ok(LoginRow {
        state: row.try_get("state")?,
        browser_binding: row.try_get("browser_binding")?,
        issuer: row.try_get("issuer")?,
        nonce: row.try_get("nonce")?,
        pkce_verifier: row.try_get("pkce_verifier")?,
        return_to: row.try_get("return_to")?,
        max_age: row.try_get("max_age")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

fn session_row(row: &PgRow) -> Result<SessionRow, sqlx::Error> {
    Ok(SessionRow {
        id_hash: row.try_get("id_hash")?,
        issuer: row.try_get("issuer")?,
        subject: row.try_get("subject")?,
        sid: row.try_get("sid")?,
        principal: row.try_get("principal")?,
        id_token: row.try_get("id_token")?,
        refresh_token: row.try_get("refresh_token")?,
        csrf_token: row.try_get("csrf_token")?,
        created_at: row.try_get("created_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
    })
}

/// Binds `l` in the order of [`sql::INSERT_LOGIN`].
fn bind_login<'q>(q: PgQuery<'q>, l: &'q LoginRow) -> PgQuery<'q> {
    q.bind(l.state.as_str())
        .bind(l.browser_binding.as_str())
        .bind(l.issuer.as_str())
        .bind(l.nonce.as_str())
        .bind(l.pkce_verifier.as_str())
        .bind(l.return_to.as_str())
        .bind(l.max_age)
        .bind(l.created_at)
        .bind(l.expires_at)
}

/// Binds `s` in the order of [`sql::INSERT_SESSION`].
fn bind_session<'q>(q: PgQuery<'q>, s: &'q SessionRow) -> PgQuery<'q> {
    q.bind(s.id_hash.as_str())
        .bind(s.issuer.as_str())
        .bind(s.subject.as_str())
        .bind(s.sid.as_deref())
        .bind(s.principal.as_str())
        .bind(s.id_token.as_deref())
        .bind(s.refresh_token.as_deref())
        .bind(s.csrf_token.as_str())
        .bind(s.created_at)
        .bind(s.last_seen_at)
}

/// Binds `s` in the order of [`sql::UPDATE_SESSION`] (no `created_at`, the key last).
fn bind_session_update<'q>(q: PgQuery<'q>, s: &'q SessionRow) -> PgQuery<'q> {
    q.bind(s.issuer.as_str())
        .bind(s.subject.as_str())
        .bind(s.sid.as_deref())
        .bind(s.principal.as_str())
        .bind(s.id_token.as_deref())
        .bind(s.refresh_token.as_deref())
        .bind(s.csrf_token.as_str())
        .bind(s.last_seen_at)
        .bind(s.id_hash.as_str())
}

#[async_trait]
impl SessionStore for PostgresStore {
    // No span field names a login's state or a session's key: both are secrets.

    #[tracing::instrument(skip_all)]
    async fn insert_login(&self, login: &LoginTransaction) -> Result<(), StoreError> {
        let row = LoginRow::encode(login);
        let mut tx = self.begin_write().await?;
        if let Err(e) = bind_login(sqlx::query(sql::INSERT_LOGIN), &row)
            .execute(&mut *tx)
            .await
        {
            return Err(if is_unique_violation(&e) {
                StoreError::Duplicate("a login with this state already exists".into())
            } else {
                backend("storing a login", e)
            });
        }
        tx.commit()
            .await
            .map_err(|e| backend("committing a login", e))
    }

    #[tracing::instrument(skip_all)]
    async fn take_login(&self, state: &str) -> Result<Option<LoginTransaction>, StoreError> {
        // Read and delete in one statement: a concurrent taker of the same state waits for this
        // row lock, then finds the row gone and returns nothing.
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(sql::TAKE_LOGIN)
            .bind(state)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| backend("taking a login", e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let row = login_row(&row).map_err(|e| backend("taking a login", e))?;
        tx.commit()
            .await
            .map_err(|e| backend("committing a login take", e))?;
        row.decode().map(Some)
    }

    #[tracing::instrument(skip_all)]
    async fn insert_session(&self, session: &WebSession) -> Result<(), StoreError> {
        let row = SessionRow::encode(session)?;
        let mut tx = self.begin_write().await?;
        if let Err(e) = bind_session(sqlx::query(sql::INSERT_SESSION), &row)
            .execute(&mut *tx)
            .await
        {
            return Err(if is_unique_violation(&e) {
                StoreError::Duplicate("a session with this id already exists".into())
            } else {
                backend("storing a session", e)
            });
        }
        tx.commit()
            .await
            .map_err(|e| backend("committing a session", e))
    }

    #[tracing::instrument(skip_all)]
    async fn get_session(&self, id_hash: &str) -> Result<Option<WebSession>, StoreError> {
        let row = sqlx::query(sql::SELECT_SESSION)
            .bind(id_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| backend("reading a session", e))?;
        row.map(|r| {
            session_row(&r)
                .map_err(|e| backend("reading a session", e))
                .and_then(SessionRow::decode)
        })
        .transpose()
    }

    #[tracing::instrument(skip_all)]
    async fn update_session(&self, session: &WebSession) -> Result<(), StoreError> {
        let row = SessionRow::encode(session)?;
        let mut tx = self.begin_write().await?;
        let changed = bind_session_update(sqlx::query(sql::UPDATE_SESSION), &row)
            .execute(&mut *tx)
            .await
            .map_err(|e| backend("updating a session", e))?
            .rows_affected();
        if changed == 0 {
            // Signed out (or purged) meanwhile: the session stays gone.
            return Err(StoreError::NotFound);
        }
        tx.commit()
            .await
            .map_err(|e| backend("committing a session update", e))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_session(&self, id_hash: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query(sql::DELETE_SESSION)
            .bind(id_hash)
            .execute(&mut *tx)
            .await
            .map_err(|e| backend("deleting a session", e))?
            .rows_affected();
        if changed == 0 {
            return Ok(false);
        }
        tx.commit()
            .await
            .map_err(|e| backend("committing a session deletion", e))?;
        Ok(true)
    }

    #[tracing::instrument(skip_all, fields(issuer = %issuer))]
    async fn delete_sessions(
        &self,
        issuer: &str,
        subject: Option<&str>,
        sid: Option<&str>,
    ) -> Result<u64, StoreError> {
        let query = match (subject, sid) {
            (Some(subject), Some(sid)) => sqlx::query(sql::DELETE_SESSIONS_OF_SUBJECT_AND_SID)
                .bind(issuer)
                .bind(subject)
                .bind(sid),
            (Some(subject), None) => sqlx::query(sql::DELETE_SESSIONS_OF_SUBJECT)
                .bind(issuer)
                .bind(subject),
            (None, Some(sid)) => sqlx::query(sql::DELETE_SESSIONS_OF_SID)
                .bind(issuer)
                .bind(sid),
            // Neither names anyone: deleting "every session at the issuer" is never meant.
            (None, None) => return Ok(0),
        };
        let mut tx = self.begin_write().await?;
        let deleted = query
            .execute(&mut *tx)
            .await
            .map_err(|e| backend("deleting sessions", e))?
            .rows_affected();
        tx.commit()
            .await
            .map_err(|e| backend("committing a session deletion", e))?;
        Ok(deleted)
    }

    #[tracing::instrument(skip_all)]
    async fn purge_sessions(
        &self,
        logins_before: Timestamp,
        sessions_idle_before: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let logins = sqlx::query(sql::PURGE_LOGINS)
            .bind(logins_before.timestamp_millis())
            .execute(&mut *tx)
            .await
            .map_err(|e| backend("purging logins", e))?
            .rows_affected();
        let sessions = sqlx::query(sql::PURGE_SESSIONS)
            .bind(sessions_idle_before.timestamp_millis())
            .execute(&mut *tx)
            .await
            .map_err(|e| backend("purging sessions", e))?
            .rows_affected();
        tx.commit()
            .await
            .map_err(|e| backend("committing a purge", e))?;
        Ok(logins + sessions)
    }
}
