//! Sign-in in a browser with the authorization code flow, PKCE (S256) and a loopback redirect
//! (RFC 8252 §7.3): a one-shot listener on `127.0.0.1` and an ephemeral port receives the
//! redirect, checks `state` (and the issuer, RFC 9207), and the code is exchanged with the
//! verifier only this process knows.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::Html;
use tokio::sync::{mpsc, oneshot};

use super::browser;
use super::oauth::{self, IssuerInfo, Metadata, TokenResponse};
use crate::failure::Failure;
use crate::output;

/// How long the user has to finish signing in.
const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(300);

type Callback = HashMap<String, String>;

/// Runs the flow: prints the URL to open (and opens it when allowed), waits for the redirect,
/// exchanges the code.
pub async fn sign_in(
    http: &reqwest::Client,
    info: &IssuerInfo,
    metadata: &Metadata,
    client_id: &str,
    open_browser: bool,
) -> Result<TokenResponse, Failure> {
    let Some(authorization_endpoint) = &metadata.authorization_endpoint else {
        return Err(Failure::error(format!(
            "the identity provider {} offers neither a device flow nor a browser sign-in",
            info.issuer
        )));
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| Failure::error(format!("cannot listen on 127.0.0.1 for the sign-in: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| Failure::error(format!("cannot listen on 127.0.0.1 for the sign-in: {e}")))?
        .port();
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");

    let verifier = oauth::random_string();
    let state = oauth::random_string();
    let scope = oauth::scopes(info, metadata);
    let mut url = url::Url::parse(authorization_endpoint).map_err(|_| {
        Failure::error(format!(
            "the identity provider's authorization endpoint is not a URL: {authorization_endpoint}"
        ))
    })?;
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("scope", &scope)
            .append_pair("state", &state)
            .append_pair("code_challenge", &oauth::pkce_challenge(&verifier))
            .append_pair("code_challenge_method", "S256");
        if let Some(resource) = oauth::resource(info) {
            query.append_pair("resource", resource);
        }
    }

    // The listener answers every request to /callback, and hands the first one whose state
    // matches to us (others, e.g. a stale tab, get an error page and are ignored).
    let (tx, mut rx) = mpsc::channel::<Callback>(1);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let app = axum::Router::new()
        .route("/callback", axum::routing::get(callback))
        .with_state((tx, state.clone()));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await;
    });

    output::note(&format!(
        "To sign in to {}, open this URL in a browser on this machine:",
        info.name
    ));
    output::note(&format!("  {url}"));
    if open_browser {
        browser::open(url.as_str());
    }
    output::note("Waiting for the sign-in to finish…");

    let received = tokio::time::timeout(SIGN_IN_TIMEOUT, rx.recv()).await;
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    let params = match received {
        Ok(Some(params)) => params,
        Ok(None) | Err(_) => {
            return Err(Failure::denied(
                "the browser sign-in did not finish within 5 minutes; run `countersign login` to try again",
            ));
        }
    };

    if let Some(error) = params.get("error") {
        let detail = params
            .get("error_description")
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        return Err(Failure::denied(format!(
            "the identity provider refused the sign-in ({error}{detail}); run `countersign login` to try again"
        )));
    }
    match params.get("iss") {
        Some(iss) if iss != &info.issuer => {
            return Err(Failure::denied(format!(
                "the sign-in came back from '{iss}', not from {}; nothing was saved",
                info.issuer
            )));
        }
        None if metadata.authorization_response_iss_parameter_supported => {
            return Err(Failure::denied(
                "the sign-in came back without the issuer's name (RFC 9207); nothing was saved",
            ));
        }
        _ => {}
    }
    let Some(code) = params.get("code") else {
        return Err(Failure::denied(
            "the sign-in came back without a code; run `countersign login` to try again",
        ));
    };

    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect_uri.as_str()),
        ("client_id", client_id),
        ("code_verifier", verifier.as_str()),
    ];
    if let Some(resource) = oauth::resource(info) {
        form.push(("resource", resource));
    }
    oauth::post_form(http, &metadata.token_endpoint, &form)
        .await
        .map_err(|e| {
            Failure::denied(format!(
                "the identity provider did not exchange the sign-in code: {}; run `countersign login` to try again",
                e.describe()
            ))
        })
}

/// The pages the browser sees; constant, so nothing from the request is echoed back.
const SIGNED_IN: &str = "<!doctype html><meta charset=utf-8><title>countersign</title><p>Signed in. You can close this tab and go back to the terminal.</p>";
const FAILED: &str = "<!doctype html><meta charset=utf-8><title>countersign</title><p>The sign-in did not succeed. You can close this tab; the terminal says why.</p>";
const STALE: &str = "<!doctype html><meta charset=utf-8><title>countersign</title><p>This sign-in link is stale or was not started by this countersign login. Nothing happened.</p>";

async fn callback(
    State((tx, expected)): State<(mpsc::Sender<Callback>, String)>,
    Query(params): Query<Callback>,
) -> Html<&'static str> {
    if params.get("state") != Some(&expected) {
        return Html(STALE);
    }
    let failed = params.contains_key("error");
    // Only the first one counts; later ones find the channel full or closed.
    let _ = tx.try_send(params);
    Html(if failed { FAILED } else { SIGNED_IN })
}
