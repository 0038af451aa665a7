//! A three-node JetStream cluster on loopback, each node started from
//! deploy/nats/cluster.conf as production runs it (only addresses, ports and the store
//! folder are local), and the whole mesh on streams of three replicas. Under a stream of
//! bundles from several applicants, a node that leads streams is killed (SIGKILL) and comes
//! back on its ports and store: every bundle completes, each department holds one case per
//! step, and no event is twice in a stream.

use crate::{
    bundles::{after_death, applicant, finished, submit},
    common::*,
};
use async_nats::jetstream;
use onething_platform::{config::Settings, ids::CreditCode};
use onething_proto::{
    common as cpb,
    coordinator::{self as pb, BundleState, bundle_service_client::BundleServiceClient},
};
use std::{
    collections::{BTreeMap, HashSet},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio_util::sync::CancellationToken;

const DEPARTMENTS: [&str; 4] = onething_platform::service_kind::DEPARTMENT_NAMES;
/// Every service's stream, each service's user its own.
const STREAMS: [(&str, &str); 5] = [
    ("household", "ONETHING_HOUSEHOLD"),
    ("exit_entry", "ONETHING_EXIT_ENTRY"),
    ("vehicle", "ONETHING_VEHICLE"),
    ("liaison", "ONETHING_LIAISON"),
    ("coordinator", "ONETHING_COORDINATOR"),
];

/// One nats-server of the cluster; its ports and store outlive a kill.
struct Node {
    name: String,
    client_port: u16,
    route_port: u16,
    http_port: u16,
    store: tempfile::TempDir,
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }

    fn spawn(&mut self, routes: &str) {
        let conf = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats/cluster.conf");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("node log");
        let mut cmd = Command::new(nats_server_bin());
        cmd.arg("-c").arg(conf).env("NODE_NAME", &self.name).env("NATS_STORE_DIR", self.store.path());
        for user in NATS_USERS {
            cmd.env(format!("NATS_{}_PASSWORD", user.to_ascii_uppercase()), nats_password(user));
        }
        let child = cmd
            .args(["-a", "127.0.0.1", "-p", &self.client_port.to_string(), "-m", &self.http_port.to_string()])
            .args(["--cluster", &format!("nats://127.0.0.1:{}", self.route_port), "--routes", routes])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e} (run `make tools`)", nats_server_bin().display()));
        self.child = Some(child);
    }

    /// SIGKILL, as a node lost with its machine.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Status and body of a monitoring endpoint, e.g. `/healthz`.
    async fn monitor(&self, path: &str) -> Option<(u16, String)> {
        http_get(&format!("127.0.0.1:{}", self.http_port), path).await
    }
}

/// Three nodes routed to one another, as the production StatefulSet.
struct Cluster {
    nodes: Vec<Node>,
    _logs: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Self {
        let logs = tempfile::tempdir().expect("log folder");
        let mut ports = HashSet::new();
        while ports.len() < 9 {
            ports.insert(free_port());
        }
        let ports: Vec<u16> = ports.into_iter().collect();
        let nodes = (0..3)
            .map(|i| Node {
                name: format!("n{}", i + 1),
                client_port: ports[3 * i],
                route_port: ports[3 * i + 1],
                http_port: ports[3 * i + 2],
                store: tempfile::tempdir().expect("node store"),
                log: logs.path().join(format!("n{}.log", i + 1)),
                child: None,
            })
            .collect();
        let mut c = Self { nodes, _logs: logs };
        let routes = c.routes();
        for n in &mut c.nodes {
            n.spawn(&routes);
        }
        c.healthy().await;
        c
    }

    /// Every node's route URL, the same list on every node as in cluster.conf.
    fn routes(&self) -> String {
        self.nodes.iter().map(|n| format!("nats://127.0.0.1:{}", n.route_port)).collect::<Vec<_>>().join(",")
    }

    /// The client URLs of all nodes, comma separated, as the services are configured.
    fn url(&self) -> String {
        self.nodes.iter().map(Node::url).collect::<Vec<_>>().join(",")
    }

