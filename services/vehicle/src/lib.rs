//! 车管/车检 — the vehicle department service: inspection bookings on station slots that
//! are never overbooked, walk-ins, 交钥匙 proxy inspections and 容缺 (M14), enterprise
//! vehicle verification, and driving licence cancellation once household confirms a death.
//! A library with a builder; the process is `onething serve <service>` (services/cli).

pub mod domain;
pub mod grpc;
pub mod matters;
pub mod slots;
pub mod store;

use onething_platform::{
    config::Settings,
    facts::{DeceasedProjection, deceased_spec},
    grpc::{MAX_MESSAGE_BYTES, server_parts},
    runtime::{Service, ServiceRuntime},
};
use onething_proto::vehicle::vehicle_service_server::VehicleServiceServer;
use std::path::Path;

/// Service name.
pub const SERVICE: &str = matters::DEPARTMENT;
/// Default gRPC port.
pub const DEFAULT_PORT: u16 = onething_platform::service_kind::ServiceKind::Vehicle.default_port();

/// Development defaults: port 18063, SQLite file `vehicle.db` under `data_dir`.
pub fn default_settings(data_dir: &Path) -> Settings {
    Settings::for_service(SERVICE, DEFAULT_PORT, data_dir)
}

/// Builds vehicle: database and migrations, NATS, the listener, the case service and the
/// vehicle API (both authenticated), health, reflection, the consumer of household's death
/// facts, and the sweeper that revokes overdue 容缺 approvals.
///
/// # Errors
/// As [`ServiceRuntime::start`].
pub async fn build(settings: Settings) -> anyhow::Result<Service> {
    let mut runtime = ServiceRuntime::start::<store::Migrator>(SERVICE, settings).await?;
    let api = runtime.case_api(matters::department())?;
    runtime.add_consumer(
        deceased_spec(SERVICE),
        DeceasedProjection::new(api.clone(), &[matters::LICENCE_CANCELLATION], "subject_id_number"),
    );
    runtime.add_case_sweeper(api.clone());
    let ops = grpc::Operations::new(runtime.db.clone(), api.clone(), runtime.outbox.clone());
    let ops = VehicleServiceServer::new(ops).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let ops = runtime.authenticated(ops);
    let reference = runtime.reference_data(store::import::kinds());
    let parts = server_parts().add(runtime.case_service(api)).await.add(ops).await.add(reference).await;
    Ok(Service::new(runtime, parts))
}
