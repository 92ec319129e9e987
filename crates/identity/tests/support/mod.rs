//! Test harness: signing keys, a local issuer (discovery + JWKS served by axum on 127.0.0.1:0,
//! counting every request by path), and token builders that change one thing at a time.

// Each test binary uses part of the harness; helpers panic on setup failure like tests do.
#![allow(
    dead_code,
    clippy::unwrap_used,
    reason = "test support shared by several test binaries, each using its own subset; a panic is the failure report"
)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use axum::Router;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::DateTime;
use countersign_core::{PrincipalKind, Timestamp};
use countersign_identity::{IssuerSettings, Verifier};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Map, Value, json};

/// The fixed "now" of every test: no test reads the clock.
pub const NOW: i64 = 1_800_000_000;
pub const AUDIENCE: &str = "countersign";

pub fn now() -> Timestamp {
    DateTime::from_timestamp(NOW, 0).unwrap()
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// A private signing key with its public JWK.
#[derive(Clone)]
pub struct SigningKey {
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    /// Public JWK without `kid`, `use` or `alg`.
    pub public: Value,
    /// SPKI DER of the public key (for the HMAC-confusion cases).
    pub spki: Vec<u8>,
}

impl SigningKey {
    fn from_encoding(alg: Algorithm, encoding: EncodingKey, spki: Vec<u8>) -> Self {
        let jwk = Jwk::from_encoding_key(&encoding, alg).unwrap();
        let mut public = serde_json::to_value(&jwk).unwrap();
        public.as_object_mut().unwrap().remove("alg");
        Self {
            alg,
            encoding,
            public,
            spki,
        }
    }

    pub fn p256() -> Self {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
        let spki = AsDer::<PublicKeyX509Der>::as_der(pair.public_key())
            .unwrap()
            .as_ref()
            .to_vec();
        Self::from_encoding(
            Algorithm::ES256,
            EncodingKey::from_ec_der(doc.as_ref()),
            spki,
        )
    }

    pub fn rsa2048() -> Self {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).unwrap();
        let pem = pem("PRIVATE KEY", pkcs8.as_ref());
        let spki = AsDer::<PublicKeyX509Der>::as_der(pair.public_key())
            .unwrap()
            .as_ref()
            .to_vec();
        Self::from_encoding(
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
            spki,
        )
    }

    pub fn ed25519() -> Self {
        // jsonwebtoken reads Ed25519 keys only as PKCS#8 v1 (no public key inside).
        let doc = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        let spki = AsDer::<PublicKeyX509Der>::as_der(pair.public_key())
            .unwrap()
            .as_ref()
            .to_vec();
        Self::from_encoding(
            Algorithm::EdDSA,
            EncodingKey::from_ed_der(doc.as_ref()),
            spki,
        )
    }

    /// The public JWK as published, with a `kid` (or none) and `use: sig`.
    pub fn jwk(&self, kid: Option<&str>) -> Value {
        let mut jwk = self.public.clone();
        let map = jwk.as_object_mut().unwrap();
        if let Some(kid) = kid {
            map.insert("kid".into(), kid.into());
        }
        map.insert("use".into(), "sig".into());
        jwk
    }

    /// Signs `header.payload` (already encoded) with `alg`.
    pub fn sign_input(&self, input: &str, alg: Algorithm) -> String {
        jsonwebtoken::crypto::sign(input.as_bytes(), &self.encoding, alg).unwrap()
    }
}

pub fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// Keys generated once for the whole test binary (RSA generation is slow in debug builds).
pub struct TestKeys {
    pub es: SigningKey,
    pub es2: SigningKey,
    pub rsa: SigningKey,
    pub ed: SigningKey,
    pub other_es: SigningKey,
    pub attacker_es: SigningKey,
    pub attacker_rsa: SigningKey,
}

pub fn keys() -> &'static TestKeys {
    static KEYS: OnceLock<TestKeys> = OnceLock::new();
    KEYS.get_or_init(|| TestKeys {
        es: SigningKey::p256(),
        es2: SigningKey::p256(),
        rsa: SigningKey::rsa2048(),
        ed: SigningKey::ed25519(),
        other_es: SigningKey::p256(),
        attacker_es: SigningKey::p256(),
        attacker_rsa: SigningKey::rsa2048(),
    })
}

