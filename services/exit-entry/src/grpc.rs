//! `onething.exit_entry.v1.ExitEntryService`: permit histories and travel documents, and
//! violations recorded by its registrars ([`crate::violations`]).

use crate::store::entities::{permit, travel_document, violation};
use onething_platform::reason::Reason;
use onething_platform::{
    auth::{Principal, SubjectKind},
    authz,
    error::Error,
    ids::{CitizenId, Passport},
};
use onething_proto::exit_entry::{self as pb, exit_entry_service_server::ExitEntryService};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};
use tonic::{Request, Response, Status};

/// The look-up API.
#[derive(Clone)]
pub struct Records {
    db: DatabaseConnection,
    violations: crate::violations::Violations,
}

impl Records {
    /// Look-ups over exit-entry's database, and its registrars' recordings.
    pub fn new(db: DatabaseConnection, violations: crate::violations::Violations) -> Self {
        Self { db, violations }
    }
}

/// Readers of exit-entry records: see [`authz::reads_register`]; a person reads their own.
fn reads_records(p: &Principal) -> bool {
    authz::reads_register(p, crate::matters::DEPARTMENT)
}

#[tonic::async_trait]
impl ExitEntryService for Records {
    async fn get_permit_history(
        &self,
        r: Request<pb::GetPermitHistoryRequest>,
    ) -> Result<Response<pb::GetPermitHistoryResponse>, Status> {
        let caller = authz::principal(&r)?;
        // Who may ask at all is decided before the request is looked at.
        let may = reads_records(&caller) || caller.kind == SubjectKind::Foreigner;
        authz::check(may, &caller, "GetPermitHistory", "permits")?;
        let passport = Passport::parse(&r.into_inner().passport_number).map_err(|e| {
            Error::invalid_field(
                Reason::ExitEntryInvalidPassport,
                "passport_number",
                format!("not a passport number: {e}"),
            )
        })?;
        let own = caller.kind == SubjectKind::Foreigner && caller.passport_number == passport.expose();
        authz::check(reads_records(&caller) || own, &caller, "GetPermitHistory", "permits")?;
        let permits = permit::Entity::find()
            .filter(permit::Column::PassportNumber.eq(passport.expose()))
            .order_by_asc(permit::Column::ValidFrom)
            .all(&self.db)
            .await
            .map_err(Error::from)?;
        let violations = violation::Entity::find()
            .filter(violation::Column::PassportNumber.eq(passport.expose()))
            .order_by_asc(violation::Column::Date)
            .all(&self.db)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::GetPermitHistoryResponse {
            permits: permits
                .into_iter()
                .map(|p| pb::ResidencePermit {
                    permit_number: p.permit_number,
                    kind: p.kind,
                    valid_from: p.valid_from,
                    valid_until: p.valid_until,
                })
                .collect(),
            violations: violations.into_iter().map(|v| pb::Violation { date: v.date, summary: v.summary }).collect(),
        }))
    }

    async fn list_travel_documents(
        &self,
        r: Request<pb::ListTravelDocumentsRequest>,
    ) -> Result<Response<pb::ListTravelDocumentsResponse>, Status> {
        let caller = authz::principal(&r)?;
        let may = reads_records(&caller) || caller.kind == SubjectKind::Citizen;
        authz::check(may, &caller, "ListTravelDocuments", "travel_documents")?;
        let id = CitizenId::parse(&r.into_inner().id_number).map_err(|e| {
            Error::invalid_field(Reason::ExitEntryInvalidIdNumber, "id_number", format!("not a citizen ID number: {e}"))
        })?;
        let own = caller.kind == SubjectKind::Citizen && caller.id_number == id.expose();
        authz::check(reads_records(&caller) || own, &caller, "ListTravelDocuments", "travel_documents")?;
        let docs = travel_document::Entity::find()
            .filter(travel_document::Column::IdNumber.eq(id.expose()))
            .order_by_asc(travel_document::Column::DocumentNumber)
            .all(&self.db)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::ListTravelDocumentsResponse {
            documents: docs
                .into_iter()
                .map(|d| pb::TravelDocument {
                    status: if d.status == onething_platform::store::case::Standing::Cancelled {
                        pb::TravelDocumentStatus::Cancelled
                    } else {
                        pb::TravelDocumentStatus::Active
                    } as i32,
                    document_number: d.document_number,
                    kind: d.kind,
                    valid_until: d.valid_until,
                })
                .collect(),
        }))
    }

    async fn record_violation(
        &self,
        r: Request<pb::RecordViolationRequest>,
    ) -> Result<Response<pb::RecordViolationResponse>, Status> {
        let caller = authz::principal(&r)?;
        let req = r.into_inner();
        let recorded = self.violations.record(&caller, req.clone()).await?;
        let violation = pb::Violation { date: req.date.trim().to_string(), summary: req.summary.trim().to_string() };
        Ok(Response::new(pb::RecordViolationResponse { violation: Some(violation), recorded }))
    }
}
