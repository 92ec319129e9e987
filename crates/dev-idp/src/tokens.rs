//! The claims of the tokens we issue, and minting them.

use serde::Serialize;

use crate::keys::{ACCESS_TOKEN_TYP, ID_TOKEN_TYP, SigningKey};
use crate::secrets::{at_hash, random_token};
use crate::store::Login;
use crate::users::{DemoUser, DemoWorkload};

/// Lifetime of access tokens and ID tokens (seconds).
pub(crate) const TOKEN_TTL: i64 = 3600;

/// The profile claims every token of a person carries, whatever the scopes: the sandbox's
/// gates match on `groups` and `team`, and a dev provider should not make that depend on which
/// scopes a client happened to ask for.
#[derive(Debug, Serialize)]
struct Profile {
    name: &'static str,
    preferred_username: &'static str,
    email: &'static str,
    email_verified: bool,
    groups: &'static [&'static str],
    team: &'static str,
}

impl From<&'static DemoUser> for Profile {
    fn from(user: &'static DemoUser) -> Self {
        Self {
            name: user.name,
            preferred_username: user.username,
            email: user.email,
            email_verified: true,
            groups: user.groups,
            team: user.team,
        }
    }
}

/// An RFC 9068 access token for a person.
#[derive(Debug, Serialize)]
struct UserAccessClaims<'a> {
    iss: &'a str,
    sub: &'static str,
    aud: &'a str,
    client_id: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: String,
    scope: &'a str,
    auth_time: i64,
    sid: &'a str,
    #[serde(flatten)]
    profile: Profile,
}

#[derive(Debug, Serialize)]
struct IdTokenClaims<'a> {
    iss: &'a str,
    sub: &'static str,
    aud: &'a str,
    azp: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    sid: &'a str,
    at_hash: String,
    #[serde(flatten)]
    profile: Profile,
}

/// An RFC 9068 access token for the CI workload, with GitHub-Actions-like claims.
#[derive(Debug, Serialize)]
struct WorkloadClaims<'a> {
    iss: &'a str,
    sub: &'static str,
    aud: &'a str,
    client_id: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    repository: &'static str,
    repository_owner: &'static str,
    repository_id: &'static str,
    #[serde(rename = "ref")]
    git_ref: &'static str,
    workflow: &'static str,
    actor: &'static str,
    actor_sub: &'static str,
}

/// Who signs, and for whom.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Minter<'a> {
    pub(crate) key: &'a SigningKey,
    pub(crate) issuer: &'a str,
    pub(crate) api_audience: &'a str,
}

pub(crate) struct UserTokens {
    pub(crate) access_token: String,
    pub(crate) id_token: String,
}

impl Minter<'_> {
    /// The access token and ID token of a login. `nonce` is `None` on refresh: OpenID Connect
    /// Core §12.2 leaves it out of refreshed ID tokens.
    pub(crate) fn user_tokens(
        &self,
        login: &Login,
        nonce: Option<&str>,
        now: i64,
    ) -> Result<UserTokens, jsonwebtoken::errors::Error> {
        let access_token = self.key.sign(
            ACCESS_TOKEN_TYP,
            &UserAccessClaims {
                iss: self.issuer,
                sub: login.user.username,
                aud: self.api_audience,
                client_id: &login.client_id,
                iat: now,
                nbf: now,
                exp: now + TOKEN_TTL,
                jti: random_token(),
                scope: &login.scope,
                auth_time: login.auth_time,
                sid: &login.sid,
                profile: login.user.into(),
            },
        )?;
        let id_token = self.key.sign(
            ID_TOKEN_TYP,
            &IdTokenClaims {
                iss: self.issuer,
                sub: login.user.username,
                aud: &login.client_id,
                azp: &login.client_id,
                iat: now,
                nbf: now,
                exp: now + TOKEN_TTL,
                auth_time: login.auth_time,
                nonce,
                sid: &login.sid,
                at_hash: at_hash(&access_token),
                profile: login.user.into(),
            },
        )?;
        Ok(UserTokens {
            access_token,
            id_token,
        })
    }

    /// The client-credentials access token of a workload client.
    pub(crate) fn workload_token(
        &self,
        client_id: &str,
        workload: &'static DemoWorkload,
        scope: Option<&str>,
        now: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        self.key.sign(
            ACCESS_TOKEN_TYP,
            &WorkloadClaims {
                iss: self.issuer,
                sub: workload.sub,
                aud: self.api_audience,
                client_id,
                iat: now,
                nbf: now,
                exp: now + TOKEN_TTL,
                jti: random_token(),
                scope,
                repository: workload.repository,
                repository_owner: workload.repository_owner,
                repository_id: workload.repository_id,
                git_ref: workload.git_ref,
                workflow: workload.workflow,
                actor: workload.actor,
                actor_sub: workload.actor_sub,
            },
        )
    }
}
