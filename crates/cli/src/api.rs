//! A client for the server's `/api/v1`: one method per call the commands make, each reading
//! the answer into the API's shared wire types. Every refusal becomes a [`Failure`] with the
//! documented exit code and a hint; a refused login is refreshed and the call tried once
//! more.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use countersign_api::{
    CreateRequest, DecisionBody, ErrorBody, GatePage, GrantToken, ReasonBody, Request, RequestPage,
};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::Credentials;
use crate::failure::{Failure, exit};
use crate::http::{self, CALL_TIMEOUT};

/// Which server, and who to be there.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// The countersign server, e.g. https://approvals.example.com.
    #[arg(long, env = "COUNTERSIGN_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// Authenticate with the token in this file (read on every call) instead of a login.
    #[arg(long, env = "COUNTERSIGN_ID_TOKEN_FILE", value_name = "FILE")]
    pub id_token_file: Option<PathBuf>,
}

/// A connection to one server as one caller.
#[derive(Debug)]
pub struct Api {
    base: String,
    http: reqwest::Client,
    credentials: Credentials,
}

/// An approve or reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `POST …/approve`.
    Approve,
    /// `POST …/reject`.
    Reject,
}

impl Api {
    /// Resolves the server URL and the caller's credentials; nothing is sent yet.
    pub fn new(args: &ServerArgs) -> Result<Self, Failure> {
        let base = http::server_url(args.server.as_deref())?;
        Ok(Self {
            credentials: Credentials::resolve(&base, args.id_token_file.as_deref()),
            http: http::client()?,
            base,
        })
    }

    /// Where people look at a request in the browser.
    pub fn page_url(&self, id: &str) -> String {
        format!("{}/requests/{id}", self.base)
    }

    /// `GET /gates`.
    pub async fn gates(&self) -> Result<GatePage, Failure> {
        self.call(Method::GET, "/gates", &[], None::<&()>, CALL_TIMEOUT)
            .await
    }

    /// `POST /requests`.
    pub async fn create(&self, body: &CreateRequest) -> Result<Request, Failure> {
        self.call(Method::POST, "/requests", &[], Some(body), CALL_TIMEOUT)
            .await
    }

    /// `GET /requests` with filters.
    pub async fn list(&self, query: &[(&str, String)]) -> Result<RequestPage, Failure> {
        self.call(Method::GET, "/requests", query, None::<&()>, CALL_TIMEOUT)
            .await
    }

    /// `GET /requests/{id}`.
    pub async fn get(&self, id: &str) -> Result<Request, Failure> {
        self.call(
            Method::GET,
            &request_path(id, ""),
            &[],
            None::<&()>,
            CALL_TIMEOUT,
        )
        .await
    }

    /// `GET /requests/{id}?wait=…&version=…`: answers when the request moves past `version`,
    /// or after `wait` (which the server may cap).
    pub async fn wait(&self, id: &str, version: i64, wait: Duration) -> Result<Request, Failure> {
        let secs = wait.as_secs().max(1);
        let query = [
            ("wait", format!("{secs}s")),
            ("version", version.to_string()),
        ];
        self.call(
            Method::GET,
            &request_path(id, ""),
            &query,
            None::<&()>,
            wait + CALL_TIMEOUT,
        )
        .await
    }

    /// `POST /requests/{id}/approve|reject` with the digest the caller was shown.
    pub async fn decide(
        &self,
        id: &str,
        verdict: Verdict,
        digest: &str,
        comment: Option<&str>,
    ) -> Result<Request, Failure> {
        let action = match verdict {
            Verdict::Approve => "/approve",
            Verdict::Reject => "/reject",
        };
        let body = DecisionBody {
            digest: digest.to_owned(),
            comment: comment.map(str::to_owned),
        };
        self.call(
            Method::POST,
            &request_path(id, action),
            &[],
            Some(&body),
            CALL_TIMEOUT,
        )
        .await
    }

    /// `POST /requests/{id}/cancel` or `/revoke`.
    pub async fn end(
        &self,
        id: &str,
        action: &str,
        reason: Option<&str>,
    ) -> Result<Request, Failure> {
        let body = ReasonBody {
            reason: reason.map(str::to_owned),
        };
        self.call(
            Method::POST,
            &request_path(id, &format!("/{action}")),
            &[],
            Some(&body),
            CALL_TIMEOUT,
        )
        .await
    }

    /// `POST /requests/{id}/token`: the grant token.
    pub async fn grant_token(&self, id: &str) -> Result<GrantToken, Failure> {
        self.call(
            Method::POST,
            &request_path(id, "/token"),
            &[],
            None::<&()>,
            CALL_TIMEOUT,
        )
        .await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&impl Serialize>,
        timeout: Duration,
    ) -> Result<T, Failure> {
        let url = format!("{}/api/v1{path}", self.base);
        let mut fresh = false;
        loop {
            let token = self.credentials.bearer(&self.http, fresh).await?;
            let mut request = self
                .http
                .request(method.clone(), &url)
                .query(query)
                .bearer_auth(&token)
                .timeout(timeout);
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await.map_err(|e| {
                http::unreachable(
                    "the server",
                    &self.base,
                    &e,
                    "check --server or COUNTERSIGN_SERVER, and that the server is running",
                )
            })?;
            let status = response.status();
            if status.is_success() {
                return response.json().await.map_err(|e| {
                    Failure::error(format!(
                        "{} answered {path} with something this version cannot read ({e}); is it a countersign server of this version?",
                        self.base
                    ))
                });
            }
            if status == StatusCode::UNAUTHORIZED && !fresh && self.credentials.refreshable() {
                fresh = true;
                continue;
            }
            let error = response.json::<ErrorBody>().await.ok();
            return Err(self.refusal(status, error.as_ref()));
        }
    }

    fn refusal(&self, status: StatusCode, body: Option<&ErrorBody>) -> Failure {
        let code = body.map_or("", |b| b.error.code.as_str());
        let message = body
            .map(|b| b.error.message.clone())
            .unwrap_or_else(|| format!("the server answered {status}"));
        let mut failure = match status {
            StatusCode::UNAUTHORIZED => self.credentials.refused(&message),
            StatusCode::FORBIDDEN => Failure::denied(format!("not allowed: {message}")),
            StatusCode::NOT_FOUND if code == "unknown_gate" => Failure::error(format!(
                "{message}; run `countersign gates` to see the gates you may request"
            )),
            StatusCode::NOT_FOUND if code == "not_found" => Failure::error(format!(
                "{message} (or you may not see it); check the id with `countersign ls`"
            )),
            StatusCode::NOT_FOUND => Failure::error(format!(
                "{} has no such endpoint ({message}); is it a countersign server of this version?",
                self.base
            )),
            StatusCode::UNPROCESSABLE_ENTITY if code == "invalid_params" => Failure::error(
                format!("{message}; run `countersign gates` to see the gate's parameters"),
            ),
            s if s.is_server_error() => Failure::error(format!(
                "the server failed ({status}): {message}; try again later"
            )),
            _ => Failure::with_exit(exit::ERROR, message),
        };
        failure.code = (!code.is_empty()).then(|| code.to_string());
        failure
    }
}

/// `/requests/{id}{suffix}`, the id checked so it stays one path segment.
fn request_path(id: &str, suffix: &str) -> String {
    let id: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    format!("/requests/{id}{suffix}")
}
