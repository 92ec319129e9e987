//! `/authorize`: GET validates the request and shows the user picker; POST signs the chosen user
//! in and redirects back with a single-use code (RFC 6749 §4.1, RFC 7636, RFC 9207).

use axum::extract::{RawForm, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

use crate::clock::now;
use crate::config::DevClient;
use crate::html::{Picker, error_page, user_picker};
use crate::params::Params;
use crate::provider::{Provider, Shared};
use crate::secrets::random_token;
use crate::store::{CODE_TTL, Login, PendingCode};
use crate::users::find_demo_user;
use crate::{redirect, secrets};

/// The scopes we know. Unknown scopes are dropped from the grant rather than refused, like many
/// real providers do; `openid` is required.
pub(crate) const SUPPORTED_SCOPES: [&str; 5] =
    ["openid", "profile", "email", "groups", "offline_access"];

/// A validated authorization request.
#[derive(Debug)]
struct AuthRequest<'a> {
    client: &'a DevClient,
    redirect_uri: &'a str,
    /// The granted scopes: the known ones among those requested, in our order.
    scope: String,
    state: Option<&'a str>,
    nonce: Option<&'a str>,
    code_challenge: &'a str,
    login_hint: Option<&'a str>,
}

/// Why an authorization request is refused, and so how.
#[derive(Debug)]
enum Refusal {
    /// Shown as a page: the client or redirect URI cannot be trusted, so we must not redirect
    /// (RFC 6749 §4.1.2.1).
    Page(String),
    /// Sent back to the (registered) redirect URI as `error=…`.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
}

impl Refusal {
    fn into_response(self, issuer: &str) -> Response {
        match self {
            Self::Page(message) => error_page(StatusCode::BAD_REQUEST, &message),
            Self::Redirect {
                redirect_uri,
                state,
                error,
                description,
            } => redirect::see_other(
                &redirect_uri,
                &[
                    ("error", Some(error)),
                    ("error_description", Some(&description)),
                    ("state", state.as_deref()),
                    ("iss", Some(issuer)),
                ],
            ),
        }
    }
}

/// GET `/authorize`.
pub(crate) async fn show_picker(
    State(provider): State<Shared>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = match Params::parse(query.unwrap_or_default().as_bytes()) {
        Ok(params) => params,
        Err(problem) => return error_page(StatusCode::BAD_REQUEST, &problem),
    };
    match validate(&provider, &params) {
        Err(refusal) => refusal.into_response(&provider.config.issuer),
        Ok(request) => {
            let mut hidden = vec![
                ("client_id", request.client.client_id.as_str()),
                ("redirect_uri", request.redirect_uri),
                ("response_type", "code"),
                ("scope", request.scope.as_str()),
                ("code_challenge", request.code_challenge),
                ("code_challenge_method", "S256"),
            ];
            hidden.extend(request.state.map(|state| ("state", state)));
            hidden.extend(request.nonce.map(|nonce| ("nonce", nonce)));
            user_picker(&Picker {
                issuer: &provider.config.issuer,
                client_id: &request.client.client_id,
                hidden,
                login_hint: request.login_hint,
            })
        }
    }
}

/// POST `/authorize`: the picker's form. Everything in it came back through the browser, so it
/// is validated again from scratch.
pub(crate) async fn choose_user(
    State(provider): State<Shared>,
    RawForm(form): RawForm,
) -> Response {
    let params = match Params::parse(&form) {
        Ok(params) => params,
        Err(problem) => return error_page(StatusCode::BAD_REQUEST, &problem),
    };
    let request = match validate(&provider, &params) {
        Ok(request) => request,
        Err(refusal) => return refusal.into_response(&provider.config.issuer),
    };
    let Some(username) = params.get("user") else {
        return error_page(StatusCode::BAD_REQUEST, "no demo user was chosen");
    };
    let Some(user) = find_demo_user(username) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            &format!("unknown demo user `{username}`"),
        );
    };

    let now = now();
    let code = random_token();
    let login = Login {
        client_id: request.client.client_id.clone(),
        user,
        scope: request.scope,
        auth_time: now,
        sid: random_token(),
    };
    provider.store.insert_code(
        &code,
        PendingCode {
            login,
            redirect_uri: request.redirect_uri.to_owned(),
            code_challenge: request.code_challenge.to_owned(),
            nonce: request.nonce.map(str::to_owned),
            expires_at: now + CODE_TTL,
        },
        now,
    );
    tracing::info!(client_id = %request.client.client_id, user = user.username, "dev provider signed a user in");
    redirect::see_other(
        request.redirect_uri,
        &[
            ("code", Some(&code)),
            ("state", request.state),
            ("iss", Some(&provider.config.issuer)),
        ],
    )
}

