//! The service host every department runs on, in two calls: [`ServiceRuntime::start`]
//! (configuration → database and migrations → NATS → listener) and
//! [`ServiceRuntime::run_until_stopped`] (gRPC server, outbox relay, consumers, drain).

use crate::{
    auth::{Authenticator, Verifier},
    calendar::Calendar,
    catalog::Catalog,
    config::Settings,
    events::{self, ConsumerSpec, Handler, Outbox, Relay},
    grpc,
};
use async_nats::jetstream;
use futures::future::BoxFuture;
use onething_proto::common::{
    case_service_server::CaseServiceServer, reference_data_service_server::ReferenceDataServiceServer,
};
use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;

/// A started service: its database, bus, outbox, catalog and bound listener.
pub struct ServiceRuntime {
    /// Service (and department) name.
    pub name: &'static str,
    /// Effective settings.
    pub settings: Settings,
    /// The service's own database.
    pub db: DatabaseConnection,
    /// JetStream context.
    pub js: jetstream::Context,
    /// The outbox of this service.
    pub outbox: Outbox,
    /// The catalog of matters.
    pub catalog: Arc<Catalog>,
    /// The working-day calendar.
    pub calendar: Arc<Calendar>,
    /// The interceptor that authenticates every RPC of the service's own APIs.
    pub authenticator: Authenticator,
    /// The e-licence issuers this service trusts, their revocations read again on an interval.
    pub trust: Arc<crate::elicence::Trust>,
    listener: TcpListener,
    addr: SocketAddr,
    metrics_listener: Option<TcpListener>,
    workers: Vec<Worker>,
}

type Worker = Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, ()> + Send>;

impl ServiceRuntime {
    /// Loads the verification keys (read again every `auth.jwks_reload_seconds`) and the
    /// catalog, connects and migrates the database with `M`, connects NATS (returning even
    /// while NATS is down) and binds the listener.
    ///
    /// # Errors
    /// No or unreadable verification keys, an invalid catalog, an unreachable database, a failed migration, a bad NATS
    /// configuration, or an address that cannot be bound.
    pub async fn start<M: MigratorTrait>(name: &'static str, settings: Settings) -> anyhow::Result<Self> {
        grpc::install_crypto_provider();
        // Service tokens must be addressed to this service.
        let auth = crate::auth::AuthSettings { service: name.to_string(), ..settings.auth.clone() };
        let authenticator = Authenticator::new(Verifier::load(&auth)?);
        let catalog = Arc::new(Catalog::load(&settings.catalog_file)?);
        let calendar = Arc::new(Calendar::load(&settings.calendar_dir)?);
        let trust = Arc::new(crate::elicence::Trust::load(&settings.elicence.trust_list_file)?);
        if trust.refresh_interval().is_none() && catalog.requires_verified_evidence() {
            tracing::warn!(
                service = name,
                "no e-licence issuer is trusted (elicence.trust_list_file): matters that require a verified e-licence refuse every application"
            );
        }
        let db = crate::db::connect_and_migrate_with::<M>(&settings.database_url, &settings.database).await?;
        let client = events::nats::connect(&settings.nats, &format!("onething-{name}")).await?;
        let js = jetstream::new(client);
        let (listener, addr) = grpc::bind(&settings.grpc_addr).await?;
        let outbox = Outbox::new(name).with_max_event_bytes(settings.outbox.max_event_bytes);
        let metrics_listener = match settings.metrics_addr.as_str() {
            "" => None,
            a => Some(grpc::bind(a).await?.0),
        };
        tracing::info!(service = name, %addr, "service started");
        let mut runtime = Self {
            name,
            settings,
            db,
            js,
            outbox,
            catalog,
            calendar,
            authenticator,
            trust,
            listener,
            addr,
            metrics_listener,
            workers: Vec::new(),
        };
        if let Some(every) = runtime.trust.refresh_interval() {
            let trust = runtime.trust.clone();
            // Off the async threads: a large list takes a while to verify and parse.
            runtime.add_periodic("refresh-revocations", every, move || {
                let trust = trust.clone();
                async move {
                    tokio::task::spawn_blocking(move || trust.refresh()).await?;
                    Ok(())
                }
            });
        }
        if let Some(every) = runtime.authenticator.reload_interval() {
            let authenticator = runtime.authenticator.clone();
            runtime.add_periodic("reload-jwks", every, move || std::future::ready(authenticator.reload_keys()));
        }
        Ok(runtime)
    }

