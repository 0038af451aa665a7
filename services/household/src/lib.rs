//! 户政 — the household registration department service: the registry of persons and
//! households, the seven household matters of the catalog through the shared case service,
//! and the facts other departments act on (a birth with its new ID number, a death, a
//! collective household). A library with a builder; the process is `onething serve <service>` (services/cli).

pub mod correct;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod matters;
pub mod store;

use onething_platform::{
    auth::ServiceIdentity,
    config::Settings,
    grpc::{MAX_MESSAGE_BYTES, Peers, server_parts},
    runtime::{Service, ServiceRuntime},
};
use onething_proto::household::household_service_server::HouseholdServiceServer;
use std::path::Path;

/// Service name.
pub const SERVICE: &str = matters::DEPARTMENT;
/// Default gRPC port.
pub const DEFAULT_PORT: u16 = onething_platform::service_kind::ServiceKind::Household.default_port();

/// Development defaults: port 18061, SQLite file `household.db` under `data_dir`.
pub fn default_settings(data_dir: &Path) -> Settings {
    Settings::for_service(SERVICE, DEFAULT_PORT, data_dir)
}

/// A built household service, listening but not yet serving.
pub type Application = Service;

/// Builds household: connects and migrates the database, connects NATS, binds the
/// listener and assembles the case service, the registry service (both authenticated),
/// health, reflection and the notifier.
///
/// # Errors
/// As [`ServiceRuntime::start`].
pub async fn build(settings: Settings) -> anyhow::Result<Service> {
    // Household asks liaison about green-channel employers, with its own signing key.
    let peers = Peers::from_settings(&settings)?;
    let identity = match settings.auth.signing_key_file.as_str() {
        "" => None,
        _ => Some(ServiceIdentity::load(SERVICE, &settings.auth)?),
    };
    let mut runtime = ServiceRuntime::start::<store::Migrator>(SERVICE, settings).await?;
    let cases = runtime.case_api(matters::department(matters::green::Employment::new(&peers, identity)))?;
    runtime.add_case_sweeper(cases.clone());
    let corrections = correct::Corrections::new(runtime.db.clone(), runtime.outbox.clone(), runtime.clock().clone());
    let registry = HouseholdServiceServer::new(grpc::Registry::new(runtime.db.clone(), corrections))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let registry = runtime.authenticated(registry);
    runtime.add_consumer(events::notifier_spec(), events::Notifier);
    let reference = runtime.reference_data(store::import::kinds());
    let parts = server_parts().add(runtime.case_service(cases)).await.add(registry).await.add(reference).await;
    Ok(Service::new(runtime, parts))
}
