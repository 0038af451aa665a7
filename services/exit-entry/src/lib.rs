//! 出入境 — the exit-entry department service: work-type residence permits for foreigners
//! decided on their permit history (M13), expedited exit documents for enterprise business
//! trips (M15), and the cancellation of a deceased citizen's travel documents once
//! household confirms the death. A library with a builder; the process is `onething serve <service>` (services/cli).

pub mod domain;
pub mod grpc;
pub mod matters;
pub mod store;
pub mod violations;

use onething_platform::{
    config::Settings,
    facts::{DeceasedProjection, deceased_spec},
    grpc::{MAX_MESSAGE_BYTES, server_parts},
    runtime::{Service, ServiceRuntime},
};
use onething_proto::exit_entry::exit_entry_service_server::ExitEntryServiceServer;
use std::path::Path;

/// Service name.
pub const SERVICE: &str = matters::DEPARTMENT;
/// Default gRPC port.
pub const DEFAULT_PORT: u16 = onething_platform::service_kind::ServiceKind::ExitEntry.default_port();

/// Development defaults: port 18062, SQLite file `exit_entry.db` under `data_dir`.
pub fn default_settings(data_dir: &Path) -> Settings {
    Settings::for_service(SERVICE, DEFAULT_PORT, data_dir)
}

/// Builds exit-entry: database and migrations, NATS, the listener, the case service and
/// the look-ups (both authenticated), health, reflection, and the consumer of household's
/// death facts that decides waiting document cancellations.
///
/// # Errors
/// As [`ServiceRuntime::start`].
pub async fn build(settings: Settings) -> anyhow::Result<Service> {
    let mut runtime = ServiceRuntime::start::<store::Migrator>(SERVICE, settings).await?;
    let api = runtime.case_api(matters::department())?;
    runtime.add_consumer(
        deceased_spec(SERVICE),
        DeceasedProjection::new(api.clone(), &[matters::DOCUMENT_CANCELLATION], "subject_id_number"),
    );
    runtime.add_case_sweeper(api.clone());
    let violations = violations::Violations::new(runtime.db.clone(), runtime.outbox.clone(), runtime.clock().clone());
    let records = ExitEntryServiceServer::new(grpc::Records::new(runtime.db.clone(), violations))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let records = runtime.authenticated(records);
    let reference = runtime.reference_data(store::import::kinds());
    let parts = server_parts().add(runtime.case_service(api)).await.add(records).await.add(reference).await;
    Ok(Service::new(runtime, parts))
}