    fn node(&mut self, name: &str) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.name == name).expect("a node of the cluster")
    }

    /// Waits until every running node is healthy (current with the meta leader and with
    /// the streams and consumers it replicates) and they agree on a running meta leader,
    /// which it returns.
    async fn healthy(&self) -> String {
        let running: Vec<&Node> = self.nodes.iter().filter(|n| n.child.is_some()).collect();
        eventually(Duration::from_secs(30), "the cluster to be healthy with one meta leader", || async {
            let mut leaders = HashSet::new();
            for n in &running {
                if n.monitor("/healthz").await?.0 != 200 {
                    return None;
                }
                let jsz: serde_json::Value = serde_json::from_str(&n.monitor("/jsz").await?.1).ok()?;
                let meta = &jsz["meta_cluster"];
                if meta["cluster_size"] != 3 {
                    return None;
                }
                leaders.insert(meta["leader"].as_str().filter(|l| !l.is_empty())?.to_string());
            }
            if leaders.len() != 1 {
                return None;
            }
            let leader = leaders.into_iter().next()?;
            running.iter().any(|n| n.name == leader).then_some(leader)
        })
        .await
        .unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
        if std::thread::panicking() {
            for n in &self.nodes {
                let log = std::fs::read_to_string(&n.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- {} (last lines)\n{}", n.name, tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            }
        }
    }
}

/// The mesh on the cluster: every department and one coordinator, each as its own NATS
/// user, listing all three nodes, creating its stream with three replicas.
struct Mesh {
    services: Vec<Running>,
    coordinator: String,
    dbs: BTreeMap<&'static str, sea_orm::DatabaseConnection>,
    _held: Vec<TestDb>,
}

fn settings(db: &TestDb, cluster: &Cluster, user: &str) -> Settings {
    let mut s = test_settings(&db.url, &cluster.url());
    s.nats.user = user.into();
    s.nats.password = nats_password(user);
    s.nats.stream_replicas = 3;
    s
}

impl Mesh {
    async fn start(backend: Backend, cluster: &Cluster) -> Option<Self> {
        let (mut services, mut dbs, mut held) = (Vec::new(), BTreeMap::new(), Vec::new());
        let mut peers = BTreeMap::new();
        for d in DEPARTMENTS {
            let db = TestDb::fresh(backend).await?;
            let running = start_named(d, settings(&db, cluster, d)).await;
            peers.insert(d.to_string(), running.endpoint());
            dbs.insert(d, running.db.clone());
            services.push(running);
            held.push(db);
        }
        let db = TestDb::fresh(backend).await?;
        let mut s = settings(&db, cluster, "coordinator");
        s.peers = peers;
        let coordinator = start_named("coordinator", s).await;
        let endpoint = coordinator.endpoint();
        dbs.insert("coordinator", coordinator.db.clone());
        services.push(coordinator);
        held.push(db);
        Some(Self { services, coordinator: endpoint, dbs, _held: held })
    }

    /// The bundle service as supervision, which reads every bundle.
    async fn reader(&self) -> BundleServiceClient<Authed> {
        BundleServiceClient::new(connect_as(&self.coordinator, Some(&staff("supervision", &[]))).await)
    }

    async fn stop(self) {
        for s in self.services.into_iter().rev() {
            s.stop().await;
        }
    }
}

/// The applications of the test, in turn: 企业开办 by a new enterprise each time (three
/// departments), 公民身后 for each seeded person who may die (household's death fact gates
/// vehicle and exit-entry), 退休 by the same retiree again and again.
#[derive(Default)]
struct Applicants {
    next: usize,
}

/// The seeded people the test's 公民身后 bundles report dead, one bundle each, with the
/// member of their household who reports the death (and their name).
fn mortals() -> Vec<(String, String, &'static str)> {
    let id = |region, born, seq| {
        onething_household::store::seed_id(region, born, seq).expect("seed id").expose().to_string()
    };
    vec![
        (id("371003", "1949-09-09", 62), id("371003", "1976-12-12", 71), "周强"),
        (id("371002", "1983-05-09", 51), id("371002", "1985-11-30", 42), "赵海燕"),
        (id("371002", "1991-07-02", 22), id("371002", "1990-03-15", 11), "王建国"),
    ]
}

impl Applicants {
    /// The next request and its applicant's token.
    fn next(&mut self) -> (pb::SubmitBundleRequest, String) {
        let n = self.next;
        self.next += 1;
        let key = format!("cluster-{n}");
        let deaths = mortals();
        match n % 4 {
            2 if n / 4 < deaths.len() => {
                let (dead, relative, name) = &deaths[n / 4];
                let who = applicant(cpb::ApplicantKind::Citizen, relative, name);
                (after_death(who, dead, &format!("SW-2026-09{n:02}"), &key), citizen_token(relative))
            }
            3 => {
                let retiree = onething_household::store::seed_id("371002", "1958-01-20", 31)
                    .expect("seed id")
                    .expose()
                    .to_string();
                let who = applicant(cpb::ApplicantKind::Citizen, &retiree, "王德福");
                (submit("retirement", who, &[("subject_id_number", &retiree)], &[], &[], &key), citizen_token(&retiree))
            }
            _ => {
                let code = CreditCode::complete(&format!("91371002MA3D{n:05}")).expect("credit code").to_string();
                let who = applicant(cpb::ApplicantKind::Enterprise, &code, &format!("威海集群测试企业{n}"));
                let req = submit(
                    "enterprise_opening",
                    who,
                    &[
                        ("seal_kinds", "official"),
                        ("engraving_company", "威海示例刻章店"),
                        ("legal_representative_id_number", &seeded_parent()),
                        ("premises_address", "威海市环翠区示例园区9号"),
                    ],
                    &[
                        "business_licence",
                        "seal_imprints",
                        "legal_representative_id_card",
                        "premises_property_certificate",
                    ],
                    &["collective_household", "vehicle_verification"],
                    &key,
                );
                (req, enterprise_token(&code))
            }
        }
    }
}

/// The ids of the bundles submitted so far.
type Submitted = Arc<Mutex<Vec<String>>>;

async fn submit_one(endpoint: &str, applicants: &mut Applicants, into: &Submitted) {
    let (req, token) = applicants.next();
    let mut c = BundleServiceClient::new(connect_as(endpoint, Some(&token)).await);
    let b = c.submit_bundle(req).await.expect("the coordinator accepts the bundle").into_inner().bundle.unwrap();
    into.lock().unwrap().push(b.bundle_id);
}

/// Submits one application every 200 ms until `stop`.
async fn keep_submitting(endpoint: String, mut applicants: Applicants, into: Submitted, stop: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => submit_one(&endpoint, &mut applicants, &into).await,
        }
    }
}

