//! Applying the SQLite schema ([`crate::migrations::SQLITE`]).
//!
//! Applied migrations are recorded in `_sqlx_migrations`, the table (and the SHA-384
//! checksums) that earlier versions, which migrated SQLite through sqlx, recorded them in, so a
//! database they created carries on from where it is.

use countersign_core::StoreError;
use rusqlite::{Connection, OptionalExtension as _, Transaction, TransactionBehavior};
use sha2::{Digest as _, Sha384};

use crate::error::sqlite_backend;
use crate::migrations::Migration;

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    success BOOLEAN NOT NULL,
    checksum BLOB NOT NULL,
    execution_time BIGINT NOT NULL
)";

/// Applies, in order, each of `migrations` that `conn`'s database has not applied yet, each in
/// a transaction of its own. Refuses to go on when a migration was left half-applied, when one
/// applied differs from ours, or when the database has one we do not know (a newer version
/// wrote it).
pub(super) fn run(conn: &Connection, migrations: &[Migration]) -> Result<(), StoreError> {
    let failed = |e| sqlite_backend("migrating the sqlite database", e);
    conn.execute_batch(CREATE_TABLE).map_err(failed)?;
    for migration in migrations {
        // The write lock from the check to the commit: of two processes migrating at once,
        // the second finds the migration applied.
        let tx =
            Transaction::new_unchecked(conn, TransactionBehavior::Immediate).map_err(failed)?;
        check_applied(&tx, migrations)?;
        let checksum = Sha384::digest(migration.sql.as_bytes()).to_vec();
        let applied: Option<Vec<u8>> = tx
            .query_row(
                "SELECT checksum FROM _sqlx_migrations WHERE version = ?1",
                [migration.version],
                |row| row.get(0),
            )
            .optional()
            .map_err(failed)?;
        match applied {
            Some(applied) if applied == checksum => continue,
            Some(_) => {
                return Err(StoreError::backend(format!(
                    "migrating the sqlite database: applied migration {} differs from this \
                     version's",
                    migration.version
                )));
            }
            None => {}
        }
        tx.execute_batch(migration.sql).map_err(|e| {
            sqlite_backend(
                &format!(
                    "migrating the sqlite database (migration {})",
                    migration.version
                ),
                e,
            )
        })?;
        tx.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
                 execution_time) VALUES (?1, ?2, TRUE, ?3, -1)",
            (migration.version, migration.description, checksum),
        )
        .map_err(failed)?;
        tx.commit().map_err(failed)?;
    }
    Ok(())
}

/// Refuses a database with a migration left unfinished or one that `migrations` lacks.
fn check_applied(conn: &Connection, migrations: &[Migration]) -> Result<(), StoreError> {
    let failed = |e| sqlite_backend("migrating the sqlite database", e);
    let mut statement = conn
        .prepare("SELECT version, success FROM _sqlx_migrations ORDER BY version")
        .map_err(failed)?;
    let applied = statement
        .query_map([], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, bool>(1)?))
        })
        .map_err(failed)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(failed)?;
    for (version, success) in applied {
        if !success {
            return Err(StoreError::backend(format!(
                "migrating the sqlite database: migration {version} was left unfinished"
            )));
        }
        if !migrations.iter().any(|m| m.version == version) {
            return Err(StoreError::backend(format!(
                "migrating the sqlite database: migration {version} was applied but is \
                 unknown to this version"
            )));
        }
    }
    Ok(())
}
