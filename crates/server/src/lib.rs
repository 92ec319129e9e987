//! The countersign server: the HTTP API over the engine, the web UI, the background workers,
//! and start-up. This is the only crate that knows HTTP; it wires the adapters (store,
//! identity) to the core.

pub mod api;
pub mod app;
pub mod changes;
pub mod clock;
pub mod web;

pub use app::{Application, BuildOptions};
pub use clock::SystemClock;