async fn is_completed(reader: &mut BundleServiceClient<Authed>, id: &str) -> bool {
    reader
        .get_bundle(pb::GetBundleRequest { bundle_id: id.to_string() })
        .await
        .ok()
        .and_then(|r| r.into_inner().bundle)
        .is_some_and(|b| b.state() == BundleState::Completed)
}

/// JetStream on every node for each stream, as the stream's own service (the user that may
/// read its stream's information and messages back).
type Inspector = BTreeMap<&'static str, jetstream::Context>;

async fn inspector(cluster: &Cluster) -> Inspector {
    let urls: Vec<String> = cluster.nodes.iter().map(Node::url).collect();
    let mut by_stream = BTreeMap::new();
    for (service, stream) in STREAMS {
        let client = async_nats::ConnectOptions::with_user_and_password(service.into(), nats_password(service))
            .custom_inbox_prefix(onething_platform::events::nats::inbox_prefix(service))
            .connect(urls.clone())
            .await
            .unwrap_or_else(|e| panic!("connect as {service}: {e}"));
        let mut js = jetstream::new(client);
        // Requests to a stream whose leader just died go unanswered until the next election.
        js.set_timeout(Duration::from_secs(1));
        by_stream.insert(stream, js);
    }
    by_stream
}

/// Each stream's leader, once every stream has one and all its replicas are current.
async fn stream_leaders(js: &Inspector, not: Option<&str>) -> BTreeMap<&'static str, String> {
    eventually(Duration::from_secs(30), "every stream to have a leader and current replicas", || async {
        let mut leaders = BTreeMap::new();
        for (_, name) in STREAMS {
            let info = js[name].get_stream(name).await.ok()?.get_info().await.ok()?;
            let cluster = info.cluster?;
            let leader = cluster.leader.filter(|l| !l.is_empty() && Some(l.as_str()) != not)?;
            let up = cluster.replicas.iter().filter(|p| p.current && !p.offline).count();
            // Without the killed node a stream has one follower left.
            if info.config.num_replicas != 3 || up < if not.is_some() { 1 } else { 2 } {
                return None;
            }
            leaders.insert(name, leader);
        }
        Some(leaders)
    })
    .await
    .unwrap()
}

