//! The client side: what `countersign dev token USER` runs against a running dev provider.
//!
//! It uses only HTTP and the published metadata, exactly like a browser and a real client would,
//! so a token obtained here went through the same endpoints as a login in the web UI.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail, ensure};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::header::LOCATION;
use reqwest::redirect::Policy;
use serde::Deserialize;
use url::Url;

use crate::config::{CI_CLIENT_ID, CI_CLIENT_SECRET, CLI_CLIENT_ID, CLI_REDIRECT_URI};
use crate::html::unescape;
use crate::secrets::{pkce_s256, random_token};
use crate::users::{CI_USER, DemoUser, demo_users, find_demo_user};

/// What the token endpoint returned.
#[derive(Clone, Deserialize)]
pub struct Tokens {
    /// The access token (a JWT for the API audience).
    pub access_token: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// The ID token; `None` for the CI workload.
    pub id_token: Option<String>,
    /// The refresh token; `None` for the CI workload.
    pub refresh_token: Option<String>,
}

// Tokens are bearer credentials: keep them out of logs.
impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// The access token of a demo user (`alice`, `bob`, …) or of the demo CI workload (`ci`), from
/// the dev provider at `issuer` (e.g. `http://127.0.0.1:8080/dev-idp`).
///
/// For a user it drives the authorization-code flow with PKCE like a browser: GET `/authorize`,
/// read the user picker, POST the choice, take `code` from the redirect to the loopback redirect
/// URI, redeem it at `/token` as the public client `countersign-cli`. For `ci` it uses
/// client credentials with the `demo-ci` secret.
pub async fn token_for(issuer: &str, user: &str) -> anyhow::Result<String> {
    Ok(tokens_for(issuer, user).await?.access_token)
}

/// [`token_for`], returning the whole token response.
pub async fn tokens_for(issuer: &str, user: &str) -> anyhow::Result<Tokens> {
    let issuer = issuer.trim_end_matches('/');
    // Redirects are read, never followed: the last one points at a client that is not listening.
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .context("cannot build the http client")?;
    let metadata: Metadata =
        get_json(&http, &format!("{issuer}/.well-known/openid-configuration")).await?;
    ensure!(
        metadata.issuer == issuer,
        "the provider at {issuer} calls itself `{}`; use that as the issuer",
        metadata.issuer
    );
    if user == CI_USER {
        return workload_tokens(&http, &metadata).await;
    }
    let Some(user) = find_demo_user(user) else {
        let known: Vec<&str> = demo_users().iter().map(|u| u.username).collect();
        bail!(
            "unknown demo user `{user}`; choose one of {}, or `{CI_USER}`",
            known.join(", ")
        );
    };
    browser_login(&http, &metadata, user).await
}

#[derive(Debug, Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

