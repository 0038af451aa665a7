//! Bundle changes, for `WatchBundle`: every write of a bundle this replica commits rings
//! the bundle's watchers here, and rings the other replicas over a NATS doorbell subject
//! (core NATS, outside every stream: a hint, carrying only the bundle id). A watcher waits
//! on its own bundle's bell alone (a change elsewhere costs it nothing), reads the bundle
//! once when it rang, and at a slow fallback interval otherwise (a ring lost while NATS was
//! away); a watcher whose client went away ends at once. A bundle has at most
//! [`WATCHERS_PER_BUNDLE`] watchers in a replica.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Doorbell subjects: `onething.watch.coordinator.<bundle id>`.
pub const DOORBELL: &str = "onething.watch.coordinator";

/// Watchers of one bundle in one replica, at most (an applicant's tabs, a clerk's screen).
pub const WATCHERS_PER_BUNDLE: usize = 16;

/// Rings waiting to go out to the other replicas, at most; past it a ring is dropped (the
/// watchers there read at their fallback interval).
const RINGS_QUEUED: usize = 1024;

/// The header naming the replica that rang, so it does not hear itself twice.
const RANG_BY: &str = "onething-replica";

/// A bundle's bell: a counter its watchers see move, and how many watch it.
struct Bell {
    rung: watch::Sender<u64>,
    watchers: usize,
}

/// Rings for changed bundles.
#[derive(Clone)]
pub struct Changes {
    bells: Arc<Mutex<HashMap<String, Bell>>>,
    out: Option<mpsc::Sender<String>>,
    nats: Option<async_nats::Client>,
    replica: String,
    /// How long a watcher waits for a ring before reading its bundle anyway.
    fallback: Duration,
}

impl Default for Changes {
    fn default() -> Self {
        Self::new(None, Duration::from_secs(5))
    }
}

/// One watcher of one bundle; its place is given back when dropped.
pub struct Watcher {
    rung: watch::Receiver<u64>,
    fallback: Duration,
    id: String,
    bells: Arc<Mutex<HashMap<String, Bell>>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let mut bells = self.bells.lock().expect("bells");
        if let Some(b) = bells.get_mut(&self.id) {
            b.watchers -= 1;
            if b.watchers == 0 {
                bells.remove(&self.id);
            }
        }
    }
}

impl Changes {
    /// Rings within this process and, with `nats`, to the other replicas (through one task
    /// started by [`Changes::listen`]); a watcher that heard nothing for `fallback` reads
    /// its bundle anyway.
    pub fn new(nats: Option<async_nats::Client>, fallback: Duration) -> Self {
        let replica = uuid::Uuid::now_v7().to_string();
        let out = nats.as_ref().map(|n| {
            let (tx, mut rx) = mpsc::channel::<String>(RINGS_QUEUED);
            let (n, replica) = (n.clone(), replica.clone());
            tokio::spawn(async move {
                while let Some(id) = rx.recv().await {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert(RANG_BY, replica.as_str());
                    let _ = n.publish_with_headers(format!("{DOORBELL}.{id}"), headers, bytes::Bytes::new()).await;
                }
            });
            tx
        });
        Self { bells: Arc::new(Mutex::new(HashMap::new())), out, nats, replica, fallback }
    }

    fn ring_here(&self, id: &str) {
        if let Some(b) = self.bells.lock().expect("bells").get(id) {
            b.rung.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Bundle `id` changed (its write committed).
    pub fn changed(&self, id: &str) {
        self.ring_here(id);
        if let Some(out) = &self.out {
            // A hint: when the queue is full it is dropped, not waited for.
            let _ = out.try_send(id.to_string());
        }
    }

    /// A watcher of bundle `id`, or `None` when it has [`WATCHERS_PER_BUNDLE`] already.
    pub fn watch(&self, id: &str) -> Option<Watcher> {
        let mut bells = self.bells.lock().expect("bells");
        let bell = bells.entry(id.to_string()).or_insert_with(|| Bell { rung: watch::channel(0).0, watchers: 0 });
        if bell.watchers >= WATCHERS_PER_BUNDLE {
            return None;
        }
        bell.watchers += 1;
        Some(Watcher {
            rung: bell.rung.subscribe(),
            fallback: self.fallback,
            id: id.to_string(),
            bells: self.bells.clone(),
        })
    }

    /// Passes the other replicas' rings to this process's watchers until `stop`.
    pub async fn listen(self, stop: CancellationToken) {
        use futures::StreamExt;
        let Some(nats) = self.nats.clone() else { return };
        let prefix = format!("{DOORBELL}.");
        loop {
            match nats.subscribe(format!("{DOORBELL}.*")).await {
                Ok(mut rings) => loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        ring = rings.next() => match ring {
                            Some(m) => {
                                let mine = m.headers.as_ref().and_then(|h| h.get(RANG_BY)).is_some_and(|r| r.as_str() == self.replica);
                                if let (false, Some(id)) = (mine, m.subject.as_str().strip_prefix(&prefix)) {
                                    self.ring_here(id);
                                }
                            }
                            None => break,
                        },
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot hear other replicas' bundle changes; watchers fall back to reading")
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

impl Watcher {
    /// Waits until the bundle rang (since the last wait), the fallback interval passed, or
    /// `gone` resolved (the watcher's client went away): `false` then.
    pub async fn next_change(&mut self, gone: impl Future<Output = ()>) -> bool {
        tokio::select! {
            _ = gone => false,
            _ = self.rung.changed() => true,
            _ = tokio::time::sleep(self.fallback) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_watcher_wakes_for_its_bundle_only_and_ends_with_its_client() {
        let changes = Changes::default();
        let mut w = changes.watch("mine").unwrap();
        let mut other = changes.watch("other").unwrap();
        changes.changed("mine");
        let woke = tokio::time::timeout(Duration::from_secs(1), w.next_change(std::future::pending()));
        assert_eq!(woke.await, Ok(true), "its own ring wakes it");
        let quiet = tokio::time::timeout(Duration::from_millis(200), other.next_change(std::future::pending()));
        assert!(quiet.await.is_err(), "another bundle's ring does not");
        // A ring between two waits is not lost.
        changes.changed("mine");
        let later = tokio::time::timeout(Duration::from_secs(1), w.next_change(std::future::pending()));
        assert_eq!(later.await, Ok(true));
        // The client went away: the wait ends at once, without reading anything.
        let (tx, rx) = tokio::sync::mpsc::channel::<()>(1);
        drop(rx);
        let ended = tokio::time::timeout(Duration::from_secs(1), w.next_change(tx.closed()));
        assert_eq!(ended.await, Ok(false));
    }

    #[tokio::test]
    async fn a_bundle_has_a_bounded_number_of_watchers() {
        let changes = Changes::default();
        let all: Vec<Watcher> = (0..WATCHERS_PER_BUNDLE).map(|_| changes.watch("b").unwrap()).collect();
        assert!(changes.watch("b").is_none());
        drop(all);
        let again = changes.watch("b");
        assert!(again.is_some(), "places are given back");
        assert_eq!(changes.bells.lock().unwrap().len(), 1);
        drop(again);
        assert!(changes.bells.lock().unwrap().is_empty(), "a bundle no one watches has no bell");
    }
}
