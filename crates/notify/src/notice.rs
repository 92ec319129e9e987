//! What a notification says, before any channel renders it: the request as an approver needs to
//! see it, and why this message is being sent. Every string that a requester, an approver or
//! an identity provider chose is kept raw here; each renderer escapes for its own format
//! (mrkdwn, Adaptive Card Markdown, HTML, plain text) and truncates after escaping.

use serde::{Deserialize, Serialize};

pub use countersign_core::notice::NoticeKind;

/// A person as a message names them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// The display name claim, if the provider sent one.
    pub name: Option<String>,
    /// The e-mail claim, if any.
    pub email: Option<String>,
    /// The subject at the issuer.
    pub subject: String,
    /// The configured issuer name.
    pub issuer: String,
}

impl Person {
    /// How a message names them: the name, else the e-mail, else the subject (raw: escape it).
    pub fn label(&self) -> &str {
        self.name
            .as_deref()
            .filter(|n| !n.trim().is_empty())
            .or(self.email.as_deref())
            .unwrap_or(&self.subject)
    }
}

/// One decision on the request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionLine {
    /// Who decided.
    pub who: Person,
    /// `approve` or `reject`.
    pub verdict: String,
    /// The rule the approval counts for, if any.
    pub rule: Option<String>,
    /// Their comment, if any.
    pub comment: Option<String>,
    /// RFC 3339 UTC.
    pub at: String,
}

/// A request, as a notification shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// Why this message is sent.
    pub kind: NoticeKind,
    /// `req_…`.
    pub request_id: String,
    /// The gate's name.
    pub gate: String,
    /// The gate's description.
    pub gate_description: String,
    /// Who asked.
    pub requester: Person,
    /// The parameters, by name, in display form (strings as given, numbers and booleans as
    /// JSON writes them).
    pub params: Vec<(String, String)>,
    /// The reason, if given.
    pub reason: Option<String>,
    /// The ticket, if given.
    pub ticket: Option<String>,
    /// `pending`, `approved`, `rejected`, `expired`, `cancelled` or `revoked`.
    pub state: String,
    /// What is still needed, one line per unmet open rule ("1 more from sre"); empty once
    /// decided.
    pub needs: Vec<String>,
    /// Progress over all rules, e.g. "1 of 2 approvals"; for a [`NoticeKind::Progress`]
    /// the line about the latest decision ("1 of 2 from sre").
    pub progress: Option<String>,
    /// Every decision so far, oldest first.
    pub decisions: Vec<DecisionLine>,
    /// The decision this message is about ([`NoticeKind::Progress`]; the deciding one for
    /// [`NoticeKind::Decided`] when a person decided), an index into `decisions`.
    pub latest: Option<usize>,
    /// When the request expires (pending) or expired, RFC 3339 UTC.
    pub expires_at: String,
    /// The same instant as Unix seconds (for Slack's `<!date^…>`).
    pub expires_at_unix: i64,
    /// `sha256:…`: the content digest approvers can compare with the page.
    pub digest: String,
    /// The request page, `{public_url}/requests/{id}` — the only link in any message.
    pub url: String,
    /// The request's version when this was rendered.
    pub version: i64,
}

/// A reference to what a channel posted first about a request, kept so that later messages
/// update it or thread under it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ThreadRef {
    /// A Slack message posted with a bot token: `chat.update` and `thread_ts` use it.
    Slack {
        /// The conversation ID `chat.postMessage` answered with.
        channel: String,
        /// The message's `ts`.
        ts: String,
    },
    /// The first e-mail's `Message-ID` (with its angle brackets); replies set `In-Reply-To`
    /// and `References` to it.
    Email {
        /// `<…@…>`.
        message_id: String,
    },
}

/// Why a send failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendError {
    /// Worth trying again: a timeout, a 5xx, a 429 (with the wait the receiver asked for).
    Retry {
        /// What went wrong, short, never a secret or a URL that embeds one.
        error: String,
        /// `Retry-After`, when the receiver said how long to wait.
        after: Option<std::time::Duration>,
    },
    /// Trying again cannot help until the configuration changes (a 4xx other than 429,
    /// `ok:false` with `invalid_auth`, `channel_not_found`, a refused mail address…).
    Permanent(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Retry { error, .. } | SendError::Permanent(error) => f.write_str(error),
        }
    }
}

impl std::error::Error for SendError {}
