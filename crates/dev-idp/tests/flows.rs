//! End-to-end flows against the provider served over real HTTP on 127.0.0.1:0.

// clippy's allow-unwrap-in-tests covers `#[test]` functions but not the helpers they share here.
#![expect(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use countersign_dev_idp::{DevIdpConfig, client, router};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use url::Url;

const AUDIENCE: &str = "countersign";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

struct App {
    issuer: String,
    origin: String,
    http: reqwest::Client,
}

/// Starts the provider mounted at `/dev-idp`, as `countersign dev` does.
async fn spawn_app() -> App {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let issuer = format!("{origin}/dev-idp");
    let config = DevIdpConfig::new(&issuer, AUDIENCE)
        .with_web_redirect_uris(vec![format!("{origin}/auth/callback")])
        .with_web_post_logout_redirect_uris(vec![format!("{origin}/")]);
    let app = axum::Router::new().nest("/dev-idp", router(config));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    App {
        issuer,
        origin,
        http,
    }
}

impl App {
    async fn discovery(&self) -> Value {
        self.get_json(&format!("{}/.well-known/openid-configuration", self.issuer))
            .await
    }

    async fn get_json(&self, url: &str) -> Value {
        let response = self.http.get(url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        response.json().await.unwrap()
    }

    /// Verifies `token` against the served JWKS, checking `typ` ourselves.
    async fn verify(&self, token: &str, typ: &str, audience: &str) -> Value {
        let jwks_uri = self.discovery().await["jwks_uri"]
            .as_str()
            .unwrap()
            .to_owned();
        let jwks: JwkSet = serde_json::from_value(self.get_json(&jwks_uri).await).unwrap();
        let header = jsonwebtoken::decode_header(token).unwrap();
        assert_eq!(header.typ.as_deref(), Some(typ));
        assert_eq!(header.alg, Algorithm::ES256);
        let jwk = jwks
            .find(header.kid.as_deref().unwrap())
            .expect("kid is in the jwks");
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub", "iat"]);
        jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
            .unwrap()
            .claims
    }

    fn authorize_params(&self, state: &str) -> Vec<(&'static str, String)> {
        vec![
            ("response_type", "code".into()),
            ("client_id", "countersign-cli".into()),
            ("redirect_uri", "http://127.0.0.1:43210/callback".into()),
            ("scope", "openid profile groups".into()),
            ("state", state.into()),
            ("nonce", "n-0S6_WzA2Mj".into()),
            ("code_challenge", CHALLENGE.into()),
            ("code_challenge_method", "S256".into()),
        ]
    }

    async fn get_authorize(&self, params: &[(&str, String)]) -> reqwest::Response {
        self.http
            .get(format!("{}/authorize", self.issuer))
            .query(params)
            .send()
            .await
            .unwrap()
    }

    /// Picks `user` in the picker and returns the redirect's query.
    async fn login(&self, user: &str, params: &[(&str, String)]) -> HashMap<String, String> {
        let mut form: Vec<(&str, String)> = params.to_vec();
        form.push(("user", user.into()));
        let response = self
            .http
            .post(format!("{}/authorize", self.issuer))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let location = Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
        assert_eq!(location.path(), "/callback");
        location.query_pairs().into_owned().collect()
    }

    async fn redeem(&self, code: &str, verifier: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/token", self.issuer))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", "http://127.0.0.1:43210/callback"),
                ("client_id", "countersign-cli"),
                ("code_verifier", verifier),
            ])
            .send()
            .await
            .unwrap()
    }
}

