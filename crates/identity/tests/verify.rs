//! Bearer verification against a local issuer: a valid baseline, then one change per case for
//! the adversarial JWT list (anchor-security.md §B, J-numbers in the case names), then key
//! rotation, fetch limits, discovery failures and claim mapping.

// Helpers outside `#[test]` functions panic on setup failure too.
#![expect(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod support;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use countersign_core::{Identity, PrincipalKind};
use countersign_identity::{AuthError, IssuerSettings, Verifier};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Map, Value, json};
use support::*;

/// A server with several issuers and a verifier that trusts them all.
struct Fx {
    server: IssuerServer,
    verifier: Verifier,
    main: String,
    other: String,
}

/// A fake RSA JWK with a 1024-bit modulus: it must be ignored (J15).
fn small_rsa_jwk(kid: &str) -> Value {
    let mut n = vec![0xC3u8; 128];
    n[127] = 0x01;
    json!({"kty": "RSA", "kid": kid, "use": "sig", "n": b64(&n), "e": "AQAB"})
}

async fn fixture() -> Fx {
    let k = keys();
    let server = IssuerServer::start().await;
    server.add(
        "main",
        json!({"keys": [k.es.jwk(Some("es-1")), k.rsa.jwk(Some("rs-1")), k.ed.jwk(Some("ed-1"))]}),
    );
    server.add("other", json!({"keys": [k.other_es.jwk(Some("other-es"))]}));
    server.add("single", json!({"keys": [k.es.jwk(None)]}));
    server.add("multi", json!({"keys": [k.es.jwk(None), k.es2.jwk(None)]}));
    let mut enc = k.rsa.jwk(Some("enc-1"));
    enc["use"] = "enc".into();
    let mut ops = k.rsa.jwk(Some("ops-1"));
    ops.as_object_mut().unwrap().remove("use");
    ops["key_ops"] = json!(["encrypt"]);
    let mut alg384 = k.rsa.jwk(Some("rs384-1"));
    alg384["alg"] = "RS384".into();
    server.add(
        "odd",
        json!({"keys": [k.es2.jwk(Some("odd-es")), enc, ops, alg384, small_rsa_jwk("small-1")]}),
    );

    let main = server.url("main");
    let other = server.url("other");
    let mut main_settings = human("main", &main);
    main_settings.groups_claim = Some("groups".into());
    let mut other_settings = workload("other", &other);
    other_settings.algorithms = vec![Algorithm::ES256];
    other_settings.actor_claim = Some("actor_id".into());
    other_settings.actor_issuer = Some("main".into());
    let verifier = verifier(vec![
        main_settings,
        other_settings,
        human("single", &server.url("single")),
        human("multi", &server.url("multi")),
        human("odd", &server.url("odd")),
    ]);
    Fx {
        server,
        verifier,
        main,
        other,
    }
}

impl Fx {
    fn header(&self) -> Map<String, Value> {
        obj(json!({"alg": "ES256", "typ": "at+jwt", "kid": "es-1"}))
    }

    fn payload(&self) -> Map<String, Value> {
        obj(json!({
            "iss": self.main,
            "sub": "alice",
            "aud": AUDIENCE,
            "exp": NOW + 300,
            "iat": NOW - 10,
            "nbf": NOW - 10,
            "auth_time": NOW - 100,
            "name": "Alice Example",
            "preferred_username": "alice.e",
            "email": "alice@example.com",
            "email_verified": true,
            "groups": ["sre", "dev"],
        }))
    }

    /// The baseline with one edit, signed by the main issuer's ES256 key.
    fn token(&self, edit: impl FnOnce(&mut Map<String, Value>, &mut Map<String, Value>)) -> String {
        self.token_by(&keys().es, edit)
    }

    fn token_by(
        &self,
        key: &SigningKey,
        edit: impl FnOnce(&mut Map<String, Value>, &mut Map<String, Value>),
    ) -> String {
        let (mut h, mut p) = (self.header(), self.payload());
        edit(&mut h, &mut p);
        sign(key, &h, &p)
    }

    fn claim(&self, name: &'static str, value: Value) -> String {
        self.token(|_, p| {
            p.insert(name.into(), value);
        })
    }

    fn without(&self, name: &'static str) -> String {
        self.token(|_, p| {
            p.remove(name);
        })
    }

    fn with_header(&self, name: &'static str, value: Value) -> String {
        self.token(|h, _| {
            h.insert(name.into(), value);
        })
    }

    /// The baseline header and payload text with this signature segment.
    fn with_signature(&self, signature: &str) -> String {
        let good = self.token(|_, _| {});
        let input = good.rsplit_once('.').unwrap().0;
        format!("{input}.{signature}")
    }
}

