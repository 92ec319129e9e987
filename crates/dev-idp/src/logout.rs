//! `/logout`: RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).
//!
//! The provider keeps no browser session, so signing out means ending the refresh tokens of the
//! login named by `id_token_hint`, then going back to the client if it registered where.

use axum::extract::{RawForm, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use crate::html::{error_page, signed_out};
use crate::keys::ID_TOKEN_TYP;
use crate::params::Params;
use crate::provider::{Provider, Shared};
use crate::redirect;

#[derive(Debug, Deserialize)]
struct HintClaims {
    aud: String,
    sid: Option<String>,
}

/// GET `/logout`.
pub(crate) async fn logout_query(
    State(provider): State<Shared>,
    RawQuery(query): RawQuery,
) -> Response {
    end_session(&provider, query.unwrap_or_default().as_bytes())
}

/// POST `/logout` (the spec allows a form post too).
pub(crate) async fn logout_form(
    State(provider): State<Shared>,
    RawForm(form): RawForm,
) -> Response {
    end_session(&provider, &form)
}

fn end_session(provider: &Provider, input: &[u8]) -> Response {
    let params = match Params::parse(input) {
        Ok(params) => params,
        Err(problem) => return error_page(StatusCode::BAD_REQUEST, &problem),
    };
    // An expired ID token is still a fine hint: logging out usually happens after it expired.
    let hint = match params.get("id_token_hint").map(|token| {
        provider
            .key
            .verify::<HintClaims>(token, ID_TOKEN_TYP, &provider.config.issuer, None, false)
    }) {
        None => None,
        Some(Ok(data)) => Some(data.claims),
        Some(Err(_)) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "id_token_hint is not an id token issued by this provider",
            );
        }
    };
    let client_id = match (params.get("client_id"), &hint) {
        (Some(id), Some(hint)) if id != hint.aud => {
            return error_page(
                StatusCode::BAD_REQUEST,
                &format!("client_id `{id}` differs from the audience of id_token_hint"),
            );
        }
        (Some(id), _) => Some(id),
        (None, hint) => hint.as_ref().map(|hint| hint.aud.as_str()),
    };
    if let Some(sid) = hint.as_ref().and_then(|hint| hint.sid.as_deref()) {
        provider.store.end_session(sid);
    }

    let Some(uri) = params.get("post_logout_redirect_uri") else {
        return signed_out(None);
    };
    let registered = client_id
        .and_then(|id| provider.config.client(id))
        .is_some_and(|client| redirect::matches_any(&client.post_logout_redirect_uris, uri));
    if registered {
        redirect::see_other(uri, &[("state", params.get("state"))])
    } else {
        // Never redirect to an address no client registered: that would be an open redirect.
        signed_out(Some(&format!(
            "Not returning to {uri}: it is not a registered post-logout address of the client."
        )))
    }
}
