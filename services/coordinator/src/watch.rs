//! Bundle changes, for `WatchBundle`: every write of a bundle this replica commits rings
//! here, and rings the other replicas over a NATS doorbell subject (core NATS, outside every
//! stream: a hint, carrying only the bundle id). A watcher wakes on its bundle's ring and
//! reads it once; without rings (a doorbell lost while NATS was away) it reads it at a slow
//! fallback interval. A watcher whose client went away ends at once.

use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Doorbell subjects: `onething.watch.coordinator.<bundle id>`.
pub const DOORBELL: &str = "onething.watch.coordinator";

/// How often a watcher reads its bundle when nothing rang.
pub const FALLBACK: Duration = Duration::from_secs(5);

/// The header naming the replica that rang, so it does not hear itself twice.
const RANG_BY: &str = "onething-replica";

/// Rings for changed bundles.
#[derive(Clone)]
pub struct Changes {
    local: broadcast::Sender<String>,
    nats: Option<async_nats::Client>,
    replica: String,
}

impl Default for Changes {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Changes {
    /// Rings within this process and, with `nats`, to the other replicas.
    pub fn new(nats: Option<async_nats::Client>) -> Self {
        let (local, _) = broadcast::channel(1024);
        Self { local, nats, replica: uuid::Uuid::now_v7().to_string() }
    }

    /// Bundle `id` changed (its write committed).
    pub fn changed(&self, id: &str) {
        let _ = self.local.send(id.to_string());
        if let Some(nats) = &self.nats {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(RANG_BY, self.replica.as_str());
            let (nats, subject) = (nats.clone(), format!("{DOORBELL}.{id}"));
            // A hint: a lost ring only delays a watcher until its fallback read.
            tokio::spawn(async move {
                let _ = nats.publish_with_headers(subject, headers, bytes::Bytes::new()).await;
            });
        }
    }

    /// Rings from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.local.subscribe()
    }

    /// Passes the other replicas' rings to this process's watchers until `stop`.
    pub async fn listen(self, stop: CancellationToken) {
        use futures::StreamExt;
        let Some(nats) = self.nats.clone() else { return };
        loop {
            match nats.subscribe(format!("{DOORBELL}.*")).await {
                Ok(mut rings) => loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        ring = rings.next() => match ring {
                            Some(m) => {
                                let mine = m.headers.as_ref().and_then(|h| h.get(RANG_BY)).is_some_and(|r| r.as_str() == self.replica);
                                if let (false, Some(id)) = (mine, m.subject.as_str().strip_prefix(&format!("{DOORBELL}."))) {
                                    let _ = self.local.send(id.to_string());
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

/// Waits until bundle `id` rang, the fallback interval passed, or `gone` resolved (the
/// watcher's client went away): `false` then.
pub async fn next_change(rings: &mut broadcast::Receiver<String>, id: &str, gone: impl Future<Output = ()>) -> bool {
    let ring = async {
        loop {
            match rings.recv().await {
                Ok(changed) if changed == id => return,
                Ok(_) => {}
                // Rings were missed: one of them may have been ours.
                Err(broadcast::error::RecvError::Lagged(_)) => return,
                Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    };
    tokio::select! {
        _ = gone => false,
        _ = ring => true,
        _ = tokio::time::sleep(FALLBACK) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_watcher_wakes_for_its_bundle_and_ends_with_its_client() {
        let changes = Changes::default();
        let mut rings = changes.subscribe();
        changes.changed("other");
        changes.changed("mine");
        let woke =
            tokio::time::timeout(Duration::from_secs(1), next_change(&mut rings, "mine", std::future::pending()));
        assert_eq!(woke.await, Ok(true), "its own ring wakes it, another's does not end the wait");
        // The client went away: the wait ends at once, without reading anything.
        let (tx, rx) = tokio::sync::mpsc::channel::<()>(1);
        drop(rx);
        let ended = tokio::time::timeout(Duration::from_secs(1), next_change(&mut rings, "mine", tx.closed()));
        assert_eq!(ended.await, Ok(false));
    }
}
