//! Scripted OAuth flows against the test provider: a browser login (authorization code + PKCE,
//! through the devInteractions forms), a device-flow approval and the client-credentials grant.

use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Client, Response, StatusCode, redirect};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use url::Url;

/// How many redirects and form posts a flow may take (a login takes seven).
const MAX_STEPS: usize = 20;

/// The token response of a login.
#[derive(Debug, Clone, Deserialize)]
pub struct Tokens {
    /// A JWT (`typ: at+jwt`) for the API audience.
    pub access_token: String,
    /// The ID token, with the claims of the `profile`, `email` and `groups` scopes.
    pub id_token: String,
    /// Issued to every client allowed the `refresh_token` grant.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Lifetime of the access token in seconds.
    pub expires_in: u64,
}

/// The parameters of one browser login.
#[derive(Debug)]
pub(crate) struct BrowserLogin<'a> {
    pub(crate) issuer: &'a str,
    pub(crate) client_id: &'a str,
    pub(crate) client_secret: Option<&'a str>,
    pub(crate) redirect_uri: &'a str,
    pub(crate) scope: &'a str,
    pub(crate) resource: &'a str,
    pub(crate) user: &'a str,
}

/// A fresh "browser": its own cookie jar, no automatic redirects, no proxy (everything is on
/// 127.0.0.1). A client per call, as connection pools are tied to the runtime that made them.
fn browser() -> anyhow::Result<Client> {
    Client::builder()
        .cookie_store(true)
        .redirect(redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .context("cannot build an HTTP client")
}

fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// Logs `user` in: GET /auth, fill in the login form, then the consent form, follow the
/// redirects to the client's redirect URI, and exchange the code at the token endpoint.
pub(crate) async fn authorization_code(login: &BrowserLogin<'_>) -> anyhow::Result<Tokens> {
    let http = browser()?;
    let verifier = random_token();
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let state = random_token();
    let nonce = random_token();

    let mut url = Url::parse(&format!("{}/auth", login.issuer))
        .with_context(|| format!("invalid issuer {}", login.issuer))?;
    url.query_pairs_mut()
        .append_pair("client_id", login.client_id)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", login.redirect_uri)
        .append_pair("scope", login.scope)
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("resource", login.resource)
        // offline_access is only granted with an explicit consent prompt.
        .append_pair("prompt", "consent");

    let callback = match drive(&http, url, login.user, |next| {
        next.as_str().starts_with(login.redirect_uri)
    })
    .await?
    {
        Outcome::Redirected(callback) => callback,
        Outcome::Done => bail!(
            "the provider showed its success page instead of redirecting to {}",
            login.redirect_uri
        ),
    };

    let params: Vec<(String, String)> = callback.query_pairs().into_owned().collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    if let Some(error) = param("error") {
        bail!(
            "the provider redirected with error {error}: {}",
            param("error_description").unwrap_or("")
        );
    }
    ensure!(
        param("state") == Some(state.as_str()),
        "the callback's state does not match: {callback}"
    );
    ensure!(
        param("iss") == Some(login.issuer),
        "the callback's iss is not {}: {callback}",
        login.issuer
    );
    let code = param("code").with_context(|| format!("the callback has no code: {callback}"))?;

    let mut request = http.post(format!("{}/token", login.issuer));
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", login.redirect_uri),
        ("code_verifier", verifier.as_str()),
        ("resource", login.resource),
    ];
    match login.client_secret {
        Some(secret) => request = request.basic_auth(login.client_id, Some(secret)),
        None => form.push(("client_id", login.client_id)),
    }
    let tokens: Tokens = token_response(request.form(&form).send().await?).await?;

    let claims = jwt_payload(&tokens.id_token).context("the ID token is not a JWT")?;
    ensure!(
        claims.get("nonce").and_then(Value::as_str) == Some(nonce.as_str()),
        "the ID token's nonce does not match"
    );
    Ok(tokens)
}

