//! The benchmark's smoke run (`onething bench --smoke`): a handful of bundles through the
//! whole mesh as separate processes, so `make bench` never rots. It checks what the report
//! says happened (bundles completed, parts measured, processes watched), never how fast.

use onething_tests::{nats_server_bin, pg_admin_url};
use std::path::PathBuf;

/// The `onething` binary beside this test binary (`make test` builds it first).
pub(crate) fn onething_binary() -> PathBuf {
    let me = std::env::current_exe().expect("test binary path");
    let dir = me.parent().and_then(|deps| deps.parent()).expect("target folder");
    let bin = dir.join("onething");
    assert!(bin.exists(), "{} is missing: `cargo build --bin onething` (make test does it)", bin.display());
    bin
}

#[tokio::test(flavor = "multi_thread")]
async fn the_benchmark_smoke_run_completes_every_bundle_and_reports() {
    if onething_platform::db::connect(&pg_admin_url()).await.is_err() {
        assert!(std::env::var_os("CI").is_none(), "PostgreSQL unreachable in CI");
        eprintln!("SKIPPED: PostgreSQL unreachable; set CI to make this fail");
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(onething_binary())
        .args(["bench", "--smoke", "--out"])
        .arg(out.path())
        .arg("--nats-server")
        .arg(nats_server_bin())
        .arg("--pg")
        .arg(pg_admin_url())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "bench failed: {stderr}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("latest.json")).unwrap()).unwrap();
    assert_eq!(report["smoke"], true);
    let levels = report["levels"].as_array().unwrap();
    assert_eq!(levels.iter().map(|l| l["concurrency"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2]);
    for phase in levels.iter().chain([&report["half_peak"]]) {
        assert_eq!((phase["completed"].as_u64(), phase["failed"].as_u64()), (Some(4), Some(0)), "{phase}");
        let names: Vec<&str> =
            phase["processes"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "household",
                "exit_entry",
                "vehicle",
                "liaison",
                "coordinator",
                "supervision",
                "nats-server",
                "postgres (all)",
                "bench driver",
                "whole machine"
            ]
        );
        assert!(phase["processes"].as_array().unwrap().iter().all(|p| p["rss_mib"].as_f64().unwrap() > 0.0), "{phase}");
    }
    let bound = &report["bound"];
    for part in ["jetstream", "postgres"] {
        let measured = bound[part].as_array().unwrap();
        assert!(measured.iter().all(|t| t["per_second"].as_f64().unwrap() > 0.0), "{bound}");
        // Measured before the mesh starts and again after it stops.
        for when in ["before the load", "after the load"] {
            assert!(measured.iter().any(|t| t["when"] == when), "{part} {when}: {bound}");
        }
    }
    // Three departments each create, accept and approve a case (three events apiece), and
    // the coordinator reports the bundle submitted and completed: at least eleven events.
    assert!(bound["events_per_bundle"].as_f64().unwrap() >= 11.0, "{bound}");
    // At least the submit, three case creations and the step outcomes write.
    assert!(bound["write_transactions_per_bundle"].as_f64().unwrap() >= 5.0, "{bound}");
    assert!(bound["commits_per_bundle"].as_f64().unwrap() >= 5.0, "{bound}");
    assert!(bound["bundles_per_second"].as_f64().unwrap() > 0.0, "{bound}");
    assert!(report["ratio"].as_f64().unwrap() > 0.0);
    // The CPU account: every bound measurement and phase says what the machine spent.
    for t in bound["jetstream"].as_array().unwrap().iter().chain(bound["postgres"].as_array().unwrap()) {
        assert!(t["machine_cpu_percent"].as_f64().unwrap() >= 0.0, "{t}");
        assert!(t["cpu_ms_per_operation"].as_f64().unwrap() >= 0.0, "{t}");
    }
    for phase in levels.iter().chain([&report["half_peak"]]) {
        assert!(phase["cpu_ms_per_bundle"].as_f64().unwrap() >= 0.0, "{phase}");
    }
    let cpu = &report["cpu"];
    assert!(["postgres", "jetstream"].contains(&cpu["bound_part"].as_str().unwrap()), "{cpu}");
    // The import of persons, on both backends, every row stored and then found unchanged.
    let imports = report["imports"].as_array().unwrap();
    let backends: Vec<&str> = imports.iter().map(|i| i["backend"].as_str().unwrap()).collect();
    assert_eq!(backends, ["postgres", "sqlite"]);
    for i in imports {
        assert_eq!(i["rows"].as_u64(), Some(1000), "{i}");
        assert!(
            i["rows_per_second"].as_f64().unwrap() > 0.0 && i["again_rows_per_second"].as_f64().unwrap() > 0.0,
            "{i}"
        );
    }
    assert_eq!(cpu["peak_cpu_ms_per_bundle_by_process"].as_array().unwrap().len(), 10, "{cpu}");
    let md = std::fs::read_to_string(out.path().join("latest.md")).unwrap();
    for heading in ["## Bound", "## Throughput and latency", "half peak", "## CPU", "## Where the ratio comes from"] {
        assert!(md.contains(heading), "{heading} missing from the Markdown report:\n{md}");
    }
    // The databases the run made are gone again.
    let admin = onething_platform::db::connect(&pg_admin_url()).await.unwrap();
    use sea_orm::ConnectionTrait;
    let left = admin
        .query_all_raw(sea_orm::Statement::from_string(
            admin.get_database_backend(),
            "SELECT datname FROM pg_database WHERE datname LIKE 'onething_bench_%'".to_string(),
        ))
        .await
        .unwrap();
    assert!(left.is_empty(), "benchmark databases left behind: {}", left.len());
}
