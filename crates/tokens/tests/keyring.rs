//! The key ring end to end over an in-memory key store: first-key creation, signing through
//! the `GrantSigner` port, verification of good and forged tokens, rotation and reload.

// Helpers outside `#[test]` functions panic on broken fixtures too.
#![expect(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{Duration, TimeZone, Utc};
use countersign_core::audit::NewAuditEvent;
use countersign_core::grant::SigningKeyRecord;
use countersign_core::ports::{Clock, GrantSigner, KeyStore, ManualClock, SignError, StoreError};
use countersign_core::time::Timestamp;
use countersign_tokens::{Kek, KeyRing, SigningAlg, generate_key};
use serde_json::{Value, json};

const ISSUER: &str = "https://approvals.example.com";
const ALGS: [SigningAlg; 3] = [SigningAlg::Es256, SigningAlg::EdDsa, SigningAlg::Rs256];

/// The `KeyStore` contract in a `Mutex`: add + retire + events in one step.
#[derive(Debug, Default)]
struct MemKeyStore {
    keys: Mutex<Vec<SigningKeyRecord>>,
    events: Mutex<Vec<NewAuditEvent>>,
}

#[async_trait]
impl KeyStore for MemKeyStore {
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        Ok(self.keys.lock().unwrap().clone())
    }

    async fn add_signing_key(
        &self,
        key: &SigningKeyRecord,
        retire: &[(String, Timestamp)],
        events: &[NewAuditEvent],
    ) -> Result<(), StoreError> {
        let mut keys = self.keys.lock().unwrap();
        if keys.iter().any(|k| k.kid == key.kid) {
            return Err(StoreError::Duplicate(key.kid.clone()));
        }
        for (kid, until) in retire {
            let k = keys
                .iter_mut()
                .find(|k| &k.kid == kid)
                .ok_or_else(|| StoreError::backend(format!("no key {kid}")))?;
            k.publish_until = Some(*until);
        }
        keys.push(key.clone());
        self.events.lock().unwrap().extend_from_slice(events);
        Ok(())
    }
}

fn t0() -> Timestamp {
    Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap()
}

struct Fixture {
    store: Arc<MemKeyStore>,
    clock: Arc<ManualClock>,
    kek: Kek,
}

impl Fixture {
    fn new() -> Self {
        Self {
            store: Arc::new(MemKeyStore::default()),
            clock: Arc::new(ManualClock::new(t0())),
            kek: Kek::generate(),
        }
    }

    async fn ring(&self, alg: SigningAlg) -> KeyRing {
        KeyRing::load(
            self.store.clone(),
            self.kek.clone(),
            alg,
            ISSUER.into(),
            self.clock.clone(),
        )
        .await
        .unwrap()
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// Grant-like claims valid for `ttl` from now.
fn claims(now: Timestamp, ttl: Duration) -> Value {
    json!({
        "sub": "alice",
        "aud": "deployer",
        "iat": now.timestamp(),
        "nbf": now.timestamp(),
        "exp": (now + ttl).timestamp(),
        "jti": "grant-1",
        "request_id": "req_01J0000000000000000000000",
        "approvers": [{"iss": "okta", "sub": "bob", "name": "Bob", "rule": "sre"}],
    })
}

fn parts(token: &str) -> (Value, Value, String) {
    let mut it = token.split('.');
    let header = serde_json::from_slice(&B64.decode(it.next().unwrap()).unwrap()).unwrap();
    let payload = serde_json::from_slice(&B64.decode(it.next().unwrap()).unwrap()).unwrap();
    (header, payload, it.next().unwrap().to_string())
}

fn compact(header: &Value, payload: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        B64.encode(header.to_string()),
        B64.encode(payload.to_string())
    )
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn load_creates_an_audited_first_key_once() {
    let fx = Fixture::new();
    let ring = fx.ring(SigningAlg::Es256).await;
    let stored = fx.store.keys.lock().unwrap().clone();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].signs_from, fx.now());
    assert_eq!(stored[0].publish_until, None);
    assert_eq!(ring.signing_kid(fx.now()), Some(stored[0].kid.clone()));
    {
        let events = fx.store.events.lock().unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].action.as_str(), "key.created");
        assert_eq!(events[0].actor.subject, "system");
        assert_eq!(events[0].detail["kid"], stored[0].kid.as_str());
    }
    // The private key is sealed: the stored bytes are not the DER (which opens with SEQUENCE).
    assert_ne!(stored[0].sealed_private.first(), Some(&0x30));

    // A second start over the same store reuses the key.
    let again = fx.ring(SigningAlg::Es256).await;
    assert_eq!(fx.store.keys.lock().unwrap().len(), 1);
    assert_eq!(again.signing_kid(fx.now()), ring.signing_kid(fx.now()));
}

