//! The benchmark's report: what was measured (the bound, each load level, where the CPU
//! went) as JSON for tools and Markdown for people.

use super::{bound, load, mesh};
use anyhow::Context as _;
use serde::Serialize;
use std::path::Path;

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    /// When the run started (UTC, RFC 3339).
    pub started: String,
    /// Smoke run (figures meaningless).
    pub smoke: bool,
    /// The machine.
    pub machine: Machine,
    /// The bound.
    pub bound: Bound,
    /// The closed-loop levels, rising concurrency.
    pub levels: Vec<load::Phase>,
    /// The best completed-bundles-per-second of the levels.
    pub peak_bundles_per_second: f64,
    /// Peak over the bound's bundles per second.
    pub ratio: f64,
    /// The open-loop phase at half the peak.
    pub half_peak: load::Phase,
    /// Where the ratio comes from, in CPU.
    pub cpu: CpuAccount,
    /// Reference-data imports: rows per second on each backend.
    pub imports: Vec<super::import::ImportFigure>,
}

/// The ratio in CPU: the peak is the machine's busy CPU over the CPU a bundle costs, the
/// bound the measured part's operations per second over those a bundle needs, so
/// ratio = (CPU of one bundle's bound operations, measured alone ÷ CPU of one bundle in
/// the mesh) × (machine CPU at the peak ÷ machine CPU while the bound was measured). The
/// first factor is what a leaner mesh raises; it is about the work a bundle does besides
/// the operations the bound counts.
#[derive(Debug, Serialize)]
pub struct CpuAccount {
    /// The whole machine's CPU at the peak level, percent of one core.
    pub peak_machine_cpu_percent: f64,
    /// CPU per completed bundle at the peak level, milliseconds.
    pub peak_cpu_ms_per_bundle: f64,
    /// CPU per bundle at the peak by process, milliseconds (each line of the CPU table).
    pub peak_cpu_ms_per_bundle_by_process: Vec<(String, f64)>,
    /// The part that sets the bound: `postgres` or `jetstream`.
    pub bound_part: String,
    /// The machine's CPU while that part's best figure was measured, percent of one core.
    pub bound_machine_cpu_percent: f64,
    /// CPU per operation of that part then, milliseconds.
    pub bound_cpu_ms_per_operation: f64,
    /// CPU of one bundle's operations of that part, measured alone: operations per bundle
    /// × CPU per operation, milliseconds.
    pub bound_cpu_ms_per_bundle: f64,
    /// [`CpuAccount::bound_cpu_ms_per_bundle`] ÷ [`CpuAccount::peak_cpu_ms_per_bundle`].
    pub bound_share_of_bundle_cpu: f64,
    /// [`CpuAccount::peak_machine_cpu_percent`] ÷ [`CpuAccount::bound_machine_cpu_percent`].
    pub machine_use_factor: f64,
}

impl CpuAccount {
    /// The account of the level that reached the peak against the measurement that set the
    /// bound (`part`, with `ops_per_bundle` of its operations per bundle).
    pub(super) fn new(
        peak: &load::Phase,
        part: &str,
        measured: Option<&bound::Throughput>,
        ops_per_bundle: f64,
    ) -> Self {
        let machine = load::machine_cpu(&peak.processes);
        let (bound_cpu, per_op) = measured.map_or((0.0, 0.0), |t| (t.machine_cpu_percent, t.cpu_ms_per_operation));
        let bound_per_bundle = per_op * ops_per_bundle;
        let ratio = |a: f64, b: f64| if b > 0.0 { load::round(a / b) } else { 0.0 };
        Self {
            peak_machine_cpu_percent: machine,
            peak_cpu_ms_per_bundle: peak.cpu_ms_per_bundle,
            peak_cpu_ms_per_bundle_by_process: peak
                .processes
                .iter()
                .map(|u| (u.name.clone(), load::round(load::cpu_ms_each(u.cpu_percent, peak.bundles_per_second))))
                .collect(),
            bound_part: part.into(),
            bound_machine_cpu_percent: bound_cpu,
            bound_cpu_ms_per_operation: per_op,
            bound_cpu_ms_per_bundle: load::round(bound_per_bundle),
            bound_share_of_bundle_cpu: ratio(bound_per_bundle, peak.cpu_ms_per_bundle),
            machine_use_factor: ratio(machine, bound_cpu),
        }
    }
}

/// What the run ran on.
#[derive(Debug, Serialize)]
pub struct Machine {
    /// Logical CPUs.
    pub cpus: usize,
    /// PostgreSQL's version string.
    pub postgres: String,
    /// `nats-server --version`.
    pub nats_server: String,
    /// The nats-server's `sync_interval` (`always`: every write on disk before its ack).
    pub nats_sync_interval: String,
}

