//! `onething.liaison.v1.LiaisonService`: the enterprise registry and the request loop.

use crate::{
    requests::{Requests, to_proto},
    store::entities::{employee, enterprise},
};
use onething_platform::reason::Reason;
use onething_platform::{
    authz,
    error::{Error, FieldViolation},
    ids::{CitizenId, CreditCode},
};
use onething_proto::liaison::{self as pb, liaison_service_server::LiaisonService};
use sea_orm::{DatabaseConnection, EntityTrait};
use tonic::{Request, Response, Status};

/// The liaison API.
#[derive(Clone)]
pub struct Liaison {
    db: DatabaseConnection,
    requests: Requests,
}

impl Liaison {
    /// The API over liaison's database and request loop.
    pub fn new(db: DatabaseConnection, requests: Requests) -> Self {
        Self { db, requests }
    }
}

fn ts(t: Option<prost_types::Timestamp>, field: &str) -> Result<chrono::DateTime<chrono::Utc>, Error> {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
        .ok_or_else(|| Error::invalid_field(Reason::LiaisonInvalidRequest, field, "required"))
}

#[tonic::async_trait]
impl LiaisonService for Liaison {
    async fn check_employment(
        &self,
        r: Request<pb::CheckEmploymentRequest>,
    ) -> Result<Response<pb::CheckEmploymentResponse>, Status> {
        let p = authz::principal(&r)?;
        // Household's green channels ask; liaison's own staff may look too. Nobody else
        // learns who works where.
        let may = p.is_service("household") || p.is_staff_of(crate::matters::DEPARTMENT);
        authz::check(may, &p, "CheckEmployment", "employees")?;
        let r = r.into_inner();
        let mut bad = Vec::new();
        let code = CreditCode::parse(&r.credit_code);
        if code.is_err() {
            bad.push(FieldViolation {
                field: "credit_code".into(),
                description: "a unified social credit code".into(),
            });
        }
        let id = CitizenId::parse(&r.id_number);
        if id.is_err() {
            bad.push(FieldViolation { field: "id_number".into(), description: "a citizen ID number".into() });
        }
        if let Some(e) = Error::from_violations(Reason::LiaisonInvalidRequest, bad) {
            return Err(e.into());
        }
        let (Ok(code), Ok(id)) = (code, id) else { return Err(Error::internal(anyhow::anyhow!("validated")).into()) };
        let on_record =
            enterprise::Entity::find_by_id(code.as_str().to_string()).one(&self.db).await.map_err(Error::from)?;
        let employed = employee::Entity::find_by_id((code.as_str().to_string(), id.expose().to_string()))
            .one(&self.db)
            .await
            .map_err(Error::from)?
            .is_some();
        Ok(Response::new(pb::CheckEmploymentResponse {
            on_record: on_record.is_some(),
            private_enterprise: on_record.is_some_and(|e| e.ownership == "private"),
            employed,
        }))
    }

