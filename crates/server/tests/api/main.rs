//! API tests: the app on port 0, a real OpenID provider for people and another for the CI
//! workload (panva `oidc-provider`), and a real database (SQLite, and PostgreSQL started by the
//! harness). Each scenario runs against both backends.

#![expect(
    clippy::unwrap_used,
    reason = "test scaffolding: a panic is the failure report"
)]

mod grants;
mod helpers;
mod notifications;
mod openapi;
mod scenarios;
