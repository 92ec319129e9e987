//! The `[[gates]]` sections, from the main file and the gates directory: parameters, the
//! grant, approval rules and webhooks, checked and compiled into the core's `Gate`.

use std::collections::{BTreeMap, HashMap};

use chrono::Duration;
use countersign_core::audit::AuditAction;
use countersign_core::gate::{APPROVER_VARIABLES, REQUESTER_VARIABLES};
use countersign_core::time::format_duration;
use countersign_core::{Gate, GrantSpec, ParamSpec, ParamType, Requirement, Rule, WebhookSpec};
use regex::Regex;

use countersign_core::channel::Channels;
use countersign_core::notice::GateNotify;

use crate::check::{Ctx, Fields, check_url, element_label, is_name};
use crate::notifications::{self, NotificationSettings};
use crate::settings::DEFAULT_GRANT_TTL;
use crate::tree::{Node, Origin, Value, one_line};

const KEYS: &[&str] = &[
    "name",
    "description",
    "requesters",
    "reason",
    "ticket",
    "pending_ttl",
    "grant",
    "params",
    "auto_approve",
    "break_glass",
    "rules",
    "webhooks",
    "notify",
    "notify_requester",
    "remind",
    "escalate_after",
    "escalate_to",
];
const GRANT_KEYS: &[&str] = &["audience", "scope", "ttl", "max_ttl", "single_use"];
const PARAM_KEYS: &[&str] = &[
    "type",
    "required",
    "pattern",
    "max_length",
    "min",
    "max",
    "values",
    "description",
];
const RULE_KEYS: &[&str] = &[
    "name",
    "approvers",
    "min_approvals",
    "stage",
    "reject_threshold",
    "notify",
];
const WEBHOOK_KEYS: &[&str] = &["url", "secret", "secret_file", "events"];
const PARAM_TYPES: &[&str] = &["string", "int", "bool", "enum"];
/// Which parameter type each constraint belongs to.
const CONSTRAINTS: &[(&str, &str)] = &[
    ("pattern", "string"),
    ("max_length", "string"),
    ("min", "int"),
    ("max", "int"),
    ("values", "enum"),
];

/// Resolves every gate (main file first, then the gates directory in name order). Names are
/// unique across all files.
pub(crate) fn resolve_all(
    ctx: &mut Ctx,
    root: &Fields<'_>,
    notifications: &NotificationSettings,
) -> Vec<Gate> {
    let Some(node) = root.get("gates") else {
        return Vec::new();
    };
    let items = ctx.tables(node, "gates", "[[gates]]");
    let mut seen = HashMap::new();
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| resolve_one(ctx, item, i, &mut seen, notifications))
        .collect()
}

