//! 督察 — supervision (M17, M25, M26, M27): it only listens. Every department's, the
//! coordinator's and its own events build its records: cases and bundles against their due
//! times with 督办 notices, the 办不成事 window, ratings and KPIs; it adds complaints and
//! random inspections (双随机) of its own. Its derived state is a function of the streams.

pub mod domain;
pub mod grpc;
pub mod ops;
pub mod projection;
pub mod store;

use onething_platform::seal::Sealer;
use onething_platform::service_kind::ServiceKind;
use onething_platform::{
    config::Settings,
    grpc::{MAX_MESSAGE_BYTES, Peers, server_parts},
    runtime::{Service, ServiceRuntime},
};
use onething_proto::supervision::supervision_service_server::SupervisionServiceServer;
use std::{path::Path, sync::Arc};

/// Service name.
pub const SERVICE: &str = "supervision";
/// What supervision's sealing key seals: the personal part of its complaints' events.
pub const SEAL_PURPOSE: &str = "onething supervision complaints v1";
/// Default gRPC port.
pub const DEFAULT_PORT: u16 = ServiceKind::Supervision.default_port();

/// Development defaults: port 18065, SQLite `supervision.db` under `data_dir`, the
/// departments and the coordinator on their development ports.
pub fn default_settings(data_dir: &Path) -> Settings {
    Settings::for_service(SERVICE, DEFAULT_PORT, data_dir)
}

/// Builds supervision: database and migrations, NATS, the listener, the authenticated API,
/// health, reflection, consumers of every stream, and the minutely 督办 notices.
///
/// # Errors
/// As [`ServiceRuntime::start`], or no signing key to ask owners with.
pub async fn build(settings: Settings) -> anyhow::Result<Service> {
    let peers = Peers::from_settings(&settings)?;
    let identity = onething_platform::auth::ServiceIdentity::load(SERVICE, &settings.auth)?;
    let seal_file =
        if settings.seal_key_file.is_empty() { &settings.auth.signing_key_file } else { &settings.seal_key_file };
    let sealer = Arc::new(Sealer::from_file(seal_file, SEAL_PURPOSE)?);
    let mut runtime = ServiceRuntime::start::<store::Migrator>(SERVICE, settings).await?;
    for stream in projection::STREAMS {
        let projection = projection::Projection { calendar: runtime.calendar.clone(), sealer: sealer.clone() };
        runtime.add_consumer(projection::spec(stream), projection);
    }
    let sup = ops::Supervision::new(&runtime, peers, identity, sealer);
    let notices = sup.clone();
    runtime.add_sweep("issue-notices", move || {
        let notices = notices.clone();
        async move {
            notices.issue_notices(notices.clock().now()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(())
        }
    });
    let api = SupervisionServiceServer::new(grpc::Api(sup)).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let parts = server_parts().add(runtime.authenticated(api)).await;
    Ok(Service::new(runtime, parts))
}
