//! `countersign explain GATE --claims FILE`: offline, from the configuration file, what a
//! person or workload with these claims may do with a gate — request it, have it approved
//! automatically, fill which approval rules — and why: each CEL condition and its result.
//!
//! The claims become a [`Principal`] the way the identity crate maps a verified token (subject
//! from the issuer's `subject_claim`, groups from its `groups_claim`, e-mail only when
//! verified, the actor of a workload), and the verdicts come from the core's `policy`
//! functions, so they are the server's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;
use countersign_config::{Env, IssuerConfig, Settings};
use countersign_core::principal::VerifiedClaims;
use countersign_core::request::{content_digest, content_value};
use countersign_core::time::rfc3339;
use countersign_core::{
    Gate, Identity, Principal, PrincipalKind, Request, RequestId, State, policy,
};
use serde_json::{Map, Value, json};

use crate::clock;
use crate::failure::{Failure, Outcome, exit};
use crate::output::{self, Format};

/// Options of `countersign explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The gate.
    gate: String,
    /// The claims, as a JSON object (e.g. a decoded token's payload) or a JWT whose payload is
    /// read without verification.
    #[arg(long, value_name = "FILE")]
    claims: PathBuf,
    /// The configuration file.
    #[arg(
        long,
        short,
        env = "COUNTERSIGN_CONFIG",
        default_value = "countersign.toml"
    )]
    config: PathBuf,
    /// The configured issuer that vouches for the claims (default: the one whose URL is the
    /// claims' `iss`, or the only one).
    #[arg(long, value_name = "NAME")]
    issuer: Option<String>,
    /// A parameter of the hypothetical request, as KEY=VALUE; repeat for each.
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE", value_parser = super::parse_param)]
    params: Vec<(String, String)>,
    /// The hypothetical request's reason.
    #[arg(long)]
    reason: Option<String>,
    /// The requester's claims, for approver rules that compare with the requester (default: a
    /// requester without claims, so such comparisons fail closed).
    #[arg(long, value_name = "FILE")]
    requester: Option<PathBuf>,
    /// How to print the result.
    #[arg(long, short, value_enum, default_value_t)]
    output: Format,
}

