//! The chaos suite's short run (`onething chaos --short`; `make chaos` runs it longer): the
//! services as separate processes on a PostgreSQL server and a nats-server of the run's
//! own, bundles flowing from three applicants, and in turn kill -9 of every service, of
//! nats-server, and a crash of PostgreSQL, each restarted. The run itself checks that every
//! accepted bundle completed, one case per step, no event missing or doubled, no dead
//! letter; this test checks it ran every fault and found all of that.

use crate::bench::onething_binary;
use onething_tests::nats_server_bin;

#[tokio::test(flavor = "multi_thread")]
async fn a_short_chaos_run_loses_and_doubles_nothing() {
    let out = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(onething_binary())
        .args(["chaos", "--short", "--out"])
        .arg(out.path())
        .arg("--nats-server")
        .arg(nats_server_bin())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    if !run.status.success() {
        // Its logs stay for whoever looks into it.
        let kept = out.keep();
        panic!("chaos failed (logs kept in {}):\n{stdout}\n{}", kept.display(), String::from_utf8_lossy(&run.stderr));
    }
    for service in
        ["household", "exit_entry", "vehicle", "liaison", "coordinator", "coordinator-2", "supervision", "nats-server"]
    {
        assert!(stdout.contains(&format!("kill -9 {service}\n")), "{service} was not killed:\n{stdout}");
    }
    assert!(stdout.contains("to 2 coordinator replicas"), "{stdout}");
    // The number a line of the run's report starts with, after `prefix`.
    let number = |prefix: &str| {
        stdout.lines().find_map(|l| l.strip_prefix(prefix)?.split(' ').next()?.parse::<u64>().ok()).unwrap_or(0)
    };
    assert!(number("chaos: the broker lost ") > 0, "no acknowledged event lost:\n{stdout}");
    assert!(stdout.contains("PostgreSQL crashed (immediate shutdown) and restarted"), "{stdout}");
    assert!(number("chaos: ok: all ") > 0, "no bundle completed:\n{stdout}");
    assert!(!stdout.contains("FAILED"), "{stdout}");
    for stream in ["COORDINATOR", "HOUSEHOLD", "LIAISON", "VEHICLE"] {
        assert!(stdout.contains(&format!("ok: ONETHING_{stream}: all ")), "{stream}:\n{stdout}");
    }
    assert!(stdout.contains("ok: no dead letters") && stdout.contains("everything held"), "{stdout}");
}