fn validate<'a>(provider: &'a Provider, params: &'a Params) -> Result<AuthRequest<'a>, Refusal> {
    // Until client and redirect URI are known good, every problem is a page, never a redirect.
    let client_id = params
        .get("client_id")
        .ok_or_else(|| Refusal::Page("the request has no client_id".into()))?;
    let client = provider
        .config
        .client(client_id)
        .ok_or_else(|| Refusal::Page(format!("unknown client `{client_id}`")))?;
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or_else(|| Refusal::Page("the request has no redirect_uri".into()))?;
    if !redirect::matches_any(&client.redirect_uris, redirect_uri) {
        return Err(Refusal::Page(format!(
            "redirect_uri `{redirect_uri}` is not registered for client `{client_id}`"
        )));
    }

    let state = params.get("state");
    let refuse = |error: &'static str, description: &str| Refusal::Redirect {
        redirect_uri: redirect_uri.to_owned(),
        state: state.map(str::to_owned),
        error,
        description: description.to_owned(),
    };

    if params.get("request").is_some() {
        return Err(refuse(
            "request_not_supported",
            "request objects are not supported",
        ));
    }
    if params.get("request_uri").is_some() {
        return Err(refuse(
            "request_uri_not_supported",
            "request_uri is not supported",
        ));
    }
    if params
        .get("response_mode")
        .is_some_and(|mode| mode != "query")
    {
        return Err(refuse(
            "invalid_request",
            "only response_mode=query is supported",
        ));
    }
    match params.get("response_type") {
        None => return Err(refuse("invalid_request", "response_type is required")),
        Some("code") => {}
        Some(other) => {
            return Err(refuse(
                "unsupported_response_type",
                &format!("response_type `{other}` is not supported; use `code`"),
            ));
        }
    }
    let requested: Vec<&str> = params.get("scope").unwrap_or_default().split(' ').collect();
    if !requested.contains(&"openid") {
        return Err(refuse("invalid_scope", "scope must include `openid`"));
    }
    let scope = SUPPORTED_SCOPES
        .iter()
        .filter(|known| requested.contains(known))
        .copied()
        .collect::<Vec<_>>()
        .join(" ");

    let Some(code_challenge) = params.get("code_challenge") else {
        return Err(refuse(
            "invalid_request",
            "code_challenge is required (PKCE with S256)",
        ));
    };
    // Without an explicit method RFC 7636 would mean `plain`, which we do not offer.
    if params.get("code_challenge_method") != Some("S256") {
        return Err(refuse(
            "invalid_request",
            "code_challenge_method must be S256",
        ));
    }
    if code_challenge.len() != 43 || !secrets::is_pkce_value(code_challenge) {
        return Err(refuse(
            "invalid_request",
            "code_challenge is not a base64url SHA-256 value",
        ));
    }

    if let Some(prompt) = params.get("prompt") {
        let values: Vec<&str> = prompt.split(' ').collect();
        // We keep no session, so a login without showing the picker is impossible.
        if values.contains(&"none") {
            return Err(if values.len() == 1 {
                refuse("login_required", "this provider always asks who you are")
            } else {
                refuse(
                    "invalid_request",
                    "prompt=none cannot be combined with other values",
                )
            });
        }
    }
    // Every login here is fresh, so any `max_age` is satisfied; it only has to be well formed.
    if params
        .get("max_age")
        .is_some_and(|age| age.parse::<u64>().is_err())
    {
        return Err(refuse(
            "invalid_request",
            "max_age must be a number of seconds",
        ));
    }

    Ok(AuthRequest {
        client,
        redirect_uri,
        scope,
        state,
        nonce: params.get("nonce"),
        code_challenge,
        login_hint: params.get("login_hint"),
    })
}
