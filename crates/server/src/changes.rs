//! Change notifications inside one process: the engine announces every committed change, and
//! long-polling readers wait for the one they care about.

use countersign_core::RequestId;
use countersign_core::ports::ChangeListener;
use tokio::sync::broadcast;

/// A fan-out of `(request, version)` announcements.
#[derive(Debug, Clone)]
pub struct Changes {
    tx: broadcast::Sender<(RequestId, i64)>,
}

impl Default for Changes {
    fn default() -> Self {
        Self::new()
    }
}

impl Changes {
    /// A channel with room for bursts of changes; a waiter that falls behind re-reads.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(4096);
        Self { tx }
    }

    /// Subscribes to every change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<(RequestId, i64)> {
        self.tx.subscribe()
    }
}

impl ChangeListener for Changes {
    fn request_changed(&self, id: &RequestId, version: i64) {
        // No receivers is normal: nobody is waiting.
        let _ = self.tx.send((*id, version));
    }
}
