//! Outbox delivery for countersign: the worker that takes webhook messages the engine wrote to
//! the outbox (in the same transaction as the change they announce) and POSTs them to the
//! gate's configured URL, signed per the Standard Webhooks specification
//! (<https://www.standardwebhooks.com/>), retrying with exponential backoff until the receiver
//! answers 2xx or the attempts run out.
//!
//! Delivery is *at least once*: a receiver may see a message twice (a crash between the POST
//! and recording its outcome, or a lease that ran out), always with the same `webhook-id`, so
//! receivers deduplicate on it.
//!
//! - [`signature`]: the `webhook-signature` value.
//! - [`retry`]: the retry policy and the backoff schedule.
//! - [`client`]: the HTTP client (no redirects, bounded time).
//! - [`deliver`]: the [`Deliverer`] worker.
//! - [`notifier`]: the [`Notifier`] worker, for Slack, Teams, e-mail and notification webhooks.
//! - [`notice`]: what a notification says, before a channel renders it; [`compose`] builds it
//!   from the request.
//! - [`channels`]: rendering a notice for Slack, Teams, e-mail or a webhook, and sending it.

pub mod channels;
pub mod client;
pub mod compose;
pub mod deliver;
pub mod notice;
pub mod notifier;
pub mod retry;
pub mod signature;

pub use client::{USER_AGENT, http_client, try_http_client};
pub use deliver::{BATCH_SIZE, Deliverer, LEASE_MARGIN};
pub use notifier::{NOTICE_BATCH, Notifier};
pub use retry::{RetryPolicy, backoff};
pub use signature::sign;