/// Plays the browser's part of an authorization-code login that a client started (the
/// countersign CLI's loopback + PKCE login): opens `authorization_url`, logs `user` in and
/// consents, then follows the redirect to the client's `redirect_uri` as a browser would, so
/// the client receives the code. Returns the page the client's redirect URI answered with.
pub(crate) async fn complete_authorization(
    issuer: &str,
    authorization_url: &str,
    user: &str,
) -> anyhow::Result<String> {
    let url =
        Url::parse(authorization_url).with_context(|| format!("not a URL: {authorization_url}"))?;
    ensure!(
        url.as_str().starts_with(issuer),
        "{authorization_url} is not an authorization URL of {issuer}"
    );
    let redirect_uri = url
        .query_pairs()
        .find(|(key, _)| key == "redirect_uri")
        .map(|(_, value)| value.into_owned())
        .context("the authorization URL has no redirect_uri")?;
    let http = browser()?;
    let callback = match drive(&http, url, user, |next| {
        next.as_str().starts_with(&redirect_uri)
    })
    .await?
    {
        Outcome::Redirected(callback) => callback,
        Outcome::Done => {
            bail!("the provider showed its success page instead of redirecting to {redirect_uri}")
        }
    };
    let response = http.get(callback).send().await?;
    let status = response.status();
    let page = response.text().await?;
    ensure!(
        status.is_success(),
        "the client's redirect URI {redirect_uri} answered {status}: {page}"
    );
    Ok(page)
}

/// Approves a device authorization (RFC 8628) as `user`: opens the verification page for
/// `user_code`, confirms it, and goes through the login and consent forms.
pub(crate) async fn approve_device(
    issuer: &str,
    user_code: &str,
    user: &str,
) -> anyhow::Result<()> {
    let mut url = Url::parse(&format!("{issuer}/device"))
        .with_context(|| format!("invalid issuer {issuer}"))?;
    url.query_pairs_mut().append_pair("user_code", user_code);
    match drive(&browser()?, url, user, |_| false).await? {
        Outcome::Done => Ok(()),
        Outcome::Redirected(url) => bail!("unexpected redirect to {url}"),
    }
}

/// Where [`drive`] stopped.
#[derive(Debug)]
enum Outcome {
    /// At a redirect `stop` accepted (not followed).
    Redirected(Url),
    /// At the device flow's success page.
    Done,
}

/// Follows redirects and submits the provider's forms the way a user would: the login form with
/// `user` (any password), the consent form, the device flow's confirmation form; until a
/// redirect that `stop` accepts, or the device flow's success page.
async fn drive(
    http: &Client,
    start: Url,
    user: &str,
    stop: impl Fn(&Url) -> bool,
) -> anyhow::Result<Outcome> {
    let mut url = start;
    let mut response = http.get(url.clone()).send().await?;
    for _ in 0..MAX_STEPS {
        if response.status().is_redirection() {
            let next = location(&url, &response)?;
            if stop(&next) {
                return Ok(Outcome::Redirected(next));
            }
            response = http.get(next.clone()).send().await?;
            url = next;
            continue;
        }
        let status = response.status();
        let page = response.text().await?;
        if status != StatusCode::OK {
            bail!("{url} answered {status}: {}", page_error(&page));
        }
        if page.contains("Sign-in Success") {
            return Ok(Outcome::Done);
        }
        let Some(Form { action, mut fields }) = form(&page) else {
            bail!(
                "{url} answered a page without a form: {}",
                page_error(&page)
            );
        };
        let prompt = fields
            .iter()
            .find(|(name, _)| name == "prompt")
            .map(|(_, value)| value.clone());
        if prompt.as_deref() == Some("login") {
            fields.retain(|(name, _)| name != "login" && name != "password");
            fields.push(("login".to_owned(), user.to_owned()));
            fields.push(("password".to_owned(), "any".to_owned()));
        }
        let action = match action {
            Some(action) => url.join(&action)?,
            None => url.clone(),
        };
        response = http.post(action.clone()).form(&fields).send().await?;
        url = action;
    }
    bail!("the provider still had more pages after {MAX_STEPS} steps, at {url}")
}

/// The client-credentials grant with `resource` and `scope`; returns the access token.
pub(crate) async fn client_credentials(
    issuer: &str,
    client_id: &str,
    client_secret: &str,
    resource: &str,
    scope: &str,
) -> anyhow::Result<String> {
    #[derive(Deserialize)]
    struct Response {
        access_token: String,
    }
    let response = browser()?
        .post(format!("{issuer}/token"))
        .basic_auth(client_id, Some(client_secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", resource),
            ("scope", scope),
        ])
        .send()
        .await?;
    let body: Response = token_response(response).await?;
    Ok(body.access_token)
}

async fn token_response<T: for<'de> Deserialize<'de>>(response: Response) -> anyhow::Result<T> {
    let status = response.status();
    let body = response.text().await?;
    if !status.is_success() {
        bail!("the token endpoint answered {status}: {body}");
    }
    serde_json::from_str(&body)
        .with_context(|| format!("unexpected token endpoint response: {body}"))
}

/// The claims of a JWT, not verified: tests check what the provider put in.
fn jwt_payload(token: &str) -> anyhow::Result<Value> {
    let payload = token.split('.').nth(1).context("no payload part")?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .context("the payload is not base64url")?;
    serde_json::from_slice(&bytes).context("the payload is not JSON")
}

