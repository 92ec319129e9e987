//! The SQLite store: the embedded default, one file in WAL mode.
//!
//! SQLite allows one writer at a time. Every write of this process goes through one writer
//! thread ([`crate::group_commit`]), on a connection of its own, that runs concurrent writes
//! in one `BEGIN IMMEDIATE` transaction, each in its own savepoint (or none, when all its
//! refusals come from its first change: creating a request, a change, a grant), and commits
//! them with one flush of the disk (group commit); callers are answered only after that
//! commit. `BEGIN IMMEDIATE` takes the write lock up front (waiting up to the busy timeout
//! for another process holding it) instead of failing with `SQLITE_BUSY` half-way through.
//! Readers, on a pool of their own, never block and are never blocked: WAL gives each read
//! transaction a snapshot.
//!
//! The checks that PostgreSQL makes with row locks (a grant's request still approved at its
//! version, the due deliveries a worker claims) run inside that write transaction, so nothing
//! can change between the check and the write; a unique constraint on
//! `grants.single_use_request` refuses a second single-use grant all the same. Taking a
//! browser login is one `DELETE … RETURNING` in a write transaction, so of two callbacks with
//! the same `state` only the first finds the row.
//!
//! One process serves a SQLite database (several replicas need PostgreSQL), so a request read
//! once is kept in memory until this process's writer changes it, for at most a second
//! ([`crate::cache`]); listings take from it only the version they list. The writer leaves
//! the requests it creates, and those it changes from the cached version, in the cache.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use countersign_core::audit::{self, AuditEvent, ChainLink, NewAuditEvent};
use countersign_core::grant::{
    Delivery, DeliveryState, GrantRecord, OutboxMessage, SigningKeyRecord,
};
use countersign_core::ports::{
    AttemptOutcome, AuditQuery, KeyStore, LoginTransaction, Order, OutboxStore, RequestFilter,
    SessionStore, Store, Transition, WebSession,
};
use countersign_core::request::{Decision, Request, State};
use countersign_core::{RequestId, StoreError, Timestamp};
use rusqlite::{Connection, OpenFlags};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, SqlSafeStr, Sqlite};

use crate::cache::{self, RequestCache};
use crate::codec::{
    DecisionRow, DeliveryRow, EventRow, GrantRow, KeyRow, LoginRow, RequestRow, SessionRow,
    StoredEventRow, StoredRequest, attempt_columns, bind_decision, bind_delivery, bind_event,
    bind_grant, bind_key, bind_login, bind_request, bind_session, bind_session_update, lease_end,
};
use crate::error::{
    backend, gone_or_moved, sqlite_backend, sqlite_grant_refused, sqlite_unique_violation,
};
use crate::group_commit::{Batch, Params, Writer};
use crate::sql;

/// How long a writer waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections for a database file: enough for concurrent readers (writers take one at a time).
const FILE_POOL_SIZE: u32 = 8;

const HEAD_SQL: &str = "SELECT seq, hash FROM audit_head WHERE id = 1";

/// The schema, applied in order by [`SqliteStore::migrate`].
fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "init".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0001_init.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            "grants keys outbox".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0002_grants_keys_outbox.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            "sessions".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0003_sessions.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            4,
            "requests state id".into(),
            MigrationType::Simple,
            include_str!("../migrations/sqlite/0004_requests_state_id.sql").into_sql_str(),
            false,
        ),
    ])
}

/// Opens the writer's own connection to the database of `options` (which the pool has
/// opened already: the file exists, in WAL mode), set up as the pool's are. An in-memory
/// database is shared with the pool through SQLite's shared cache, as the pool's
/// connections share it.
fn open_writer(options: &SqliteConnectOptions, in_memory: bool) -> Result<Connection, StoreError> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if in_memory {
        flags |= OpenFlags::SQLITE_OPEN_MEMORY | OpenFlags::SQLITE_OPEN_SHARED_CACHE;
    }
    let open = || -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(options.get_filename(), flags)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.execute_batch(
            "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
        )?;
        Ok(conn)
    };
    open().map_err(|e| sqlite_backend("opening the sqlite database for writing", e))
}

/// Requests, decisions and the audit chain in a SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Runs this process's writes, committing concurrent ones together (see the module docs).
    writer: Writer,
    /// Requests read whole, until the writer changes them.
    cache: Arc<RequestCache>,
}

impl SqliteStore {
    /// Opens (creating it if missing) the database at `url`: `sqlite://path/to/file.db`,
    /// `sqlite:file.db` or `sqlite::memory:`. Does not migrate: call [`SqliteStore::migrate`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|_| {
                StoreError::Backend(
                    "invalid sqlite database url (expected sqlite://path or sqlite::memory:)"
                        .into(),
                )
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .pragma("temp_store", "memory")
            .busy_timeout(BUSY_TIMEOUT);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        // An in-memory database lives as long as its connections: keep exactly one open, for
        // good, so the data does not vanish when the pool trims idle connections.
        let pool_options = if in_memory {
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(FILE_POOL_SIZE)
        };
        let pool = pool_options
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .map_err(|e| backend("opening the sqlite database", e))?;
        let cache = Arc::new(RequestCache::new(cache::CAPACITY, cache::MAX_AGE));
        let writer = Writer::start(open_writer(&options, in_memory)?, cache.clone())?;
        Ok(Self {
            pool,
            writer,
            cache,
        })
    }

    /// Applies the embedded migrations that are not applied yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrator().run(&self.pool).await.map_err(|e| {
            tracing::warn!(error = %e, "store: sqlite migration failed");
            StoreError::Backend(format!("migrating the sqlite database: {e}"))
        })
    }

    /// The connection pool, for tests and maintenance tools.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// Chains `events` after the batch's head and writes them, moving the head (which the batch
