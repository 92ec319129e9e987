//! The GitHub Actions workload identity: a job with `permissions: id-token: write` gets
//! `ACTIONS_ID_TOKEN_REQUEST_URL` and `ACTIONS_ID_TOKEN_REQUEST_TOKEN`, and can ask that URL
//! for an ID token with the audience of its choice — here, the one the server's workload
//! issuer accepts.

use serde::Deserialize;

use super::oauth::{self, IssuerInfo};
use crate::failure::Failure;
use crate::http::{self, CALL_TIMEOUT};

/// GitHub's token issuer, preferred when the server trusts several workload issuers.
pub const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";

/// Where and how to ask for ID tokens, from the job's environment.
#[derive(Clone)]
pub struct Endpoint {
    url: String,
    request_token: String,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &http::strip_query(&self.url))
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// The endpoint, when both variables are set.
    pub fn from_env() -> Option<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Some(Self {
            url: var("ACTIONS_ID_TOKEN_REQUEST_URL")?,
            request_token: var("ACTIONS_ID_TOKEN_REQUEST_TOKEN")?,
        })
    }

    /// Asks for an ID token for `audience`.
    pub async fn id_token(
        &self,
        http: &reqwest::Client,
        audience: &str,
    ) -> Result<String, Failure> {
        #[derive(Deserialize)]
        struct Answer {
            value: String,
        }
        let mut url = url::Url::parse(&self.url).map_err(|_| {
            Failure::denied(
                "ACTIONS_ID_TOKEN_REQUEST_URL is not a URL; is this a GitHub Actions job?",
            )
        })?;
        url.query_pairs_mut().append_pair("audience", audience);
        let response = http
            .get(url.as_str())
            .bearer_auth(&self.request_token)
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(|e| {
                http::unreachable(
                    "the GitHub Actions token service",
                    &self.url,
                    &e,
                    "try again",
                )
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(Failure::denied(format!(
                "the GitHub Actions token service answered {status}; does the job have `permissions: id-token: write`?"
            )));
        }
        let answer: Answer = response.json().await.map_err(|_| {
            Failure::denied("the GitHub Actions token service sent no token; try again")
        })?;
        Ok(answer.value)
    }
}

/// The audience to ask for: that of the workload issuer the server trusts — GitHub's if it is
/// configured, else the only (or first) workload issuer.
pub fn audience(issuers: &[IssuerInfo], server: &str) -> Result<String, Failure> {
    let workloads: Vec<&IssuerInfo> = issuers
        .iter()
        .filter(|i| i.kind == countersign_api::PrincipalKind::Workload)
        .collect();
    let chosen = workloads
        .iter()
        .find(|i| i.issuer == GITHUB_ISSUER)
        .or_else(|| workloads.first())
        .ok_or_else(|| {
            Failure::denied(format!(
                "{server} trusts no workload issuer, so a CI job cannot sign in there; ask its operators to configure one"
            ))
        })?;
    chosen.audience.clone().ok_or_else(|| {
        Failure::denied(format!(
            "{server} names no audience for its workload issuer '{}'",
            chosen.name
        ))
    })
}

/// Whether a token should be fetched again: unknown expiry, or less than a minute left.
pub fn stale(token: &str, now: i64) -> bool {
    oauth::unverified_expiry(token).is_none_or(|exp| exp - 60 <= now)
}
