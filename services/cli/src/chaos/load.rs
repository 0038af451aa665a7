//! The chaos run's load: applicants submitting 企业开办 bundles one after the other through
//! the coordinator's public API, whatever is down. A submit that fails because something is
//! down (UNAVAILABLE, a lost connection, a timeout) is sent again with the same idempotency
//! key until it is answered, as a client should; each bundle answered is "accepted" and
//! must complete.

use crate::bench::load::Applicants;
use onething_proto::coordinator::bundle_service_client::BundleServiceClient;
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio_util::sync::CancellationToken;

/// The applicants, running until [`Load::stop`].
pub struct Load {
    accepted: Arc<Mutex<Vec<String>>>,
    failed: Arc<Mutex<Vec<String>>>,
    refused: Arc<AtomicU64>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts `applicants` applicants, spread over the coordinator replicas at `endpoints`
    /// (each applicant sticks to one, and keeps retrying it while it is down).
    ///
    /// # Errors
    /// No endpoint, or a malformed one.
    pub fn start(endpoints: &[String], who: Applicants, applicants: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(!endpoints.is_empty(), "no coordinator to submit to");
        // Each reconnects by itself when its coordinator comes back.
        let clients = endpoints
            .iter()
            .map(|e| {
                let channel =
                    tonic::transport::Endpoint::from_shared(e.clone())?.timeout(Duration::from_secs(10)).connect_lazy();
                Ok(BundleServiceClient::new(channel))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let who = Arc::new(who);
        let run = format!("{:02}", uuid::Uuid::now_v7().as_u128() % 100);
        let next = Arc::new(AtomicU64::new(1));
        let me = Self {
            accepted: Arc::new(Mutex::new(Vec::new())),
            failed: Arc::new(Mutex::new(Vec::new())),
            refused: Arc::new(AtomicU64::new(0)),
            stop: CancellationToken::new(),
            tasks: Vec::new(),
        };
        let mut tasks = Vec::new();
        for a in 0..applicants {
            let client = clients[a % clients.len()].clone();
            let (who, run, next) = (who.clone(), run.clone(), next.clone());
            let (accepted, refused, stop) = (me.accepted.clone(), me.refused.clone(), me.stop.clone());
            let failed = me.failed.clone();
            tasks.push(tokio::spawn(async move {
                while !stop.is_cancelled() {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let Ok((request, token)) = who.opening(&run, n) else { return };
                    match submit(&client, request, &token, &refused).await {
                        Ok(id) => accepted.lock().expect("accepted bundles").push(id),
                        Err(why) => failed.lock().expect("failed submits").push(why),
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }));
        }
        Ok(Self { tasks, ..me })
    }

    /// Bundles accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.lock().expect("accepted bundles").len()
    }

    /// Submits refused for good or never answered, with why.
    pub fn failed(&self) -> Vec<String> {
        self.failed.lock().expect("failed submits").clone()
    }

    /// Submits that failed and were sent again.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Stops the applicants (each finishes the submit it is in) and returns the accepted
    /// bundles' ids.
    pub async fn stop(&self) -> Vec<String> {
        self.stop.cancel();
        for t in &self.tasks {
            while !t.is_finished() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        self.accepted.lock().expect("accepted bundles").clone()
    }
}

/// Submits `request` until answered (sending it again with its key while the mesh is
/// down), for at most two minutes. Returns the bundle's id, or why there is none (refused
/// for good, or never answered: a finding).
async fn submit(
    client: &BundleServiceClient<tonic::transport::Channel>,
    request: onething_proto::coordinator::SubmitBundleRequest,
    token: &str,
    refused: &AtomicU64,
) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while tokio::time::Instant::now() < deadline {
        let mut req = tonic::Request::new(request.clone());
        let bearer = format!("Bearer {token}").parse().map_err(|_| "a token that is not ASCII".to_string())?;
        req.metadata_mut().insert("authorization", bearer);
        match client.clone().submit_bundle(req).await {
            Ok(r) => {
                return r.into_inner().bundle.map(|b| b.bundle_id).ok_or_else(|| "a submit answered no bundle".into());
            }
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::Unavailable
                        | tonic::Code::Unknown
                        | tonic::Code::DeadlineExceeded
                        | tonic::Code::Aborted
                        | tonic::Code::Cancelled
                ) =>
            {
                refused.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(s) => return Err(format!("a submit was refused: {:?} {}", s.code(), s.message())),
        }
    }
    Err("a submit was not answered within two minutes".into())
}
