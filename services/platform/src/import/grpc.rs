//! `onething.common.v1.ReferenceDataService`: a department's import kinds over gRPC, for
//! `onething import` and for systems of record that push. Only the department's registrars
//! may import.

use super::{ImportKind, Mode, parse::Reader};
use crate::{auth::Principal, authz, clock::Clock, error::Error, reason::Reason};
use futures::StreamExt as _;
use onething_proto::common::{self as pb, reference_data_service_server::ReferenceDataService};
use sea_orm::DatabaseConnection;
use std::sync::Arc;
use tonic::{Request, Response, Status, Streaming};

/// The import service of one department.
#[derive(Clone)]
pub struct ReferenceData {
    department: &'static str,
    db: DatabaseConnection,
    kinds: Arc<Vec<Box<dyn ImportKind>>>,
    clock: Clock,
}

impl ReferenceData {
    /// The import service of `department` over its `db`, for `kinds`, checking rows at the
    /// time of `clock`.
    pub fn new(
        department: &'static str,
        db: DatabaseConnection,
        kinds: Vec<Box<dyn ImportKind>>,
        clock: Clock,
    ) -> Self {
        Self { department, db, kinds: Arc::new(kinds), clock }
    }

    fn may_import(&self, p: &Principal) -> bool {
        authz::is_registrar(p, self.department)
    }
}

fn unreadable(line: u64, reason: impl std::fmt::Display) -> Error {
    Error::invalid_field(Reason::ImportUnreadable, format!("line {line}"), reason.to_string())
}

#[tonic::async_trait]
impl ReferenceDataService for ReferenceData {
    async fn import(&self, r: Request<Streaming<pb::ImportRequest>>) -> Result<Response<pb::ImportResponse>, Status> {
        let caller = authz::principal(&r)?;
        authz::check(self.may_import(&caller), &caller, "Import", self.department)?;
        let mut chunks = r.into_inner();
        let first = chunks.next().await.transpose()?.unwrap_or_default();
        let kind = self.kinds.iter().find(|k| k.name() == first.kind).ok_or_else(|| {
            let known: Vec<&str> = self.kinds.iter().map(|k| k.name()).collect();
            Error::invalid_field(Reason::ImportUnknownKind, "kind", format!("one of {}", known.join(", ")))
        })?;
        let format = match first.format() {
            pb::ImportFormat::Csv => super::parse::Format::Csv,
            pb::ImportFormat::JsonLines => super::parse::Format::JsonLines,
            pb::ImportFormat::Unspecified => {
                return Err(Error::invalid_field(Reason::ImportUnreadable, "format", "CSV or JSON_LINES").into());
            }
        };
        let mode = if first.mode() == pb::ImportMode::SkipBad { Mode::SkipBad } else { Mode::AllOrNothing };
        let mut reader = Reader::new(format, kind.columns());
        let mut rows = reader.feed(&first.data).map_err(|u| unreadable(u.line, u.reason))?;
        while let Some(chunk) = chunks.next().await.transpose()? {
            rows.extend(reader.feed(&chunk.data).map_err(|u| unreadable(u.line, u.reason))?);
        }
        rows.extend(reader.finish().map_err(|u| unreadable(u.line, u.reason))?);
        let report = super::run(&self.db, kind.as_ref(), rows, mode, self.clock.now()).await.map_err(|e| {
            // Another import added the same records meanwhile: nothing of this one is
            // stored, and sent again it finds them.
            if crate::db::is_unique_violation(&e) {
                Error::new(
                    crate::error::Kind::Aborted,
                    Reason::DatabaseConflict,
                    "a concurrent import added the same records; send it again",
                )
            } else {
                Error::from(e)
            }
        })?;
        tracing::info!(
            target: "audit",
            subject = %caller.sub,
            department = self.department,
            kind = kind.name(),
            rows = report.rows,
            added = report.applied.added,
            updated = report.applied.updated,
            rejected = report.rejected.len(),
            stored = report.stored,
            "reference data imported"
        );
        Ok(Response::new(pb::ImportResponse {
            kind: kind.name().to_string(),
            rows: report.rows,
            added: report.applied.added,
            updated: report.applied.updated,
            unchanged: report.applied.unchanged,
            rejected_count: report.rejected.len() as u64,
            rejected: report
                .rejected
                .into_iter()
                .take(super::MAX_REJECTED_TOLD)
                .map(|(line, reason)| pb::RejectedRow { line, reason })
                .collect(),
            stored: report.stored,
        }))
    }

    async fn list_import_kinds(
        &self,
        r: Request<pb::ListImportKindsRequest>,
    ) -> Result<Response<pb::ListImportKindsResponse>, Status> {
        let caller = authz::principal(&r)?;
        authz::check(self.may_import(&caller), &caller, "ListImportKinds", self.department)?;
        let kinds = self
            .kinds
            .iter()
            .map(|k| pb::ImportKind {
                name: k.name().into(),
                description: k.description().into(),
                columns: k
                    .columns()
                    .iter()
                    .map(|c| pb::ImportColumn {
                        name: c.name.into(),
                        required: c.required,
                        description: c.description.into(),
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(pb::ListImportKindsResponse { kinds }))
    }
}
