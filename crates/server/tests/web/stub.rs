//! A deliberately misbehaving OpenID provider (the harness of anchor-security (G)(1)): it
//! answers discovery and JWKS honestly, approves every authorization at once, and signs ID
//! tokens (and logout tokens) with its own P-256 key after applying one mutation chosen by the
//! test. It counts token-endpoint calls, so a test can assert that a refused response was
//! never redeemed. Its clock is the app's `ManualClock`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use axum::extract::{RawForm, RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use countersign_core::Clock;
use countersign_core::ports::ManualClock;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Map, Value, json};

pub const CLIENT_ID: &str = "stub-web";
pub const CLIENT_SECRET: &str = "stub-secret";
pub const KID: &str = "stub-key-1";
/// How long the stub's ID tokens live.
pub const ID_TOKEN_TTL: i64 = 300;

/// Changes the claims (and header) of the next ID tokens.
pub type Mutation = Arc<dyn Fn(&mut Map<String, Value>, &mut Map<String, Value>) + Send + Sync>;

#[derive(Default)]
struct Pending {
    nonce: Option<String>,
}

struct Inner {
    issuer: String,
    clock: Arc<ManualClock>,
    key: EncodingKey,
    jwk: Value,
    pending: Mutex<HashMap<String, Pending>>,
    mutation: Mutex<Option<Mutation>>,
    /// Overrides the `iss` parameter of the authorization response.
    response_iss: Mutex<Option<String>>,
    /// The user's claims (`sub`, `name`, `groups`…).
    user: Mutex<Map<String, Value>>,
    /// When set, the refresh grant answers `invalid_grant`.
    refuse_refresh: Mutex<bool>,
    token_calls: Mutex<u32>,
    refresh_calls: Mutex<u32>,
    last_authorization: Mutex<HashMap<String, String>>,
    sid: String,
}

/// The running stub provider.
#[derive(Clone)]
pub struct StubOp(Arc<Inner>);

