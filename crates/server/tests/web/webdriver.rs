//! A small W3C WebDriver client for the browser test: Debian's `chromedriver` driving headless
//! `chromium`, one fresh profile per session. Only what the test needs: navigate, find, click,
//! type, run a script, screenshot.

use std::io::Write as _;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const CHROMIUM: &str = "/usr/bin/chromium";

/// Where the tools come from, said when they are missing.
const INSTALL_HINT: &str = "the browser test needs Debian's Chromium and its WebDriver: \
     apt-get install -y chromium chromium-driver";

/// A running `chromedriver`, ended (by its pid) when dropped.
pub struct Driver {
    child: Child,
    pub base: String,
    http: reqwest::Client,
}

impl Driver {
    /// Starts chromedriver on a free port. Panics with an install hint when the tools are
    /// missing: a browser test that cannot run must fail, not pass.
    pub async fn start() -> Driver {
        let chromedriver = which("chromedriver")
            .unwrap_or_else(|| panic!("chromedriver is not installed: {INSTALL_HINT}"));
        assert!(
            std::path::Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is not installed: {INSTALL_HINT}"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start chromedriver ({e}): {INSTALL_HINT}"));
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        };
        for _ in 0..100 {
            if let Ok(r) = driver
                .http
                .get(format!("{}/status", driver.base))
                .send()
                .await
                && r.status().is_success()
            {
                return driver;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not answer on port {port}");
    }

    /// A new headless Chromium with a fresh profile (a separate browser: its own cookies).
    pub async fn session(&self, width: u32, height: u32) -> Session {
        let profile = tempfile::tempdir().unwrap();
        let args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            "--hide-scrollbars".into(),
            "--force-device-scale-factor=1".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let answer = self.call("POST", "/session", Some(caps)).await;
        let id = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_owned();
        Session {
            driver_base: self.base.clone(),
            http: self.http.clone(),
            id,
            _profile: profile,
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        call(&self.http, &self.base, method, path, body).await
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Only the process this test started, by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Value {
    let url = format!("{base}{path}");
    let request = match method {
        "GET" => http.get(url),
        "DELETE" => http.delete(url),
        _ => http.post(url).json(&body.unwrap_or_else(|| json!({}))),
    };
    let response = request.send().await.unwrap();
    let status = response.status();
    let value: Value = response.json().await.unwrap_or(Value::Null);
    assert!(
        status.is_success(),
        "webdriver {method} {path}: {status} {value}"
    );
    value["value"].clone()
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// One browser.
pub struct Session {
    driver_base: String,
    http: reqwest::Client,
    id: String,
    _profile: tempfile::TempDir,
}

impl Session {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        call(
            &self.http,
            &self.driver_base,
            method,
            &format!("/session/{}{path}", self.id),
            body,
        )
        .await
    }

    pub async fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url}))).await;
    }

    pub async fn url(&self) -> String {
        self.call("GET", "/url", None)
            .await
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    pub async fn execute(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    async fn find_now(&self, css: &str) -> Option<String> {
        let url = format!("{}/session/{}/element", self.driver_base, self.id);
        let response = self
            .http
            .post(url)
            .json(&json!({"using": "css selector", "value": css}))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let value: Value = response.json().await.ok()?;
        value["value"][ELEMENT].as_str().map(str::to_owned)
    }

    /// Waits up to `secs` for an element to be in the page.
    pub async fn wait_for(&self, css: &str, secs: u64) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(id) = self.find_now(css).await {
                return id;
            }
            if tokio::time::Instant::now() > deadline {
                let body = self
                    .execute("return document.body ? document.body.innerText : ''")
                    .await;
                panic!("no {css} after {secs}s at {}: {body}", self.url().await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `script` (an expression) is true.
    pub async fn wait_until(&self, script: &str, secs: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if self.execute(&format!("return !!({script});")).await == Value::Bool(true) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let body = self
                    .execute("return document.body ? document.body.innerText : ''")
                    .await;
                panic!(
                    "not true after {secs}s: {script} at {}: {body}",
                    self.url().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        let element = self.wait_for(css, 10).await;
        self.call("POST", &format!("/element/{element}/click"), None)
            .await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.wait_for(css, 10).await;
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    pub async fn text(&self, css: &str) -> String {
        let element = self.wait_for(css, 10).await;
        self.call("GET", &format!("/element/{element}/text"), None)
            .await
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// Saves a PNG of the whole page, `width` wide and as tall as its content, to `path`.
    pub async fn screenshot(&self, path: &std::path::Path, width: u32) {
        // Lay the page out at the width first; then make the window tall enough for all of it
        // (the window is taller than the viewport by the browser's own frame).
        self.resize(width, 900).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let measure = self
            .execute(
                "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight];",
            )
            .await;
        let content = measure[0].as_u64().unwrap_or(900) as u32;
        let frame = measure[1].as_u64().unwrap_or(0) as u32;
        self.resize(width, (content + frame).clamp(480, 6000)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let encoded = self.call("GET", "/screenshot", None).await;
        let png = STANDARD.decode(encoded.as_str().unwrap_or("")).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Session {
    /// Closes the browser even when the test panicked: a blocking `DELETE /session/{id}`.
    fn drop(&mut self) {
        let Some(authority) = self.driver_base.strip_prefix("http://") else {
            return;
        };
        if let Ok(mut stream) = TcpStream::connect(authority) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                stream,
                "DELETE /session/{} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.id
            );
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stream, &mut sink);
        }
    }
}