#[derive(Debug, Clone, Copy)]
enum Expect {
    Accept,
    Reject(&'static str),
    /// Rejected; more than one reason is reasonable (e.g. which check fires first).
    RejectAny,
}
use Expect::*;

/// Runs every case, checks the outcome and the safety of each error, and reports all failures
/// at once.
async fn run(verifier: &Verifier, cases: Vec<(String, String, Expect)>) {
    let mut failures = Vec::new();
    for (name, token, expect) in cases {
        let result = verifier.verify(&token, now()).await;
        match (&result, expect) {
            (Ok(_), Accept) => {}
            (Err(e), Reject(reason)) if e.reason() == reason => check_error(&name, &token, e),
            (Err(e), RejectAny) => check_error(&name, &token, e),
            _ => failures.push(format!("{name}: expected {expect:?}, got {result:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Error messages are one lowercase sentence without the token or its claim values (C26).
fn check_error(name: &str, token: &str, e: &AuthError) {
    let m = e.message();
    assert!(!m.is_empty(), "{name}: empty message");
    assert!(
        m.chars().next().unwrap().is_lowercase(),
        "{name}: message not lowercase: {m}"
    );
    assert!(
        token.is_empty() || !m.contains(token),
        "{name}: message contains the token"
    );
    for secret in ["alice", "Alice", "es-1", "attacker", "169.254"] {
        assert!(!m.contains(secret), "{name}: message leaks {secret}: {m}");
    }
}

fn case(name: &str, token: String, expect: Expect) -> (String, String, Expect) {
    (name.to_owned(), token, expect)
}

#[tokio::test]
async fn baseline_is_accepted_and_mapped() {
    let fx = fixture().await;
    let token = fx.token(|_, _| {});
    let p = fx.verifier.verify(&token, now()).await.unwrap();
    assert_eq!(*p.identity(), Identity::new("main", "alice"));
    assert_eq!(p.kind(), PrincipalKind::Human);
    assert_eq!(p.name(), Some("Alice Example"));
    assert_eq!(p.email(), Some("alice@example.com"));
    assert_eq!(p.groups(), ["sre", "dev"]);
    assert_eq!(p.auth_time().unwrap().timestamp(), NOW - 100);
    assert_eq!(p.actor(), None);
    assert_eq!(*p.claims(), fx.payload());

    // RS256 and EdDSA keys of the same issuer work too.
    for (key, alg, kid) in [
        (&keys().rsa, "RS256", "rs-1"),
        (&keys().ed, "EdDSA", "ed-1"),
    ] {
        let token = fx.token_by(key, |h, _| {
            h.insert("alg".into(), alg.into());
            h.insert("kid".into(), kid.into());
        });
        let p = fx.verifier.verify(&token, now()).await.unwrap();
        assert_eq!(p.identity().subject, "alice", "{alg}");
    }

    // Only one discovery and one key fetch for all of that.
    assert_eq!(fx.server.hits("/main/.well-known/openid-configuration"), 1);
    assert_eq!(fx.server.hits("/main/jwks"), 1);
    let statuses = fx.verifier.statuses();
    let main = statuses.iter().find(|s| s.name == "main").unwrap();
    assert!(main.ready && main.error.is_none(), "{main:?}");
    assert!(!statuses.iter().find(|s| s.name == "other").unwrap().ready);
}

#[tokio::test]
async fn algorithm_and_signature_cases() {
    let fx = fixture().await;
    let k = keys();
    let payload = Value::Object(fx.payload()).to_string();
    let unsigned = |header: &str, sig: &str| format!("{}.{}.{sig}", b64(header), b64(&payload));
    let good = fx.token(|_, _| {});
    let good_sig = URL_SAFE_NO_PAD
        .decode(good.rsplit_once('.').unwrap().1)
        .unwrap();
    let hs256 = |secret: &[u8]| {
        let header = r#"{"alg":"HS256","typ":"at+jwt","kid":"rs-1"}"#;
        let input = format!("{}.{}", b64(header), b64(&payload));
        let sig = jsonwebtoken::crypto::sign(
            input.as_bytes(),
            &EncodingKey::from_secret(secret).unwrap(),
            Algorithm::HS256,
        )
        .unwrap();
        format!("{input}.{sig}")
    };
    let rsa_pem = pem("PUBLIC KEY", &k.rsa.spki);
    let rsa_n = URL_SAFE_NO_PAD
        .decode(k.rsa.public["n"].as_str().unwrap())
        .unwrap();
    let ec_point = {
        let x = URL_SAFE_NO_PAD
            .decode(k.es.public["x"].as_str().unwrap())
            .unwrap();
        let y = URL_SAFE_NO_PAD
            .decode(k.es.public["y"].as_str().unwrap())
            .unwrap();
        [vec![4u8], x, y].concat()
    };
    let p256_n = "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551";
    let n_bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&p256_n[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let der_sig = {
        // ASN.1 SEQUENCE { INTEGER r, INTEGER s } instead of raw r‖s.
        let int = |v: &[u8]| {
            let mut v = v.to_vec();
            if v[0] & 0x80 != 0 {
                v.insert(0, 0);
            }
            [vec![0x02, v.len() as u8], v].concat()
        };
        let body = [int(&good_sig[..32]), int(&good_sig[32..])].concat();
        [vec![0x30, body.len() as u8], body].concat()
    };
    let flipped: Vec<u8> = good_sig.iter().map(|b| b ^ 0x5A).collect();
    let good_sig_b64 = b64(&good_sig);

    let cases = vec![
        case(
            "J01 alg none, empty signature",
            unsigned(r#"{"alg":"none","typ":"at+jwt"}"#, ""),
            Reject("unsupported_alg"),
        ),
        case(
            "J02 alg None",
            unsigned(r#"{"alg":"None","typ":"at+jwt"}"#, ""),
            Reject("unsupported_alg"),
        ),
        case(
            "J02 alg NONE",
            unsigned(r#"{"alg":"NONE","typ":"at+jwt"}"#, ""),
            Reject("unsupported_alg"),
        ),
        case(
            "J02 alg nOnE",
            unsigned(r#"{"alg":"nOnE","typ":"at+jwt"}"#, ""),
            Reject("unsupported_alg"),
        ),
        case(
            "J02 alg 'none '",
            unsigned(r#"{"alg":"none ","typ":"at+jwt"}"#, ""),
            Reject("unsupported_alg"),
        ),
        case(
            "J03 alg none with a signature",
            unsigned(r#"{"alg":"none","typ":"at+jwt"}"#, &good_sig_b64),
            Reject("unsupported_alg"),
        ),
        case(
            "J03 alg HS256 empty signature",
            unsigned(r#"{"alg":"HS256","typ":"at+jwt"}"#, ""),
            Reject("unsupported_alg"),
        ),
        case(
            "J04 HS256 keyed with RSA PEM",
            hs256(rsa_pem.as_bytes()),
            Reject("unsupported_alg"),
        ),
        case(
            "J04 HS256 keyed with RSA PEM without newline",
            hs256(rsa_pem.trim_end().as_bytes()),
            Reject("unsupported_alg"),
        ),
        case(
            "J04 HS256 keyed with RSA SPKI DER",
            hs256(&k.rsa.spki),
            Reject("unsupported_alg"),
        ),
        case(
            "J04 HS256 keyed with RSA modulus",
            hs256(&rsa_n),
            Reject("unsupported_alg"),
        ),
        case(
            "J04 HS256 keyed with RSA JWK text",
            hs256(k.rsa.jwk(Some("rs-1")).to_string().as_bytes()),
            Reject("unsupported_alg"),
        ),
        case(
            "J05 HS256 keyed with EC point",
            hs256(&ec_point),
            Reject("unsupported_alg"),
        ),
        case(
            "J05 HS256 keyed with EC PEM",
            hs256(pem("PUBLIC KEY", &k.es.spki).as_bytes()),
            Reject("unsupported_alg"),
        ),
        case(
            "J06 ES256 r=s=0",
            fx.with_signature(&b64([0u8; 64])),
            Reject("bad_signature"),
        ),
        case(
            "J06 ES256 r=s=n",
            fx.with_signature(&b64([n_bytes.clone(), n_bytes.clone()].concat())),
            Reject("bad_signature"),
        ),
        case(
            "J07 ES256 DER signature",
            fx.with_signature(&b64(&der_sig)),
            Reject("bad_signature"),
        ),
        case(
            "J07 ES256 63-byte signature",
            fx.with_signature(&b64(&good_sig[..63])),
            Reject("bad_signature"),
        ),
        case(
            "J07 ES256 65-byte signature",
            fx.with_signature(&b64([good_sig.clone(), vec![0]].concat())),
            Reject("bad_signature"),
        ),
        case(
            "J08 flipped signature",
            fx.with_signature(&b64(&flipped)),
            Reject("bad_signature"),
        ),
        case(
            "J09 truncated signature text",
            fx.with_signature(&good_sig_b64[..good_sig_b64.len() - 2]),
            RejectAny,
        ),
        case(
            "J09 signature with padding",
            fx.with_signature(&format!("{}=", STANDARD.encode(&good_sig))),
            Reject("malformed"),
        ),
        case(
            "J09 empty signature",
            fx.with_signature(""),
            Reject("bad_signature"),
        ),
        case(
            "J10 attacker key with a real kid",
            fx.token_by(&k.attacker_es, |_, _| {}),
            Reject("bad_signature"),
        ),
        case(
            "J11 PS256 where RS256 is configured",
            fx.token_by(&k.rsa, |h, _| {
                h.insert("alg".into(), "PS256".into());
                h.insert("kid".into(), "rs-1".into());
            }),
            Reject("unsupported_alg"),
        ),
        case(
            "J11 RS384 where RS256 is configured",
            fx.token_by(&k.rsa, |h, _| {
                h.insert("alg".into(), "RS384".into());
                h.insert("kid".into(), "rs-1".into());
            }),
            Reject("unsupported_alg"),
        ),
        case(
            "J11 RS256 for an ES256-only issuer",
            fx.token_by(&k.rsa, |h, p| {
                h.insert("alg".into(), "RS256".into());
                p.insert("iss".into(), fx.other.clone().into());
            }),
            Reject("unsupported_alg"),
        ),
        case(
            "J12 ES256 with the kid of an RSA key",
            fx.with_header("kid", "rs-1".into()),
            Reject("key_mismatch"),
        ),
        case(
            "J12 EdDSA with the kid of a P-256 key",
            fx.token_by(&k.ed, |h, _| {
                h.insert("alg".into(), "EdDSA".into());
            }),
            Reject("key_mismatch"),
        ),
        case(
            "J13 key with use enc",
            fx.token_by(&k.rsa, |h, p| {
                h.insert("alg".into(), "RS256".into());
                h.insert("kid".into(), "enc-1".into());
                p.insert("iss".into(), fx.server.url("odd").into());
            }),
            Reject("key_mismatch"),
        ),
        case(
            "J13 key_ops without verify",
            fx.token_by(&k.rsa, |h, p| {
                h.insert("alg".into(), "RS256".into());
                h.insert("kid".into(), "ops-1".into());
                p.insert("iss".into(), fx.server.url("odd").into());
            }),
            Reject("key_mismatch"),
        ),
        case(
            "J13 JWK alg differs from header alg",
            fx.token_by(&k.rsa, |h, p| {
                h.insert("alg".into(), "RS256".into());
                h.insert("kid".into(), "rs384-1".into());
                p.insert("iss".into(), fx.server.url("odd").into());
            }),
            Reject("key_mismatch"),
        ),
        case(
            "J14 alg RS1",
            fx.with_header("alg", "RS1".into()),
            Reject("unsupported_alg"),
        ),
        case(
            "J14 alg HS0",
            fx.with_header("alg", "HS0".into()),
            Reject("unsupported_alg"),
        ),
        case(
            "J14 alg ES256K",
            fx.with_header("alg", "ES256K".into()),
            Reject("unsupported_alg"),
        ),
        case(
            "J14 alg empty",
            fx.with_header("alg", "".into()),
            Reject("unsupported_alg"),
        ),
        case(
            "J14 alg number",
            fx.with_header("alg", 256.into()),
            Reject("unsupported_alg"),
        ),
        case(
            "J14 alg array",
            fx.with_header("alg", json!(["ES256"])),
            Reject("unsupported_alg"),
        ),
        case(
            "J14 alg null",
            fx.with_header("alg", Value::Null),
            Reject("unsupported_alg"),
        ),
        case(
            "J14 alg missing",
            fx.token(|h, _| {
                h.remove("alg");
            }),
            Reject("unsupported_alg"),
        ),
        case(
            "J14 EdDSA for an ES256-only issuer",
            fx.token_by(&k.ed, |h, p| {
                h.insert("alg".into(), "EdDSA".into());
                p.insert("iss".into(), fx.other.clone().into());
            }),
            Reject("unsupported_alg"),
        ),
        case(
            "J15 RSA key under 2048 bits is ignored",
            fx.token_by(&k.rsa, |h, p| {
                h.insert("alg".into(), "RS256".into());
                h.insert("kid".into(), "small-1".into());
                p.insert("iss".into(), fx.server.url("odd").into());
            }),
            Reject("key_mismatch"),
        ),
    ];
    run(&fx.verifier, cases).await;
}

#[tokio::test]
async fn key_selection_cases() {
    let fx = fixture().await;
    let k = keys();
    let attacker_jwk = k.attacker_es.jwk(Some("es-1"));
    let attacker_jku = format!("{}/attacker/jwks", fx.server.base);
    let attacker_x5u = format!("{}/attacker/cert.pem", fx.server.base);
    let cert = STANDARD.encode(&k.attacker_es.spki);
    let no_kid = |iss: String| {
        fx.token(move |h, p| {
            h.remove("kid");
            p.insert("iss".into(), iss.into());
        })
    };
    let cases = vec![
        case(
            "J16 no kid, one key for the alg",
            no_kid(fx.server.url("single")),
            Accept,
        ),
        case(
            "J16 no kid, one ES256 key among other types",
            no_kid(fx.main.clone()),
            Accept,
        ),
        case(
            "J17 no kid, several keys",
            no_kid(fx.server.url("multi")),
            Reject("unknown_kid"),
        ),
        case(
            "J17 no kid, several keys, signed by the second",
            fx.token_by(&k.es2, |h, p| {
                h.remove("kid");
                p.insert("iss".into(), fx.server.url("multi").into());
            }),
            Reject("unknown_kid"),
        ),
        case(
            "J19 kid path traversal",
            fx.with_header("kid", "../../../../dev/null".into()),
            Reject("unknown_kid"),
        ),
        case(
            "J19 kid /proc path",
            fx.with_header("kid", "/proc/self/environ".into()),
            Reject("unknown_kid"),
        ),
        case(
            "J19 kid sql",
            fx.with_header("kid", "' OR '1'='1".into()),
            Reject("unknown_kid"),
        ),
        case(
            "J19 kid nul",
            fx.with_header("kid", "es-1\u{0}".into()),
            Reject("unknown_kid"),
        ),
        case(
            "J19 kid 10 kB",
            fx.with_header("kid", "k".repeat(10_000).into()),
            Reject("unknown_kid"),
        ),
        case(
            "J19 kid number",
            fx.with_header("kid", 1.into()),
            Reject("malformed"),
        ),
        case(
            "J19 kid object",
            fx.with_header("kid", json!({"kid": "es-1"})),
            Reject("malformed"),
        ),
        case(
            "J19 kid array",
            fx.with_header("kid", json!(["es-1"])),
            Reject("malformed"),
        ),
        case(
            "J20 jku to the attacker",
            fx.token_by(&k.attacker_es, |h, _| {
                h.insert("jku".into(), attacker_jku.clone().into());
            }),
            Reject("forbidden_header"),
        ),
        case(
            "J20 jku to the metadata service",
            fx.with_header("jku", "http://169.254.169.254/latest/meta-data/".into()),
            Reject("forbidden_header"),
        ),
        case(
            "J20 jku file url",
            fx.with_header("jku", "file:///etc/passwd".into()),
            Reject("forbidden_header"),
        ),
        case(
            "J21 x5u to the attacker",
            fx.token_by(&k.attacker_es, |h, _| {
                h.insert("x5u".into(), attacker_x5u.clone().into());
            }),
            Reject("forbidden_header"),
        ),
        case(
            "J22 embedded jwk",
            fx.token_by(&k.attacker_es, |h, _| {
                h.insert("jwk".into(), attacker_jwk.clone());
            }),
            Reject("forbidden_header"),
        ),
        case(
            "J23 x5c chain",
            fx.token_by(&k.attacker_es, |h, _| {
                h.insert("x5c".into(), json!([cert]));
            }),
            Reject("forbidden_header"),
        ),
        case(
            "J24 issuer A's iss, issuer B's kid and key",
            fx.token_by(&k.other_es, |h, _| {
                h.insert("kid".into(), "other-es".into());
            }),
            Reject("unknown_kid"),
        ),
        case(
            "J24 issuer B token relabelled without kid",
            fx.token_by(&k.other_es, |h, _| {
                h.remove("kid");
            }),
            Reject("bad_signature"),
        ),
    ];
    run(&fx.verifier, cases).await;
    for path in ["/attacker/jwks", "/attacker/cert.pem"] {
        assert_eq!(fx.server.hits(path), 0, "{path} was fetched");
    }
    // Only the configured issuers' documents were ever requested.
    let hits = fx.server.state.hits.lock().unwrap().clone();
    assert!(
        hits.keys()
            .all(|p| p.ends_with("/jwks") || p.ends_with("/openid-configuration")),
        "{hits:?}"
    );
    assert!(!hits.keys().any(|p| p.starts_with("/attacker")), "{hits:?}");
}

#[tokio::test]
async fn header_and_serialization_cases() {
    let fx = fixture().await;
    let k = keys();
    let payload = Value::Object(fx.payload()).to_string();
    let header = Value::Object(fx.header()).to_string();
    let es = |h: &str, p: &str| sign_raw(&k.es, Algorithm::ES256, h, p);
    let good = fx.token(|_, _| {});
    let segs: Vec<&str> = good.split('.').collect();
    let workload_token = |typ: Option<&str>| {
        fx.token_by(&k.other_es, |h, p| {
            h.insert("kid".into(), "other-es".into());
            match typ {
                Some(t) => h.insert("typ".into(), t.into()),
                None => h.remove("typ"),
            };
            p.insert("iss".into(), fx.other.clone().into());
        })
    };
    let deep = format!(
        r#"{{"iss":"{}","sub":"alice","aud":"{AUDIENCE}","exp":{},"deep":{}{}}}"#,
        fx.main,
        NOW + 300,
        "[".repeat(3000),
        "]".repeat(3000)
    );
    let cases = vec![
        case("J26 crit with an unknown extension", fx.token(|h, _| {
            h.insert("crit".into(), json!(["x-unknown"]));
            h.insert("x-unknown".into(), true.into());
        }), Reject("forbidden_header")),
        case("J27 crit b64 false", fx.token(|h, _| {
            h.insert("crit".into(), json!(["b64"]));
            h.insert("b64".into(), false.into());
        }), Reject("forbidden_header")),
        case("J28 crit empty", fx.with_header("crit", json!([])), Reject("forbidden_header")),
        case("J28 crit names an absent parameter", fx.with_header("crit", json!(["exp"])), Reject("forbidden_header")),
        case("J28 crit alg", fx.with_header("crit", json!(["alg"])), Reject("forbidden_header")),
        case("J28 crit not an array", fx.with_header("crit", "alg".into()), Reject("forbidden_header")),
        case("J29 typ JWT where at+jwt is required", fx.with_header("typ", "JWT".into()), Reject("wrong_type")),
        case("J29 typ absent where at+jwt is required", fx.token(|h, _| { h.remove("typ"); }), Reject("wrong_type")),
        case("J29 typ number", fx.with_header("typ", 1.into()), Reject("wrong_type")),
        case("J32 typ at+jwt", fx.with_header("typ", "at+jwt".into()), Accept),
        case("J32 typ application/at+jwt", fx.with_header("typ", "application/at+jwt".into()), Accept),
        case("J32 typ AT+JWT", fx.with_header("typ", "AT+JWT".into()), Accept),
        case("J32 typ Application/AT+JWT", fx.with_header("typ", "Application/AT+JWT".into()), Accept),
        case("J32 typ jwt where at+jwt is required", fx.with_header("typ", "jwt".into()), Reject("wrong_type")),
        case("J32 typ logout+jwt", fx.with_header("typ", "logout+jwt".into()), Reject("wrong_type")),
        case("J32 workload typ JWT accepted", workload_token(Some("JWT")), Accept),
        case("J32 workload typ absent accepted", workload_token(None), Accept),
        case("J32 workload typ at+jwt accepted", workload_token(Some("at+jwt")), Accept),
        case("J32 workload typ id+jwt refused", workload_token(Some("id+jwt")), Reject("wrong_type")),
        case("J33 cty JWT", fx.with_header("cty", "JWT".into()), Reject("forbidden_header")),
        case("J34 five-segment JWE", format!("{}.{}.{}.{}.{}", b64(r#"{"alg":"PBES2-HS256+A128KW","enc":"A128GCM","p2c":2000000000}"#), "AAAA", "AAAA", "AAAA", "AAAA"), Reject("malformed")),
        case("J35 zip header", fx.with_header("zip", "DEF".into()), Reject("forbidden_header")),
        case("J36 duplicate sub", es(&header, &payload.replacen('{', r#"{"sub":"admin","#, 1)), Reject("malformed")),
        case("J36 duplicate alg", es(&header.replacen('{', r#"{"alg":"none","#, 1), &payload), Reject("malformed")),
        case("J36 duplicate nested member", es(&header, &payload.replacen('{', r#"{"realm_access":{"roles":["a"],"roles":["admin"]},"#, 1)), Reject("malformed")),
        case("J37 standard base64 alphabet", format!("{}.{}.{}", STANDARD.encode(&header), STANDARD.encode(&payload), segs[2]), Reject("malformed")),
        case("J37 whitespace inside a segment", format!("{}.{} {}.{}", segs[0], &segs[1][..10], &segs[1][10..], segs[2]), Reject("malformed")),
        case("J37 newline inside a segment", format!("{}.{}\n{}.{}", segs[0], &segs[1][..10], &segs[1][10..], segs[2]), Reject("malformed")),
        case("J37 padded payload", format!("{}.{}==.{}", segs[0], segs[1], segs[2]), Reject("malformed")),
        case("J38 two segments", format!("{}.{}", segs[0], segs[1]), Reject("malformed")),
        case("J38 four segments", format!("{good}.{}", segs[2]), Reject("malformed")),
        case("J38 empty header", format!(".{}.{}", segs[1], segs[2]), Reject("malformed")),
        case("J38 header is an array", es("[]", &payload), Reject("malformed")),
        case("J38 header is a string", es(r#""ES256""#, &payload), Reject("malformed")),
        case("J38 header is a number", es("1", &payload), Reject("malformed")),
        case("J38 payload is an array", es(&header, "[1]"), Reject("malformed")),
        case("J38 payload is a string", es(&header, r#""alice""#), Reject("malformed")),
        case("J38 trailing garbage after the payload", es(&header, &format!("{payload}x")), Reject("malformed")),
        case("J38 empty token", String::new(), Reject("malformed")),
        case("J39 one megabyte token", format!("{}.{}.{}", segs[0], "A".repeat(1 << 20), segs[2]), Reject("malformed")),
        case("J39 deeply nested claim", es(&header, &deep), Reject("malformed")),
        case("J39 huge aud array", fx.claim("aud", json!(vec![AUDIENCE; 100_000])), Reject("malformed")),
        case("J40 invalid utf-8 in the payload", format!("{}.{}.{}", segs[0], b64(b"{\"sub\":\"\xff\"}"), segs[2]), Reject("malformed")),
        case("J40 utf-8 bom before the payload", es(&header, &format!("\u{feff}{payload}")), Reject("malformed")),
        case("J40 lone surrogate", es(&header, &payload.replacen('{', r#"{"x":"\ud800","#, 1)), Reject("malformed")),
        case("J41 json serialization", json!({"payload": segs[1], "signatures": [{"protected": segs[0], "signature": segs[2]}]}).to_string(), Reject("malformed")),
    ];
    run(&fx.verifier, cases).await;
}

#[tokio::test]
async fn claim_cases() {
    let fx = fixture().await;
    let k = keys();
    let main = fx.main.clone();
    let base = fx.server.base.clone();
    let with_iss = |iss: Value| fx.claim("iss", iss);
    let exp_raw = |raw: &str| {
        let mut p = fx.payload();
        p.remove("exp");
        let text = Value::Object(p)
            .to_string()
            .replacen('{', &format!("{{\"exp\":{raw},"), 1);
        sign_raw(
            &k.es,
            Algorithm::ES256,
            &Value::Object(fx.header()).to_string(),
            &text,
        )
    };
    let cases = vec![
        case(
            "J42 iss with Cyrillic o",
            with_iss(main.replace("main", "mаin").into()),
            Reject("unknown_issuer"),
        ),
        case(
            "J42 iss with fullwidth letters",
            with_iss(main.replace("main", "ｍain").into()),
            Reject("unknown_issuer"),
        ),
        case(
            "J42 iss with a trailing dot in the host",
            with_iss(main.replace("127.0.0.1", "127.0.0.1.").into()),
            Reject("unknown_issuer"),
        ),
        case(
            "J42 aud with Cyrillic o",
            fx.claim("aud", "cоuntersign".into()),
            Reject("wrong_audience"),
        ),
        case(
            "J43 exp missing",
            fx.without("exp"),
            Reject("invalid_claims"),
        ),
        case(
            "J44 exp now - leeway - 1",
            fx.claim("exp", (NOW - 61).into()),
            Reject("expired"),
        ),
        case(
            "J44 exp now - leeway",
            fx.claim("exp", (NOW - 60).into()),
            Reject("expired"),
        ),
        case(
            "J44 exp now - leeway + 1",
            fx.claim("exp", (NOW - 59).into()),
            Accept,
        ),
        case(
            "J44 exp six minutes ago",
            fx.claim("exp", (NOW - 360).into()),
            Reject("expired"),
        ),
        case(
            "J45 exp string",
            fx.claim("exp", "9999999999".into()),
            Reject("invalid_claims"),
        ),
        case(
            "J45 exp float 1e10",
            exp_raw("1e10"),
            Reject("invalid_claims"),
        ),
        case(
            "J45 exp float with fraction",
            exp_raw(&format!("{}.5", NOW + 300)),
            Reject("invalid_claims"),
        ),
        case(
            "J45 exp float .0",
            exp_raw(&format!("{}.0", NOW + 300)),
            Reject("invalid_claims"),
        ),
        case("J45 exp 1e309", exp_raw("1e309"), RejectAny),
        case(
            "J45 exp negative",
            fx.claim("exp", (-1).into()),
            Reject("invalid_claims"),
        ),
        case(
            "J45 exp zero",
            fx.claim("exp", 0.into()),
            Reject("invalid_claims"),
        ),
        case(
            "J45 exp null",
            fx.claim("exp", Value::Null),
            Reject("invalid_claims"),
        ),
        case(
            "J45 exp true",
            fx.claim("exp", true.into()),
            Reject("invalid_claims"),
        ),
        case(
            "J45 exp milliseconds",
            fx.claim("exp", ((NOW + 300) * 1000).into()),
            Reject("invalid_claims"),
        ),
        case(
            "J45 exp beyond i64",
            exp_raw("18446744073709551615"),
            Reject("invalid_claims"),
        ),
        case(
            "J45 exp array",
            fx.claim("exp", json!([NOW + 300])),
            Reject("invalid_claims"),
        ),
        case(
            "J46 nbf now + leeway + 1",
            fx.claim("nbf", (NOW + 61).into()),
            Reject("not_yet_valid"),
        ),
        case(
            "J46 nbf now + leeway",
            fx.claim("nbf", (NOW + 60).into()),
            Accept,
        ),
        case(
            "J46 nbf string",
            fx.claim("nbf", NOW.to_string().into()),
            Reject("invalid_claims"),
        ),
        case(
            "J46 nbf null",
            fx.claim("nbf", Value::Null),
            Reject("invalid_claims"),
        ),
        case("J46 nbf missing", fx.without("nbf"), Accept),
        case(
            "J49 iat now + leeway + 1",
            fx.claim("iat", (NOW + 61).into()),
            Reject("issued_in_future"),
        ),
        case(
            "J49 iat now + leeway",
            fx.claim("iat", (NOW + 60).into()),
            Accept,
        ),
        case(
            "J49 iat string",
            fx.claim("iat", NOW.to_string().into()),
            Reject("invalid_claims"),
        ),
        case("J49 iat missing", fx.without("iat"), Accept),
        case(
            "J51 iss + 1",
            with_iss(format!("{main}1").into()),
            Reject("unknown_issuer"),
        ),
        case(
            "J51 iss + /",
            with_iss(format!("{main}/").into()),
            Reject("unknown_issuer"),
        ),
        case(
            "J51 iss other case",
            with_iss(main.replace("main", "MAIN").into()),
            Reject("unknown_issuer"),
        ),
        case(
            "J51 iss https instead of http",
            with_iss(main.replace("http://", "https://").into()),
            Reject("unknown_issuer"),
        ),
        case(
            "J51 iss localhost instead of 127.0.0.1",
            with_iss(main.replace("127.0.0.1", "localhost").into()),
            Reject("unknown_issuer"),
        ),
        case(
            "J51 iss missing",
            fx.without("iss"),
            Reject("unknown_issuer"),
        ),
        case(
            "J51 iss array",
            with_iss(json!([main])),
            Reject("unknown_issuer"),
        ),
        case(
            "J51 iss the server's base",
            with_iss(base.into()),
            Reject("unknown_issuer"),
        ),
        case(
            "J52 aud + 1",
            fx.claim("aud", format!("{AUDIENCE}1").into()),
            Reject("wrong_audience"),
        ),
        case(
            "J52 aud missing",
            fx.without("aud"),
            Reject("wrong_audience"),
        ),
        case(
            "J52 aud other only",
            fx.claim("aud", json!(["other"])),
            Reject("wrong_audience"),
        ),
        case(
            "J52 aud number",
            fx.claim("aud", 5.into()),
            Reject("wrong_audience"),
        ),
        case(
            "J52 aud empty array",
            fx.claim("aud", json!([])),
            Reject("wrong_audience"),
        ),
        case(
            "J52 aud null",
            fx.claim("aud", Value::Null),
            Reject("wrong_audience"),
        ),
        case(
            "J52 aud array with a non-string",
            fx.claim("aud", json!([AUDIENCE, 5])),
            Reject("wrong_audience"),
        ),
        case(
            "J52 aud other case",
            fx.claim("aud", AUDIENCE.to_uppercase().into()),
            Reject("wrong_audience"),
        ),
        case(
            "J52 aud ours alone in an array",
            fx.claim("aud", json!([AUDIENCE])),
            Accept,
        ),
        // An access token may serve several resource servers (e.g. Auth0 adds its userinfo
        // audience); ours among them is enough for a bearer token.
        case(
            "J52 aud ours among others",
            fx.claim("aud", json!([AUDIENCE, "other"])),
            Accept,
        ),
        case(
            "J53 sub missing",
            fx.without("sub"),
            Reject("missing_subject"),
        ),
        case(
            "J53 sub empty",
            fx.claim("sub", "".into()),
            Reject("missing_subject"),
        ),
        case(
            "J53 sub number",
            fx.claim("sub", 42.into()),
            Reject("missing_subject"),
        ),
        case(
            "J53 sub null",
            fx.claim("sub", Value::Null),
            Reject("missing_subject"),
        ),
        case(
            "J53 sub 10 kB",
            fx.claim("sub", "a".repeat(10_000).into()),
            Reject("missing_subject"),
        ),
        case(
            "J53 sub 256 bytes",
            fx.claim("sub", "a".repeat(256).into()),
            Reject("missing_subject"),
        ),
        case(
            "J53 sub 255 bytes",
            fx.claim("sub", "a".repeat(255).into()),
            Accept,
        ),
    ];
    run(&fx.verifier, cases).await;
}

#[tokio::test]
async fn same_subject_at_another_issuer_is_another_principal() {
    // J59: identity is (issuer, subject), never the subject alone.
    let fx = fixture().await;
    let a = fx
        .verifier
        .verify(&fx.token(|_, _| {}), now())
        .await
        .unwrap();
    let b_token = fx.token_by(&keys().other_es, |h, p| {
        h.insert("kid".into(), "other-es".into());
        p.insert("iss".into(), fx.other.clone().into());
        p.remove("email");
    });
    let b = fx.verifier.verify(&b_token, now()).await.unwrap();
    assert_eq!(a.identity().subject, b.identity().subject);
    assert_ne!(a.identity(), b.identity());
    assert_eq!(*b.identity(), Identity::new("other", "alice"));
    assert_eq!(b.kind(), PrincipalKind::Workload);
    assert!(!a.same_person_as(&b));
}

#[tokio::test]
async fn rotated_key_is_accepted_after_one_refetch_and_random_kids_are_bounded() {
    // J18.
    let fx = fixture().await;
    let k = keys();
    fx.verifier
        .verify(&fx.token(|_, _| {}), now())
        .await
        .unwrap();
    assert_eq!(fx.server.hits("/main/jwks"), 1);

    // The issuer rotates in a new key; a token signed with it names a kid we have not seen.
    fx.server.edit("main", |s| {
        s.jwks = json!({"keys": [k.es2.jwk(Some("es-2")), k.rsa.jwk(Some("rs-1"))]});
    });
    let rotated = fx.token_by(&k.es2, |h, _| {
        h.insert("kid".into(), "es-2".into());
    });
    let p = fx.verifier.verify(&rotated, now()).await.unwrap();
    assert_eq!(p.identity().subject, "alice");
    assert_eq!(fx.server.hits("/main/jwks"), 2);
    // The retired key is gone with the refetch.
    let old = fx.verifier.verify(&fx.token(|_, _| {}), now()).await;
    assert_eq!(old.unwrap_err().reason(), "unknown_kid");

    // A flood of made-up kids, concurrently, causes no further fetches within the interval.
    let flood = flood(&fx, 100).await;
    assert!(flood.iter().all(|r| r == "unknown_kid"), "{flood:?}");
    assert!(
        fx.server.hits("/main/jwks") <= 3,
        "{}",
        fx.server.hits("/main/jwks")
    );
    assert_eq!(fx.server.hits("/main/.well-known/openid-configuration"), 1);
}

#[tokio::test]
async fn a_flood_of_random_kids_shares_one_refetch() {
    let fx = fixture().await;
    fx.verifier
        .verify(&fx.token(|_, _| {}), now())
        .await
        .unwrap();
    let flood = flood(&fx, 100).await;
    assert!(flood.iter().all(|r| r == "unknown_kid"), "{flood:?}");
    // One fetch at warm-up, exactly one for the whole flood.
    assert_eq!(fx.server.hits("/main/jwks"), 2);
    // One after another they are still limited to one refetch per interval.
    for i in 0..10 {
        let token = fx.with_header("kid", format!("sequential-{i}").into());
        let err = fx.verifier.verify(&token, now()).await.unwrap_err();
        assert_eq!(err.reason(), "unknown_kid");
    }
    assert_eq!(fx.server.hits("/main/jwks"), 2);
}

/// Verifies `n` tokens with distinct unknown kids concurrently; returns the reasons.
async fn flood(fx: &Fx, n: usize) -> Vec<String> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let token = fx.with_header("kid", format!("random-{i}-{}", i * 7919).into());
        let verifier = fx.verifier.clone();
        tasks.spawn(async move {
            match verifier.verify(&token, now()).await {
                Ok(_) => "accepted".to_owned(),
                Err(e) => e.reason().to_owned(),
            }
        });
    }
    tasks.join_all().await
}

#[tokio::test]
async fn concurrent_first_use_discovers_once() {
    let fx = fixture().await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let verifier = fx.verifier.clone();
        let token = fx.token(|_, _| {});
        tasks.spawn(async move { verifier.verify(&token, now()).await.is_ok() });
    }
    assert!(tasks.join_all().await.into_iter().all(|ok| ok));
    assert_eq!(fx.server.hits("/main/.well-known/openid-configuration"), 1);
    assert_eq!(fx.server.hits("/main/jwks"), 1);
}

#[tokio::test]
async fn discovery_with_a_mismatched_issuer_makes_the_issuer_unusable() {
    let server = IssuerServer::start().await;
    server.add("liar", json!({"keys": [keys().es.jwk(Some("es-1"))]}));
    server.add("slash", json!({"keys": [keys().es.jwk(Some("es-1"))]}));
    let liar = server.url("liar");
    let slash = server.url("slash");
    server.edit("liar", |s| {
        s.discovery["issuer"] = "https://evil.example.com".into()
    });
    // A trailing slash is a different issuer, byte for byte.
    server.edit("slash", |s| {
        s.discovery["issuer"] = format!("{slash}/").into()
    });
    let v = verifier(vec![human("liar", &liar), human("slash", &slash)]);
    v.refresh_all().await;
    for status in v.statuses() {
        assert!(!status.ready, "{status:?}");
        let error = status.error.unwrap();
        assert!(error.contains("names issuer"), "{error}");
        assert!(error.contains(&status.url), "{error}");
    }
    // Tokens from it are refused, and the key set was never fetched.
    let token = sign(
        &keys().es,
        &obj(json!({"alg": "ES256", "typ": "at+jwt", "kid": "es-1"})),
        &obj(json!({"iss": liar, "sub": "alice", "aud": AUDIENCE, "exp": NOW + 300})),
    );
    let err = v.verify(&token, now()).await.unwrap_err();
    assert_eq!(err.reason(), "issuer_unavailable");
    assert_eq!(server.hits("/liar/jwks"), 0);
}

#[tokio::test]
async fn a_jwks_uri_over_plain_http_elsewhere_is_refused() {
    let server = IssuerServer::start().await;
    server.add("idp", json!({"keys": [keys().es.jwk(Some("es-1"))]}));
    server.edit("idp", |s| {
        s.discovery["jwks_uri"] = "http://keys.example.com/jwks".into()
    });
    let v = verifier(vec![human("idp", &server.url("idp"))]);
    v.refresh_all().await;
    let status = &v.statuses()[0];
    assert!(!status.ready);
    assert!(
        status.error.as_deref().unwrap().contains("https"),
        "{status:?}"
    );
}

#[tokio::test]
async fn a_dead_issuer_is_not_hammered() {
    let server = IssuerServer::start().await;
    server.add("down", json!({"keys": [keys().es.jwk(Some("es-1"))]}));
    server.edit("down", |s| s.fail = Some(503));
    let url = server.url("down");
    let v = verifier(vec![human("down", &url)]);
    let token = sign(
        &keys().es,
        &obj(json!({"alg": "ES256", "typ": "at+jwt", "kid": "es-1"})),
        &obj(json!({"iss": url, "sub": "alice", "aud": AUDIENCE, "exp": NOW + 300})),
    );
    for _ in 0..10 {
        let err = v.verify(&token, now()).await.unwrap_err();
        assert_eq!(err.reason(), "issuer_unavailable");
        assert!(err.message().contains(&url), "{}", err.message());
    }
    v.refresh_all().await;
    assert_eq!(server.hits("/down/.well-known/openid-configuration"), 1);
    let status = &v.statuses()[0];
    assert!(!status.ready);
    assert!(
        status.error.as_deref().unwrap().contains("503"),
        "{status:?}"
    );
}

#[tokio::test]
async fn keys_expire_and_stale_keys_outlive_an_outage() {
    let (server, v, url) =
        single_issuer(|s| s.jwks_ttl = std::time::Duration::from_millis(1)).await;
    let token = idp_token(&url, "at+jwt", json!({}));
    v.verify(&token, now()).await.unwrap();
    assert_eq!(server.hits("/idp/jwks"), 1);
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    v.verify(&token, now()).await.unwrap();
    assert_eq!(server.hits("/idp/jwks"), 2);

    // The issuer goes down: the keys we hold keep working, and the outage is reported.
    server.edit("idp", |s| s.fail = Some(503));
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    for _ in 0..5 {
        v.verify(&token, now()).await.unwrap();
    }
    assert_eq!(server.hits("/idp/jwks"), 3);
    let status = &v.statuses()[0];
    assert!(status.ready, "{status:?}");
    assert!(
        status.error.as_deref().unwrap().contains("503"),
        "{status:?}"
    );
}

/// The verified-token cache never outlives the key that verified a token: once the issuer's
/// refreshed JWKS no longer holds that key, the same token is refused.
#[tokio::test]
async fn a_cached_token_is_refused_once_its_key_is_withdrawn() {
    let (server, v, url) =
        single_issuer(|s| s.jwks_ttl = std::time::Duration::from_millis(1)).await;
    let token = idp_token(&url, "at+jwt", json!({}));
    v.verify(&token, now()).await.unwrap();
    server.edit("idp", |s| {
        s.jwks = json!({"keys": [keys().other_es.jwk(Some("es-2"))]});
    });
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    let err = v.verify(&token, now()).await.unwrap_err();
    assert_eq!(err.reason(), "unknown_kid", "{err:?}");
}

/// A cached token is used only before its `exp`; after that the full check decides (it allows
/// a minute of clock skew), and a clock moved back before the token's `iat` is noticed.
#[tokio::test]
async fn a_cached_token_is_never_used_past_exp() {
    let (_server, v, url) = single_issuer(|_| {}).await;
    let token = idp_token(&url, "at+jwt", json!({"exp": NOW + 300}));
    v.verify(&token, now()).await.unwrap();
    let at = |secs: i64| chrono::DateTime::from_timestamp(secs, 0).unwrap();
    v.verify(&token, at(NOW + 299)).await.unwrap();
    v.verify(&token, at(NOW + 330)).await.unwrap();
    let err = v.verify(&token, at(NOW + 361)).await.unwrap_err();
    assert_eq!(err.reason(), "expired", "{err:?}");
    // A clock moved back before its iat (beyond the leeway) is noticed too.
    let token = idp_token(&url, "at+jwt", json!({"iat": NOW}));
    v.verify(&token, now()).await.unwrap();
    let err = v.verify(&token, at(NOW - 120)).await.unwrap_err();
    assert_eq!(err.reason(), "issued_in_future", "{err:?}");
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let server = IssuerServer::start().await;
    server.add("moved", json!({"keys": [keys().es.jwk(Some("es-1"))]}));
    server.add("target", json!({"keys": [keys().es.jwk(Some("es-1"))]}));
    let target = format!("{}/.well-known/openid-configuration", server.url("target"));
    server.edit("moved", |s| s.redirect = Some(target));
    let v = verifier(vec![human("moved", &server.url("moved"))]);
    v.refresh_all().await;
    let status = &v.statuses()[0];
    assert!(!status.ready);
    assert!(
        status.error.as_deref().unwrap().contains("302"),
        "{status:?}"
    );
    assert_eq!(server.hits("/target/.well-known/openid-configuration"), 0);
}

#[tokio::test]
async fn refresh_all_readies_every_issuer() {
    let fx = fixture().await;
    fx.verifier.refresh_all().await;
    let statuses = fx.verifier.statuses();
    assert_eq!(statuses.len(), 5);
    assert!(
        statuses.iter().all(|s| s.ready && s.error.is_none()),
        "{statuses:?}"
    );
    // Fresh keys are not fetched again by a second call (a /readyz poll).
    fx.verifier.refresh_all().await;
    assert_eq!(fx.server.hits("/main/jwks"), 1);
}

#[test]
fn settings_are_validated() {
    let plain = human("idp", "http://idp.example.com");
    let err = plain.validate().unwrap_err();
    assert!(err.contains("https"), "{err}");
    assert!(human("idp", "https://idp.example.com").validate().is_ok());
    assert!(human("dev", "http://127.0.0.1:8080").validate().is_ok());

    let http = countersign_identity::http_client();
    let new = |settings: Vec<IssuerSettings>| Verifier::new(settings, http.clone());
    assert!(new(vec![plain]).is_err());
    let mut hmac = human("idp", "https://idp.example.com");
    hmac.algorithms.push(Algorithm::HS256);
    assert!(new(vec![hmac]).is_err());
    let twice = vec![
        human("idp", "https://a.example.com"),
        human("idp", "https://b.example.com"),
    ];
    assert!(new(twice).is_err());
    let same_url = vec![
        human("a", "https://a.example.com"),
        human("b", "https://a.example.com"),
    ];
    assert!(new(same_url).is_err());
    let mut gh = workload("github", "https://token.actions.githubusercontent.com");
    gh.actor_issuer = Some("nowhere".into());
    assert!(new(vec![gh]).is_err());
    let mut no_aud = human("idp", "https://idp.example.com");
    no_aud.audiences.clear();
    assert!(new(vec![no_aud]).is_err());
}

/// One issuer with custom settings and its token builder.
async fn single_issuer(
    configure: impl FnOnce(&mut IssuerSettings),
) -> (IssuerServer, Verifier, String) {
    let server = IssuerServer::start().await;
    server.add("idp", json!({"keys": [keys().es.jwk(Some("es-1"))]}));
    let url = server.url("idp");
    let mut settings = human("idp", &url);
    configure(&mut settings);
    let v = verifier(vec![settings]);
    (server, v, url)
}

fn idp_token(url: &str, typ: &str, claims: Value) -> String {
    let mut payload = obj(json!({"iss": url, "sub": "user-1", "aud": AUDIENCE, "exp": NOW + 300}));
    payload.extend(obj(claims));
    sign(
        &keys().es,
        &obj(json!({"alg": "ES256", "typ": typ, "kid": "es-1"})),
        &payload,
    )
}

#[tokio::test]
async fn groups_from_a_nested_path() {
    let (_s, v, url) = single_issuer(|s| {
        s.groups_claim = Some("realm_access.roles".into());
        s.token_types = vec!["jwt".into()];
    })
    .await;
    let token = idp_token(
        &url,
        "JWT",
        json!({"realm_access": {"roles": ["approver", "offline_access"]}, "groups": ["ignored"]}),
    );
    let p = v.verify(&token, now()).await.unwrap();
    assert_eq!(p.groups(), ["approver", "offline_access"]);
    // Wrong shape: no groups, not an error.
    let token = idp_token(&url, "JWT", json!({"realm_access": {"roles": "approver"}}));
    assert_eq!(
        v.verify(&token, now()).await.unwrap().groups(),
        ["approver"]
    );
    let token = idp_token(&url, "JWT", json!({"realm_access": {"roles": [1, 2]}}));
    assert!(v.verify(&token, now()).await.unwrap().groups().is_empty());
    let token = idp_token(&url, "JWT", json!({"realm_access": ["approver"]}));
    assert!(v.verify(&token, now()).await.unwrap().groups().is_empty());
    let token = idp_token(&url, "JWT", json!({}));
    assert!(v.verify(&token, now()).await.unwrap().groups().is_empty());
}

#[tokio::test]
async fn email_only_when_verified_and_name_fallback() {
    let (_s, v, url) = single_issuer(|_| {}).await;
    let verify = |claims: Value| {
        let token = idp_token(&url, "at+jwt", claims);
        let v = v.clone();
        async move { v.verify(&token, now()).await.unwrap() }
    };
    let p = verify(json!({"email": "a@example.com", "email_verified": false})).await;
    assert_eq!(p.email(), None);
    let p = verify(json!({"email": "a@example.com", "email_verified": "true"})).await;
    assert_eq!(p.email(), None);
    let p = verify(json!({"email": "a@example.com"})).await;
    assert_eq!(p.email(), None);
    let p = verify(json!({"email": "a@example.com", "email_verified": true})).await;
    assert_eq!(p.email(), Some("a@example.com"));
    let p = verify(json!({"preferred_username": "a.user"})).await;
    assert_eq!(p.name(), Some("a.user"));
    assert_eq!(p.auth_time(), None);
    let p = verify(json!({"name": "A User", "preferred_username": "a.user", "auth_time": NOW - 5}))
        .await;
    assert_eq!(p.name(), Some("A User"));
    assert_eq!(p.auth_time().unwrap().timestamp(), NOW - 5);
}

#[tokio::test]
async fn subject_from_another_claim() {
    // Entra: the stable id is `oid`, `sub` is per application.
    let (_s, v, url) = single_issuer(|s| s.subject_claim = "oid".into()).await;
    let token = idp_token(&url, "at+jwt", json!({"oid": "2d7c4e8a-9b1f"}));
    let p = v.verify(&token, now()).await.unwrap();
    assert_eq!(*p.identity(), Identity::new("idp", "2d7c4e8a-9b1f"));
    let token = idp_token(&url, "at+jwt", json!({}));
    let err = v.verify(&token, now()).await.unwrap_err();
    assert_eq!(err.reason(), "missing_subject");
    assert!(err.message().contains("oid"), "{}", err.message());
}

#[tokio::test]
async fn workload_actor_is_mapped_to_the_actor_issuer() {
    let fx = fixture().await;
    let k = keys();
    let token = |actor: Value| {
        fx.token_by(&k.other_es, |h, p| {
            h.insert("kid".into(), "other-es".into());
            h.insert("typ".into(), "JWT".into());
            p.insert("iss".into(), fx.other.clone().into());
            p.insert("sub".into(), "repo:acme/app:ref:refs/heads/main".into());
            if !actor.is_null() {
                p.insert("actor_id".into(), actor);
            }
        })
    };
    let ci = fx
        .verifier
        .verify(&token("alice".into()), now())
        .await
        .unwrap();
    assert_eq!(ci.kind(), PrincipalKind::Workload);
    assert_eq!(
        *ci.identity(),
        Identity::new("other", "repo:acme/app:ref:refs/heads/main")
    );
    assert_eq!(ci.actor(), Some(&Identity::new("main", "alice")));
    let human = fx
        .verifier
        .verify(&fx.token(|_, _| {}), now())
        .await
        .unwrap();
    assert!(ci.same_person_as(&human));

    for absent in [Value::Null, json!(12345), json!(""), json!(["alice"])] {
        let p = fx
            .verifier
            .verify(&token(absent.clone()), now())
            .await
            .unwrap();
        assert_eq!(p.actor(), None, "{absent}");
    }
}

#[tokio::test]
async fn only_the_configured_audiences_count() {
    let (_s, v, url) = single_issuer(|s| {
        s.audiences = vec!["api://countersign".into(), "countersign-prod".into()];
    })
    .await;
    let with_aud = |aud: Value| {
        let mut p = obj(json!({"iss": url, "sub": "u", "exp": NOW + 300}));
        p.insert("aud".into(), aud);
        sign(
            &keys().es,
            &obj(json!({"alg": "ES256", "typ": "at+jwt", "kid": "es-1"})),
            &p,
        )
    };
    assert!(
        v.verify(&with_aud("countersign-prod".into()), now())
            .await
            .is_ok()
    );
    assert!(
        v.verify(&with_aud(json!(["x", "api://countersign"])), now())
            .await
            .is_ok()
    );
    let err = v
        .verify(&with_aud(AUDIENCE.into()), now())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "wrong_audience");
}