/// stores once, before it commits).
pub(crate) fn append_events(
    batch: &mut Batch<'_>,
    events: &[NewAuditEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let (mut seq, mut hash) = match batch.head.take() {
        Some(head) => head,
        None => batch
            .query_row(HEAD_SQL, Params::new(), |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .map_err(|e| sqlite_backend("reading the audit chain head", e))?
            .ok_or_else(|| {
                StoreError::Backend("reading the audit chain head: it is missing".into())
            })?,
    };
    let mut rows = Vec::with_capacity(events.len());
    for event in events {
        let chained = AuditEvent::chain(event.clone(), seq, &hash);
        rows.push(EventRow::encode(&chained)?);
        seq = chained.seq;
        hash = chained.hash;
    }
    // One statement for a write's events, in chunks that stay under SQLite's parameter limit.
    for chunk in rows.chunks(sql::SQLITE_EVENTS_PER_INSERT) {
        let params = chunk
            .iter()
            .fold(Params::new(), |q, row| bind_event!(q, row));
        batch
            .execute(&sql::sqlite_insert_events(chunk.len()), params)
            .map_err(|e| sqlite_backend("appending audit events", e))?;
    }
    batch.head = Some((seq, hash));
    Ok(())
}

/// Why a write guarded by request `id`'s version wrote nothing: gone or moved.
fn not_applied(batch: &Batch<'_>, id: &str) -> StoreError {
    match batch.integer(sql::REQUEST_EXISTS, Params::new().bind(id)) {
        Ok(exists) => gone_or_moved(exists.unwrap_or(0)),
        Err(e) => sqlite_backend("reading a request", e),
    }
}

/// Writes `outbox` as pending deliveries, due at their creation time.
fn insert_outbox(batch: &Batch<'_>, outbox: &[OutboxMessage]) -> Result<(), StoreError> {
    for message in outbox {
        let row = DeliveryRow::encode_new(message)?;
        if let Err(e) = batch.execute(sql::INSERT_DELIVERY, bind_delivery!(Params::new(), &row)) {
            return Err(if sqlite_unique_violation(&e) {
                StoreError::Duplicate(format!("outbox message {} already exists", message.id))
            } else {
                sqlite_backend("writing to the webhook outbox", e)
            });
        }
    }
    Ok(())
}

/// Reads a row of [`sql::SQLITE_SELECT_REQUEST`] (or a listing with the same columns).
fn read_request_with_decisions(
    row: &sqlx::sqlite::SqliteRow,
) -> Result<(RequestRow, Vec<Decision>), StoreError> {
    let request = RequestRow::read(row).map_err(|e| backend("reading a request", e))?;
    let json: String = row
        .try_get("decisions_json")
        .map_err(|e| backend("reading decisions", e))?;
    let decisions = serde_json::from_str::<Vec<DecisionRow>>(&json)
        .map_err(|_| {
            StoreError::Backend("reading decisions: a stored decision is malformed".into())
        })?
        .into_iter()
        .map(DecisionRow::decode)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((request, decisions))
}

/// The requests of a page read as one JSON value ([`sql::SQLITE_REQUESTS_JSON`]), in `order`.
/// `None` when the page cannot be read that way, e.g. when a stored JSON column is not JSON
/// (SQLite refuses the whole statement) or a row does not decode: the caller then reads the
/// page row by row, which names the row that is wrong (and reports any error of the database).
fn requests_in_page(page: Result<String, sqlx::Error>, order: Order) -> Option<Vec<Request>> {
    let page = page.ok()?;
    let rows = serde_json::from_str::<Vec<StoredRequest>>(&page).ok()?;
    let mut requests = rows
        .into_iter()
        .map(StoredRequest::decode)
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    requests.sort_unstable_by_key(|r| r.id);
    if order == Order::NewestFirst {
        requests.reverse();
    }
    Some(requests)
}

impl SqliteStore {
    /// A listing of requests as one JSON value ([`sql::SQLITE_REQUESTS_JSON`]).
    async fn requests_page(&self, filter: &RequestFilter) -> Result<String, sqlx::Error> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(sql::SQLITE_REQUESTS_JSON);
        q.push("(SELECT ")
            .push(sql::REQUEST_COLUMNS)
            .push(" FROM requests");
        sql::push_request_filter(&mut q, filter);
        q.push(") AS page");
        q.build_query_scalar().fetch_one(&self.pool).await
    }

    /// A listing of pending requests ([`Store::list_requests`] uses it for no other) answered
    /// from the request cache where it holds the very version listed:
    /// the ids and versions come first (one light statement), then the requests the cache
    /// lacks, by id. Every request returned is the one the listing's snapshot held, so the
    /// listing reads as of one snapshot, like [`Self::requests_page`]. Pending requests read
    /// here are kept (inboxes list them again and again; finished ones are seldom listed
    /// twice). `None` when the listing cannot be answered this way: a database error, a
    /// request that moved between the two statements, one that does not decode; the caller
    /// then reads the page as one statement.
    async fn requests_by_version(&self, filter: &RequestFilter) -> Option<Vec<Request>> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(sql::SQLITE_REQUEST_VERSIONS);
        q.push("(SELECT id, version FROM requests");
        sql::push_request_filter(&mut q, filter);
        q.push(") AS page");
        let listed: String = q.build_query_scalar().fetch_one(&self.pool).await.ok()?;
        let mut listed = listed
            .split(',')
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let (id, version) = entry.split_once(' ')?;
                Some((id.parse::<RequestId>().ok()?, version.parse::<i64>().ok()?))
            })
            .collect::<Option<Vec<_>>>()?;
        listed.sort_unstable_by_key(|(id, _)| *id);
        if filter.order == Order::NewestFirst {
            listed.reverse();
        }
        let mut found: Vec<Option<Request>> = listed
            .iter()
            .map(|(id, version)| {
                self.cache
                    .get(id)
                    .filter(|r| r.version == *version)
                    .map(Arc::unwrap_or_clone)
            })
            .collect();
        let missing: Vec<String> = listed
            .iter()
            .zip(&found)
            .filter(|(_, hit)| hit.is_none())
            .map(|((id, _), _)| id.to_string())
            .collect();
        if !missing.is_empty() {
            let epoch = self.cache.epoch();
            let ids = serde_json::to_string(&missing).ok()?;
            let page = sqlx::query_scalar(sql::SQLITE_REQUESTS_BY_ID_JSON)
                .bind(ids)
                .fetch_one(&self.pool)
                .await;
            let mut read: HashMap<RequestId, Request> = requests_in_page(page, filter.order)?
                .into_iter()
                .map(|r| (r.id, r))
                .collect();
            for ((id, version), slot) in listed.iter().zip(found.iter_mut()) {
                if slot.is_none() {
                    let request = read.remove(id).filter(|r| r.version == *version)?;
                    if request.state == State::Pending {
                        self.cache.keep(epoch, &Arc::new(request.clone()));
                    }
                    *slot = Some(request);
                }
            }
        }
        found.into_iter().collect()
    }

    /// A listing of requests read row by row: slower than [`Self::requests_page`], but a row
    /// that cannot be read is named.
    async fn requests_by_rows(&self, filter: &RequestFilter) -> Result<Vec<Request>, StoreError> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT ");
        q.push(sql::REQUEST_COLUMNS)
            .push(", ")
            .push(sql::SQLITE_DECISIONS_JSON)
            .push(" FROM requests");
        sql::push_request_filter(&mut q, filter);
        q.build()
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("listing requests", e))?
            .iter()
            .map(|row| {
                let (request, decisions) = read_request_with_decisions(row)?;
                request.decode(decisions)
            })
            .collect()
    }

    /// A page of events as one JSON array ([`sql::SQLITE_EVENTS_JSON`]): long pages (`audit
    /// verify`) would otherwise pay a hand-over between threads for every event.
    async fn events_page(&self, query: &AuditQuery) -> Result<String, StoreError> {
        let limit = sql::page_size(query.limit, sql::MAX_EVENT_PAGE);
        match &query.request_id {
            None => {
                sqlx::query_scalar(sql::SQLITE_EVENTS_JSON)
                    .bind(query.after_seq)
                    .bind(limit)
                    .fetch_one(&self.pool)
                    .await
            }
            Some(id) => {
                sqlx::query_scalar(sql::SQLITE_EVENTS_OF_REQUEST_JSON)
                    .bind(query.after_seq)
                    .bind(limit)
                    .bind(id.to_string())
                    .fetch_one(&self.pool)
                    .await
            }
        }
        .map_err(|e| backend("reading audit events", e))
    }
}

