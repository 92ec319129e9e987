//! Web UI tests: browser sign-in against a real OpenID provider (panva `oidc-provider`) and a
//! misbehaving stub provider, sessions, CSRF, the pages, live updates, and a real headless
//! Chromium driven over WebDriver.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test scaffolding: a panic is the report"
)]

mod browser;
mod csrf;
mod helpers;
mod live;
mod login;
mod pages;
mod sessions;
mod stub;
mod webdriver;
