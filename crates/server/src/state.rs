//! What every handler can reach: the engine, the verifiers and keys, the outbox, the change
//! fan-out, the settings and the browser sessions, behind one reference count.

use std::sync::Arc;

use countersign_config::Settings;
use countersign_core::ports::NoticeStore;
use countersign_core::{Engine, OutboxStore};
use countersign_identity::Verifier;
use countersign_notify::Notifier;
use countersign_tokens::KeyRing;

use crate::changes::Changes;
use crate::directory::Directory;
use crate::session::Sessions;

/// [`Shared`], behind one reference count. Every request takes a copy, which costs one
/// count, not one for each of its parts.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// The state made of `shared`.
    pub(crate) fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
#[derive(Debug)]
pub struct Shared {
    /// The use cases.
    pub engine: Engine,
    /// Bearer-token verification.
    pub verifier: Verifier,
    /// Our signing keys: grant tokens, JWKS, verification for introspection.
    pub keys: KeyRing,
    /// The webhook outbox.
    pub outbox: Arc<dyn OutboxStore>,
    /// Change announcements, for long polls and event streams.
    pub changes: Changes,
    /// The resolved configuration.
    pub settings: Arc<Settings>,
    /// Browser sign-in and sessions (the pages, and API reads from a signed-in browser).
    pub sessions: Sessions,
    /// The notification outbox and the directory of people.
    pub notices: Arc<dyn NoticeStore>,
    /// Records verified callers in the directory.
    pub(crate) directory: Directory,
    /// The notification worker (the sandbox's `/dev/notifications` reads its previews).
    pub notifier: Notifier,
}

impl Shared {
    /// Our issuer identifier: the public URL without a trailing slash.
    pub(crate) fn issuer(&self) -> String {
        self.settings
            .server
            .public_url
            .as_str()
            .trim_end_matches('/')
            .to_string()
    }
}
