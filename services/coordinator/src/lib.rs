//! 一件事 — the coordinator: serves the catalog of matters and bundles (M22), takes a bundle
//! application once (one form, one set of materials) and runs it as a saga across the
//! departments (M23): fan-out with idempotency keys, dependent steps after their
//! prerequisites, compensation when a required step is refused, waiting out a department
//! that is down. A library with a builder; the process is `onething serve <service>` (services/cli).

pub mod breaker;
pub mod engine;
pub mod events;
pub mod grpc;
pub mod saga;
pub mod store;
pub mod view;
pub mod watch;

use onething_platform::{
    auth::ServiceIdentity,
    config::Settings,
    grpc::{MAX_MESSAGE_BYTES, Peers, server_parts},
    runtime::{Service, ServiceRuntime},
};
use onething_proto::coordinator::{
    bundle_service_server::BundleServiceServer, catalog_service_server::CatalogServiceServer,
};
use std::path::Path;

/// Service name.
pub const SERVICE: &str = "coordinator";
/// Default gRPC port.
pub const DEFAULT_PORT: u16 = onething_platform::service_kind::ServiceKind::Coordinator.default_port();

/// Development defaults: port 18060, SQLite file `coordinator.db` under `data_dir`, the
/// departments on their development ports.
pub fn default_settings(data_dir: &Path) -> Settings {
    Settings::for_service(SERVICE, DEFAULT_PORT, data_dir)
}

/// Builds the coordinator: database and migrations, NATS, the listener, the bundle and
/// catalog services (authenticated), health, reflection, a consumer of every department's
/// case events, and the driver that creates, retries and withdraws steps.
///
/// # Errors
/// As [`ServiceRuntime::start`], or no signing key to call the departments with.
pub async fn build(settings: Settings) -> anyhow::Result<Service> {
    let identity = ServiceIdentity::load(SERVICE, &settings.auth)?;
    let peers = Peers::from_settings(&settings)?;
    let mut runtime = ServiceRuntime::start::<store::Migrator>(SERVICE, settings).await?;
    let engine = engine::Engine::new(
        &runtime,
        identity,
        peers,
        watch::Changes::new(
            Some(runtime.js.client()),
            std::time::Duration::from_millis(runtime.settings.watch_fallback_ms.max(100)),
        ),
    );
    for dept in events::DEPARTMENTS {
        runtime.add_consumer(
            events::case_events_spec(dept),
            events::CaseEvents { engine: engine.clone(), department: dept },
        );
    }
    let changes = engine.changes().clone();
    runtime.add_worker(move |stop| Box::pin(changes.listen(stop)));
    let driver = engine.clone();
    runtime.add_worker(move |stop| Box::pin(driver.run_driver(stop)));
    let bundles = BundleServiceServer::new(grpc::Bundles(engine.clone())).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let bundles = runtime.authenticated(bundles);
    let catalog = CatalogServiceServer::new(grpc::CatalogApi(engine)).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let catalog = runtime.authenticated(catalog);
    let parts = server_parts().add(bundles).await.add(catalog).await;
    Ok(Service::new(runtime, parts))
}
