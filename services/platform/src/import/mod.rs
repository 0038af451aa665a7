//! Bulk import of reference data (issue 25): a department takes in the records it decides
//! from — persons and households, vehicles and licences, stations, enterprises, permit
//! histories, violations, travel documents — from a system of record's file (CSV or JSON
//! Lines, a documented column set per kind: docs/reference-data.md). Each department names
//! its [`ImportKind`]s; the platform reads the file ([`parse`]), checks every row with the
//! kind's rules (the same as requests'), refuses a file with two rows of one record, and
//! stores the good rows idempotently ([`upsert`]) in one transaction: all or nothing, or
//! the good rows with a report of the bad ones by line — never half a file silently.
//! Served over gRPC ([`grpc`], `ReferenceDataService`) to `onething import` and to any
//! system that pushes.

pub mod grpc;
pub mod parse;
pub mod upsert;

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr};
use std::collections::{BTreeMap, HashMap};

/// One row of a file: column → value (absent: not given).
pub type Row = BTreeMap<String, String>;

/// One column of a kind.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Its name.
    pub name: &'static str,
    /// Whether every row must give it.
    pub required: bool,
    /// What it holds and its rule.
    pub description: &'static str,
}

/// What storing rows did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Records new to the registry.
    pub added: u64,
    /// Records changed.
    pub updated: u64,
    /// Records equal to what was there.
    pub unchanged: u64,
}

impl std::ops::AddAssign for Applied {
    fn add_assign(&mut self, o: Self) {
        self.added += o.added;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
    }
}

/// One kind of reference record a department imports.
#[async_trait::async_trait]
pub trait ImportKind: Send + Sync {
    /// Its name, e.g. `persons`.
    fn name(&self) -> &'static str;
    /// What one row is.
    fn description(&self) -> &'static str;
    /// Its columns, in the order a CSV header gives them.
    fn columns(&self) -> &'static [Column];
    /// The key of the record a (checked) row is about: two rows of a file with one key are
    /// refused.
    fn key(&self, row: &Row) -> String;
    /// Checks a row with the rules requests are checked with, at `now`.
    ///
    /// # Errors
    /// Why the row is not taken, naming the column; nothing personal (no value).
    fn check(&self, row: &Row, now: DateTime<Utc>) -> Result<(), String>;
    /// Stores checked rows in `txn`.
    ///
    /// # Errors
    /// A database failure.
    async fn store(&self, txn: &DatabaseTransaction, rows: &[Row], now: DateTime<Utc>) -> Result<Applied, DbErr>;
}

/// How bad rows are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Any bad row: nothing is stored.
    AllOrNothing,
    /// The good rows are stored; the bad ones reported.
    SkipBad,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Rows read.
    pub rows: u64,
    /// What storing did.
    pub applied: Applied,
    /// Bad rows: line and reason, in line order.
    pub rejected: Vec<(u64, String)>,
    /// Whether the good rows were stored.
    pub stored: bool,
}

/// At most this many bad rows are told (their count is always).
pub const MAX_REJECTED_TOLD: usize = 1000;

/// Checks `rows` (each with its line) of `kind` at `now` and, by `mode`, stores the good ones
/// in one transaction of `db`.
///
/// # Errors
/// A database failure: nothing is stored then.
pub async fn run(
    db: &DatabaseConnection,
    kind: &dyn ImportKind,
    rows: Vec<(u64, Row)>,
    mode: Mode,
    now: DateTime<Utc>,
) -> Result<Report, DbErr> {
    let mut report = Report { rows: rows.len() as u64, ..Default::default() };
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut good = Vec::with_capacity(rows.len());
    for (line, row) in rows {
        if let Err(why) = kind.check(&row, now) {
            report.rejected.push((line, why));
            continue;
        }
        match seen.entry(kind.key(&row)) {
            std::collections::hash_map::Entry::Occupied(first) => {
                report.rejected.push((line, format!("the same record as line {}", first.get())));
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(line);
                good.push(row);
            }
        }
    }
    if !report.rejected.is_empty() && mode == Mode::AllOrNothing {
        return Ok(report);
    }
    let txn = crate::db::begin_write(db).await?;
    for chunk in good.chunks(5000) {
        report.applied += kind.store(&txn, chunk, now).await?;
    }
    txn.commit().await?;
    report.stored = true;
    Ok(report)
}

/// The ground a registrar's change rests on (a decision's number, a document): 1 to 200
/// characters.
///
/// # Errors
/// INVALID_ARGUMENT with `reason`, naming `ground`.
pub fn ground(text: &str, reason: crate::reason::Reason) -> Result<&str, crate::error::Error> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > 200 {
        return Err(crate::error::Error::invalid_field(reason, "ground", "required, at most 200 characters"));
    }
    Ok(text)
}

/// Checks helpers for kinds: a value of `row` by column.
pub fn value<'a>(row: &'a Row, column: &str) -> &'a str {
    row.get(column).map_or("", |v| v.trim())
}

/// `row`'s required columns of `columns` are there.
///
/// # Errors
/// The first one missing.
pub fn required(row: &Row, columns: &[Column]) -> Result<(), String> {
    match columns.iter().find(|c| c.required && value(row, c.name).is_empty()) {
        Some(c) => Err(format!("{}: required", c.name)),
        None => Ok(()),
    }
}

/// `column` of `row` is a date (YYYY-MM-DD), when given.
///
/// # Errors
/// Naming the column.
pub fn date(row: &Row, column: &str) -> Result<Option<chrono::NaiveDate>, String> {
    // Only the one written form: dates are stored and compared as text.
    match value(row, column) {
        "" => Ok(None),
        v => chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .ok()
            .filter(|d| d.format("%Y-%m-%d").to_string() == v)
            .map(Some)
            .ok_or_else(|| format!("{column}: a date as YYYY-MM-DD")),
    }
}

/// `column` of `row` has at most `max` characters, all printable.
///
/// # Errors
/// Naming the column.
pub fn text(row: &Row, column: &str, max: usize) -> Result<(), String> {
    let v = value(row, column);
    if v.chars().count() > max {
        return Err(format!("{column}: at most {max} characters"));
    }
    // No control characters, nor the invisible ones that make text read as other text.
    if v.chars().any(|c| {
        c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
    }) {
        return Err(format!("{column}: printable text only"));
    }
    Ok(())
}

/// `column` of `row` is one of `values`, when given.
///
/// # Errors
/// Naming the column and the values.
pub fn one_of(row: &Row, column: &str, values: &[&str]) -> Result<(), String> {
    match value(row, column) {
        "" => Ok(()),
        v if values.contains(&v) => Ok(()),
        _ => Err(format!("{column}: one of {}", values.join(", "))),
    }
}

/// docs/reference-data.md: the import kinds of each department (`departments`: name and
/// kinds) with their columns, after the fixed introduction.
pub fn markdown(departments: &[(&str, Vec<Box<dyn ImportKind>>)]) -> String {
    let mut out = String::from(include_str!("reference-data-intro.md"));
    for (dept, kinds) in departments {
        out.push_str(&format!("\n## {dept}\n"));
        for k in kinds {
            out.push_str(&format!(
                "\n### `{}`\n\n{}.\n\n| column | required | what |\n|---|---|---|\n",
                k.name(),
                k.description()
            ));
            for c in k.columns() {
                let required = if c.required { "yes" } else { "" };
                out.push_str(&format!("| `{}` | {required} | {} |\n", c.name, c.description));
            }
        }
    }
    out
}
