//! The directory of people countersign has seen: each verified caller (bearer call or
//! browser login) is recorded with their claims as verified, for routing notifications to
//! those who could approve. A caller whose claims have not changed is written at most once
//! an hour, in the background, so the hot path never waits on it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use countersign_core::ports::NoticeStore;
use countersign_core::{Identity, Principal, Timestamp};

/// How often an unchanged person's `last_seen` is written.
const REFRESH: chrono::Duration = chrono::Duration::hours(1);

/// The most people remembered in memory; past it the memory starts again (the cost is one
/// write per person).
const MAX_REMEMBERED: usize = 100_000;

/// Who was written last, with which claims, and when.
type Written = HashMap<Identity, (Arc<Principal>, Timestamp)>;

/// Records people in the store's directory, sparingly.
#[derive(Debug, Clone)]
pub(crate) struct Directory {
    store: Arc<dyn NoticeStore>,
    written: Arc<Mutex<Written>>,
}

impl Directory {
    pub(crate) fn new(store: Arc<dyn NoticeStore>) -> Self {
        Self {
            store,
            written: Arc::default(),
        }
    }

    /// Notes that `principal` was verified at `now`; writes them when they are new, their
    /// claims changed, or the last write is an hour old.
    pub(crate) fn seen(&self, principal: &Arc<Principal>, now: Timestamp) {
        // Only people approve: workload tokens (which a CI provider mints for any run) are
        // not recorded.
        if principal.kind() != countersign_core::PrincipalKind::Human {
            return;
        }
        {
            let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((last, at)) = written.get_mut(principal.identity())
                && now - *at < REFRESH
                && (Arc::ptr_eq(last, principal) || **last == **principal)
            {
                *last = principal.clone();
                return;
            }
            if written.len() >= MAX_REMEMBERED {
                written.clear();
            }
            written.insert(principal.identity().clone(), (principal.clone(), now));
        }
        let (store, principal) = (self.store.clone(), principal.clone());
        tokio::spawn(async move {
            if let Err(error) = store.see_person(&principal, now).await {
                tracing::warn!(%error, "could not record a person in the directory");
            }
        });
    }
}
