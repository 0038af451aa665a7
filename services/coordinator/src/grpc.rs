//! `BundleService` (submit, get, list, watch, withdraw) and `CatalogService` (matters and
//! bundles of the catalog).

use crate::{
    engine::{Aggregate, Engine},
    saga::BundleState,
    view::View,
};
use onething_platform::reason::Reason;
use onething_platform::{auth::Principal, authz, error::Error};
use onething_proto::coordinator::{
    self as pb, bundle_service_server::BundleService, catalog_service_server::CatalogService,
};
use std::pin::Pin;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// The bundle API.
#[derive(Clone)]
pub struct Bundles(pub Engine);

/// Loads the bundle `id` with the view `p` may have of it. A bundle that does not exist
/// and one `p` may not see answer alike (PERMISSION_DENIED), so no one learns whether
/// another's bundle exists.
async fn readable(e: &Engine, p: &Principal, id: &str, rpc: &str) -> Result<(Aggregate, View), Error> {
    onething_platform::telemetry::record_ids(None, Some(id));
    authz::check(View::may_ask(p, rpc == "GetBundle"), p, rpc, id)?;
    let agg = authz::hide_missing(e.load(e.db(), id).await, false, p, rpc, id)?;
    let view = View::of(p, &agg).ok_or_else(|| authz::deny(p, rpc, id))?;
    Ok((agg, view))
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
        // Its applicant, or the clerk who entered it: both gave what it shows.
        Ok(Response::new(pb::SubmitBundleResponse { bundle: Some(View::Full.show(&agg)) }))
    }

    async fn get_bundle(&self, r: Request<pb::GetBundleRequest>) -> Result<Response<pb::GetBundleResponse>, Status> {
        let p = authz::principal(&r)?;
        let (agg, view) = readable(&self.0, &p, &r.into_inner().bundle_id, "GetBundle").await?;
        Ok(Response::new(pb::GetBundleResponse { bundle: Some(view.show(&agg)) }))
    }

    async fn list_bundles(
        &self,
        r: Request<pb::ListBundlesRequest>,
    ) -> Result<Response<pb::ListBundlesResponse>, Status> {
        let p = authz::principal(&r)?;
        authz::check(View::may_ask(&p, false), &p, "ListBundles", "bundles")?;
        let size = match r.into_inner().page_size {
            n if n < 0 => {
                return Err(Error::invalid_field(
                    Reason::CoordinatorInvalidRequest,
                    "page_size",
                    "must not be negative",
                )
                .into());
            }
            0 => 20,
            n => n.min(100),
        };
        let list = self.0.list(&p, u64::try_from(size).unwrap_or(20)).await?;
        let bundles = list.iter().filter_map(|a| View::of(&p, a).map(|v| v.show(a))).collect();
        Ok(Response::new(pb::ListBundlesResponse { bundles }))
    }

    type WatchBundleStream = WatchStream;

    async fn watch_bundle(
        &self,
        r: Request<pb::WatchBundleRequest>,
    ) -> Result<Response<Self::WatchBundleStream>, Status> {
        let p = authz::principal(&r)?;
        let id = r.into_inner().bundle_id;
        let (first, view) = readable(&self.0, &p, &id, "WatchBundle").await?;
        // Listening from the first read: a change after it is not missed.
        let mut watcher = self.0.changes().watch(&id).ok_or_else(|| {
            Status::from(onething_platform::error::Error::new(
                onething_platform::error::Kind::ResourceExhausted,
                Reason::CoordinatorTooManyWatchers,
                "this bundle has as many watchers as it may; close one",
            ))
        })?;
        let first = match self.0.load(self.0.db(), &id).await {
            Ok(fresh) => fresh,
            Err(_) => first,
        };
        let engine = self.0.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            let mut last = 0;
            let mut agg = first;
            loop {
                if agg.bundle.version != last {
                    last = agg.bundle.version;
                    if tx.send(Ok(pb::WatchBundleResponse { bundle: Some(view.show(&agg)) })).await.is_err() {
                        return; // The watcher went away.
                    }
                    // A finished bundle whose steps are all final ends the stream.
                    let finished =
                        agg.bundle.state != BundleState::Running && agg.steps.iter().all(|s| s.state.is_final());
                    if finished {
                        return;
                    }
                }
                // Read again when the bundle rang (a change on any replica), or now and
                // then; ended as soon as the client goes.
                if !watcher.next_change(tx.closed()).await {
                    return;
                }
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
        Ok(Response::new(pb::WithdrawBundleResponse { bundle: Some(View::Full.show(&agg)) }))
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
        evidence: m
            .evidence
            .iter()
            .map(|(material, rule)| pb::MaterialEvidence {
                material: material.clone(),
                required: rule.elicence == onething_platform::catalog::evidence::EvidenceMode::Required,
                kinds: rule.kinds().map(str::to_string).collect(),
            })
            .collect(),
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
            .ok_or_else(|| Error::not_found(Reason::CoordinatorUnknownMatter, "no such matter"))?;
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
            .ok_or_else(|| Error::not_found(Reason::CoordinatorNoSuchBundle, "no such bundle"))?;
        Ok(Response::new(pb::GetBundleDefinitionResponse { bundle: Some(bundle_pb(b)) }))
    }
}
