//! The real clock: the one place in countersign that reads the system time.

use countersign_core::{Clock, Timestamp};

/// Reads the system clock, truncated to the milliseconds the domain keeps.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[expect(
        clippy::disallowed_methods,
        reason = "the one adapter that the ban on clock reads points to"
    )]
    fn now(&self) -> Timestamp {
        countersign_core::time::truncate(chrono::Utc::now())
    }
}
