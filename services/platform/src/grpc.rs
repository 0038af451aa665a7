//! gRPC server defaults every service gets: grpc.health.v1, server reflection over every
//! onething proto, a span per request joined to the caller's trace, message size limits,
//! and graceful shutdown that reports NOT_SERVING before draining.

use crate::{config::TlsSettings, telemetry};
use anyhow::Context as _;
use std::{net::SocketAddr, time::Duration};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic_health::{ServingStatus, server::HealthReporter};

/// Largest request message a service decodes (1 MiB): materials are references, not files.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Health and reflection, ready to be joined by the service's own routes.
pub struct ServerParts {
    /// Report per-service health; the server sets the overall status itself.
    pub health: HealthReporter,
    /// Routes holding health and reflection.
    pub routes: Routes,
}

/// Builds the health and reflection services.
///
/// # Errors
/// A malformed descriptor set (a build problem).
pub fn server_parts() -> anyhow::Result<ServerParts> {
    let (health, health_service) = tonic_health::server::health_reporter();
    // google.rpc is registered so grpcurl and other clients can decode error details.
    let sets = [
        onething_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_types::pb::FILE_DESCRIPTOR_SET,
    ];
    let builder = || {
        sets.iter()
            .fold(tonic_reflection::server::Builder::configure(), |b, set| b.register_encoded_file_descriptor_set(set))
    };
    let reflection = builder().build_v1()?;
    let reflection_alpha = builder().build_v1alpha()?;
    let routes = Routes::new(health_service).add_service(reflection).add_service(reflection_alpha);
    Ok(ServerParts { health, routes })
}

/// Binds `addr` (port 0 picks a free port).
///
/// # Errors
/// The address is malformed or taken.
pub async fn bind(addr: &str) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("binding {addr}: {e}"))?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Serves `routes` on `listener` until `shutdown`, then stops accepting, reports NOT_SERVING
/// and lets in-flight requests finish.
///
/// # Errors
/// The server failed to run.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    health: HealthReporter,
    tls: &TlsSettings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    health.set_service_status("", ServingStatus::Serving).await;
    // Replies are small and come in bursts: without TCP_NODELAY, Nagle's algorithm holds a
    // reply back until the peer's delayed ACK (tens of milliseconds per call). tonic sets
    // it only on listeners it binds itself.
    let incoming = futures::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(listener), |s| {
        if let Ok(s) = &s {
            let _ = s.set_nodelay(true);
        }
        s
    });
    let drain = {
        let health = health.clone();
        async move {
            shutdown.cancelled().await;
            health.set_service_status("", ServingStatus::NotServing).await;
        }
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some(config) = server_tls(tls)? {
        builder = builder.tls_config(config)?;
    }
    builder
        .layer(crate::metrics::RpcMetricsLayer)
        .trace_fn(telemetry::grpc_server_span)
        .timeout(Duration::from_secs(30))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, drain)
        .await?;
    Ok(())
}

/// The server TLS configuration of `tls`, or `None` for plain HTTP/2. With a client CA
/// every client must present a certificate chaining to it (mTLS).
///
/// # Errors
/// A configured file that cannot be read.
pub fn server_tls(tls: &TlsSettings) -> anyhow::Result<Option<ServerTlsConfig>> {
    if tls.cert_file.is_empty() {
        return Ok(None);
    }
    let read = |p: &str| std::fs::read(p).with_context(|| format!("reading {p}"));
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(read(&tls.cert_file)?, read(&tls.key_file)?));
    if !tls.client_ca_file.is_empty() {
        config = config.client_ca_root(Certificate::from_pem(read(&tls.client_ca_file)?));
    }
    Ok(Some(config))
}

/// Installs ring as the process's one rustls crypto provider (two providers in one
/// process make rustls panic at the first handshake). Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A channel to another onething service: connects lazily (a peer that is down fails the
/// call, not the start), 2 s to connect, 10 s per call, and a client span per call.
///
/// # Errors
/// A malformed URL.
pub fn peer_channel(url: &str) -> anyhow::Result<TracedChannel> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .with_context(|| format!("peer address {url}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .connect_lazy();
    Ok(TracedChannel(channel))
}

/// A [`tonic::transport::Channel`] that makes a `grpc.client` span around every call and
/// sends that span's trace context, so the server's span is the client span's child.
#[derive(Clone, Debug)]
pub struct TracedChannel(tonic::transport::Channel);

impl tower::Service<http::Request<tonic::body::Body>> for TracedChannel {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.0, cx)
    }

    fn call(&mut self, mut req: http::Request<tonic::body::Body>) -> Self::Future {
        let path = req.uri().path().trim_start_matches('/').to_string();
        let (service, method) = path.split_once('/').unwrap_or((path.as_str(), ""));
        let span = tracing::info_span!(
            "grpc.client",
            otel.name = %path,
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        telemetry::inject_headers(&span, req.headers_mut());
        let call = self.0.call(req);
        Box::pin(tracing::Instrument::instrument(
            async move {
                let result = call.await;
                let code = match &result {
                    Ok(resp) => status_in_headers(resp.headers()),
                    Err(_) => tonic::Code::Unavailable,
                };
                let span = tracing::Span::current();
                span.record("rpc.grpc.status_code", code as i32);
                if code != tonic::Code::Ok {
                    span.record("otel.status_code", "ERROR");
                }
                result
            },
            span,
        ))
    }
}

/// The gRPC status of a response as far as its headers tell: errors of unary calls come
/// back trailers-only, with `grpc-status` in the headers; a response without it started
/// normally (`OK`; a stream that fails later reports in its trailers).
pub fn status_in_headers(headers: &http::HeaderMap) -> tonic::Code {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from_i32)
}