fn resolve_one(
    ctx: &mut Ctx,
    node: &Node,
    index: usize,
    seen: &mut HashMap<String, Origin>,
    notifications: &NotificationSettings,
) -> Option<Gate> {
    let path = format!("gates[{}]", element_label(node, index));
    let f = Fields::open(ctx, node, path, KEYS)?;

    let name = match f.get("name") {
        None => {
            f.missing(ctx, "name", "missing: every gate needs a name, e.g. name = \"deploy-prod\"");
            None
        }
        Some(n) => f.string(ctx, "name").and_then(|name| {
            if !is_name(name, &['-'], 63) {
                ctx.report(
                    &n.origin,
                    &f.key("name"),
                    format!(
                        "'{name}' is not a valid gate name: use lowercase letters, digits and '-', starting with a letter, at most 63 characters"
                    ),
                );
                return None;
            }
            if let Some(first) = seen.get(name) {
                let at = ctx.describe(first);
                ctx.report(
                    &n.origin,
                    &f.key("name"),
                    format!("gate '{name}' is already defined at {at}"),
                );
                return None;
            }
            seen.insert(name.to_string(), n.origin.clone());
            Some(name.to_string())
        }),
    };

    let description = f.string(ctx, "description").unwrap_or_default().to_string();
    let requesters = match f.get("requesters") {
        None => {
            f.missing(
                ctx,
                "requesters",
                "missing: nobody may request a gate until it says who may (write requesters = 'true' to let anyone signed in request)",
            );
            None
        }
        Some(_) => f.condition(ctx, "requesters", REQUESTER_VARIABLES),
    };
    let reason = requirement(ctx, &f, "reason");
    let ticket = requirement(ctx, &f, "ticket");
    let pending_ttl = f
        .duration(ctx, "pending_ttl")
        .unwrap_or(Duration::hours(24));

    let (params, declared) = params(ctx, &f);
    let grant = grant(ctx, &f, name.as_deref().unwrap_or_default(), &declared);
    let auto_approve = f.condition(ctx, "auto_approve", REQUESTER_VARIABLES);
    let break_glass = f.condition(ctx, "break_glass", REQUESTER_VARIABLES);
    let rules = rules(ctx, &f, &notifications.channels);
    let webhooks = webhooks(ctx, &f);
    let notify = gate_notify(ctx, &f, notifications, pending_ttl);

    let no_rules = match f.get("rules") {
        None => true,
        Some(n) => matches!(&n.value, Value::Array(items) if items.is_empty()),
    };
    if no_rules && !f.has("auto_approve") {
        let origin = f.get("rules").map_or(f.origin, |n| &n.origin);
        ctx.report(
            origin,
            &f.key("rules"),
            "a gate needs at least one [[gates.rules]] section (or an auto_approve condition): otherwise no request could ever be approved",
        );
    }

    let name = name?;
    let grant = grant.map(|mut g| {
        // The audience defaults to the gate's name, known only now.
        if g.audience.is_empty() {
            g.audience = name.clone();
        }
        g
    });
    Some(Gate {
        name,
        description,
        params: params?,
        requesters: requesters?,
        reason,
        ticket,
        pending_ttl,
        grant: grant?,
        rules: rules?,
        auto_approve,
        break_glass,
        webhooks: webhooks?,
        notify: notify?,
    })
}

fn requirement(ctx: &mut Ctx, f: &Fields<'_>, key: &str) -> Requirement {
    match f.choice(ctx, key, &["required", "optional"]) {
        Some("required") => Requirement::Required,
        _ => Requirement::Optional,
    }
}

/// The declared parameters, and every declared name (even of a parameter with problems, so
/// that the scope check does not add a second, misleading complaint).
fn params(ctx: &mut Ctx, f: &Fields<'_>) -> (Option<BTreeMap<String, ParamSpec>>, Vec<String>) {
    let Some(node) = f.get("params") else {
        return (Some(BTreeMap::new()), Vec::new());
    };
    let Value::Table(table) = &node.value else {
        let kind = node.value.kind();
        ctx.report(
            &node.origin,
            &f.key("params"),
            format!(
                "expected a table of parameters such as params.service = {{ type = \"string\" }}, found {kind}"
            ),
        );
        return (None, Vec::new());
    };
    let mut out = BTreeMap::new();
    let mut ok = true;
    let declared = table.entries.iter().map(|e| e.key.clone()).collect();
    for entry in &table.entries {
        let path = format!("{}.{}", f.key("params"), entry.key);
        if !is_name(&entry.key, &['_'], 40) {
            ctx.report(
                &entry.key_origin,
                &path,
                format!(
                    "'{}' is not a valid parameter name: use lowercase letters, digits and '_', starting with a letter, at most 40 characters",
                    entry.key
                ),
            );
            ok = false;
            continue;
        }
        match param(ctx, &entry.key, &entry.node, path) {
            Some(p) => {
                out.insert(entry.key.clone(), p);
            }
            None => ok = false,
        }
    }
    (ok.then_some(out), declared)
}