fn unexpected_event_shape() -> StoreError {
    StoreError::Backend("reading audit events: a stored event has an unexpected shape".into())
}

#[async_trait]
impl Store for SqliteStore {
    #[tracing::instrument(skip_all, fields(request_id = %request.id))]
    async fn insert_request(
        &self,
        request: &Request,
        events: &[NewAuditEvent],
        outbox: &[OutboxMessage],
    ) -> Result<(), StoreError> {
        let row = RequestRow::encode(request)?;
        let (request, events, outbox) = (request.clone(), events.to_vec(), outbox.to_vec());
        let request_id = request.id;
        self.writer
            .write_checked(
                move |batch| match batch
                    .execute(sql::INSERT_REQUEST, bind_request!(Params::new(), &row))
                {
                    Ok(_) => Ok(()),
                    Err(e) if sqlite_unique_violation(&e) => Err(StoreError::Duplicate(format!(
                        "request {request_id} already exists"
                    ))),
                    Err(e) => Err(sqlite_backend("storing a request", e)),
                },
                move |batch, ()| {
                    insert_outbox(batch, &outbox)?;
                    append_events(batch, &events)?;
                    batch.wrote(request);
                    Ok(())
                },
            )
            .await
    }

    #[tracing::instrument(skip_all, fields(request_id = %id))]
    async fn get_request(&self, id: &RequestId) -> Result<Option<Arc<Request>>, StoreError> {
        if let Some(request) = self.cache.get(id) {
            return Ok(Some(request));
        }
        // Noted before the read: a write committed meanwhile keeps what is read out of the cache.
        let epoch = self.cache.epoch();
        // One statement: the request and its decisions come from the same snapshot.
        let page = sqlx::query_scalar(sql::SQLITE_REQUEST_JSON)
            .bind(id.to_string())
            .fetch_one(&self.pool)
            .await;
        if let Some(requests) = requests_in_page(page, Order::OldestFirst) {
            let request = requests.into_iter().next().map(Arc::new);
            if let Some(request) = &request {
                self.cache.keep(epoch, request);
            }
            return Ok(request);
        }
        let Some(row) = sqlx::query(sql::SQLITE_SELECT_REQUEST)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| backend("reading a request", e))?
        else {
            return Ok(None);
        };
        let (request, decisions) = read_request_with_decisions(&row)?;
        request.decode(decisions).map(|r| Some(Arc::new(r)))
    }

    #[tracing::instrument(skip_all, fields(request_id = %transition.request_id()))]
    async fn apply(&self, transition: &Transition) -> Result<(), StoreError> {
        let decision = transition
            .decision()
            .map(|d| DecisionRow::encode(&transition.request_id(), d))
            .transpose()?;
        let transition = transition.clone();
        self.writer
            .write_checked(
                move |batch| {
                    batch.touch(transition.request_id());
                    let id = transition.request_id().to_string();
                    let params = Params::new()
                        .bind(id.as_str())
                        .bind(transition.expected_version())
                        .bind(transition.state().as_str())
                        .bind(transition.approval().map(crate::codec::approval_name))
                        .bind(transition.decided_at().map(|t| t.timestamp_millis()))
                        .bind(transition.at().timestamp_millis());
                    let changed = match &decision {
                        None => batch.execute(sql::CAS_REQUEST, params),
                        Some(d) => batch.execute(
                            sql::SQLITE_CAS_REQUEST_UNDECIDED,
                            params
                                .bind(d.approver_issuer.as_str())
                                .bind(d.approver_subject.as_str()),
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
                        .integer(sql::SQLITE_REQUEST_VERSION, Params::new().bind(id.as_str()))
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
                    if let Some(decision) = &decision {
                        batch
                            .execute(
                                sql::INSERT_DECISION,
                                bind_decision!(Params::new(), decision),
                            )
                            .map_err(|e| sqlite_backend("storing a decision", e))?;
                    }
                    insert_outbox(batch, transition.outbox())?;
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

    #[tracing::instrument(skip_all)]
    async fn list_requests(&self, filter: &RequestFilter) -> Result<Vec<Request>, StoreError> {
        // Only listings of pending requests (inboxes) are read against the cache: the cache
        // keeps what listings read only when it is pending, so any other listing would mostly
        // miss and pay a second statement for nothing.
        if filter.state == Some(State::Pending)
            && let Some(requests) = self.requests_by_version(filter).await
        {
            return Ok(requests);
        }
        // One statement: the requests and their decisions come from the same snapshot.
        let page = self.requests_page(filter).await;
        match requests_in_page(page, filter.order) {
            Some(requests) => Ok(requests),
            None => self.requests_by_rows(filter).await,
        }
    }

    #[tracing::instrument(skip_all)]
    async fn due_for_expiry(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<RequestId>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(sql::DUE_FOR_EXPIRY)
            .bind(now.timestamp_millis())
            .bind(sql::page_size(limit, sql::MAX_REQUEST_PAGE))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("finding expired requests", e))?;
        ids.iter()
            .map(|id| {
                id.parse().map_err(|_| {
                    StoreError::Backend("a stored request id is not a request id".into())
                })
            })
            .collect()
    }

    #[tracing::instrument(skip_all)]
    async fn append_audit(&self, events: &[NewAuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let events = events.to_vec();
        self.writer
            .write(move |batch| append_events(batch, &events))
            .await
    }

    #[tracing::instrument(skip_all, fields(request_id = ?query.request_id))]
    async fn audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
        let page = self.events_page(query).await?;
        serde_json::from_str::<Vec<EventRow>>(&page)
            .map_err(|_| unexpected_event_shape())?
            .into_iter()
            .map(EventRow::decode)
            .collect::<Result<Vec<_>, _>>()
            .map(|mut events| {
                // The page comes in seq order; the aggregate does not promise to keep it.
                events.sort_by_key(|e| e.seq);
                events
            })
    }

    #[tracing::instrument(skip_all, fields(request_id = ?query.request_id))]
    async fn audit_links(&self, query: &AuditQuery) -> Result<Vec<ChainLink>, StoreError> {
        let page = self.events_page(query).await?;
        // Borrowed from the page: nothing is decoded unless a row fails the check as stored.
        let mut rows = serde_json::from_str::<Vec<StoredEventRow>>(&page)
            .map_err(|_| unexpected_event_shape())?;
        rows.sort_by_key(|row| row.seq);
        Ok(audit::in_parallel(&rows, |part| {
            let mut buf = Vec::with_capacity(1024);
            part.iter().map(|row| row.link(&mut buf)).collect()
        }))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(|e| backend("pinging the database", e))
    }

    async fn audit_head(&self) -> Result<(i64, String), StoreError> {
        sqlx::query_as::<_, (i64, String)>("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| backend("reading the audit chain head", e))
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
        let row = GrantRow::encode(grant);
        // `BEGIN IMMEDIATE` holds the database's write lock from here to the commit, and one
        // statement checks the request and inserts the grant.
        let (grant, events, outbox) = (grant.clone(), events.to_vec(), outbox.to_vec());
        self.writer
            .write_checked(
                move |batch| {
                    let params = bind_grant!(Params::new(), &row, single_use).bind(request_version);
                    let inserted = batch
                        .execute(sql::SQLITE_INSERT_GRANT, params)
                        .map_err(|e| sqlite_grant_refused(e, &grant))?;
                    if inserted == 0 {
                        // Not approved, approved at another version, or gone: say which.
                        return Err(not_applied(batch, &row.request_id));
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

    #[tracing::instrument(skip_all)]
    async fn get_grant(&self, jti: &str) -> Result<Option<GrantRecord>, StoreError> {
        let row = sqlx::query(sql::SELECT_GRANT)
            .bind(jti)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| backend("reading a grant", e))?;
        row.map(|r| {
            GrantRow::read(&r)
                .map_err(|e| backend("reading a grant", e))
                .and_then(GrantRow::decode)
        })
        .transpose()
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_grant(
        &self,
        jti: &str,
        at: Timestamp,
        events: &[NewAuditEvent],
    ) -> Result<bool, StoreError> {
        let (jti, events) = (jti.to_owned(), events.to_vec());
        self.writer
            .write(move |batch| {
                let changed = batch
                    .execute(
                        sql::REVOKE_GRANT,
                        Params::new().bind(jti).bind(at.timestamp_millis()),
                    )
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
}

#[async_trait]
impl KeyStore for SqliteStore {
    #[tracing::instrument(skip_all)]
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        sqlx::query(sql::SELECT_KEYS)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("reading signing keys", e))?
            .iter()
            .map(|r| {
                KeyRow::read(r)
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
        let (kid, retire, events) = (key.kid.clone(), retire.to_vec(), events.to_vec());
        self.writer
            .write(move |batch| {
                if let Err(e) = batch.execute(sql::INSERT_KEY, bind_key!(Params::new(), &row)) {
                    return Err(if sqlite_unique_violation(&e) {
                        StoreError::Duplicate(format!("signing key {kid} already exists"))
                    } else {
                        sqlite_backend("storing a signing key", e)
                    });
                }
                for (kid, until) in retire {
                    let changed = batch
                        .execute(
                            sql::RETIRE_KEY,
                            Params::new()
                                .bind(kid.as_str())
                                .bind(until.timestamp_millis()),
                        )
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

/// Reads delivery rows.
fn read_deliveries(rows: &[sqlx::sqlite::SqliteRow]) -> Result<Vec<Delivery>, StoreError> {
    rows.iter()
        .map(|r| {
            DeliveryRow::read(r)
                .map_err(|e| backend("reading deliveries", e))
                .and_then(DeliveryRow::decode)
        })
        .collect()
}

#[async_trait]
impl OutboxStore for SqliteStore {
    #[tracing::instrument(skip_all)]
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        limit: u32,
        lease: chrono::Duration,
    ) -> Result<Vec<Delivery>, StoreError> {
        let until = lease_end(now, lease)?;
        // The write lock is held from the read to the commit: no other writer, in this
        // process or another, can take the same rows in between.
        self.writer
            .write(move |batch| {
                let rows = batch
                    .query_rows(
                        sql::DUE_DELIVERIES,
                        Params::new()
                            .bind(now.timestamp_millis())
                            .bind(sql::page_size(limit, sql::MAX_DELIVERY_PAGE)),
                        DeliveryRow::read_sqlite,
                    )
                    .map_err(|e| sqlite_backend("claiming deliveries", e))?;
                let mut claimed = rows
                    .into_iter()
                    .map(DeliveryRow::decode)
                    .collect::<Result<Vec<_>, _>>()?;
                if claimed.is_empty() {
                    return Ok(claimed);
                }
                let mut text = "UPDATE deliveries SET next_attempt_at = ? WHERE id IN (".to_owned();
                let mut params = Params::new().bind(until);
                for (i, d) in claimed.iter().enumerate() {
                    text.push_str(if i == 0 { "?" } else { ", ?" });
                    params = params.bind(d.message.id.as_str());
                }
                text.push(')');
                batch
                    .execute(&text, params)
                    .map_err(|e| sqlite_backend("claiming deliveries", e))?;
                let until = countersign_core::time::from_millis(until).ok_or_else(|| {
                    StoreError::Backend("the delivery lease is out of range".into())
                })?;
                for d in &mut claimed {
                    d.next_attempt_at = until;
                }
                Ok(claimed)
            })
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn record_attempt(
        &self,
        id: &str,
        outcome: &AttemptOutcome,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let (state, next, error) = attempt_columns(outcome);
        let (id, error) = (id.to_owned(), error.map(str::to_owned));
        self.writer
            .write(move |batch| {
                let params = Params::new()
                    .bind(id.as_str())
                    .bind(state)
                    .bind(next)
                    .bind(error)
                    .bind(now.timestamp_millis());
                let changed = batch
                    .execute(sql::RECORD_ATTEMPT, params)
                    .map_err(|e| sqlite_backend("recording a delivery attempt", e))?;
                if changed == 0 {
                    let exists = batch
                        .integer(sql::DELIVERY_EXISTS, Params::new().bind(id.as_str()))
                        .map_err(|e| sqlite_backend("reading a delivery", e))?;
                    if exists.unwrap_or(0) == 0 {
                        return Err(StoreError::NotFound);
                    }
                    // Delivered or failed meanwhile (a lease that ran out): that outcome stands.
                    tracing::debug!(
                        "store: attempt on a delivery that is no longer pending ignored"
                    );
                }
                Ok(())
            })
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn list_deliveries(
        &self,
        state: Option<DeliveryState>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT ");
        q.push(sql::DELIVERY_COLUMNS)
            .push(" FROM deliveries WHERE 1 = 1");
        if let Some(state) = state {
            q.push(" AND state = ").push_bind(state.as_str());
        }
        if let Some(after) = after {
            q.push(" AND id < ").push_bind(after);
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(sql::page_size(limit, sql::MAX_DELIVERY_PAGE));
        let rows = q
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend("listing deliveries", e))?;
        read_deliveries(&rows)
    }

    #[tracing::instrument(skip_all)]
    async fn retry_delivery(&self, id: &str, now: Timestamp) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.writer
            .write(move |batch| {
                let changed = batch
                    .execute(
                        sql::RETRY_DELIVERY,
                        Params::new().bind(id).bind(now.timestamp_millis()),
                    )
                    .map_err(|e| sqlite_backend("retrying a delivery", e))?;
                Ok(changed > 0)
            })
            .await
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    // No span field names a login's state or a session's key: both are secrets.

    #[tracing::instrument(skip_all)]
    async fn insert_login(&self, login: &LoginTransaction) -> Result<(), StoreError> {
        let row = LoginRow::encode(login);
        self.writer
            .write(move |batch| {
                match batch.execute(sql::INSERT_LOGIN, bind_login!(Params::new(), &row)) {
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
                    .query_row(
                        sql::TAKE_LOGIN,
                        Params::new().bind(state),
                        LoginRow::read_sqlite,
                    )
                    .map_err(|e| sqlite_backend("taking a login", e))?
                    .map(LoginRow::decode)
                    .transpose()
            })
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn insert_session(&self, session: &WebSession) -> Result<(), StoreError> {
        let row = SessionRow::encode(session)?;
        self.writer
            .write(move |batch| {
                match batch.execute(sql::INSERT_SESSION, bind_session!(Params::new(), &row)) {
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
        let row = sqlx::query(sql::SELECT_SESSION)
            .bind(id_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| backend("reading a session", e))?;
        row.map(|r| {
            SessionRow::read(&r)
                .map_err(|e| backend("reading a session", e))
                .and_then(SessionRow::decode)
        })
        .transpose()
    }

    #[tracing::instrument(skip_all)]
    async fn update_session(&self, session: &WebSession) -> Result<(), StoreError> {
        let row = SessionRow::encode(session)?;
        self.writer
            .write(move |batch| {
                let changed = batch
                    .execute(
                        sql::UPDATE_SESSION,
                        bind_session_update!(Params::new(), &row),
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
                    .execute(sql::DELETE_SESSION, Params::new().bind(id_hash))
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
                let params = binds
                    .iter()
                    .fold(Params::new(), |q, value| q.bind(value.as_str()));
                let deleted = batch
                    .execute(statement, params)
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
                    .execute(
                        sql::PURGE_LOGINS,
                        Params::new().bind(logins_before.timestamp_millis()),
                    )
                    .map_err(|e| sqlite_backend("purging logins", e))?;
                let sessions = batch
                    .execute(
                        sql::PURGE_SESSIONS,
                        Params::new().bind(sessions_idle_before.timestamp_millis()),
                    )
                    .map_err(|e| sqlite_backend("purging sessions", e))?;
                Ok((logins + sessions) as u64)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use countersign_core::Principal;
    use countersign_core::ports::TransitionParts;
    use serde_json::json;

    use super::*;

    /// Two requests, one with decisions, written as any writer would leave them.
    async fn store_with_requests() -> (SqliteStore, Vec<RequestId>) {
        let store = SqliteStore::connect("sqlite::memory:").await.expect("open");
        store.migrate().await.expect("migrate");
        let mut alice = Principal::human("okta", "alice");
        alice.testing_mut().name = Some("Alice \"Al\" Ærø".into());
        alice.testing_mut().groups = vec!["dev".into(), "on-call".into()];
        for (k, v) in [
            ("team", json!("payments")),
            ("weights", json!([0.5, 1e-7, 12345678901234i64, -0.0])),
            ("nested", json!({"a": [null, true, {"b": "\u{1F600}\n"}]})),
        ] {
            alice.testing_mut().claims.insert(k.into(), v);
        }
        let mut params = BTreeMap::new();
        params.insert("service".to_string(), json!("api"));
        params.insert("ratio".to_string(), json!(0.30000000000000004));
        params.insert("big".to_string(), json!(u64::MAX));
        let digest = countersign_core::request::content_digest(
            "deploy",
            &params,
            Some("why"),
            None,
            900,
            &alice,
        );
        let bob = Principal::human("okta", "bob");
        let mut ids = Vec::new();
        for ms in [1_000, 2_000] {
            let id = RequestId::generate(countersign_core::time::from_millis(ms).expect("time"));
            sqlx::query(sql::INSERT_REQUEST)
                .bind(id.to_string())
                .bind("deploy")
                .bind(if ms == 1_000 { "pending" } else { "approved" })
                .bind((ms == 2_000).then_some("quorum"))
                .bind(3_i64)
                .bind(serde_json::to_string(&params).expect("json"))
                .bind("why")
                .bind(None::<String>)
                .bind(serde_json::to_string(&alice).expect("json"))
                .bind("okta")
                .bind("alice")
                .bind(900_i64)
                .bind(digest.to_string())
                .bind(ms)
                .bind(ms + 3_600_000)
                .bind((ms == 2_000).then_some(ms + 5))
                .bind(ms + 5)
                .execute(store.pool())
                .await
                .expect("insert request");
            ids.push(id);
        }
        for (who, verdict, comment) in [(&bob, "approve", Some("ok ✓")), (&alice, "reject", None)]
        {
            sqlx::query(sql::INSERT_DECISION)
                .bind(ids[1].to_string())
                .bind(&who.identity().issuer)
                .bind(&who.identity().subject)
                .bind(serde_json::to_string(&who.summary()).expect("json"))
                .bind(verdict)
                .bind(comment)
                .bind(digest.to_string())
                .bind(2_003_i64)
                .bind(r#"["sre","security"]"#)
                .execute(store.pool())
                .await
                .expect("insert decision");
        }
        (store, ids)
    }

    #[tokio::test]
    async fn a_page_read_as_json_decodes_like_its_rows() {
        let (store, ids) = store_with_requests().await;
        let mut newest = Vec::new();
        for order in [Order::OldestFirst, Order::NewestFirst] {
            let filter = RequestFilter {
                order,
                limit: 10,
                ..Default::default()
            };
            let by_rows = store.requests_by_rows(&filter).await.expect("rows");
            assert_eq!(by_rows.len(), 2);
            assert_eq!(by_rows[0].decisions.len() + by_rows[1].decisions.len(), 2);
            // The JSON page must decode by itself: falling back to rows would hide a slow path.
            let page = store.requests_page(&filter).await;
            assert_eq!(requests_in_page(page, order), Some(by_rows.clone()));
            assert_eq!(store.list_requests(&filter).await.expect("list"), by_rows);
            newest = by_rows;
        }
        let page = sqlx::query_scalar(sql::SQLITE_REQUEST_JSON)
            .bind(ids[1].to_string())
            .fetch_one(store.pool())
            .await;
        let one = requests_in_page(page, Order::OldestFirst).expect("read as JSON");
        assert_eq!(one, newest[..1].to_vec());
        let missing = RequestId::generate(countersign_core::time::from_millis(9).expect("time"));
        let page = sqlx::query_scalar(sql::SQLITE_REQUEST_JSON)
            .bind(missing.to_string())
            .fetch_one(store.pool())
            .await;
        assert_eq!(requests_in_page(page, Order::OldestFirst), Some(Vec::new()));
    }

    /// A listing takes a request from the cache only at the version the listing found, and
    /// otherwise reads like the one-statement page; it keeps pending requests only.
    #[tokio::test]
    async fn a_listing_uses_the_cache_only_at_the_version_listed() {
        let (mut store, ids) = store_with_requests().await;
        // Entries that cannot age out while the test runs (it writes nothing).
        store.cache = Arc::new(RequestCache::new(
            cache::CAPACITY,
            Duration::from_secs(3600),
        ));
        for order in [Order::OldestFirst, Order::NewestFirst] {
            let filter = RequestFilter {
                order,
                limit: 10,
                ..Default::default()
            };
            let by_rows = store.requests_by_rows(&filter).await.expect("rows");
            assert_eq!(store.requests_by_version(&filter).await, Some(by_rows));
        }
        let pending = store.cache.get(&ids[0]).expect("the pending one is kept");
        assert_eq!(pending.state, State::Pending);
        assert!(
            store.cache.get(&ids[1]).is_none(),
            "the approved one is not"
        );
        let filter = RequestFilter {
            state: Some(State::Pending),
            limit: 10,
            ..Default::default()
        };
        let mut doctored = Request::clone(&pending);
        doctored.reason = Some("from the cache".into());
        store.cache.forget(&[ids[0]]);
        store
            .cache
            .keep(store.cache.epoch(), &Arc::new(doctored.clone()));
        let listed = store.list_requests(&filter).await.expect("list");
        assert_eq!(listed[0], doctored);
        doctored.version += 1;
        store.cache.forget(&[ids[0]]);
        store.cache.keep(store.cache.epoch(), &Arc::new(doctored));
        let listed = store.list_requests(&filter).await.expect("list");
        assert_eq!(listed[0], *pending);
    }

    /// Another process's change to a request: a listing shows it at once (it checks
    /// versions), a read by id within the cache's `MAX_AGE`.
    #[tokio::test]
    async fn a_change_by_another_process_shows() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let here = SqliteStore::connect(&url).await.expect("open");
        here.migrate().await.expect("migrate");
        let there = SqliteStore::connect(&url).await.expect("open again");
        let request = cache::tests::request(1);
        here.insert_request(&request, &[], &[])
            .await
            .expect("insert");
        assert_eq!(
            here.get_request(&request.id).await.expect("read"),
            Some(Arc::new(request.clone()))
        );
        there
            .apply(&Transition::from_parts(TransitionParts {
                request_id: request.id,
                expected_version: 1,
                state: State::Cancelled,
                approval: None,
                decided_at: None,
                at: request.created_at,
                decision: None,
                events: Vec::new(),
                outbox: Vec::new(),
            }))
            .await
            .expect("apply there");
        let listed = here
            .list_requests(&RequestFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(listed[0].state, State::Cancelled);
        tokio::time::sleep(cache::MAX_AGE + Duration::from_millis(50)).await;
        let read = here
            .get_request(&request.id)
            .await
            .expect("read")
            .expect("found");
        assert_eq!((read.state, read.version), (State::Cancelled, 2));
    }

    /// What the writer keeps in the cache after a write is exactly what reading the request
    /// back from the database gives, for a new request, a decision and a change of state.
    #[tokio::test]
    async fn what_a_write_leaves_in_the_cache_is_what_the_database_holds() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let store = SqliteStore::connect(&url).await.expect("open");
        store.migrate().await.expect("migrate");
        let at = |ms: i64| countersign_core::time::from_millis(ms).expect("time");
        let mut request = cache::tests::request(1);
        request.requester.testing_mut().name = Some("Alice \"Al\" Ærø".into());
        request.requester.testing_mut().claims.insert(
            "weights".into(),
            json!([0.5, 1e-7, 12345678901234i64, -0.0, {"b": "\u{1F600}\n"}]),
        );
        request
            .params
            .insert("ratio".into(), json!(0.30000000000000004));
        request.params.insert("big".into(), json!(u64::MAX));
        request.reason = Some("why ✓".into());
        let id = request.id;
        // Read back by a store of its own, with an empty cache.
        let read_back = || async {
            let fresh = SqliteStore::connect(&url).await.expect("open");
            fresh.get_request(&id).await.expect("read").expect("found")
        };
        store
            .insert_request(&request, &[], &[])
            .await
            .expect("insert");
        assert_eq!(store.cache.get(&id), Some(read_back().await));

        let mut bob = Principal::human("okta", "bob");
        bob.testing_mut().groups = vec!["sre".into()];
        let decide = TransitionParts {
            request_id: id,
            expected_version: request.version,
            state: State::Approved,
            approval: Some(countersign_core::request::ApprovalPath::Quorum),
            decided_at: Some(at(7_000)),
            at: at(7_000),
            decision: Some(Decision {
                approver: bob.summary(),
                verdict: countersign_core::request::Verdict::Approve,
                comment: Some("ok ✓".into()),
                digest: request.digest.clone(),
                at: at(7_000),
                eligible_rules: vec!["sre".into()],
            }),
            events: Vec::new(),
            outbox: Vec::new(),
        };
        store
            .apply(&Transition::from_parts(decide.clone()))
            .await
            .expect("decide");
        let decided = store.cache.get(&id).expect("kept");
        assert_eq!(decided.version, request.version + 1);
        assert_eq!(decided, read_back().await);

        let cancel = TransitionParts {
            expected_version: decided.version,
            state: State::Cancelled,
            approval: None,
            decision: None,
            at: at(8_000),
            ..decide
        };
        store
            .apply(&Transition::from_parts(cancel.clone()))
            .await
            .expect("cancel");
        assert_eq!(store.cache.get(&id), Some(read_back().await));

        // A change the writer cannot derive (the request was not cached at the version it
        // changes) leaves the cache without it.
        store.cache.forget(&[id]);
        let expire = TransitionParts {
            expected_version: decided.version + 1,
            state: State::Expired,
            at: at(9_000),
            ..cancel
        };
        store
            .apply(&Transition::from_parts(expire))
            .await
            .expect("expire");
        assert_eq!(store.cache.get(&id), None);
        assert_eq!(
            store.get_request(&id).await.expect("read").map(|r| r.state),
            Some(State::Expired)
        );
    }

    /// A change whose caller hangs up before the writer answers still reaches the request
    /// cache: the writer, not the caller, has the cache forget what a batch touched.
    #[tokio::test]
    async fn a_change_whose_caller_went_away_is_read_back() {
        let (store, ids) = store_with_requests().await;
        let id = ids[0];
        let before = store.get_request(&id).await.expect("read").expect("found");
        assert_eq!(
            store.cache.get(&id).map(|r| r.version),
            Some(before.version)
        );
        // Hold the writer so the change below queues behind this job.
        let held = store.writer.clone();
        let holder = tokio::spawn(async move {
            held.write(|_batch| {
                std::thread::sleep(Duration::from_millis(200));
                Ok(())
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let transition = Transition::from_parts(TransitionParts {
            request_id: id,
            expected_version: before.version,
            state: State::Cancelled,
            approval: None,
            decided_at: None,
            at: countersign_core::time::from_millis(5_000).expect("time"),
            decision: None,
            events: Vec::new(),
            outbox: Vec::new(),
        });
        let changer = store.clone();
        let caller = tokio::spawn(async move { changer.apply(&transition).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        caller.abort();
        holder.await.expect("holder").expect("held");
        // The next batch runs after the change's, so once it is answered the change is in.
        store.writer.write(|_| Ok(())).await.expect("flush");
        let after = store.get_request(&id).await.expect("read").expect("found");
        assert_eq!(after.state, State::Cancelled);
        assert_eq!(after.version, before.version + 1);
    }

    /// A write's events go in as few statements as fit: more than one statement's worth still
    /// lands whole, in order, chained without a gap.
    #[tokio::test]
    async fn many_events_of_one_write_are_chained_across_statements() {
        let store = SqliteStore::connect("sqlite::memory:").await.expect("open");
        store.migrate().await.expect("migrate");
        let n = 2 * sql::SQLITE_EVENTS_PER_INSERT + 1;
        let events: Vec<NewAuditEvent> = (0..n)
            .map(|i| NewAuditEvent {
                at: countersign_core::time::from_millis(1_000).expect("time"),
                actor: audit::Actor::system(),
                action: audit::AuditAction::KeyCreated,
                request_id: None,
                digest: None,
                detail: json!({ "i": i }),
            })
            .collect();
        store.append_audit(&events[..1]).await.expect("one");
        store.append_audit(&events).await.expect("many");
        assert_eq!(crate::verify_audit(&store).await, Ok(n as u64 + 1));
        let last: (i64, String) =
            sqlx::query_as("SELECT seq, detail FROM audit_events ORDER BY seq DESC LIMIT 1")
                .fetch_one(store.pool())
                .await
                .expect("last");
        assert_eq!(
            last,
            (
                i64::try_from(n + 1).expect("n"),
                format!("{{\"i\":{}}}", n - 1)
            )
        );
    }
}
