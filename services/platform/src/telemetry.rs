//! Telemetry: `tracing` logs (JSON in production, pretty in development), an OpenTelemetry
//! tracer (exported over OTLP only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set), and W3C
//! trace context carried in gRPC metadata and NATS headers so one bundle is one trace.

use crate::config::LogSettings;
use opentelemetry::{
    Context,
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use std::sync::OnceLock;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, Layer as _, filter::LevelFilter, layer::SubscriberExt, util::SubscriberInitExt};

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Flushes and stops the tracer when dropped (at the end of `main`).
#[must_use = "dropping the guard flushes telemetry; keep it until the process ends"]
pub struct TelemetryGuard {
    owner: bool,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if self.owner
            && let Some(p) = PROVIDER.get()
            && let Err(e) = p.shutdown()
        {
            eprintln!("telemetry flush failed: {e}");
        }
    }
}

/// Installs the global subscriber and tracer for `service`. Only the first call in a process
/// installs anything (tests and `onething dev` run several services in one process); later
/// calls return a guard that flushes nothing.
pub fn init(service: &str, log: &LogSettings) -> TelemetryGuard {
    install(service, log, |b| b, std::io::stdout, false).unwrap_or(TelemetryGuard { owner: false })
}

/// Like [`init`], and also hands every finished span to `exporter` and writes every log
/// line as JSON to `writer`: for tests that inspect what telemetry carries. `None` when
/// telemetry was already installed in this process.
pub fn init_capturing<E, W>(service: &str, log: &LogSettings, exporter: E, writer: W) -> Option<TelemetryGuard>
where
    E: opentelemetry_sdk::trace::SpanExporter + 'static,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    install(service, log, |b| b.with_simple_exporter(exporter), writer, true)
}

/// Like [`init_capturing`], but spans leave through the batch processor production uses:
/// for tests that point a real exporter (OTLP to a receiver of their own) at `exporter`.
/// [`flush`] sends what is pending. `None` when telemetry was already installed.
pub fn init_exporting<E, W>(service: &str, log: &LogSettings, exporter: E, writer: W) -> Option<TelemetryGuard>
where
    E: opentelemetry_sdk::trace::SpanExporter + 'static,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    install(service, log, |b| b.with_batch_exporter(exporter), writer, true)
}

/// Flushes spans not yet exported.
pub fn flush() {
    if let Some(p) = PROVIDER.get() {
        let _ = p.force_flush();
    }
}

type ProviderBuilder = opentelemetry_sdk::trace::TracerProviderBuilder;

fn install<W>(
    service: &str,
    log: &LogSettings,
    extra: impl FnOnce(ProviderBuilder) -> ProviderBuilder,
    writer: W,
    json: bool,
) -> Option<TelemetryGuard>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let mut first = false;
    let provider = PROVIDER.get_or_init(|| {
        first = true;
        extra(provider_builder(service)).build()
    });
    if !first {
        return None;
    }
    let tracer = provider.tracer("onething");
    // Each layer filters for itself: a quiet log level must not switch off tracing.
    let log_filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.filter));
    // No code of ours reads OpenTelemetry's own current context (trace context is taken
    // from the tracing span), so entering a span need not activate it: that was an attach
    // and a detach on every poll of every instrumented future.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_context_activation(false)
        .with_filter(LevelFilter::INFO);
    let registry = tracing_subscriber::registry().with(otel);
    let installed = if json || log.format == "json" {
        let format =
            tracing_subscriber::fmt::format().json().flatten_event(true).with_current_span(true).with_span_list(true);
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .event_format(WithTraceIds(format))
                    .with_writer(writer)
                    .with_filter(log_filter()),
            )
            .try_init()
    } else {
        registry
            .with(tracing_subscriber::fmt::layer().compact().with_writer(writer).with_filter(log_filter()))
            .try_init()
    };
    Some(TelemetryGuard { owner: installed.is_ok() })
}

fn provider_builder(service: &str) -> ProviderBuilder {
    let service_name = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| service.to_string());
    let resource = Resource::builder().with_service_name(service_name).build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    let wants_otlp = std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
        || std::env::var_os("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some();
    if wants_otlp {
        match opentelemetry_otlp::SpanExporter::builder().with_tonic().build() {
            Ok(exporter) => builder = builder.with_batch_exporter(exporter),
            Err(e) => eprintln!("OTLP exporter not started: {e}"),
        }
    }
    // Without an exporter the provider still assigns trace ids, so context propagates.
    builder
}