fn param(ctx: &mut Ctx, name: &str, node: &Node, path: String) -> Option<ParamSpec> {
    let f = Fields::open(ctx, node, path, PARAM_KEYS)?;
    let ty = match f.get("type") {
        None => {
            f.missing(ctx, "type", "missing: one of string, int, bool or enum");
            None
        }
        Some(_) => f.choice(ctx, "type", PARAM_TYPES),
    };
    let required = f.boolean(ctx, "required").unwrap_or(false);
    let description = f.string(ctx, "description").map(str::to_string);

    // A constraint that does not belong to the type would be silently ignored at request
    // time; say so now instead.
    let mut misplaced = false;
    if let Some(ty) = ty {
        for (key, owner) in CONSTRAINTS {
            if *owner != ty
                && let Some(n) = f.get(key)
            {
                ctx.report(
                    &n.origin,
                    &f.key(key),
                    format!("{key} applies only to {owner} parameters (this one is {ty})"),
                );
                misplaced = true;
            }
        }
    }

    let spec = match ty? {
        "string" => {
            let pattern = match (f.get("pattern"), f.string(ctx, "pattern")) {
                (Some(n), Some(raw)) => match compile_pattern(raw) {
                    Ok(re) => Some(Some(re)),
                    Err(e) => {
                        ctx.report(
                            &n.origin,
                            &f.key("pattern"),
                            format!("'{raw}' is not a valid regular expression: {e}"),
                        );
                        None
                    }
                },
                (Some(_), None) => None,
                (None, _) => Some(None),
            };
            let max_length = match f.get("max_length") {
                None => Some(256),
                Some(_) => f.integer(ctx, "max_length", 1, 65_536),
            };
            ParamType::String {
                pattern: pattern?,
                max_length: usize::try_from(max_length?).ok()?,
            }
        }
        "int" => {
            let lo = i128::from(i64::MIN);
            let hi = i128::from(i64::MAX);
            let min = f.integer(ctx, "min", lo, hi);
            let max = f.integer(ctx, "max", lo, hi);
            if let (Some(a), Some(b), Some(n)) = (min, max, f.get("max"))
                && b < a
            {
                ctx.report(
                    &n.origin,
                    &f.key("max"),
                    format!("max ({b}) is smaller than min ({a})"),
                );
            }
            if f.has("min") != min.is_some() || f.has("max") != max.is_some() {
                return None;
            }
            ParamType::Int {
                min: min.and_then(|v| i64::try_from(v).ok()),
                max: max.and_then(|v| i64::try_from(v).ok()),
            }
        }
        "bool" => ParamType::Bool,
        _ => {
            let Some(n) = f.get("values") else {
                f.missing(
                    ctx,
                    "values",
                    "missing: an enum parameter lists its values, e.g. values = [\"eu\", \"us\"]",
                );
                return None;
            };
            let values = f.strings(ctx, "values")?;
            if values.is_empty() {
                ctx.report(&n.origin, &f.key("values"), "must list at least one value");
                return None;
            }
            for (i, v) in values.iter().enumerate() {
                if v.is_empty() {
                    ctx.report(&n.origin, &f.key("values"), "a value must not be empty");
                    return None;
                }
                if values[..i].contains(v) {
                    ctx.report(
                        &n.origin,
                        &f.key("values"),
                        format!("'{v}' is listed twice"),
                    );
                    return None;
                }
            }
            ParamType::Enum { values }
        }
    };
    if misplaced {
        return None;
    }
    Some(ParamSpec {
        name: name.to_string(),
        ty: spec,
        required,
        description,
    })
}

/// Compiles a parameter pattern so that it must match the whole value.
fn compile_pattern(raw: &str) -> Result<Regex, String> {
    // Checked as written first, so an error points at what the operator typed rather than at
    // the anchoring added around it.
    Regex::new(raw).map_err(|e| regex_reason(&e))?;
    Regex::new(&format!("^(?:{raw})$")).map_err(|e| regex_reason(&e))
}