#[tokio::test]
async fn every_algorithm_signs_and_verifies_its_own_tokens() {
    for alg in ALGS {
        let fx = Fixture::new();
        let ring = fx.ring(alg).await;
        let now = fx.now();
        assert_eq!(ring.issuer(), ISSUER);

        let (token, kid) = ring
            .sign(&claims(now, Duration::minutes(15)))
            .await
            .unwrap();
        assert_eq!(Some(kid.clone()), ring.signing_kid(now));
        let (header, payload, _) = parts(&token);
        assert_eq!(header["alg"], alg.as_str(), "{alg}");
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(header["kid"], kid.as_str());
        assert_eq!(payload["iss"], ISSUER);

        let verified = ring.verify(&token, now).unwrap();
        assert_eq!(verified["sub"], "alice");
        assert_eq!(verified["iss"], ISSUER);
        assert_eq!(verified["approvers"][0]["sub"], "bob");

        let jwks = ring.jwks(now);
        assert_eq!(kids(&jwks), vec![kid.clone()]);
        let key = &jwks["keys"][0];
        assert_eq!(key["alg"], alg.as_str());
        assert_eq!(key["use"], "sig");
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(key.get(private).is_none(), "{alg}: jwks has {private}");
        }
        assert!(!jwks.to_string().contains("\"d\""), "{alg}");
    }
}

#[tokio::test]
async fn sign_overrides_a_foreign_issuer_and_refuses_non_objects() {
    let fx = Fixture::new();
    let ring = fx.ring(SigningAlg::Es256).await;
    let mut c = claims(fx.now(), Duration::minutes(5));
    c["iss"] = json!("https://evil.example");
    let (token, _) = ring.sign(&c).await.unwrap();
    assert_eq!(ring.verify(&token, fx.now()).unwrap()["iss"], ISSUER);
    assert!(ring.sign(&json!(["not", "claims"])).await.is_err());
}

#[tokio::test]
async fn tampered_and_forged_tokens_fail() {
    for alg in ALGS {
        let fx = Fixture::new();
        let ring = fx.ring(alg).await;
        let now = fx.now();
        let (token, kid) = ring
            .sign(&claims(now, Duration::minutes(15)))
            .await
            .unwrap();
        let (header, mut payload, signature) = parts(&token);

        // A changed claim under the original signature.
        payload["sub"] = json!("mallory");
        let err = ring
            .verify(&compact(&header, &payload, &signature), now)
            .unwrap_err();
        assert!(err.contains("signature"), "{alg}: {err}");

        // A flipped signature byte.
        let mut sig = B64.decode(&signature).unwrap();
        sig[3] ^= 1;
        let (header, payload, _) = parts(&token);
        assert!(
            ring.verify(&compact(&header, &payload, &B64.encode(&sig)), now)
                .is_err()
        );

        // alg: none, with and without a signature.
        let mut none = header.clone();
        none["alg"] = json!("none");
        assert!(ring.verify(&compact(&none, &payload, ""), now).is_err());
        assert!(
            ring.verify(&compact(&none, &payload, &signature), now)
                .is_err()
        );

        // HS256 keyed with our public key, in the several forms an attacker might try.
        let jwk = ring.jwks(now)["keys"][0].clone();
        let mut hs = header.clone();
        hs["alg"] = json!("HS256");
        for secret in [
            jwk.to_string().into_bytes(),
            jwk["x"].as_str().unwrap_or("").as_bytes().to_vec(),
            jwk["n"].as_str().unwrap_or("").as_bytes().to_vec(),
        ] {
            if secret.is_empty() {
                continue;
            }
            let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            h.typ = Some("at+jwt".into());
            h.kid = Some(kid.clone());
            let forged = jsonwebtoken::encode(
                &h,
                &payload,
                &jsonwebtoken::EncodingKey::from_secret(&secret).unwrap(),
            )
            .unwrap();
            let err = ring.verify(&forged, now).unwrap_err();
            assert!(err.contains("algorithm"), "{alg}: {err}");
        }

        // A different key of the same algorithm, claiming our kid.
        let other = Fixture::new();
        let other_ring = other.ring(alg).await;
        let (foreign, _) = other_ring
            .sign(&claims(now, Duration::minutes(15)))
            .await
            .unwrap();
        let (_, fpayload, fsig) = parts(&foreign);
        assert!(
            ring.verify(&compact(&header, &fpayload, &fsig), now)
                .is_err()
        );
        assert!(ring.verify(&foreign, now).is_err(), "unknown kid");

        // Garbage.
        for junk in ["", "a.b", "a.b.c", "....", &token[..token.len() / 2]] {
            assert!(ring.verify(junk, now).is_err(), "{junk:?}");
        }
    }
}

