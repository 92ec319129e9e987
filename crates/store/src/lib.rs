//! Storage for countersign: SQLite and PostgreSQL implementations of the core's [`Store`],
//! [`KeyStore`], [`OutboxStore`] and [`SessionStore`] ports, with their schemas embedded and
//! applied at start.
//!
//! Both backends keep the same rows (timestamps as Unix milliseconds, JSON as text) and follow
//! the same rules: a change to a request is a compare-and-set on `(id, version)`, and the audit
//! events that record it are chained and written in the same transaction, so there is never a
//! change without its event nor an event without its change. Webhook messages go to the outbox
//! (`deliveries`) in that same transaction, and grants are recorded only while their request is
//! still approved at the version they were computed from. Browser logins in flight are taken
//! (read and deleted) by one `DELETE … RETURNING`, so a login's `state` is accepted at most
//! once; web sessions are kept by the SHA-256 of their cookie, never the cookie itself. One
//! conformance suite (`tests/conformance/`) runs against both.
//!
//! Each backend speaks one driver: SQLite rusqlite ([`SqliteStore`]: one writer thread that
//! commits concurrent writes together, reader threads, a request cache), PostgreSQL sqlx
//! ([`PostgresStore`]). What they share knows no driver: the SQL text (`sql`), the rows and
//! their conversion to the domain types (`codec`, one file per port), and the list of
//! migrations (`migrations`).
//!
//! Start with [`open_stores`] (all four ports over one database) or [`open`] (requests
//! and the audit chain only); both pick the backend from the URL and migrate.

mod cache;
mod codec;
mod error;
mod migrations;
mod postgres;
mod sql;
mod sqlite;

use std::sync::Arc;

use futures_util::StreamExt as _;

use countersign_core::audit::ChainVerifier;
use countersign_core::ports::AuditQuery;

pub use countersign_core::ports::NoticeStore;
pub use countersign_core::ports::{LoginTransaction, WebSession};
pub use countersign_core::{ChainBreak, KeyStore, OutboxStore, SessionStore, Store, StoreError};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// How many events [`verify_audit`] reads at a time.
const VERIFY_PAGE: u32 = 5000;

/// The four storage ports over one database and one set of connections (for SQLite, one
/// writer and its readers), as [`open_stores`] returns them.
#[derive(Clone, Debug)]
pub struct Stores {
    /// Requests, decisions, grants and the audit chain.
    pub store: Arc<dyn Store>,
    /// Signing keys.
    pub keys: Arc<dyn KeyStore>,
    /// The webhook outbox.
    pub outbox: Arc<dyn OutboxStore>,
    /// Browser logins in flight and signed-in web sessions.
    pub sessions: Arc<dyn SessionStore>,
    /// The notification outbox and the directory of people.
    pub notices: Arc<dyn NoticeStore>,
}

impl Stores {
    /// The four ports of one backend value.
    fn of<S: Store + KeyStore + OutboxStore + SessionStore + NoticeStore + 'static>(
        backend: S,
    ) -> Self {
        let backend = Arc::new(backend);
        Self {
            store: backend.clone(),
            keys: backend.clone(),
            outbox: backend.clone(),
            notices: backend.clone(),
            sessions: backend,
        }
    }
}

/// Opens the database at `database_url`, brings its schema up to date, and returns the four
/// storage ports sharing its connections.
///
/// - `sqlite://path/to/file.db` or `sqlite:file.db`: a SQLite file, created if missing;
/// - `sqlite::memory:`: a private in-memory database (tests, demos);
/// - `postgres://…` or `postgresql://…`: a PostgreSQL database.
pub async fn open_stores(database_url: &str) -> Result<Stores, StoreError> {
    if database_url.starts_with("sqlite:") {
        let store = SqliteStore::connect(database_url).await?;
        store.migrate().await?;
        Ok(Stores::of(store))
    } else if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        let store = PostgresStore::connect(database_url).await?;
        store.migrate().await?;
        Ok(Stores::of(store))
    } else {
        // The URL itself is not repeated: it may carry a password.
        Err(StoreError::backend(
            "unsupported database url (expected sqlite://…, sqlite::memory: or postgres://…)",
        ))
    }
}

