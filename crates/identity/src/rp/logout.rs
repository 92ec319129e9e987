//! Back-channel logout tokens (OpenID Connect Back-Channel Logout 1.0 §2.4–2.6,
//! anchor-security B.8): verified with the issuer's published keys through the same key cache,
//! algorithm allow-list and strict parsing as bearer tokens, then checked claim by claim.

use std::str::FromStr;
use std::sync::Arc;

use countersign_core::Timestamp;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::provider::RpIssuer;
use super::{LogoutNotice, RpError};
use crate::claims::{LEEWAY_SECS, MAX_SUBJECT_BYTES};
use crate::jws::{self, decode_segment};
use crate::keys::Selection;
use crate::settings::{IssuerSettings, is_hmac, normalize_type};

/// A logout token issued longer ago than this is refused (B.8, J76).
pub const MAX_LOGOUT_TOKEN_AGE_SECS: i64 = 10 * 60;
/// The event a back-channel logout token must carry.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Header parameters that refuse a token outright (as for bearer tokens, RFC 8725 §3.10).
const FORBIDDEN_HEADERS: [&str; 9] = [
    "jku", "x5u", "jwk", "x5c", "crit", "cty", "b64", "zip", "enc",
];

/// Verifies a logout token: strict parsing, `typ: logout+jwt`, the issuer named by `iss`
/// among the sign-in issuers, its algorithm allow-list, a signature by one of its published
/// keys (refetched once, rate-limited, for an unknown `kid`), then the claims.
pub(super) async fn verify(
    issuers: &[Arc<RpIssuer>],
    token: &str,
    now: Timestamp,
) -> Result<LogoutNotice, RpError> {
    let invalid = |m: &'static str| RpError::new("invalid_logout_token", m);
    let jws = jws::parse(token).map_err(|_| invalid("the logout token is malformed"))?;
    let header = checked_header(&jws.header)?;
    if header.typ != "logout+jwt" {
        return Err(invalid("the logout token's type (typ) is not logout+jwt"));
    }
    let iss = jws.payload.get("iss").and_then(Value::as_str);
    let issuer = issuers
        .iter()
        .find(|i| Some(i.settings.url.as_str()) == iss)
        .ok_or_else(|| invalid("the logout token's issuer is not a sign-in issuer"))?;
    if !issuer.settings.algorithms.contains(&header.alg) {
        return Err(invalid(
            "the logout token's algorithm is not allowed for its issuer",
        ));
    }
    let signature = decode_segment(jws.signature)
        .map_err(|_| invalid("the logout token's signature is malformed"))?;
    if signature.is_empty() {
        return Err(invalid("the logout token has no signature"));
    }
    let mut keys = issuer
        .keys
        .keys()
        .await
        .map_err(|e| RpError::new("provider_unavailable", e.message().to_owned()))?;
    let mut refetched = false;
    loop {
        match keys.select(header.kid.as_deref(), header.alg) {
            Selection::Found(candidates) => {
                let valid = candidates.iter().any(|key| {
                    signature.len() == key.signature_len()
                        && jsonwebtoken::crypto::verify(
                            jws.signature,
                            jws.signing_input.as_bytes(),
                            key.decoding_key(),
                            header.alg,
                        )
                        .unwrap_or(false)
                });
                if !valid {
                    return Err(invalid("the logout token's signature is not valid"));
                }
                break;
            }
            Selection::NotFound if !refetched => {
                refetched = true;
                match issuer.keys.refetch_for_unknown_kid(&keys).await {
                    Some(newer) => keys = newer,
                    None => {
                        return Err(invalid("no key of the issuer verifies the logout token"));
                    }
                }
            }
            _ => return Err(invalid("no key of the issuer verifies the logout token")),
        }
    }
    check_logout_claims(
        &issuer.settings,
        &issuer.client.client_id,
        &jws.payload,
        now,
    )
}

/// The parts of a JOSE header we act on.
pub(super) struct CheckedHeader {
    alg: Algorithm,
    kid: Option<String>,
    typ: String,
}

