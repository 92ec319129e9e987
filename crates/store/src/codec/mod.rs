//! Rows as both backends store them, and their conversion to and from the domain types, one
//! file per port.
//!
//! The two dialects share one row shape (TEXT, 64-bit integers, JSON as TEXT), so the
//! conversions live here once and know no driver; each backend reads its driver's rows into
//! these structs and binds their fields in the order its statements name them.

mod audit;
mod grants;
mod notices;
mod outbox;
mod requests;
mod sessions;

pub(crate) use audit::EventRow;
pub(crate) use grants::{GrantRow, KeyRow};
pub(crate) use notices::{BatchRow, NoticeRow, decode_person, encode_person, notice_columns};
pub(crate) use outbox::{DeliveryRow, attempt_columns, lease_end};
pub(crate) use requests::{DecisionRow, RequestRow, approval_name, group_decisions};
pub(crate) use sessions::{LoginRow, SessionRow};

use countersign_core::{Digest, StoreError, Timestamp};

fn to_json<T: serde::Serialize>(what: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::backend(format!("cannot encode the {what}: {e}")))
}

pub(crate) fn millis(t: &Timestamp) -> i64 {
    t.timestamp_millis()
}

/// Names a stored row in decode errors without quoting stored content. Rows whose key is a
/// secret (a login's `state`, a session's cookie hash) pass an empty `id` and are not named.
fn unreadable(what: &str, id: &str, problem: impl std::fmt::Display) -> StoreError {
    if id.is_empty() {
        StoreError::backend(format!("a stored {what} is unreadable: {problem}"))
    } else {
        StoreError::backend(format!("stored {what} {id} is unreadable: {problem}"))
    }
}

fn instant(what: &str, id: &str, column: &str, ms: i64) -> Result<Timestamp, StoreError> {
    countersign_core::time::from_millis(ms)
        .ok_or_else(|| unreadable(what, id, format!("{column} is out of range")))
}

fn optional_instant(
    what: &str,
    id: &str,
    column: &str,
    ms: Option<i64>,
) -> Result<Option<Timestamp>, StoreError> {
    ms.map(|ms| instant(what, id, column, ms)).transpose()
}

fn from_json<T: serde::de::DeserializeOwned>(
    what: &str,
    id: &str,
    column: &str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| unreadable(what, id, format!("{column}: {e}")))
}

fn digest(what: &str, id: &str, text: &str) -> Result<Digest, StoreError> {
    text.parse()
        .map_err(|_| unreadable(what, id, "digest is not a sha256 digest"))
}
