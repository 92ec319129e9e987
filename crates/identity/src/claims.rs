//! The claim checks that make a signed token acceptable (issuer, time window, audience,
//! subject) and the mapping of an accepted token's claims onto a [`Principal`].
//!
//! Registered claims of the wrong JSON type are refused, never treated as absent: an `exp` of
//! `"9999999999"`, `1e10` or `null` is an error, not a token that never expires (J45,
//! CVE-2026-25537).

use chrono::DateTime;
use countersign_core::principal::VerifiedClaims;
use countersign_core::{Identity, Principal, Timestamp};
use serde_json::{Map, Value};

use crate::error::{AuthError, AuthReason};
use crate::settings::IssuerSettings;

/// Allowed clock skew between us and the issuer, in seconds.
pub const LEEWAY_SECS: i64 = 60;
/// An `exp` further ahead than this is a bug or an attack (e.g. milliseconds instead of
/// seconds), not a long-lived token.
const MAX_EXP_AHEAD_SECS: i64 = 50 * 366 * 24 * 3600;
/// The longest subject we key identities by.
pub const MAX_SUBJECT_BYTES: usize = 255;

fn invalid(message: &'static str) -> AuthError {
    AuthError::new(AuthReason::InvalidClaims, message)
}

/// An optional integer claim: absent is `None`, any other type is an error.
fn integer(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, ()> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or(()),
    }
}

/// Checks the claims of a token whose signature has been verified with `settings`' keys, and
/// returns the subject.
pub(crate) fn check(
    settings: &IssuerSettings,
    claims: &Map<String, Value>,
    now: Timestamp,
) -> Result<String, AuthError> {
    // The issuer was selected by this very claim before the signature check; require it again
    // from the verified payload so that selection and verification cannot disagree (J24).
    if claims.get("iss").and_then(Value::as_str) != Some(settings.url.as_str()) {
        return Err(AuthError::new(
            AuthReason::UnknownIssuer,
            "the token's issuer does not match the issuer whose key signed it",
        ));
    }
    let now = now.timestamp();

    let exp = integer(claims, "exp")
        .map_err(|()| invalid("the token's exp is not an integer number of seconds"))?
        .ok_or_else(|| invalid("the token has no expiry time (exp)"))?;
    if exp <= 0 || exp > now.saturating_add(MAX_EXP_AHEAD_SECS) {
        return Err(invalid("the token's exp is not a plausible time"));
    }
    if exp <= now.saturating_sub(LEEWAY_SECS) {
        return Err(AuthError::new(AuthReason::Expired, "the token has expired"));
    }
    let nbf = integer(claims, "nbf")
        .map_err(|()| invalid("the token's nbf is not an integer number of seconds"))?;
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(LEEWAY_SECS)) {
        return Err(AuthError::new(
            AuthReason::NotYetValid,
            "the token is not valid yet",
        ));
    }
    let iat = integer(claims, "iat")
        .map_err(|()| invalid("the token's iat is not an integer number of seconds"))?;
    if iat.is_some_and(|iat| iat > now.saturating_add(LEEWAY_SECS)) {
        return Err(AuthError::new(
            AuthReason::IssuedInFuture,
            "the token was issued in the future",
        ));
    }

    check_audience(settings, claims.get("aud"))?;

    match claims.get(&settings.subject_claim) {
        Some(Value::String(sub)) if !sub.is_empty() && sub.len() <= MAX_SUBJECT_BYTES => {
            Ok(sub.clone())
        }
        _ => Err(AuthError::new(
            AuthReason::MissingSubject,
            format!(
                "the token has no usable subject claim {} (a non-empty string of at most {MAX_SUBJECT_BYTES} bytes)",
                settings.subject_claim
            ),
        )),
    }
}

/// `aud` is one string or an array of strings, and must name a configured audience (C24).
fn check_audience(settings: &IssuerSettings, aud: Option<&Value>) -> Result<(), AuthError> {
    let wrong = |message: &'static str| AuthError::new(AuthReason::WrongAudience, message);
    let values: Vec<&str> = match aud {
        None => return Err(wrong("the token has no audience")),
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many
            .iter()
            .map(Value::as_str)
            .collect::<Option<_>>()
            .ok_or_else(|| wrong("the token's audience is not a list of strings"))?,
        Some(_) => return Err(wrong("the token's audience is not a string")),
    };
    if values
        .iter()
        .any(|a| settings.audiences.iter().any(|ours| ours == a))
    {
        Ok(())
    } else {
        Err(wrong("the token is not meant for this service"))
    }
}

