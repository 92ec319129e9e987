//! The time, read through the server's one real clock (the workspace bans other clock reads).

use countersign_core::{Clock as _, Timestamp};

/// Now.
pub fn now() -> Timestamp {
    countersign_server::SystemClock.now()
}

/// Now, in seconds since the epoch.
pub fn now_secs() -> i64 {
    now().timestamp()
}
