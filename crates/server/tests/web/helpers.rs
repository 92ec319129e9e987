//! `spawn_web()`: an app on port 0 with two sign-in issuers — a real panva `oidc-provider`
//! (`idp`) and the misbehaving stub (`stub`) — the demo gates, a fresh SQLite database and a
//! `ManualClock`; and `Browser`, a cookie-keeping HTTP client that plays a person's browser.

use std::sync::Arc;

use countersign_config::DEMO_GATES;
use countersign_core::ports::ManualClock;
use countersign_core::{Clock, Engine};
use countersign_testkit::OidcProvider;
use reqwest::StatusCode;
use reqwest::cookie::CookieStore as _;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use crate::stub::{self, StubOp};

/// A running app.
pub struct WebApp {
    pub base: String,
    pub provider: OidcProvider,
    pub stub: StubOp,
    pub clock: Arc<ManualClock>,
    pub engine: Engine,
    pub state: countersign_server::state::AppState,
    _dir: tempfile::TempDir,
}

/// Options of [`spawn_with`].
#[derive(Default)]
pub struct Options {
    /// More `[server]` keys.
    pub server: &'static str,
    /// The public URL instead of `http://127.0.0.1:PORT`.
    pub public_url: Option<&'static str>,
}

fn config(base: &str, port: u16, provider: &str, stub: &str, db: &str, server: &str) -> String {
    format!(
        r#"
[server]
public_url = "{base}"
listen = "127.0.0.1:{port}"
database = "{db}"
audit_readers = '"admin" in principal.groups'
key_encryption_key = "Y291bnRlcnNpZ24gd2ViIHRlc3RzIG9ubHkga2V5ISE="
{server}

[[issuers]]
name = "idp"
url = "{provider}"
client_id = "countersign-web"
client_secret = "web-secret"
scopes = ["openid", "profile", "email", "groups"]
audiences = ["api://countersign"]
groups_claim = "groups"

[[issuers]]
name = "stub"
url = "{stub}"
client_id = "{stub_client}"
client_secret = "{stub_secret}"
audiences = ["stub-api"]
algorithms = ["ES256"]
groups_claim = "groups"

{DEMO_GATES}
"#,
        stub_client = stub::CLIENT_ID,
        stub_secret = stub::CLIENT_SECRET,
    )
}

pub async fn spawn_web() -> WebApp {
    spawn_with(Options::default()).await
}

