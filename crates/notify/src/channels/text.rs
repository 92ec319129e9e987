//! What every channel says, in words, and the escaping that makes user text safe in each
//! format. User text is escaped first and truncated after, on the boundary between two
//! escaped characters, so an entity (`&amp;`) or an escape (`\*`) is never cut in half.

use crate::notice::{DecisionLine, Notice, NoticeKind, Person};

/// What a cut value ends with.
pub(crate) const TRUNCATED: &str = " … (truncated — see the request page)";

/// How one format escapes a character of user text.
pub(crate) type Escape = fn(char, &mut String);

/// Slack mrkdwn: the three characters Slack wants as entities. Everything Slack turns into a
/// mention, a link or a date starts with `<`, so without a raw `<` user text stays text.
pub(crate) fn mrkdwn_char(c: char, out: &mut String) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        c => plain_char(c, out),
    }
}

/// Teams (Adaptive Card) Markdown: a backslash before every character that could start
/// emphasis, code, a link (`[text](url)`), a heading, a table, an HTML-looking tag, or one
/// of the `{{DATE(…)}}` functions Teams evaluates in text.
pub(crate) fn teams_char(c: char, out: &mut String) {
    match c {
        '\\' | '`' | '*' | '_' | '~' | '[' | ']' | '(' | ')' | '<' | '>' | '#' | '|' | '{'
        | '}' => {
            out.push('\\');
            out.push(c);
        }
        c => plain_char(c, out),
    }
}

/// HTML text and attribute values.
pub(crate) fn html_char(c: char, out: &mut String) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '"' => out.push_str("&quot;"),
        '\'' => out.push_str("&#39;"),
        c => plain_char(c, out),
    }
}

/// Plain text: control characters (other than newline and tab) become spaces, and so do the
/// bidirectional overrides that can make text read differently from what it says.
pub(crate) fn plain_char(c: char, out: &mut String) {
    let invisible_override = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if (c.is_control() && c != '\n' && c != '\t') || invisible_override {
        out.push(' ');
    } else {
        out.push(c);
    }
}

/// `raw` escaped with `escape`, at most `limit` characters long; when it had to be cut, it
/// ends with [`TRUNCATED`] (inside the limit).
pub(crate) fn escape_within(raw: &str, limit: usize, escape: Escape) -> String {
    escape_within_suffix(raw, limit, escape, TRUNCATED)
}

/// [`escape_within`] with another suffix for a cut value.
pub(crate) fn escape_within_suffix(
    raw: &str,
    limit: usize,
    escape: Escape,
    suffix: &str,
) -> String {
    let mut out = String::with_capacity(raw.len().min(limit.saturating_mul(4)));
    // The end of each escaped character: (byte offset, characters so far).
    let mut ends: Vec<(usize, usize)> = Vec::new();
    let mut chars = 0usize;
    let mut piece = String::new();
    for c in raw.chars() {
        piece.clear();
        escape(c, &mut piece);
        chars += piece.chars().count();
        out.push_str(&piece);
        ends.push((out.len(), chars));
        // Past the limit: the rest cannot be kept, whatever it is.
        if chars > limit {
            break;
        }
    }
    if chars <= limit {
        return out;
    }
    let suffix_chars = suffix.chars().count();
    let budget = limit.saturating_sub(suffix_chars);
    let cut = ends
        .iter()
        .take_while(|(_, n)| *n <= budget)
        .last()
        .map_or(0, |(byte, _)| *byte);
    out.truncate(cut);
    let kept = out.trim_end().len();
    out.truncate(kept);
    if suffix_chars <= limit {
        out.push_str(suffix);
    }
    out
}

/// The first line of a message: what happened, and to which gate.
pub(crate) fn headline(n: &Notice) -> String {
    let gate = &n.gate;
    match &n.kind {
        NoticeKind::Created => format!("Approval needed: {gate}"),
        NoticeKind::Escalated { .. } => format!("Still waiting for approval: {gate}"),
        NoticeKind::Reminder { .. } => format!("Reminder: approval needed: {gate}"),
        NoticeKind::Progress => format!("Approval progress: {gate}"),
        NoticeKind::Decided => format!("{}: {gate}", outcome_word(&n.state)),
    }
}

/// `Approved`, `Rejected`, … for a decided request's state.
pub(crate) fn outcome_word(state: &str) -> &'static str {
    match state {
        "approved" => "Approved",
        "rejected" => "Rejected",
        "expired" => "Expired",
        "cancelled" => "Cancelled",
        "revoked" => "Revoked",
        "pending" => "Pending",
        _ => "Decided",
    }
}

