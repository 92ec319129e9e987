//! Test support for countersign's integration tests: real services, no mocks.
//!
//! - [`OidcProvider`]: panva's `oidc-provider` (Node.js) with the test users, clients and JWT
//!   access tokens countersign's tests need; it scripts the user's side of a browser login
//!   ([`OidcProvider::login`], or [`OidcProvider::complete_login`] for a login a client started)
//!   and of a device flow ([`OidcProvider::approve_device`]), and gets
//!   workload tokens ([`OidcProvider::workload_token`]).
//! - [`TestPostgres`]: a throwaway PostgreSQL cluster per test process, handing out fresh databases.
//!
//! - [`verify_with_pyjwt`], [`verify_with_jose`]: third-party JWT verifiers.
//! - [`SlackReceiver`]: a loopback Slack (incoming webhooks, `chat.postMessage`, `chat.update`)
//!   that records every call and can be told to fail; it also answers a Teams Workflows path.
//! - [`validate_adaptive_card`]: Microsoft's Adaptive Cards parser (npm `adaptivecards`).
//! - [`SmtpServer`]: aiosmtpd with STARTTLS required and AUTH, or without TLS.
//!
//! The services start child processes that this crate owns and ends: nothing outlives the test process.

mod adaptivecards;
mod child;
mod login;
mod node;
mod oidc;
mod postgres;
mod slack;
mod smtp;
mod verifiers;

pub use adaptivecards::validate_adaptive_card;
pub use login::{EndSession, Tokens};
pub use oidc::OidcProvider;
pub use postgres::TestPostgres;
pub use slack::{SlackCall, SlackFailure, SlackReceiver, block_kit_problems};
pub use smtp::{SmtpServer, mail_header};
pub use verifiers::{Verdict, verify_with_jose, verify_with_pyjwt};
