//! The SQLite store: the embedded default, one file in WAL mode, driven by rusqlite alone.
//!
//! SQLite allows one writer at a time. Every write of this process goes through one writer
//! thread ([`writer`]), on a connection of its own, that runs concurrent writes in one
//! `BEGIN IMMEDIATE` transaction, each in its own savepoint (or none, when all its refusals
//! come from its first change: creating a request, a change, a grant), and commits them with
//! one flush of the disk (group commit); callers are answered only after that commit.
//! `BEGIN IMMEDIATE` takes the write lock up front (waiting up to the busy timeout for another
//! process holding it) instead of failing with `SQLITE_BUSY` half-way through. Reads run on a
//! few reader threads ([`readers`]), each with a `query_only` connection; in WAL mode they
//! never block and are never blocked, and each statement reads one snapshot.
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
//!
//! The ports live one to a file: [`requests`], [`audit`], [`grants`] (grants and signing
//! keys), [`outbox`] and [`sessions`]; the schema is applied by [`migrate`].

mod audit;
mod grants;
mod migrate;
mod notices;
mod outbox;
mod readers;
mod requests;
mod sessions;
pub(crate) mod writer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use countersign_core::audit::{AuditEvent, ChainLink, NewAuditEvent};
use countersign_core::grant::{GrantRecord, OutboxMessage};
use countersign_core::notice::NoticeMessage;
use countersign_core::ports::{AuditQuery, RequestFilter, Store, Transition};
use countersign_core::request::Request;
use countersign_core::{RequestId, StoreError, Timestamp};
use rusqlite::{Connection, OpenFlags};

use crate::cache::{self, RequestCache};
use crate::error::sqlite_backend;
use readers::Readers;
use writer::Writer;

/// How long a connection waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Reader threads for a database file: enough for concurrent readers.
const FILE_READERS: usize = 8;

/// Names each in-memory database of this process apart.
static MEMORY_DATABASES: AtomicU64 = AtomicU64::new(0);

/// Where a SQLite database lives, as its URL says.
#[derive(Debug, Clone)]
struct Location {
    /// What SQLite opens: a path, or a `file:` URI.
    filename: String,
    /// A private in-memory database, shared by this store's connections only.
    in_memory: bool,
}

impl Location {
    /// `sqlite://path/to/file.db`, `sqlite:file.db` (either may end in `?` and SQLite's own
    /// URI parameters, such as `mode=ro`) or `sqlite::memory:`.
    fn parse(url: &str) -> Result<Self, StoreError> {
        let invalid = || {
            StoreError::backend(
                "invalid sqlite database url (expected sqlite://path or sqlite::memory:)",
            )
        };
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(invalid)?;
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        let in_memory = path == ":memory:"
            || query.is_some_and(|q| q.split('&').any(|pair| pair == "mode=memory"));
        if in_memory {
            // Named, so that every connection of this store opens the same database (through
            // SQLite's shared cache), and numbered, so that no other store does.
            let n = MEMORY_DATABASES.fetch_add(1, Ordering::Relaxed);
            return Ok(Self {
                filename: format!(
                    "file:countersign-memory-{}-{n}?mode=memory&cache=shared",
                    std::process::id()
                ),
                in_memory,
            });
        }
        if path.is_empty() {
            return Err(invalid());
        }
        let filename = match query {
            None => path.to_owned(),
            Some(query) => {
                let mut uri = String::from("file:");
                for c in path.chars() {
                    match c {
                        '%' | '?' | '#' => uri.push_str(&format!("%{:02X}", u32::from(c))),
                        c => uri.push(c),
                    }
                }
                format!("{uri}?{query}")
            }
        };
        Ok(Self {
            filename,
            in_memory,
        })
    }

