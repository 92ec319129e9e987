//! The key ring: our signing keys as read from the [`KeyStore`], kept in memory with their
//! private parts unsealed, so that signing, verifying and serving the JWKS never wait on the
//! database. Rotation writes through the store, and every replica picks the new key up on
//! [`KeyRing::reload`].
//!
//! The schedule lives in the stored records: a key is published from `created_at` until
//! `publish_until` (open-ended while it may still sign), and signs from `signs_from`. Rotation
//! publishes the next key before it signs, so verifiers that cache our JWKS learn it first, and
//! keeps the old one published until the last token it signed has expired. Nothing is deleted.

use std::fmt;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use base64::Engine as _;
use countersign_core::audit::{Actor, AuditAction, NewAuditEvent};
use countersign_core::grant::SigningKeyRecord;
use countersign_core::ports::{Clock, GrantSigner, KeyStore, SignError};
use countersign_core::time::{Timestamp, rfc3339};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Header, Validation};
use serde_json::{Value, json};

use crate::kek::Kek;
use crate::keys::{LoadedKey, PrivateKey, SigningAlg, try_generate_key};

/// The `typ` header of our grant tokens (RFC 9068 access tokens).
pub const TOKEN_TYPE: &str = "at+jwt";

/// Clock skew tolerated on `exp` and `nbf`, and added to a retired key's publication so a
/// token that is still accepted somewhere can still be verified through our JWKS.
pub const LEEWAY_SECS: i64 = 60;

/// How old the keys in memory may be before signing re-reads them. Another replica's rotation
/// retires our key `LEEWAY_SECS` after the last token it may sign could expire, so signing with
/// a stale key for less than that still yields tokens that verify until they expire.
const REFRESH_AFTER_SECS: i64 = 30;

/// Our signing keys, shared by every task of the process. Cloning is cheap (an `Arc`).
#[derive(Clone)]
pub struct KeyRing {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn KeyStore>,
    kek: Kek,
    alg: SigningAlg,
    issuer: String,
    clock: Arc<dyn Clock>,
    /// The keys as last read; replaced whole on every reload so readers never see half an
    /// update.
    keys: RwLock<Arc<Snapshot>>,
    /// Serializes this process's read-modify-write sequences against the store (first-key
    /// creation, rotation, reload), so an older read never replaces a newer one.
    writer: tokio::sync::Mutex<()>,
}

struct Snapshot {
    /// Oldest first.
    keys: Vec<LoadedKey>,
    /// When they were read (by our clock).
    read_at: Timestamp,
}

impl KeyRing {
    /// Reads the signing keys from `keys` and unseals every private part that may still be
    /// needed to sign. A key-encryption key that does not open them fails here, at start-up,
    /// rather than at the first grant.
    ///
    /// When no stored key may sign any more (a new database), creates one with the
    /// configured algorithm that signs from now, stored with a `key.created` audit event by
    /// the system actor. An existing key of another algorithm keeps signing until the next
    /// [`KeyRing::rotate`], which uses `alg`.
    pub async fn load(
        keys: Arc<dyn KeyStore>,
        kek: Kek,
        alg: SigningAlg,
        issuer: String,
        clock: Arc<dyn Clock>,
    ) -> Result<KeyRing, String> {
        let ring = KeyRing {
            inner: Arc::new(Inner {
                store: keys,
                kek,
                alg,
                issuer,
                clock,
                keys: RwLock::new(Arc::new(Snapshot {
                    keys: Vec::new(),
                    read_at: chrono::DateTime::<chrono::Utc>::MIN_UTC,
                })),
                writer: tokio::sync::Mutex::new(()),
            }),
        };
        {
            let _writing = ring.inner.writer.lock().await;
            let mut records = ring.read_store().await?;
            if !records.iter().any(|k| k.publish_until.is_none()) {
                ring.create_first_key().await?;
                // Read back rather than trust our own write: another replica starting at the
                // same moment may have created one too.
                records = ring.read_store().await?;
            }
            ring.install(&records)?;
        }
        let now = ring.inner.clock.now();
        let snapshot = ring.snapshot();
        match snapshot
            .keys
            .iter()
            .rev()
            .find(|k| k.signs_from <= now && k.published_at(now))
        {
            Some(current) if current.alg != alg => tracing::warn!(
                kid = %current.kid,
                current = %current.alg,
                configured = %alg,
                "the current signing key uses another algorithm than configured; \
                 it keeps signing until the next key rotation"
            ),
            Some(_) => {}
            None => tracing::warn!("no stored signing key signs yet; grants cannot be signed"),
        }
        Ok(ring)
    }

