//! Shared by the integration tests that run the real `countersign` binary: a guard around a
//! running `countersign dev` sandbox, `countersign dev token`, and a small API client.
//!
//! Every wait is bounded, everything is on loopback, and the only process ever stopped is the
//! child this module started, by its PID: `kill -TERM <pid>` first (what Ctrl-C would do),
//! then [`std::process::Child::kill`] if it has not exited within [`STOP_TIMEOUT`].

#![allow(dead_code, reason = "each test binary uses its own subset")]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_countersign");

/// How long the sandbox may take to print its URL.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one short CLI run (`dev token`, `check-config`, `audit verify`) may take.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the sandbox may take to shut down after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one HTTP call may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `countersign dev`. Dropping it stops the process (by its PID) and reaps it, so a
/// failing test never leaves a sandbox behind.
pub struct Sandbox {
    child: Option<Child>,
    /// The sandbox's `TMPDIR`: its temporary database lands here, and goes with it even if the
    /// process had to be killed before cleaning up. Dropped after the process is stopped.
    tmp: tempfile::TempDir,
    /// The base URL from the banner, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    /// Everything the sandbox printed on stdout so far.
    stdout: Arc<Mutex<String>>,
    /// Everything the sandbox logged on stderr so far.
    stderr: Arc<Mutex<String>>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("pid", &self.child.as_ref().map(Child::id))
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Starts `countersign dev --port 0 <extra>` and waits (up to [`START_TIMEOUT`]) for the
    /// banner line that names `http://127.0.0.1:<port>`.
    pub fn start(extra: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("a temp dir for the sandbox");
        let mut child = Command::new(BIN)
            .args(["dev", "--port", "0"])
            .args(extra)
            // No overrides or CLI defaults from the environment of whoever runs the tests.
            .env_clear()
            .envs(clean_env())
            .env("COUNTERSIGN_LOG", "info,sqlx=warn")
            .env("TMPDIR", tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start `countersign dev`");
        let stdout_pipe = child.stdout.take().expect("stdout is piped");
        let stderr_pipe = child.stderr.take().expect("stderr is piped");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));

        // Both pipes are drained for the whole life of the process: a full pipe would block
        // the sandbox's logging, and so the sandbox.
        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        {
            let stdout = Arc::clone(&stdout);
            thread::spawn(move || {
                for line in BufReader::new(stdout_pipe).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(mut all) = stdout.lock() {
                        all.push_str(&line);
                        all.push('\n');
                    }
                    // The receiver is gone once the URL is found: keep draining anyway.
                    let _ = lines_tx.send(line);
                }
            });
        }
        {
            let stderr = Arc::clone(&stderr);
            thread::spawn(move || {
                let mut reader = BufReader::new(stderr_pipe);
                let mut buf = [0_u8; 8192];
                loop {
                    match reader.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if let Ok(mut all) = stderr.lock() {
                                all.push_str(&String::from_utf8_lossy(&buf[..n]));
                            }
                        }
                    }
                }
            });
        }

        let mut sandbox = Self {
            child: Some(child),
            tmp,
            url: String::new(),
            stdout,
            stderr,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = base_url_in(&line) {
                        sandbox.url = url;
                        return sandbox;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "`countersign dev` printed no http://127.0.0.1:<port> URL within {START_TIMEOUT:?}\n{}",
                    sandbox.output()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = sandbox.stop().map(|(status, _)| status);
                    panic!(
                        "`countersign dev` closed its stdout before printing its URL ({status:?})\n{}",
                        sandbox.output()
                    );
                }
            }
        }
    }

    /// The sandbox's PID.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What the sandbox printed so far, for failure messages.
    pub fn output(&self) -> String {
        let out = self.stdout.lock().map(|s| s.clone()).unwrap_or_default();
        let err = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
        format!("--- sandbox stdout ---\n{out}--- sandbox stderr ---\n{err}")
    }

    /// Stops the sandbox and waits for it to exit: SIGTERM to its PID, and SIGKILL if it is
    /// still running after [`STOP_TIMEOUT`]. Returns how it exited, and whether it had to be
    /// killed; `None` when it was already stopped.
    pub fn stop(&mut self) -> Option<(ExitStatus, bool)> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some((status, false));
        }
        let pid = child.id().to_string();
        let termed = Command::new("kill")
            .args(["-TERM", &pid])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if termed {
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                match child.try_wait() {
                    Ok(Some(status)) => return Some((status, false)),
                    Ok(None) => thread::sleep(Duration::from_millis(20)),
                    Err(_) => break,
                }
            }
        }
        // Fails only when it has already exited, which `wait` then reports.
        let _ = child.kill();
        child.wait().ok().map(|status| (status, true))
    }

    /// The sandbox's `TMPDIR`.
    pub fn tmp(&self) -> &Path {
        self.tmp.path()
    }

    /// `countersign dev token <user> --server <this sandbox>`: the bearer token.
    pub async fn token(&self, user: &str) -> String {
        let out = run_cli(&["dev", "token", user, "--server", &self.url], &[]).await;
        assert!(
            out.status.success(),
            "`countersign dev token {user}` failed ({:?}): {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.output()
        );
        let token = String::from_utf8(out.stdout)
            .expect("the token is UTF-8")
            .trim()
            .to_string();
        assert_eq!(
            token.split('.').count(),
            3,
            "`dev token {user}` should print one JWT and nothing else, got {token:?}"
        );
        token
    }

    /// An API client for this sandbox.
    pub fn api(&self) -> Api {
        Api {
            base: self.url.clone(),
            http: reqwest::Client::builder()
                .timeout(HTTP_TIMEOUT)
                .no_proxy()
                .build()
                .expect("cannot build the http client"),
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The test process's environment without any `COUNTERSIGN_…` variable (no configuration
/// overrides or CLI defaults leak in from whoever runs the tests) and without proxies (the
/// sandbox is on loopback).
pub fn clean_env() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| {
            let k = k.to_ascii_uppercase();
            !k.starts_with("COUNTERSIGN_") && !k.ends_with("_PROXY")
        })
        .collect()
}