    /// The business clock ([`Settings::clock`]).
    pub fn clock(&self) -> &crate::clock::Clock {
        &self.settings.clock
    }

    /// The bound gRPC address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound address of the `/metrics` endpoint, if one is configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The case service of department `dept` over this service's database, outbox, catalog,
    /// calendar and clock.
    ///
    /// # Errors
    /// The department's rules do not cover exactly its catalog matters
    /// ([`crate::cases::CaseApi::new`]).
    pub fn case_api(&self, dept: crate::cases::Department) -> anyhow::Result<crate::cases::CaseApi> {
        crate::cases::CaseApi::new(
            dept,
            self.db.clone(),
            self.outbox.clone(),
            self.catalog.clone(),
            self.calendar.clone(),
            self.settings.clock.clone(),
            self.trust.clone(),
        )
    }

    /// `api` as the department's `onething.common.v1.CaseService`: the message size limit
    /// and every call authenticated (add it to the port with [`grpc::ServerParts::add`]).
    pub fn case_service(
        &self,
        api: crate::cases::CaseApi,
    ) -> InterceptedService<CaseServiceServer<crate::cases::CaseApi>, Authenticator> {
        self.authenticated(CaseServiceServer::new(api).max_decoding_message_size(grpc::MAX_MESSAGE_BYTES))
    }

    /// The department's `onething.common.v1.ReferenceDataService` over its import `kinds`,
    /// every call authenticated (a chunk may carry 1 MiB of the file).
    pub fn reference_data(
        &self,
        kinds: Vec<Box<dyn crate::import::ImportKind>>,
    ) -> InterceptedService<ReferenceDataServiceServer<crate::import::grpc::ReferenceData>, Authenticator> {
        let api =
            crate::import::grpc::ReferenceData::new(self.name, self.db.clone(), kinds, self.settings.clock.clone());
        self.authenticated(ReferenceDataServiceServer::new(api).max_decoding_message_size(2 * grpc::MAX_MESSAGE_BYTES))
    }

    /// `server` behind the authenticator: every call needs a valid token.
    pub fn authenticated<S>(&self, server: S) -> InterceptedService<S, Authenticator> {
        InterceptedService::new(server, self.authenticator.clone())
    }

    /// Adds a durable idempotent consumer, started by [`Self::run_until_stopped`].
    pub fn add_consumer<H: Handler>(&mut self, mut spec: ConsumerSpec, handler: H) {
        spec.name.push_str(&self.settings.consumer_suffix);
        let js = self.js.clone();
        let db = self.db.clone();
        let outbox = handler.writes_events().then(|| self.outbox.clone());
        let delivery = events::consumer::Delivery {
            service: self.name.to_string(),
            replicas: self.settings.nats.stream_replicas,
            settings: self.settings.consumers.clone(),
        };
        self.workers
            .push(Box::new(move |stop| Box::pin(events::consumer::run(js, db, spec, handler, outbox, delivery, stop))));
    }

    /// Adds a long-running worker, started by [`Self::run_until_stopped`] and told to stop
    /// through its token.
    pub fn add_worker(&mut self, worker: impl FnOnce(CancellationToken) -> BoxFuture<'static, ()> + Send + 'static) {
        self.workers.push(Box::new(worker));
    }

