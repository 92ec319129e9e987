//! Turning database errors into [`StoreError`]s whose text is safe to show: what failed and
//! why, never the SQL, the connection URL or a stored value.

use countersign_core::StoreError;
use countersign_core::grant::GrantRecord;

/// True when `e` is a unique or primary-key constraint refusing a write.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// A [`StoreError::Backend`] saying that `doing` failed and why, in general terms.
pub(crate) fn backend(doing: &str, e: sqlx::Error) -> StoreError {
    // The full error goes to the log for the operator; the message returned to callers (and,
    // from there, possibly to an HTTP client) stays generic.
    tracing::warn!(error = %e, "store: {doing} failed");
    let why = match &e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("the database refused it (code {code})"),
            None => "the database refused it".to_string(),
        },
        sqlx::Error::PoolTimedOut => "timed out waiting for a database connection".to_string(),
        sqlx::Error::PoolClosed => "the connection pool is closed".to_string(),
        sqlx::Error::Io(io) => format!("i/o error talking to the database ({})", io.kind()),
        sqlx::Error::Tls(_) => "tls error talking to the database".to_string(),
        sqlx::Error::Configuration(_) => "the database settings are invalid".to_string(),
        sqlx::Error::Protocol(_) => "the database sent something unexpected".to_string(),
        sqlx::Error::RowNotFound
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::TypeNotFound { .. } => {
            "a stored value has an unexpected shape (is the schema up to date?)".to_string()
        }
        sqlx::Error::Migrate(_) => "the schema migration failed".to_string(),
        _ => "database error".to_string(),
    };
    StoreError::backend_caused_by(format!("{doing}: {why}"), e)
}

/// True when `e`, from a SQLite connection, is a unique or primary-key
/// constraint refusing a write.
pub(crate) fn sqlite_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error().map(|e| e.extended_code),
        Some(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
    )
}

/// [`backend`] for an error of a SQLite connection.
pub(crate) fn sqlite_backend(doing: &str, e: rusqlite::Error) -> StoreError {
    tracing::warn!(error = %e, "store: {doing} failed");
    let why = match &e {
        rusqlite::Error::SqliteFailure(failure, _) => {
            format!("the database refused it (code {})", failure.extended_code)
        }
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnIndex(_)
        | rusqlite::Error::InvalidColumnName(_)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::Utf8Error(..) => {
            "a stored value has an unexpected shape (is the schema up to date?)".to_string()
        }
        _ => "database error".to_string(),
    };
    StoreError::backend_caused_by(format!("{doing}: {why}"), e)
}

/// What a failed write says, to repeat to the other writes of its batch: the failure's own
/// text, without the "storage failure" every backend error starts with.
pub(crate) fn failure_text(e: &StoreError) -> String {
    match e {
        StoreError::Backend(failure) => failure.what().to_owned(),
        other => other.to_string(),
    }
}

/// Why a grant insert was refused: a unique constraint is a [`StoreError::Duplicate`].
pub(crate) fn grant_refused(e: sqlx::Error, grant: &GrantRecord) -> StoreError {
    if !is_unique_violation(&e) {
        return backend("storing a grant", e);
    }
    let single_use = match &e {
        sqlx::Error::Database(db) => {
            db.constraint().is_some_and(|c| c.contains("single_use"))
                || db.message().contains("single_use_request")
        }
        _ => false,
    };
    duplicate_grant(single_use, grant)
}

/// [`grant_refused`] for an error of a SQLite connection.
pub(crate) fn sqlite_grant_refused(e: rusqlite::Error, grant: &GrantRecord) -> StoreError {
    if !sqlite_unique_violation(&e) {
        return sqlite_backend("storing a grant", e);
    }
    let single_use = e.to_string().contains("single_use_request");
    duplicate_grant(single_use, grant)
}

/// The refusal of a grant that would repeat another: the request's single-use grant, or a
/// grant id.
fn duplicate_grant(single_use: bool, grant: &GrantRecord) -> StoreError {
    StoreError::Duplicate(if single_use {
        format!(
            "request {} already has its single-use grant",
            grant.request_id
        )
    } else {
        format!("grant {} already exists", grant.jti)
    })
}

/// Why a change guarded by a request's state wrote nothing, given how many rows
/// [`crate::sql::REQUEST_EXISTS`] counted: the request is gone, or it moved on.
pub(crate) fn gone_or_moved(exists: i64) -> StoreError {
    if exists == 0 {
        StoreError::NotFound
    } else {
        StoreError::Conflict
    }
}
