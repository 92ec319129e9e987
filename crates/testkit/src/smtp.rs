//! A real SMTP server: aiosmtpd (Python) with STARTTLS required and AUTH checked, or without
//! TLS at all, storing what it receives in a Maildir and as parsed JSON lines.

use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use serde_json::Value;

use crate::child::{OutputLog, drain};

/// How long the server may take to make its certificates and start.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What to install when the server cannot start.
const INSTALL: &str = "pip install -r crates/testkit/verifiers/requirements.txt";

/// A running aiosmtpd on 127.0.0.1 (`smtp/smtp_server.py`); killed, by its PID, when dropped.
///
/// [`SmtpServer::start`]: STARTTLS required before anything else (a certificate for
/// `localhost` and `127.0.0.1` from a throwaway CA, [`SmtpServer::ca_pem`]), AUTH PLAIN/LOGIN
/// only after STARTTLS, checked against the user and password given, and required before
/// MAIL. [`SmtpServer::start_without_tls`]: no STARTTLS, no AUTH.
#[derive(Debug)]
pub struct SmtpServer {
    child: Child,
    port: u16,
    ca_pem: Option<String>,
    dir: tempfile::TempDir,
    output: OutputLog,
}

impl SmtpServer {
    /// Starts a server that requires STARTTLS and AUTH as `user` / `password`.
    pub fn start(user: &str, password: &str) -> anyhow::Result<Self> {
        Self::spawn(&["--user", user, "--password", password])
    }

    /// Starts a server that offers neither STARTTLS nor AUTH.
    pub fn start_without_tls() -> anyhow::Result<Self> {
        Self::spawn(&["--no-tls"])
    }

    fn spawn(extra: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("cannot make a folder for the smtp server")?;
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("smtp/smtp_server.py");
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(&python)
            .arg(&script)
            .arg("--dir")
            .arg(dir.path())
            .args(extra)
            // The server exits when this pipe closes, i.e. when the test process is gone.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {python} for the smtp server; then {INSTALL}"))?;
        let output = OutputLog::default();
        let (ready_tx, ready_rx) = mpsc::channel();
        let stdout = child
            .stdout
            .take()
            .context("the smtp server has no stdout")?;
        let stderr = child
            .stderr
            .take()
            .context("the smtp server has no stderr")?;
        drain(stdout, output.clone(), Some(ready_tx));
        let stderr_reader = drain(stderr, output.clone(), None);
        let mut server = SmtpServer {
            child,
            port: 0,
            ca_pem: None,
            dir,
            output,
        };
        match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => {
                let ready: Value = serde_json::from_str(&line).map_err(|e| {
                    anyhow!("the smtp server's ready line is not JSON ({e}): {line}")
                })?;
                server.port = ready["port"]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or_else(|| anyhow!("the smtp server named no port: {line}"))?;
                if let Some(path) = ready["ca_pem"].as_str() {
                    server.ca_pem = Some(
                        std::fs::read_to_string(path)
                            .with_context(|| format!("cannot read the smtp server's CA {path}"))?,
                    );
                }
                Ok(server)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = server.child.wait().ok();
                let _ = stderr_reader.join();
                bail!(
                    "the smtp server exited before it was ready ({}; is aiosmtpd installed? {INSTALL}):\n{}",
                    status.map_or_else(|| "unknown status".to_owned(), |s| s.to_string()),
                    server.output.contents()
                )
            }
            Err(mpsc::RecvTimeoutError::Timeout) => bail!(
                "the smtp server was not ready within {START_TIMEOUT:?}:\n{}",
                server.output.contents()
            ),
        }
    }

    /// `127.0.0.1`: the address it listens on, and a name its certificate carries.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The PEM of the CA that signed its certificate (none without TLS).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The Maildir the messages are stored in.
    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("maildir")
    }

    /// Every message received so far, oldest first, as `smtp_server.py` parsed it:
    /// `{"key", "mail_from", "rcpt_tos", "auth_user", "tls", "headers": [[name, value]],
    /// "content_type", "parts", "text", "html"}`. Each is written before the server answers
    /// 250, so a message a client saw accepted is here.
    pub fn messages(&self) -> Vec<Value> {
        let Ok(file) = std::fs::File::open(self.dir.path().join("messages.jsonl")) else {
            return Vec::new();
        };
        std::io::BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_str(&line).ok())
            .collect()
    }

    /// The server's output so far (for a failing test's message).
    pub fn output(&self) -> String {
        self.output.contents()
    }
}

/// The first value of header `name` (case-insensitive) of a message from
/// [`SmtpServer::messages`].
pub fn mail_header<'a>(message: &'a Value, name: &str) -> Option<&'a str> {
    message["headers"].as_array()?.iter().find_map(|pair| {
        let key = pair.get(0)?.as_str()?;
        if key.eq_ignore_ascii_case(name) {
            pair.get(1)?.as_str()
        } else {
            None
        }
    })
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        // Only the process this value started, by its PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
