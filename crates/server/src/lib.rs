//! The countersign server: the HTTP API over the engine, the web UI, the background workers,
//! and start-up. This is the only crate that knows HTTP; it wires the adapters (store,
//! identity) to the core.
//!
//! `api` and `web` are siblings: both build on [`state`], [`caller`] and [`session`], and
//! neither imports the other; [`router`] puts them together.

// Whatever nothing outside the crate uses is `pub(crate)`, so a `pub` here means public.
#![warn(unreachable_pub)]

mod api;
pub mod app;
mod caller;
pub mod changes;
pub mod clock;
mod directory;
mod error;
mod issuers;
mod router;
pub mod session;
pub mod state;
mod web;

pub use app::{Application, BuildOptions};
pub use clock::SystemClock;
