//! gRPC server defaults every service gets: grpc.health.v1, server reflection over exactly
//! the APIs a port serves, a span per request joined to the caller's trace, message size limits,
//! graceful shutdown that reports NOT_SERVING before draining, and the channels to peers
//! (TLS with this service's client certificate when configured).

use crate::{config::TlsSettings, telemetry};
use anyhow::Context as _;
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use tonic_health::{ServingStatus, server::HealthReporter};

/// Largest request message a service decodes (1 MiB): materials are references, not files.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// What a gRPC port serves: the service's own APIs, grpc.health.v1 reporting each of them,
/// and server reflection listing exactly those (plus health and reflection), so an operator
/// exploring a port with grpcurl sees what answers there and nothing else.
pub struct ServerParts {
    /// Per-service health; the server sets the overall status itself.
    pub health: HealthReporter,
    routes: Routes,
    served: Vec<&'static str>,
}

/// The descriptor sets reflection draws from: every onething proto, health, and google.rpc
/// (so grpcurl and other clients can decode error details).
const DESCRIPTOR_SETS: [&[u8]; 3] =
    [onething_proto::FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET, tonic_types::pb::FILE_DESCRIPTOR_SET];

/// Starts the parts of a port: health alone, until the service's APIs are added.
pub fn server_parts() -> ServerParts {
    let (health, health_service) = tonic_health::server::health_reporter();
    ServerParts { health, routes: Routes::new(health_service), served: Vec::new() }
}

impl ServerParts {
    /// Adds `svc` to the port: routed, reported SERVING in health, listed by reflection.
    pub async fn add<S>(mut self, svc: S) -> Self
    where
        S: tower::Service<http::Request<tonic::body::Body>, Error = std::convert::Infallible>
            + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.health.set_service_status(S::NAME, ServingStatus::Serving).await;
        self.served.push(S::NAME);
        self.routes = self.routes.add_service(svc);
        self
    }

    /// The routes with reflection (v1 and v1alpha) over exactly the served APIs and health.
    ///
    /// # Errors
    /// A malformed descriptor set, or an API whose proto is not in it (a build problem).
    fn into_routes(self) -> anyhow::Result<(Routes, HealthReporter)> {
        let names: Vec<&str> = self.served.iter().copied().chain(ALWAYS_SERVED).collect();
        let builder = || {
            let b = DESCRIPTOR_SETS.iter().fold(tonic_reflection::server::Builder::configure(), |b, set| {
                b.register_encoded_file_descriptor_set(set)
            });
            names.iter().fold(b, |b, n| b.with_service_name(*n))
        };
        let v1 = builder().build_v1().context("building reflection")?;
        let v1alpha = builder().build_v1alpha().context("building reflection")?;
        Ok((self.routes.add_service(v1).add_service(v1alpha), self.health))
    }
}

/// What every port serves besides its APIs (a reflection builder given names lists only those).
const ALWAYS_SERVED: [&str; 3] =
    ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];

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
    parts: ServerParts,
    tls: &TlsSettings,
    ready: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (routes, health) = parts.into_routes()?;
    health.set_service_status("", ServingStatus::Serving).await;
    ready.set(true);
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
            ready.set(false);
            health.set_service_status("", ServingStatus::NotServing).await;
        }
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some(config) = server_tls(tls)? {
        builder = builder.tls_config(config)?;
    }
    builder
        .layer(crate::metrics::RpcMetricsLayer)
        .layer(crate::bounds::BoundsLayer)
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
/// A configured file that cannot be read, or a key or client CA without a certificate
/// (which would otherwise serve plain HTTP/2 while TLS was meant).
pub fn server_tls(tls: &TlsSettings) -> anyhow::Result<Option<ServerTlsConfig>> {
    if tls.cert_file.is_empty() {
        if !tls.key_file.is_empty() || !tls.client_ca_file.is_empty() {
            anyhow::bail!("tls.key_file or tls.client_ca_file is set without tls.cert_file: TLS would be off");
        }
        return Ok(None);
    }
    let identity = Identity::from_pem(read_pem(&tls.cert_file)?, read_pem(&tls.key_file)?);
    let mut config = ServerTlsConfig::new().identity(identity);
    if !tls.client_ca_file.is_empty() {
        config = config.client_ca_root(Certificate::from_pem(read_pem(&tls.client_ca_file)?));
    }
    Ok(Some(config))
}

/// Installs ring as the process's one rustls crypto provider (two providers in one
/// process make rustls panic at the first handshake). Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whether the gRPC server takes requests: set when it starts serving, cleared when the
/// drain begins. The metrics port's `/readyz` answers from it (Kubernetes' probes: a gRPC
/// probe cannot present a client certificate, an HTTP probe of the plain metrics port can).
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the server ready or not.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    /// Whether the server takes requests.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The services a service calls (`peers` of its settings) and how it reaches them: plain
/// HTTP/2, or TLS verified against `tls.peer_ca_file`, presenting the service's own
/// certificate (`tls.cert_file`/`key_file`) so that a callee with mTLS admits it. One
/// channel per peer, made at start and shared by every call; it connects lazily (a peer that
/// is down fails the call, not the start), 2 s to connect, 10 s per call, a client span per call.
#[derive(Clone, Debug, Default)]
pub struct Peers {
    channels: BTreeMap<String, TracedChannel>,
}

impl Peers {
    /// The peers of `settings`.
    ///
    /// # Errors
    /// A malformed address; with peer TLS on: an `http://` peer (it would bypass TLS), an
    /// unreadable CA, or a certificate without its key; without it: an `https://` peer (no CA
    /// to verify it by).
    pub fn from_settings(settings: &crate::config::Settings) -> anyhow::Result<Self> {
        let tls = &settings.tls;
        let client = if tls.peer_ca_file.is_empty() {
            None
        } else {
            let mut c = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read_pem(&tls.peer_ca_file)?));
            if !tls.cert_file.is_empty() {
                c = c.identity(Identity::from_pem(read_pem(&tls.cert_file)?, read_pem(&tls.key_file)?));
            }
            Some(c)
        };
        let mut channels = BTreeMap::new();
        for (name, url) in &settings.peers {
            match (client.is_some(), url.starts_with("https://")) {
                (true, false) => anyhow::bail!("peer {name} at {url}: tls.peer_ca_file is set, so peers need https://"),
                (false, true) => anyhow::bail!("peer {name} at {url}: https:// needs tls.peer_ca_file to verify it"),
                _ => {}
            }
            let mut endpoint = tonic::transport::Endpoint::from_shared(url.clone())
                .with_context(|| format!("peer address {url}"))?
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(10));
            if let Some(c) = &client {
                endpoint = endpoint.tls_config(c.clone()).with_context(|| format!("TLS to peer {name}"))?;
            }
            channels.insert(name.clone(), TracedChannel(endpoint.connect_lazy()));
        }
        Ok(Self { channels })
    }

    /// The channel to peer `name`, or `None` for a peer the settings do not name.
    pub fn channel(&self, name: &str) -> Option<TracedChannel> {
        self.channels.get(name).cloned()
    }
}

/// The contents of a PEM file of the TLS settings.
fn read_pem(path: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {path}"))
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
