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

/// What an identity verifier established about a caller: the identity and the claims its
/// issuer vouched for, turned into a [`Principal`] with [`Principal::from_verified`]. Built
/// by the identity crate from a token whose signature, issuer, audience and lifetime it
/// checked (bearer tokens, the web sign-in), by the back-channel logout for the identity its
/// verified logout token names, and by `countersign explain`, which maps claims as the
/// identity crate does to show what they would allow.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VerifiedClaims {
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

/// A verified identity with the claims its issuer vouched for, at the moment of verification.
///
/// There are two ways to get one: from a verifier ([`Principal::from_verified`]) and from the
/// store, which reads back a principal it wrote ([`StoredPrincipal`]). It cannot be changed
/// afterwards and does not deserialize, so a request body or a claim set can never become one.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Principal(VerifiedClaims);

/// A principal as the store wrote it (the serialized [`Principal`]), read back: the only
/// way from JSON to a principal, for the store's decoder, whose rows hold principals that
/// a verifier built. Nothing else should deserialize one.
#[derive(Debug, serde::Deserialize)]
#[serde(from = "StoredClaims")]
pub struct StoredPrincipal(Principal);

/// The stored form's fields, as [`VerifiedClaims`] serializes them.
#[derive(serde::Deserialize)]
struct StoredClaims {
    identity: Identity,
    kind: PrincipalKind,
    name: Option<String>,
    email: Option<String>,
    groups: Vec<String>,
    claims: Map<String, Value>,
    auth_time: Option<Timestamp>,
    actor: Option<Identity>,
}

impl From<StoredClaims> for StoredPrincipal {
    fn from(s: StoredClaims) -> Self {
        Self(Principal(VerifiedClaims {
            identity: s.identity,
            kind: s.kind,
            name: s.name,
            email: s.email,
            groups: s.groups,
            claims: s.claims,
            auth_time: s.auth_time,
            actor: s.actor,
        }))
    }
}

impl StoredPrincipal {
    /// The principal read back.
    pub fn into_principal(self) -> Principal {
        self.0
    }
}

impl From<StoredPrincipal> for Principal {
    fn from(stored: StoredPrincipal) -> Self {
        stored.0
    }
}

impl Principal {
    /// The principal a verifier vouches for. Only identity verifiers call this, with claims
    /// they checked (see [`VerifiedClaims`]).
    pub fn from_verified(verified: VerifiedClaims) -> Self {
        Self(verified)
    }

    /// `(issuer, subject)`, the key.
    pub fn identity(&self) -> &Identity {
        &self.0.identity
    }

    /// Person or workload.
    pub fn kind(&self) -> PrincipalKind {
        self.0.kind
    }

