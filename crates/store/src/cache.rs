//! The SQLite store's request cache: a request read once is answered from memory until a
//! write of this process changes it, which saves the hand-over to SQLite's thread and the
//! decoding on every read of a request that clients keep asking for (a CI job polling its
//! request, a waiter, a page refreshed).
//!
//! It stays true because every change this process makes to a request goes through its one
//! writer ([`crate::sqlite::writer`]):
//!
//! - After each write batch, whatever its outcome, the writer drops the requests the batch
//!   touched and moves the cache's epoch on, *after* the commit and *before* any caller of
//!   the batch is answered. So a caller that saw its write done reads it back, and a caller
//!   that hung up cannot leave a stale entry behind.
//! - A committed batch then leaves in the cache the requests it created, and those it changed
//!   from the version the cache held, as the change left them
//!   (`countersign_core::ports::Transition::apply_to`, the rule the stores follow): the next
//!   reader of a request in the middle of its approval finds it here.
//! - A reader notes the epoch before it reads the database and keeps what it read only if
//!   the epoch has not moved since. A read that may have raced a commit is answered but not
//!   kept, so the cache never holds a value older than a committed write.
//! - Only requests that were read whole are kept; a missing request or a row that failed to
//!   decode is never cached, so the store reports it again on the next read.
//! - It holds at most [`CAPACITY`] requests. When full, it drops the entries older than
//!   [`MAX_AGE`] (no read would use them); if that is not room enough, the oldest eighth
//!   goes. Making room happens once per many insertions, not on each.
//!
//! Another process writing the same file (a second server, which SQLite deployments do not
//! need: several replicas need PostgreSQL, which has no such cache) is not seen by the
//! writer, so an entry is also dropped [`MAX_AGE`] after it was read: such a change shows
//! within that time. Nothing unsafe can come of it meanwhile: every write re-checks the
//! request under the database's write lock, and listings use an entry only at the version
//! the database lists.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use countersign_core::RequestId;
use countersign_core::request::Request;

/// The most requests kept.
pub(crate) const CAPACITY: usize = 4096;

/// How long a request read is kept at most, for changes made by another process.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(1);

/// Requests by id, and the epoch that every write batch touching requests moves on.
#[derive(Debug)]
pub(crate) struct RequestCache {
    inner: Mutex<Inner>,
    capacity: usize,
    max_age: Duration,
}

#[derive(Debug, Default)]
struct Inner {
    epoch: u64,
    /// Each request with when it was kept.
    requests: HashMap<RequestId, (Arc<Request>, Instant)>,
}

impl Inner {
    /// Makes room for `id` when `capacity` requests are kept and `id` is not one of them:
    /// drops every entry older than `max_age`, then, if still full, the oldest eighth of
    /// the capacity (at least one).
    ///
    /// Entries are otherwise dropped only when read past their age, so a busy server fills
    /// the cache with requests nobody reads any more. Dropping an arbitrary one then would
    /// mostly hit the few requests in the middle of their approval, the very ones read next.
    fn make_room(&mut self, capacity: usize, max_age: Duration, id: &RequestId) {
        if self.requests.len() < capacity || self.requests.contains_key(id) {
            return;
        }
        let now = Instant::now();
        self.requests
            .retain(|_, (_, kept)| now.duration_since(*kept) <= max_age);
        if self.requests.len() < capacity {
            return;
        }
        let excess = (self.requests.len() + 1 - capacity).max(capacity / 8);
        let mut ages: Vec<(Instant, RequestId)> = self
            .requests
            .iter()
            .map(|(id, (_, kept))| (*kept, *id))
            .collect();
        ages.select_nth_unstable(excess - 1);
        for (_, id) in &ages[..excess] {
            self.requests.remove(id);
        }
    }
}

impl RequestCache {
    /// An empty cache of at most `capacity` requests (0 turns it off), each kept at most
    /// `max_age`.
    pub(crate) fn new(capacity: usize, max_age: Duration) -> Self {
        Self {
            inner: Mutex::default(),
            capacity,
            max_age,
        }
    }