/// The emoji that goes with a state.
pub(crate) fn state_emoji(state: &str) -> &'static str {
    match state {
        "pending" => "⏳",
        "approved" => "✅",
        "rejected" => "❌",
        "expired" => "⌛",
        "cancelled" => "🚫",
        "revoked" => "⛔",
        _ => "ℹ️",
    }
}

/// Escapes a piece of user text to at most the given length.
pub(crate) type Esc<'a> = &'a dyn Fn(&str, usize) -> String;

/// The longest name shown for a person.
const NAME_LIMIT: usize = 80;
/// The longest rule name shown.
const RULE_LIMIT: usize = 60;
/// The longest comment shown in a state or decision line.
const COMMENT_LIMIT: usize = 300;
/// How many approvers a state line names.
const APPROVERS_SHOWN: usize = 5;

/// One line on where the request stands: "⏳ Pending · 1 of 2 approvals", "✅ Approved by bob
/// (for sre)", "❌ Rejected by bob: not now", "⌛ Expired", "🚫 Cancelled", "⛔ Revoked".
pub(crate) fn state_line(n: &Notice, esc: Esc<'_>) -> String {
    let emoji = state_emoji(&n.state);
    match n.state.as_str() {
        "pending" => match &n.progress {
            Some(progress) => format!("{emoji} Pending · {}", esc(progress, 200)),
            None => format!("{emoji} Pending"),
        },
        "approved" => {
            let approvers: Vec<&DecisionLine> = n
                .decisions
                .iter()
                .filter(|d| d.verdict == "approve")
                .collect();
            if approvers.is_empty() {
                return format!("{emoji} Approved");
            }
            let mut names: Vec<String> = approvers
                .iter()
                .take(APPROVERS_SHOWN)
                .map(|d| match &d.rule {
                    Some(rule) => format!(
                        "{} (for {})",
                        esc(d.who.label(), NAME_LIMIT),
                        esc(rule, RULE_LIMIT)
                    ),
                    None => esc(d.who.label(), NAME_LIMIT),
                })
                .collect();
            if approvers.len() > APPROVERS_SHOWN {
                names.push(format!("{} more", approvers.len() - APPROVERS_SHOWN));
            }
            format!("{emoji} Approved by {}", names.join(", "))
        }
        "rejected" => {
            let rejection = n
                .latest
                .and_then(|i| n.decisions.get(i))
                .filter(|d| d.verdict == "reject")
                .or_else(|| n.decisions.iter().rev().find(|d| d.verdict == "reject"));
            match rejection {
                Some(d) => {
                    let mut line =
                        format!("{emoji} Rejected by {}", esc(d.who.label(), NAME_LIMIT));
                    if let Some(comment) = d.comment.as_deref().filter(|c| !c.trim().is_empty()) {
                        line.push_str(": ");
                        line.push_str(&esc(comment, COMMENT_LIMIT));
                    }
                    line
                }
                None => format!("{emoji} Rejected"),
            }
        }
        other => format!("{emoji} {}", outcome_word(other)),
    }
}

/// One decision, as a sentence: "bob approved for sre: looks fine", "carol rejected".
pub(crate) fn decision_line(d: &DecisionLine, esc: Esc<'_>) -> String {
    let verb = match d.verdict.as_str() {
        "approve" => "approved",
        "reject" => "rejected",
        _ => "decided",
    };
    let mut line = format!("{} {verb}", esc(d.who.label(), NAME_LIMIT));
    if let Some(rule) = &d.rule {
        line.push_str(" for ");
        line.push_str(&esc(rule, RULE_LIMIT));
    }
    if let Some(comment) = d.comment.as_deref().filter(|c| !c.trim().is_empty()) {
        line.push_str(": ");
        line.push_str(&esc(comment, COMMENT_LIMIT));
    }
    line
}

/// The decision a notice is about, if a person made it.
pub(crate) fn latest_decision(n: &Notice) -> Option<&DecisionLine> {
    n.latest.and_then(|i| n.decisions.get(i))
}

