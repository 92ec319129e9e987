//! The configured gates, as shown to a caller with what they may do.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A configured gate, with what the caller may do with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Gate {
    /// The CEL condition under which a request is approved at creation.
    pub auto_approve: Option<String>,
    /// The caller is eligible for at least one of the gate's rules.
    pub can_approve: bool,
    /// The caller satisfies the gate's requester condition.
    pub can_request: bool,
    pub description: String,
    /// The grant tokens an approved request gets.
    pub grant: GrantSettings,
    pub name: String,
    /// The declared parameters, by name.
    pub params: BTreeMap<String, Param>,
    /// How long a request may wait for decisions.
    #[schema(pattern = r"^([0-9]+[smhd])+$")]
    pub pending_ttl: String,
    /// Whether a request must give a reason.
    pub reason: Requirement,
    /// The rules, in order.
    pub rules: Vec<GateRule>,
    /// Whether a request must give a ticket.
    pub ticket: Requirement,
}

/// Whether a field of a request must be given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Requirement {
    Required,
    Optional,
}

/// The grant tokens of a gate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GrantSettings {
    /// The `aud` of grant tokens.
    pub audience: String,
    /// The longest window a request may ask for.
    #[schema(pattern = r"^([0-9]+[smhd])+$")]
    pub max_ttl: String,
    /// A token can be redeemed once.
    pub single_use: bool,
    /// The grant window when a request does not ask for one.
    #[schema(pattern = r"^([0-9]+[smhd])+$")]
    pub ttl: String,
}

/// A declared gate parameter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Param {
    pub description: Option<String>,
    /// Its type, with the constraints of that type.
    #[serde(flatten)]
    pub kind: ParamKind,
    pub required: bool,
}

/// A parameter's type (`type`) and the constraints that type has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ParamKind {
    /// A string.
    String {
        /// In characters.
        max_length: u64,
        /// A regular expression the whole value must match.
        pattern: Option<String>,
    },
    /// A 64-bit integer.
    Int { max: Option<i64>, min: Option<i64> },
    /// `true` or `false`.
    Bool,
    /// One of a fixed list of strings.
    Enum { values: Vec<String> },
}

/// One rule of a gate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GateRule {
    /// The CEL condition that makes an approver eligible.
    pub approvers: String,
    #[schema(minimum = 1)]
    pub min_approvals: u32,
    pub name: String,
    /// This many rejections by eligible approvers reject the request.
    #[schema(minimum = 1)]
    pub reject_threshold: u32,
    /// Rules of a stage open only when every rule of lower stages is met.
    #[schema(minimum = 1)]
    pub stage: u32,
}

/// The gates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GatePage {
    pub items: Vec<Gate>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_parameter_writes_its_type_beside_its_constraints() {
        let param = Param {
            description: None,
            kind: ParamKind::String {
                max_length: 64,
                pattern: Some("^[a-z]+$".into()),
            },
            required: true,
        };
        let wire = serde_json::to_value(&param).expect("a parameter serializes");
        assert_eq!(
            wire,
            json!({"description": null, "type": "string", "max_length": 64,
                   "pattern": "^[a-z]+$", "required": true})
        );
        let back: Param = serde_json::from_value(wire).expect("and reads back");
        assert_eq!(back, param);
        let flag: Param = serde_json::from_value(json!({"type": "bool", "required": false,
                                                       "description": "dry run"}))
        .expect("a bool has no constraints");
        assert_eq!(flag.kind, ParamKind::Bool);
    }
}