#[tokio::test]
async fn verify_checks_typ_issuer_and_times() {
    let fx = Fixture::new();
    let ring = fx.ring(SigningAlg::Es256).await;
    let now = fx.now();
    let kid = ring.signing_kid(now).unwrap();
    let der = {
        let rec = fx.store.keys.lock().unwrap()[0].clone();
        countersign_tokens::open(&fx.kek, rec.kid.as_bytes(), &rec.sealed_private).unwrap()
    };
    let key = jsonwebtoken::EncodingKey::from_ec_der(&der);
    let sign = |typ: Option<&str>, payload: &Value| {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        h.typ = typ.map(String::from);
        h.kid = Some(kid.clone());
        jsonwebtoken::encode(&h, payload, &key).unwrap()
    };
    let mut good = claims(now, Duration::minutes(10));
    good["iss"] = json!(ISSUER);
    assert!(ring.verify(&sign(Some("at+jwt"), &good), now).is_ok());
    assert!(
        ring.verify(&sign(Some("application/at+jwt"), &good), now)
            .is_ok()
    );

    // An ID token or a plain JWT from the same key is not a grant token.
    for typ in [Some("JWT"), None] {
        let err = ring.verify(&sign(typ, &good), now).unwrap_err();
        assert!(err.contains("type"), "{err}");
    }

    let mut other_iss = good.clone();
    other_iss["iss"] = json!("https://other.example");
    assert!(
        ring.verify(&sign(Some("at+jwt"), &other_iss), now)
            .unwrap_err()
            .contains("iss")
    );
    let mut no_iss = good.clone();
    no_iss.as_object_mut().unwrap().remove("iss");
    assert!(ring.verify(&sign(Some("at+jwt"), &no_iss), now).is_err());

    // exp: required, numeric, with 60 s of leeway.
    let mut no_exp = good.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    assert!(
        ring.verify(&sign(Some("at+jwt"), &no_exp), now)
            .unwrap_err()
            .contains("exp")
    );
    let mut text_exp = good.clone();
    text_exp["exp"] = json!((now + Duration::minutes(10)).timestamp().to_string());
    assert!(ring.verify(&sign(Some("at+jwt"), &text_exp), now).is_err());
    let token = sign(Some("at+jwt"), &good);
    let exp = now + Duration::minutes(10);
    assert!(ring.verify(&token, exp + Duration::seconds(59)).is_ok());
    assert!(
        ring.verify(&token, exp + Duration::seconds(60))
            .unwrap_err()
            .contains("expired")
    );

    // nbf: optional, numeric, with 60 s of leeway.
    let mut later = good.clone();
    later["nbf"] = json!((now + Duration::seconds(61)).timestamp());
    assert!(
        ring.verify(&sign(Some("at+jwt"), &later), now)
            .unwrap_err()
            .contains("nbf")
    );
    later["nbf"] = json!((now + Duration::seconds(60)).timestamp());
    assert!(ring.verify(&sign(Some("at+jwt"), &later), now).is_ok());
    let mut text_nbf = good.clone();
    text_nbf["nbf"] = json!("0");
    assert!(ring.verify(&sign(Some("at+jwt"), &text_nbf), now).is_err());
}