pub async fn spawn_with(options: Options) -> WebApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let local = format!("http://127.0.0.1:{port}");
    let base = options.public_url.map_or(local.clone(), str::to_owned);
    let clock = Arc::new(ManualClock::new(countersign_server::SystemClock.now()));
    let (provider, stub) = tokio::join!(
        OidcProvider::start_with(json!({
            "redirect_uris": [format!("{base}/auth/callback")],
            "post_logout_redirect_uris": [format!("{base}/login")],
            "backchannel_logout_uri": format!("{local}/auth/backchannel-logout"),
            "web_client": {"require_auth_time": true},
        })),
        StubOp::start(clock.clone()),
    );
    let provider = provider.expect("the test provider starts");
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("web.db").display());
    let text = config(
        &base,
        port,
        provider.issuer(),
        stub.issuer(),
        &db,
        options.server,
    );
    let settings =
        countersign_config::load_str(&text, "web.toml", &countersign_config::Env::empty())
            .unwrap_or_else(|e| panic!("{e}"));
    let app = countersign_server::Application::build(
        settings,
        countersign_server::BuildOptions {
            clock: clock.clone(),
            listener: Some(listener),
            sweep_every: None,
            deliver_every: None,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let engine = app.state().engine.clone();
    let state = app.state().clone();
    app.spawn();
    WebApp {
        base: local,
        provider,
        stub,
        clock,
        engine,
        state,
        _dir: dir,
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    }

    /// The value of the first `name="csrf"` hidden input.
    pub fn csrf(&self) -> String {
        self.input("csrf").expect("the page has a csrf field")
    }

    /// The value of the first hidden input named `name`.
    pub fn input(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let at = self.body.find(&marker)? + marker.len();
        let len = self.body[at..].find('"')?;
        Some(
            self.body[at..at + len]
                .replace("&#43;", "+")
                .replace("&#x2b;", "+"),
        )
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// A person's browser: its own cookie jar, redirects not followed.
pub struct Browser {
    pub http: reqwest::Client,
    pub jar: Arc<reqwest::cookie::Jar>,
    pub base: String,
}

impl Browser {
    pub fn new(app: &WebApp) -> Self {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .unwrap();
        Self {
            http,
            jar,
            base: app.base.clone(),
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    async fn read(response: reqwest::Response) -> Page {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap();
        Page {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Page {
        Self::read(
            self.http
                .get(self.url(path))
                .header("accept", "text/html")
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// A same-origin form post, as a browser sends it.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.post_with(path, fields, &[("origin", self.base.as_str())])
            .await
    }

    pub async fn post_with(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let mut request = self.http.post(self.url(path)).form(fields);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        Self::read(request.send().await.unwrap()).await
    }

    /// The value of cookie `name` for the app.
    pub fn cookie(&self, name: &str) -> Option<String> {
        let url: url::Url = self.base.parse().unwrap();
        let header = self.jar.cookies(&url)?;
        header
            .to_str()
            .ok()?
            .split("; ")
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    }

    /// Puts a cookie in the jar, as an attacker who planted it would.
    pub fn plant(&self, name: &str, value: &str) {
        let url: url::Url = self.base.parse().unwrap();
        self.jar
            .add_cookie_str(&format!("{name}={value}; Path=/"), &url);
    }

    /// Starts a sign-in at `issuer` and returns the provider's authorization URL.
    pub async fn start_sign_in(&self, issuer: &str, return_to: Option<&str>) -> String {
        let mut path = format!("/login?issuer={issuer}");
        if let Some(r) = return_to {
            path.push_str("&return_to=");
            path.push_str(&url::form_urlencoded::byte_serialize(r.as_bytes()).collect::<String>());
        }
        let page = self.get(&path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        page.location().to_owned()
    }

    /// The provider's redirect back to the app (not yet followed), for `user`.
    pub async fn authorize(&self, app: &WebApp, authorization_url: &str, user: &str) -> String {
        if authorization_url.starts_with(app.stub.issuer()) {
            let page = self.get(authorization_url).await;
            assert!(page.status.is_redirection(), "{}", page.body);
            return page.location().to_owned();
        }
        app.provider
            .sign_in(
                &self.http,
                authorization_url,
                user,
                &format!("{}/auth/callback", self.base),
            )
            .await
            .unwrap()
            .to_string()
    }

    /// Signs `user` in at `issuer` and follows the callback; returns the callback's answer.
    pub async fn sign_in(&self, app: &WebApp, issuer: &str, user: &str) -> Page {
        let start = self.start_sign_in(issuer, None).await;
        let callback = self.authorize(app, &start, user).await;
        let page = self.get(&callback).await;
        assert_eq!(
            page.status,
            StatusCode::SEE_OTHER,
            "sign-in failed: {}",
            page.body
        );
        page
    }

    /// Whether this browser has a live session: `/` answers the inbox, not a redirect.
    pub async fn signed_in(&self) -> bool {
        let page = self.get("/").await;
        match page.status {
            StatusCode::OK => true,
            StatusCode::SEE_OTHER => {
                assert!(page.location().starts_with("/login"), "{}", page.location());
                false
            }
            other => panic!("unexpected {other}: {}", page.body),
        }
    }
}

/// Audit events with this action (the engine's store, unfiltered).
pub async fn audit_actions(app: &WebApp) -> Vec<Value> {
    let events = app
        .engine
        .store()
        .audit_events(&countersign_core::ports::AuditQuery {
            request_id: None,
            after_seq: 0,
            limit: 10_000,
        })
        .await
        .unwrap();
    events
        .iter()
        .map(|e| json!({"action": e.action, "detail": e.detail, "actor": e.actor.subject}))
        .collect()
}

/// Whether some `auth.failed` event carries `reason`.
pub async fn refused_with(app: &WebApp, reason: &str) -> bool {
    audit_actions(app)
        .await
        .iter()
        .any(|e| e["action"] == "auth.failed" && e["detail"]["reason"] == reason)
}

/// How many sessions the store holds for `subject` (by trying the issuer's delete on a copy
/// is not possible; count through a fresh browser's view instead).
pub async fn session_of(
    app: &WebApp,
    browser: &Browser,
) -> Option<countersign_core::ports::WebSession> {
    let cookie = browser.cookie("countersign")?;
    app.state
        .sessions
        .store()
        .get_session(&countersign_server::session::cookies::hash(&cookie))
        .await
        .unwrap()
}