/// What the broker and the database allow, and what one bundle needs of them.
#[derive(Debug, Serialize)]
pub struct Bound {
    /// JetStream acknowledged publishes per second, by publisher count.
    pub jetstream: Vec<bound::Throughput>,
    /// PostgreSQL committed write transactions per second, by connection count.
    pub postgres: Vec<bound::Throughput>,
    /// Events published to JetStream per completed bundle (all services' streams).
    pub events_per_bundle: f64,
    /// Writing transactions per completed bundle: transaction ids PostgreSQL handed out over
    /// the load (only a transaction that writes takes one; the server-wide count, so keep
    /// the server otherwise idle while benchmarking). What the commit bound is divided by.
    pub write_transactions_per_bundle: f64,
    /// Every commit per completed bundle in the services' databases
    /// (`pg_stat_database.xact_commit`: each statement outside a transaction is one, so
    /// read-only statements count too). For comparison: reads cost CPU, not commits.
    pub commits_per_bundle: f64,
    /// [`Bound::commits_per_bundle`] by service: where the database work goes.
    pub commits_per_bundle_by_service: std::collections::BTreeMap<String, f64>,
    /// Bundles per second JetStream allows: best publishes/s over events per bundle.
    pub jetstream_bundles_per_second: f64,
    /// Bundles per second PostgreSQL allows: best commits/s over writing transactions per bundle.
    pub postgres_bundles_per_second: f64,
    /// The lower of the two.
    pub bundles_per_second: f64,
}

/// What one bundle cost, counted between two readings: events published, write
/// transactions, and commits per service.
pub(super) struct Work {
    events: f64,
    writes: f64,
    by_service: std::collections::BTreeMap<String, f64>,
}

impl Work {
    pub(super) fn between(from: &super::Counters, to: &super::Counters, bundles: f64) -> Self {
        let by_service = to
            .commits
            .iter()
            .filter(|(label, _)| mesh::SERVICES.contains(&label.as_str()))
            .map(|(label, n)| (label.clone(), load::round((n - from.commits.get(label).unwrap_or(n)) as f64 / bundles)))
            .collect();
        Self {
            events: (to.messages - from.messages) as f64 / bundles,
            writes: (to.next_xid - from.next_xid) as f64 / bundles,
            by_service,
        }
    }
}

impl Bound {
    /// The bound in bundles per second: the best broker and database rates divided by what
    /// one bundle needs of each; the lower of the two.
    pub(super) fn of(js: Vec<bound::Throughput>, pg: Vec<bound::Throughput>, work: Work) -> Self {
        let js_bundles = bound::best(&js) / work.events.max(1e-9);
        let pg_bundles = bound::best(&pg) / work.writes.max(1e-9);
        Bound {
            jetstream: round_all(js),
            postgres: round_all(pg),
            events_per_bundle: load::round(work.events),
            write_transactions_per_bundle: load::round(work.writes),
            commits_per_bundle: load::round(work.by_service.values().sum()),
            commits_per_bundle_by_service: work.by_service,
            jetstream_bundles_per_second: load::round(js_bundles),
            postgres_bundles_per_second: load::round(pg_bundles),
            bundles_per_second: load::round(js_bundles.min(pg_bundles)),
        }
    }
}

/// Where the CPU of the peak level went, beside the bound that limits it.
pub(super) fn cpu_of_peak(
    phases: &[load::Phase],
    half_peak: &load::Phase,
    js: &[bound::Throughput],
    pg: &[bound::Throughput],
    work: &Work,
) -> CpuAccount {
    let js_bundles = bound::best(js) / work.events.max(1e-9);
    let pg_bundles = bound::best(pg) / work.writes.max(1e-9);
    match phases.iter().max_by(|a, b| a.bundles_per_second.total_cmp(&b.bundles_per_second)) {
        Some(p) if pg_bundles <= js_bundles => CpuAccount::new(p, "postgres", bound::best_of(pg), work.writes),
        Some(p) => CpuAccount::new(p, "jetstream", bound::best_of(js), work.events),
        None => CpuAccount::new(half_peak, "postgres", None, 0.0),
    }
}

fn round_all(v: Vec<bound::Throughput>) -> Vec<bound::Throughput> {
    v.into_iter().map(|t| bound::Throughput { per_second: load::round(t.per_second), ..t }).collect()
}

