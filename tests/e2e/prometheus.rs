//! The chart's operations kit against a real Prometheus: the whole mesh runs a bundle, RPCs
//! and two failed publishes while Prometheus scrapes it every second with the chart's rules
//! file loaded. Prometheus loads every alert and evaluates it without error, every alert's
//! query (its threshold removed) and every query of the Grafana dashboard returns series,
//! and the publish failures raise `OnethingPublishFailing`.

use crate::bundles::{applicant, finished, newborn, submit};
use crate::common::*;
use onething_platform::events::nats::stream_name;
use onething_proto::{common as cpb, coordinator::BundleState};
use serde_json::Value;
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};
use tonic::Code;

/// Debian's `prometheus` package, which `make tools` installs.
const PROMETHEUS_BIN: &str = "/usr/bin/prometheus";

/// How long Prometheus gets to have scraped and evaluated what the mesh did.
const SETTLE: Duration = Duration::from_secs(60);

fn chart_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/onething/files").join(name)
}

/// A Prometheus server of this test: its own store and port, killed when dropped.
struct Prometheus {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (`host:port` serving `/metrics`) every second and
    /// evaluating the chart's rules every second, and waits until it is ready.
    async fn start(target: &str) -> Self {
        assert!(
            Path::new(PROMETHEUS_BIN).is_file(),
            "{PROMETHEUS_BIN} is missing: run `make tools` (it installs Debian's prometheus package)"
        );
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: onething\n    static_configs:\n      - targets: ['{target}']\n",
            rules = chart_file("alerts.yaml").display(),
        );
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config).unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(PROMETHEUS_BIN)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {PROMETHEUS_BIN}: {e}"));
        let prom = Self { child, addr, dir };
        let ready = eventually(Duration::from_secs(30), "Prometheus to be ready", || async {
            http_get(&prom.addr, "/-/ready").await.filter(|(status, _)| *status == 200)
        })
        .await;
        assert!(ready.is_ok(), "Prometheus did not start:\n{}", prom.log());
        prom
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `data` of the API answer at `path`, which must be a success.
    async fn api(&self, path: &str) -> Value {
        let (status, body) = http_get(&self.addr, path).await.expect("Prometheus answers");
        let answer: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}), status {status}: {body}"));
        assert_eq!(answer["status"], "success", "{path}: {body}");
        answer["data"].clone()
    }

    /// The series an instant query returns now.
    async fn query(&self, promql: &str) -> Vec<Value> {
        let data = self.api(&format!("/api/v1/query?query={}", url_encode(promql))).await;
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// The value of a query returning one series (`None` when it returns none).
    async fn value(&self, promql: &str) -> Option<f64> {
        let result = self.query(promql).await;
        result.first().and_then(|s| s["value"][1].as_str()).map(|v| v.parse().expect("a number"))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encoding of a query parameter value.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The byte offsets of `expr` outside brackets and quoted strings.
fn top_level(expr: &str) -> Vec<usize> {
    let (mut depth, mut quote, mut escaped) = (0i32, None, false);
    let mut out = Vec::new();
    for (i, c) in expr.char_indices() {
        if let Some(q) = quote {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                _ if c == q => quote = None,
                _ => {}
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ if depth == 0 => out.push(i),
            _ => {}
        }
    }
    out
}

/// The queries an alert expression compares with thresholds: each operand of a top-level
/// `and`, without its final `<comparison> <number>` (alerts.yaml keeps to that form).
fn alert_queries(expr: &str) -> Vec<String> {
    let expr = expr.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut parts = Vec::new();
    let mut from = 0;
    for i in top_level(&expr) {
        if i >= from && expr[i..].starts_with(" and ") {
            parts.push(&expr[from..i]);
            from = i + " and ".len();
        }
    }
    parts.push(&expr[from..]);
    parts
        .into_iter()
        .map(|part| {
            let (at, op) = top_level(part)
                .into_iter()
                .filter_map(|i| {
                    [">=", "<=", "==", "!=", ">", "<"]
                        .into_iter()
                        .find(|op| part[i..].starts_with(op))
                        .map(|op| (i, op))
                })
                .next_back()
                .unwrap_or_else(|| panic!("`{part}` of `{expr}` compares with no threshold"));
            let threshold = part[at + op.len()..].trim();
            assert!(threshold.parse::<f64>().is_ok(), "`{part}` of `{expr}` does not end with `<comparison> <number>`");
            part[..at].trim().to_string()
        })
        .collect()
}

/// Every panel of a dashboard, rows' panels included.
fn panels(list: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for p in list.as_array().into_iter().flatten() {
        out.push(p.clone());
        out.extend(panels(&p["panels"]));
    }
    out
}

/// The alert names alerts.yaml declares.
fn declared_alerts() -> Vec<String> {
    let text = std::fs::read_to_string(chart_file("alerts.yaml")).unwrap();
    text.lines().filter_map(|l| l.trim().strip_prefix("- alert:")).map(|n| n.trim().to_string()).collect()
}

/// The (panel title, query) pairs of the dashboard, Grafana's `$__rate_interval` as one
/// minute (60 scrapes here). Checks each panel and target names the `${datasource}` variable.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(chart_file("dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("dashboard.json is JSON");
    let variables = dashboard["templating"]["list"].as_array().expect("templating variables");
    assert!(
        variables.iter().any(|v| v["name"] == "datasource" && v["type"] == "datasource" && v["query"] == "prometheus"),
        "a datasource variable of type prometheus: {variables:?}"
    );
    let mut queries = Vec::new();
    for panel in panels(&dashboard["panels"]) {
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().expect("a panel title").to_string();
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "panel {title}");
        let targets = panel["targets"].as_array().filter(|t| !t.is_empty());
        for target in targets.unwrap_or_else(|| panic!("panel {title} has no query")) {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "panel {title}");
            let expr = target["expr"].as_str().expect("a PromQL expression").replace("$__rate_interval", "1m");
            assert!(!expr.contains('$'), "panel {title}: a Grafana variable this test does not know: {expr}");
            queries.push((title.clone(), expr));
        }
    }
    queries
}