async fn workload_tokens(http: &reqwest::Client, metadata: &Metadata) -> anyhow::Result<Tokens> {
    let response = http
        .post(&metadata.token_endpoint)
        .basic_auth(CI_CLIENT_ID, Some(CI_CLIENT_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .with_context(|| format!("cannot reach {}", metadata.token_endpoint))?;
    token_response(response).await
}

async fn browser_login(
    http: &reqwest::Client,
    metadata: &Metadata,
    user: &DemoUser,
) -> anyhow::Result<Tokens> {
    let verifier = random_token();
    let state = random_token();
    let nonce = random_token();
    let mut authorize = Url::parse(&metadata.authorization_endpoint).with_context(|| {
        format!(
            "bad authorization_endpoint `{}`",
            metadata.authorization_endpoint
        )
    })?;
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CLI_CLIENT_ID)
        .append_pair("redirect_uri", CLI_REDIRECT_URI)
        .append_pair("scope", "openid profile email groups offline_access")
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &pkce_s256(&verifier))
        .append_pair("code_challenge_method", "S256")
        .append_pair("login_hint", user.username);

    // 1. The user picker.
    let response = http
        .get(authorize.clone())
        .send()
        .await
        .with_context(|| format!("cannot reach {}", metadata.authorization_endpoint))?;
    if response.status().is_redirection() {
        let callback = location(&response)?;
        bail!(
            "the provider refused the login: {}",
            describe_error(&callback)
        );
    }
    let status = response.status();
    let page = response
        .text()
        .await
        .context("cannot read the sign-in page")?;
    ensure!(
        status.is_success(),
        "the sign-in page answered {status}: {}",
        page_message(&page)
    );
    let form = PickerForm::parse(&page)?;
    ensure!(
        form.users.iter().any(|u| u == user.username),
        "the sign-in page offers no button for `{}`",
        user.username
    );

    // 2. The button press.
    let action = authorize
        .join(&form.action)
        .context("bad form action on the sign-in page")?;
    let mut fields = form.hidden;
    fields.push(("user".to_owned(), user.username.to_owned()));
    let response = http
        .post(action)
        .form(&fields)
        .send()
        .await
        .context("cannot submit the sign-in form")?;
    if !response.status().is_redirection() {
        let status = response.status();
        let page = response.text().await.unwrap_or_default();
        bail!(
            "the sign-in form answered {status}: {}",
            page_message(&page)
        );
    }

    // 3. The redirect back to us (RFC 9207: check `iss` before trusting `code`).
    let callback = location(&response)?;
    let expected = Url::parse(CLI_REDIRECT_URI).context("bad cli redirect uri")?;
    ensure!(
        callback.host() == expected.host() && callback.path() == expected.path(),
        "the provider redirected to {callback}, not to our redirect uri"
    );
    let query: HashMap<String, String> = callback.query_pairs().into_owned().collect();
    if query.contains_key("error") {
        bail!(
            "the provider refused the login: {}",
            describe_error(&callback)
        );
    }
    ensure!(
        query.get("iss").map(String::as_str) == Some(metadata.issuer.as_str()),
        "the authorization response comes from another issuer"
    );
    ensure!(
        query.get("state") == Some(&state),
        "the authorization response has the wrong state"
    );
    let code = query
        .get("code")
        .ok_or_else(|| anyhow!("the authorization response has no code"))?;

    // 4. The code redemption.
    let response = http
        .post(&metadata.token_endpoint)
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", CLI_REDIRECT_URI),
            ("client_id", CLI_CLIENT_ID),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .with_context(|| format!("cannot reach {}", metadata.token_endpoint))?;
    let tokens = token_response(response).await?;
    let id_token = tokens
        .id_token
        .as_deref()
        .ok_or_else(|| anyhow!("the token response has no id_token"))?;
    check_id_token(http, metadata, id_token, &nonce).await?;
    Ok(tokens)
}

/// Verifies the ID token as a relying party would, so a broken provider fails here and not only
/// later in the server.
async fn check_id_token(
    http: &reqwest::Client,
    metadata: &Metadata,
    id_token: &str,
    nonce: &str,
) -> anyhow::Result<()> {
    let jwks: JwkSet = get_json(http, &metadata.jwks_uri).await?;
    let header = jsonwebtoken::decode_header(id_token).context("the id token is not a jwt")?;
    let kid = header
        .kid
        .ok_or_else(|| anyhow!("the id token has no kid"))?;
    let jwk = jwks
        .find(&kid)
        .ok_or_else(|| anyhow!("no key `{kid}` at {}", metadata.jwks_uri))?;
    let key = DecodingKey::from_jwk(jwk).context("unusable key in the jwks")?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[&metadata.issuer]);
    validation.set_audience(&[CLI_CLIENT_ID]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    #[derive(Deserialize)]
    struct Claims {
        nonce: Option<String>,
    }
    let data = jsonwebtoken::decode::<Claims>(id_token, &key, &validation)
        .context("the id token does not verify")?;
    ensure!(
        data.claims.nonce.as_deref() == Some(nonce),
        "the id token has the wrong nonce"
    );
    Ok(())
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> anyhow::Result<T> {
    let response = http
        .get(url)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    ensure!(status.is_success(), "{url} answered {status}");
    response
        .json()
        .await
        .with_context(|| format!("{url} did not return the expected json"))
}

async fn token_response(response: reqwest::Response) -> anyhow::Result<Tokens> {
    let status = response.status();
    if status.is_success() {
        return response
            .json()
            .await
            .context("the token response is not the expected json");
    }
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
        error_description: Option<String>,
    }
    match response.json::<ErrorBody>().await {
        Ok(body) => bail!(
            "the token endpoint refused ({status}): {}: {}",
            body.error,
            body.error_description.unwrap_or_default()
        ),
        Err(_) => bail!("the token endpoint answered {status}"),
    }
}

fn location(response: &reqwest::Response) -> anyhow::Result<Url> {
    let value = response
        .headers()
        .get(LOCATION)
        .ok_or_else(|| anyhow!("a redirect without a location"))?
        .to_str()
        .context("a redirect location that is not text")?;
    Url::parse(value).with_context(|| format!("a redirect to `{value}`, which is not a url"))
}

fn describe_error(callback: &Url) -> String {
    let query: HashMap<String, String> = callback.query_pairs().into_owned().collect();
    format!(
        "{}: {}",
        query.get("error").map_or("no error code", String::as_str),
        query.get("error_description").map_or("", String::as_str)
    )
}

