//! `BundleService` (submit, get, list, watch, withdraw) and `CatalogService` (matters and
//! bundles of the catalog).

use crate::{
    engine::{Aggregate, Engine},
    saga::{BundleState, Step},
};
use onething_platform::{
    auth::{Principal, SubjectKind},
    authz,
    cases::timestamp,
    error::Error,
    lifecycle::State as CaseState,
};
use onething_proto::{
    common as cpb,
    coordinator::{self as pb, bundle_service_server::BundleService, catalog_service_server::CatalogService},
};
use std::{pin::Pin, time::Duration};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// The API message of a bundle.
pub fn to_proto(a: &Aggregate) -> pb::Bundle {
    let b = &a.bundle;
    pb::Bundle {
        bundle_id: b.id.clone(),
        code: b.code.clone(),
        state: match BundleState::parse(&b.state) {
            BundleState::Running => pb::BundleState::Running,
            BundleState::Completed => pb::BundleState::Completed,
            BundleState::Failed => pb::BundleState::Failed,
            BundleState::Withdrawn => pb::BundleState::Withdrawn,
        } as i32,
        applicant: Some(cpb::Applicant {
            kind: match b.applicant_kind.as_str() {
                "enterprise" => cpb::ApplicantKind::Enterprise,
                "foreigner" => cpb::ApplicantKind::Foreigner,
                _ => cpb::ApplicantKind::Citizen,
            } as i32,
            identifier: b.applicant_identifier.clone(),
            name: b.applicant_name.clone(),
            phone: b.applicant_phone.clone(),
        }),
        steps: a
            .steps
            .iter()
            .map(|s| pb::BundleStep {
                step_id: s.step_id.clone(),
                matter_code: s.matter_code.clone(),
                department: s.department.clone(),
                state: match Step::parse(&s.state) {
                    Step::Blocked => pb::StepState::Blocked,
                    Step::Pending => pb::StepState::Pending,
                    Step::InProgress | Step::Cancelling => pb::StepState::InProgress,
                    Step::Done => pb::StepState::Done,
                    Step::Refused => pb::StepState::Refused,
                    Step::Cancelled => pb::StepState::Cancelled,
                    Step::Skipped => pb::StepState::Skipped,
                } as i32,
                case_id: s.case_id.clone(),
                case_state: CaseState::from_str_name(&s.case_state)
                    .map_or(cpb::CaseState::Unspecified, CaseState::to_proto) as i32,
                reason: if Step::parse(&s.state) == Step::Cancelling { "withdrawing".into() } else { s.reason.clone() },
                result: serde_json::from_str(&s.result).unwrap_or_default(),
            })
            .collect(),
        due_time: Some(timestamp(b.due_at)),
        version: b.version,
        create_time: Some(timestamp(b.created_at)),
        update_time: Some(timestamp(b.updated_at)),
    }
}

/// The bundle API.
#[derive(Clone)]
pub struct Bundles(pub Engine);

fn reads_all(p: &Principal) -> bool {
    p.kind == SubjectKind::Staff || p.kind == SubjectKind::Service
}

