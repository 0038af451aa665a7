//! One test mesh: a nats-server of the test's own, the services it asks for — each on a
//! fresh database of one backend, in the test's runtime, on ports they pick — and one
//! business clock they all read, which the test moves forward so a deadline passes
//! without waiting for it. Departments start first; the coordinator and supervision are
//! told where they listen. A service stopped and started again keeps its address and its
//! database, as after a crash and a restart.
//!
//! ```ignore
//! let Some(mesh) = TestMesh::with(backend).departments().coordinators(1).start().await else { return };
//! let case = mesh.cases(ServiceKind::Household, &clerk).await.get_case(req).await.case();
//! mesh.clock.advance(chrono::Duration::days(3));
//! ```

use crate::{
    db::{Backend, TestDb},
    identity::{Authed, connect_as, dev_keys},
    nats::{NatsServer, nats_password},
    service::{Running, start_named_with, test_settings},
};
use onething_platform::{clock::Clock, config::Settings, service_kind::ServiceKind};
use onething_proto::{
    common::case_service_client::CaseServiceClient, coordinator::bundle_service_client::BundleServiceClient,
    supervision::supervision_service_client::SupervisionServiceClient,
};
use std::{collections::BTreeMap, sync::Arc};

type Tweak = Arc<dyn Fn(ServiceKind, &mut Settings) + Send + Sync>;

/// What a [`TestMesh`] will run.
pub struct MeshBuilder {
    backend: Backend,
    kinds: Vec<ServiceKind>,
    coordinators: usize,
    secured: bool,
    tweak: Option<Tweak>,
    seeded: bool,
}

impl MeshBuilder {
    /// Starts the departments without their development data, as production does: they
    /// hold only what the test imports.
    #[must_use]
    pub fn unseeded(mut self) -> Self {
        self.seeded = false;
        self
    }

    /// Runs `kind` too (one replica).
    #[must_use]
    pub fn service(mut self, kind: ServiceKind) -> Self {
        if kind == ServiceKind::Coordinator {
            self.coordinators = self.coordinators.max(1);
        } else if !self.kinds.contains(&kind) {
            self.kinds.push(kind);
        }
        self
    }

    /// Runs the four departments.
    #[must_use]
    pub fn departments(self) -> Self {
        ServiceKind::DEPARTMENTS.into_iter().fold(self, Self::service)
    }

    /// Runs `n` coordinator replicas on one database.
    #[must_use]
    pub fn coordinators(mut self, n: usize) -> Self {
        self.coordinators = n;
        self
    }

    /// Runs every service: the departments, one coordinator, supervision.
    #[must_use]
    pub fn everything(self) -> Self {
        self.departments().coordinators(1).service(ServiceKind::Supervision)
    }

    /// NATS with the users and permissions of `deploy/nats/dev.conf`; each service
    /// connects as its own user.
    #[must_use]
    pub fn secured_nats(mut self) -> Self {
        self.secured = true;
        self
    }

    /// Changes each service's settings before it starts (and when it starts again).
    #[must_use]
    pub fn settings(mut self, f: impl Fn(ServiceKind, &mut Settings) + Send + Sync + 'static) -> Self {
        self.tweak = Some(Arc::new(f));
        self
    }

    /// Starts NATS, the databases and the services; `None` when PostgreSQL is not there
    /// outside CI (see [`TestDb::fresh`]).
    ///
    /// # Panics
    /// When NATS or a service does not start.
    pub async fn start(self) -> Option<TestMesh> {
        let nats = if self.secured { NatsServer::start_secured().await } else { NatsServer::start().await };
        let mut mesh = TestMesh {
            nats,
            clock: Clock::adjustable(),
            backend: self.backend,
            secured: self.secured,
            tweak: self.tweak,
            seeded: self.seeded,
            dbs: BTreeMap::new(),
            running: Vec::new(),
        };
        // Whom a service calls starts before it, so it is told where they listen.
        let mut order: Vec<ServiceKind> = self.kinds.iter().copied().filter(|k| k.is_department()).collect();
        order.sort_by_key(|k| k.calls().len());
        order.extend(std::iter::repeat_n(ServiceKind::Coordinator, self.coordinators));
        order.extend(self.kinds.iter().copied().filter(|k| *k == ServiceKind::Supervision));
        for kind in order {
            mesh.start_replica(kind).await?;
        }
        Some(mesh)
    }
}

/// A running mesh; see the module documentation.
pub struct TestMesh {
    /// The test's nats-server.
    pub nats: NatsServer,
    /// The business clock every service reads.
    pub clock: Clock,
    backend: Backend,
    secured: bool,
    tweak: Option<Tweak>,
    seeded: bool,
    dbs: BTreeMap<ServiceKind, TestDb>,
    /// Every replica started, in order; a stopped one keeps its place (and address).
    running: Vec<(ServiceKind, Running)>,
}

impl TestMesh {
    /// A mesh on `backend`, running nothing yet.
    pub fn with(backend: Backend) -> MeshBuilder {
        MeshBuilder { backend, kinds: Vec::new(), coordinators: 0, secured: false, tweak: None, seeded: true }
    }