/// Deletes household's stream, then creates a case there: the relay's publish finds no
/// stream (counted as failed), and the relay makes the stream again and sends the events.
async fn fail_a_publish(w: &TestMesh, key: &str) {
    let js = w.nats.jetstream().await;
    js.delete_stream(stream_name("household")).await.unwrap();
    let mut cases = w.cases(HOUSEHOLD, &service("coordinator", "household")).await;
    cases.create_case(certificate_request(key)).await.unwrap();
}

/// Waits until Prometheus has seen `onething_events_publish_failed_total` sum to at least `n`.
async fn failed_publishes_seen(prom: &Prometheus, n: f64) {
    let seen = eventually(SETTLE, "Prometheus to see the failed publish", || async {
        prom.value("sum(onething_events_publish_failed_total)").await.filter(|v| *v >= n)
    })
    .await;
    assert!(seen.is_ok(), "no failed publish scraped: {:?}", prom.query("onething_events_publish_failed_total").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_evaluates_every_alert_and_panel_on_the_running_mesh() {
    // Every service of the process shares one registry, served by the coordinator.
    let w = TestMesh::with(Backend::Sqlite)
        .everything()
        .settings(|kind, s| {
            if kind == COORDINATOR {
                s.metrics_addr = "127.0.0.1:0".into();
            }
        })
        .start()
        .await
        .expect("SQLite mesh");
    let metrics_addr = w.service(COORDINATOR).metrics.expect("a metrics endpoint").to_string();
    let prom = Prometheus::start(&metrics_addr).await;

    // A bundle to completion, a refused submit, the reads of the applicant waiting.
    let parent = seeded_parent();
    let who = applicant(cpb::ApplicantKind::Citizen, &parent, "申请人");
    let mut bundles = w.bundles_at(0, &citizen_token(&parent)).await;
    let b = bundles
        .submit_bundle(newborn(who.clone(), &parent, ("王小明", "M"), "Q3710020901", "prometheus-born"))
        .await
        .unwrap()
        .into_inner()
        .bundle
        .unwrap();
    assert_eq!(finished(&mut bundles, &b.bundle_id).await.state(), BundleState::Completed);
    let refused = bundles.submit_bundle(submit("no_such_bundle", who, &[], &[], &[], "prometheus-bad")).await;
    assert_eq!(refused.unwrap_err().code(), Code::InvalidArgument);

    // Two failed publish rounds, the second after Prometheus saw the first: the counter's
    // series exists, and it rises while Prometheus watches.
    fail_a_publish(&w, "prometheus-failed-1").await;
    failed_publishes_seen(&prom, 1.0).await;
    let first = prom.value("sum(onething_events_publish_failed_total)").await.unwrap();
    fail_a_publish(&w, "prometheus-failed-2").await;
    failed_publishes_seen(&prom, first + 1.0).await;

    // Prometheus scraped the endpoint a few times, all successfully.
    let scraped = eventually(SETTLE, "a few scrapes", || async {
        let ups = prom.value("count_over_time(up{job=\"onething\"}[5m])").await?;
        let failed =
            prom.value("count_over_time(up{job=\"onething\"}[5m]) - sum_over_time(up{job=\"onething\"}[5m])").await?;
        (ups >= 5.0 && failed == 0.0).then_some(())
    })
    .await;
    assert!(scraped.is_ok(), "scrapes: {:?}", prom.api("/api/v1/targets").await);

    // Every alert of the file loaded, and evaluated without error.
    let declared = declared_alerts();
    assert!(declared.len() >= 8, "the alerts of docs/operations.md: {declared:?}");
    let loaded = eventually(SETTLE, "every alert evaluated", || async {
        let groups = prom.api("/api/v1/rules?type=alert").await;
        let rules: Vec<Value> = groups["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        (rules.len() == declared.len() && rules.iter().all(|r| r["health"] == "ok")).then_some(rules)
    })
    .await
    .unwrap_or_else(|_| panic!("rules: {:?}\n{}", declared, prom.log()));
    let mut names: Vec<String> = loaded.iter().map(|r| r["name"].as_str().unwrap().to_string()).collect();
    names.sort();
    let mut expected = declared.clone();
    expected.sort();
    assert_eq!(names, expected, "Prometheus loaded the alerts of alerts.yaml");

    // Every alert's query and every panel's query returns series. A series appears at the
    // scrape after its first sample and a rate needs two, so ask until all do.
    let mut queries: Vec<(String, String)> = Vec::new();
    for rule in &loaded {
        let name = rule["name"].as_str().unwrap();
        for q in alert_queries(rule["query"].as_str().unwrap()) {
            queries.push((format!("alert {name}"), q));
        }
    }
    let panel_queries = dashboard_queries();
    assert!(panel_queries.len() >= 10, "the dashboard's panels: {panel_queries:?}");
    queries.extend(panel_queries.into_iter().map(|(title, q)| (format!("panel {title}"), q)));
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let mut empty = Vec::new();
        for (what, q) in &queries {
            if prom.query(q).await.is_empty() {
                empty.push(format!("{what}: {q}"));
            }
        }
        if empty.is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "queries without series:\n{}", empty.join("\n"));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // The failures raised the alert (pending: it fires after 10 minutes of them).
    let raised = eventually(SETTLE, "OnethingPublishFailing raised", || async {
        let alerts = prom.api("/api/v1/alerts").await;
        alerts["alerts"]
            .as_array()?
            .iter()
            .any(|a| {
                a["labels"]["alertname"] == "OnethingPublishFailing"
                    && a["labels"]["subject"].as_str().is_some_and(|s| s.starts_with("onething.household.v1."))
                    && matches!(a["state"].as_str(), Some("pending" | "firing"))
            })
            .then_some(())
    })
    .await;
    assert!(raised.is_ok(), "alerts: {:?}", prom.api("/api/v1/alerts").await);

    drop(prom);
    w.stop_all().await;
}

#[test]
fn the_operations_doc_names_every_alert() {
    let doc = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md")).unwrap();
    for alert in declared_alerts() {
        assert!(doc.contains(&format!("| `{alert}` |")), "docs/operations.md does not list {alert}");
    }
}

#[test]
fn alert_queries_drop_each_threshold() {
    assert_eq!(alert_queries("max by (service) (x) > 120"), ["max by (service) (x)"]);
    assert_eq!(
        alert_queries("max by (d) (delta(x[1h])) > 0\n  and max by (d) (x) >= 10"),
        ["max by (d) (delta(x[1h]))", "max by (d) (x)"]
    );
    assert_eq!(
        alert_queries(
            "(sum(rate(r{code=~\"A|B\",x!=\"a > b\"}[5m])) or 0 * sum(rate(r[5m]))) / sum(rate(r[5m])) > 0.01"
        ),
        ["(sum(rate(r{code=~\"A|B\",x!=\"a > b\"}[5m])) or 0 * sum(rate(r[5m]))) / sum(rate(r[5m]))"]
    );
}