fn location(base: &Url, response: &Response) -> anyhow::Result<Url> {
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .with_context(|| {
            format!(
                "{} redirect from {base} without a location",
                response.status()
            )
        })?
        .to_str()
        .context("a location header that is not text")?;
    base.join(location)
        .with_context(|| format!("invalid location {location}"))
}

/// A page's form: where it posts to and its named inputs with their values.
#[derive(Debug)]
struct Form {
    action: Option<String>,
    fields: Vec<(String, String)>,
}

/// The first form of the page.
fn form(page: &str) -> Option<Form> {
    let start = page.find("<form")?;
    let page = &page[start..];
    let end = page.find("</form>").unwrap_or(page.len());
    let body = &page[..end];
    let action = attribute(&body[..body.find('>')?], "action");
    let mut fields = Vec::new();
    let mut rest = body;
    while let Some(at) = rest.find("<input") {
        rest = &rest[at..];
        let tag_end = rest.find('>')?;
        let tag = &rest[..tag_end];
        if let Some(name) = attribute(tag, "name") {
            fields.push((name, attribute(tag, "value").unwrap_or_default()));
        }
        rest = &rest[tag_end..];
    }
    Some(Form { action, fields })
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let marker = format!(" {name}=\"");
    let start = tag.find(&marker)? + marker.len();
    let len = tag[start..].find('"')?;
    Some(tag[start..start + len].replace("&amp;", "&"))
}

/// The error text of an oidc-provider page (its `<pre>` block), or the start of the page.
fn page_error(page: &str) -> String {
    let between = |open: &str, close: &str| {
        let start = page.find(open)? + open.len();
        let len = page[start..].find(close)?;
        Some(page[start..start + len].trim().to_owned())
    };
    between("<pre>", "</pre>").unwrap_or_else(|| page.chars().take(500).collect())
}

/// Plays the user's part of a sign-in that a relying party started: from `start` (the
/// authorization URL the relying party redirected the browser to), logs `user` in and consents
/// as needed, and returns the redirect back to the relying party (the first redirect whose URL
/// starts with `redirect_prefix`) without following it. `http` is the "browser": it must keep
/// cookies and not follow redirects.
pub(crate) async fn sign_in(
    http: &Client,
    start: &str,
    user: &str,
    redirect_prefix: &str,
) -> anyhow::Result<Url> {
    let start = Url::parse(start).with_context(|| format!("invalid authorization url {start}"))?;
    match drive(http, start, user, |next| {
        next.as_str().starts_with(redirect_prefix)
    })
    .await?
    {
        Outcome::Redirected(url) => Ok(url),
        Outcome::Done => bail!("the provider did not redirect back to {redirect_prefix}"),
    }
}

/// Where an end-session request ended.
#[derive(Debug)]
pub enum EndSession {
    /// The provider redirected to this address (a `post_logout_redirect_uri`), not followed.
    Redirected(Url),
    /// The provider showed its own "signed out" page.
    SignedOut,
}

/// Signs the browser `http` out at the provider: opens `start` (the provider's end-session
/// endpoint, with or without `id_token_hint`), answers "yes, sign me out", and stops at the
/// first redirect away from the provider. The provider then sends its back-channel logout
/// tokens.
pub(crate) async fn end_session(
    http: &Client,
    issuer: &str,
    start: &str,
) -> anyhow::Result<EndSession> {
    let mut url = Url::parse(start).with_context(|| format!("invalid end-session url {start}"))?;
    let mut response = http.get(url.clone()).send().await?;
    for _ in 0..MAX_STEPS {
        if response.status().is_redirection() {
            let next = location(&url, &response)?;
            if !next.as_str().starts_with(issuer) {
                return Ok(EndSession::Redirected(next));
            }
            response = http.get(next.clone()).send().await?;
            url = next;
            continue;
        }
        let status = response.status();
        let page = response.text().await?;
        if status != StatusCode::OK {
            bail!("{url} answered {status}: {}", page_error(&page));
        }
        if page.contains("Sign-out Success") || page.contains("signed out") {
            return Ok(EndSession::SignedOut);
        }
        let Some(Form { action, mut fields }) = form(&page) else {
            bail!(
                "{url} answered a page without a form: {}",
                page_error(&page)
            );
        };
        fields.push(("logout".to_owned(), "yes".to_owned()));
        let action = match action {
            Some(action) => url.join(&action)?,
            None => url.clone(),
        };
        response = http.post(action.clone()).form(&fields).send().await?;
        url = action;
    }
    bail!("the provider still had more pages after {MAX_STEPS} steps, at {url}")
}
