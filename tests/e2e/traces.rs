//! One bundle is one trace, received the way an operations team receives it: the services
//! export over OTLP/gRPC (the production batch exporter) to a TraceService server inside
//! this test. An after_death bundle touches household, vehicle and exit-entry; its spans
//! share one trace id, form one tree rooted at the submit, and link submit → department
//! cases → events → completion, with no personal data in any attribute.

use crate::bundles::{after_death, citizen_with_phone, finished};
use crate::common::*;
use onething_platform::{config::LogSettings, telemetry};
use onething_proto::coordinator::BundleState;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value::Value,
    trace::v1::{Span, span::SpanKind},
};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};
use tonic::{Request, Response, Status};

/// An OTLP trace receiver keeping every span it is sent.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut kept = self.0.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                kept.extend(scope.spans);
            }
        }
        Ok(Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

/// The string attribute `key` of `s`.
fn attr<'a>(s: &'a Span, key: &str) -> Option<&'a str> {
    s.attributes.iter().find(|kv| kv.key == key).and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
        Value::StringValue(v) => Some(v.as_str()),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_is_one_trace_over_otlp() {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(otlp).build().unwrap();
    let settings = LogSettings { format: "json".into(), filter: "info".into() };
    let logs = LogSink::default();
    let _guard = telemetry::init_exporting("traces-test", &settings, exporter, logs.clone())
        .expect("this test must install telemetry first: run it with cargo nextest (one process per test)");

    let w = TestMesh::with(Backend::Sqlite).departments().coordinators(1).start().await.expect("SQLite world");
    let relative = elders_son();
    let elder = onething_household::store::seed_id("371003", "1949-09-09", 62).unwrap().expose().to_string();
    let applicant = citizen_with_phone(&relative, "周强", "13712345678");
    let mut bundles = w.bundles_at(0, &citizen_token(&relative)).await;
    let b = bundles
        .submit_bundle(after_death(applicant, &elder, "SW-2026-0900", "traces-death"))
        .await
        .unwrap()
        .into_inner()
        .bundle
        .unwrap();
    let done = finished(&mut bundles, &b.bundle_id).await;
    assert_eq!(done.state(), BundleState::Completed);
    w.stop_all().await;
    telemetry::flush();
    let spans = eventually(Duration::from_secs(30), "the completion's spans at the receiver", || {
        let kept = receiver.0.clone();
        async move {
            let spans = kept.lock().unwrap().clone();
            spans
                .iter()
                .any(|s| attr(s, "messaging.destination.name") == Some("onething.coordinator.v1.bundle.completed"))
                .then_some(spans)
        }
    })
    .await
    .unwrap();
    server.abort();

    let submits: Vec<&Span> =
        spans.iter().filter(|s| s.name == "onething.coordinator.v1.BundleService/SubmitBundle").collect();
    assert_eq!(submits.len(), 1, "one submit");
    let root = submits[0];
    let trace: Vec<&Span> = spans.iter().filter(|s| s.trace_id == root.trace_id).collect();
    let by_id: HashMap<&[u8], &Span> = trace.iter().map(|s| (s.span_id.as_slice(), *s)).collect();
    let ancestors = |s: &Span| {
        let mut names = Vec::new();
        let mut at = s;
        while let Some(p) = by_id.get(at.parent_span_id.as_slice()) {
            names.push(p.name.clone());
            at = p;
        }
        names
    };

    // One tree: every span but the submit has its parent in the trace.
    for s in &trace {
        if s.span_id != root.span_id {
            assert!(by_id.contains_key(s.parent_span_id.as_slice()), "span {} has its parent in the trace", s.name);
        }
    }
    // Every span of the bundle's work that names it is in it (the applicant's reads,
    // GetBundle while waiting, are traces of their own).
    let reads =
        ["onething.coordinator.v1.BundleService/GetBundle", "onething.coordinator.v1.BundleService/WatchBundle"];
    for s in
        spans.iter().filter(|s| attr(s, "bundle_id") == Some(b.bundle_id.as_str()) && !reads.contains(&s.name.as_str()))
    {
        assert_eq!(s.trace_id, root.trace_id, "{} joins the bundle's trace", s.name);
    }
    // Submit → each department's case, once per step.
    // Both sides of a call have a span: the department's server span is the child of the
    // coordinator's client span.
    let kind = |k: SpanKind| k as i32;
    let creates: Vec<&&Span> = trace
        .iter()
        .filter(|s| s.name == "onething.common.v1.CaseService/CreateCase" && s.kind == kind(SpanKind::Server))
        .collect();
    for c in &creates {
        let client = by_id.get(c.parent_span_id.as_slice()).expect("the caller's span");
        assert_eq!((client.name.as_str(), client.kind), (c.name.as_str(), kind(SpanKind::Client)));
    }
    assert_eq!(creates.len(), done.steps.len(), "one case per step");
    for c in &creates {
        assert_eq!(attr(c, "bundle_id"), Some(b.bundle_id.as_str()), "the department's span names the bundle");
        assert!(done.steps.iter().any(|s| attr(c, "case_id") == Some(s.case_id.as_str())), "and the case");
        let up = ancestors(c);
        assert!(up.iter().any(|n| n == "bundle.drive") && up.last() == Some(&root.name), "{up:?}");
    }
    // Cases → events: every department's case event the coordinator consumed descends from
    // a CreateCase (directly, or through another department's consumer).
    let consumed: Vec<&&Span> = trace
        .iter()
        .filter(|s| {
            s.name == "event.consume"
                && attr(s, "messaging.consumer.group.name").is_some_and(|c| c.starts_with("coordinator-"))
        })
        .collect();
    assert!(consumed.len() >= done.steps.len(), "the coordinator consumed each department's case events");
    for e in &consumed {
        let up = ancestors(e);
        assert!(up.iter().any(|n| n == "onething.common.v1.CaseService/CreateCase"), "{up:?}");
    }
    for dept in ["household", "vehicle", "exit_entry"] {
        let subject = format!("onething.{dept}.v1.case.approved");
        assert!(
            trace
                .iter()
                .any(|s| s.name == "outbox.publish" && attr(s, "messaging.destination.name") == Some(subject.as_str())),
            "{subject} published in the bundle's trace"
        );
    }
    // Events → completion: the completion is published by a drive of the bundle.
    let completion = trace
        .iter()
        .find(|s| attr(s, "messaging.destination.name") == Some("onething.coordinator.v1.bundle.completed"))
        .expect("the completion event in the bundle's trace");
    let up = ancestors(completion);
    assert!(up.first().is_some_and(|n| n == "bundle.drive") && up.last() == Some(&root.name), "{up:?}");

    // Log lines carry the trace and span ids of the span they were written in: every line
    // about the bundle (its submit, the saga's "bundle state changed" lines in its drives, the
    // departments' "case created" inside their CreateCase calls) names its trace.
    let trace_hex: String = root.trace_id.iter().map(|b| format!("{b:02x}")).collect();
    let log_text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let about: Vec<serde_json::Value> = log_text
        .lines()
        .filter(|l| l.contains(&b.bundle_id))
        .map(|l| serde_json::from_str(l).expect("a log line is one JSON object"))
        .collect();
    for message in ["bundle submitted", "bundle state changed", "case created"] {
        assert!(about.iter().any(|l| l["message"] == message), "{message} logged");
    }
    let spans_ids: std::collections::HashSet<String> =
        trace.iter().map(|s| s.span_id.iter().map(|b| format!("{b:02x}")).collect()).collect();
    for line in &about {
        assert_eq!(line["trace_id"].as_str(), Some(trace_hex.as_str()), "{line}");
        let span_id = line["span_id"].as_str().unwrap_or_default();
        assert!(spans_ids.contains(span_id), "the line names a span of the trace: {line}");
    }

    // No personal data in any attribute of any span.
    for secret in [relative.as_str(), elder.as_str(), "周强", "13712345678"] {
        for s in &spans {
            for kv in &s.attributes {
                assert!(
                    !format!("{:?}", kv.value).contains(secret),
                    "personal data in span {} attribute {}",
                    s.name,
                    kv.key
                );
            }
        }
    }
}