    async fn get_enterprise(
        &self,
        r: Request<pb::GetEnterpriseRequest>,
    ) -> Result<Response<pb::GetEnterpriseResponse>, Status> {
        let p = authz::principal(&r)?;
        let may = authz::reads_register(&p, crate::matters::DEPARTMENT)
            || p.kind == onething_platform::auth::SubjectKind::Enterprise;
        authz::check(may, &p, "GetEnterprise", "enterprises")?;
        let code = CreditCode::parse(&r.into_inner().credit_code).map_err(|e| {
            Error::invalid_field(
                Reason::LiaisonInvalidCreditCode,
                "credit_code",
                format!("not a unified social credit code: {e}"),
            )
        })?;
        let reads = authz::reads_register(&p, crate::matters::DEPARTMENT);
        authz::check(reads || crate::requests::is_enterprise(&p, code.as_str()), &p, "GetEnterprise", code.as_str())?;
        let e = enterprise::Entity::find_by_id(code.as_str().to_string())
            .one(&self.db)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::not_found(Reason::LiaisonEnterpriseNotFound, "no such enterprise on record"))?;
        Ok(Response::new(pb::GetEnterpriseResponse {
            enterprise: Some(pb::Enterprise {
                credit_code: e.credit_code,
                name: e.name,
                legal_representative: e.legal_representative,
                address: e.address,
                park: e.park,
                liaison_officer: e.liaison_officer,
            }),
        }))
    }

    async fn submit_request(
        &self,
        r: Request<pb::SubmitRequestRequest>,
    ) -> Result<Response<pb::SubmitRequestResponse>, Status> {
        let p = authz::principal(&r)?;
        let m = self.requests.submit(&p, r.into_inner()).await?;
        Ok(Response::new(pb::SubmitRequestResponse { request: Some(to_proto(&m, &p)) }))
    }

    async fn get_request(&self, r: Request<pb::GetRequestRequest>) -> Result<Response<pb::GetRequestResponse>, Status> {
        let p = authz::principal(&r)?;
        let m = self.requests.get(&p, &r.into_inner().request_id).await?;
        Ok(Response::new(pb::GetRequestResponse { request: Some(to_proto(&m, &p)) }))
    }

    async fn handle_request(
        &self,
        r: Request<pb::HandleRequestRequest>,
    ) -> Result<Response<pb::HandleRequestResponse>, Status> {
        let p = authz::principal(&r)?;
        let r = r.into_inner();
        let m = self.requests.handle(&p, &r.request_id, &r.note).await?;
        Ok(Response::new(pb::HandleRequestResponse { request: Some(to_proto(&m, &p)) }))
    }

    async fn escalate_request(
        &self,
        r: Request<pb::EscalateRequestRequest>,
    ) -> Result<Response<pb::EscalateRequestResponse>, Status> {
        let p = authz::principal(&r)?;
        let r = r.into_inner();
        let m = self.requests.escalate(&p, &r.request_id, &r.note).await?;
        Ok(Response::new(pb::EscalateRequestResponse { request: Some(to_proto(&m, &p)) }))
    }

    async fn rate_request(
        &self,
        r: Request<pb::RateRequestRequest>,
    ) -> Result<Response<pb::RateRequestResponse>, Status> {
        let p = authz::principal(&r)?;
        let r = r.into_inner();
        let m = self.requests.rate(&p, &r.request_id, r.rating).await?;
        Ok(Response::new(pb::RateRequestResponse { request: Some(to_proto(&m, &p)) }))
    }

    async fn record_visit(
        &self,
        r: Request<pb::RecordVisitRequest>,
    ) -> Result<Response<pb::RecordVisitResponse>, Status> {
        let p = authz::principal(&r)?;
        let r = r.into_inner();
        let m = self.requests.visit(&p, &r.request_id, r.resolved, &r.note).await?;
        Ok(Response::new(pb::RecordVisitResponse { request: Some(to_proto(&m, &p)) }))
    }

    async fn assign_responsibility(
        &self,
        r: Request<pb::AssignResponsibilityRequest>,
    ) -> Result<Response<pb::AssignResponsibilityResponse>, Status> {
        let p = authz::principal(&r)?;
        let r = r.into_inner();
        let m = self.requests.assign_responsibility(&p, &r.request_id, &r.note).await?;
        Ok(Response::new(pb::AssignResponsibilityResponse { request: Some(to_proto(&m, &p)) }))
    }

    async fn get_completion_rate(
        &self,
        r: Request<pb::GetCompletionRateRequest>,
    ) -> Result<Response<pb::GetCompletionRateResponse>, Status> {
        let p = authz::principal(&r)?;
        // Checked before the request is looked at (and again where the rates are read).
        authz::check(crate::requests::reads_completion(&p), &p, "GetCompletionRate", "requests")?;
        let r = r.into_inner();
        let (from, to) = (ts(r.period_start, "period_start")?, ts(r.period_end, "period_end")?);
        Ok(Response::new(self.requests.completion(&p, from, to).await?))
    }
}