impl StubOp {
    pub async fn start(clock: Arc<ManualClock>) -> Self {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let key = EncodingKey::from_ec_der(doc.as_ref());
        let mut jwk = serde_json::to_value(
            jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap(),
        )
        .unwrap();
        let map = jwk.as_object_mut().unwrap();
        map.insert("kid".into(), KID.into());
        map.insert("use".into(), "sig".into());
        map.insert("alg".into(), "ES256".into());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let user = match json!({
            "sub": "mallory",
            "name": "Mallory Stub",
            "email": "mallory@stub.example",
            "email_verified": true,
            "groups": ["sre"],
        }) {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let stub = StubOp(Arc::new(Inner {
            issuer,
            clock,
            key,
            jwk,
            pending: Mutex::default(),
            mutation: Mutex::default(),
            response_iss: Mutex::default(),
            user: Mutex::new(user),
            refuse_refresh: Mutex::new(false),
            token_calls: Mutex::new(0),
            refresh_calls: Mutex::new(0),
            last_authorization: Mutex::default(),
            sid: format!("stub-sid-{}", rand_token()),
        }));
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks.json", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .with_state(stub.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        stub
    }

    pub fn issuer(&self) -> &str {
        &self.0.issuer
    }

    /// The `sid` of every sign-in at this provider.
    pub fn sid(&self) -> &str {
        &self.0.sid
    }

    /// Sets the mutation applied to the next ID tokens (`None`: honest tokens).
    pub fn mutate(
        &self,
        mutation: impl Fn(&mut Map<String, Value>, &mut Map<String, Value>) + Send + Sync + 'static,
    ) {
        *self.0.mutation.lock().unwrap() = Some(Arc::new(mutation));
    }

    pub fn honest(&self) {
        *self.0.mutation.lock().unwrap() = None;
        *self.0.response_iss.lock().unwrap() = None;
    }

    pub fn set_response_iss(&self, iss: &str) {
        *self.0.response_iss.lock().unwrap() = Some(iss.to_owned());
    }

    pub fn set_claim(&self, name: &str, value: Value) {
        self.0.user.lock().unwrap().insert(name.into(), value);
    }

    pub fn refuse_refresh(&self) {
        *self.0.refuse_refresh.lock().unwrap() = true;
    }

    pub fn token_calls(&self) -> u32 {
        *self.0.token_calls.lock().unwrap()
    }

    pub fn refresh_calls(&self) -> u32 {
        *self.0.refresh_calls.lock().unwrap()
    }

    /// A parameter of the last authorization request.
    pub fn last_authorization(&self, name: &str) -> Option<String> {
        self.0.last_authorization.lock().unwrap().get(name).cloned()
    }

    /// Signs a JWT with the stub's key: `header` gets `alg` and `kid` unless it has them.
    pub fn sign(&self, header: Value, claims: Value) -> String {
        let mut header = match header {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        header.entry("alg").or_insert("ES256".into());
        header.entry("kid").or_insert(KID.into());
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(Value::Object(header.clone()).to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        if header.get("alg") == Some(&Value::String("none".into())) {
            return format!("{input}.");
        }
        let sig =
            jsonwebtoken::crypto::sign(input.as_bytes(), &self.0.key, Algorithm::ES256).unwrap();
        format!("{input}.{sig}")
    }

    /// A valid back-channel logout token for this provider's sessions (`typ: logout+jwt`).
    pub fn logout_claims(&self) -> Map<String, Value> {
        let now = self.0.clock.now().timestamp();
        match json!({
            "iss": self.0.issuer,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 120,
            "jti": format!("jti-{}", rand_token()),
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
            "sub": "mallory",
            "sid": self.0.sid,
        }) {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn id_token(&self, nonce: Option<String>) -> String {
        let now = self.0.clock.now().timestamp();
        let mut claims = self.0.user.lock().unwrap().clone();
        claims.insert("iss".into(), self.0.issuer.clone().into());
        claims.insert("aud".into(), CLIENT_ID.into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), (now + ID_TOKEN_TTL).into());
        claims.insert("auth_time".into(), now.into());
        claims.insert("sid".into(), self.0.sid.clone().into());
        if let Some(nonce) = nonce {
            claims.insert("nonce".into(), nonce.into());
        }
        let mut header = Map::new();
        header.insert("typ".into(), "JWT".into());
        let mutation = self.0.mutation.lock().unwrap().clone();
        if let Some(m) = mutation {
            m(&mut header, &mut claims);
        }
        self.sign(Value::Object(header), Value::Object(claims))
    }
}

fn rand_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())
}

fn pairs(raw: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(raw).into_owned().collect()
}

async fn discovery(State(stub): State<StubOp>) -> Json<Value> {
    let iss = &stub.0.issuer;
    Json(json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "jwks_uri": format!("{iss}/jwks.json"),
        "end_session_endpoint": format!("{iss}/logout"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
    }))
}

async fn jwks(State(stub): State<StubOp>) -> Json<Value> {
    Json(json!({"keys": [stub.0.jwk]}))
}

/// Approves at once: back to the client with a code.
async fn authorize(State(stub): State<StubOp>, RawQuery(q): RawQuery) -> Response {
    let p = pairs(q.unwrap_or_default().as_bytes());
    let code = rand_token();
    stub.0.pending.lock().unwrap().insert(
        code.clone(),
        Pending {
            nonce: p.get("nonce").cloned(),
        },
    );
    *stub.0.last_authorization.lock().unwrap() = p.clone();
    let iss = stub
        .0
        .response_iss
        .lock()
        .unwrap()
        .clone()
        .unwrap_or_else(|| stub.0.issuer.clone());
    let mut url = url::Url::parse(
        p.get("redirect_uri")
            .map_or("http://invalid", String::as_str),
    )
    .unwrap();
    url.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", p.get("state").map_or("", String::as_str))
        .append_pair("iss", &iss);
    Redirect::to(url.as_str()).into_response()
}

async fn token(State(stub): State<StubOp>, RawForm(form): RawForm) -> Response {
    *stub.0.token_calls.lock().unwrap() += 1;
    let p = pairs(&form);
    let error = |e: &str| {
        (
            axum::http::StatusCode::BAD_REQUEST,
            Json(json!({"error": e})),
        )
            .into_response()
    };
    let nonce = match p.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let code = p.get("code").cloned().unwrap_or_default();
            match stub.0.pending.lock().unwrap().get(&code) {
                Some(pending) => pending.nonce.clone(),
                None => return error("invalid_grant"),
            }
        }
        Some("refresh_token") => {
            *stub.0.refresh_calls.lock().unwrap() += 1;
            if *stub.0.refuse_refresh.lock().unwrap() {
                return error("invalid_grant");
            }
            None
        }
        _ => return error("unsupported_grant_type"),
    };
    Json(json!({
        "access_token": rand_token(),
        "token_type": "Bearer",
        "expires_in": ID_TOKEN_TTL,
        "refresh_token": format!("rt-{}", rand_token()),
        "id_token": stub.id_token(nonce),
    }))
    .into_response()
}