/// `http://127.0.0.1:<port>` (no path, no trailing slash) if `line` names one.
fn base_url_in(line: &str) -> Option<String> {
    let start = line.find("http://127.0.0.1:")?;
    let rest = &line[start + "http://127.0.0.1:".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let port: u16 = digits.parse().ok()?;
    (port != 0).then(|| format!("http://127.0.0.1:{port}"))
}

/// Runs the binary with `args` (and extra environment `env`), bounded by [`CLI_TIMEOUT`]; the
/// child is killed if the wait is abandoned.
pub async fn run_cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(BIN);
    command
        .args(args)
        .env_clear()
        .envs(clean_env())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    match tokio::time::timeout(CLI_TIMEOUT, command.output()).await {
        Ok(out) => out.unwrap_or_else(|e| panic!("cannot run countersign {args:?}: {e}")),
        Err(_) => panic!("countersign {args:?} did not finish within {CLI_TIMEOUT:?}"),
    }
}

/// The blocking counterpart of [`run_cli`], for tests without a runtime. The child runs in its
/// own thread so the wait can be bounded; on a timeout it is killed by its PID.
pub fn run_cli_blocking(args: &[&str], env: &[(&str, &str)], cwd: Option<&Path>) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_clear()
        .envs(clean_env())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run countersign {args:?}: {e}"));
    let mut stdout_pipe = child.stdout.take().expect("stdout is piped");
    let mut stderr_pipe = child.stderr.take().expect("stderr is piped");
    let stdout = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout_pipe.read_to_end(&mut buf);
        buf
    });
    let stderr = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr_pipe.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + CLI_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("countersign {args:?} did not finish within {CLI_TIMEOUT:?}");
            }
            Err(e) => panic!("cannot wait for countersign {args:?}: {e}"),
        }
    };
    Output {
        status,
        stdout: stdout.join().expect("the stdout reader does not panic"),
        stderr: stderr.join().expect("the stderr reader does not panic"),
    }
}

/// An HTTP response: status and JSON body (`Value::Null` when the body is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

/// A minimal client for the sandbox's API.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        reply(req, path).await
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Reply {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(body);
        reply(req, path).await
    }

    /// `POST /api/v1/requests` for the README's `deploy-prod` example.
    pub async fn create_deploy_prod(&self, token: &str) -> Reply {
        self.post(
            "/api/v1/requests",
            token,
            &serde_json::json!({
                "gate": "deploy-prod",
                "params": {"service": "api", "version": "1.4.2"},
                "reason": "hotfix INC-42",
            }),
        )
        .await
    }

    /// `POST /api/v1/requests/{id}/approve` with the request's digest.
    pub async fn approve(&self, request: &Value, token: &str) -> Reply {
        let id = request["id"].as_str().expect("the request has an id");
        let digest = request["digest"]
            .as_str()
            .expect("the request has a digest");
        self.post(
            &format!("/api/v1/requests/{id}/approve"),
            token,
            &serde_json::json!({"digest": digest, "comment": "lgtm"}),
        )
        .await
    }
}

async fn reply(req: reqwest::RequestBuilder, path: &str) -> Reply {
    let response = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: the request failed: {e}"));
    let status = response.status().as_u16();
    let bytes = response
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("{path}: cannot read the body: {e}"));
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply { status, body }
}
