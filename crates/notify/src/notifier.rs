//! The notification worker: claims due notifications, renders each from the request as it is
//! now, sends it over its channel at the channel's pace, and records what happened.
//!
//! Like webhook deliveries, notifications are claimed with a lease, so several workers (in
//! one process or many) never send the same one at once; a request's messages on one channel
//! are claimed one at a time and in order (the store sees to it), so a Slack message is
//! posted before it is updated. A message that reports a change is skipped when its channel
//! already shows that version or a newer one: edits coalesce, and the latest state wins.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use countersign_core::channel::{ChannelKind, ChannelSpec, Channels};
use countersign_core::notice::{
    NoticeKind, NoticeMessage, NoticeOutcome, NoticeThread, QueuedNotice, hearing,
    rules_for_channel,
};
use countersign_core::policy::{self, Approver, Evaluation};
use countersign_core::ports::{Clock, NoticeStore};
use countersign_core::{Gate, GateSet, Request, State, Store, Timestamp};
use tracing::Instrument as _;

use crate::channels::{Outgoing, Sender};
use crate::deliver::later;
use crate::notice::{SendError, ThreadRef};
use crate::retry::{RetryPolicy, backoff};

/// The most notifications one pass claims.
pub const NOTICE_BATCH: u32 = 64;

/// The longest a send waits for its channel's pace within a pass; a later slot puts the
/// notification back in the queue for then, without counting an attempt.
const MAX_PACING_WAIT: Duration = Duration::from_secs(2);

/// The most calls one send makes, each within the timeout: what a claim's lease allows for.
const SEND_CALLS: u32 = 4;

/// The most "eligible" people one mail goes to (in `Bcc`); beyond it the mail goes to the
/// first ones by address, and the log says so.
const MAX_ELIGIBLE: usize = 100;

/// How far back the directory is read for "eligible" recipients.
const DIRECTORY_WINDOW: chrono::Duration = chrono::Duration::days(90);

/// How long a pass waits after a wake-up, so that the rest of a burst of changes (a request
/// and its decisions moments later) commits first: one message then shows the latest state
/// and the ones it supersedes are skipped together, instead of one send per change.
const GATHER: Duration = Duration::from_millis(50);

/// The shortest pause between passes.
const MIN_PERIOD: Duration = Duration::from_millis(10);

/// The notification worker. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Notifier {
    notices: Arc<dyn NoticeStore>,
    store: Arc<dyn Store>,
    gates: Arc<GateSet>,
    channels: Arc<Channels>,
    clock: Arc<dyn Clock>,
    policy: RetryPolicy,
    sender: Result<Sender, String>,
    public_url: String,
    mail_domain: String,
    pace: Arc<Mutex<HashMap<String, tokio::time::Instant>>>,
    wake: Arc<tokio::sync::Notify>,
}

/// What to do with a claimed notification, decided before sending.
enum Plan {
    Skip(String),
    Fail(String),
    Send(Box<Prepared>),
}

/// A notification ready to send.
struct Prepared {
    spec: Arc<ChannelSpec>,
    notice: crate::notice::Notice,
    thread: Option<ThreadRef>,
    recipients: Vec<String>,
    version: i64,
}

impl Notifier {
    /// A worker sending `notices` about the requests in `store`, over `channels`, with links
    /// under `public_url`.
    pub fn new(
        notices: Arc<dyn NoticeStore>,
        store: Arc<dyn Store>,
        gates: Arc<GateSet>,
        channels: Arc<Channels>,
        clock: Arc<dyn Clock>,
        policy: RetryPolicy,
        public_url: &str,
    ) -> Self {
        let sender = Sender::new(policy.timeout, clock.clone());
        if let Err(error) = &sender {
            tracing::error!(%error, "notifications are disabled");
        }
        let mail_domain = url::Url::parse(public_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| "countersign.invalid".to_owned());
        Self {
            notices,
            store,
            gates,
            channels,
            clock,
            policy,
            sender,
            public_url: public_url.trim_end_matches('/').to_owned(),
            mail_domain,
            pace: Arc::default(),
            wake: Arc::default(),
        }
    }

