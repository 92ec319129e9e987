//! The one place this crate reads the wall clock.
//!
//! Everything below the HTTP handlers takes `now` as a parameter, so expiry logic stays testable.

/// Seconds since the Unix epoch.
// The workspace forbids clock reads so that the core gets time through its `Clock` port. This dev
// provider is an adapter at the edge, not the core: it reads the clock, and only here.
#[expect(
    clippy::disallowed_methods,
    reason = "the development provider stamps its tokens with the real time"
)]
pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
