//! The built-in development OpenID provider of the `countersign dev` sandbox.
//!
//! A small but honest OpenID Connect provider, all in memory: discovery, a JWKS with one ES256
//! key generated at start, the authorization-code flow with PKCE S256 (a user picker instead of
//! passwords), refresh tokens, client credentials for a demo CI workload, userinfo and
//! RP-initiated logout. The countersign server verifies its tokens through the same code as any
//! real issuer, which is the point: the sandbox exercises the production OIDC paths.
//!
//! ```no_run
//! use countersign_dev_idp::{DevIdpConfig, router};
//! let config = DevIdpConfig::new("http://127.0.0.1:8080/dev-idp", "countersign")
//!     .with_web_redirect_uris(vec!["http://127.0.0.1:8080/auth/callback".to_owned()]);
//! let app: axum::Router = axum::Router::new().nest("/dev-idp", router(config));
//! ```
//!
//! Anyone who can reach this provider can sign in as any demo user: the caller must bind it to
//! loopback only.

mod authorize;
pub mod client;
mod clock;
mod config;
mod discovery;
mod html;
mod keys;
mod logout;
mod oauth_error;
mod params;
mod provider;
mod redirect;
mod secrets;
mod store;
mod token;
mod tokens;
mod userinfo;
mod users;

pub use config::{
    CI_CLIENT_ID, CI_CLIENT_SECRET, CLI_CLIENT_ID, CLI_REDIRECT_URI, DevClient, DevIdpConfig,
    WEB_CLIENT_ID, WEB_CLIENT_SECRET,
};
pub use provider::{DevIdpError, router, try_router};
pub use users::{CI_USER, DemoUser, DemoWorkload, demo_users, demo_workload, find_demo_user};