#[tokio::test]
async fn rotation_publishes_first_switches_and_retires_later() {
    for alg in ALGS {
        let fx = Fixture::new();
        let ring = fx.ring(alg).await;
        let lifetime = Duration::minutes(15);
        let old_kid = ring.signing_kid(fx.now()).unwrap();
        let (old_token, kid) = ring.sign(&claims(fx.now(), lifetime)).await.unwrap();
        assert_eq!(kid, old_kid);

        fx.clock.advance(Duration::minutes(1));
        let new = ring.rotate(Duration::zero(), lifetime).await.unwrap();
        let now = fx.now();
        assert_ne!(new.kid, old_kid);
        assert_eq!(new.signs_from, now);
        assert_eq!(new.publish_until, None);
        let until = now + lifetime + Duration::seconds(60);
        {
            let stored = fx.store.keys.lock().unwrap();
            assert_eq!(stored.len(), 2, "nothing is deleted");
            assert_eq!(stored[0].publish_until, Some(until));
            let events = fx.store.events.lock().unwrap();
            let rotated = events.last().unwrap();
            assert_eq!(rotated.action.as_str(), "key.rotated");
            assert_eq!(rotated.detail["kid"], new.kid.as_str());
            assert_eq!(rotated.detail["previous_kid"], old_kid.as_str());
            assert_eq!(rotated.actor.subject, "system");
        }

        // The old token still verifies; new tokens carry the new kid.
        assert!(ring.verify(&old_token, now).is_ok(), "{alg}");
        let (new_token, kid) = ring.sign(&claims(now, lifetime)).await.unwrap();
        assert_eq!(kid, new.kid);
        assert_eq!(parts(&new_token).0["kid"], new.kid.as_str());
        assert!(ring.verify(&new_token, now).is_ok());

        // Both keys are published until the old one's publication ends, then only the new.
        assert_eq!(
            kids(&ring.jwks(now)),
            vec![old_kid.clone(), new.kid.clone()]
        );
        let just_before = until - Duration::milliseconds(1);
        assert_eq!(kids(&ring.jwks(just_before)).len(), 2);
        assert_eq!(kids(&ring.jwks(until)), vec![new.kid.clone()]);
        // A token of the retired key no longer verifies once its key is gone.
        assert!(ring.verify(&old_token, until).is_err());
    }
}

#[tokio::test]
async fn a_delayed_key_is_published_before_it_signs() {
    let fx = Fixture::new();
    let ring = fx.ring(SigningAlg::Es256).await;
    let old_kid = ring.signing_kid(fx.now()).unwrap();
    let delay = Duration::hours(1);
    let lifetime = Duration::minutes(15);
    let new = ring.rotate(delay, lifetime).await.unwrap();
    let now = fx.now();

    assert_eq!(new.signs_from, now + delay);
    assert_eq!(
        kids(&ring.jwks(now)),
        vec![old_kid.clone(), new.kid.clone()]
    );
    assert_eq!(ring.signing_kid(now), Some(old_kid.clone()));
    assert_eq!(
        ring.signing_kid(now + delay - Duration::milliseconds(1)),
        Some(old_kid.clone())
    );
    assert_eq!(ring.signing_kid(now + delay), Some(new.kid.clone()));
    assert_eq!(ring.sign(&claims(now, lifetime)).await.unwrap().1, old_kid);

    fx.clock.advance(delay);
    assert_eq!(
        ring.sign(&claims(fx.now(), lifetime)).await.unwrap().1,
        new.kid
    );
    // The old key stays published for the lifetime of its last tokens, plus leeway.
    let until = now + delay + lifetime + Duration::seconds(60);
    assert_eq!(kids(&ring.jwks(until - Duration::seconds(1))).len(), 2);
    assert_eq!(kids(&ring.jwks(until)), vec![new.kid.clone()]);
}

