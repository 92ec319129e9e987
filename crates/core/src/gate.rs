//! Gates: what can be requested, with which parameters, by whom, and what approval needs.
//! A gate is built once from configuration (conditions compiled, limits checked) and is
//! immutable afterwards.

use std::collections::BTreeMap;
use std::sync::Arc;

use regex::Regex;
use serde_json::Value;

use crate::condition::Condition;

/// Variables a `requesters`, `auto_approve` or `break_glass` condition receives.
pub const REQUESTER_VARIABLES: &[&str] = &["principal", "request", "now"];
/// Variables an approval rule's `approvers` condition receives.
pub const APPROVER_VARIABLES: &[&str] = &["approver", "request", "now"];

/// Whether a request field must, may, or must not be given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Requirement {
    /// The field must be present and non-empty.
    Required,
    /// The field may be given.
    #[default]
    Optional,
}

/// The type of a gate parameter and its constraints.
#[derive(Clone, Debug)]
pub enum ParamType {
    /// A string, optionally matching a pattern (anchored as written).
    String {
        /// The pattern the whole value must match.
        pattern: Option<Regex>,
        /// The longest value accepted, in characters.
        max_length: usize,
    },
    /// A 64-bit integer within optional bounds.
    Int {
        /// The smallest value accepted.
        min: Option<i64>,
        /// The largest value accepted.
        max: Option<i64>,
    },
    /// `true` or `false`.
    Bool,
    /// One of a fixed list of strings.
    Enum {
        /// The values accepted.
        values: Vec<String>,
    },
}

/// One declared parameter.
#[derive(Clone, Debug)]
pub struct ParamSpec {
    /// Its name, `[a-z][a-z0-9_]*`.
    pub name: String,
    /// Its type and constraints.
    pub ty: ParamType,
    /// Whether a request must give it.
    pub required: bool,
    /// Shown in forms and `explain`.
    pub description: Option<String>,
}

impl ParamSpec {
    /// The type's name as written in configuration.
    pub fn type_name(&self) -> &'static str {
        match self.ty {
            ParamType::String { .. } => "string",
            ParamType::Int { .. } => "int",
            ParamType::Bool => "bool",
            ParamType::Enum { .. } => "enum",
        }
    }

    /// Checks one supplied value and returns it in canonical form. Integers and booleans may
    /// arrive as strings (from a command line or a form) and are converted.
    pub fn validate(&self, value: &Value) -> Result<Value, String> {
        let name = &self.name;
        match &self.ty {
            ParamType::String {
                pattern,
                max_length,
            } => {
                let Value::String(s) = value else {
                    return Err(format!("parameter '{name}' must be a string"));
                };
                if s.chars().count() > *max_length {
                    return Err(format!(
                        "parameter '{name}' is longer than {max_length} characters"
                    ));
                }
                if s.chars().any(|c| c.is_control()) {
                    return Err(format!("parameter '{name}' contains a control character"));
                }
                if let Some(re) = pattern
                    && !re.is_match(s)
                {
                    return Err(format!("parameter '{name}' does not match {}", re.as_str()));
                }
                Ok(value.clone())
            }
            ParamType::Int { min, max } => {
                let n = match value {
                    Value::Number(n) => n.as_i64(),
                    Value::String(s) if !s.starts_with('+') => s.trim().parse::<i64>().ok(),
                    _ => None,
                }
                .ok_or_else(|| format!("parameter '{name}' must be an integer"))?;
                if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                    let lo = min.map_or("-inf".into(), |m| m.to_string());
                    let hi = max.map_or("inf".into(), |m| m.to_string());
                    return Err(format!("parameter '{name}' must be between {lo} and {hi}"));
                }
                Ok(Value::from(n))
            }
            ParamType::Bool => match value {
                Value::Bool(b) => Ok(Value::Bool(*b)),
                Value::String(s) if s == "true" => Ok(Value::Bool(true)),
                Value::String(s) if s == "false" => Ok(Value::Bool(false)),
                _ => Err(format!("parameter '{name}' must be true or false")),
            },
            ParamType::Enum { values } => match value {
                Value::String(s) if values.contains(s) => Ok(value.clone()),
                _ => Err(format!(
                    "parameter '{name}' must be one of: {}",
                    values.join(", ")
                )),
            },
        }
    }
}