    /// Adds a new key that is published now and signs from `now + delay`, and schedules the
    /// end of publication of every key that may still sign: `new.signs_from +
    /// max_token_lifetime + 60 s`, by when every token they signed has expired (with leeway).
    /// Audited as `key.rotated` with the previous and the new `kid`. Returns the new key.
    ///
    /// Choose `delay` at least as long as verifiers cache our JWKS and as the interval at
    /// which replicas call [`KeyRing::reload`]: until then they do not know the new key. (A
    /// replica that has not reloaded keeps signing with the old key, for at most 30 s: signing
    /// re-reads keys older than that, and the 60 s leeway covers those tokens.)
    pub async fn rotate(
        &self,
        delay: chrono::Duration,
        max_token_lifetime: chrono::Duration,
    ) -> Result<SigningKeyRecord, String> {
        if delay < chrono::Duration::zero() {
            return Err(format!(
                "the key rotation delay must not be negative (got {}s)",
                delay.num_seconds()
            ));
        }
        if max_token_lifetime <= chrono::Duration::zero() {
            return Err(format!(
                "the maximum token lifetime must be positive (got {}s)",
                max_token_lifetime.num_seconds()
            ));
        }
        let inner = &self.inner;
        let _writing = inner.writer.lock().await;
        // The store, not the cache, is the truth: another replica may have rotated already.
        let records = self.read_store().await?;
        let now = inner.clock.now();
        let previous = records
            .iter()
            .filter(|k| k.signs_from <= now && published_at(k, now))
            .max_by_key(|k| k.created_at)
            .map(|k| k.kid.clone());
        let new = try_generate_key(inner.alg, &inner.kek, now, now + delay)?;
        let until = new.signs_from + max_token_lifetime + chrono::Duration::seconds(LEEWAY_SECS);
        // Keys whose `publish_until` is already set were retired by an earlier rotation: the
        // successor named then stops them signing no later than the new key would, so the
        // end of their publication already covers their last tokens and stays as it is.
        let retire: Vec<(String, Timestamp)> = records
            .iter()
            .filter(|k| k.publish_until.is_none())
            .map(|k| (k.kid.clone(), until))
            .collect();
        let event = NewAuditEvent {
            at: now,
            actor: Actor::system(),
            action: AuditAction::KeyRotated,
            request_id: None,
            digest: None,
            detail: json!({
                "kid": new.kid,
                "previous_kid": previous,
                "alg": new.alg,
                "signs_from": rfc3339(&new.signs_from),
                "retired": retire
                    .iter()
                    .map(|(kid, until)| json!({"kid": kid, "publish_until": rfc3339(until)}))
                    .collect::<Vec<_>>(),
            }),
        };
        inner
            .store
            .add_signing_key(&new, &retire, &[event])
            .await
            .map_err(|e| format!("cannot store the new signing key: {e}"))?;
        tracing::info!(
            kid = %new.kid,
            previous_kid = previous.as_deref().unwrap_or("-"),
            alg = %new.alg,
            signs_from = %rfc3339(&new.signs_from),
            "rotated the signing key"
        );
        let records = self.read_store().await?;
        self.install(&records)?;
        Ok(new)
    }

