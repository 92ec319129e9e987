//! The PostgreSQL store: for production and for several replicas sharing one database.
//!
//! Every write is one transaction. A change to a request is a compare-and-set
//! (`UPDATE … WHERE id = $1 AND version = $2`): under concurrent writers the row lock makes the
//! losers re-check the version after the winner commits, find it moved, update nothing, and
//! roll back with [`StoreError::Conflict`]. Audit events are chained under a lock on the
//! single-row `audit_head` table, taken last in the transaction and held until commit, so two
//! transactions never chain onto the same previous event and every chained event commits with
//! the change it records. Locks are always taken in the order request row (or grant row, or
//! signing key rows), then chain head, so writers cannot deadlock.
//!
//! Issuing a grant locks the request row (`SELECT … FOR UPDATE`) before checking that it is
//! still approved at the version the grant was computed from, so a concurrent revocation either
//! commits first (and the check fails) or waits for the grant; a unique constraint on
//! `grants.single_use_request` refuses a second single-use grant. Webhook deliveries are
//! written in the transaction of the change they announce, and claimed by workers with
//! `FOR UPDATE SKIP LOCKED`: replicas polling together never take the same row, and a claimed
//! row's `next_attempt_at` moves to the end of its lease before the claim commits. A browser
//! login is taken with one `DELETE … RETURNING`: of two callbacks with the same `state`, the
//! second waits for the first's row lock and then finds the row gone.
//!
//! The ports live one to a file: [`requests`], [`audit`], [`grants`] (grants and signing
//! keys), [`outbox`] and [`sessions`].

mod audit;
mod grants;
mod notices;
mod outbox;
mod requests;
mod sessions;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use countersign_core::audit::{AuditEvent, ChainLink, NewAuditEvent};
use countersign_core::grant::{GrantRecord, OutboxMessage};
use countersign_core::notice::NoticeMessage;
use countersign_core::ports::{AuditQuery, RequestFilter, Store, Transition};
use countersign_core::request::Request;
use countersign_core::{RequestId, StoreError, Timestamp};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgArguments, PgPool, PgPoolOptions};
use sqlx::{Postgres, SqlSafeStr};

use crate::error::backend;

/// A statement with its values, as the rows' `bind_…` helpers fill it.
type PgQuery<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// Connections per process. Writers hold one only for the length of a short transaction.
const POOL_SIZE: u32 = 16;

/// The schema ([`crate::migrations::POSTGRES`]), applied in order by
/// [`PostgresStore::migrate`].
fn migrator() -> Migrator {
    Migrator::with_migrations(
        crate::migrations::POSTGRES
            .iter()
            .map(|m| {
                Migration::new(
                    m.version,
                    m.description.into(),
                    MigrationType::Simple,
                    m.sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// Requests, decisions and the audit chain in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://…` or `postgresql://…`). Does not migrate: call
    /// [`PostgresStore::migrate`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await
            .map_err(|e| backend("connecting to postgresql", e))?;
        Ok(Self { pool })
    }

    /// Applies the embedded migrations that are not applied yet. Safe to run from several
    /// replicas at once: the migrator holds an advisory lock while it works.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrator().run(&self.pool).await.map_err(|e| {
            tracing::warn!(error = %e, "store: postgresql migration failed");
            StoreError::backend_caused_by(format!("migrating the postgresql database: {e}"), e)
        })
    }

    /// The connection pool, for tests and maintenance tools.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Postgres>, StoreError> {
        self.pool
            .begin()
            .await
            .map_err(|e| backend("starting a write transaction", e))
    }

    /// A read-only snapshot, so that a request and its decisions are read consistently.
    async fn begin_read(&self) -> Result<sqlx::Transaction<'static, Postgres>, StoreError> {
        self.pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(|e| backend("starting a read", e))
    }
}

#[async_trait]
impl Store for PostgresStore {
    #[tracing::instrument(skip_all, fields(request_id = %request.id))]
    async fn insert_request(
        &self,
        request: &Request,
        events: &[NewAuditEvent],
        outbox: &[OutboxMessage],
        notices: &[NoticeMessage],
    ) -> Result<(), StoreError> {
        requests::insert(self, request, events, outbox, notices).await
    }

    #[tracing::instrument(skip_all, fields(request_id = %id))]
    async fn get_request(&self, id: &RequestId) -> Result<Option<Arc<Request>>, StoreError> {
        requests::get(self, id).await
    }

    #[tracing::instrument(skip_all, fields(request_id = %transition.request_id()))]
    async fn apply(&self, transition: &Transition) -> Result<(), StoreError> {
        requests::apply(self, transition).await
    }

    #[tracing::instrument(skip_all)]
    async fn list_requests(&self, filter: &RequestFilter) -> Result<Vec<Request>, StoreError> {
        requests::list(self, filter).await
    }

    #[tracing::instrument(skip_all)]
    async fn due_for_expiry(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<RequestId>, StoreError> {
        requests::due_for_expiry(self, now, limit).await
    }

    #[tracing::instrument(skip_all)]
    async fn append_audit(&self, events: &[NewAuditEvent]) -> Result<(), StoreError> {
        audit::append(self, events).await
    }

    #[tracing::instrument(skip_all, fields(request_id = ?query.request_id))]
    async fn audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        audit::events(self, query).await
    }

    async fn audit_links(&self, query: &AuditQuery) -> Result<Vec<ChainLink>, StoreError> {
        audit::links(self, query).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(|e| backend("pinging the database", e))
    }

    async fn audit_head(&self) -> Result<(i64, String), StoreError> {
        audit::head(self).await
    }

    #[tracing::instrument(skip_all, fields(request_id = %grant.request_id))]
    async fn insert_grant(
        &self,
        grant: &GrantRecord,
        request_version: i64,
        single_use: bool,
        events: &[NewAuditEvent],
        outbox: &[OutboxMessage],
    ) -> Result<(), StoreError> {
        grants::insert(self, grant, request_version, single_use, events, outbox).await
    }

    #[tracing::instrument(skip_all)]
    async fn get_grant(&self, jti: &str) -> Result<Option<GrantRecord>, StoreError> {
        grants::get(self, jti).await
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_grant(
        &self,
        jti: &str,
        at: Timestamp,
        events: &[NewAuditEvent],
    ) -> Result<bool, StoreError> {
        grants::revoke(self, jti, at, events).await
    }
}
