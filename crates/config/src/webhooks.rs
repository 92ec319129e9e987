//! The `[webhooks]` section: how webhook calls are delivered and retried.

use chrono::Duration;
use countersign_core::time::format_duration;

use crate::check::{Ctx, Fields};
use crate::settings::WebhookSettings;

const KEYS: &[&str] = &["max_attempts", "timeout", "backoff_base", "backoff_max"];

/// The most tries of one event.
const MAX_ATTEMPTS: i128 = 50;
/// The longest one call may take.
const MAX_TIMEOUT: Duration = Duration::seconds(60);

/// Resolves `[webhooks]`; the defaults when it is absent.
pub(crate) fn resolve(ctx: &mut Ctx, root: &Fields<'_>) -> WebhookSettings {
    let defaults = WebhookSettings::default();
    let Some(node) = root.get("webhooks") else {
        return defaults;
    };
    let Some(f) = Fields::open(ctx, node, "webhooks".into(), KEYS) else {
        return defaults;
    };

    let max_attempts = f
        .integer(ctx, "max_attempts", 1, MAX_ATTEMPTS)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(defaults.max_attempts);

    let mut timeout = f.duration(ctx, "timeout");
    if let (Some(t), Some(n)) = (timeout, f.get("timeout"))
        && t > MAX_TIMEOUT
    {
        ctx.report(
            &n.origin,
            &f.key("timeout"),
            format!(
                "{} is too long: a webhook call may take at most {}",
                format_duration(t),
                format_duration(MAX_TIMEOUT)
            ),
        );
        timeout = None;
    }

    let base = f.duration(ctx, "backoff_base");
    let max = f.duration(ctx, "backoff_max");
    // Compared only when both are known: a value with a problem has been reported already.
    let base_ok = base.is_some() || !f.has("backoff_base");
    let max_ok = max.is_some() || !f.has("backoff_max");
    let backoff_base = base.unwrap_or(defaults.backoff_base);
    let backoff_max = max.unwrap_or(defaults.backoff_max);
    if base_ok && max_ok && backoff_max < backoff_base {
        let (key, origin, message) = match f.get("backoff_max") {
            Some(n) => (
                "backoff_max",
                &n.origin,
                format!(
                    "backoff_max ({}) must be at least backoff_base ({})",
                    format_duration(backoff_max),
                    format_duration(backoff_base)
                ),
            ),
            // Only the base was written: it exceeds the default maximum.
            None => (
                "backoff_base",
                f.get("backoff_base").map_or(f.origin, |n| &n.origin),
                format!(
                    "backoff_base ({}) must be at most backoff_max ({}, the default): set backoff_max too",
                    format_duration(backoff_base),
                    format_duration(backoff_max)
                ),
            ),
        };
        ctx.report(origin, &f.key(key), message);
    }

    WebhookSettings {
        max_attempts,
        timeout: timeout.unwrap_or(defaults.timeout),
        backoff_base,
        backoff_max,
    }
}