    /// A poisoned lock only means a panic elsewhere while it was held; the map is still a map,
    /// but what it holds may be half-changed, so it is emptied (once: the poison is cleared).
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| {
            let mut inner = poisoned.into_inner();
            inner.requests.clear();
            inner.epoch += 1;
            self.inner.clear_poison();
            inner
        })
    }

    /// The request, if kept and not older than the cache's `max_age`.
    pub(crate) fn get(&self, id: &RequestId) -> Option<Arc<Request>> {
        let mut inner = self.lock();
        let (request, kept) = inner.requests.get(id)?;
        if kept.elapsed() <= self.max_age {
            return Some(Arc::clone(request));
        }
        inner.requests.remove(id);
        None
    }

    /// The epoch to note before reading the database (see [`RequestCache::keep`]).
    pub(crate) fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Keeps `request`, read from the database after the epoch was `epoch`, unless a write
    /// batch has touched requests since.
    pub(crate) fn keep(&self, epoch: u64, request: &Arc<Request>) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        if inner.epoch != epoch {
            return;
        }
        inner.make_room(self.capacity, self.max_age, &request.id);
        inner
            .requests
            .insert(request.id, (Arc::clone(request), Instant::now()));
    }

    /// Forgets `touched` and moves the epoch on; called by the writer after each batch that
    /// changed (or tried to change) requests, before its callers are answered.
    pub(crate) fn forget(&self, touched: &[RequestId]) {
        self.settle(touched, Vec::new());
    }

    /// Like [`RequestCache::forget`], then keeps `written`: requests as a committed batch
    /// left them (a later one of the same id wins).
    pub(crate) fn settle(&self, touched: &[RequestId], written: Vec<Request>) {
        if touched.is_empty() && written.is_empty() {
            return;
        }
        let mut inner = self.lock();
        inner.epoch += 1;
        for id in touched {
            inner.requests.remove(id);
        }
        if self.capacity == 0 {
            return;
        }
        let now = Instant::now();
        for request in written {
            inner.make_room(self.capacity, self.max_age, &request.id);
            inner.requests.insert(request.id, (Arc::new(request), now));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use std::collections::BTreeMap;

    use countersign_core::Principal;
    use countersign_core::request::{State, content_digest};
    use countersign_core::time::from_millis;

    /// A pending request of `n` seconds after the epoch (each call another id).
    pub(crate) fn request(n: u8) -> Request {
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

    /// [`request`], shared as the cache keeps it.
    fn shared(n: u8) -> Arc<Request> {
        Arc::new(request(n))
    }

    #[test]
    fn a_read_that_raced_a_write_is_not_kept() {
        let cache = RequestCache::new(8, MAX_AGE);
        let r = shared(1);
        let before = cache.epoch();
        // A batch touching any request commits while the read is on its way.
        cache.forget(&[shared(2).id]);
        cache.keep(before, &r);
        assert!(cache.get(&r.id).is_none());
        cache.keep(cache.epoch(), &r);
        assert_eq!(cache.get(&r.id).map(|k| k.version), Some(r.version));
    }

    #[test]
    fn a_write_forgets_what_it_touched() {
        let cache = RequestCache::new(8, MAX_AGE);
        let (a, b) = (shared(1), shared(2));
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
    fn an_entry_is_dropped_when_it_is_too_old() {
        let cache = RequestCache::new(8, Duration::from_millis(30));
        let r = shared(1);
        cache.keep(cache.epoch(), &r);
        assert!(cache.get(&r.id).is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get(&r.id).is_none());
        assert!(cache.lock().requests.is_empty());
    }

    #[test]
    fn a_poisoned_cache_starts_over_once() {
        let cache = Arc::new(RequestCache::new(8, MAX_AGE));
        let (a, b) = (shared(1), shared(2));
        cache.keep(cache.epoch(), &a);
        let poisoner = cache.clone();
        let _ = std::thread::spawn(move || {
            let _guard = poisoner.inner.lock();
            panic!("poison the lock");
        })
        .join();
        assert!(cache.get(&a.id).is_none(), "emptied");
        cache.keep(cache.epoch(), &b);
        assert!(cache.get(&b.id).is_some(), "and in use again");
    }

    /// A full cache drops what is too old to be read before anything a read could use, and
    /// then the oldest: the requests a busy server is working on stay.
    #[test]
    fn a_full_cache_drops_the_stale_then_the_oldest() {
        let cache = RequestCache::new(16, Duration::from_millis(500));
        let stale: Vec<Arc<Request>> = (0..12).map(shared).collect();
        for r in &stale {
            cache.keep(cache.epoch(), r);
        }
        std::thread::sleep(Duration::from_millis(600));
        let fresh: Vec<Arc<Request>> = (12..40).map(shared).collect();
        for (i, r) in fresh.iter().enumerate() {
            cache.keep(cache.epoch(), r);
            // The four newest are always there.
            for recent in &fresh[i.saturating_sub(3)..=i] {
                assert!(cache.lock().requests.contains_key(&recent.id));
            }
        }
        let kept = cache.lock().requests.len();
        assert!((14..=16).contains(&kept), "{kept}");
        assert!(
            stale
                .iter()
                .all(|r| !cache.lock().requests.contains_key(&r.id))
        );
        assert!(cache.get(&fresh[39 - 12].id).is_some());
    }

    #[test]
    fn it_holds_at_most_its_capacity() {
        let cache = RequestCache::new(3, MAX_AGE);
        let requests: Vec<Arc<Request>> = (0..10).map(shared).collect();
        for r in &requests {
            cache.keep(cache.epoch(), r);
        }
        assert_eq!(cache.lock().requests.len(), 3);
        // The newest is always kept: room is made for it, by dropping the oldest.
        assert!(cache.get(&requests[9].id).is_some());
        assert!(cache.get(&requests[0].id).is_none());
        let off = RequestCache::new(0, MAX_AGE);
        off.keep(off.epoch(), &requests[1]);
        assert!(off.get(&requests[1].id).is_none());
    }
}