/// Maps claims onto a principal exactly as the claims of a verified token are mapped. The
/// claims are *not* verified here: this is for offline tools (`countersign explain`) that ask
/// "what would a token with these claims be allowed to do".
pub fn principal_from_claims(
    settings: &IssuerSettings,
    claims: Map<String, Value>,
) -> Result<Principal, String> {
    let subject = claims
        .get(&settings.subject_claim)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            format!(
                "no '{}' claim (issuer {}'s subject_claim)",
                settings.subject_claim, settings.name
            )
        })?;
    Ok(principal(settings, subject, claims))
}

/// Builds the principal from verified claims.
pub(crate) fn principal(
    settings: &IssuerSettings,
    subject: String,
    claims: Map<String, Value>,
) -> Principal {
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let name = text("name").or_else(|| text("preferred_username"));
    // An unverified address could be anyone's; e-mail is used to recognise the same person
    // across issuers, so only a verified one counts.
    let email = match claims.get("email_verified") {
        Some(Value::Bool(true)) => text("email"),
        _ => None,
    };
    let groups = settings
        .groups_claim
        .as_deref()
        .map(|path| groups(&claims, path))
        .unwrap_or_default();
    let auth_time = claims
        .get("auth_time")
        .and_then(Value::as_i64)
        .and_then(|secs| DateTime::from_timestamp(secs, 0));
    let actor = settings.actor_claim.as_deref().and_then(|claim| {
        let subject = text(claim);
        if subject.is_none() && claims.contains_key(claim) {
            tracing::debug!(claim, "actor claim is not a non-empty string; ignoring it");
        }
        subject.map(|subject| Identity {
            issuer: settings
                .actor_issuer
                .clone()
                .unwrap_or_else(|| settings.name.clone()),
            subject,
        })
    });
    Principal::from_verified(VerifiedClaims {
        identity: Identity {
            issuer: settings.name.clone(),
            subject,
        },
        kind: settings.kind,
        name,
        email,
        groups,
        claims,
        auth_time,
        actor,
    })
}

/// Reads groups from `path`: the claim named exactly `path` if there is one (namespaced claims
/// such as `https://example.com/roles` contain dots), else the dotted path through nested
/// objects. A missing claim is no groups; a claim of the wrong shape is also no groups, since
/// guessing could grant an approver rights the issuer never gave.
fn groups(claims: &Map<String, Value>, path: &str) -> Vec<String> {
    let value = claims.get(path).or_else(|| {
        let mut parts = path.split('.');
        let first = claims.get(parts.next()?)?;
        parts.try_fold(first, |value, part| value.get(part))
    });
    match value {
        None => Vec::new(),
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(many)) => match many
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
        {
            Some(groups) => groups,
            None => {
                tracing::debug!(path, "groups claim holds a non-string; using no groups");
                Vec::new()
            }
        },
        Some(_) => {
            tracing::debug!(
                path,
                "groups claim is not a string or an array; using no groups"
            );
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn group_paths() {
        let c = claims(json!({
            "groups": ["a", "b"],
            "realm_access": {"roles": ["admin"]},
            "resource_access": {"app": {"roles": "one"}},
            "https://example.com/roles": ["ns"],
            "bad": [1, "x"],
            "obj": {"x": 1},
        }));
        assert_eq!(groups(&c, "groups"), ["a", "b"]);
        assert_eq!(groups(&c, "realm_access.roles"), ["admin"]);
        assert_eq!(groups(&c, "resource_access.app.roles"), ["one"]);
        assert_eq!(groups(&c, "https://example.com/roles"), ["ns"]);
        assert!(groups(&c, "missing.path").is_empty());
        assert!(groups(&c, "bad").is_empty());
        assert!(groups(&c, "obj").is_empty());
        assert!(groups(&c, "groups.x").is_empty());
    }
}
