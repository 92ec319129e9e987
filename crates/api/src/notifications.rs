//! Notifications, for operators: what was sent to Slack, Teams, e-mail and notification
//! webhooks, what was skipped and why, what failed, and a manual retry.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A notification and its progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Notification {
    /// Attempts made so far.
    pub attempts: u32,
    /// The configured channel's name.
    pub channel: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it is (or was) due: the change's time, or the reminder's or escalation's.
    #[schema(format = DateTime)]
    pub due_at: String,
    #[schema(pattern = r"^ntf_[0-9A-HJKMNP-TV-Z]{26}$")]
    pub id: String,
    /// `created`, `progress`, `decided`, `reminder` or `escalated`.
    #[schema(examples("created"))]
    pub kind: String,
    /// What went wrong last, or why it was skipped (never a secret).
    pub last_error: Option<String>,
    #[schema(format = DateTime)]
    pub next_attempt_at: String,
    #[schema(pattern = r"^req_[0-9A-HJKMNP-TV-Z]{26}$")]
    pub request_id: String,
    pub state: NotificationState,
    /// Sent to the requester alone (the outcome mail).
    pub to_requester: bool,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// Where a notification stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationState {
    Pending,
    Sent,
    /// Not sent, and rightly: superseded by a later message, or no longer relevant.
    Skipped,
    Failed,
}

/// A page of notifications.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NotificationPage {
    pub items: Vec<Notification>,
    /// Pass as `cursor` for the next page; null when the page is not full.
    pub next_cursor: Option<String>,
}

/// A notification queued again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NotificationRetry {
    pub id: String,
    /// `pending` again.
    pub state: NotificationState,
}

/// The query of `GET /notifications`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListNotificationsQuery {
    /// Only notifications in this state.
    #[param(value_type = Option<NotificationState>, inline)]
    pub state: Option<String>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
    /// Page size; values outside 1..200 are clamped.
    #[param(default = 50)]
    pub limit: Option<u32>,
}