    /// Re-reads the keys from the store, e.g. after another replica rotated. On failure the
    /// keys in memory stay as they were.
    pub async fn reload(&self) -> Result<(), String> {
        let _writing = self.inner.writer.lock().await;
        let records = self.read_store().await?;
        self.install(&records)
    }

    /// The key that signs at `now`: the newest published key whose `signs_from` has come.
    pub fn signing_kid(&self, now: Timestamp) -> Option<String> {
        self.snapshot()
            .keys
            .iter()
            .rev()
            .find(|k| k.signs_from <= now && k.published_at(now))
            .map(|k| k.kid.clone())
    }

    /// The JWKS at `now`: `{"keys": [...]}` with every key published then (created, and not
    /// past `publish_until`), each once, public members only, each with `kid`, `alg` and
    /// `use`.
    pub fn jwks(&self, now: Timestamp) -> Value {
        let snapshot = self.snapshot();
        let mut seen = std::collections::HashSet::new();
        let published: Vec<Value> = snapshot
            .keys
            .iter()
            .filter(|k| k.published_at(now) && seen.insert(k.kid.as_str()))
            .map(|k| k.public_jwk.clone())
            .collect();
        json!({ "keys": published })
    }

    /// Verifies one of our own grant tokens and returns its claims (for introspection).
    ///
    /// Checks, in order: a compact JWS whose header says `typ: at+jwt` and names the `kid` of
    /// a key published at `now`, with that key's algorithm (so never `none` or HMAC); the
    /// signature; `iss` equal to our issuer; `exp` present and later than `now - 60 s`; `nbf`,
    /// if present, no later than `now + 60 s`. Audience, revocation and single use are the
    /// caller's business.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<Value, String> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| "the token is not a signed JWT with a supported algorithm".to_string())?;
        check_header(&header)?;
        let kid = header
            .kid
            .as_deref()
            .ok_or_else(|| "the token names no signing key (no kid)".to_string())?;
        let snapshot = self.snapshot();
        let key = snapshot
            .keys
            .iter()
            .find(|k| k.kid == kid && k.published_at(now))
            .ok_or_else(|| format!("the token's key '{kid}' is not one of our published keys"))?;
        let alg = key.alg.jwt_algorithm();
        if header.alg != alg {
            return Err(format!(
                "the token's algorithm {:?} does not match its key's ({})",
                header.alg, key.alg
            ));
        }
        // jsonwebtoken checks the signature; the time checks are ours, against the clock we
        // are given rather than the system's.
        let mut validation = Validation::new(alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Value>(token, &key.decoding, &validation).map_err(
            |e| match e.kind() {
                ErrorKind::InvalidSignature => "the token's signature does not verify".to_string(),
                _ => "the token is malformed".to_string(),
            },
        )?;
        let claims = data.claims;
        if !claims.is_object() {
            return Err("the token's claims are not a JSON object".into());
        }
        if claims.get("iss").and_then(Value::as_str) != Some(self.inner.issuer.as_str()) {
            return Err("the token was not issued by this server (iss)".into());
        }
        let now_secs = now.timestamp_millis() as f64 / 1000.0;
        let leeway = LEEWAY_SECS as f64;
        let exp = numeric_date(&claims, "exp")?
            .ok_or_else(|| "the token has no expiry (exp)".to_string())?;
        if exp <= now_secs - leeway {
            return Err("the token has expired".into());
        }
        if let Some(nbf) = numeric_date(&claims, "nbf")?
            && nbf > now_secs + leeway
        {
            return Err("the token is not valid yet (nbf)".into());
        }
        Ok(claims)
    }

    // ---- internals ----

