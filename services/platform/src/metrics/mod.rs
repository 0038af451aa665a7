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
use std::sync::LazyLock;
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
    /// `applied`, `duplicate`, `known`, `failed` (redelivered later, with backoff), or
    /// `dead_lettered` (written to `ONETHING_DLQ`).
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
    /// Messages a consumer gave up on and put into the dead-letter stream.
    pub events_dead_lettered: Family<ConsumerLabels, Counter>,
    /// Outbox rows moved to the quarantine (`outbox_dead`) since start.
    pub outbox_quarantined: Family<ServiceLabels, Counter>,
    /// Rows waiting in the outbox quarantine.
    pub outbox_dead: Family<ServiceLabels, Gauge>,
    /// Sent events the reconciliation found missing from their stream and published again.
    pub outbox_republished: Family<ServiceLabels, Counter>,
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
        let mut r = Registry::with_prefix("onething");
        let registry = &mut r;
        Self {
            rpc_requests: counters(
                registry,
                "grpc_server_requests",
                "Finished gRPC requests by method and status code",
            ),
            rpc_duration: seconds(
                registry,
                "grpc_server_duration",
                "gRPC handling time until the response headers",
                Family::new_with_constructor(
                    (|| Histogram::new(exponential_buckets(0.001, 2.0, 14))) as fn() -> Histogram,
                ),
            ),
            events_published: counters(registry, "events_published", "Events acknowledged by JetStream"),
            events_publish_failed: counters(
                registry,
                "events_publish_failed",
                "Events a failed publish round left unsent; they stay in the outbox and are retried",
            ),
            events_consumed: counters(
                registry,
                "events_consumed",
                "Events handled by a consumer: applied, duplicate (already applied), known (state already had it) or failed (redelivered)",
            ),
            outbox_backlog: gauges(registry, "outbox_backlog", "Outbox rows not yet acknowledged by JetStream"),
            outbox_oldest_age: seconds(
                registry,
                "outbox_oldest_age",
                "Age of the oldest unsent outbox row (0 when none)",
                Family::<ServiceLabels, Gauge>::default(),
            ),
            consumer_lag: gauges(
                registry,
                "consumer_lag",
                "Messages in the stream not yet delivered to the consumer (JetStream num_pending)",
            ),
            events_dead_lettered: counters(
                registry,
                "events_dead_lettered",
                "Messages a consumer gave up on (undecodable, or failing after the last redelivery), now in ONETHING_DLQ",
            ),
            outbox_quarantined: counters(
                registry,
                "outbox_quarantined",
                "Outbox rows that could not be published and were moved to the quarantine (onething outbox list)",
            ),
            outbox_dead: gauges(registry, "outbox_dead", "Rows waiting in the outbox quarantine"),
            outbox_republished: counters(
                registry,
                "outbox_republished",
                "Acknowledged events the reconciliation found missing from their stream and published again",
            ),
            bundle_duration: seconds(
                registry,
                "bundle_duration",
                "Submit to final state of bundles, by bundle code and outcome",
                Family::new_with_constructor((|| Histogram::new(BUNDLE_BUCKETS)) as fn() -> Histogram),
            ),
            cases: gauges(registry, "cases", "A department's cases by state"),
            cases_overdue: gauges(
                registry,
                "cases_overdue",
                "A department's open cases whose running clock is past the due time",
            ),
            registry: r,
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

/// Serves `GET /metrics`, and the probes Kubernetes asks on this plain port (a gRPC probe
/// cannot present a client certificate when the gRPC port wants one): `GET /livez` (the
/// process answers) and `GET /readyz` (200 while the gRPC server takes requests, 503 before
/// and from the start of the drain), on `listener` until `shutdown`.
///
/// # Errors
/// The HTTP server failed.
pub async fn serve(
    listener: TcpListener,
    ready: crate::grpc::Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let readyz = move || {
        let ready = ready.clone();
        async move {
            if ready.is_ready() {
                (http::StatusCode::OK, "ready\n")
            } else {
                (http::StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            }
        }
    };
    let app = axum::Router::new()
        .route("/livez", axum::routing::get(|| async { "alive\n" }))
        .route("/readyz", axum::routing::get(readyz))
        .route(
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

/// A family of counters registered under `name`.
fn counters<L>(registry: &mut Registry, name: &str, help: &str) -> Family<L, Counter>
where
    L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
{
    let f = Family::<L, Counter>::default();
    registry.register(name, help, f.clone());
    f
}

/// A family of gauges registered under `name`.
fn gauges<L>(registry: &mut Registry, name: &str, help: &str) -> Family<L, Gauge>
where
    L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
{
    let f = Family::<L, Gauge>::default();
    registry.register(name, help, f.clone());
    f
}

/// Registers `metric`, measured in seconds, under `name` and returns it.
fn seconds<M: prometheus_client::registry::Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register_with_unit(name, help, prometheus_client::registry::Unit::Seconds, metric.clone());
    metric
}

mod rpc;

pub use rpc::{Counted, RpcMetrics, RpcMetricsLayer, code_name};

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        pin::Pin,
        task::{Context, Poll},
    };

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

    /// A response body of given frames, then its end.
    struct Frames(std::collections::VecDeque<http_body::Frame<bytes::Bytes>>);

    impl http_body::Body for Frames {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }

        fn is_end_stream(&self) -> bool {
            self.0.is_empty()
        }
    }

    /// A gRPC route answering every request with `headers` and `frames`.
    #[derive(Clone)]
    struct Answer(Option<i32>, Vec<Option<i32>>);

    impl tower::Service<http::Request<()>> for Answer {
        type Response = http::Response<Frames>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            // `Some(code)`: trailers with that status; `None`: a message.
            let frames = self
                .1
                .iter()
                .map(|f| match f {
                    Some(code) => {
                        let mut t = http::HeaderMap::new();
                        t.insert("grpc-status", code.to_string().parse().expect("a header value"));
                        http_body::Frame::trailers(t)
                    }
                    None => http_body::Frame::data(bytes::Bytes::from_static(b"message")),
                })
                .collect();
            let mut resp = http::Response::new(Frames(frames));
            if let Some(code) = self.0 {
                resp.headers_mut().insert("grpc-status", code.to_string().parse().expect("a header value"));
            }
            std::future::ready(Ok(resp))
        }
    }

    /// Calls `method` of the case service once through the layer, reads `read` frames of the body, drops it, and
    /// returns the code names counted for it.
    async fn counted(method: &str, answer: Answer, read: usize) -> Vec<(String, u64)> {
        use http_body::Body as _;
        use tower::{Layer as _, Service as _};
        let mut svc = RpcMetricsLayer.layer(answer);
        let req = http::Request::builder()
            .uri(format!("/onething.common.v1.CaseService/{method}"))
            .body(())
            .expect("a request");
        let mut body = Box::pin(svc.call(req).await.expect("a response").into_body());
        for _ in 0..read {
            let _ = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await;
        }
        drop(body);
        ["OK", "INTERNAL", "INVALID_ARGUMENT", "CANCELLED"]
            .into_iter()
            .map(|code| {
                let labels = RpcLabels {
                    service: "onething.common.v1.CaseService".into(),
                    method: method.into(),
                    code: code.into(),
                };
                (code.to_string(), metrics().rpc_requests.get_or_create(&labels).get())
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    #[tokio::test]
    async fn rpcs_are_counted_with_the_status_they_end_with() {
        let one = |code: &str| vec![(code.to_string(), 1)];
        // A unary answer: a message, then trailers saying OK.
        assert_eq!(counted("GetCase", Answer(None, vec![None, Some(0)]), 3).await, one("OK"));
        // A stream failing after its first message: INTERNAL in the trailers.
        assert_eq!(counted("ListCases", Answer(None, vec![None, None, Some(13)]), 4).await, one("INTERNAL"));
        // An error without messages: the status in the headers, a body never read.
        assert_eq!(counted("AcceptCase", Answer(Some(3), vec![]), 0).await, one("INVALID_ARGUMENT"));
        // A stream the client left before its end.
        assert_eq!(counted("RequestSupplement", Answer(None, vec![None, None, Some(0)]), 1).await, one("CANCELLED"));
        // A path no RPC has: counted under `unknown`, never under what the caller made up.
        {
            use tower::{Layer as _, Service as _};
            let req = http::Request::builder().uri("/made.up/Path12345").body(()).expect("a request");
            drop(RpcMetricsLayer.layer(Answer(Some(12), vec![])).call(req).await.expect("a response"));
        }
        let text = metrics().render();
        assert!(!text.contains("Path12345") && !text.contains("made.up"), "{text}");
    }

    #[test]
    fn code_names_match_the_grpc_spelling() {
        assert_eq!(code_name(tonic::Code::InvalidArgument), "INVALID_ARGUMENT");
        assert_eq!(code_name(tonic::Code::Ok), "OK");
    }
}
