//! The SQLite store's request cache: a request read once is answered from memory until a
//! write of this process changes it, which saves the hand-over to SQLite's thread and the
//! decoding on every read of a request that clients keep asking for (a CI job polling its
//! request, a waiter, a page refreshed).
//!
//! It stays true because every change to a request goes through this process's one writer
//! ([`crate::group_commit`]), and SQLite is served by one process (several replicas need
//! PostgreSQL, which has no such cache):
//!
//! - After each write batch, whatever its outcome, the writer drops the requests the batch
//!   touched and moves the cache's epoch on, *after* the commit and *before* any caller of
//!   the batch is answered. So a caller that saw its write done reads it back, and a caller
//!   that hung up cannot leave a stale entry behind.
//! - A reader notes the epoch before it reads the database and keeps what it read only if
//!   the epoch has not moved since. A read that may have raced a commit is answered but not
//!   kept, so the cache never holds a value older than a committed write.
//! - Only requests that were read whole are kept; a missing request or a row that failed to
//!   decode is never cached, so the store reports it again on the next read.
//! - It holds at most [`CAPACITY`] requests; when full, an arbitrary one goes.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use countersign_core::RequestId;
use countersign_core::request::Request;

/// The most requests kept.
pub(crate) const CAPACITY: usize = 4096;

/// Requests by id, and the epoch that every write batch touching requests moves on.
#[derive(Debug)]
pub(crate) struct RequestCache {
    inner: Mutex<Inner>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Inner {
    epoch: u64,
    requests: HashMap<RequestId, Request>,
}

impl RequestCache {
    /// An empty cache of at most `capacity` requests (0 turns it off).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::default(),
            capacity,
        }
    }

    /// A poisoned lock only means a panic elsewhere while it was held; the map is still a map,
    /// but what it holds may be half-changed, so it is emptied.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| {
            let mut inner = poisoned.into_inner();
            inner.requests.clear();
            inner.epoch += 1;
            inner
        })
    }

    /// The request, if kept.
    pub(crate) fn get(&self, id: &RequestId) -> Option<Request> {
        self.lock().requests.get(id).cloned()
    }

    /// The epoch to note before reading the database (see [`RequestCache::keep`]).
    pub(crate) fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Keeps `request`, read from the database after the epoch was `epoch`, unless a write
    /// batch has touched requests since.
    pub(crate) fn keep(&self, epoch: u64, request: &Request) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        if inner.epoch != epoch {
            return;
        }
        if inner.requests.len() >= self.capacity
            && !inner.requests.contains_key(&request.id)
            && let Some(victim) = inner.requests.keys().next().copied()
        {
            inner.requests.remove(&victim);
        }
        inner.requests.insert(request.id, request.clone());
    }

    /// Forgets `touched` and moves the epoch on; called by the writer after each batch that
    /// changed (or tried to change) requests, before its callers are answered.
    pub(crate) fn forget(&self, touched: &[RequestId]) {
        if touched.is_empty() {
            return;
        }
        let mut inner = self.lock();
        inner.epoch += 1;
        for id in touched {
            inner.requests.remove(id);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    use std::collections::BTreeMap;

    use countersign_core::Principal;
    use countersign_core::request::{State, content_digest};
    use countersign_core::time::from_millis;

    /// A request made at `n` ms (so each `n` is another id).
    fn request(n: u8) -> Request {
        let at = from_millis(1_000 * i64::from(n) + 1).unwrap();
        let requester = Principal::human("okta", "alice");
        let params = BTreeMap::new();
        Request {
            id: RequestId::generate(at),
            gate: "deploy".into(),
            digest: content_digest("deploy", &params, None, None, 900, &requester),
            params,
            reason: None,
            ticket: None,
            requester,
            duration_secs: 900,
            state: State::Pending,
            approval: None,
            version: 1,
            created_at: at,
            expires_at: at,
            decided_at: None,
            updated_at: at,
            decisions: Vec::new(),
        }
    }

    #[test]
    fn a_read_that_raced_a_write_is_not_kept() {
        let cache = RequestCache::new(8);
        let r = request(1);
        let before = cache.epoch();
        // A batch touching any request commits while the read is on its way.
        cache.forget(&[request(2).id]);
        cache.keep(before, &r);
        assert!(cache.get(&r.id).is_none());
        cache.keep(cache.epoch(), &r);
        assert_eq!(cache.get(&r.id).map(|k| k.version), Some(r.version));
    }

    #[test]
    fn a_write_forgets_what_it_touched() {
        let cache = RequestCache::new(8);
        let (a, b) = (request(1), request(2));
        cache.keep(cache.epoch(), &a);
        cache.keep(cache.epoch(), &b);
        cache.forget(&[a.id]);
        assert!(cache.get(&a.id).is_none());
        assert!(cache.get(&b.id).is_some());
        // A batch that touched nothing leaves the epoch where it was.
        let epoch = cache.epoch();
        cache.forget(&[]);
        assert_eq!(cache.epoch(), epoch);
    }

    #[test]
    fn it_holds_at_most_its_capacity() {
        let cache = RequestCache::new(3);
        let requests: Vec<Request> = (0..10).map(request).collect();
        for r in &requests {
            cache.keep(cache.epoch(), r);
        }
        assert_eq!(cache.lock().requests.len(), 3);
        // The newest is always kept: room is made for it.
        assert!(cache.get(&requests[9].id).is_some());
        let off = RequestCache::new(0);
        off.keep(off.epoch(), &requests[1]);
        assert!(off.get(&requests[1].id).is_none());
    }
}
