//! `countersign login` and `logout`: learn the server's issuers from its public sign-in
//! configuration, sign in with the device flow where the issuer offers it (else a browser and
//! a loopback redirect), check that the server accepts the token, and keep it in the login
//! cache.

use clap::{Args, ValueEnum};
use reqwest::StatusCode;
use serde_json::Value;

use crate::auth::oauth::{self, IssuerInfo};
use crate::auth::{self, cache, device, loopback};
use crate::clock;
use crate::failure::{Failure, Outcome, exit};
use crate::http::{self, CALL_TIMEOUT};
use crate::output;

/// How to sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Flow {
    /// The device flow where the issuer offers it, else a browser.
    Auto,
    /// The device flow (RFC 8628): a code to confirm in any browser.
    Device,
    /// A browser on this machine, redirected back to 127.0.0.1 (PKCE).
    Browser,
}

/// Options of `countersign login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The countersign server, e.g. https://approvals.example.com.
    #[arg(long, env = "COUNTERSIGN_SERVER", value_name = "URL")]
    server: Option<String>,
    /// The issuer to sign in with (its name in the server's configuration), when the server
    /// trusts several.
    #[arg(long, value_name = "NAME")]
    issuer: Option<String>,
    /// How to sign in.
    #[arg(long, value_enum, default_value_t = Flow::Auto)]
    flow: Flow,
    /// Only print the sign-in URL; do not try to open a browser.
    #[arg(long)]
    no_browser: bool,
}

/// Options of `countersign logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The countersign server to log out of.
    #[arg(long, env = "COUNTERSIGN_SERVER", value_name = "URL")]
    server: Option<String>,
}

/// `countersign login`.
pub async fn login(args: LoginArgs) -> Outcome {
    let server = http::server_url(args.server.as_deref())?;
    let http = http::client()?;
    let config = oauth::auth_config(&http, &server).await?;
    let info = choose_issuer(&config.issuers, args.issuer.as_deref(), &server)?;
    let Some(client_id) = info.cli_client_id.as_deref() else {
        return Err(Failure::error(format!(
            "issuer '{}' has no command-line client; ask the operators of {server} to set its cli_client_id",
            info.name
        )));
    };
    let metadata = oauth::discover(&http, &info.issuer).await?;
    let open_browser = !args.no_browser;

    let browser = || loopback::sign_in(&http, info, &metadata, client_id, open_browser);
    let tokens = match (args.flow, metadata.device_authorization_endpoint.as_deref()) {
        (Flow::Browser, _) | (Flow::Auto, None) => browser().await?,
        (Flow::Device, None) => {
            return Err(Failure::error(format!(
                "the identity provider {} offers no device flow; use --flow browser",
                info.issuer
            )));
        }
        (flow, Some(endpoint)) => {
            match device::sign_in(&http, info, &metadata, endpoint, client_id, open_browser).await?
            {
                device::Started::Tokens(tokens) => tokens,
                device::Started::NotOffered(why) if flow == Flow::Auto => {
                    output::note(&format!(
                        "the identity provider does not offer the device flow to this client ({why}); signing in with a browser instead"
                    ));
                    browser().await?
                }
                device::Started::NotOffered(why) => {
                    return Err(Failure::error(format!(
                        "the identity provider refused the device flow ({why}); use --flow browser"
                    )));
                }
            }
        }
    };

    accepted_by_server(&http, &server, &tokens.access_token, info).await?;
    let login = cache::Login {
        server: server.clone(),
        issuer_name: info.name.clone(),
        issuer: info.issuer.clone(),
        client_id: client_id.to_string(),
        token_endpoint: metadata.token_endpoint.clone(),
        revocation_endpoint: metadata.revocation_endpoint.clone(),
        resource: oauth::resource(info).map(str::to_string),
        expires_at: auth::expires_at(&tokens, clock::now_secs()),
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
    };
    cache::save(&login)?;
    output::note(&format!(
        "logged in to {server} as {} via {}",
        display_name(&login.access_token),
        info.name
    ));
    Ok(exit::OK)
}

/// `countersign logout`: forgets the login (and revokes its refresh token where the issuer
/// allows, best effort).
pub async fn logout(args: LogoutArgs) -> Outcome {
    let server = http::server_url(args.server.as_deref())?;
    if let Some(login) = cache::load(&server)?
        && let (Some(endpoint), Some(refresh)) = (&login.revocation_endpoint, &login.refresh_token)
    {
        let http = http::client()?;
        let form = [
            ("token", refresh.as_str()),
            ("token_type_hint", "refresh_token"),
            ("client_id", login.client_id.as_str()),
        ];
        // Best effort: the local copy goes either way.
        let _ = http
            .post(endpoint)
            .form(&form)
            .timeout(std::time::Duration::from_secs(5))
            .send()
            .await;
    }
    if cache::remove(&server)? {
        output::note(&format!("logged out of {server}"));
    } else {
        output::note(&format!("not logged in to {server}; nothing to do"));
    }
    Ok(exit::OK)
}

fn choose_issuer<'a>(
    issuers: &'a [IssuerInfo],
    wanted: Option<&str>,
    server: &str,
) -> Result<&'a IssuerInfo, Failure> {
    if let Some(name) = wanted {
        return issuers.iter().find(|i| i.name == name).ok_or_else(|| {
            let names: Vec<&str> = issuers.iter().map(|i| i.name.as_str()).collect();
            Failure::error(format!(
                "{server} has no issuer named '{name}'; it has: {}",
                names.join(", ")
            ))
        });
    }
    let usable: Vec<&IssuerInfo> = issuers
        .iter()
        .filter(|i| i.kind == countersign_api::PrincipalKind::Human && i.cli_client_id.is_some())
        .collect();
    match usable.as_slice() {
        [] => Err(Failure::error(format!(
            "{server} offers no command-line sign-in (no issuer has a cli_client_id); ask its operators, or use COUNTERSIGN_ID_TOKEN"
        ))),
        [one] => Ok(one),
        several => Err(Failure::error(format!(
            "{server} trusts several issuers; pass --issuer with one of: {}",
            several
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Asks the server to accept the fresh token before it is kept: a wrong audience or an issuer
/// the server cannot reach shows up now, not at the first real command.
async fn accepted_by_server(
    http: &reqwest::Client,
    server: &str,
    token: &str,
    info: &IssuerInfo,
) -> Result<(), Failure> {
    let response = http
        .get(format!("{server}/api/v1/gates"))
        .bearer_auth(token)
        .timeout(CALL_TIMEOUT)
        .send()
        .await
        .map_err(|e| http::unreachable("the server", server, &e, "try again"))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let message = response
        .json::<countersign_api::ErrorBody>()
        .await
        .map_or_else(|_| status.to_string(), |body| body.error.message);
    if status == StatusCode::UNAUTHORIZED {
        Err(Failure::denied(format!(
            "signed in at {}, but {server} does not accept the token ({message}); nothing was saved; ask its operators to check the issuer's audience",
            info.issuer
        )))
    } else {
        Err(Failure::error(format!(
            "signed in, but {server} answered {status} ({message}); nothing was saved"
        )))
    }
}

/// `Alice Adams (alice)`, from the token's claims (unverified, for display only).
fn display_name(token: &str) -> String {
    let claims = oauth::unverified_claims(token).unwrap_or_default();
    let get = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_string);
    let subject = get("sub").unwrap_or_else(|| "?".into());
    match get("name").or_else(|| get("preferred_username")) {
        Some(name) if name != subject => format!("{name} ({subject})"),
        _ => subject,
    }
}
