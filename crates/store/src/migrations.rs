//! The schema's migrations: one list, applied in order, whose files each backend has in its
//! own dialect under `migrations/sqlite` and `migrations/postgres`.

/// One step of the schema.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    /// Its number; migrations apply in this order, each once.
    pub version: i64,
    /// What it does, as recorded in the database's list of applied migrations.
    pub description: &'static str,
    /// Its statements, in the backend's dialect.
    pub sql: &'static str,
}

/// The list, for the dialect whose directory under `migrations/` is `$dialect`. The
/// descriptions are those the databases already record (the file name without its number,
/// `_` read as a space).
macro_rules! migrations {
    ($dialect:literal) => {
        &[
            migration!($dialect, 1, "init", "0001_init.sql"),
            migration!(
                $dialect,
                2,
                "grants keys outbox",
                "0002_grants_keys_outbox.sql"
            ),
            migration!($dialect, 3, "sessions", "0003_sessions.sql"),
            migration!(
                $dialect,
                4,
                "requests state id",
                "0004_requests_state_id.sql"
            ),
            migration!($dialect, 5, "notifications", "0005_notifications.sql"),
        ]
    };
}

macro_rules! migration {
    ($dialect:literal, $version:literal, $description:literal, $file:literal) => {
        Migration {
            version: $version,
            description: $description,
            sql: include_str!(concat!("../migrations/", $dialect, "/", $file)),
        }
    };
}

/// The SQLite schema.
pub(crate) const SQLITE: &[Migration] = migrations!("sqlite");

/// The PostgreSQL schema.
pub(crate) const POSTGRES: &[Migration] = migrations!("postgres");
