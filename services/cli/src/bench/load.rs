//! The load: `enterprise_opening` bundles (seal filing at liaison, collective household at
//! household, vehicle verification at vehicle: three automatic steps) submitted through the
//! coordinator's public gRPC API, each by its own new enterprise with its own token.
//! A bundle is complete when its `bundle.completed` event arrives on NATS, as any
//! subscribing department would learn it; latency is submit call to that event.
//!
//! Two shapes: closed loop (N applicants, each submitting again as soon as its bundle
//! finished) for the concurrency sweep, and open loop (a fixed arrival rate, whatever the
//! mesh does) for the latency at a given throughput.

use anyhow::Context as _;
use futures::StreamExt;
use onething_platform::{
    auth::{DevKeys, Minter, Principal, SubjectKind},
    catalog::Catalog,
    elicence::DevIssuers,
    ids::{CitizenId, CreditCode},
};
use onething_proto::{
    common as cpb,
    coordinator::{self as pb, bundle_service_client::BundleServiceClient},
};
use prost::Message as _;
use serde::Serialize;
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// How long one bundle may take before it counts as failed.
const BUNDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How a bundle ended, as its event said.
type Ended = (Instant, i32);

#[derive(Default)]
struct Waiting {
    /// Bundles submitted, waiting for their final event.
    waiters: HashMap<String, oneshot::Sender<Ended>>,
    /// Final events that came before the submit's answer did.
    early: HashMap<String, Ended>,
}

/// Submits bundles and learns their completion.
#[derive(Clone)]
pub struct Driver {
    client: BundleServiceClient<Channel>,
    applicants: Arc<Applicants>,
    waiting: Arc<Mutex<Waiting>>,
    next: Arc<AtomicU64>,
    run: String,
}

/// What one bundle did.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Completed after this long.
    Completed(Duration),
    /// Submit refused, bundle failed, or no end within the timeout.
    Failed(String),
}

impl Driver {
    /// Connects to the coordinator at `endpoint` and subscribes to bundle events on `nats_url`.
    ///
    /// # Errors
    /// The coordinator or NATS is unreachable.
    pub async fn connect(endpoint: &str, nats_url: &str, applicants: Applicants) -> anyhow::Result<Self> {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())?
            .connect()
            .await
            .context("connecting to the coordinator")?;
        let nats = async_nats::connect(nats_url).await.context("connecting to NATS")?;
        let mut events = nats.subscribe("onething.coordinator.v1.bundle.>").await?;
        let waiting = Arc::new(Mutex::new(Waiting::default()));
        let w = waiting.clone();
        tokio::spawn(async move {
            let _keep = nats;
            while let Some(msg) = events.next().await {
                let at = Instant::now();
                let Ok(b) = pb::BundleChanged::decode(msg.payload) else { continue };
                if b.state() == pb::BundleState::Running {
                    continue;
                }
                let mut w = w.lock().expect("waiting list");
                match w.waiters.remove(&b.bundle_id) {
                    Some(tx) => {
                        let _ = tx.send((at, b.state));
                    }
                    None => {
                        w.early.insert(b.bundle_id, (at, b.state));
                    }
                }
            }
        });
        let run = format!("{:02}", uuid::Uuid::now_v7().as_u128() % 100);
        Ok(Self {
            client: BundleServiceClient::new(channel),
            applicants: Arc::new(applicants),
            waiting,
            next: Arc::new(AtomicU64::new(1)),
            run,
        })
    }

    /// Submits one bundle as a new enterprise and waits for its end.
    pub async fn one(&self) -> Outcome {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let (request, token) = match self.applicants.opening(&self.run, n) {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(format!("building the request: {e:#}")),
        };
        let mut req = tonic::Request::new(request);
        match format!("Bearer {token}").parse() {
            Ok(v) => {
                req.metadata_mut().insert("authorization", v);
            }
            Err(_) => return Outcome::Failed("token is not ASCII".into()),
        }
        let start = Instant::now();
        let submitted = self.client.clone().submit_bundle(req).await;
        let id = match submitted.map(|r| r.into_inner().bundle) {
            Ok(Some(b)) => b.bundle_id,
            Ok(None) => return Outcome::Failed("submit returned no bundle".into()),
            Err(s) => return Outcome::Failed(format!("submit: {:?} {}", s.code(), s.message())),
        };
        let rx = {
            let mut w = self.waiting.lock().expect("waiting list");
            if let Some(ended) = w.early.remove(&id) {
                return outcome(start, ended);
            }
            let (tx, rx) = oneshot::channel();
            w.waiters.insert(id.clone(), tx);
            rx
        };
        match tokio::time::timeout(BUNDLE_TIMEOUT, rx).await {
            Ok(Ok(ended)) => outcome(start, ended),
            _ => {
                self.waiting.lock().expect("waiting list").waiters.remove(&id);
                Outcome::Failed("no final event within the timeout".into())
            }
        }
    }

    /// Bundles submitted so far.
    pub fn submitted(&self) -> u64 {
        self.next.load(Ordering::Relaxed) - 1
    }
}