fn regex_reason(e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(text) => text
            .lines()
            .find_map(|l| l.trim().strip_prefix("error: "))
            .map_or_else(|| one_line(text), str::to_string),
        regex::Error::CompiledTooBig(limit) => {
            format!("the compiled pattern would be larger than {limit} bytes")
        }
        other => one_line(&other.to_string()),
    }
}

fn grant(
    ctx: &mut Ctx,
    gate: &Fields<'_>,
    gate_name: &str,
    declared: &[String],
) -> Option<GrantSpec> {
    let default_ttl = DEFAULT_GRANT_TTL;
    let Some(node) = gate.get("grant") else {
        return Some(GrantSpec {
            audience: gate_name.to_string(),
            scope: None,
            ttl: default_ttl,
            max_ttl: default_ttl,
            single_use: false,
        });
    };
    let f = Fields::open(ctx, node, gate.key("grant"), GRANT_KEYS)?;
    let audience = f.text(ctx, "audience").unwrap_or(gate_name).to_string();
    let scope = f.string(ctx, "scope").map(str::to_string);
    if let (Some(template), Some(n)) = (&scope, f.get("scope")) {
        for message in check_scope(template, declared) {
            ctx.report(&n.origin, &f.key("scope"), message);
        }
    }
    let ttl = f.duration(ctx, "ttl");
    let max_ttl = f.duration(ctx, "max_ttl");
    let ttl_ok = ttl.is_some() || !f.has("ttl");
    let ttl = ttl.unwrap_or(default_ttl);
    if let (true, Some(max), Some(n)) = (ttl_ok, max_ttl, f.get("max_ttl"))
        && max < ttl
    {
        ctx.report(
            &n.origin,
            &f.key("max_ttl"),
            format!(
                "max_ttl ({}) must be at least ttl ({})",
                format_duration(max),
                format_duration(ttl)
            ),
        );
    }
    let single_use = f.boolean(ctx, "single_use").unwrap_or(false);
    Some(GrantSpec {
        audience,
        scope,
        ttl,
        max_ttl: max_ttl.unwrap_or(ttl),
        single_use,
    })
}

/// Checks the `{{params.NAME}}` placeholders of a scope template.
fn check_scope(template: &str, declared: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            problems.push("a '{{' is not closed with '}}'".to_string());
            break;
        };
        let inner = &after[..end];
        match inner.strip_prefix("params.") {
            Some(p) if declared.iter().any(|d| d == p) => {}
            Some(p) => problems.push(if declared.is_empty() {
                format!("{{{{params.{p}}}}} names no declared parameter (this gate declares none)")
            } else {
                format!(
                    "{{{{params.{p}}}}} names no declared parameter (declared: {})",
                    declared.join(", ")
                )
            }),
            None => problems.push(format!(
                "'{{{{{inner}}}}}' is not a placeholder: write {{{{params.NAME}}}}"
            )),
        }
        rest = &after[end + 2..];
    }
    problems
}

