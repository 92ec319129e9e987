//! M1: bearer verification (`Verifier::verify` with the issuer's keys cached but the
//! verified-token cache off, so every call checks the signature) against the raw ES256
//! signature verification of the same token. Target: overhead ≤ 20 %. Also measured: the same
//! call answered from the verified-token cache, which is what a client reusing its token gets.
//!
//! The issuer is the identity tests' local axum server (discovery + JWKS on 127.0.0.1).

#![expect(clippy::unwrap_used, reason = "a benchmark: a panic is its report")]

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::json;
use support::*;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let k = keys();
    let (server, verifier, cached) = rt.block_on(async {
        let server = IssuerServer::start().await;
        server.add("main", json!({"keys": [k.es.jwk(Some("es-1"))]}));
        let mut settings = human("main", &server.url("main"));
        settings.groups_claim = Some("groups".into());
        let cached = verifier(vec![settings.clone()]);
        let verifier = verifier(vec![settings]).with_token_cache(0);
        (server, verifier, cached)
    });
    let header = obj(json!({"alg": "ES256", "typ": "at+jwt", "kid": "es-1"}));
    let payload = obj(json!({
        "iss": server.url("main"),
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
    }));
    let token = sign(&k.es, &header, &payload);
    // Warm the discovery and JWKS cache; every later call must be served from it.
    rt.block_on(verifier.verify(&token, now())).unwrap();
    rt.block_on(cached.verify(&token, now())).unwrap();
    let hits = server.total_hits();

    let jwk: Jwk = serde_json::from_value(k.es.jwk(Some("es-1"))).unwrap();
    let key = DecodingKey::from_jwk(&jwk).unwrap();
    let (message, signature) = token.rsplit_once('.').unwrap();
    assert!(
        jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key, Algorithm::ES256)
            .unwrap()
    );

    let mut group = c.benchmark_group("m1");
    group.bench_function("raw_es256_signature", |b| {
        b.iter(|| {
            jsonwebtoken::crypto::verify(
                black_box(signature),
                black_box(message.as_bytes()),
                &key,
                Algorithm::ES256,
            )
            .unwrap()
        })
    });
    group.bench_function("bearer_verify_warm", |b| {
        b.iter(|| {
            rt.block_on(verifier.verify(black_box(&token), now()))
                .unwrap()
        })
    });
    group.bench_function("bearer_verify_token_cached", |b| {
        b.iter(|| {
            rt.block_on(cached.verify(black_box(&token), now()))
                .unwrap()
        })
    });
    group.finish();
    assert_eq!(server.total_hits(), hits, "the warm cache fetched again");
}

criterion_group!(benches, bench);
criterion_main!(benches);