/// Every event id in `stream` in order, and the events that repeat a case's (or a bundle's)
/// state change under another id.
async fn stream_events(js: &jetstream::Context, stream: &str) -> (Vec<String>, Vec<String>) {
    let s = js.get_stream(stream).await.unwrap();
    let state = s.get_info().await.unwrap().state;
    let (mut ids, mut seen, mut repeated) = (Vec::new(), HashSet::new(), Vec::new());
    for seq in state.first_sequence..=state.last_sequence {
        let m = s.get_raw_message(seq).await.unwrap();
        let header = |h: &str| m.headers.get(h).map(|v| v.as_str().to_string()).unwrap_or_default();
        let (msg_id, ce_id) = (header("Nats-Msg-Id"), header("ce-id"));
        assert!(!ce_id.is_empty() && msg_id == ce_id, "{stream} #{seq}: Nats-Msg-Id {msg_id:?}, ce-id {ce_id:?}");
        ids.push(ce_id);
        let what = format!("{} {}", m.subject, header("ce-subject"));
        // No case of these bundles passes through a state twice, and a bundle completes
        // once: a second such event, under a new id, would be an effect applied twice.
        let once = m.subject.contains(".case.") || m.subject.ends_with(".bundle.completed");
        if once && !seen.insert(what.clone()) {
            repeated.push(what);
        }
    }
    (ids, repeated)
}

/// The event ids of a service's outbox (only the unsent ones with `unsent`), in order.
async fn outbox_ids(db: &sea_orm::DatabaseConnection, unsent: bool) -> Vec<String> {
    use sea_orm::{ConnectionTrait, Statement};
    let filter = if unsent { "WHERE sent_at IS NULL" } else { "" };
    let sql = format!("SELECT event_id FROM outbox {filter} ORDER BY seq");
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.expect("outbox query");
    rows.iter().map(|r| r.try_get("", "event_id").unwrap()).collect()
}

/// The (bundle, matter) pairs that have more than one case, with how many.
async fn doubled_cases(db: &sea_orm::DatabaseConnection) -> Vec<(String, String, i64)> {
    use sea_orm::{ConnectionTrait, Statement};
    let sql =
        "SELECT bundle_id, matter_code, COUNT(*) AS n FROM cases GROUP BY bundle_id, matter_code HAVING COUNT(*) > 1";
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.expect("cases query");
    rows.iter()
        .map(|r| {
            (r.try_get("", "bundle_id").unwrap(), r.try_get("", "matter_code").unwrap(), r.try_get("", "n").unwrap())
        })
        .collect()
}