    /// Opens a connection with the settings every connection of the store has.
    fn open(&self, flags: OpenFlags) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.filename,
            flags | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;")?;
        Ok(conn)
    }

    /// The writer's connection, opened first: it creates the file if missing and puts it in
    /// WAL mode (which the file keeps); every commit waits for the disk.
    fn open_writer(&self) -> Result<Connection, StoreError> {
        let open = || -> rusqlite::Result<Connection> {
            let conn =
                self.open(OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE)?;
            if !self.in_memory {
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))?;
            }
            conn.pragma_update(None, "synchronous", "FULL")?;
            Ok(conn)
        };
        open().map_err(|e| sqlite_backend("opening the sqlite database", e))
    }

    /// A reader's connection: it may read, never write.
    fn open_reader(&self) -> Result<Connection, StoreError> {
        let open = || -> rusqlite::Result<Connection> {
            let conn = self.open(OpenFlags::SQLITE_OPEN_READ_WRITE)?;
            conn.pragma_update(None, "query_only", "ON")?;
            Ok(conn)
        };
        open().map_err(|e| sqlite_backend("opening the sqlite database for reading", e))
    }
}

/// Requests, decisions and the audit chain in a SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    location: Arc<Location>,
    /// Runs this process's writes, committing concurrent ones together (see the module docs).
    writer: Writer,
    /// Runs this process's reads.
    readers: Readers,
    /// Requests read whole, until the writer changes them.
    cache: Arc<RequestCache>,
    /// The writer and reader threads, for [`SqliteStore::close`] to wait for.
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl SqliteStore {
    /// Opens (creating it if missing) the database at `url`: `sqlite://path/to/file.db`,
    /// `sqlite:file.db` or `sqlite::memory:`. Does not migrate: call [`SqliteStore::migrate`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let location = Arc::new(Location::parse(url)?);
        let opening = Arc::clone(&location);
        // Opening touches the disk: not on the runtime's threads.
        let (writer, readers) = tokio::task::spawn_blocking(move || {
            let writer = opening.open_writer()?;
            // An in-memory database lives as long as its connections; the writer's lives as
            // long as the store. One reader is all its shared cache would let run at once.
            let count = if opening.in_memory { 1 } else { FILE_READERS };
            let readers = (0..count)
                .map(|_| opening.open_reader())
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, StoreError>((writer, readers))
        })
        .await
        .map_err(|e| StoreError::backend_caused_by("opening the sqlite database", e))??;
        let cache = Arc::new(RequestCache::new(cache::CAPACITY, cache::MAX_AGE));
        let mut threads = Vec::new();
        let writer = Writer::start(writer, cache.clone(), &mut threads)?;
        let readers = Readers::start(readers, &mut threads)?;
        Ok(Self {
            location,
            writer,
            readers,
            cache,
            threads: Arc::new(Mutex::new(threads)),
        })
    }

    /// Closes the database: once this store and every clone of it are dropped, and the
    /// writes queued are committed, waits for the connections to be closed (so that another
    /// program may then open the file alone).
    pub async fn close(self) {
        let threads = std::mem::take(
            &mut *self
                .threads
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        drop(self);
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }

    /// Applies the embedded migrations that are not applied yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let location = Arc::clone(&self.location);
        tokio::task::spawn_blocking(move || {
            let conn = location.open_writer()?;
            migrate::run(&conn, crate::migrations::SQLITE)
        })
        .await
        .map_err(|e| StoreError::backend_caused_by("migrating the sqlite database", e))?
    }
}

#[async_trait]
impl Store for SqliteStore {
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

    #[tracing::instrument(skip_all, fields(request_id = ?query.request_id))]
    async fn audit_links(&self, query: &AuditQuery) -> Result<Vec<ChainLink>, StoreError> {
        audit::links(self, query).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.readers
            .read(|conn| {
                conn.prepare_cached("SELECT 1")
                    .and_then(|mut statement| statement.query_row([], |_| Ok(())))
                    .map_err(|e| sqlite_backend("pinging the database", e))
            })
            .await
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

#[cfg(test)]
mod tests;