    /// The display name, if the token had one.
    pub fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }

    /// The verified e-mail address, if any.
    pub fn email(&self) -> Option<&str> {
        self.0.email.as_deref()
    }

    /// Groups from the issuer's `groups_claim`.
    pub fn groups(&self) -> &[String] {
        &self.0.groups
    }

    /// Every claim of the token (none in a [`Self::summary`]).
    pub fn claims(&self) -> &Map<String, Value> {
        &self.0.claims
    }

    /// When the person last authenticated at the provider, if the token said.
    pub fn auth_time(&self) -> Option<Timestamp> {
        self.0.auth_time
    }

    /// For a workload: the person behind it.
    pub fn actor(&self) -> Option<&Identity> {
        self.0.actor.as_ref()
    }

    /// The same principal with the `auth_time` of an earlier verification: for a verifier
    /// renewing the claims of a sign-in (a refreshed ID token need not say when the person
    /// authenticated, and the sign-in's time is what freshness checks mean).
    pub fn with_auth_time(mut self, auth_time: Option<Timestamp>) -> Self {
        self.0.auth_time = auth_time;
        self
    }

    /// A human principal with no claims (for tests).
    #[cfg(any(test, feature = "testing"))]
    pub fn human(issuer: &str, subject: &str) -> Self {
        Self(VerifiedClaims {
            identity: Identity::new(issuer, subject),
            kind: PrincipalKind::Human,
            name: None,
            email: None,
            groups: Vec::new(),
            claims: Map::new(),
            auth_time: None,
            actor: None,
        })
    }

    /// The claims, to change for a test.
    #[cfg(any(test, feature = "testing"))]
    pub fn testing_mut(&mut self) -> &mut VerifiedClaims {
        &mut self.0
    }

    /// True when `self` and `other` are the same person for separation of duties: the same
    /// identity, the same verified e-mail (case-insensitive) under any issuer, or one is a
    /// workload acting for the other.
    pub fn same_person_as(&self, other: &Principal) -> bool {
        let (a, b) = (&self.0, &other.0);
        if a.identity == b.identity {
            return true;
        }
        if let (Some(x), Some(y)) = (&a.email, &b.email)
            && x.eq_ignore_ascii_case(y)
        {
            return true;
        }
        let acts_for =
            |p: &VerifiedClaims, q: &VerifiedClaims| p.actor.as_ref() == Some(&q.identity);
        if acts_for(a, b) || acts_for(b, a) {
            return true;
        }
        matches!((&a.actor, &b.actor), (Some(x), Some(y)) if x == y)
    }

    /// The value conditions see as `principal`, `approver` or `request.requester`.
    pub fn to_condition_value(&self) -> Value {
        let p = &self.0;
        // Built directly rather than with `json!`, which would serialize the claims (already
        // a JSON value) into a second copy: this runs for every condition check.
        let string = |s: &str| Value::String(s.to_owned());
        let mut value = Map::new();
        value.insert("issuer".into(), string(&p.identity.issuer));
        value.insert("subject".into(), string(&p.identity.subject));
        value.insert("kind".into(), string(p.kind.as_str()));
        value.insert("name".into(), string(p.name.as_deref().unwrap_or_default()));
        value.insert(
            "email".into(),
            string(p.email.as_deref().unwrap_or_default()),
        );
        value.insert(
            "groups".into(),
            Value::Array(p.groups.iter().map(|g| string(g)).collect()),
        );
        value.insert("claims".into(), Value::Object(p.claims.clone()));
        let actor = p.actor.as_ref().map_or(Value::Null, |a| {
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
        let p = &self.0;
        let actor = match &p.actor {
            None => cel_null(),
            Some(a) => cel_map([
                ("issuer", cel_string(&a.issuer)),
                ("subject", cel_string(&a.subject)),
            ]),
        };
        Ok(cel_map([
            ("issuer", cel_string(&p.identity.issuer)),
            ("subject", cel_string(&p.identity.subject)),
            ("kind", cel_string(p.kind.as_str())),
            ("name", cel_string(p.name.as_deref().unwrap_or_default())),
            ("email", cel_string(p.email.as_deref().unwrap_or_default())),
            (
                "groups",
                cel_list(p.groups.iter().map(|g| cel_string(g)).collect()),
            ),
            ("claims", cel_json_map(&p.claims)?),
            ("actor", actor),
        ]))
    }

    /// A shortened copy kept with a decision: identity, kind, name and e-mail, no claims.
    pub fn summary(&self) -> Principal {
        let p = &self.0;
        Principal(VerifiedClaims {
            identity: p.identity.clone(),
            kind: p.kind,
            name: p.name.clone(),
            email: p.email.clone(),
            groups: p.groups.clone(),
            claims: Map::new(),
            auth_time: p.auth_time,
            actor: p.actor.clone(),
        })
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
        let parts = p.testing_mut();
        parts.name = Some("Alice".into());
        parts.groups = vec!["sre".into(), "dev".into()];
        parts.claims.insert("team".into(), json!("payments"));
        parts
            .claims
            .insert("nested".into(), json!({"a": [1, -2, 1.5, null, true]}));
        parts.actor = Some(Identity::new("https://ci.example", "run-1"));
        for p in [p.clone(), Principal::human("https://idp.example", "bob")] {
            let expected = json!({
                "issuer": p.identity().issuer,
                "subject": p.identity().subject,
                "kind": p.kind().as_str(),
                "name": p.name().unwrap_or_default(),
                "email": p.email().unwrap_or_default(),
                "groups": p.groups(),
                "claims": Value::Object(p.claims().clone()),
                "actor": p.actor().map(|a| json!({"issuer": a.issuer, "subject": a.subject})),
            });
            assert_eq!(p.to_condition_value(), expected);
        }
    }

    #[test]
    fn same_person_rules() {
        let mut a = Principal::human("okta", "alice");
        let mut b = Principal::human("google", "1234");
        assert!(!a.same_person_as(&b));
        a.testing_mut().email = Some("Alice@Example.com".into());
        b.testing_mut().email = Some("alice@example.com".into());
        assert!(a.same_person_as(&b));
        b.testing_mut().email = None;
        let mut ci = Principal::human("github", "repo:acme/app");
        ci.testing_mut().kind = PrincipalKind::Workload;
        ci.testing_mut().actor = Some(Identity::new("google", "1234"));
        assert!(ci.same_person_as(&b));
        assert!(b.same_person_as(&ci));
        assert!(!ci.same_person_as(&a));
    }

    /// What the store writes reads back as the same principal, every field kept.
    #[test]
    fn stored_form_reads_back() {
        let mut p = Principal::human("okta", "alice");
        let parts = p.testing_mut();
        parts.kind = PrincipalKind::Workload;
        parts.name = Some("Alice".into());
        parts.email = Some("alice@example.com".into());
        parts.groups = vec!["sre".into()];
        parts.claims.insert("team".into(), json!("payments"));
        parts.auth_time = crate::time::from_millis(1_700_000_000_000);
        parts.actor = Some(Identity::new("google", "1234"));
        let json = serde_json::to_string(&p).unwrap();
        let back: StoredPrincipal = serde_json::from_str(&json).unwrap();
        assert_eq!(back.into_principal(), p);
    }
}