/// `countersign explain`.
pub fn run(args: ExplainArgs) -> Outcome {
    let settings = countersign_config::load(&args.config, &Env::from_process()).map_err(|e| {
        Failure::error(format!(
            "{} is not valid ({} problem(s)); run `countersign check-config --config {}`",
            args.config.display(),
            e.len(),
            args.config.display()
        ))
    })?;
    let gate = settings.gates.get(&args.gate).ok_or_else(|| {
        let names: Vec<&str> = settings.gates.iter().map(|g| g.name.as_str()).collect();
        Failure::error(format!(
            "unknown gate '{}'; {} has: {}",
            args.gate,
            args.config.display(),
            names.join(", ")
        ))
    })?;

    let claims = read_claims(&args.claims)?;
    let issuer = choose_issuer(&settings, args.issuer.as_deref(), &claims)?;
    let principal = principal_from(issuer, claims, &args.claims)?;
    let requester = match &args.requester {
        // No requester given: a stand-in with no claims.
        None => Principal::from_verified(VerifiedClaims {
            identity: Identity::new("(requester)", "(requester)"),
            kind: PrincipalKind::Human,
            name: None,
            email: None,
            groups: Vec::new(),
            claims: Map::new(),
            auth_time: None,
            actor: None,
        }),
        Some(path) => {
            let claims = read_claims(path)?;
            // Its own `iss` first; else the issuer named for the main claims.
            let issuer = choose_issuer(&settings, None, &claims)
                .or_else(|_| choose_issuer(&settings, args.issuer.as_deref(), &claims))?;
            principal_from(issuer, claims, path)?
        }
    };

    let now = clock::now();
    let params = validate_params(gate, &args.params)?;
    let reason = args.reason.as_deref();
    let duration_secs = gate.grant.ttl.num_seconds();
    let content = content_value(&gate.name, &params, reason, None, duration_secs, &principal);
    let may = policy::may_request(gate, &principal, &content, now);
    let auto = policy::auto_approves(gate, &principal, &content, now);
    let auto_error = gate.auto_approve.as_ref().and_then(|c| {
        c.evaluate(&[
            ("principal", &principal.to_condition_value()),
            ("request", &content),
            ("now", &Value::String(rfc3339(&now))),
        ])
        .error
    });

    let request = Request {
        id: RequestId::generate(now),
        gate: gate.name.clone(),
        digest: content_digest(&gate.name, &params, reason, None, duration_secs, &requester),
        params,
        reason: reason.map(str::to_string),
        ticket: None,
        requester: requester.clone(),
        duration_secs,
        state: State::Pending,
        approval: None,
        version: 1,
        created_at: now,
        expires_at: now + gate.pending_ttl,
        decided_at: None,
        updated_at: now,
        decisions: Vec::new(),
    };
    let checks = policy::approver_checks(gate, &request, &principal, now);

    let mut notes = Vec::new();
    if principal.kind() == PrincipalKind::Workload {
        notes.push("a workload never approves, whatever the rules say".to_string());
    }
    if args.requester.is_none() {
        notes.push(
            "the rules were evaluated for a requester without claims; pass --requester FILE for a real one"
                .to_string(),
        );
    } else if requester.same_person_as(&principal) {
        notes.push("nobody approves their own request, whatever the rules say".to_string());
    }
    let rules: Vec<Value> = gate
        .rules
        .iter()
        .zip(&checks)
        .map(|(rule, check)| {
            json!({
                "rule": check.rule,
                "stage": check.stage,
                "min_approvals": rule.min_approvals,
                "eligible": check.eligible,
                "condition": rule.approvers.source(),
                "error": check.error,
            })
        })
        .collect();
    let report = json!({
        "gate": gate.name,
        "principal": principal.to_condition_value(),
        "request": {
            "allowed": may.value,
            "condition": gate.requesters.source(),
            "error": may.error,
        },
        "auto_approve": {
            "matches": auto,
            "condition": gate.auto_approve.as_ref().map(|c| c.source()),
            "error": auto_error,
        },
        "rules": rules,
        "notes": notes,
    });
    match args.output {
        Format::Json => output::json(&report),
        Format::Text => text(&report, &principal)
            .iter()
            .for_each(|l| output::out(l)),
    }
    Ok(exit::OK)
}

fn text(report: &Value, principal: &Principal) -> Vec<String> {
    let paint = output::stdout_paint();
    let verdict = |yes: bool| {
        if yes {
            paint.green("yes")
        } else {
            paint.red("no ")
        }
    };
    let result = |value: bool, error: &Value| match error.as_str() {
        Some(e) => format!("false (it failed to evaluate: {e}; errors count as false)"),
        None => value.to_string(),
    };
    let mut lines = vec![format!(
        "{} for {}:{}{} ({}, groups: {})",
        paint.bold(report["gate"].as_str().unwrap_or_default()),
        principal.identity().issuer,
        principal.identity().subject,
        principal
            .name()
            .map(|n| format!(" {n}"))
            .unwrap_or_default(),
        principal.kind().as_str(),
        if principal.groups().is_empty() {
            "none".to_string()
        } else {
            principal.groups().join(", ")
        }
    )];
    let r = &report["request"];
    lines.push(format!(
        "  request       {}  requesters: {}  → {}",
        verdict(r["allowed"] == true),
        r["condition"].as_str().unwrap_or_default(),
        result(r["allowed"] == true, &r["error"])
    ));
    let a = &report["auto_approve"];
    match a["condition"].as_str() {
        Some(condition) => lines.push(format!(
            "  auto-approve  {}  auto_approve: {condition}  → {}",
            verdict(a["matches"] == true),
            result(a["matches"] == true, &a["error"])
        )),
        None => lines.push(format!(
            "  auto-approve  {}  (the gate has no auto_approve condition)",
            verdict(false)
        )),
    }
    for (i, rule) in report["rules"].as_array().into_iter().flatten().enumerate() {
        lines.push(format!(
            "  {}{}  rule {} (stage {}, {} needed): {}  → {}",
            if i == 0 {
                "approve       "
            } else {
                "              "
            },
            verdict(rule["eligible"] == true),
            rule["rule"].as_str().unwrap_or_default(),
            rule["stage"],
            rule["min_approvals"],
            rule["condition"].as_str().unwrap_or_default(),
            result(rule["eligible"] == true, &rule["error"])
        ));
    }
    for note in report["notes"].as_array().into_iter().flatten() {
        lines.push(format!("  note: {}", note.as_str().unwrap_or_default()));
    }
    lines
}