fn rules(ctx: &mut Ctx, gate: &Fields<'_>, channels: &Channels) -> Option<Vec<Rule>> {
    let Some(node) = gate.get("rules") else {
        return Some(Vec::new());
    };
    let items = ctx.tables(node, &gate.key("rules"), "[[gates.rules]]");
    if !matches!(node.value, Value::Array(_)) {
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    let mut seen: HashMap<String, Origin> = HashMap::new();
    // (stage, where it was set, its key) for the contiguity check.
    let mut stages: Vec<(u32, Origin, String)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{}[{}]", gate.key("rules"), element_label(item, i));
        let Some(f) = Fields::open(ctx, item, path, RULE_KEYS) else {
            ok = false;
            continue;
        };
        let name = match f.get("name") {
            None => {
                f.missing(
                    ctx,
                    "name",
                    "missing: every rule needs a name, shown as what a request waits for, e.g. name = \"sre\"",
                );
                None
            }
            Some(n) => f.string(ctx, "name").and_then(|name| {
                if name.trim().is_empty()
                    || name.chars().count() > 64
                    || name.contains(|c: char| c.is_control() || c == '[' || c == ']')
                {
                    ctx.report(
                        &n.origin,
                        &f.key("name"),
                        format!(
                            "'{name}' is not a valid rule name: 1 to 64 characters, no brackets"
                        ),
                    );
                    return None;
                }
                if let Some(first) = seen.get(name) {
                    let at = ctx.describe(first);
                    ctx.report(
                        &n.origin,
                        &f.key("name"),
                        format!("rule '{name}' is already defined in this gate at {at}"),
                    );
                    return None;
                }
                seen.insert(name.to_string(), n.origin.clone());
                Some(name.to_string())
            }),
        };
        let approvers = match f.get("approvers") {
            None => {
                f.missing(
                    ctx,
                    "approvers",
                    "missing: who may approve, as a condition over approver and request, e.g. approvers = '\"sre\" in approver.groups'",
                );
                None
            }
            Some(_) => f.condition(ctx, "approvers", APPROVER_VARIABLES),
        };
        let u32_max = i128::from(u32::MAX);
        let min_approvals = number(ctx, &f, "min_approvals", 50);
        let stage = number(ctx, &f, "stage", u32_max);
        let reject_threshold = number(ctx, &f, "reject_threshold", u32_max);
        let notify = channel_list(ctx, &f, "notify", channels);
        if let Some(stage) = stage {
            let origin = f.get("stage").map_or(f.origin, |n| &n.origin).clone();
            stages.push((stage, origin, f.key("stage")));
        }
        match (
            name,
            approvers,
            min_approvals,
            stage,
            reject_threshold,
            notify,
        ) {
            (
                Some(name),
                Some(approvers),
                Some(min_approvals),
                Some(stage),
                Some(reject),
                Some(notify),
            ) => {
                out.push(Rule {
                    name,
                    approvers,
                    min_approvals,
                    stage,
                    reject_threshold: reject,
                    notify,
                });
            }
            _ => ok = false,
        }
    }

    // Stage N opens when every lower stage is met; a missing stage would never be met.
    let mut distinct: Vec<u32> = stages.iter().map(|(s, _, _)| *s).collect();
    distinct.sort_unstable();
    distinct.dedup();
    for (expected, stage) in (1u32..).zip(distinct) {
        if stage != expected {
            if let Some((_, origin, key)) = stages.iter().find(|(s, _, _)| *s == stage) {
                ctx.report(
                    origin,
                    key,
                    format!(
                        "stage {stage} has rules but stage {expected} has none: stages must be numbered 1, 2, 3… without gaps"
                    ),
                );
            }
            ok = false;
            break;
        }
    }

    // Stable: rules of one stage keep the order they were written in.
    out.sort_by_key(|r| r.stage);
    ok.then_some(out)
}

/// A small positive count (`min_approvals`, `stage`, `reject_threshold`), default 1.
fn number(ctx: &mut Ctx, f: &Fields<'_>, key: &str, max: i128) -> Option<u32> {
    if !f.has(key) {
        return Some(1);
    }
    f.integer(ctx, key, 1, max)
        .and_then(|n| u32::try_from(n).ok())
}

/// A list of channel names (`notify`, `escalate_to`), each configured, each once.
fn channel_list(
    ctx: &mut Ctx,
    f: &Fields<'_>,
    key: &str,
    channels: &Channels,
) -> Option<Vec<String>> {
    let Some(node) = f.get(key) else {
        return Some(Vec::new());
    };
    let mut names = f.strings(ctx, key)?;
    names.dedup();
    notifications::check_refs(ctx, node, &f.key(key), &names, channels).then_some(names)
}