/// One approval requirement: `min_approvals` distinct eligible people, in a stage.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Its name, unique within the gate; shown as what a request waits for.
    pub name: String,
    /// Who is eligible, evaluated with the approver's claims at decision time.
    pub approvers: Condition,
    /// How many distinct people must approve (at least 1).
    pub min_approvals: u32,
    /// Rules of stage N open only when every rule of lower stages is met.
    pub stage: u32,
    /// How many eligible rejections reject the request (1: any one is a veto).
    pub reject_threshold: u32,
    /// Channels that hear about a request while this rule's stage is open and the rule still
    /// needs approvals.
    pub notify: Vec<String>,
}

/// What an approved request yields.
#[derive(Clone, Debug)]
pub struct GrantSpec {
    /// The `aud` of the grant token.
    pub audience: String,
    /// The `scope` template, `{{params.NAME}}` placeholders.
    pub scope: Option<String>,
    /// The grant window when a request does not ask for one.
    pub ttl: chrono::Duration,
    /// The longest window a request may ask for.
    pub max_ttl: chrono::Duration,
    /// Whether the grant token may be redeemed only once.
    pub single_use: bool,
}

/// A webhook to call on request events (delivered by a later component).
#[derive(Clone, Debug)]
pub struct WebhookSpec {
    /// Where to POST.
    pub url: String,
    /// The events to send (actions a webhook may subscribe to), each once.
    pub events: Vec<crate::audit::AuditAction>,
    /// The signing secret, already read from its file or environment.
    pub secret: Option<crate::secret::Secret>,
}

/// Something that can be requested.
#[derive(Clone, Debug)]
pub struct Gate {
    /// Its unique name, `[a-z][a-z0-9-]*`.
    pub name: String,
    /// What it is for, shown to requesters and approvers.
    pub description: String,
    /// Declared parameters, by name.
    pub params: BTreeMap<String, ParamSpec>,
    /// Who may request.
    pub requesters: Condition,
    /// Whether a reason must be given.
    pub reason: Requirement,
    /// Whether a ticket reference must be given.
    pub ticket: Requirement,
    /// How long a request may wait for decisions.
    pub pending_ttl: chrono::Duration,
    /// What approval yields.
    pub grant: GrantSpec,
    /// All must be met (AND); ordered by stage, then as configured.
    pub rules: Vec<Rule>,
    /// When true at creation, the request is approved at once.
    pub auto_approve: Option<Condition>,
    /// Requesters who may self-approve with a reason (break-glass).
    pub break_glass: Option<Condition>,
    /// Event subscribers.
    pub webhooks: Vec<WebhookSpec>,
    /// Who hears about its requests, reminders and escalation.
    pub notify: crate::notice::GateNotify,
}

/// Every configured gate, by name.
#[derive(Clone, Debug, Default)]
pub struct GateSet {
    gates: BTreeMap<String, Arc<Gate>>,
}

impl GateSet {
    /// Builds the set; names are assumed unique (configuration loading checks).
    pub fn new(gates: impl IntoIterator<Item = Gate>) -> Self {
        Self {
            gates: gates
                .into_iter()
                .map(|g| (g.name.clone(), Arc::new(g)))
                .collect(),
        }
    }

    /// The gate of this name.
    pub fn get(&self, name: &str) -> Option<&Arc<Gate>> {
        self.gates.get(name)
    }

    /// All gates, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Gate>> {
        self.gates.values()
    }

    /// How many gates there are.
    pub fn len(&self) -> usize {
        self.gates.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.gates.is_empty()
    }
}
