//! The `/metrics` endpoint over a known scenario: one newborn bundle completed and one
//! submit refused. The RPC, event and outbox families move by exactly what happened, and
//! no label carries an ID number or a name.

use crate::bundles::{citizen_with_phone, finished, newborn, submit};
use crate::common::*;
use onething_proto::coordinator::BundleState;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

/// The household's approved cases.
const APPROVED: &str = "onething_cases{department=\"household\",state=\"approved\"}";

/// The body of `GET /metrics` at `addr`.
async fn scrape(addr: &str) -> String {
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("metrics endpoint");
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: test\r\n\r\n").await.unwrap();
    let mut raw = String::new();
    conn.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: application/openmetrics-text"), "{head}");
    body.to_string()
}

/// The value of the sample `series` (name and labels exactly as exposed), 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().expect("a number"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_by_what_happened() {
    let w = TestMesh::with(Backend::Sqlite)
        .departments()
        .coordinators(1)
        .settings(|kind, s| {
            if kind == COORDINATOR {
                s.metrics_addr = "127.0.0.1:0".into();
            }
        })
        .start()
        .await
        .expect("SQLite mesh");
    let addr = w.service(COORDINATOR).metrics.expect("a metrics endpoint").to_string();

    let parent = seeded_parent();
    let applicant = citizen_with_phone(&parent, "王建国", "13712345678");
    let mut bundles = w.bundles_at(0, &citizen_token(&parent)).await;
    let b = bundles
        .submit_bundle(newborn(applicant.clone(), &parent, ("王小明", "M"), "Q3710020900", "metrics-born"))
        .await
        .unwrap()
        .into_inner()
        .bundle
        .unwrap();
    let done = finished(&mut bundles, &b.bundle_id).await;
    assert_eq!(done.state(), BundleState::Completed);
    let refused = bundles.submit_bundle(submit("no_such_bundle", applicant, &[], &[], &[], "metrics-bad")).await;
    assert_eq!(refused.unwrap_err().code(), Code::InvalidArgument);

    let rpc = |method: &str, code: &str| {
        format!(
            "onething_grpc_server_requests_total{{service=\"onething.coordinator.v1.BundleService\",method=\"{method}\",code=\"{code}\"}}"
        )
    };
    let published =
        |state: &str| format!("onething_events_published_total{{subject=\"onething.coordinator.v1.bundle.{state}\"}}");
    // Publishing and consuming trail the bundle's state by a relay round: wait for them.
    let text = eventually(Duration::from_secs(30), "the completion event published and the outbox empty", || {
        let addr = addr.clone();
        let completed = published("completed");
        async move {
            let t = scrape(&addr).await;
            (sample(&t, &completed) == 1.0
                && sample(&t, "onething_outbox_backlog{service=\"coordinator\"}") == 0.0
                && sample(&t, APPROVED) == 1.0)
                .then_some(t)
        }
    })
    .await
    .unwrap();

    assert_eq!(sample(&text, &rpc("SubmitBundle", "OK")), 1.0, "{text}");
    assert_eq!(sample(&text, &rpc("SubmitBundle", "INVALID_ARGUMENT")), 1.0, "{text}");
    assert_eq!(
        sample(
            &text,
            "onething_grpc_server_duration_seconds_count{service=\"onething.coordinator.v1.BundleService\",method=\"SubmitBundle\"}"
        ),
        2.0
    );
    // One department case per step, each created once.
    let creates = sample(
        &text,
        "onething_grpc_server_requests_total{service=\"onething.common.v1.CaseService\",method=\"CreateCase\",code=\"OK\"}",
    );
    assert_eq!(creates, done.steps.len() as f64, "{text}");
    assert_eq!(sample(&text, &published("submitted")), 1.0, "the refused submit published nothing");
    assert!(text.contains("\nonething_outbox_oldest_age_seconds{service=\"coordinator\"} 0\n"), "{text}");
    // The coordinator took the household case's approval once: applied, or known already
    // from the CreateCase answer (whichever came first).
    let approved = |outcome: &str| {
        let series = format!(
            "onething_events_consumed_total{{consumer=\"coordinator-household-cases\",subject=\"onething.household.v1.case.approved\",outcome=\"{outcome}\"}}"
        );
        sample(&text, &series)
    };
    assert_eq!(approved("applied") + approved("known"), 1.0, "{text}");
    assert!(!text.contains("outcome=\"failed\""), "no consumer failed: {text}");
    assert_eq!(
        sample(&text, "onething_bundle_duration_seconds_count{bundle=\"newborn\",outcome=\"completed\"}"),
        1.0,
        "{text}"
    );
    assert!(
        text.contains("\nonething_consumer_lag{consumer=\"coordinator-household-cases\"} 0\n"),
        "caught up: {text}"
    );
    // The household's one case is approved; no other state holds one, none is overdue.
    let household_cases: f64 = text
        .lines()
        .filter(|l| l.starts_with("onething_cases{department=\"household\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(household_cases, 1.0, "{text}");
    assert!(text.contains("onething_cases{department=\"household\",state=\"accepted\"} 0"), "every state exposed");
    assert!(text.contains("\nonething_cases_overdue{department=\"household\"} 0\n"), "none overdue: {text}");
    for secret in [parent.as_str(), "王建国", "王小明", "13712345678"] {
        assert!(!text.contains(secret), "personal data in metrics");
    }
    w.stop_all().await;
}
