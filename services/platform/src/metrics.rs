//! Metrics an operations team alerts on, exposed in the Prometheus text format on
//! `GET /metrics` (`metrics_addr`): a Kubernetes Prometheus stack scrapes pods directly,
//! with no collector to run, and a scrape shows the current value even when nothing moved.
//!
//! One registry per process (the dev process runs every service in one), so each family
//! carries the labels that tell services apart. Labels are bounded names (RPC methods,
//! subjects, consumers, outcomes): never an id, never personal data.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use std::{
    future::Future,
    pin::Pin,
    sync::LazyLock,
    task::{Context, Poll},
    time::Instant,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// An RPC and its gRPC status code name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// Fully qualified gRPC service, e.g. `onething.coordinator.v1.BundleService`.
    pub service: String,
    /// Method, e.g. `SubmitBundle`.
    pub method: String,
    /// Status code name, e.g. `OK`, `INVALID_ARGUMENT`.
    pub code: String,
}

/// An RPC.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// Fully qualified gRPC service.
    pub service: String,
    /// Method.
    pub method: String,
}

/// A NATS subject.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SubjectLabels {
    /// Subject, e.g. `onething.household.v1.case.approved`.
    pub subject: String,
}

/// One consumed event's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumeLabels {
    /// Durable consumer name.
    pub consumer: String,
    /// Subject of the event.
    pub subject: String,
    /// `applied`, `duplicate`, or `failed` (redelivered later).
    pub outcome: String,
}

/// A service's outbox.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    /// Service name.
    pub service: String,
}

/// A durable consumer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabels {
    /// Durable consumer name.
    pub consumer: String,
}

/// A finished bundle.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BundleLabels {
    /// Bundle code, e.g. `newborn`.
    pub bundle: String,
    /// Final state: `completed`, `failed`, `withdrawn`.
    pub outcome: String,
}

/// A department's cases in one state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CaseStateLabels {
    /// Department.
    pub department: String,
    /// Case state, e.g. `accepted`.
    pub state: String,
}

/// A department.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DepartmentLabels {
    /// Department.
    pub department: String,
}

/// Every metric family onething records.
pub struct Metrics {
    registry: Registry,
    /// Finished RPCs by method and status code (the R and E of RED).
    pub rpc_requests: Family<RpcLabels, Counter>,
    /// RPC handling time until the response headers (the D of RED).
    pub rpc_duration: Family<MethodLabels, Histogram>,
    /// Events JetStream acknowledged, by subject.
    pub events_published: Family<SubjectLabels, Counter>,
    /// Events a failed publish round left unsent (they stay in the outbox and are retried),
    /// by subject.
    pub events_publish_failed: Family<SubjectLabels, Counter>,
    /// Events handled by a consumer, by outcome.
    pub events_consumed: Family<ConsumeLabels, Counter>,
    /// Outbox rows not yet acknowledged by JetStream.
    pub outbox_backlog: Family<ServiceLabels, Gauge>,
    /// Age in seconds of the oldest unsent outbox row (0 when none).
    pub outbox_oldest_age: Family<ServiceLabels, Gauge>,
    /// Messages in a consumer's stream not yet delivered to it (JetStream `num_pending`).
    pub consumer_lag: Family<ConsumerLabels, Gauge>,
    /// Submit to final state of bundles, by bundle code and outcome.
    pub bundle_duration: Family<BundleLabels, Histogram>,
    /// A department's cases by state.
    pub cases: Family<CaseStateLabels, Gauge>,
    /// A department's open cases whose running clock is past the due time.
    pub cases_overdue: Family<DepartmentLabels, Gauge>,
}

