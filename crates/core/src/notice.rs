//! Notifications: which channels hear about a request, when, and why. The engine writes one
//! [`NoticeMessage`] per channel and reason to the notification outbox, in the transaction of
//! the change (reminders and escalations with the time they are due); the delivery worker
//! renders each from the request as it is when it is sent, so a message that waited in the
//! queue shows the latest state, never a stale one.
//!
//! Routing: a gate's `notify` channels hear about everything; a rule's channels hear while
//! that rule's stage is open and the rule still needs approvals, and get the outcome
//! wherever the request was announced. Deciding never happens in a channel: every message
//! links to the request page.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::gate::Gate;
use crate::ids::RequestId;
use crate::policy::Evaluation;
use crate::principal::{Identity, Principal};
use crate::request::{Request, State};
use crate::time::Timestamp;

/// Why a message is sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NoticeKind {
    /// A request now needs this channel's people (created, or its stage opened).
    Created,
    /// Someone decided and the request is still pending ("1 of 2 from sre").
    Progress,
    /// The request left `pending`: approved, rejected, expired, cancelled or revoked.
    Decided,
    /// Still pending, `expires_in_secs` before it expires.
    Reminder {
        /// Seconds left until the request expires, as scheduled.
        expires_in_secs: i64,
    },
    /// Nobody acted for `after_secs`: announced to the escalation channels.
    Escalated {
        /// Seconds since the request was created.
        after_secs: i64,
    },
}

impl NoticeKind {
    /// The short name (`created`, `progress`, `decided`, `reminder`, `escalated`).
    pub fn as_str(&self) -> &'static str {
        match self {
            NoticeKind::Created => "created",
            NoticeKind::Progress => "progress",
            NoticeKind::Decided => "decided",
            NoticeKind::Reminder { .. } => "reminder",
            NoticeKind::Escalated { .. } => "escalated",
        }
    }
}

/// Where the gates' notifications route: what the engine needs to know about them.
#[derive(Clone, Debug, Default)]
pub struct GateNotify {
    /// Channels that hear about every request of the gate.
    pub channels: Vec<String>,
    /// Whether the requester gets the outcome by e-mail (through [`GateNotify::requester_channel`]).
    pub notify_requester: bool,
    /// The e-mail channel the requester's outcome mail goes through (resolved by the
    /// configuration: `notifications.requester_channel`, or the only e-mail channel).
    pub requester_channel: Option<String>,
    /// Reminders, each this long before the request would expire.
    pub remind: Vec<chrono::Duration>,
    /// When nobody has decided this long after creation, announce to `escalate_to`.
    pub escalate_after: Option<chrono::Duration>,
    /// The escalation channels.
    pub escalate_to: Vec<String>,
}

impl Gate {
    /// Whether any notification is configured for this gate (when none is, the engine does
    /// no notification work at all).
    pub fn notifies(&self) -> bool {
        let n = &self.notify;
        !n.channels.is_empty()
            || !n.escalate_to.is_empty()
            || (n.notify_requester && n.requester_channel.is_some())
            || self.rules.iter().any(|r| !r.notify.is_empty())
    }
}

/// A message for one channel, written to the notification outbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoticeMessage {
    /// `ntf_` + ULID.
    pub id: String,
    /// The request concerned.
    pub request_id: RequestId,
    /// The configured channel's name.
    pub channel: String,
    /// Why it is sent.
    pub kind: NoticeKind,
    /// Sent to the requester's verified address alone (the outcome mail), not to the
    /// channel's own recipients.
    pub to_requester: bool,
    /// When it is due: the change's time, or the reminder's or escalation's.
    pub due_at: Timestamp,
    /// When it was written.
    pub created_at: Timestamp,
    /// The request's version once the change that wrote it is stored: a message that
    /// reports a change is superseded once its thread showed this version or a newer one.
    pub version: i64,
}

impl NoticeMessage {
    /// The thread it belongs to: its channel, or the channel + `/requester` for the
    /// requester's own mail. A request's messages of one thread are sent one at a time, in
    /// order, and a message reporting a change is skipped once its thread showed a newer
    /// version.
    pub fn thread_key(&self) -> String {
        if self.to_requester {
            format!("{}/requester", self.channel)
        } else {
            self.channel.clone()
        }
    }
}