/// A gate's `notify`, `notify_requester`, `remind`, `escalate_after` and `escalate_to`.
fn gate_notify(
    ctx: &mut Ctx,
    f: &Fields<'_>,
    notifications: &NotificationSettings,
    pending_ttl: Duration,
) -> Option<GateNotify> {
    let channels = channel_list(ctx, f, "notify", &notifications.channels);
    let escalate_to = channel_list(ctx, f, "escalate_to", &notifications.channels);
    let notify_requester = f.boolean(ctx, "notify_requester").unwrap_or(false);
    if notify_requester
        && notifications.requester_channel.is_none()
        && let Some(n) = f.get("notify_requester")
    {
        ctx.report(
            &n.origin,
            &f.key("notify_requester"),
            "the requester is told by e-mail: configure an e-mail channel (and, when there are several, notifications.requester_channel)",
        );
    }
    let mut remind = Vec::new();
    let mut remind_ok = true;
    if let Some(n) = f.get("remind") {
        for text in f.strings(ctx, "remind").unwrap_or_default() {
            match countersign_core::time::parse_duration(&text) {
                Ok(d) if d > Duration::zero() && d < pending_ttl => remind.push(d),
                Ok(_) => {
                    ctx.report(
                        &n.origin,
                        &f.key("remind"),
                        format!(
                            "'{text}' before expiry does not fit in pending_ttl ({}): a reminder must come after the request is made",
                            format_duration(pending_ttl)
                        ),
                    );
                    remind_ok = false;
                }
                Err(e) => {
                    ctx.report(&n.origin, &f.key("remind"), format!("'{text}': {e}"));
                    remind_ok = false;
                }
            }
        }
        remind.sort_unstable_by(|a, b| b.cmp(a));
        remind.dedup();
    }
    let escalate_after = f.duration(ctx, "escalate_after");
    let escalate_ok = match (f.get("escalate_after"), escalate_after, &escalate_to) {
        (Some(n), Some(after), Some(to)) => {
            if to.is_empty() {
                ctx.report(
                    &n.origin,
                    &f.key("escalate_after"),
                    "escalate_after needs escalate_to = [\"channel\", …]",
                );
                false
            } else if after >= pending_ttl {
                ctx.report(
                    &n.origin,
                    &f.key("escalate_after"),
                    format!(
                        "{} is not before the request expires (pending_ttl {})",
                        format_duration(after),
                        format_duration(pending_ttl)
                    ),
                );
                false
            } else {
                true
            }
        }
        (None, _, Some(to)) if !to.is_empty() => {
            if let Some(n) = f.get("escalate_to") {
                ctx.report(
                    &n.origin,
                    &f.key("escalate_to"),
                    "escalate_to needs escalate_after = \"15m\" (how long nobody acted)",
                );
            }
            false
        }
        (Some(_), None, _) => false,
        _ => true,
    };
    if !(remind_ok && escalate_ok) {
        return None;
    }
    Some(GateNotify {
        channels: channels?,
        notify_requester,
        requester_channel: notify_requester
            .then(|| notifications.requester_channel.clone())
            .flatten(),
        remind,
        escalate_after,
        escalate_to: escalate_to?,
    })
}