    /// Starts the next pass now instead of at the end of the pause: the server calls it
    /// after each committed change, so a notification leaves within moments of its commit.
    /// (Other replicas find it on their next pass.)
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The sender (the dev sandbox reads its previews).
    pub fn sender(&self) -> Option<&Sender> {
        self.sender.as_ref().ok()
    }

    /// One pass: claims up to [`NOTICE_BATCH`] due notifications, sends them concurrently
    /// (each channel at its pace) and records each outcome. Returns how many were claimed.
    pub async fn run_once(&self) -> Result<usize, String> {
        if let Err(error) = &self.sender {
            return Err(error.clone());
        }
        if self.channels.is_empty() {
            return Ok(0);
        }
        let now = self.clock.now();
        let claimed = self
            .notices
            .claim_notices(now, NOTICE_BATCH, self.lease())
            .await
            .map_err(|e| format!("could not claim notifications: {e}"))?;
        let count = claimed.len();
        let mut tasks = tokio::task::JoinSet::new();
        for notice in claimed {
            let this = self.clone();
            tasks.spawn(async move { this.handle(notice).await });
        }
        while let Some(joined) = tasks.join_next().await {
            if let Err(error) = joined {
                tracing::error!(%error, "a notification task ended abnormally");
            }
        }
        Ok(count)
    }