pub(super) fn checked_header(header: &Map<String, Value>) -> Result<CheckedHeader, RpError> {
    let refuse = |m: &'static str| RpError::new("invalid_token_header", m);
    if FORBIDDEN_HEADERS.iter().any(|h| header.contains_key(*h)) {
        return Err(refuse(
            "the token's header carries a parameter that is not accepted",
        ));
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(|a| Algorithm::from_str(a).ok())
        .filter(|a| !is_hmac(*a))
        .ok_or_else(|| refuse("the token's algorithm (alg) is not supported"))?;
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(refuse("the token's key id (kid) is not a string")),
    };
    let typ = match header.get("typ") {
        None => "jwt".to_owned(),
        Some(Value::String(t)) => normalize_type(t),
        Some(_) => return Err(refuse("the token's type (typ) is not a string")),
    };
    Ok(CheckedHeader { alg, kid, typ })
}

/// The claim checks of a logout token whose signature has been verified with `settings`' keys.
pub(crate) fn check_logout_claims(
    settings: &IssuerSettings,
    client_id: &str,
    claims: &Map<String, Value>,
    now: Timestamp,
) -> Result<LogoutNotice, RpError> {
    let invalid = |m: &'static str| RpError::new("invalid_logout_token", m);
    if claims.get("iss").and_then(Value::as_str) != Some(settings.url.as_str()) {
        return Err(invalid("the logout token's issuer does not match its key"));
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == client_id,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(client_id)),
        _ => false,
    };
    if !audience_ok {
        return Err(invalid("the logout token is not meant for this service"));
    }
    let now = now.timestamp();
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or_else(|| invalid("the logout token has no iat"))?;
    if iat > now + LEEWAY_SECS {
        return Err(invalid("the logout token was issued in the future"));
    }
    if iat < now - MAX_LOGOUT_TOKEN_AGE_SECS {
        return Err(invalid("the logout token was issued too long ago"));
    }
    match claims.get("exp") {
        None => {}
        Some(v) => match v.as_i64() {
            Some(exp) if exp > now - LEEWAY_SECS => {}
            Some(_) => return Err(invalid("the logout token has expired")),
            None => return Err(invalid("the logout token's exp is not a number")),
        },
    }
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty())
        .ok_or_else(|| invalid("the logout token has no jti"))?;
    let events = claims
        .get("events")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("the logout token has no events"))?;
    match events.get(BACKCHANNEL_LOGOUT_EVENT) {
        Some(Value::Object(member)) if member.is_empty() => {}
        Some(_) => {
            return Err(invalid(
                "the logout token's back-channel logout event is not an empty object",
            ));
        }
        None => return Err(invalid("the logout token has no back-channel logout event")),
    }
    if claims.contains_key("nonce") {
        return Err(invalid("a logout token must not carry a nonce"));
    }
    let text = |name: &str| -> Result<Option<String>, RpError> {
        match claims.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_SUBJECT_BYTES => {
                Ok(Some(s.clone()))
            }
            Some(_) => Err(invalid(
                "the logout token's sub or sid is not a usable string",
            )),
        }
    };
    let sub = text("sub")?;
    let sid = text("sid")?;
    if sub.is_none() && sid.is_none() {
        return Err(invalid("the logout token has neither sub nor sid"));
    }
    // Sessions know people by the issuer's subject claim; `sub` names them only when that is
    // the claim.
    let subject = sub.filter(|_| settings.subject_claim == "sub");
    if subject.is_none() && sid.is_none() {
        return Err(invalid(
            "the logout token has no sid, and its sub is not how this issuer's people are known",
        ));
    }
    Ok(LogoutNotice {
        issuer: settings.name.clone(),
        subject,
        sid,
        jti: jti.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use countersign_core::PrincipalKind;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn now() -> Timestamp {
        DateTime::from_timestamp(NOW, 0).unwrap_or_default()
    }

    fn settings() -> IssuerSettings {
        IssuerSettings::new(
            "idp",
            "https://idp.example.com",
            PrincipalKind::Human,
            vec!["api".into()],
        )
    }

    fn valid() -> Map<String, Value> {
        match json!({
            "iss": "https://idp.example.com",
            "aud": "web",
            "iat": NOW - 5,
            "exp": NOW + 120,
            "jti": "j-1",
            "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
            "sub": "alice",
            "sid": "s-1",
        }) {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn check(claims: &Map<String, Value>) -> Result<LogoutNotice, RpError> {
        check_logout_claims(&settings(), "web", claims, now())
    }

    #[test]
    fn a_valid_logout_token_names_the_sessions() {
        let notice = check(&valid()).unwrap();
        assert_eq!(notice.issuer, "idp");
        assert_eq!(notice.subject.as_deref(), Some("alice"));
        assert_eq!(notice.sid.as_deref(), Some("s-1"));
        let mut aud_list = valid();
        aud_list.insert("aud".into(), json!(["other", "web"]));
        assert!(check(&aud_list).is_ok());
        let mut only_sid = valid();
        only_sid.remove("sub");
        assert!(check(&only_sid).is_ok());
        let mut no_exp = valid();
        no_exp.remove("exp");
        assert!(check(&no_exp).is_ok());
    }

    #[test]
    fn every_broken_claim_is_refused() {
        type Change = Box<dyn Fn(&mut Map<String, Value>)>;
        let cases: Vec<(&str, Change)> = vec![
            (
                "wrong iss",
                Box::new(|c| {
                    c.insert("iss".into(), json!("https://evil.example.com"));
                }),
            ),
            (
                "wrong aud",
                Box::new(|c| {
                    c.insert("aud".into(), json!("other"));
                }),
            ),
            (
                "no aud",
                Box::new(|c| {
                    c.remove("aud");
                }),
            ),
            (
                "no iat",
                Box::new(|c| {
                    c.remove("iat");
                }),
            ),
            (
                "future iat",
                Box::new(|c| {
                    c.insert("iat".into(), json!(NOW + 120));
                }),
            ),
            (
                "old iat",
                Box::new(|c| {
                    c.insert("iat".into(), json!(NOW - 86_400));
                }),
            ),
            (
                "expired",
                Box::new(|c| {
                    c.insert("exp".into(), json!(NOW - 120));
                }),
            ),
            (
                "string exp",
                Box::new(|c| {
                    c.insert("exp".into(), json!("9999999999"));
                }),
            ),
            (
                "no jti",
                Box::new(|c| {
                    c.remove("jti");
                }),
            ),
            (
                "no events",
                Box::new(|c| {
                    c.remove("events");
                }),
            ),
            (
                "wrong event",
                Box::new(|c| {
                    c.insert(
                        "events".into(),
                        json!({"http://schemas.openid.net/event/foobar": {}}),
                    );
                }),
            ),
            (
                "event not empty",
                Box::new(|c| {
                    c.insert("events".into(), json!({BACKCHANNEL_LOGOUT_EVENT: {"x": 1}}));
                }),
            ),
            (
                "event not an object",
                Box::new(|c| {
                    c.insert("events".into(), json!({BACKCHANNEL_LOGOUT_EVENT: "yes"}));
                }),
            ),
            (
                "nonce",
                Box::new(|c| {
                    c.insert("nonce".into(), json!("n"));
                }),
            ),
            (
                "neither sub nor sid",
                Box::new(|c| {
                    c.remove("sub");
                    c.remove("sid");
                }),
            ),
            (
                "empty sid",
                Box::new(|c| {
                    c.insert("sid".into(), json!(""));
                }),
            ),
        ];
        for (name, change) in cases {
            let mut claims = valid();
            change(&mut claims);
            let e = check(&claims).expect_err(name);
            assert_eq!(e.reason(), "invalid_logout_token", "{name}");
        }
    }

    #[test]
    fn a_sub_is_only_used_when_it_is_the_subject_claim() {
        let mut s = settings();
        s.subject_claim = "oid".into();
        let notice = check_logout_claims(&s, "web", &valid(), now()).unwrap();
        assert_eq!(notice.subject, None);
        assert_eq!(notice.sid.as_deref(), Some("s-1"));
        let mut only_sub = valid();
        only_sub.remove("sid");
        assert!(check_logout_claims(&s, "web", &only_sub, now()).is_err());
    }

    #[test]
    fn headers_are_checked() {
        let h = |v: Value| match v {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        assert!(checked_header(&h(json!({"alg": "ES256", "typ": "logout+jwt"}))).is_ok());
        assert_eq!(
            checked_header(&h(json!({"alg": "ES256", "typ": "application/Logout+JWT"})))
                .map(|c| c.typ)
                .ok()
                .as_deref(),
            Some("logout+jwt")
        );
        for bad in [
            json!({"alg": "none"}),
            json!({"alg": "HS256"}),
            json!({"alg": "ES256", "jku": "https://evil"}),
            json!({"alg": "ES256", "kid": 7}),
            json!({}),
        ] {
            assert!(checked_header(&h(bad.clone())).is_err(), "{bad}");
        }
    }
}