/// Builds a token from raw header and payload text, signed by `key` with `alg`.
pub fn sign_raw(key: &SigningKey, alg: Algorithm, header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let sig = key.sign_input(&input, alg);
    format!("{input}.{sig}")
}

/// Builds a token from header and payload maps; the header's `alg` decides the algorithm when
/// it is one jsonwebtoken can sign with, else `key.alg`.
pub fn sign(key: &SigningKey, header: &Map<String, Value>, payload: &Map<String, Value>) -> String {
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(|a| a.parse::<Algorithm>().ok())
        .filter(|a| a.family() == key.alg.family())
        .unwrap_or(key.alg);
    sign_raw(
        key,
        alg,
        &Value::Object(header.clone()).to_string(),
        &Value::Object(payload.clone()).to_string(),
    )
}

/// What the local issuer server serves for one issuer.
#[derive(Clone, Debug)]
pub struct Served {
    pub discovery: Value,
    pub jwks: Value,
    /// When set, every request for this issuer answers with this status.
    pub fail: Option<u16>,
    /// When set, every request for this issuer is redirected here.
    pub redirect: Option<String>,
}

#[derive(Default)]
pub struct ServerState {
    pub issuers: Mutex<HashMap<String, Served>>,
    pub hits: Mutex<HashMap<String, usize>>,
}

/// A local OIDC issuer server hosting several issuers at `{base}/{name}`.
#[derive(Clone)]
pub struct IssuerServer {
    pub base: String,
    pub state: Arc<ServerState>,
}

impl IssuerServer {
    pub async fn start() -> Self {
        let state = Arc::new(ServerState::default());
        let app = Router::new().fallback({
            let state = state.clone();
            move |uri: Uri| {
                let state = state.clone();
                async move { serve(&state, &uri) }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { base, state }
    }

    pub fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.base)
    }

    /// Serves issuer `name` with a correct discovery document and this key set.
    pub fn add(&self, name: &str, jwks: Value) {
        let url = self.url(name);
        let discovery = json!({
            "issuer": url,
            "jwks_uri": format!("{url}/jwks"),
            "authorization_endpoint": format!("{url}/authorize"),
            "token_endpoint": format!("{url}/token"),
            "id_token_signing_alg_values_supported": ["ES256", "RS256", "EdDSA"],
        });
        self.state.issuers.lock().unwrap().insert(
            name.to_owned(),
            Served {
                discovery,
                jwks,
                fail: None,
                redirect: None,
            },
        );
    }

    pub fn edit(&self, name: &str, f: impl FnOnce(&mut Served)) {
        f(self.state.issuers.lock().unwrap().get_mut(name).unwrap());
    }

    /// How many requests reached `path` (e.g. `/main/jwks`).
    pub fn hits(&self, path: &str) -> usize {
        self.state
            .hits
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    pub fn total_hits(&self) -> usize {
        self.state.hits.lock().unwrap().values().sum()
    }
}

fn serve(state: &ServerState, uri: &Uri) -> Response {
    let path = uri.path().to_owned();
    *state.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (Some(name), Some(rest)) = (parts.next(), parts.next()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let issuers = state.issuers.lock().unwrap();
    let Some(served) = issuers.get(name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if let Some(location) = &served.redirect {
        return (
            StatusCode::FOUND,
            [(axum::http::header::LOCATION, location.clone())],
        )
            .into_response();
    }
    if let Some(code) = served.fail {
        return StatusCode::from_u16(code).unwrap().into_response();
    }
    match rest {
        ".well-known/openid-configuration" => axum::Json(served.discovery.clone()).into_response(),
        "jwks" => axum::Json(served.jwks.clone()).into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Settings for a human issuer at `url` with the test audience.
pub fn human(name: &str, url: &str) -> IssuerSettings {
    IssuerSettings::new(name, url, PrincipalKind::Human, vec![AUDIENCE.to_owned()])
}

pub fn workload(name: &str, url: &str) -> IssuerSettings {
    IssuerSettings::new(
        name,
        url,
        PrincipalKind::Workload,
        vec![AUDIENCE.to_owned()],
    )
}

pub fn verifier(settings: Vec<IssuerSettings>) -> Verifier {
    Verifier::new(settings, countersign_identity::http_client()).unwrap()
}