/// The current span's W3C `traceparent`, if it belongs to a sampled or valid trace.
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    let mut carrier = std::collections::HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// The trace id of the current span as 32 hex digits, for logs and tests.
pub fn current_trace_id() -> Option<String> {
    let cx = tracing::Span::current().context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// A JSON log line with the OpenTelemetry `trace_id` and `span_id` of the span it was written
/// in, as its first two keys, so every line written inside any span names the trace to open.
///
/// The ids are read when a line is written, not recorded on spans when they are made: a
/// span's trace is known only once its parent is set (often after it is made), and the
/// JSON formatter re-parses a span's fields on every `record`, which cost the services
/// about a twentieth of their CPU in `perf` when each span had its ids recorded.
struct WithTraceIds<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for WithTraceIds<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.0.format_event(ctx, tracing_subscriber::fmt::format::Writer::new(&mut line), event)?;
        // The span's context, from the OpenTelemetry layer of the dispatcher writing this line.
        let cx = ctx.parent_span().and_then(|span| {
            tracing::dispatcher::get_default(|d| tracing_opentelemetry::get_otel_context(&span.id(), d))
        });
        let sc = cx.as_ref().map(|cx| cx.span().span_context().clone());
        match (sc, line.strip_prefix('{')) {
            (Some(sc), Some(rest)) if sc.is_valid() => {
                write!(writer, "{{\"trace_id\":\"{}\",\"span_id\":\"{}\",{rest}", sc.trace_id(), sc.span_id())
            }
            _ => writer.write_str(&line),
        }
    }
}

/// Prepares the span of publishing or consuming one event: parented to the trace context
/// the event carries, with the case or bundle it is about.
pub fn join_event(span: &tracing::Span, traceparent: Option<&str>, ce_subject: &str) {
    set_remote_parent(span, traceparent);
    record_event_subject(span, ce_subject);
}

/// Records the case or bundle id an event is about (its `ce-subject`, `cases/<id>` or
/// `bundles/<id>`) in `span`'s `case_id` or `bundle_id` field. Other subjects may hold
/// personal data (`persons/<ID number>`) and are never recorded.
fn record_event_subject(span: &tracing::Span, ce_subject: &str) {
    if let Some(id) = ce_subject.strip_prefix("cases/") {
        span.record("case_id", id);
    } else if let Some(id) = ce_subject.strip_prefix("bundles/") {
        span.record("bundle_id", id);
    }
}

/// Records a case id and a bundle id (empty ones are skipped) on the current span, where it
/// declares `case_id` / `bundle_id` (the gRPC server and event spans do), so an operator
/// finds the request by either id.
pub fn record_ids(case_id: Option<&str>, bundle_id: Option<&str>) {
    let span = tracing::Span::current();
    if let Some(id) = case_id.filter(|s| !s.is_empty()) {
        span.record("case_id", id);
    }
    if let Some(id) = bundle_id.filter(|s| !s.is_empty()) {
        span.record("bundle_id", id);
    }
}

/// Makes `span` a child of the remote context in `traceparent` (from a NATS header or an
/// outbox row); does nothing for a missing or malformed value.
pub fn set_remote_parent(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(tp) = traceparent else { return };
    let mut carrier = std::collections::HashMap::new();
    carrier.insert("traceparent".to_string(), tp.to_string());
    let cx = TraceContextPropagator::new().extract(&carrier);
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

struct HttpHeaders<'a>(&'a http::HeaderMap);

impl Extractor for HttpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The span of one incoming gRPC request, child of the caller's trace context if the
/// request carries `traceparent`. Used as tonic's `trace_fn`.
pub fn grpc_server_span(req: &http::Request<()>) -> tracing::Span {
    // Names from the known RPCs only: the path is the caller's, before any check.
    let (service, method) = crate::policy::rpc_labels(req.uri().path());
    let span = tracing::info_span!(
        "grpc.server",
        otel.name = %format_args!("{service}/{method}"),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        case_id = tracing::field::Empty,
        bundle_id = tracing::field::Empty,
    );
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&HttpHeaders(req.headers())));
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
    span
}

struct HeadersMut<'a>(&'a mut http::HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (http::HeaderName::from_bytes(key.as_bytes()), http::HeaderValue::from_str(&value)) {
            self.0.insert(k, v);
        }
    }
}

/// Puts `span`'s trace context into outgoing HTTP/2 headers (replacing any there).
pub fn inject_headers(span: &tracing::Span, headers: &mut http::HeaderMap) {
    let cx = span.context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut HeadersMut(headers)));
}

struct Metadata<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for Metadata<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(k, v);
        }
    }
}

/// A tonic client interceptor that puts the current trace context into the request metadata.
///
/// # Errors
/// Never; the signature is tonic's.
#[allow(clippy::result_large_err)]
pub fn inject_grpc(mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    let cx: Context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut Metadata(req.metadata_mut())));
    Ok(req)
}
