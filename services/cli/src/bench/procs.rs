//! CPU and memory of the processes under test, read from `/proc`: CPU as the share of one
//! core used between two samples, memory as proportional set size (PSS: resident memory
//! with shared pages divided among their sharers, so summing processes counts them once;
//! resident set size where PSS cannot be read). PostgreSQL runs a process per connection,
//! so all `postgres` processes are summed into one line.

use serde::Serialize;
use std::time::Instant;

/// Which processes one line of the report covers.
#[derive(Debug, Clone)]
pub enum Watched {
    /// One process.
    Pid(u32),
    /// Every process whose command name is this (e.g. `postgres`).
    Named(String),
}

/// A process (or group) to watch, with its report name.
#[derive(Debug, Clone)]
pub struct Target {
    /// Name in the report.
    pub name: String,
    /// What it covers.
    pub watched: Watched,
}

/// CPU ticks and resident memory of every target at one instant.
#[derive(Debug, Clone)]
pub struct Sample {
    at: Instant,
    ticks: Vec<u64>,
    rss_kib: Vec<u64>,
    /// The whole machine: (busy ticks, all ticks) over every core, and memory in use (KiB).
    machine: (u64, u64, u64),
}

/// One target between two samples.
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    /// Report name.
    pub name: String,
    /// CPU used, in percent of one core (200 is both cores of this machine).
    pub cpu_percent: f64,
    /// Memory at the end (PSS), MiB.
    pub rss_mib: f64,
}

fn ticks_per_second() -> f64 {
    // Linux has used 100 on every architecture it runs on for user-visible clock ticks.
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// (utime + stime ticks, resident KiB, command name) of one process; `None` when gone.
fn read(pid: u32) -> Option<(u64, u64, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself hold spaces.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    // After the name: state is field 3 of stat(5); utime 14 and stime 15; rss (pages) 24.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let rss_pages: u64 = fields.get(21)?.parse().ok()?;
    let pss = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok().and_then(|t| {
        t.lines().find_map(|l| l.strip_prefix("Pss:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    });
    Some((utime + stime, pss.unwrap_or(rss_pages * 4), comm))
}

/// Busy and all CPU ticks of every core since boot (`/proc/stat`), and memory in use.
fn machine() -> (u64, u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("cpu "))
        .map(|l| l.split_whitespace().filter_map(|v| v.parse().ok()).collect())
        .unwrap_or_default();
    // user nice system idle iowait irq softirq steal …: idle and iowait are not busy.
    let all: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| -> u64 {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (all.saturating_sub(idle), all, field("MemTotal:").saturating_sub(field("MemAvailable:")))
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// Samples every target now.
pub fn sample(targets: &[Target]) -> Sample {
    let pids = if targets.iter().any(|t| matches!(t.watched, Watched::Named(_))) { all_pids() } else { Vec::new() };
    let mut ticks = Vec::with_capacity(targets.len());
    let mut rss_kib = Vec::with_capacity(targets.len());
    for t in targets {
        let (tk, rss) = match &t.watched {
            Watched::Pid(pid) => read(*pid).map_or((0, 0), |(t, r, _)| (t, r)),
            Watched::Named(name) => pids
                .iter()
                .filter_map(|p| read(*p))
                .filter(|(_, _, comm)| comm == name)
                .fold((0, 0), |(t, r), (t2, r2, _)| (t + t2, r + r2)),
        };
        ticks.push(tk);
        rss_kib.push(rss);
    }
    Sample { at: Instant::now(), ticks, rss_kib, machine: machine() }
}

/// What each target used between `before` and `after` (samples of the same targets), and
/// last the whole machine (every process, memory in use rather than PSS).
pub fn usage(targets: &[Target], before: &Sample, after: &Sample) -> Vec<Usage> {
    let secs = after.at.duration_since(before.at).as_secs_f64().max(1e-3);
    let hz = ticks_per_second();
    targets
        .iter()
        .enumerate()
        .map(|(i, t)| Usage {
            name: t.name.clone(),
            cpu_percent: round1(after.ticks[i].saturating_sub(before.ticks[i]) as f64 / hz / secs * 100.0),
            rss_mib: round1(after.rss_kib[i] as f64 / 1024.0),
        })
        .chain(std::iter::once({
            // The whole machine in the same unit: percent of one core, so 200 is both of two.
            let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
            let busy = after.machine.0.saturating_sub(before.machine.0) as f64;
            let all = after.machine.1.saturating_sub(before.machine.1).max(1) as f64;
            Usage {
                name: "whole machine".into(),
                cpu_percent: round1(busy / all * 100.0 * cores),
                rss_mib: round1(after.machine.2 as f64 / 1024.0),
            }
        }))
        .collect()
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_seen_using_memory() {
        let me = [Target { name: "me".into(), watched: Watched::Pid(std::process::id()) }];
        let a = sample(&me);
        let b = sample(&me);
        let u = usage(&me, &a, &b);
        assert!(u[0].rss_mib > 0.0, "{u:?}");
        assert!(u[0].cpu_percent >= 0.0);
    }
}