/// Bundle duration buckets in seconds: 即办 bundles finish in seconds, clerk-reviewed
/// ones in days (a time limit is at most 20 working days).
const BUNDLE_BUCKETS: [f64; 12] =
    [1.0, 5.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 14400.0, 86400.0, 259200.0, 604800.0, 2419200.0];

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("onething");
        let rpc_requests = Family::<RpcLabels, Counter>::default();
        registry.register(
            "grpc_server_requests",
            "Finished gRPC requests by method and status code",
            rpc_requests.clone(),
        );
        let rpc_duration = Family::<MethodLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.001, 2.0, 14))) as fn() -> Histogram,
        );
        registry.register_with_unit(
            "grpc_server_duration",
            "gRPC handling time until the response headers",
            prometheus_client::registry::Unit::Seconds,
            rpc_duration.clone(),
        );
        let events_published = Family::<SubjectLabels, Counter>::default();
        registry.register("events_published", "Events acknowledged by JetStream", events_published.clone());
        let events_publish_failed = Family::<SubjectLabels, Counter>::default();
        registry.register(
            "events_publish_failed",
            "Events a failed publish round left unsent; they stay in the outbox and are retried",
            events_publish_failed.clone(),
        );
        let events_consumed = Family::<ConsumeLabels, Counter>::default();
        registry.register(
            "events_consumed",
            "Events handled by a consumer: applied, duplicate (already applied), known (state already had it) or failed (redelivered)",
            events_consumed.clone(),
        );
        let outbox_backlog = Family::<ServiceLabels, Gauge>::default();
        registry.register("outbox_backlog", "Outbox rows not yet acknowledged by JetStream", outbox_backlog.clone());
        let outbox_oldest_age = Family::<ServiceLabels, Gauge>::default();
        registry.register_with_unit(
            "outbox_oldest_age",
            "Age of the oldest unsent outbox row (0 when none)",
            prometheus_client::registry::Unit::Seconds,
            outbox_oldest_age.clone(),
        );
        let consumer_lag = Family::<ConsumerLabels, Gauge>::default();
        registry.register(
            "consumer_lag",
            "Messages in the stream not yet delivered to the consumer (JetStream num_pending)",
            consumer_lag.clone(),
        );
        let bundle_duration = Family::<BundleLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(BUNDLE_BUCKETS)) as fn() -> Histogram,
        );
        registry.register_with_unit(
            "bundle_duration",
            "Submit to final state of bundles, by bundle code and outcome",
            prometheus_client::registry::Unit::Seconds,
            bundle_duration.clone(),
        );
        let cases = Family::<CaseStateLabels, Gauge>::default();
        registry.register("cases", "A department's cases by state", cases.clone());
        let cases_overdue = Family::<DepartmentLabels, Gauge>::default();
        registry.register(
            "cases_overdue",
            "A department's open cases whose running clock is past the due time",
            cases_overdue.clone(),
        );
        Self {
            registry,
            consumer_lag,
            bundle_duration,
            cases,
            cases_overdue,
            rpc_requests,
            rpc_duration,
            events_published,
            events_publish_failed,
            events_consumed,
            outbox_backlog,
            outbox_oldest_age,
        }
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// Serves `GET /metrics` on `listener` until `shutdown`.
///
/// # Errors
/// The HTTP server failed.
pub async fn serve(listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async {
            (
                [(http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                metrics().render(),
            )
        }),
    );
    axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await?;
    Ok(())
}

/// A tower layer recording [`Metrics::rpc_requests`] and [`Metrics::rpc_duration`] for every
/// request of a gRPC server.
#[derive(Clone, Copy, Debug, Default)]
pub struct RpcMetricsLayer;

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics { inner }
    }
}

/// The service [`RpcMetricsLayer`] wraps around the gRPC routes.
#[derive(Clone, Debug)]
pub struct RpcMetrics<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for RpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().trim_start_matches('/');
        let (service, method) = path.split_once('/').unwrap_or((path, ""));
        let labels = MethodLabels { service: service.to_string(), method: method.to_string() };
        let started = Instant::now();
        let call = self.inner.call(req);
        Box::pin(async move {
            let result = call.await;
            // A stream failing after its first message is counted OK: not seen here.
            let code = match &result {
                Ok(resp) => crate::grpc::status_in_headers(resp.headers()),
                Err(_) => tonic::Code::Unavailable,
            };
            let m = metrics();
            m.rpc_duration.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
            m.rpc_requests
                .get_or_create(&RpcLabels {
                    service: labels.service,
                    method: labels.method,
                    code: code_name(code).into(),
                })
                .inc();
            result
        })
    }
}

/// The canonical upper-case name of a gRPC status code, as grpc-go and grpcurl print it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_families_with_their_units_and_totals() {
        let m = Metrics::new();
        m.events_published.get_or_create(&SubjectLabels { subject: "onething.x.v1.case.approved".into() }).inc();
        m.outbox_backlog.get_or_create(&ServiceLabels { service: "household".into() }).set(3);
        m.rpc_duration.get_or_create(&MethodLabels { service: "s".into(), method: "M".into() }).observe(0.003);
        let text = m.render();
        assert!(text.contains("onething_events_published_total{subject=\"onething.x.v1.case.approved\"} 1"), "{text}");
        assert!(text.contains("onething_outbox_backlog{service=\"household\"} 3"), "{text}");
        assert!(text.contains("# TYPE onething_grpc_server_duration_seconds histogram"), "{text}");
        assert!(
            text.contains("onething_grpc_server_duration_seconds_bucket{le=\"0.004\",service=\"s\",method=\"M\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn code_names_match_the_grpc_spelling() {
        assert_eq!(code_name(tonic::Code::InvalidArgument), "INVALID_ARGUMENT");
        assert_eq!(code_name(tonic::Code::Ok), "OK");
    }
}