/// Opens the database at `database_url` and brings its schema up to date, like
/// [`open_stores`], returning only the [`Store`] port.
pub async fn open(database_url: &str) -> Result<Arc<dyn Store>, StoreError> {
    open_stores(database_url).await.map(|stores| stores.store)
}

/// After the last readable event: the head the store recorded must be that event, else the
/// newest events were deleted (or the head was tampered with).
async fn check_head(store: &dyn Store, verifier: &ChainVerifier) -> Result<u64, ChainBreak> {
    let next = i64::try_from(verifier.verified())
        .unwrap_or(i64::MAX)
        .saturating_add(1);
    let (seq, hash) = store.audit_head().await.map_err(|e| ChainBreak {
        seq: next,
        reason: format!("the chain head cannot be read: {e}"),
    })?;
    if seq + 1 != next || hash != verifier.head_hash() {
        return Err(ChainBreak {
            seq: next,
            reason: format!(
                "events after seq {} are missing (the recorded chain head is seq {seq})",
                next - 1
            ),
        });
    }
    Ok(verifier.verified())
}

/// Recomputes the whole audit chain from seq 1, [`VERIFY_PAGE`] events at a time, and returns
/// how many events verified, or the first event that does not.
///
/// An event that cannot even be read back (a column edited into something unparseable) is
/// reported as a break at its sequence number; a database that cannot be read at all is
/// reported as a break at the first sequence number not yet verified. Events deleted from the
/// end are caught by comparing the last event with the chain head the store keeps apart.
///
/// Pages are read ahead: while one page is hashed, the next is already being read, on the
/// guess that the chain has no gaps (a full page after seq `n` ends at `n + page`). Where the
/// guess is wrong (at the end of the chain, or at a gap, which fails verification anyway),
/// the read-ahead is dropped and reading starts again after the last event checked.
pub async fn verify_audit(store: &dyn Store) -> Result<u64, ChainBreak> {
    verify_audit_in_pages(store, VERIFY_PAGE).await
}

/// [`verify_audit`], reading `page` events at a time (at least 1): smaller pages hold less
/// in memory at once.
pub async fn verify_audit_in_pages(store: &dyn Store, page: u32) -> Result<u64, ChainBreak> {
    let page = page.max(1);
    let page_of = |after_seq: i64, limit: u32| AuditQuery {
        request_id: None,
        after_seq,
        limit,
    };
    let mut verifier = ChainVerifier::new();
    let mut after_seq = 0_i64;
    loop {
        let start = after_seq;
        let step = i64::from(page);
        let mut pages = futures_util::stream::iter(0_i64..)
            .map(|k| {
                let query = page_of(start + k * step, page);
                async move { (query.after_seq, store.audit_links(&query).await) }
            })
            .buffered(2);
        let mut unreadable = false;
        let mut end = false;
        while let Some((from, links)) = pages.next().await {
            let Ok(links) = links else {
                unreadable = true;
                break;
            };
            let Some(last) = links.last() else {
                end = true;
                break;
            };
            for link in &links {
                verifier.push_link(link)?;
            }
            after_seq = last.seq;
            if after_seq != from + step {
                // Not the page guessed: the next one read ahead starts in the wrong place.
                break;
            }
        }
        // The read-ahead may hold a connection (an in-memory database has only one).
        drop(pages);
        if end {
            return check_head(store, &verifier).await;
        }
        if unreadable {
            // The page could not be read as a whole: step through it one event at a time to
            // name the first one that cannot.
            match store.audit_links(&page_of(after_seq, 1)).await {
                Ok(links) => match links.first() {
                    Some(link) => {
                        verifier.push_link(link)?;
                        after_seq = link.seq;
                    }
                    None => return check_head(store, &verifier).await,
                },
                Err(e) => {
                    return Err(ChainBreak {
                        seq: after_seq + 1,
                        reason: format!("the event after seq {after_seq} cannot be read: {e}"),
                    });
                }
            }
        }
    }
}