/// The first paragraph of an HTML page, as text: enough to pass on an error page's message.
fn page_message(page: &str) -> String {
    let Some(start) = page.find("<p>") else {
        return "no message".to_owned();
    };
    let rest = &page[start + 3..];
    unescape(&rest[..rest.find("</p>").unwrap_or(rest.len())])
}

/// The user picker as a browser sees it: the form's action, its hidden fields, and the values of
/// its `user` buttons.
#[derive(Debug)]
struct PickerForm {
    action: String,
    hidden: Vec<(String, String)>,
    users: Vec<String>,
}

impl PickerForm {
    fn parse(page: &str) -> anyhow::Result<Self> {
        let form = tags(page, "form")
            .next()
            .ok_or_else(|| anyhow!("the sign-in page has no form"))?;
        let action = form.get("action").cloned().unwrap_or_default();
        let hidden = tags(page, "input")
            .filter(|input| {
                input
                    .get("type")
                    .is_some_and(|t| t.eq_ignore_ascii_case("hidden"))
            })
            .filter_map(|mut input| {
                Some((
                    input.remove("name")?,
                    input.remove("value").unwrap_or_default(),
                ))
            })
            .collect();
        let users = tags(page, "button")
            .filter(|button| button.get("name").is_some_and(|name| name == "user"))
            .filter_map(|mut button| button.remove("value"))
            .collect();
        Ok(Self {
            action,
            hidden,
            users,
        })
    }
}

/// The attributes of every `<name …>` start tag, values unescaped. Quoted values may contain
/// `>`, so the end of a tag is only looked for outside quotes.
fn tags<'a>(page: &'a str, name: &'a str) -> impl Iterator<Item = HashMap<String, String>> + 'a {
    let open = format!("<{name}");
    let mut rest = page;
    std::iter::from_fn(move || {
        loop {
            let start = rest.find(&open)?;
            let after = &rest[start + open.len()..];
            // `<form` must not match `<formula`.
            if !after.starts_with(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/') {
                rest = after;
                continue;
            }
            let (attributes, consumed) = attributes(after);
            rest = &after[consumed..];
            return Some(attributes);
        }
    })
}

/// Parses attributes up to the closing `>`; returns them and how many bytes were read.
fn attributes(tag: &str) -> (HashMap<String, String>, usize) {
    let bytes = tag.as_bytes();
    let mut map = HashMap::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'>' => return (map, i + 1),
            b if b.is_ascii_whitespace() || b == b'/' => i += 1,
            _ => {
                let name_start = i;
                while i < bytes.len() && !b" \t\r\n=>/".contains(&bytes[i]) {
                    i += 1;
                }
                let name = tag[name_start..i].to_ascii_lowercase();
                let mut value = String::new();
                if bytes.get(i) == Some(&b'=') {
                    i += 1;
                    match bytes.get(i) {
                        Some(&quote @ (b'"' | b'\'')) => {
                            let value_start = i + 1;
                            let len = tag[value_start..]
                                .find(quote as char)
                                .unwrap_or(tag.len() - value_start);
                            value = unescape(&tag[value_start..value_start + len]);
                            i = value_start + len + 1;
                        }
                        _ => {
                            let value_start = i;
                            while i < bytes.len()
                                && !bytes[i].is_ascii_whitespace()
                                && bytes[i] != b'>'
                            {
                                i += 1;
                            }
                            value = unescape(&tag[value_start..i]);
                        }
                    }
                }
                map.insert(name, value);
            }
        }
    }
    (map, bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_picker_form() {
        let page = r#"<form method="post" action="authorize">
            <input type="hidden" name="state" value="a&quot;>b">
            <input type=hidden name='nonce' value='n'>
            <input type="text" name="ignored" value="x">
            <button type="submit" name="user" value="alice" class="hint" autofocus><strong>A</strong></button>
            <button type="submit" name="user" value="bob">B</button>
            </form>"#;
        let form = PickerForm::parse(page).expect("a form");
        assert_eq!(form.action, "authorize");
        assert_eq!(
            form.hidden,
            vec![
                ("state".to_owned(), "a\">b".to_owned()),
                ("nonce".to_owned(), "n".to_owned())
            ]
        );
        assert_eq!(form.users, vec!["alice", "bob"]);
    }

    #[test]
    fn reads_an_error_page_message() {
        assert_eq!(
            page_message("<h1>x</h1><p>unknown client `a&amp;b`</p>"),
            "unknown client `a&b`"
        );
    }
}
