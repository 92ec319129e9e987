//! The storage conformance suite: every case is written once, in the file of its port
//! (`requests`, `listing`, `audit`, `grants`, `outbox`, `notices`, `sessions`, `schema`), and
//! run against SQLite (a temporary file) and PostgreSQL (a fresh database per test, from the
//! testkit's throwaway cluster). A backend is conformant when every case passes on it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use countersign_core::ports::NoticeStore;
use countersign_core::{KeyStore, OutboxStore, SessionStore, Store};
use countersign_store::{PostgresStore, SqliteStore};

/// One backend under test: the five ports (one store value), plus direct SQL access for the
/// tamper cases.
struct Db {
    store: Arc<dyn Store>,
    keys: Arc<dyn KeyStore>,
    outbox: Arc<dyn OutboxStore>,
    notices: Arc<dyn NoticeStore>,
    sessions: Arc<dyn SessionStore>,
    raw: Raw,
    url: String,
    /// Keeps the SQLite file's directory alive for the length of the test.
    _dir: Option<tempfile::TempDir>,
}

enum Raw {
    /// The SQLite file, opened anew for each statement.
    Sqlite(PathBuf),
    Postgres(sqlx::PgPool),
}

/// A connection of the test's own to the SQLite file at `path`.
fn sqlite_raw(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("open the sqlite file");
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .expect("busy timeout");
    conn
}

impl Db {
    /// Runs SQL straight against the database, behind the store's back.
    async fn exec(&self, sql: &str) {
        match &self.raw {
            Raw::Sqlite(path) => sqlite_raw(path)
                .execute_batch(sql)
                .expect("tamper sql runs"),
            Raw::Postgres(pool) => sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                .execute(pool)
                .await
                .map(drop)
                .expect("tamper sql runs"),
        }
    }

    /// One text column of one row, read behind the store's back.
    async fn text(&self, sql: &str) -> String {
        match &self.raw {
            Raw::Sqlite(path) => sqlite_raw(path)
                .query_row(sql, [], |row| row.get(0))
                .expect("raw read"),
            Raw::Postgres(pool) => sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
                .fetch_one(pool)
                .await
                .expect("raw read"),
        }
    }
}

async fn sqlite() -> Db {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("countersign.db");
    let url = format!("sqlite://{}", path.display());
    let store = SqliteStore::connect(&url).await.expect("open sqlite");
    store.migrate().await.expect("migrate sqlite");
    let raw = Raw::Sqlite(path);
    let store = Arc::new(store);
    Db {
        raw,
        store: store.clone(),
        keys: store.clone(),
        outbox: store.clone(),
        notices: store.clone(),
        sessions: store,
        url,
        _dir: Some(dir),
    }
}

async fn postgres() -> Db {
    let url = countersign_testkit::TestPostgres::shared()
        .await
        .expect("start the test postgresql cluster")
        .fresh_database()
        .await
        .expect("create a fresh database");
    let store = PostgresStore::connect(&url)
        .await
        .expect("connect postgres");
    store.migrate().await.expect("migrate postgres");
    let raw = Raw::Postgres(store.pool().clone());
    let store = Arc::new(store);
    Db {
        raw,
        store: store.clone(),
        keys: store.clone(),
        outbox: store.clone(),
        notices: store.clone(),
        sessions: store,
        url,
        _dir: None,
    }
}

/// Runs every listed case on both backends, as `sqlite::<case>` and `postgres::<case>`.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::cases::$case(super::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::cases::$case(super::postgres().await).await;
                }
            )*
        }
    };
}

conformance!(
    round_trip_keeps_every_field,
    insert_of_an_existing_id_is_a_duplicate,
    cas_bumps_version_and_chains_events,
    stale_cas_conflicts_and_changes_nothing,
    unknown_request_is_not_found,
    unreadable_stored_request_is_named,
    revocation_keeps_approval_and_decision_time,
    duplicate_decision_is_refused_whole,
    fifty_concurrent_deciders_one_winner,
    concurrent_mixed_writers_keep_one_chain,
    list_filters,
    list_orders_and_pages_without_gaps,
    list_limit_is_capped,
    due_for_expiry_finds_overdue_pending,
    audit_events_by_request_and_cursor,
    empty_audit_verifies,
    tamper_edited_detail,
    tamper_deleted_event,
    tamper_swapped_events,
    tamper_inserted_copy,
    tamper_inserted_forgery,
    tamper_unreadable_event,
    detail_written_differently_still_verifies,
    verify_reads_ahead_page_by_page,
    tamper_found_across_pages,
    migrations_are_idempotent,
    outbox_rows_commit_with_their_change,
    grant_needs_the_request_approved_at_the_version,
    single_use_grant_is_issued_once,
    twenty_concurrent_single_use_redemptions_one_winner,
    grant_revocation_first_wins,
    signing_keys_add_list_and_retire,
    claim_respects_due_time_and_lease,
    record_attempt_transitions,
    list_deliveries_by_state_with_cursor,
    retry_delivery_only_for_failed,
    concurrent_claimers_never_share_a_row,
    notices_commit_with_their_change,
    claim_takes_a_thread_in_order_one_at_a_time,
    threads_and_requests_are_independent,
    a_future_reminder_holds_back_nothing_due_before_it,
    record_notice_outcomes,
    a_sent_message_supersedes_what_it_already_showed,
    defer_notice_counts_no_attempt,
    retry_notice_only_for_failed,
    list_notices_by_state_with_cursor,
    people_are_seen_and_listed_by_recency,
    concurrent_notice_claimers_never_share_a_row,
    chain_verifies_after_grants_keys_and_outbox,
    login_round_trip_and_single_use,
    ten_concurrent_login_takers_one_winner,
    session_round_trip_keeps_every_field,
    update_session_changes_all_but_the_start,
    delete_session_once,
    delete_sessions_by_subject,
    delete_sessions_by_sid,
    delete_sessions_by_subject_and_sid,
    delete_sessions_needs_subject_or_sid,
    purge_respects_both_cutoffs,
    tamper_session_identity_is_refused,
);