/// Where a notification stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeState {
    /// Waiting to be sent (or being sent, under a lease).
    Pending,
    /// The channel accepted it.
    Sent,
    /// Not sent, and rightly: superseded by a later message, or no longer relevant (a
    /// reminder for a decided request).
    Skipped,
    /// Gave up (can be retried by hand).
    Failed,
}

impl NoticeState {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeState::Pending => "pending",
            NoticeState::Sent => "sent",
            NoticeState::Skipped => "skipped",
            NoticeState::Failed => "failed",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Sent, Self::Skipped, Self::Failed]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// A notification as stored, with its progress.
#[derive(Clone, Debug, PartialEq)]
pub struct QueuedNotice {
    /// The message.
    pub message: NoticeMessage,
    /// Where it stands.
    pub state: NoticeState,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Timestamp,
    /// What went wrong last, or why it was skipped.
    pub last_error: Option<String>,
    /// Last change.
    pub updated_at: Timestamp,
}

/// How one attempt at a notification ended.
#[derive(Clone, Debug, PartialEq)]
pub enum NoticeOutcome {
    /// The channel accepted it, showing the request at `version`; `thread` (the channel's
    /// reference to its first message, JSON) is kept when given.
    Sent {
        /// What later messages update or reply to, when this send created it.
        thread: Option<String>,
        /// The request version the message showed.
        version: i64,
    },
    /// Not sent, on purpose.
    Skipped {
        /// Why (shown in listings).
        why: String,
    },
    /// Failed; try again at `next_attempt_at`.
    Retry {
        /// When.
        next_attempt_at: Timestamp,
        /// What went wrong.
        error: String,
    },
    /// Failed for good.
    Failed {
        /// What went wrong.
        error: String,
    },
}

/// What a channel has shown of a request so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NoticeThread {
    /// The channel's reference to its first message (JSON), if it keeps one.
    pub thread: Option<String>,
    /// The newest request version a message on this channel showed.
    pub shown_version: i64,
}

/// Someone countersign has seen signed in: who they are and their claims as last verified.
/// A hint for routing notifications only; decisions always use current claims.
#[derive(Clone, Debug, PartialEq)]
pub struct Person {
    /// Their claims as last verified.
    pub principal: Principal,
    /// When they were last seen.
    pub last_seen: Timestamp,
}

impl Person {
    /// `(issuer, subject)`.
    pub fn identity(&self) -> &Identity {
        self.principal.identity()
    }
}

/// The highest stage whose rules have been open: the current one while pending, else the
/// one the request ended in.
fn opened_stage(evaluation: &Evaluation) -> u32 {
    evaluation
        .current_stage()
        .or_else(|| evaluation.rules.iter().map(|r| r.stage).max())
        .unwrap_or(1)
}

/// The channels that may have been told about a request in this standing: the gate's, its
/// escalation's, and those of every rule whose stage has opened. (The worker sends an outcome
/// only to those that did show the request.)
pub fn announced<'g>(gate: &'g Gate, evaluation: &Evaluation) -> BTreeSet<&'g str> {
    let stage = opened_stage(evaluation);
    let mut out: BTreeSet<&str> = gate.notify.channels.iter().map(String::as_str).collect();
    out.extend(gate.notify.escalate_to.iter().map(String::as_str));
    for rule in gate.rules.iter().filter(|r| r.stage <= stage) {
        out.extend(rule.notify.iter().map(String::as_str));
    }
    out
}

/// The channels that still hear about a pending request: the gate's, and those of the rules
/// that are open and still need approvals.
pub fn hearing<'g>(gate: &'g Gate, evaluation: &Evaluation) -> BTreeSet<&'g str> {
    let mut out: BTreeSet<&str> = gate.notify.channels.iter().map(String::as_str).collect();
    if let Some(stage) = evaluation.current_stage() {
        for (rule, status) in gate.rules.iter().zip(&evaluation.rules) {
            if rule.stage <= stage && !status.satisfied {
                out.extend(rule.notify.iter().map(String::as_str));
            }
        }
    }
    out
}