async fn readable(e: &Engine, p: &Principal, id: &str, rpc: &str) -> Result<Aggregate, Error> {
    onething_platform::telemetry::record_ids(None, Some(id));
    let agg = e.load(e.db(), id).await?;
    authz::check(reads_all(p) || e.owns(p, &agg), p, rpc, id)?;
    Ok(agg)
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchBundleResponse, Status>> + Send>>;

#[tonic::async_trait]
impl BundleService for Bundles {
    async fn submit_bundle(
        &self,
        r: Request<pb::SubmitBundleRequest>,
    ) -> Result<Response<pb::SubmitBundleResponse>, Status> {
        let p = authz::principal(&r)?;
        let agg = self.0.submit(&p, r.into_inner()).await?;
        onething_platform::telemetry::record_ids(None, Some(&agg.bundle.id));
        Ok(Response::new(pb::SubmitBundleResponse { bundle: Some(to_proto(&agg)) }))
    }

    async fn get_bundle(&self, r: Request<pb::GetBundleRequest>) -> Result<Response<pb::GetBundleResponse>, Status> {
        let p = authz::principal(&r)?;
        let agg = readable(&self.0, &p, &r.into_inner().bundle_id, "GetBundle").await?;
        Ok(Response::new(pb::GetBundleResponse { bundle: Some(to_proto(&agg)) }))
    }

    async fn list_bundles(
        &self,
        r: Request<pb::ListBundlesRequest>,
    ) -> Result<Response<pb::ListBundlesResponse>, Status> {
        let p = authz::principal(&r)?;
        authz::check(reads_all(&p) || p.applicant_identifier().is_some(), &p, "ListBundles", "bundles")?;
        let size = match r.into_inner().page_size {
            n if n < 0 => {
                return Err(
                    Error::invalid_field("COORDINATOR_INVALID_REQUEST", "page_size", "must not be negative").into()
                );
            }
            0 => 20,
            n => n.min(100),
        };
        let list = self.0.list(&p, u64::try_from(size).unwrap_or(20)).await?;
        Ok(Response::new(pb::ListBundlesResponse { bundles: list.iter().map(to_proto).collect() }))
    }

    type WatchBundleStream = WatchStream;

    async fn watch_bundle(
        &self,
        r: Request<pb::WatchBundleRequest>,
    ) -> Result<Response<Self::WatchBundleStream>, Status> {
        let p = authz::principal(&r)?;
        let id = r.into_inner().bundle_id;
        let first = readable(&self.0, &p, &id, "WatchBundle").await?;
        let engine = self.0.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            let mut last = 0;
            let mut agg = first;
            loop {
                if agg.bundle.version != last {
                    last = agg.bundle.version;
                    if tx.send(Ok(pb::WatchBundleResponse { bundle: Some(to_proto(&agg)) })).await.is_err() {
                        return; // The watcher went away.
                    }
                    // A finished bundle whose steps are all final ends the stream.
                    let finished = BundleState::parse(&agg.bundle.state) != BundleState::Running
                        && agg.steps.iter().all(|s| Step::parse(&s.state).is_final());
                    if finished {
                        return;
                    }
                }
                // Changes may come from any replica, so the stream reads the database.
                tokio::time::sleep(Duration::from_millis(200)).await;
                match engine.load(engine.db(), &id).await {
                    Ok(a) => agg = a,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn withdraw_bundle(
        &self,
        r: Request<pb::WithdrawBundleRequest>,
    ) -> Result<Response<pb::WithdrawBundleResponse>, Status> {
        let p = authz::principal(&r)?;
        let id = r.into_inner().bundle_id;
        onething_platform::telemetry::record_ids(None, Some(&id));
        let agg = self.0.withdraw(&p, &id).await?;
        Ok(Response::new(pb::WithdrawBundleResponse { bundle: Some(to_proto(&agg)) }))
    }
}

/// The catalog API.
#[derive(Clone)]
pub struct CatalogApi(pub Engine);

fn matter_pb(m: &onething_platform::catalog::Matter) -> pb::Matter {
    pb::Matter {
        code: m.code.clone(),
        name: m.name.clone(),
        department: m.department.clone(),
        required_materials: m.required_materials.clone(),
        deferrable_materials: m.deferrable_materials.clone(),
        time_unit: m.time_unit.as_str().into(),
        time_limit: m.time_limit,
        online: m.online,
        cross_province: m.cross_province,
    }
}

fn bundle_pb(b: &onething_platform::catalog::Bundle) -> pb::BundleDefinition {
    pb::BundleDefinition {
        code: b.code.clone(),
        name: b.name.clone(),
        steps: b
            .steps
            .iter()
            .map(|s| pb::BundleStepDefinition {
                id: s.id.clone(),
                matter: s.matter.clone(),
                after: s.after.clone(),
                optional: s.optional,
                stands_alone: s.stands_alone,
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl CatalogService for CatalogApi {
    async fn list_matters(
        &self,
        r: Request<pb::ListMattersRequest>,
    ) -> Result<Response<pb::ListMattersResponse>, Status> {
        authz::principal(&r)?;
        let dept = r.into_inner().department;
        let c = self.0.catalog();
        Ok(Response::new(pb::ListMattersResponse {
            catalog_version: c.version.clone(),
            matters: c.matters.iter().filter(|m| dept.is_empty() || m.department == dept).map(matter_pb).collect(),
        }))
    }

    async fn get_matter(&self, r: Request<pb::GetMatterRequest>) -> Result<Response<pb::GetMatterResponse>, Status> {
        authz::principal(&r)?;
        let m = self
            .0
            .catalog()
            .get(&r.into_inner().code)
            .ok_or_else(|| Error::not_found("COORDINATOR_UNKNOWN_MATTER", "no such matter"))?;
        Ok(Response::new(pb::GetMatterResponse { matter: Some(matter_pb(m)) }))
    }

    async fn list_bundle_definitions(
        &self,
        r: Request<pb::ListBundleDefinitionsRequest>,
    ) -> Result<Response<pb::ListBundleDefinitionsResponse>, Status> {
        authz::principal(&r)?;
        Ok(Response::new(pb::ListBundleDefinitionsResponse {
            bundles: self.0.catalog().bundles.iter().map(bundle_pb).collect(),
        }))
    }

    async fn get_bundle_definition(
        &self,
        r: Request<pb::GetBundleDefinitionRequest>,
    ) -> Result<Response<pb::GetBundleDefinitionResponse>, Status> {
        authz::principal(&r)?;
        let b = self
            .0
            .catalog()
            .bundle(&r.into_inner().code)
            .ok_or_else(|| Error::not_found("COORDINATOR_UNKNOWN_BUNDLE", "no such bundle"))?;
        Ok(Response::new(pb::GetBundleDefinitionResponse { bundle: Some(bundle_pb(b)) }))
    }
}