/// A JSON object of claims, or a JWT's payload (read, not verified: this is an offline what-if).
fn read_claims(path: &Path) -> Result<Map<String, Value>, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::error(format!(
            "cannot read the claims file {}: {e}",
            path.display()
        ))
    })?;
    let text = text.trim();
    if !text.starts_with('{')
        && let Some(claims) = crate::auth::oauth::unverified_claims(text)
    {
        return Ok(claims);
    }
    match serde_json::from_str(text) {
        Ok(Value::Object(claims)) => Ok(claims),
        _ => Err(Failure::error(format!(
            "{} holds neither a JSON object of claims nor a JWT",
            path.display()
        ))),
    }
}

fn choose_issuer<'a>(
    settings: &'a Settings,
    wanted: Option<&str>,
    claims: &Map<String, Value>,
) -> Result<&'a IssuerConfig, Failure> {
    let names = || {
        settings
            .issuers
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(name) = wanted {
        return settings.issuer(name).ok_or_else(|| {
            Failure::error(format!(
                "no issuer named '{name}' in the configuration; it has: {}",
                names()
            ))
        });
    }
    let iss = claims.get("iss").and_then(Value::as_str);
    if let Some(issuer) = settings
        .issuers
        .iter()
        .find(|i| Some(i.url.as_str()) == iss)
    {
        return Ok(issuer);
    }
    match settings.issuers.as_slice() {
        [one] => Ok(one),
        _ => Err(Failure::error(format!(
            "the claims' iss names no configured issuer; pass --issuer with one of: {}",
            names()
        ))),
    }
}

/// Maps claims onto a principal exactly as the server does for a verified token.
fn principal_from(
    issuer: &IssuerConfig,
    claims: Map<String, Value>,
    path: &Path,
) -> Result<Principal, Failure> {
    let settings = countersign_server::app::issuer_settings(issuer)
        .map_err(|e| Failure::error(format!("{e}")))?;
    countersign_identity::principal_from_claims(&settings, claims)
        .map_err(|e| Failure::error(format!("{}: {e}", path.display())))
}

/// The `-p` parameters, checked against the gate's declarations as the server would.
fn validate_params(
    gate: &Gate,
    given: &[(String, String)],
) -> Result<BTreeMap<String, Value>, Failure> {
    let given = super::params_object(given)?;
    let mut problems = Vec::new();
    let mut out = BTreeMap::new();
    for name in given.keys() {
        if !gate.params.contains_key(name) {
            problems.push(format!("unknown parameter '{name}'"));
        }
    }
    for (name, spec) in &gate.params {
        // Missing parameters are left out: conditions that read them fail closed, and say so.
        if let Some(value) = given.get(name) {
            match spec.validate(value) {
                Ok(v) => {
                    out.insert(name.clone(), v);
                }
                Err(m) => problems.push(m),
            }
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(Failure::error(format!(
            "{}; run `countersign gates {}` against a server to see its parameters",
            problems.join("; "),
            gate.name
        )))
    }
}