/// Writes the report as JSON and Markdown under `out`, stamped with `started`, and prints it.
pub(super) fn write(out: &Path, started: &chrono::DateTime<chrono::Utc>, report: &Report) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    let md = markdown(report);
    let stamp = started.format("%Y%m%dT%H%M%SZ");
    for (name, text) in [
        (format!("report-{stamp}.json"), &json),
        (format!("report-{stamp}.md"), &md),
        ("latest.json".into(), &json),
        ("latest.md".into(), &md),
    ] {
        std::fs::write(out.join(&name), text).with_context(|| format!("writing {}", out.join(&name).display()))?;
    }
    println!("{md}");
    eprintln!("bench: report in {}", out.join(format!("report-{stamp}.{{json,md}}")).display());
    Ok(())
}

/// The report as a readable Markdown page.
pub fn markdown(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "# onething benchmark — enterprise_opening bundles\n");
    if r.smoke {
        let _ = writeln!(s, "**Smoke run: a handful of bundles; the figures mean nothing.**\n");
    }
    let _ = writeln!(
        s,
        "Run {} on {} CPUs; {}; {} (sync_interval {}).\n",
        r.started, r.machine.cpus, r.machine.postgres, r.machine.nats_server, r.machine.nats_sync_interval
    );
    bound_section(&mut s, &r.bound);
    levels_section(&mut s, r);
    cpu_account(&mut s, r);
    let failures: Vec<&String> =
        r.levels.iter().chain(std::iter::once(&r.half_peak)).flat_map(|p| &p.failures).collect();
    if !failures.is_empty() {
        let _ = writeln!(s, "\n## Failures (first few)\n");
        for f in failures.iter().take(10) {
            let _ = writeln!(s, "- {f}");
        }
    }
    s
}

/// The Markdown section of the [`Bound`].
fn bound_section(s: &mut String, b: &Bound) {
    use std::fmt::Write as _;
    let _ = writeln!(s, "## Bound\n");
    let _ = writeln!(s, "| part | concurrency | measured | per second |\n|---|---:|---|---:|");
    for t in &b.jetstream {
        let _ = writeln!(
            s,
            "| JetStream publish with ack | {} publishers | {} | {:.0} |",
            t.concurrency, t.when, t.per_second
        );
    }
    for t in &b.postgres {
        let _ = writeln!(
            s,
            "| PostgreSQL write commit | {} connections | {} | {:.0} |",
            t.concurrency, t.when, t.per_second
        );
    }
    let _ = writeln!(
        s,
        "\nOne bundle: {:.2} events, {:.2} writing transactions ({:.2} commits with read-only statements).\n\
         Bound: JetStream {:.1} bundles/s, PostgreSQL {:.1} bundles/s → **{:.1} bundles/s**.\n",
        b.events_per_bundle,
        b.write_transactions_per_bundle,
        b.commits_per_bundle,
        b.jetstream_bundles_per_second,
        b.postgres_bundles_per_second,
        b.bundles_per_second
    );
    let by: Vec<String> = b.commits_per_bundle_by_service.iter().map(|(k, v)| format!("{k} {v:.1}")).collect();
    let _ = writeln!(s, "Commits per bundle by service: {}.\n", by.join(", "));
}

/// The Markdown sections of the load levels: throughput and latency, then CPU and memory.
fn levels_section(s: &mut String, r: &Report) {
    use std::fmt::Write as _;
    let _ = writeln!(s, "## Throughput and latency (submit → completed event)\n");
    let _ = writeln!(
        s,
        "| load | bundles/s | p50 ms | p95 ms | p99 ms | max ms | completed | failed |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for p in r.levels.iter().chain(std::iter::once(&r.half_peak)) {
        let load = if p.concurrency > 0 {
            format!("{} applicants", p.concurrency)
        } else {
            format!("half peak: {:.1}/s offered", p.offered_per_second)
        };
        let _ = writeln!(
            s,
            "| {load} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} |",
            p.bundles_per_second, p.p50_ms, p.p95_ms, p.p99_ms, p.max_ms, p.completed, p.failed
        );
    }
    let _ = writeln!(
        s,
        "\nPeak **{:.1} bundles/s** = **{:.2}** of the bound. At half the peak, p99 **{:.1} ms**.\n",
        r.peak_bundles_per_second, r.ratio, r.half_peak.p99_ms
    );
    let _ = writeln!(s, "## CPU (% of one core; 200% is both cores of two) and memory (PSS MiB) per process\n");
    let names: Vec<&str> = r.half_peak.processes.iter().map(|u| u.name.as_str()).collect();
    let _ = writeln!(s, "| load | {} |", names.join(" | "));
    let _ = writeln!(s, "|---|{}", "---:|".repeat(names.len()));
    for p in r.levels.iter().chain(std::iter::once(&r.half_peak)) {
        let load = if p.concurrency > 0 { format!("{} applicants", p.concurrency) } else { "half peak".into() };
        let cells: Vec<String> =
            p.processes.iter().map(|u| format!("{:.0}% / {:.0}", u.cpu_percent, u.rss_mib)).collect();
        let _ = writeln!(s, "| {load} | {} |", cells.join(" | "));
    }
}