/// The applicants of a load: tokens signed with the development keys, and the e-licences
/// each bundle's steps weigh (the new enterprise's 电子营业执照, its legal representative's ID
/// card, its premises' property certificate) signed by the development issuers, which the
/// services started by [`super::mesh::Services`] trust.
pub struct Applicants {
    minter: Minter,
    issuers: DevIssuers,
    catalog: Catalog,
}

impl Applicants {
    /// The applicants of the development keys `keys` and the issuers beside them.
    ///
    /// # Errors
    /// Keys that cannot be read or made.
    pub fn new(keys: &DevKeys) -> anyhow::Result<Self> {
        Ok(Self {
            minter: Minter::load(&keys.signing_key, Default::default())?,
            issuers: onething_platform::elicence::ensure_dev_issuers(keys.folder())?,
            catalog: Catalog::load("")?,
        })
    }

    /// The `n`-th 企业开办 bundle of run `run` (two digits), with the token of its applicant:
    /// a new enterprise per bundle (its first seal filing puts it on record) with the
    /// verified e-licences its steps weigh, and a legal representative with a valid ID number.
    ///
    /// # Errors
    /// A token or licence that cannot be signed.
    pub fn opening(&self, run: &str, n: u64) -> anyhow::Result<(pb::SubmitBundleRequest, String)> {
        let (mut request, token) = opening(&self.minter, run, n)?;
        self.issuers.attach_to_bundle(&self.catalog, &mut request)?;
        Ok((request, token))
    }
}

fn opening(minter: &Minter, run: &str, n: u64) -> anyhow::Result<(pb::SubmitBundleRequest, String)> {
    let code = CreditCode::complete(&format!("91371002{run}{:07}", n % 10_000_000))?.to_string();
    let born = chrono::NaiveDate::from_ymd_opt(1980, 1, 1).unwrap_or_default() + chrono::Days::new(n % 9000);
    let rep = CitizenId::assign("371002", born, u16::try_from(n % 999 + 1).unwrap_or(1))?;
    let token = minter.mint(
        Principal {
            sub: format!("bench-enterprise-{n}"),
            kind: SubjectKind::Enterprise,
            dept: String::new(),
            roles: Vec::new(),
            id_number: String::new(),
            credit_code: code.clone(),
            passport_number: String::new(),
            actor: None,
        },
        3600,
    )?;
    let form = [
        ("seal_kinds", "official,finance"),
        ("engraving_company", "威海示例刻章店"),
        ("legal_representative_id_number", rep.expose()),
        ("premises_address", "威海市环翠区示例园区9号"),
    ];
    let materials =
        ["business_licence", "seal_imprints", "legal_representative_id_card", "premises_property_certificate"];
    let name = format!("威海基准测试企业{n}");
    Ok((
        pb::SubmitBundleRequest {
            code: "enterprise_opening".into(),
            applicant: Some(cpb::Applicant {
                kind: cpb::ApplicantKind::Enterprise as i32,
                identifier: code,
                name,
                phone: String::new(),
            }),
            form: form.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect(),
            materials: materials
                .iter()
                .map(|m| cpb::Material {
                    code: (*m).into(),
                    document_uri: format!("oss://bench/{n}/{m}.pdf"),
                    ..Default::default()
                })
                .collect(),
            optional_steps: vec!["collective_household".into(), "vehicle_verification".into()],
            idempotency_key: format!("bench-{run}-{n}"),
        },
        token,
    ))
}

fn outcome(start: Instant, (at, state): Ended) -> Outcome {
    if state == pb::BundleState::Completed as i32 {
        Outcome::Completed(at.saturating_duration_since(start))
    } else {
        Outcome::Failed(format!("bundle ended {:?}", pb::BundleState::try_from(state).unwrap_or_default()))
    }
}