    /// Runs `job` every `every` until shutdown, logging its failures as `name`.
    pub fn add_periodic<F, Fut>(&mut self, name: &'static str, every: Duration, job: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
    {
        self.workers.push(Box::new(move |stop: CancellationToken| {
            Box::pin(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(every) => {}
                    }
                    if let Err(e) = job().await {
                        tracing::warn!(job = name, error = %format!("{e:#}"), "periodic job failed");
                    }
                }
            })
        }));
    }

    /// Runs `job` every [`Settings::sweep_interval_ms`] until shutdown: a business sweep
    /// over deadlines, reading the business clock.
    pub fn add_sweep<F, Fut>(&mut self, name: &'static str, job: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
    {
        let every = Duration::from_millis(self.settings.sweep_interval_ms.max(10));
        self.add_periodic(name, every, job);
    }

    /// Runs the case housekeeping of `api`: on every sweep, provisional approvals whose owed
    /// material is overdue are revoked and cases whose supplement is overdue closed; the
    /// case gauges follow every change; supervision's 督办 notices to this department are
    /// kept for its clerks.
    pub fn add_case_sweeper(&mut self, api: crate::cases::CaseApi) {
        self.add_consumer(crate::notices::notices_spec(self.name), crate::notices::NoticeProjection::new(self.name));
        let gauges = api.clone();
        self.add_worker(move |stop| Box::pin(gauges.run_gauges(stop)));
        // Two sweeps, so one failing (its listing query) holds up neither the other nor
        // its own next run.
        let revoke = api.clone();
        self.add_sweep("revoke-overdue", move || {
            let api = revoke.clone();
            async move {
                api.revoke_overdue(api.clock().now()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
                Ok(())
            }
        });
        self.add_sweep("close-overdue-supplements", move || {
            let api = api.clone();
            async move {
                api.close_overdue_supplements(api.clock().now()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
                Ok(())
            }
        });
    }

    /// Serves `parts` (with reflection over exactly its APIs) and runs the outbox relay, the
    /// workers (consumers, the JWKS reload, …) and the metrics and probe endpoint until `shutdown`; then
    /// drains within the configured grace period.
    ///
    /// # Errors
    /// The gRPC server failed.
    pub async fn run_until_stopped(self, parts: grpc::ServerParts, shutdown: CancellationToken) -> anyhow::Result<()> {
        // Best effort: with the stream in place the service's own consumers start cleanly;
        // while NATS is down the relay creates it later.
        let ensure = events::nats::ensure_stream(&self.js, self.name, self.settings.nats.stream_replicas);
        match tokio::time::timeout(Duration::from_secs(2), ensure).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "stream not ensured at start"),
            Err(_) => tracing::warn!("NATS not answering at start; events wait in the outbox"),
        }
        let stop_workers = CancellationToken::new();
        let relay = Relay::new(
            &self.outbox,
            self.db.clone(),
            self.js.clone(),
            self.name,
            self.settings.nats.stream_replicas,
            self.settings.outbox.clone(),
        );
        let mut tasks = vec![tokio::spawn(relay.run(stop_workers.clone()))];
        let ready = grpc::Readiness::default();
        for w in self.workers {
            tasks.push(tokio::spawn(w(stop_workers.clone())));
        }
        if let Some(l) = self.metrics_listener {
            let stop = stop_workers.clone();
            let ready = ready.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = crate::metrics::serve(l, ready, stop).await {
                    tracing::warn!(error = %format!("{e:#}"), "metrics endpoint stopped");
                }
            }));
        }
        let served = grpc::serve(self.listener, parts, &self.settings.tls, ready, shutdown).await;
        // Requests have drained; the relay's last round publishes what they committed.
        stop_workers.cancel();
        let grace = Duration::from_secs(self.settings.shutdown_grace_seconds);
        if tokio::time::timeout(grace, futures::future::join_all(tasks)).await.is_err() {
            tracing::warn!(service = self.name, "workers did not stop within the grace period");
        }
        self.db.close().await.ok();
        tracing::info!(service = self.name, "service stopped");
        served
    }
}

/// A built service, listening but not yet serving: what each service's `build` returns.
pub struct Service {
    runtime: ServiceRuntime,
    parts: grpc::ServerParts,
}

impl Service {
    /// Joins a started runtime and the server parts (health, reflection, the service APIs).
    pub fn new(runtime: ServiceRuntime, parts: grpc::ServerParts) -> Self {
        Self { runtime, parts }
    }

    /// The service's name, e.g. `household`.
    pub fn name(&self) -> &'static str {
        self.runtime.name
    }

    /// The address the gRPC server listens on.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.runtime.local_addr()
    }

    /// The address of the `/metrics` endpoint, if one is configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.runtime.metrics_addr()
    }

    /// The service's own database (tests inspect it; other services never do).
    pub fn db(&self) -> &DatabaseConnection {
        &self.runtime.db
    }

    /// Serves until `shutdown`, then drains.
    ///
    /// # Errors
    /// The gRPC server failed.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.runtime.run_until_stopped(self.parts, shutdown).await
    }
}