async fn a_node_lost_and_back_loses_and_doubles_nothing(backend: Backend) {
    let mut cluster = Cluster::start().await;
    let Some(mesh) = Mesh::start(backend, &cluster).await else { return };
    let js = inspector(&cluster).await;
    let mut reader = mesh.reader().await;
    let submitted: Submitted = Arc::default();
    let mut applicants = Applicants::default();

    // A first round of every kind puts the streams and the consumers in place.
    for _ in 0..4 {
        submit_one(&mesh.coordinator, &mut applicants, &submitted).await;
    }
    let first = submitted.lock().unwrap().clone();
    for id in first {
        assert_eq!(finished(&mut reader, &id).await.state(), BundleState::Completed);
    }
    let leaders = stream_leaders(&js, None).await;
    let meta = cluster.healthy().await;
    let mut led: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (stream, node) in &leaders {
        led.entry(node.as_str()).or_default().push(stream);
    }
    let (victim, its_streams) =
        led.iter().max_by_key(|(_, s)| s.len()).map(|(n, s)| (n.to_string(), s.clone())).unwrap();
    eprintln!("killing {victim} (meta leader: {meta}), leader of {its_streams:?}");

    let stop = CancellationToken::new();
    let submitter =
        tokio::spawn(keep_submitting(mesh.coordinator.clone(), applicants, submitted.clone(), stop.clone()));
    let before = submitted.lock().unwrap().len();
    eventually(Duration::from_secs(10), "bundles in flight", || async {
        (submitted.lock().unwrap().len() >= before + 2).then_some(())
    })
    .await
    .unwrap();
    cluster.node(&victim).kill();
    let at_kill = submitted.lock().unwrap().len();

    // Two nodes carry on: the streams elect other leaders and bundles keep completing.
    let during = stream_leaders(&js, Some(&victim)).await;
    let meta_after = cluster.healthy().await;
    eprintln!("without {victim}: meta leader {meta_after}, stream leaders {during:?}");
    eventually(Duration::from_secs(30), "bundles submitted during the outage to complete", || async {
        let later = submitted.lock().unwrap()[at_kill..].to_vec();
        let mut reader = reader.clone();
        let mut done = 0;
        for id in &later {
            done += usize::from(is_completed(&mut reader, id).await);
        }
        (done >= 6).then_some(())
    })
    .await
    .unwrap();

    let routes = cluster.routes();
    cluster.node(&victim).spawn(&routes);
    let at_restart = submitted.lock().unwrap().len();
    cluster.healthy().await;
    stream_leaders(&js, None).await;
    stop.cancel();
    submitter.await.unwrap();

    let all = submitted.lock().unwrap().clone();
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for id in &all {
        let b = finished(&mut reader, id).await;
        assert_eq!(b.state(), BundleState::Completed, "{id}: {:?}", b.steps);
        for s in &b.steps {
            *expected.entry(s.department.clone()).or_default() += 1;
        }
    }
    for d in DEPARTMENTS {
        let db = &mesh.dbs[d];
        assert_eq!(doubled_cases(db).await, [], "{d}: one case per step");
        assert_eq!(count(db, "cases").await, expected.get(d).copied().unwrap_or(0), "{d}: a case for every step");
    }

    // Each stream holds exactly its service's outbox: every event once, none lost.
    for (service, _) in STREAMS {
        eventually(Duration::from_secs(30), "every outbox to be published", || async {
            outbox_ids(&mesh.dbs[service], true).await.is_empty().then_some(())
        })
        .await
        .unwrap();
    }
    let mut events = BTreeMap::new();
    for (service, stream) in STREAMS {
        let (ids, repeated) = stream_events(&js[stream], stream).await;
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "{stream}: an event id twice");
        assert_eq!(repeated, Vec::<String>::new(), "{stream}: a state change published twice");
        let mut written = outbox_ids(&mesh.dbs[service], false).await;
        let mut stored = ids.clone();
        written.sort();
        stored.sort();
        assert_eq!(stored, written, "{stream} holds {service}'s outbox");
        events.insert(stream, ids.len());
    }
    eprintln!(
        "{} bundles ({} submitted while {victim} was down, {} while it came back); cases {expected:?}; events {events:?}",
        all.len(),
        at_restart - at_kill,
        all.len() - at_restart
    );
    mesh.stop().await;
}
both_backends!(a_node_lost_and_back_loses_and_doubles_nothing);