    fn snapshot(&self) -> Arc<Snapshot> {
        self.inner
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn read_store(&self) -> Result<Vec<SigningKeyRecord>, String> {
        self.inner
            .store
            .signing_keys()
            .await
            .map_err(|e| format!("cannot read the signing keys: {e}"))
    }

    /// Makes `records` the keys in memory, all or nothing.
    fn install(&self, records: &[SigningKeyRecord]) -> Result<(), String> {
        let now = self.inner.clock.now();
        let mut records: Vec<&SigningKeyRecord> = records.iter().collect();
        // Oldest first; the sort is stable, so the store's order breaks ties.
        records.sort_by_key(|k| k.created_at);
        let mut loaded = Vec::with_capacity(records.len());
        for record in records {
            // A key past its publication never verifies or signs again: leave it sealed and
            // unread, so an old unreadable row cannot stop start-up.
            if record.publish_until.is_some_and(|until| until <= now) {
                continue;
            }
            // Every key still published may still sign (or be about to): unseal it now.
            loaded.push(LoadedKey::from_record(record, &self.inner.kek, true)?);
        }
        *self.inner.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Snapshot {
            keys: loaded,
            read_at: now,
        });
        Ok(())
    }

    async fn create_first_key(&self) -> Result<(), String> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let key = try_generate_key(inner.alg, &inner.kek, now, now)?;
        let event = NewAuditEvent {
            at: now,
            actor: Actor::system(),
            action: AuditAction::KeyCreated,
            request_id: None,
            digest: None,
            detail: json!({
                "kid": key.kid,
                "alg": key.alg,
                "signs_from": rfc3339(&key.signs_from),
            }),
        };
        inner
            .store
            .add_signing_key(&key, &[], &[event])
            .await
            .map_err(|e| format!("cannot store the new signing key: {e}"))?;
        tracing::info!(kid = %key.kid, alg = %key.alg, "created a signing key");
        Ok(())
    }

    /// Signs with the key of `now`; `None` when the keys in memory have none usable.
    fn try_sign(
        &self,
        claims: &Value,
        now: Timestamp,
    ) -> Option<Result<(String, String), SignError>> {
        let snapshot = self.snapshot();
        let key = snapshot
            .keys
            .iter()
            .rev()
            .find(|k| k.signs_from <= now && k.published_at(now))?;
        let signing = key.signing.as_ref()?;
        let mut header = Header::new(key.alg.jwt_algorithm());
        header.typ = Some(TOKEN_TYPE.into());
        header.kid = Some(key.kid.clone());
        Some(
            compact(&header, claims, signing)
                .map(|token| (token, key.kid.clone()))
                .ok_or_else(|| SignError::Signature {
                    kid: key.kid.clone(),
                }),
        )
    }
}

/// `claims` under `header`, signed by `key`, in the JWS compact serialization (RFC 7515,
/// section 7.1) exactly as `jsonwebtoken::encode` writes it: base64url without padding of the
/// header's and the claims' JSON, joined by dots, then of the signature of that text.
fn compact(header: &Header, claims: &Value, key: &PrivateKey) -> Option<String> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut token = b64.encode(serde_json::to_vec(header).ok()?);
    token.push('.');
    b64.encode_string(serde_json::to_vec(claims).ok()?, &mut token);
    let signature = key.sign(token.as_bytes()).ok()?;
    token.push('.');
    b64.encode_string(signature, &mut token);
    Some(token)
}

