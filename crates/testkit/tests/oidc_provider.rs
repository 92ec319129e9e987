//! The test OpenID provider issues the tokens other crates' tests rely on.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use countersign_testkit::OidcProvider;
use serde_json::{Value, json};

/// Header and payload of a JWT, not verified.
fn decode(jwt: &str) -> (Value, Value) {
    let mut parts = jwt.split('.');
    let mut part = || -> Value {
        let bytes = URL_SAFE_NO_PAD
            .decode(parts.next().expect("a JWT part"))
            .expect("base64url");
        serde_json::from_slice(&bytes).expect("JSON")
    };
    let header = part();
    let payload = part();
    (header, payload)
}

#[tokio::test]
async fn login_and_workload_tokens_are_api_jwts() -> anyhow::Result<()> {
    let provider = OidcProvider::start().await?;
    assert!(provider.issuer().starts_with("http://127.0.0.1:"));

    let tokens = provider.login("bob").await?;
    let (header, claims) = decode(&tokens.access_token);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "ES256");
    assert_eq!(claims["aud"], "api://countersign");
    assert_eq!(claims["iss"], provider.issuer());
    assert_eq!(claims["sub"], "bob");
    assert_eq!(claims["groups"], json!(["sre"]));
    assert_eq!(claims["team"], "platform");
    assert_eq!(claims["email"], "bob@example.com");
    assert_eq!(claims["email_verified"], true);
    assert!(claims["auth_time"].is_u64());
    assert!(tokens.refresh_token.is_some());
    assert!(tokens.expires_in > 0);

    let (id_header, id_claims) = decode(&tokens.id_token);
    assert_eq!(id_header["alg"], "ES256");
    assert_eq!(id_claims["aud"], "countersign-web");
    assert_eq!(id_claims["groups"], json!(["sre"]));
    assert_eq!(id_claims["preferred_username"], "bob");

    let workload = provider.workload_token().await?;
    let (header, claims) = decode(&workload);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(claims["aud"], "api://countersign");
    assert_eq!(claims["sub"], "repo:acme/app:ref:refs/heads/main");
    assert_eq!(claims["repository"], "acme/app");
    assert_eq!(claims["actor"], "alice");
    assert_eq!(claims["client_id"], "ci-workload");
    Ok(())
}

#[tokio::test]
async fn configuration_overrides_apply() -> anyhow::Result<()> {
    let provider = OidcProvider::start_with(json!({
        "audience": "https://api.example.test",
        "redirect_uris": ["http://127.0.0.1:9999/auth/callback"],
        "users": { "zoe": { "groups": ["ops"], "team": "ops" } },
    }))
    .await?;
    let tokens = provider.login("zoe").await?;
    let (_, claims) = decode(&tokens.access_token);
    assert_eq!(claims["aud"], "https://api.example.test");
    assert_eq!(claims["sub"], "zoe");
    assert_eq!(claims["groups"], json!(["ops"]));
    assert_eq!(claims["email"], "zoe@example.com");

    let err = provider.login("nobody").await.expect_err("an unknown user");
    assert!(
        format!("{err:#}").contains("unknown user nobody"),
        "{err:#}"
    );
    assert!(provider.users().iter().any(|user| user == "zoe"));
    Ok(())
}

#[tokio::test]
async fn a_broken_configuration_fails_with_the_providers_reason() {
    let err = OidcProvider::start_with(json!({
        "clients": [{ "client_id": "broken" }],
    }))
    .await
    .expect_err("an invalid client");
    let message = format!("{err:#}");
    assert!(message.contains("exited before it was ready"), "{message}");
    assert!(message.contains("invalid client broken"), "{message}");
}

#[tokio::test]
async fn device_flow_of_the_cli_client() -> anyhow::Result<()> {
    let provider = OidcProvider::start().await?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let authorization: Value = http
        .post(format!("{}/device/auth", provider.issuer()))
        .form(&[
            ("client_id", "countersign-cli"),
            ("scope", "openid groups offline_access"),
            ("resource", provider.audience()),
        ])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let user_code = authorization["user_code"].as_str().expect("a user code");
    let device_code = authorization["device_code"]
        .as_str()
        .expect("a device code");

    provider.approve_device(user_code, "carol").await?;

    let tokens: Value = http
        .post(format!("{}/token", provider.issuer()))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code),
            ("client_id", "countersign-cli"),
        ])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let (header, claims) = decode(tokens["access_token"].as_str().expect("an access token"));
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(claims["sub"], "carol");
    assert_eq!(claims["aud"], "api://countersign");
    assert_eq!(claims["client_id"], "countersign-cli");
    assert_eq!(claims["groups"], json!(["security"]));
    assert!(tokens["refresh_token"].is_string());
    Ok(())
}