/// What a phase of load did.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// Closed loop: concurrent applicants. Open loop: 0.
    pub concurrency: usize,
    /// Open loop: the arrival rate asked for (bundles per second). Closed loop: 0.
    pub offered_per_second: f64,
    /// Bundles completed.
    pub completed: usize,
    /// Bundles that did not complete (refused, failed or timed out).
    pub failed: usize,
    /// Seconds from the first submit to the last end.
    pub seconds: f64,
    /// Completed bundles per second.
    pub bundles_per_second: f64,
    /// Submit-to-completed latency percentiles, milliseconds.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// The first few failure reasons, for the reader.
    pub failures: Vec<String>,
    /// CPU and memory of each process during the phase.
    pub processes: Vec<super::procs::Usage>,
    /// The whole machine's CPU per completed bundle, milliseconds (0 when none completed).
    pub cpu_ms_per_bundle: f64,
}

/// How long a phase runs: until `for_` has passed, or `bundles` were submitted if given.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// Wall-clock length.
    pub for_: Duration,
    /// At most this many bundles (a smoke run's handful).
    pub bundles: Option<usize>,
}

/// Closed loop with `concurrency` applicants.
pub async fn closed(driver: &Driver, concurrency: usize, limit: Limit) -> (Vec<Outcome>, f64) {
    let start = Instant::now();
    let budget = Arc::new(AtomicU64::new(limit.bundles.map_or(u64::MAX, |b| b as u64)));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (driver, budget) = (driver.clone(), budget.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            while start.elapsed() < limit.for_
                && budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1)).is_ok()
            {
                out.push(driver.one().await);
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    (all, start.elapsed().as_secs_f64())
}

/// Open loop: bundles arrive at `rate` per second, evenly spaced.
pub async fn open(driver: &Driver, rate: f64, limit: Limit) -> (Vec<Outcome>, f64) {
    let start = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / rate.max(0.1));
    let mut tick = tokio::time::interval(gap);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    let mut sent = 0usize;
    while start.elapsed() < limit.for_ && limit.bundles.is_none_or(|b| sent < b) {
        tick.tick().await;
        let driver = driver.clone();
        tasks.push(tokio::spawn(async move { driver.one().await }));
        sent += 1;
    }
    let mut all = Vec::new();
    for t in tasks {
        all.push(t.await.unwrap_or_else(|e| Outcome::Failed(format!("task: {e}"))));
    }
    (all, start.elapsed().as_secs_f64())
}

/// Summarises outcomes of a phase that took `seconds`.
pub fn summarise(
    concurrency: usize,
    offered: f64,
    outcomes: &[Outcome],
    seconds: f64,
    processes: Vec<super::procs::Usage>,
) -> Phase {
    let mut ms: Vec<f64> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Completed(d) => Some(d.as_secs_f64() * 1000.0),
            Outcome::Failed(_) => None,
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let failures: Vec<String> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Failed(why) => Some(why.clone()),
            Outcome::Completed(_) => None,
        })
        .collect();
    let per_second = ms.len() as f64 / seconds.max(1e-3);
    Phase {
        concurrency,
        offered_per_second: round(offered),
        completed: ms.len(),
        failed: failures.len(),
        seconds: round(seconds),
        bundles_per_second: round(per_second),
        p50_ms: round(percentile(&ms, 0.50)),
        p95_ms: round(percentile(&ms, 0.95)),
        p99_ms: round(percentile(&ms, 0.99)),
        max_ms: round(ms.last().copied().unwrap_or(0.0)),
        failures: failures.into_iter().take(5).collect(),
        cpu_ms_per_bundle: round(cpu_ms_each(machine_cpu(&processes), per_second)),
        processes,
    }
}

/// The whole machine's CPU, percent of one core, from a phase's usage (its last line).
pub fn machine_cpu(processes: &[super::procs::Usage]) -> f64 {
    processes.last().map_or(0.0, |u| u.cpu_percent)
}

/// Milliseconds of CPU per unit of work: `cpu_percent` of one core spent on `per_second`
/// units a second (0 when nothing was done).
pub fn cpu_ms_each(cpu_percent: f64, per_second: f64) -> f64 {
    if per_second > 0.0 { cpu_percent * 10.0 / per_second } else { 0.0 }
}

/// The `q` quantile of sorted values (nearest rank); 0 for none.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Two decimals.
pub fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.50), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn a_phase_counts_what_completed_and_what_failed() {
        let o = [
            Outcome::Completed(Duration::from_millis(10)),
            Outcome::Completed(Duration::from_millis(30)),
            Outcome::Failed("submit: Unavailable".into()),
        ];
        let p = summarise(2, 0.0, &o, 2.0, Vec::new());
        assert_eq!((p.completed, p.failed, p.bundles_per_second), (2, 1, 1.0));
        assert_eq!((p.p50_ms, p.max_ms), (10.0, 30.0));
        assert_eq!(p.failures, ["submit: Unavailable"]);
    }
}
