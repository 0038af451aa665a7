//! `onething import <department> <kind> FILE`: a file of reference data (CSV with a header,
//! or JSON Lines; docs/reference-data.md) sent to the department's ReferenceDataService as a
//! registrar, with a progress bar on a terminal (bytes, rows, rate) and a summary line
//! otherwise; then the department's report: rows added, updated, unchanged, and each bad
//! row by line and reason.

use crate::client::{channel, explain};
use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use onething_platform::service_kind::ServiceKind;
use onething_proto::common::{self as pb, reference_data_service_client::ReferenceDataServiceClient};
use std::{
    io::{IsTerminal as _, Read as _, Write as _},
    path::PathBuf,
    time::Instant,
};

/// Every department's import kinds: the one place that maps a department to them.
pub fn departments() -> Vec<(&'static str, Vec<Box<dyn onething_platform::import::ImportKind>>)> {
    vec![
        ("household", onething_household::store::import::kinds()),
        ("exit_entry", onething_exit_entry::store::import::kinds()),
        ("vehicle", onething_vehicle::store::import::kinds()),
        ("liaison", onething_liaison::store::import::kinds()),
    ]
}

/// Bytes per chunk sent.
const CHUNK: usize = 256 * 1024;

/// The file's format.
#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// CSV with a header row.
    Csv,
    /// JSON Lines.
    Jsonl,
}

/// Options of `onething import`.
#[derive(Args)]
pub struct ImportArgs {
    /// The department.
    #[arg(value_enum)]
    department: ServiceKind,
    /// The kind, e.g. persons, households, kin, vehicles, driving_licences, stations, slots,
    /// enterprises, permits, violations, travel_documents.
    kind: String,
    /// The file.
    file: PathBuf,
    /// Its format; default from its extension (.csv, .jsonl / .ndjson).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Store the good rows and report the bad ones (default: any bad row, nothing stored).
    #[arg(long)]
    skip_bad: bool,
    /// The department's address; default its `onething dev` port on this machine.
    #[arg(long)]
    addr: Option<String>,
    /// Bearer token of a registrar of the department (see `onething token --roles registrar`).
    #[arg(long, env = "ONETHING_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// Runs `onething import`.
///
/// # Errors
/// An unreadable file, an unreachable department, a refused import (its reason), or a
/// report with bad rows (after printing them).
pub async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let format = match args.format {
        Some(f) => f,
        None => match args.file.extension().and_then(|e| e.to_str()) {
            Some("csv") => Format::Csv,
            Some("jsonl" | "ndjson") => Format::Jsonl,
            _ => bail!("say --format csv or --format jsonl for {}", args.file.display()),
        },
    };
    let addr = args.addr.unwrap_or_else(|| format!("http://127.0.0.1:{}", args.department.default_port()));
    let mut file = std::fs::File::open(&args.file).with_context(|| format!("opening {}", args.file.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    // Read as it is sent: a file of hundreds of megabytes is never held whole.
    let chunks = std::iter::from_fn(move || {
        let mut buf = vec![0; CHUNK];
        match file.read(&mut buf) {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some(buf)
            }
            Err(e) => {
                // Ending the stream would import half a file: the connection is cut instead,
                // and the department stores nothing of an import that did not end.
                eprintln!("reading the file failed: {e}; nothing imported");
                std::process::exit(1);
            }
        }
    });
    let first = pb::ImportRequest {
        kind: args.kind.clone(),
        format: match format {
            Format::Csv => pb::ImportFormat::Csv,
            Format::Jsonl => pb::ImportFormat::JsonLines,
        } as i32,
        mode: if args.skip_bad { pb::ImportMode::SkipBad } else { pb::ImportMode::AllOrNothing } as i32,
        data: Vec::new(),
    };
    let progress = Progress::new(size);
    let stream = futures::stream::iter(std::iter::once(first).chain(chunks.map(move |data| {
        progress.sent(&data);
        pb::ImportRequest { data, ..Default::default() }
    })));
    let mut client = ReferenceDataServiceClient::new(channel(&addr, args.token.as_deref()).await?)
        .max_encoding_message_size(2 * 1024 * 1024);
    let report = client.import(stream).await.map_err(explain)?.into_inner();
    print_report(&report);
    if report.rejected_count > 0 {
        bail!("{} bad rows", report.rejected_count);
    }
    Ok(())
}

fn print_report(r: &pb::ImportResponse) {
    let stored = if r.stored { "stored" } else { "nothing stored" };
    println!(
        "{}: {} rows: {} added, {} updated, {} unchanged, {} bad; {stored}",
        r.kind, r.rows, r.added, r.updated, r.unchanged, r.rejected_count
    );
    for bad in &r.rejected {
        println!("  line {}: {}", bad.line, bad.reason);
    }
    if r.rejected_count > r.rejected.len() as u64 {
        println!("  … and {} more", r.rejected_count - r.rejected.len() as u64);
    }
}

/// What has been sent: a bar on a terminal, nothing otherwise (the report is the summary).
struct Progress {
    size: u64,
    started: Instant,
    sent: std::sync::atomic::AtomicU64,
    rows: std::sync::atomic::AtomicU64,
    on_terminal: bool,
}

impl Progress {
    fn new(size: u64) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            size,
            started: Instant::now(),
            sent: Default::default(),
            rows: Default::default(),
            on_terminal: std::io::stderr().is_terminal(),
        })
    }

    fn sent(&self, data: &[u8]) {
        use std::sync::atomic::Ordering::Relaxed;
        let sent = self.sent.fetch_add(data.len() as u64, Relaxed) + data.len() as u64;
        let rows = self.rows.fetch_add(bytecount(data), Relaxed) + bytecount(data);
        if !self.on_terminal {
            return;
        }
        let share = if self.size == 0 { 1.0 } else { sent as f64 / self.size as f64 };
        let filled = (share * 30.0) as usize;
        let rate = rows as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        let mut err = std::io::stderr();
        let _ = write!(
            err,
            "\r[{}{}] {:>3.0}%  {rows} lines  {rate:.0} lines/s",
            "#".repeat(filled),
            " ".repeat(30 - filled.min(30)),
            share * 100.0
        );
        if sent >= self.size {
            let _ = writeln!(err);
        }
    }
}

fn bytecount(data: &[u8]) -> u64 {
    data.iter().filter(|b| **b == b'\n').count() as u64
}