fn webhooks(ctx: &mut Ctx, gate: &Fields<'_>) -> Option<Vec<WebhookSpec>> {
    let Some(node) = gate.get("webhooks") else {
        return Some(Vec::new());
    };
    let items = ctx.tables(node, &gate.key("webhooks"), "[[gates.webhooks]]");
    if !matches!(node.value, Value::Array(_)) {
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let path = format!("{}[{i}]", gate.key("webhooks"));
        match webhook(ctx, item, path) {
            Some(w) => out.push(w),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn webhook(ctx: &mut Ctx, node: &Node, path: String) -> Option<WebhookSpec> {
    let f = Fields::open(ctx, node, path, WEBHOOK_KEYS)?;
    let url = match f.get("url") {
        None => {
            f.missing(ctx, "url", "missing: where to POST the events");
            None
        }
        // Not quoted back: chat and CI webhook URLs often carry a token in the path.
        Some(n) => f
            .string(ctx, "url")
            .and_then(|text| match check_url(text, true, false) {
                Ok(_) => Some(text.to_string()),
                Err(e) => {
                    ctx.report(&n.origin, &f.key("url"), e);
                    None
                }
            }),
    };

    let mut secret_ok = true;
    let secret = if f.exclusive(ctx, "secret", "secret_file") {
        match (f.get("secret"), f.get("secret_file")) {
            (Some(n), _) => ctx
                .inline_secret(n, &f.key("secret"))
                .map(|s| (s, n, "secret")),
            (_, Some(n)) => ctx
                .read_secret_file(n, &f.key("secret_file"))
                .map(|s| (s, n, "secret_file")),
            _ => None,
        }
    } else {
        secret_ok = false;
        None
    };
    if (f.has("secret") || f.has("secret_file")) && secret.is_none() {
        secret_ok = false;
    }
    let secret = match secret {
        Some((s, n, key)) => {
            let rest = s.expose().strip_prefix("whsec_");
            if rest.is_none_or(str::is_empty) {
                ctx.report(
                    &n.origin,
                    &f.key(key),
                    "a webhook secret must start with whsec_ followed by the key (the Standard Webhooks format)",
                );
                secret_ok = false;
            }
            Some(s)
        }
        None => None,
    };

    let events = match f.get("events") {
        None => {
            f.missing(
                ctx,
                "events",
                format!(
                    "missing: the events to send, e.g. events = [\"request.approved\"] (any of: {})",
                    webhook_event_names()
                ),
            );
            None
        }
        Some(n) => f.strings(ctx, "events").and_then(|mut list| {
            if list.is_empty() {
                ctx.report(&n.origin, &f.key("events"), "must list at least one event");
                return None;
            }
            let mut good = true;
            let mut unique = Vec::with_capacity(list.len());
            for e in list.drain(..) {
                match AuditAction::parse(&e).filter(|a| a.is_webhook_event()) {
                    Some(event) => {
                        if !unique.contains(&event) {
                            unique.push(event);
                        }
                    }
                    None => {
                        // The grant's event had a second name once; say where it went.
                        let hint = if e == "grant.redeemed" {
                            "; it is called grant.issued now, as in the audit log".to_owned()
                        } else {
                            String::new()
                        };
                        ctx.report(
                            &n.origin,
                            &f.key("events"),
                            format!(
                                "'{e}' is not an event (known: {}){hint}",
                                webhook_event_names()
                            ),
                        );
                        good = false;
                    }
                }
            }
            good.then_some(unique)
        }),
    };

    if !secret_ok {
        return None;
    }
    Some(WebhookSpec {
        url: url?,
        events: events?,
        secret,
    })
}

/// The events a webhook may subscribe to, for messages.
fn webhook_event_names() -> String {
    AuditAction::webhook_events()
        .map(AuditAction::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_templates() {
        let declared = vec!["service".to_string()];
        assert!(check_scope("deploy:{{params.service}}", &declared).is_empty());
        assert!(check_scope("plain", &[]).is_empty());
        let p = check_scope("deploy:{{params.servce}}", &declared);
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("{{params.servce}}"), "{}", p[0]);
        assert!(p[0].contains("declared: service"));
        assert!(check_scope("x:{{ params.service }}", &declared)[0].contains("not a placeholder"));
        assert!(check_scope("x:{{params.service", &declared)[0].contains("not closed"));
    }

    #[test]
    fn patterns_are_anchored() {
        let re = compile_pattern("[a-z]+").unwrap();
        assert!(re.is_match("abc"));
        assert!(!re.is_match("abc1"));
        let re = compile_pattern("a|b").unwrap();
        assert!(!re.is_match("ab"));
        assert!(compile_pattern("(").unwrap_err().contains("unclosed"));
    }
}