    /// Runs [`run_once`](Self::run_once) every `every` (at once again after a full batch)
    /// until the handle is aborted.
    pub fn spawn(self, every: Duration) -> tokio::task::JoinHandle<()> {
        let every = every.max(MIN_PERIOD);
        tokio::spawn(async move {
            loop {
                match self.run_once().await {
                    Ok(count) if count >= NOTICE_BATCH as usize => continue,
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "notification pass failed"),
                }
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = self.wake.notified() => tokio::time::sleep(GATHER).await,
                }
            }
        })
    }

    fn lease(&self) -> chrono::Duration {
        // A send may make several calls, each bounded by the timeout (a Slack edit and its
        // thread reply; SMTP's commands).
        let lease = self
            .policy
            .timeout
            .saturating_mul(SEND_CALLS)
            .saturating_add(MAX_PACING_WAIT)
            .saturating_add(crate::deliver::LEASE_MARGIN);
        chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::hours(1))
    }

    async fn handle(&self, queued: QueuedNotice) {
        let message = &queued.message;
        let span = tracing::info_span!(
            "notification",
            id = %message.id,
            request_id = %message.request_id,
            channel = %message.channel,
            kind = message.kind.as_str(),
            attempt = queued.attempts.saturating_add(1),
        );
        async {
            let outcome = match self.plan(message).await {
                Err(error) => {
                    // The store failed: leave it leased, it is tried again when the lease ends.
                    tracing::warn!(%error, "could not prepare a notification");
                    return;
                }
                Ok(Plan::Skip(why)) => {
                    tracing::debug!(%why, "notification skipped");
                    NoticeOutcome::Skipped { why }
                }
                Ok(Plan::Fail(error)) => {
                    tracing::error!(%error, "notification cannot be sent");
                    NoticeOutcome::Failed { error }
                }
                Ok(Plan::Send(prepared)) => match self.paced(&prepared.spec).await {
                    Some(later) => {
                        let recorded = self.notices.defer_notice(message, later).await;
                        if let Err(error) = recorded {
                            tracing::warn!(%error, "could not put a paced notification back");
                        }
                        return;
                    }
                    None => self.send(message, queued.attempts, *prepared).await,
                },
            };
            let now = self.clock.now();
            if let Err(error) = self.notices.record_notice(message, &outcome, now).await {
                tracing::error!(%error, "could not record the notification attempt");
            }
        }
        .instrument(span)
        .await;
    }

    /// Works out whether and what to send.
    async fn plan(&self, message: &NoticeMessage) -> Result<Plan, countersign_core::StoreError> {
        let Some(request) = self.store.get_request(&message.request_id).await? else {
            return Ok(Plan::Skip("the request no longer exists".into()));
        };
        let Some(gate) = self.gates.get(&request.gate) else {
            return Ok(Plan::Skip(format!(
                "gate '{}' is no longer configured",
                request.gate
            )));
        };
        let Some(spec) = self.channels.get(&message.channel) else {
            return Ok(Plan::Fail(format!(
                "channel '{}' is no longer configured",
                message.channel
            )));
        };
        let now = self.clock.now();
        let evaluation = policy::evaluate(&gate.rules, &request.decisions);
        let pending = request.state == State::Pending && request.expires_at > now;
        match &message.kind {
            NoticeKind::Reminder { .. } => {
                if !pending {
                    return Ok(Plan::Skip(format!(
                        "the request is {}",
                        shown_state(&request, now)
                    )));
                }
                if !hearing(gate, &evaluation).contains(message.channel.as_str()) {
                    return Ok(Plan::Skip(
                        "the rules this channel hears for are met".into(),
                    ));
                }
            }
            NoticeKind::Escalated { .. } => {
                if !pending {
                    return Ok(Plan::Skip(format!(
                        "the request is {}",
                        shown_state(&request, now)
                    )));
                }
                if !request.decisions.is_empty() {
                    return Ok(Plan::Skip("someone has decided: no escalation".into()));
                }
            }
            NoticeKind::Created | NoticeKind::Progress | NoticeKind::Decided => {}
        }
        let thread = self.notices.notice_thread(message).await?;
        // An outcome goes only where the request was shown (an escalation channel that was
        // never escalated to, a stage that never opened, an auto-approved request's rules).
        if message.kind == NoticeKind::Decided && !message.to_requester && thread.shown_version == 0
        {
            return Ok(Plan::Skip(
                "this channel was never told of the request".into(),
            ));
        }
        if !matches!(
            message.kind,
            NoticeKind::Reminder { .. } | NoticeKind::Escalated { .. }
        ) && thread.shown_version >= request.version
        {
            return Ok(Plan::Skip(format!(
                "superseded: the channel already shows version {}",
                thread.shown_version
            )));
        }
        let recipients = self
            .recipients(message, spec, gate, &request, &evaluation, now)
            .await?;
        // A message that waited until the request was decided says so from its headline on:
        // it is the outcome, and the outcome message it supersedes is skipped.
        let kind = match &message.kind {
            NoticeKind::Created | NoticeKind::Progress if request.state != State::Pending => {
                NoticeKind::Decided
            }
            other => other.clone(),
        };
        let notice = crate::compose::notice(&kind, gate, &request, &evaluation, &self.public_url);
        Ok(Plan::Send(Box::new(Prepared {
            spec: spec.clone(),
            notice,
            thread: parse_thread(&thread),
            recipients,
            version: request.version,
        })))
    }

    /// The e-mail addresses a mail goes to besides the channel's own: the requester's, or the
    /// eligible people's.
    async fn recipients(
        &self,
        message: &NoticeMessage,
        spec: &ChannelSpec,
        gate: &Gate,
        request: &Request,
        evaluation: &Evaluation,
        now: Timestamp,
    ) -> Result<Vec<String>, countersign_core::StoreError> {
        let ChannelKind::Email(email) = &spec.kind else {
            return Ok(Vec::new());
        };
        if message.to_requester {
            return Ok(request
                .requester
                .email()
                .map(str::to_owned)
                .into_iter()
                .collect());
        }
        if !email.to_eligible {
            return Ok(Vec::new());
        }
        let rules: Vec<&str> = rules_for_channel(gate, evaluation, &message.channel)
            .into_iter()
            .map(|r| r.name.as_str())
            .collect();
        if rules.is_empty() {
            return Ok(Vec::new());
        }
        let people = self
            .notices
            .people(now - DIRECTORY_WINDOW, u32::MAX)
            .await?;
        let mut out: Vec<String> = people
            .iter()
            .filter(|p| !p.principal.same_person_as(&request.requester))
            .filter(|p| request.decision_of(&p.principal).is_none())
            .filter(|p| {
                Approver::new(&p.principal, now)
                    .checks(gate, request)
                    .iter()
                    .any(|c| c.eligible && rules.contains(&c.rule.as_str()))
            })
            .filter_map(|p| p.principal.email().map(str::to_owned))
            .collect();
        out.sort();
        out.dedup();
        if out.len() > MAX_ELIGIBLE {
            tracing::warn!(
                eligible = out.len(),
                sent_to = MAX_ELIGIBLE,
                "more people could approve than one mail goes to; add a list address to the channel's to"
            );
            out.truncate(MAX_ELIGIBLE);
        }
        Ok(out)
    }

    /// Waits for the channel's next slot when it is near; returns the time to put the
    /// notification back for when it is not.
    async fn paced(&self, spec: &ChannelSpec) -> Option<Timestamp> {
        let gap = Duration::from_secs_f64(1.0 / spec.max_per_second.max(0.001));
        let now = tokio::time::Instant::now();
        let slot = {
            let mut pace = self.pace.lock().unwrap_or_else(|e| e.into_inner());
            let next = pace.entry(spec.name.clone()).or_insert(now);
            let slot = (*next).max(now);
            if slot.duration_since(now) > MAX_PACING_WAIT {
                None
            } else {
                *next = slot + gap;
                Some(slot)
            }
        };
        match slot {
            Some(slot) => {
                tokio::time::sleep_until(slot).await;
                None
            }
            None => Some(later(self.clock.now(), MAX_PACING_WAIT)),
        }
    }

    async fn send(
        &self,
        message: &NoticeMessage,
        attempts: u32,
        prepared: Prepared,
    ) -> NoticeOutcome {
        let sender = match &self.sender {
            Ok(sender) => sender,
            Err(error) => {
                return NoticeOutcome::Retry {
                    next_attempt_at: later(self.clock.now(), self.policy.backoff_base),
                    error: error.clone(),
                };
            }
        };
        let out = Outgoing {
            notice: &prepared.notice,
            thread: prepared.thread.as_ref(),
            recipients: &prepared.recipients,
            to_requester: message.to_requester,
            mail_domain: &self.mail_domain,
        };
        match sender.send(&prepared.spec, out).await {
            Ok(thread) => {
                tracing::info!("notification sent");
                NoticeOutcome::Sent {
                    thread: thread.and_then(|t| serde_json::to_string(&t).ok()),
                    version: prepared.version,
                }
            }
            Err(SendError::Permanent(error)) => {
                tracing::error!(%error, "notification failed for good");
                NoticeOutcome::Failed { error }
            }
            Err(SendError::Retry { error, after }) => {
                let made = attempts.saturating_add(1);
                if made >= self.policy.max_attempts {
                    tracing::error!(%error, "notification failed for good");
                    return NoticeOutcome::Failed {
                        error: format!("{error} (gave up after {made} attempts)"),
                    };
                }
                let wait = backoff(made, &self.policy, rand::random::<f64>());
                let wait = after.map_or(wait, |a| a.max(wait.min(a.saturating_mul(2))));
                if let Some(after) = after {
                    // Everything else for this channel waits as long: the receiver said so.
                    self.hold(&prepared.spec.name, after);
                }
                tracing::warn!(%error, "notification attempt failed, will retry");
                NoticeOutcome::Retry {
                    next_attempt_at: later(self.clock.now(), wait),
                    error,
                }
            }
        }
    }

    /// Holds every send to `channel` for `wait` (a `429 Retry-After`).
    fn hold(&self, channel: &str, wait: Duration) {
        let until = tokio::time::Instant::now() + wait;
        let mut pace = self.pace.lock().unwrap_or_else(|e| e.into_inner());
        let next = pace.entry(channel.to_owned()).or_insert(until);
        *next = (*next).max(until);
    }
}

fn parse_thread(thread: &NoticeThread) -> Option<ThreadRef> {
    thread
        .thread
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
}

/// The state a person would see: an expired pending request is expired.
fn shown_state(request: &Request, now: Timestamp) -> &'static str {
    policy::effective_state(request, now).as_str()
}
