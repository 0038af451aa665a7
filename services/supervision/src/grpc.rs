//! `onething.supervision.v1.SupervisionService`.

use crate::ops::{Supervision, complaint_pb, rating_pb, unresolved_pb};
use chrono::{DateTime, Utc};
use onething_platform::reason::Reason;
use onething_platform::{authz, error::Error};
use onething_proto::supervision::{self as pb, supervision_service_server::SupervisionService};
use tonic::{Request, Response, Status};

/// The supervision API.
#[derive(Clone)]
pub struct Api(pub Supervision);

impl Api {
    /// The instant asked about, or now on the business clock.
    fn at(&self, t: Option<prost_types::Timestamp>) -> DateTime<Utc> {
        t.and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
            .unwrap_or_else(|| self.0.clock().now())
    }
}

fn required(t: Option<prost_types::Timestamp>, field: &str) -> Result<DateTime<Utc>, Error> {
    t.and_then(|t| DateTime::from_timestamp(t.seconds, 0))
        .ok_or_else(|| Error::invalid_field(Reason::SupervisionInvalidRequest, field, "required"))
}

#[tonic::async_trait]
impl SupervisionService for Api {
    async fn list_deadlines(
        &self,
        r: Request<pb::ListDeadlinesRequest>,
    ) -> Result<Response<pb::ListDeadlinesResponse>, Status> {
        let p = authz::principal(&r)?;
        let items = self.0.deadlines(&p, self.at(r.into_inner().at)).await?;
        Ok(Response::new(pb::ListDeadlinesResponse { items }))
    }

    async fn submit_complaint(
        &self,
        r: Request<pb::SubmitComplaintRequest>,
    ) -> Result<Response<pb::SubmitComplaintResponse>, Status> {
        let p = authz::principal(&r)?;
        let m = self.0.submit_complaint(&p, r.into_inner()).await?;
        Ok(Response::new(pb::SubmitComplaintResponse { complaint: Some(complaint_pb(&m, &p)) }))
    }

    async fn advance_complaint(
        &self,
        r: Request<pb::AdvanceComplaintRequest>,
    ) -> Result<Response<pb::AdvanceComplaintResponse>, Status> {
        let p = authz::principal(&r)?;
        let m = self.0.advance_complaint(&p, r.into_inner()).await?;
        Ok(Response::new(pb::AdvanceComplaintResponse { complaint: Some(complaint_pb(&m, &p)) }))
    }

    async fn rate(&self, r: Request<pb::RateRequest>) -> Result<Response<pb::RateResponse>, Status> {
        let p = authz::principal(&r)?;
        let m = self.0.rate(&p, r.into_inner()).await?;
        Ok(Response::new(pb::RateResponse { rating: Some(rating_pb(&m)) }))
    }

    async fn record_fix(&self, r: Request<pb::RecordFixRequest>) -> Result<Response<pb::RecordFixResponse>, Status> {
        let p = authz::principal(&r)?;
        let m = self.0.record_fix(&p, r.into_inner()).await?;
        Ok(Response::new(pb::RecordFixResponse { rating: Some(rating_pb(&m)) }))
    }

    async fn list_unresolved(
        &self,
        r: Request<pb::ListUnresolvedRequest>,
    ) -> Result<Response<pb::ListUnresolvedResponse>, Status> {
        let p = authz::principal(&r)?;
        let items = self.0.unresolved(&p, r.into_inner().include_resolved).await?;
        Ok(Response::new(pb::ListUnresolvedResponse { items: items.iter().map(unresolved_pb).collect() }))
    }

    async fn resolve_item(
        &self,
        r: Request<pb::ResolveItemRequest>,
    ) -> Result<Response<pb::ResolveItemResponse>, Status> {
        let p = authz::principal(&r)?;
        let m = self.0.resolve(&p, &r.into_inner().item_id).await?;
        Ok(Response::new(pb::ResolveItemResponse { item: Some(unresolved_pb(&m)) }))
    }

    async fn get_kpis(&self, r: Request<pb::GetKpisRequest>) -> Result<Response<pb::GetKpisResponse>, Status> {
        let p = authz::principal(&r)?;
        // Checked before the request is looked at (and again where the KPIs are read).
        authz::check(authz::is_supervision(&p), &p, "GetKpis", "kpis")?;
        let r = r.into_inner();
        let (from, to) = (required(r.period_start, "period_start")?, required(r.period_end, "period_end")?);
        let departments = self.0.kpis(&p, from, to, self.at(r.at)).await?;
        Ok(Response::new(pb::GetKpisResponse { departments }))
    }

    async fn draw_inspections(
        &self,
        r: Request<pb::DrawInspectionsRequest>,
    ) -> Result<Response<pb::DrawInspectionsResponse>, Status> {
        let p = authz::principal(&r)?;
        let (draw_id, d) = self.0.draw(&p, r.into_inner()).await?;
        Ok(Response::new(pb::DrawInspectionsResponse {
            draw_id,
            inspections: d
                .inspections
                .into_iter()
                .map(|(c, t)| pb::DrawnInspection { credit_code: c, inspectors: t })
                .collect(),
            capped: d.capped,
        }))
    }
}