    /// The backend every service's database is on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The settings `kind` runs with: its database, NATS (as its own user on a secured
    /// server), the test keys, its peers where they listen, the clock, the test's changes.
    pub fn settings(&self, kind: ServiceKind) -> Settings {
        let db = self.dbs.get(&kind).map_or_else(String::new, |d| d.url.clone());
        let mut s = test_settings(&db, &self.nats.url());
        s.clock = self.clock.clone();
        if self.secured {
            s.nats.user = kind.name().into();
            s.nats.password = nats_password(kind.name());
        }
        if !kind.calls().is_empty() {
            s.auth.signing_key_file = dev_keys().signing_key.display().to_string();
            for (peer, r) in &self.running {
                if kind.calls().contains(peer) && r.addr.port() != 0 {
                    s.peers.entry(peer.name().into()).or_insert_with(|| r.endpoint());
                }
            }
        }
        if let Some(t) = &self.tweak {
            t(kind, &mut s);
        }
        s
    }

    /// Starts one more replica of `kind` (on the database of its others).
    ///
    /// # Panics
    /// When it does not start.
    pub async fn start_replica(&mut self, kind: ServiceKind) -> Option<usize> {
        if !self.dbs.contains_key(&kind) {
            self.dbs.insert(kind, TestDb::fresh(self.backend).await?);
        }
        let running = start_named_with(kind.name(), self.settings(kind), self.seeded).await;
        self.running.push((kind, running));
        Some(self.replicas(kind).count() - 1)
    }

    fn replicas(&self, kind: ServiceKind) -> impl Iterator<Item = &Running> {
        self.running.iter().filter(move |(k, _)| *k == kind).map(|(_, r)| r)
    }

    /// Replica `i` of `kind`.
    ///
    /// # Panics
    /// When the mesh runs no such replica.
    pub fn replica(&self, kind: ServiceKind, i: usize) -> &Running {
        self.replicas(kind).nth(i).unwrap_or_else(|| panic!("the mesh runs no replica {i} of {}", kind.name()))
    }

    /// The (first replica of) `kind`.
    pub fn service(&self, kind: ServiceKind) -> &Running {
        self.replica(kind, 0)
    }

    /// The database of `kind` (the test inspects it).
    pub fn db(&self, kind: ServiceKind) -> &sea_orm::DatabaseConnection {
        &self.service(kind).db
    }

    /// The URL of `kind`'s database.
    pub fn db_url(&self, kind: ServiceKind) -> String {
        self.dbs.get(&kind).map(|d| d.url.clone()).unwrap_or_default()
    }

    /// Stops every replica of `kind` gracefully (as an outage); each keeps its address.
    pub async fn stop(&mut self, kind: ServiceKind) {
        for (k, r) in &mut self.running {
            if *k == kind && !r.is_stopped() {
                let addr = r.addr;
                std::mem::replace(r, Running::stopped_at(addr)).stop().await;
            }
        }
    }

    /// Starts every stopped replica of `kind` again, on its address and database.
    ///
    /// # Panics
    /// When one does not start.
    pub async fn restart(&mut self, kind: ServiceKind) {
        let settings = self.settings(kind);
        for (k, r) in &mut self.running {
            if *k == kind && r.is_stopped() {
                let mut s = settings.clone();
                s.grpc_addr = r.addr.to_string();
                *r = start_named_with(kind.name(), s, self.seeded).await;
            }
        }
    }

    /// A channel to (the first replica of) `kind` carrying `token`.
    pub async fn channel(&self, kind: ServiceKind, token: &str) -> Authed {
        connect_as(&self.service(kind).endpoint(), Some(token)).await
    }

    /// The case service of department `kind` as `token`.
    pub async fn cases(&self, kind: ServiceKind, token: &str) -> CaseServiceClient<Authed> {
        CaseServiceClient::new(self.channel(kind, token).await)
    }

    /// The case service of department `kind` as the coordinator calls it (applying and
    /// acting for applicants).
    pub async fn coordinator_cases(&self, kind: ServiceKind) -> CaseServiceClient<Authed> {
        self.cases(kind, &crate::identity::service("coordinator", kind.name())).await
    }

    /// The case service of department `kind` as its clerk who may also approve.
    pub async fn clerk(&self, kind: ServiceKind) -> CaseServiceClient<Authed> {
        self.cases(kind, &crate::identity::staff(kind.name(), &["clerk", "approver"])).await
    }

    /// The bundle service of the first coordinator as `token`.
    pub async fn bundles(&self, token: &str) -> BundleServiceClient<Authed> {
        self.bundles_at(0, token).await
    }

    /// The bundle service of coordinator replica `i` as `token`.
    pub async fn bundles_at(&self, i: usize, token: &str) -> BundleServiceClient<Authed> {
        let r = self.replica(ServiceKind::Coordinator, i);
        BundleServiceClient::new(connect_as(&r.endpoint(), Some(token)).await)
    }

    /// The supervision service as `token`.
    pub async fn supervision(&self, token: &str) -> SupervisionServiceClient<Authed> {
        SupervisionServiceClient::new(self.channel(ServiceKind::Supervision, token).await)
    }

    /// Stops every service gracefully, the coordinator and supervision first.
    ///
    /// # Panics
    /// When one stopped with an error.
    pub async fn stop_all(mut self) {
        let mut all = std::mem::take(&mut self.running);
        all.reverse();
        for (_, r) in all {
            if !r.is_stopped() {
                r.stop().await;
            }
        }
    }
}