/// A person: their label, their e-mail when the label is something else, and the issuer
/// ("Alice (alice@acme.test, okta)").
pub(crate) fn person(p: &Person, esc: Esc<'_>) -> String {
    let label = p.label();
    let mut extra = Vec::new();
    if let Some(email) = p.email.as_deref().filter(|e| *e != label) {
        extra.push(esc(email, NAME_LIMIT));
    }
    if !p.issuer.is_empty() {
        extra.push(esc(&p.issuer, NAME_LIMIT));
    }
    if extra.is_empty() {
        esc(label, NAME_LIMIT)
    } else {
        format!("{} ({})", esc(label, NAME_LIMIT), extra.join(", "))
    }
}

/// `sha256:` and the first 12 hex digits of the digest: enough to compare with the page.
pub(crate) fn digest_prefix(digest: &str) -> String {
    match digest.strip_prefix("sha256:") {
        Some(hex) => format!("sha256:{}", hex.chars().take(12).collect::<String>()),
        None => digest.chars().take(19).collect(),
    }
}

/// The expiry as people read it in UTC, "2026-11-29 12:00 UTC".
pub(crate) fn expiry(n: &Notice) -> String {
    chrono::DateTime::from_timestamp(n.expires_at_unix, 0).map_or_else(
        || n.expires_at.clone(),
        |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

/// "15m", "4h", "1d2h": a duration as the configuration writes it.
pub(crate) fn duration(secs: i64) -> String {
    countersign_core::time::format_duration(chrono::Duration::seconds(secs.max(0)))
}

/// What a reminder or an escalation adds to the headline ("expires in 15m", "waiting for 4h").
pub(crate) fn kind_note(kind: &NoticeKind) -> Option<String> {
    match kind {
        NoticeKind::Reminder { expires_in_secs } => {
            Some(format!("expires in {}", duration(*expires_in_secs)))
        }
        NoticeKind::Escalated { after_secs } => {
            Some(format!("nobody acted for {}", duration(*after_secs)))
        }
        _ => None,
    }
}

/// A key that tells two messages about one request apart: the kind, with the schedule of a
/// reminder or an escalation (two reminders at one version are two messages).
pub(crate) fn kind_key(kind: &NoticeKind) -> String {
    match kind {
        NoticeKind::Reminder { expires_in_secs } => format!("reminder-{expires_in_secs}"),
        NoticeKind::Escalated { after_secs } => format!("escalated-{after_secs}"),
        other => other.as_str().to_owned(),
    }
}

/// Whether the kind announces the request in full (rather than following up on it).
pub(crate) fn is_announcement(kind: &NoticeKind) -> bool {
    matches!(kind, NoticeKind::Created | NoticeKind::Escalated { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_only_escaped() {
        assert_eq!(
            escape_within("a<b>&c", 100, mrkdwn_char),
            "a&lt;b&gt;&amp;c"
        );
        assert_eq!(escape_within("[x](y)", 100, teams_char), "\\[x\\]\\(y\\)");
        assert_eq!(
            escape_within("\"'<>&", 100, html_char),
            "&quot;&#39;&lt;&gt;&amp;"
        );
        assert_eq!(
            escape_within("a\u{0}b\u{202e}c\nd", 100, plain_char),
            "a b c\nd"
        );
    }

    #[test]
    fn cuts_never_split_an_escape_or_a_character() {
        let raw = "<".repeat(1000);
        for limit in 40..60 {
            let out = escape_within_suffix(&raw, limit, mrkdwn_char, "…");
            assert!(out.chars().count() <= limit, "{limit}: {out}");
            let body = out.trim_end_matches('…');
            assert!(body.split("&lt;").all(str::is_empty), "{limit}: {out}");
        }
        let emoji = "🔥é".repeat(500);
        let out = escape_within(&emoji, 100, plain_char);
        assert!(out.chars().count() <= 100);
        assert!(out.ends_with(TRUNCATED));
        let teams = escape_within(&"*".repeat(500), 50, teams_char);
        assert!(
            teams
                .trim_end_matches(TRUNCATED)
                .split("\\*")
                .all(str::is_empty)
        );
    }

    #[test]
    fn exactly_at_the_limit_is_kept_whole() {
        assert_eq!(escape_within("abcde", 5, plain_char), "abcde");
        assert_eq!(escape_within("&", 5, mrkdwn_char), "&amp;");
        assert!(escape_within("&&", 5, mrkdwn_char).len() <= 5);
    }

    #[test]
    fn digest_prefix_keeps_twelve_hex_digits() {
        assert_eq!(
            digest_prefix("sha256:0123456789abcdef0123"),
            "sha256:0123456789ab"
        );
    }
}