#[async_trait]
impl GrantSigner for KeyRing {
    fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    async fn sign(&self, claims: &Value) -> Result<(String, String), SignError> {
        let Value::Object(claims) = claims else {
            return Err(SignError::ClaimsNotAnObject);
        };
        let mut claims = claims.clone();
        // Ours to set: a caller cannot sign a token in another issuer's name.
        claims.insert("iss".into(), Value::String(self.inner.issuer.clone()));
        let claims = Value::Object(claims);
        let now = self.inner.clock.now();
        // Keys read long ago may have been retired by another replica since: re-read first.
        // If the store does not answer, the keys we have are still the best we know.
        let read_at = self.snapshot().read_at;
        if now - read_at > chrono::Duration::seconds(REFRESH_AFTER_SECS)
            && let Err(e) = self.reload().await
        {
            tracing::warn!(error = %e, "cannot re-read the signing keys; signing with the ones in memory");
        }
        if let Some(signed) = self.try_sign(&claims, now) {
            return signed;
        }
        // Another replica may have rotated, or our key's publication ended: read once more.
        self.reload().await.map_err(SignError::Keys)?;
        self.try_sign(&claims, now)
            .unwrap_or(Err(SignError::NoUsableKey))
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snapshot = self.snapshot();
        f.debug_struct("KeyRing")
            .field("issuer", &self.inner.issuer)
            .field("alg", &self.inner.alg.as_str())
            .field(
                "kids",
                &snapshot
                    .keys
                    .iter()
                    .map(|k| k.kid.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Whether a stored record is in the JWKS at `now`.
fn published_at(record: &SigningKeyRecord, now: Timestamp) -> bool {
    record.created_at <= now && record.publish_until.is_none_or(|until| until > now)
}

/// jsonwebtoken does not look at `typ` or `crit`; we do.
fn check_header(header: &Header) -> Result<(), String> {
    let typ_ok = header.typ.as_deref().is_some_and(|typ| {
        typ.eq_ignore_ascii_case(TOKEN_TYPE) || typ.eq_ignore_ascii_case("application/at+jwt")
    });
    if !typ_ok {
        return Err(format!(
            "the token's type is {}, not {TOKEN_TYPE}",
            header.typ.as_deref().unwrap_or("missing")
        ));
    }
    if header.crit.is_some() {
        return Err("the token has critical header parameters we do not understand".into());
    }
    Ok(())
}

/// A NumericDate claim: absent, or a JSON number of seconds. Any other type is an error, not
/// an absence (the mistake behind CVE-2026-25537).
fn numeric_date(claims: &Value, name: &str) -> Result<Option<f64>, String> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => value
            .as_f64()
            .map(Some)
            .ok_or_else(|| format!("the token's {name} is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::keys::generate_key;

    /// Tokens laid out by [`compact`] are the ones `jsonwebtoken::encode` writes: byte for byte
    /// where the signature is deterministic (EdDSA, RS256), and accepted by
    /// `jsonwebtoken::decode` for every algorithm.
    #[test]
    fn compact_tokens_are_what_jsonwebtoken_writes() {
        let kek = Kek::generate();
        let now = chrono::Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        let claims = json!({
            "iss": "https://countersign.example", "sub": "alice", "aud": "deploy",
            "exp": 1_900_000_000_i64, "nested": {"ü": [1, 2.5, null]},
        });
        for alg in [SigningAlg::Es256, SigningAlg::EdDsa, SigningAlg::Rs256] {
            let record = generate_key(alg, &kek, now, now);
            let key = LoadedKey::from_record(&record, &kek, true).unwrap();
            let mut header = Header::new(alg.jwt_algorithm());
            header.typ = Some(TOKEN_TYPE.into());
            header.kid = Some(key.kid.clone());
            let token = compact(&header, &claims, key.signing.as_ref().unwrap()).unwrap();

            let mut validation = Validation::new(alg.jwt_algorithm());
            validation.set_audience(&["deploy"]);
            let decoded = jsonwebtoken::decode::<Value>(&token, &key.decoding, &validation)
                .unwrap_or_else(|e| panic!("{alg}: {e}"));
            assert_eq!(decoded.claims, claims);
            assert_eq!(decoded.header.kid.as_deref(), Some(key.kid.as_str()));
            assert_eq!(decoded.header.typ.as_deref(), Some(TOKEN_TYPE));

            if alg == SigningAlg::Es256 {
                continue;
            }
            let pkcs8 = crate::kek::open(&kek, key.kid.as_bytes(), &record.sealed_private).unwrap();
            let theirs = crate::keys::encoding_key(alg, &pkcs8).unwrap();
            assert_eq!(
                token,
                jsonwebtoken::encode(&header, &claims, &theirs).unwrap(),
                "{alg}"
            );
        }
    }
}