/// Whose eligible people an e-mail channel with `to = ["eligible"]` writes to: every open,
/// unmet rule when the channel belongs to the gate (or to its escalation), else the open,
/// unmet rules that name it (none once its rules are met: then only its fixed addresses).
pub fn rules_for_channel<'g>(
    gate: &'g Gate,
    evaluation: &Evaluation,
    channel: &str,
) -> Vec<&'g crate::gate::Rule> {
    let Some(stage) = evaluation.current_stage() else {
        return Vec::new();
    };
    let open: Vec<_> = gate
        .rules
        .iter()
        .zip(&evaluation.rules)
        .filter(|(r, s)| r.stage <= stage && !s.satisfied)
        .map(|(r, _)| r)
        .collect();
    let own: Vec<_> = open
        .iter()
        .copied()
        .filter(|r| r.notify.iter().any(|c| c == channel))
        .collect();
    let gate_wide = gate.notify.channels.iter().any(|c| c == channel)
        || gate.notify.escalate_to.iter().any(|c| c == channel);
    if own.is_empty() || gate_wide {
        open
    } else {
        own
    }
}

fn message(
    request: &Request,
    channel: &str,
    kind: NoticeKind,
    due_at: Timestamp,
    at: Timestamp,
) -> NoticeMessage {
    NoticeMessage {
        id: format!(
            "ntf_{}",
            RequestId::generate(at)
                .to_string()
                .trim_start_matches("req_")
        ),
        request_id: request.id,
        channel: channel.to_owned(),
        kind,
        to_requester: false,
        due_at,
        created_at: at,
        version: request.version,
    }
}

/// The messages a new request sends (nothing when it was approved at once): the
/// announcement to every channel that hears, and the reminders and escalation, scheduled.
pub fn on_create(
    gate: &Gate,
    request: &Request,
    evaluation: &Evaluation,
    at: Timestamp,
) -> Vec<NoticeMessage> {
    if request.state != State::Pending {
        return Vec::new();
    }
    let mut out: Vec<NoticeMessage> = hearing(gate, evaluation)
        .into_iter()
        .map(|c| message(request, c, NoticeKind::Created, at, at))
        .collect();
    // Reminders go to every channel that may still hear when they are due; the worker sends
    // each only to those that still do then.
    let mut all: BTreeSet<&str> = gate.notify.channels.iter().map(String::as_str).collect();
    for rule in &gate.rules {
        all.extend(rule.notify.iter().map(String::as_str));
    }
    for before in &gate.notify.remind {
        let due = request.expires_at - *before;
        if due <= at {
            continue;
        }
        let kind = NoticeKind::Reminder {
            expires_in_secs: before.num_seconds(),
        };
        out.extend(
            all.iter()
                .map(|c| message(request, c, kind.clone(), due, at)),
        );
    }
    if let Some(after) = gate.notify.escalate_after {
        let due = request.created_at + after;
        if due < request.expires_at {
            let kind = NoticeKind::Escalated {
                after_secs: after.num_seconds(),
            };
            let to: BTreeSet<&str> = gate.notify.escalate_to.iter().map(String::as_str).collect();
            out.extend(
                to.into_iter()
                    .map(|c| message(request, c, kind.clone(), due, at)),
            );
        }
    }
    out
}

/// The messages a change sends: progress to the channels that were hearing, an announcement
/// to the channels of a stage that just opened, and the outcome everywhere the request was
/// announced (and to the requester, when the gate says so and they did not cancel it
/// themselves).
pub fn on_change(
    gate: &Gate,
    before: &Evaluation,
    after_request: &Request,
    after: &Evaluation,
    by_requester: bool,
    at: Timestamp,
) -> Vec<NoticeMessage> {
    let request = after_request;
    if request.state != State::Pending {
        let mut out: Vec<NoticeMessage> = announced(gate, before)
            .into_iter()
            .map(|c| message(request, c, NoticeKind::Decided, at, at))
            .collect();
        if gate.notify.notify_requester
            && !(request.state == State::Cancelled && by_requester)
            && let Some(channel) = &gate.notify.requester_channel
        {
            let mut m = message(request, channel, NoticeKind::Decided, at, at);
            m.to_requester = true;
            out.push(m);
        }
        return out;
    }
    let was = hearing(gate, before);
    let now = hearing(gate, after);
    let mut out: Vec<NoticeMessage> = was
        .iter()
        .map(|c| message(request, c, NoticeKind::Progress, at, at))
        .collect();
    out.extend(
        now.difference(&was)
            .map(|c| message(request, c, NoticeKind::Created, at, at)),
    );
    out
}
