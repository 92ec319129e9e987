//! The `countersign` client commands, run as the real binary against a real server (built
//! in-process on a loopback port) and real OpenID providers (panva `oidc-provider`):
//! signing in, requesting and waiting, deciding, running a command with the grant, CI
//! identities, bad input, and the offline tools.

mod support;

mod ci;
mod deciding;
mod errors;
mod login;
mod offline;
mod waiting;
