//! Sign-in with the device authorization grant (RFC 8628): the issuer hands out a short user
//! code, the user confirms it in any browser (this machine's or a phone's), and meanwhile we
//! poll the token endpoint at the interval the issuer asks for.

use std::time::Duration;

use serde::Deserialize;

use super::browser;
use super::oauth::{self, IssuerInfo, Metadata, TokenError, TokenResponse};
use crate::failure::Failure;
use crate::output;

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// RFC 8628 §3.2: the interval when the issuer names none.
const DEFAULT_INTERVAL: u64 = 5;
/// RFC 8628 §3.5: `slow_down` adds this much to the interval.
const SLOW_DOWN_STEP: u64 = 5;

#[derive(Deserialize)]
struct DeviceAuthorization {
    device_code: String,
    user_code: String,
    verification_uri: String,
    verification_uri_complete: Option<String>,
    expires_in: u64,
    interval: Option<u64>,
}

/// What happened when the device authorization was asked for.
#[derive(Debug)]
pub enum Started {
    /// The user signed in; here are the tokens.
    Tokens(TokenResponse),
    /// The issuer does not let this client use the device flow (`unauthorized_client`…):
    /// the caller may try the browser flow instead.
    NotOffered(String),
}

/// Runs the device flow for `client_id` at the issuer.
pub async fn sign_in(
    http: &reqwest::Client,
    info: &IssuerInfo,
    metadata: &Metadata,
    endpoint: &str,
    client_id: &str,
    open_browser: bool,
) -> Result<Started, Failure> {
    let scope = oauth::scopes(info, metadata);
    let mut form = vec![("client_id", client_id), ("scope", scope.as_str())];
    if let Some(resource) = oauth::resource(info) {
        form.push(("resource", resource));
    }
    let started: DeviceAuthorization = match oauth::post_form(http, endpoint, &form).await {
        Ok(started) => started,
        Err(TokenError::OAuth { error, description })
            if matches!(
                error.as_str(),
                "unauthorized_client" | "invalid_client" | "unsupported_grant_type"
            ) =>
        {
            return Ok(Started::NotOffered(match description {
                Some(d) => format!("{error}: {d}"),
                None => error,
            }));
        }
        Err(e) => {
            return Err(Failure::error(format!(
                "the identity provider refused to start a device sign-in: {}",
                e.describe()
            )));
        }
    };

    output::note(&format!(
        "To sign in to {}, open {} and enter the code {}",
        info.name, started.verification_uri, started.user_code
    ));
    if let Some(complete) = &started.verification_uri_complete {
        output::note(&format!("(or open {complete} directly)"));
        if open_browser {
            browser::open(complete);
        }
    } else if open_browser {
        browser::open(&started.verification_uri);
    }
    output::note("Waiting for the sign-in to finish…");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(started.expires_in.max(1));
    let mut interval = started.interval.unwrap_or(DEFAULT_INTERVAL).max(1);
    loop {
        tokio::time::sleep(Duration::from_secs(interval)).await;
        if tokio::time::Instant::now() >= deadline {
            return Err(expired());
        }
        let form = [
            ("grant_type", GRANT_TYPE),
            ("device_code", started.device_code.as_str()),
            ("client_id", client_id),
        ];
        match oauth::post_form::<TokenResponse>(http, &metadata.token_endpoint, &form).await {
            Ok(tokens) => return Ok(Started::Tokens(tokens)),
            Err(TokenError::OAuth { error, .. }) if error == "authorization_pending" => {}
            Err(TokenError::OAuth { error, .. }) if error == "slow_down" => {
                interval += SLOW_DOWN_STEP;
            }
            Err(TokenError::OAuth { error, .. }) if error == "access_denied" => {
                return Err(Failure::denied(
                    "the sign-in was declined at the identity provider; run `countersign login` to try again",
                ));
            }
            Err(TokenError::OAuth { error, .. }) if error == "expired_token" => {
                return Err(expired());
            }
            Err(e) => {
                return Err(Failure::denied(format!(
                    "the device sign-in failed: {}; run `countersign login` to try again",
                    e.describe()
                )));
            }
        }
    }
}

fn expired() -> Failure {
    Failure::denied(
        "the code expired before the sign-in finished; run `countersign login` to get a new one",
    )
}
