//! The import figure (issue 25): rows per second of an import of 100,000 persons into
//! household, through its ReferenceDataService as a registrar would send the file, on
//! PostgreSQL (the benchmark's household) and on SQLite (a household of its own); and of the
//! same file again, when every row is found unchanged.

use anyhow::{Context as _, bail};
use onething_platform::auth::{Minter, Principal, SubjectKind};
use onething_proto::common::{self as pb, reference_data_service_client::ReferenceDataServiceClient};
use serde::Serialize;
use std::time::Instant;

/// What one import measured.
#[derive(Debug, Clone, Serialize)]
pub struct ImportFigure {
    /// `postgres` or `sqlite`.
    pub backend: String,
    /// Rows in the file.
    pub rows: u64,
    /// Rows per second of the first import (every row added).
    pub rows_per_second: f64,
    /// Rows per second of the same file again (every row unchanged).
    pub again_rows_per_second: f64,
}

/// A persons file of `rows` valid rows (CSV), ID numbers unique.
fn persons(rows: u64) -> Vec<u8> {
    let mut out = String::from("id_number,name,birth_date,sex,household_number\n");
    for n in 0..rows {
        let born = chrono::NaiveDate::from_ymd_opt(1940, 1, 1).unwrap_or_default() + chrono::Days::new(n % 25_000);
        let seq = u16::try_from(n / 25_000 * 2 + 301).unwrap_or(301);
        let Ok(id) = onething_platform::ids::CitizenId::assign("371002", born, seq) else { continue };
        let sex = if id.sex() == onething_platform::ids::Sex::Male { "M" } else { "F" };
        out.push_str(&format!("{},基准{n},{born},{sex},371002{:06}\n", id.expose(), n % 1_000_000));
    }
    out.into_bytes()
}

/// Imports `file` into the household at `endpoint` as its registrar; returns the seconds it
/// took and the report.
async fn import_once(endpoint: &str, token: &str, file: &[u8]) -> anyhow::Result<(f64, pb::ImportResponse)> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())?.connect().await?;
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse()?;
    let mut client = ReferenceDataServiceClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
        r.metadata_mut().insert("authorization", bearer.clone());
        Ok(r)
    })
    .max_encoding_message_size(2 * 1024 * 1024);
    let first = pb::ImportRequest {
        kind: "persons".into(),
        format: pb::ImportFormat::Csv as i32,
        mode: pb::ImportMode::AllOrNothing as i32,
        data: Vec::new(),
    };
    let chunks: Vec<pb::ImportRequest> = std::iter::once(first)
        .chain(file.chunks(256 * 1024).map(|c| pb::ImportRequest { data: c.to_vec(), ..Default::default() }))
        .collect();
    let started = Instant::now();
    let report = client.import(futures::stream::iter(chunks)).await.context("importing")?.into_inner();
    Ok((started.elapsed().as_secs_f64(), report))
}

/// Measures an import of `rows` persons into the household at `endpoint`, twice.
///
/// # Errors
/// The household unreachable, or an import that does not store every row.
pub async fn measure(endpoint: &str, minter: &Minter, backend: &str, rows: u64) -> anyhow::Result<ImportFigure> {
    let token = minter.mint(
        Principal {
            sub: "bench-registrar".into(),
            kind: SubjectKind::Staff,
            dept: "household".into(),
            roles: vec!["registrar".into()],
            id_number: String::new(),
            credit_code: String::new(),
            passport_number: String::new(),
            actor: None,
        },
        3600,
    )?;
    let file = persons(rows);
    let (secs, first) = import_once(endpoint, &token, &file).await?;
    if !first.stored || first.added != rows {
        bail!("the import stored {} of {rows} rows ({} bad)", first.added, first.rejected_count);
    }
    let (again_secs, again) = import_once(endpoint, &token, &file).await?;
    if again.unchanged != rows {
        bail!("the second import found {} of {rows} rows unchanged", again.unchanged);
    }
    let figure = ImportFigure {
        backend: backend.into(),
        rows,
        rows_per_second: super::load::round(rows as f64 / secs.max(1e-9)),
        again_rows_per_second: super::load::round(rows as f64 / again_secs.max(1e-9)),
    };
    eprintln!(
        "bench: import of {rows} persons on {backend}: {:.0} rows/s, again {:.0} rows/s",
        figure.rows_per_second, figure.again_rows_per_second
    );
    Ok(figure)
}