#[tokio::test]
async fn rotating_again_before_the_switch_retires_the_pending_key_too() {
    let fx = Fixture::new();
    let ring = fx.ring(SigningAlg::Es256).await;
    let a = ring.signing_kid(fx.now()).unwrap();
    let lifetime = Duration::minutes(15);
    let b = ring.rotate(Duration::hours(1), lifetime).await.unwrap();
    fx.clock.advance(Duration::minutes(5));
    let c = ring.rotate(Duration::zero(), lifetime).await.unwrap();
    let now = fx.now();
    let events = fx.store.events.lock().unwrap().clone();
    assert_eq!(events.last().unwrap().detail["previous_kid"], a.as_str());
    let stored = fx.store.keys.lock().unwrap().clone();
    let until = now + lifetime + Duration::seconds(60);
    let b_rec = stored.iter().find(|k| k.kid == b.kid).unwrap();
    assert_eq!(b_rec.publish_until, Some(until));
    // C is the newest key that signs, now and after B's planned start.
    assert_eq!(ring.signing_kid(now), Some(c.kid.clone()));
    assert_eq!(
        ring.signing_kid(now + Duration::hours(2)),
        Some(c.kid.clone())
    );
}

#[tokio::test]
async fn rotate_refuses_nonsense_durations() {
    let fx = Fixture::new();
    let ring = fx.ring(SigningAlg::Es256).await;
    assert!(
        ring.rotate(Duration::seconds(-1), Duration::minutes(5))
            .await
            .unwrap_err()
            .contains("delay")
    );
    assert!(
        ring.rotate(Duration::zero(), Duration::zero())
            .await
            .unwrap_err()
            .contains("lifetime")
    );
    assert_eq!(fx.store.keys.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn load_with_the_wrong_kek_fails_clearly() {
    let fx = Fixture::new();
    fx.ring(SigningAlg::EdDsa).await;
    let err = KeyRing::load(
        fx.store.clone(),
        Kek::generate(),
        SigningAlg::EdDsa,
        ISSUER.into(),
        fx.clock.clone(),
    )
    .await
    .unwrap_err();
    assert!(err.contains("cannot unseal signing key"), "{err}");
    assert!(err.contains("wrong key-encryption key?"), "{err}");
    // Nothing was created to "repair" it.
    assert_eq!(fx.store.keys.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn long_retired_keys_are_not_unsealed() {
    // A key whose publication ended is never needed again: even under another KEK (e.g. a
    // row from before a KEK change) it does not stop start-up.
    let fx = Fixture::new();
    let old = {
        let mut k = generate_key(SigningAlg::Es256, &Kek::generate(), t0(), t0());
        k.publish_until = Some(t0() + Duration::minutes(1));
        k
    };
    fx.store.keys.lock().unwrap().push(old.clone());
    fx.clock.advance(Duration::minutes(2));
    let ring = fx.ring(SigningAlg::Es256).await;
    let jwks = ring.jwks(fx.now());
    assert_eq!(kids(&jwks).len(), 1);
    assert_ne!(kids(&jwks)[0], old.kid);
}

#[tokio::test]
async fn a_second_ring_agrees_after_rotate_and_reload() {
    let fx = Fixture::new();
    let first = fx.ring(SigningAlg::Es256).await;
    let second = fx.ring(SigningAlg::Es256).await;
    let lifetime = Duration::minutes(15);
    let (before, _) = first.sign(&claims(fx.now(), lifetime)).await.unwrap();

    let new = first.rotate(Duration::zero(), lifetime).await.unwrap();
    let now = fx.now();
    // Before reloading, the second replica does not know the new key.
    assert_ne!(second.jwks(now), first.jwks(now));
    let (after, _) = first.sign(&claims(now, lifetime)).await.unwrap();
    assert!(second.verify(&after, now).is_err());

    second.reload().await.unwrap();
    assert_eq!(second.jwks(now), first.jwks(now));
    assert_eq!(second.signing_kid(now), Some(new.kid.clone()));
    assert!(second.verify(&after, now).is_ok());
    assert!(second.verify(&before, now).is_ok());
    assert_eq!(
        second.sign(&claims(now, lifetime)).await.unwrap().1,
        new.kid
    );
}

#[tokio::test]
async fn a_stale_replica_rereads_its_keys_before_signing() {
    // Replica one rotates; replica two is never told. Within 30 s it may still sign with the
    // old key (still published for the tokens' lifetime plus leeway); after that, signing
    // re-reads the store and switches to the new key.
    let fx = Fixture::new();
    let first = fx.ring(SigningAlg::Es256).await;
    let second = fx.ring(SigningAlg::Es256).await;
    let old_kid = second.signing_kid(fx.now()).unwrap();
    let lifetime = Duration::minutes(15);
    let new = first.rotate(Duration::zero(), lifetime).await.unwrap();

    fx.clock.advance(Duration::seconds(10));
    let (token, kid) = second.sign(&claims(fx.now(), lifetime)).await.unwrap();
    assert_eq!(kid, old_kid);
    // It verifies everywhere until it expires.
    first.reload().await.unwrap();
    assert!(first.verify(&token, fx.now() + lifetime).is_ok());

    fx.clock.advance(Duration::seconds(31));
    let (token, kid) = second.sign(&claims(fx.now(), lifetime)).await.unwrap();
    assert_eq!(kid, new.kid);
    assert!(first.verify(&token, fx.now()).is_ok());
}

#[tokio::test]
async fn sign_reloads_once_when_no_key_in_memory_is_usable() {
    let fx = Fixture::new();
    let now = fx.now();
    // A key that only signs from later: the ring starts with nothing to sign with.
    let pending = generate_key(SigningAlg::Es256, &fx.kek, now, now + Duration::hours(1));
    fx.store.keys.lock().unwrap().push(pending.clone());
    let ring = fx.ring(SigningAlg::Es256).await;
    assert_eq!(
        fx.store.keys.lock().unwrap().len(),
        1,
        "no first key was created"
    );
    assert_eq!(ring.signing_kid(now), None);
    let err = ring
        .sign(&claims(now, Duration::minutes(5)))
        .await
        .unwrap_err();
    assert!(matches!(err, SignError::NoUsableKey), "{err}");
    assert!(
        err.to_string().contains("no signing key is usable"),
        "{err}"
    );

    // Someone else adds a key that signs now: the next sign finds it without a reload call.
    let current = generate_key(SigningAlg::Es256, &fx.kek, now, now);
    fx.store.keys.lock().unwrap().push(current.clone());
    let (_, kid) = ring.sign(&claims(now, Duration::minutes(5))).await.unwrap();
    assert_eq!(kid, current.kid);
}

#[tokio::test]
async fn an_existing_key_of_another_algorithm_keeps_signing_until_rotation() {
    let fx = Fixture::new();
    let es = fx.ring(SigningAlg::Es256).await;
    let es_kid = es.signing_kid(fx.now()).unwrap();
    let ed = fx.ring(SigningAlg::EdDsa).await;
    assert_eq!(ed.signing_kid(fx.now()), Some(es_kid));
    let new = ed
        .rotate(Duration::zero(), Duration::minutes(5))
        .await
        .unwrap();
    assert_eq!(new.alg, "EdDSA");
    let (token, _) = ed
        .sign(&claims(fx.now(), Duration::minutes(5)))
        .await
        .unwrap();
    assert_eq!(parts(&token).0["alg"], "EdDSA");
}

#[tokio::test]
async fn debug_shows_no_secrets() {
    let fx = Fixture::new();
    let ring = fx.ring(SigningAlg::Es256).await;
    let shown = format!("{ring:?}");
    assert!(shown.contains(ISSUER) && shown.contains("ES256"), "{shown}");
    assert!(!shown.contains(&fx.kek.to_base64()));
    assert!(!shown.contains("sealed"));
}