mod audit;
mod fixtures;
mod grants;
mod helpers;
mod listing;
mod notices;
mod outbox;
mod requests;
mod schema;
mod sessions;

/// Every case, for the macro to name.
mod cases {
    pub(crate) use super::audit::*;
    pub(crate) use super::grants::*;
    pub(crate) use super::listing::*;
    pub(crate) use super::notices::*;
    pub(crate) use super::outbox::*;
    pub(crate) use super::requests::*;
    pub(crate) use super::schema::*;
    pub(crate) use super::sessions::*;
}

#[tokio::test]
async fn open_picks_the_backend_from_the_url() {
    let store = countersign_store::open("sqlite::memory:")
        .await
        .expect("memory");
    store.ping().await.expect("ping");
    assert_eq!(countersign_store::verify_audit(store.as_ref()).await, Ok(0));

    let err = countersign_store::open("mysql://root:hunter2@localhost/db")
        .await
        .expect_err("unsupported");
    let text = err.to_string();
    assert!(text.contains("unsupported database url"), "{text}");
    assert!(!text.contains("hunter2"), "the url is not echoed: {text}");
    let err = countersign_store::open_stores("mysql://root:hunter2@localhost/db")
        .await
        .expect_err("unsupported");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

/// The five ports from `open_stores` share one pool: with a private in-memory database (one
/// database per pool), what one port writes the others see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_stores_shares_one_database() {
    use countersign_core::grant::DeliveryState;
    use countersign_core::notice::NoticeKind;
    use fixtures::*;

    let stores = countersign_store::open_stores("sqlite::memory:")
        .await
        .expect("memory");
    let req = request(0, "deploy-prod", &person("okta", "alice"));
    let messages = [message(0, &req, "request.created")];
    let notices = [notice(0, &req, "slack-sre", NoticeKind::Created)];
    stores
        .store
        .insert_request(&req, &created(&req), &messages, &notices)
        .await
        .expect("insert");
    let queued = stores
        .notices
        .list_notices(None, None, 10)
        .await
        .expect("list");
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].message, notices[0]);
    let listed = stores
        .outbox
        .list_deliveries(Some(DeliveryState::Pending), None, 10)
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].message, messages[0]);
    stores
        .keys
        .add_signing_key(&signing_key("key-1", 0), &[], &loose_events(1))
        .await
        .expect("key");
    assert_eq!(stores.keys.signing_keys().await.expect("keys").len(), 1);
    assert_eq!(
        countersign_store::verify_audit(stores.store.as_ref()).await,
        Ok(2)
    );
    let s = session("hash-1", &person("okta", "alice"), Some("sid-1"), 0);
    stores.sessions.insert_session(&s).await.expect("session");
    assert_eq!(
        stores.sessions.get_session("hash-1").await.expect("get"),
        Some(s)
    );
    stores
        .sessions
        .insert_login(&login("state-1", 0))
        .await
        .expect("login");
    assert!(
        stores
            .sessions
            .take_login("state-1")
            .await
            .expect("take")
            .is_some()
    );
}

/// Two stores on one SQLite file stand for two processes (a server and a CLI, say): they share
/// no in-process lock, so their writers meet at SQLite's own write lock, which `BEGIN
/// IMMEDIATE` and the busy timeout turn into waiting, not failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_writers_in_two_processes_share_one_chain() {
    use countersign_core::ports::AuditQuery;
    use fixtures::*;

    let db = sqlite().await;
    let other: Arc<dyn Store> = countersign_store::open(&db.url)
        .await
        .expect("second store");
    let mut tasks = Vec::new();
    for i in 0..20_i64 {
        let store = if i % 2 == 0 {
            db.store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            let req = request(i, "deploy-prod", &person("okta", "alice"));
            store.insert_request(&req, &created(&req), &[], &[]).await?;
            store.append_audit(&loose_events(2)).await
        }));
    }
    for task in tasks {
        task.await.expect("task").expect("writer");
    }
    let events = db
        .store
        .audit_events(&AuditQuery {
            request_id: None,
            after_seq: 0,
            limit: 0,
        })
        .await
        .expect("events");
    assert_eq!(events.len(), 60);
    assert_eq!(
        countersign_store::verify_audit(other.as_ref()).await,
        Ok(60)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_in_memory_keeps_its_data() {
    use fixtures::*;

    let store = countersign_store::open("sqlite::memory:")
        .await
        .expect("memory");
    let req = request(0, "deploy-prod", &person("okta", "alice"));
    store
        .insert_request(&req, &created(&req), &[], &[])
        .await
        .expect("insert");
    store
        .apply(&approve(&req, 1, &person("okta", "bob")))
        .await
        .expect("approve");
    let got = store
        .get_request(&req.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.version, 2);
    assert_eq!(countersign_store::verify_audit(store.as_ref()).await, Ok(3));
}
