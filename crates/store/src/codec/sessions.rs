//! Browser logins in flight and web sessions as stored.

use countersign_core::Principal;
use countersign_core::StoreError;
use countersign_core::ports::{LoginTransaction, WebSession};
use countersign_core::principal::StoredPrincipal;
use countersign_core::secret::Secret;

use super::{from_json, instant, millis, to_json, unreadable};

/// The columns of `login_transactions`, in the order of [`crate::sql::INSERT_LOGIN`].
#[derive(Debug)]
pub(crate) struct LoginRow {
    pub state: String,
    pub browser_binding: String,
    pub issuer: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub return_to: String,
    pub max_age: Option<i64>,
    pub created_at: i64,
    pub expires_at: i64,
}

impl LoginRow {
    pub fn encode(l: &LoginTransaction) -> Self {
        Self {
            state: l.state.clone(),
            browser_binding: l.browser_binding.clone(),
            issuer: l.issuer.clone(),
            nonce: l.nonce.clone(),
            pkce_verifier: l.pkce_verifier.expose().to_owned(),
            return_to: l.return_to.clone(),
            max_age: l.max_age,
            created_at: millis(&l.created_at),
            expires_at: millis(&l.expires_at),
        }
    }

    pub fn decode(self) -> Result<LoginTransaction, StoreError> {
        // The state is a secret until the callback has used it: never named in errors.
        const WHAT: &str = "login transaction";
        Ok(LoginTransaction {
            created_at: instant(WHAT, "", "created_at", self.created_at)?,
            expires_at: instant(WHAT, "", "expires_at", self.expires_at)?,
            state: self.state,
            browser_binding: self.browser_binding,
            issuer: self.issuer,
            nonce: self.nonce,
            pkce_verifier: Secret::new(self.pkce_verifier),
            return_to: self.return_to,
            max_age: self.max_age,
        })
    }
}

/// The columns of `web_sessions`, in the order of [`crate::sql::INSERT_SESSION`]. `issuer` and
/// `subject` repeat `principal.identity`, for back-channel logout.
#[derive(Debug)]
pub(crate) struct SessionRow {
    pub id_hash: String,
    pub issuer: String,
    pub subject: String,
    pub sid: Option<String>,
    pub principal: String,
    pub id_token: Option<String>,
    pub refresh_token: Option<Vec<u8>>,
    pub csrf_token: String,
    pub created_at: i64,
    pub last_seen_at: i64,
}

impl SessionRow {
    pub fn encode(s: &WebSession) -> Result<Self, StoreError> {
        Ok(Self {
            id_hash: s.id_hash.clone(),
            issuer: s.principal.identity().issuer.clone(),
            subject: s.principal.identity().subject.clone(),
            sid: s.sid.clone(),
            principal: to_json("session principal", &s.principal)?,
            id_token: s.id_token.as_ref().map(|t| t.expose().to_owned()),
            refresh_token: s.refresh_token.clone(),
            csrf_token: s.csrf_token.expose().to_owned(),
            created_at: millis(&s.created_at),
            last_seen_at: millis(&s.last_seen_at),
        })
    }

    pub fn decode(self) -> Result<WebSession, StoreError> {
        // The key is the hash of a live cookie: never named in errors.
        const WHAT: &str = "web session";
        let principal: Principal =
            from_json::<StoredPrincipal>(WHAT, "", "principal", &self.principal)?.into();
        // The identity columns are what logout deletes by: a row where they disagree with the
        // principal could outlive its logout, so it is refused rather than used.
        if principal.identity().issuer != self.issuer
            || principal.identity().subject != self.subject
        {
            return Err(unreadable(
                WHAT,
                "",
                "issuer and subject disagree with the principal",
            ));
        }
        Ok(WebSession {
            principal,
            created_at: instant(WHAT, "", "created_at", self.created_at)?,
            last_seen_at: instant(WHAT, "", "last_seen_at", self.last_seen_at)?,
            id_hash: self.id_hash,
            sid: self.sid,
            id_token: self.id_token.map(Secret::new),
            refresh_token: self.refresh_token,
            csrf_token: Secret::new(self.csrf_token),
        })
    }
}
