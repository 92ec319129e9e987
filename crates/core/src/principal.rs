//! Who is acting: a principal is an identity verified by a configured issuer, with the claims
//! that issuer vouched for. Identity adapters build principals only from verified tokens; the
//! domain never sees an unverified claim.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::condition::{CelValue, cel_json_map, cel_list, cel_map, cel_null, cel_string};
use crate::time::Timestamp;

/// The key of a person or workload: the configured issuer's name and the stable subject.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Identity {
    /// The configured name of the issuer (not its URL), e.g. `okta`.
    pub issuer: String,
    /// The stable subject under that issuer (`sub`, or the issuer's `subject_claim`).
    pub subject: String,
}

impl Identity {
    /// Builds an identity from its two parts.
    pub fn new(issuer: impl Into<String>, subject: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            subject: subject.into(),
        }
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.issuer, self.subject)
    }
}

/// Whether a principal is a person or a machine. Workloads can request, never approve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    /// A person who signed in at an identity provider.
    Human,
    /// A CI job, service account or other machine identity.
    Workload,
}

impl PrincipalKind {
    /// The lowercase name used in the API and in conditions.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Human => "human",
            Self::Workload => "workload",
        }
    }
}

/// A verified identity with the claims its issuer vouched for, at the moment of verification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Principal {
    /// `(issuer, subject)`, the key.
    pub identity: Identity,
    /// Person or workload, from the issuer's configuration.
    pub kind: PrincipalKind,
    /// A display name (`name`, else `preferred_username`), if the token had one.
    pub name: Option<String>,
    /// The e-mail address, kept only when the issuer marked it verified.
    pub email: Option<String>,
    /// Groups from the issuer's `groups_claim`.
    pub groups: Vec<String>,
    /// Every claim of the token, for conditions.
    pub claims: Map<String, Value>,
    /// When the person last authenticated at the provider, if the token said.
    pub auth_time: Option<Timestamp>,
    /// For a workload: the person behind it (e.g. the GitHub user who started the run), who
    /// counts as the requester for the no-self-approval rule.
    pub actor: Option<Identity>,
}

impl Principal {
    /// A human principal with no claims beyond the given ones (for tests and the dev issuer).
    pub fn human(issuer: &str, subject: &str) -> Self {
        Self {
            identity: Identity::new(issuer, subject),
            kind: PrincipalKind::Human,
            name: None,
            email: None,
            groups: Vec::new(),
            claims: Map::new(),
            auth_time: None,
            actor: None,
        }
    }

    /// True when `self` and `other` are the same person for separation of duties: the same
    /// identity, the same verified e-mail (case-insensitive) under any issuer, or one is a
    /// workload acting for the other.
    pub fn same_person_as(&self, other: &Principal) -> bool {
        if self.identity == other.identity {
            return true;
        }
        if let (Some(a), Some(b)) = (&self.email, &other.email)
            && a.eq_ignore_ascii_case(b)
        {
            return true;
        }
        let acts_for = |p: &Principal, q: &Principal| p.actor.as_ref() == Some(&q.identity);
        if acts_for(self, other) || acts_for(other, self) {
            return true;
        }
        matches!((&self.actor, &other.actor), (Some(a), Some(b)) if a == b)
    }

    /// The value conditions see as `principal`, `approver` or `request.requester`.
    pub fn to_condition_value(&self) -> Value {
        // Built directly rather than with `json!`, which would serialize the claims (already
        // a JSON value) into a second copy: this runs for every condition check.
        let string = |s: &str| Value::String(s.to_owned());
        let mut value = Map::new();
        value.insert("issuer".into(), string(&self.identity.issuer));
        value.insert("subject".into(), string(&self.identity.subject));
        value.insert("kind".into(), string(self.kind.as_str()));
        value.insert(
            "name".into(),
            string(self.name.as_deref().unwrap_or_default()),
        );
        value.insert(
            "email".into(),
            string(self.email.as_deref().unwrap_or_default()),
        );
        value.insert(
            "groups".into(),
            Value::Array(self.groups.iter().map(|g| string(g)).collect()),
        );
        value.insert("claims".into(), Value::Object(self.claims.clone()));
        let actor = self.actor.as_ref().map_or(Value::Null, |a| {
            let mut actor = Map::new();
            actor.insert("issuer".into(), string(&a.issuer));
            actor.insert("subject".into(), string(&a.subject));
            Value::Object(actor)
        });
        value.insert("actor".into(), actor);
        Value::Object(value)
    }

    /// [`Self::to_condition_value`] built as CEL directly, borrowing from `self`.
    pub fn to_cel(&self) -> Result<CelValue<'_>, String> {
        let actor = match &self.actor {
            None => cel_null(),
            Some(a) => cel_map([
                ("issuer", cel_string(&a.issuer)),
                ("subject", cel_string(&a.subject)),
            ]),
        };
        Ok(cel_map([
            ("issuer", cel_string(&self.identity.issuer)),
            ("subject", cel_string(&self.identity.subject)),
            ("kind", cel_string(self.kind.as_str())),
            ("name", cel_string(self.name.as_deref().unwrap_or_default())),
            (
                "email",
                cel_string(self.email.as_deref().unwrap_or_default()),
            ),
            (
                "groups",
                cel_list(self.groups.iter().map(|g| cel_string(g)).collect()),
            ),
            ("claims", cel_json_map(&self.claims)?),
            ("actor", actor),
        ]))
    }

    /// A shortened copy kept with a decision: identity, kind, name and e-mail, no claims.
    pub fn summary(&self) -> Principal {
        Principal {
            identity: self.identity.clone(),
            kind: self.kind,
            name: self.name.clone(),
            email: self.email.clone(),
            groups: self.groups.clone(),
            claims: Map::new(),
            auth_time: self.auth_time,
            actor: self.actor.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The condition value is exactly what the `json!` form it replaced made.
    #[test]
    fn condition_value_is_the_json_form() {
        let mut p = Principal::human("https://idp.example", "alice");
        p.name = Some("Alice".into());
        p.groups = vec!["sre".into(), "dev".into()];
        p.claims.insert("team".into(), json!("payments"));
        p.claims
            .insert("nested".into(), json!({"a": [1, -2, 1.5, null, true]}));
        p.actor = Some(Identity::new("https://ci.example", "run-1"));
        for p in [p.clone(), Principal::human("https://idp.example", "bob")] {
            let expected = json!({
                "issuer": p.identity.issuer,
                "subject": p.identity.subject,
                "kind": p.kind.as_str(),
                "name": p.name.clone().unwrap_or_default(),
                "email": p.email.clone().unwrap_or_default(),
                "groups": p.groups,
                "claims": Value::Object(p.claims.clone()),
                "actor": p.actor.as_ref().map(|a| json!({"issuer": a.issuer, "subject": a.subject})),
            });
            assert_eq!(p.to_condition_value(), expected);
        }
    }

    #[test]
    fn same_person_rules() {
        let mut a = Principal::human("okta", "alice");
        let mut b = Principal::human("google", "1234");
        assert!(!a.same_person_as(&b));
        a.email = Some("Alice@Example.com".into());
        b.email = Some("alice@example.com".into());
        assert!(a.same_person_as(&b));
        b.email = None;
        let mut ci = Principal::human("github", "repo:acme/app");
        ci.kind = PrincipalKind::Workload;
        ci.actor = Some(Identity::new("google", "1234"));
        assert!(ci.same_person_as(&b));
        assert!(b.same_person_as(&ci));
        assert!(!ci.same_person_as(&a));
    }
}