async fn oauth_error(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap();
    body["error"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn discovery_names_the_issuer_exactly_and_its_endpoints_under_it() {
    let app = spawn_app().await;
    let metadata = app.discovery().await;
    assert_eq!(metadata["issuer"], app.issuer.as_str());
    for endpoint in [
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "userinfo_endpoint",
        "end_session_endpoint",
    ] {
        let url = metadata[endpoint].as_str().unwrap();
        assert!(
            url.starts_with(&format!("{}/", app.issuer)),
            "{endpoint}: {url}"
        );
    }
    assert_eq!(
        metadata["response_types_supported"],
        serde_json::json!(["code"])
    );
    assert_eq!(
        metadata["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        metadata["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256"])
    );
    assert_eq!(
        metadata["authorization_response_iss_parameter_supported"],
        true
    );

    let jwks = app.get_json(metadata["jwks_uri"].as_str().unwrap()).await;
    let key = &jwks["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str()),
        (Some("EC"), Some("P-256"))
    );
    assert_eq!(
        (key["alg"].as_str(), key["use"].as_str()),
        (Some("ES256"), Some("sig"))
    );
    assert!(key["kid"].is_string());
    assert!(key.get("d").is_none(), "no private part in the jwks");
}

#[tokio::test]
async fn token_for_a_demo_user_verifies_against_the_served_jwks() {
    let app = spawn_app().await;
    let token = client::token_for(&app.issuer, "bob").await.unwrap();
    let claims = app.verify(&token, "at+jwt", AUDIENCE).await;
    assert_eq!(claims["sub"], "bob");
    assert_eq!(claims["iss"], app.issuer.as_str());
    assert_eq!(claims["aud"], AUDIENCE);
    assert_eq!(claims["client_id"], "countersign-cli");
    assert_eq!(claims["groups"], serde_json::json!(["sre"]));
    assert_eq!(claims["team"], "platform");
    assert_eq!(claims["email"], "bob@example.com");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    for claim in ["jti", "nbf", "auth_time", "scope", "name"] {
        assert!(claims.get(claim).is_some(), "missing {claim}");
    }
}

#[tokio::test]
async fn the_code_flow_issues_an_id_token_bound_to_client_nonce_and_access_token() {
    let app = spawn_app().await;
    let params = app.authorize_params("xyz");
    let query = app.login("dave", &params).await;
    assert_eq!(query["state"], "xyz");
    assert_eq!(query["iss"], app.issuer.as_str());
    let response = app.redeem(&query["code"], VERIFIER).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(body["refresh_token"].is_string());

    let id = app
        .verify(body["id_token"].as_str().unwrap(), "JWT", "countersign-cli")
        .await;
    assert_eq!(id["sub"], "dave");
    assert_eq!(id["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(id["groups"], serde_json::json!(["sre", "security"]));
    assert!(id["sid"].is_string() && id["auth_time"].is_i64());
    let digest = Sha256::digest(body["access_token"].as_str().unwrap().as_bytes());
    assert_eq!(id["at_hash"], URL_SAFE_NO_PAD.encode(&digest[..16]));
}

#[tokio::test]
async fn a_code_cannot_be_redeemed_twice() {
    let app = spawn_app().await;
    let query = app.login("alice", &app.authorize_params("s")).await;
    assert_eq!(
        app.redeem(&query["code"], VERIFIER).await.status(),
        StatusCode::OK
    );
    let replay = app.redeem(&query["code"], VERIFIER).await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert_eq!(oauth_error(replay).await, "invalid_grant");
}

#[tokio::test]
async fn a_wrong_pkce_verifier_is_refused() {
    let app = spawn_app().await;
    let query = app.login("alice", &app.authorize_params("s")).await;
    let wrong = "x".repeat(43);
    let response = app.redeem(&query["code"], &wrong).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(oauth_error(response).await, "invalid_grant");
    // The code was spent by the failed attempt.
    assert_eq!(
        app.redeem(&query["code"], VERIFIER).await.status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn an_unregistered_redirect_uri_gets_an_error_page_not_a_redirect() {
    let app = spawn_app().await;
    for uri in [
        "https://evil.example/callback",
        "http://127.0.0.1:43210/elsewhere",
        "http://localhost:43210/callback",
    ] {
        let mut params = app.authorize_params("s");
        params[2].1 = uri.into();
        let response = app.get_authorize(&params).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{uri}");
        assert!(response.headers().get("location").is_none(), "{uri}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(response.text().await.unwrap().contains("is not registered"));
    }
    // The form post is checked again: a tampered redirect_uri is refused there too.
    let mut params = app.authorize_params("s");
    params[2].1 = "https://evil.example/callback".into();
    params.push(("user", "alice".into()));
    let response = app
        .http
        .post(format!("{}/authorize", app.issuer))
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().get("location").is_none());
}

#[tokio::test]
async fn a_request_without_pkce_is_sent_back_with_an_error_and_iss() {
    let app = spawn_app().await;
    let params: Vec<_> = app
        .authorize_params("s1")
        .into_iter()
        .filter(|(k, _)| !k.starts_with("code_"))
        .collect();
    let response = app.get_authorize(&params).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let query: HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(query["error"], "invalid_request");
    assert_eq!(query["state"], "s1");
    assert_eq!(query["iss"], app.issuer.as_str());
}

#[tokio::test]
async fn the_user_picker_escapes_what_it_echoes() {
    let app = spawn_app().await;
    let state = r#""><script>alert(1)</script>"#;
    let mut params = app.authorize_params(state);
    params.push(("login_hint", "carol".into()));
    let response = app.get_authorize(&params).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let page = response.text().await.unwrap();
    assert!(!page.contains("<script>"), "{page}");
    assert!(page.contains("&lt;script&gt;"));
    assert!(page.contains(r#"value="carol" class="hint" autofocus"#));
    for user in countersign_dev_idp::demo_users() {
        assert!(page.contains(&format!(r#"name="user" value="{}""#, user.username)));
    }
    // And the state still round-trips intact.
    let query = app.login("carol", &app.authorize_params(state)).await;
    assert_eq!(query["state"], state);
}

#[tokio::test]
async fn the_ci_workload_gets_github_like_claims() {
    let app = spawn_app().await;
    let tokens = client::tokens_for(&app.issuer, "ci").await.unwrap();
    assert!(tokens.id_token.is_none() && tokens.refresh_token.is_none());
    let claims = app.verify(&tokens.access_token, "at+jwt", AUDIENCE).await;
    assert_eq!(claims["sub"], "repo:acme/app:ref:refs/heads/main");
    assert_eq!(claims["client_id"], "demo-ci");
    assert_eq!(claims["repository"], "acme/app");
    assert_eq!(claims["repository_owner"], "acme");
    assert_eq!(claims["repository_id"], "1234");
    assert_eq!(claims["ref"], "refs/heads/main");
    assert_eq!(claims["workflow"], "deploy");
    assert_eq!(claims["actor"], "alice");
    assert_eq!(claims["actor_sub"], "alice");
    assert!(claims.get("groups").is_none());
}

#[tokio::test]
async fn client_credentials_needs_the_right_secret_and_a_workload_client() {
    let app = spawn_app().await;
    let token_url = format!("{}/token", app.issuer);
    let grant = [("grant_type", "client_credentials")];
    let wrong = app
        .http
        .post(&token_url)
        .basic_auth("demo-ci", Some("nope"))
        .form(&grant)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().contains_key("www-authenticate"));
    assert_eq!(oauth_error(wrong).await, "invalid_client");

    let web = app
        .http
        .post(&token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "countersign-web"),
            ("client_secret", "dev-web-secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(web.status(), StatusCode::BAD_REQUEST);
    assert_eq!(oauth_error(web).await, "unauthorized_client");
}

#[tokio::test]
async fn the_web_client_logs_in_with_its_secret_and_rotates_refresh_tokens() {
    let app = spawn_app().await;
    let callback = format!("{}/auth/callback", app.origin);
    let mut params = app.authorize_params("w");
    params[1].1 = "countersign-web".into();
    params[2].1 = callback.clone();
    let mut form = params.clone();
    form.push(("user", "erin".into()));
    let response = app
        .http
        .post(format!("{}/authorize", app.issuer))
        .form(&form)
        .send()
        .await
        .unwrap();
    let location = Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(&callback));
    let code: String = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into();

    let token_url = format!("{}/token", app.issuer);
    let redeem = |secret: &'static str| {
        app.http
            .post(&token_url)
            .basic_auth("countersign-web", Some(secret))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", callback.as_str()),
                ("code_verifier", VERIFIER),
            ])
    };
    let unauthenticated = redeem("wrong").send().await.unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    let body: Value = redeem("dev-web-secret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let first_refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let id = app
        .verify(body["id_token"].as_str().unwrap(), "JWT", "countersign-web")
        .await;
    assert_eq!(id["groups"], serde_json::json!(["admin"]));

    let refresh = |token: String| {
        app.http
            .post(&token_url)
            .form(&[
                ("grant_type", "refresh_token".to_owned()),
                ("refresh_token", token),
                ("client_id", "countersign-web".to_owned()),
                ("client_secret", "dev-web-secret".to_owned()),
            ])
            .send()
    };
    let refreshed = refresh(first_refresh.clone()).await.unwrap();
    assert_eq!(refreshed.status(), StatusCode::OK);
    let refreshed: Value = refreshed.json().await.unwrap();
    assert_ne!(refreshed["refresh_token"], first_refresh.as_str());
    let id = app
        .verify(
            refreshed["id_token"].as_str().unwrap(),
            "JWT",
            "countersign-web",
        )
        .await;
    assert!(id.get("nonce").is_none());
    let reused = refresh(first_refresh).await.unwrap();
    assert_eq!(reused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(oauth_error(reused).await, "invalid_grant");

    // Logout with the ID token as hint ends the refresh chain and returns to the registered URI.
    let logout = app
        .http
        .get(format!("{}/logout", app.issuer))
        .query(&[
            ("id_token_hint", refreshed["id_token"].as_str().unwrap()),
            ("post_logout_redirect_uri", &format!("{}/", app.origin)),
            ("state", "bye"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        logout.headers()["location"],
        format!("{}/?state=bye", app.origin).as_str()
    );
    let after_logout = refresh(refreshed["refresh_token"].as_str().unwrap().to_owned()).await;
    assert_eq!(after_logout.unwrap().status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn logout_never_redirects_to_an_unregistered_uri() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(format!("{}/logout", app.issuer))
        .query(&[
            ("client_id", "countersign-web"),
            ("post_logout_redirect_uri", "https://evil.example/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("location").is_none());
    assert!(response.text().await.unwrap().contains("Signed out"));
}

#[tokio::test]
async fn userinfo_returns_the_profile_for_a_valid_access_token_only() {
    let app = spawn_app().await;
    let token = client::token_for(&app.issuer, "carol").await.unwrap();
    let userinfo = format!("{}/userinfo", app.issuer);
    let response = app
        .http
        .get(&userinfo)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["sub"], "carol");
    assert_eq!(body["groups"], serde_json::json!(["security"]));
    assert!(body.get("aud").is_none());

    let missing = app.http.get(&userinfo).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert!(
        missing.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let tampered = format!("{}x", &token[..token.len() - 1]);
    let refused = app
        .http
        .get(&userinfo)
        .bearer_auth(tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(
        refused.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
}

#[tokio::test]
async fn token_for_names_unknown_users_and_wrong_issuers() {
    let app = spawn_app().await;
    let error = client::token_for(&app.issuer, "mallory")
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("unknown demo user `mallory`"), "{error}");
    assert!(error.contains("alice"), "{error}");
    let error = client::token_for(&app.origin, "bob")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("cannot reach") || error.contains("answered"),
        "{error}"
    );
}
