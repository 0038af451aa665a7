//! 警企联络 — the enterprise liaison service: enterprises with their liaison officers (M8),
//! seal filing and cancellation, the hotel special-trade licence with its on-site
//! inspection, the precursor chemical filing decided within 24 hours (M16), and enterprise
//! requests through the closed loop 办 → 评 → 访 → 督 → 责 with their completion rate (M19,
//! M26). A library with a builder; the process is `onething serve <service>` (services/cli).

pub mod domain;
pub mod grpc;
pub mod matters;
pub mod requests;
pub mod store;

use onething_platform::{
    config::Settings,
    grpc::{MAX_MESSAGE_BYTES, server_parts},
    runtime::{Service, ServiceRuntime},
};
use onething_proto::liaison::liaison_service_server::LiaisonServiceServer;
use std::path::Path;

/// Service name.
pub const SERVICE: &str = matters::DEPARTMENT;
/// Default gRPC port.
pub const DEFAULT_PORT: u16 = onething_platform::service_kind::ServiceKind::Liaison.default_port();

/// Development defaults: port 18064, SQLite file `liaison.db` under `data_dir`.
pub fn default_settings(data_dir: &Path) -> Settings {
    Settings::for_service(SERVICE, DEFAULT_PORT, data_dir)
}

/// Builds liaison: database and migrations, NATS, the listener, the case service and the
/// liaison API (both authenticated), health, reflection, and the periodic jobs (revoking
/// overdue 容缺 approvals, flagging requests not handled in time).
///
/// # Errors
/// As [`ServiceRuntime::start`].
pub async fn build(settings: Settings) -> anyhow::Result<Service> {
    let mut runtime = ServiceRuntime::start::<store::Migrator>(SERVICE, settings).await?;
    let api = runtime.case_api(matters::department())?;
    runtime.add_case_sweeper(api.clone());
    let loop_ = requests::Requests::new(
        runtime.db.clone(),
        runtime.outbox.clone(),
        runtime.calendar.clone(),
        runtime.clock().clone(),
    );
    let flagger = loop_.clone();
    runtime.add_sweep("flag-overdue-requests", move || {
        let flagger = flagger.clone();
        async move {
            flagger.flag_overdue(flagger.clock().now()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(())
        }
    });
    let liaison = LiaisonServiceServer::new(grpc::Liaison::new(runtime.db.clone(), loop_))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let liaison = runtime.authenticated(liaison);
    let reference = runtime.reference_data(store::import::kinds());
    let parts = server_parts().add(runtime.case_service(api)).await.add(liaison).await.add(reference).await;
    Ok(Service::new(runtime, parts))
}