/// The Markdown section of [`CpuAccount`].
fn cpu_account(s: &mut String, r: &Report) {
    use std::fmt::Write as _;
    let c = &r.cpu;
    let (operation, ops, what) = if c.bound_part == "jetstream" {
        ("an acknowledged JetStream publish", r.bound.events_per_bundle, "events")
    } else {
        ("a PostgreSQL write commit", r.bound.write_transactions_per_bundle, "writing transactions")
    };
    let by: Vec<String> =
        c.peak_cpu_ms_per_bundle_by_process.iter().map(|(name, ms)| format!("{name} {ms:.2}")).collect();
    let _ = writeln!(s, "\n## Where the ratio comes from (CPU)\n");
    let _ = writeln!(
        s,
        "At the peak the machine was {:.0}% busy: **{:.2} ms of CPU per bundle** ({}).\n",
        c.peak_machine_cpu_percent,
        c.peak_cpu_ms_per_bundle,
        by.join(", ")
    );
    let _ = writeln!(
        s,
        "Measured alone, {operation} cost {:.3} ms of the machine's CPU ({:.0}% busy): the {ops:.2} {what} \
         of a bundle {:.2} ms, **{:.2} of a bundle's CPU**. Ratio = {:.2} × {:.2} (machine busy at the peak \
         ÷ while measuring the bound) = {:.2}. For a ratio of 0.5 at these costs a whole bundle could \
         cost at most {:.2} ms of CPU.",
        c.bound_cpu_ms_per_operation,
        c.bound_machine_cpu_percent,
        c.bound_cpu_ms_per_bundle,
        c.bound_share_of_bundle_cpu,
        c.bound_share_of_bundle_cpu,
        c.machine_use_factor,
        c.bound_share_of_bundle_cpu * c.machine_use_factor,
        2.0 * c.bound_cpu_ms_per_bundle * c.machine_use_factor,
    );
    if !r.imports.is_empty() {
        let _ = writeln!(s, "\n## Reference data: importing persons (household)\n");
        let _ = writeln!(
            s,
            "| backend | rows | rows/s (all added) | rows/s (again, all unchanged) |\n|---|---:|---:|---:|"
        );
        for i in &r.imports {
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {:.0} |",
                i.backend, i.rows, i.rows_per_second, i.again_rows_per_second
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::BEFORE;
    use crate::bench::procs;
    use std::time::Duration;

    fn usage(name: &str, cpu_percent: f64) -> procs::Usage {
        procs::Usage { name: name.into(), cpu_percent, rss_mib: 20.0 }
    }

    #[test]
    fn the_cpu_account_multiplies_out_to_the_ratio() {
        // 1,200 bundles in 10 s, the machine 180 % busy (postgres 70 %): 15 ms per bundle.
        let done = vec![load::Outcome::Completed(Duration::from_millis(30)); 1200];
        let peak =
            load::summarise(4, 0.0, &done, 10.0, vec![usage("postgres (all)", 70.0), usage("whole machine", 180.0)]);
        assert_eq!(peak.cpu_ms_per_bundle, 15.0);
        // 9,000 commits/s with the machine 190 % busy; six writing transactions a bundle.
        let measured = bound::Throughput {
            when: BEFORE,
            concurrency: 8,
            per_second: 9000.0,
            machine_cpu_percent: 190.0,
            cpu_ms_per_operation: 190.0 * 10.0 / 9000.0,
        };
        let c = CpuAccount::new(&peak, "postgres", Some(&measured), 6.0);
        assert_eq!(
            c.peak_cpu_ms_per_bundle_by_process,
            [("postgres (all)".to_string(), 5.83), ("whole machine".to_string(), 15.0)]
        );
        assert_eq!(c.bound_cpu_ms_per_bundle, 1.27);
        let ratio = peak.bundles_per_second / (measured.per_second / 6.0);
        let product = c.bound_share_of_bundle_cpu * c.machine_use_factor;
        assert!((product - ratio).abs() < 0.01, "{product} against {ratio}");
        // Nothing measured: an account of zeros, not a division by zero.
        let none = CpuAccount::new(&peak, "postgres", None, 6.0);
        assert_eq!((none.bound_share_of_bundle_cpu, none.machine_use_factor), (0.0, 0.0));
    }
}
