//! The saga engine: submits a bundle (validated in full first, so bad input creates nothing
//! anywhere), creates each step's case at its department with an idempotency key derived
//! from bundle and step, follows the departments' case events, starts dependent steps,
//! withdraws or revokes what must not stand alone when a required step is refused or the
//! bundle is withdrawn before its required steps are approved, and retries a
//! department that is down with backoff while the bundle waits. State lives in the
//! coordinator's database under the bundle's version, so any replica can drive any bundle.
//!
//! Here: the engine, loading and storing a bundle under its version, recording what the
//! departments said on a step. Submitting in [`submit`], the departments' case events in
//! [`case_events`], driving bundles in [`driver`], the calls to the departments in
//! [`calls`].

use onething_platform::reason::Reason;
mod calls;
mod case_events;
mod driver;
mod record;
mod submit;
mod timing;

use calls::Failure;
use record::{CaseNews, awaiting_result, record_case, record_created};

use crate::{
    saga::{self, BundleState, Step, StepView},
    store::{bundle, step},
};
use chrono::Utc;
use onething_platform::grpc::{Peers, TracedChannel};
use onething_platform::{
    auth::{PeerIdentity, Principal, ServiceIdentity},
    calendar::Calendar,
    cases::{ApplicantRecord, MaterialRecord, timestamp},
    catalog::{Bundle as BundleDef, Catalog},
    db::begin_write,
    error::{Error, FieldViolation, Kind, Result},
    events::{Outbox, OutgoingEvent},
    lifecycle::State as CaseState,
    telemetry,
};
use onething_proto::{
    common::{self as cpb, case_service_client::CaseServiceClient},
    coordinator as pb,
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, EntityTrait, Iterable,
    QueryFilter, QueryOrder, sea_query::OnConflict,
};
use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};
use tonic::service::interceptor::InterceptedService;
use tonic_types::StatusExt;

/// A bundle with its steps.
#[derive(Debug, Clone)]
pub struct Aggregate {
    /// The bundle row.
    pub bundle: bundle::Model,
    /// Its steps, in catalog order.
    pub steps: Vec<step::Model>,
}

/// The coordinator's engine, shared by the API, the event handler and the driver.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    catalog: Arc<Catalog>,
    calendar: Arc<Calendar>,
    /// The e-licence issuers trusted: evidence is weighed at SubmitBundle as the departments
    /// weigh it.
    trust: Arc<onething_platform::elicence::Trust>,
    outbox: Outbox,
    /// Business time: bundle deadlines and event times (step retries keep system time).
    clock: onething_platform::clock::Clock,
    identity: ServiceIdentity,
    peers: Peers,
    wake: tokio::sync::Notify,
    /// Bundles being driven in this process, each with "drive it again when done".
    driving: Mutex<HashMap<String, bool>>,
    /// (bundle, step) → (case id, version) this process has committed: most case events
    /// repeat what the CreateCase answer told, and are then known without a query.
    recorded: Mutex<HashMap<(String, String), (String, i64)>>,
    /// A breaker per department: a hung one fails fast instead of holding drives.
    breakers: crate::breaker::Breakers,
    /// A bound on the calls in flight to each department: a hung one holds at most
    /// [`DEPARTMENT_CALLS`] drives, well under [`DRIVE_CONCURRENCY`].
    bulkheads: crate::breaker::Bulkheads,
    /// Bundles driven at once, by the driver's sweep and after a submit: many, so the
    /// bundles waiting on one department leave room for the others; bounded, so a backlog
    /// does not open a connection storm on the departments.
    drive_slots: Arc<tokio::sync::Semaphore>,
    /// Rings for every committed bundle change, for watchers.
    changes: crate::watch::Changes,
}

/// Bundles driven at once (see [`Inner::drive_slots`]).
const DRIVE_CONCURRENCY: usize = 256;

/// Calls in flight to one department at most (see [`Inner::bulkheads`]).
pub const DEPARTMENT_CALLS: usize = 16;

/// How long a call waits for room at its department before it is tried again later.
const DEPARTMENT_WAIT: Duration = Duration::from_secs(1);

/// Entries of [`Inner::recorded`] kept at most (it is emptied when full: a miss only costs
/// a query).
const RECORDED_MAX: usize = 50_000;

/// The idempotency key of a step's case.
pub fn step_key(bundle_id: &str, step_id: &str) -> String {
    format!("bundle:{bundle_id}:{step_id}")
}

fn retry_after(attempts: i32) -> chrono::Duration {
    let ms = 500u64.saturating_mul(1 << attempts.clamp(0, 6)).min(30_000);
    chrono::Duration::milliseconds(i64::try_from(ms).unwrap_or(30_000))
}

/// Writes the steps that differ from `before`, in one statement: an upsert whose rows all
/// exist, so it updates.
async fn write_changed_steps(txn: &DatabaseTransaction, steps: &[step::Model], before: &[step::Model]) -> Result<()> {
    let changed: Vec<step::ActiveModel> = steps
        .iter()
        .zip(before)
        .filter(|(s, old)| s != old)
        .map(|(s, _)| step::ActiveModel::from(s.clone()).reset_all())
        .collect();
    if !changed.is_empty() {
        let rest = step::Column::iter().filter(|c| !matches!(c, step::Column::BundleId | step::Column::StepId));
        step::Entity::insert_many(changed)
            .on_conflict(
                OnConflict::columns([step::Column::BundleId, step::Column::StepId]).update_columns(rest).to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// Counts a bundle that reached a final state in `bundle_duration`. Counted before the
/// commit: a commit that then fails counts a bundle that will finish again later (rare, and
/// only ever an extra sample).
fn observe_finished(agg: &Aggregate) {
    let took = (agg.bundle.updated_at - agg.bundle.created_at).num_milliseconds().max(0) as f64 / 1000.0;
    onething_platform::metrics::metrics()
        .bundle_duration
        .get_or_create(&onething_platform::metrics::BundleLabels {
            bundle: agg.bundle.code.clone(),
            outcome: agg.bundle.state.to_string(),
        })
        .observe(took);
}

/// Counts a failed attempt of step `st` and schedules the next, later each time, saying why.
fn retry_later(st: &mut step::Model, why: &str) {
    st.attempts += 1;
    st.next_attempt_at = Utc::now() + retry_after(st.attempts);
    st.reason = why.to_string();
}

impl Engine {
    /// An engine over the coordinator's database, outbox, catalog, calendar and clock (from
    /// `runtime`), calling departments at `peers` as `identity` and ringing `changes`.
    pub fn new(
        runtime: &onething_platform::runtime::ServiceRuntime,
        identity: ServiceIdentity,
        peers: Peers,
        changes: crate::watch::Changes,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                db: runtime.db.clone(),
                catalog: runtime.catalog.clone(),
                calendar: runtime.calendar.clone(),
                trust: runtime.trust.clone(),
                outbox: runtime.outbox.clone(),
                clock: runtime.clock().clone(),
                identity,
                peers,
                wake: tokio::sync::Notify::new(),
                driving: Mutex::new(HashMap::new()),
                recorded: Mutex::new(HashMap::new()),
                breakers: crate::breaker::Breakers::new(3, Duration::from_secs(5), Duration::from_secs(60)),
                bulkheads: crate::breaker::Bulkheads::new(DEPARTMENT_CALLS, DEPARTMENT_WAIT),
                drive_slots: Arc::new(tokio::sync::Semaphore::new(DRIVE_CONCURRENCY)),
                changes,
            }),
        }
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// Where committed bundle changes ring (for `WatchBundle`).
    pub fn changes(&self) -> &crate::watch::Changes {
        &self.inner.changes
    }

    /// The coordinator's database.
    pub fn db(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    /// The business clock.
    pub fn clock(&self) -> &onething_platform::clock::Clock {
        &self.inner.clock
    }

    /// Loads a bundle with its steps.
    ///
    /// # Errors
    /// NOT_FOUND or a database failure.
    pub async fn load<C: ConnectionTrait>(&self, db: &C, id: &str) -> Result<Aggregate> {
        self.load_with(db, id, false).await
    }

    /// [`Self::load`], with the bundle row locked until `txn` ends (`SELECT … FOR UPDATE` on
    /// PostgreSQL; SQLite's write transaction already holds the database). Writers of one
    /// bundle in one database then wait for each other instead of losing the version race.
    async fn load_for_update(&self, txn: &DatabaseTransaction, id: &str) -> Result<Aggregate> {
        self.load_with(txn, id, true).await
    }

    async fn load_with<C: ConnectionTrait>(&self, db: &C, id: &str, lock: bool) -> Result<Aggregate> {
        let mut q = bundle::Entity::find_by_id(id.to_string());
        if lock {
            q = sea_orm::QuerySelect::lock_exclusive(q);
        }
        let bundle =
            q.one(db).await?.ok_or_else(|| Error::not_found(Reason::CoordinatorBundleNotFound, "no such bundle"))?;
        // A second statement, not a join: a join locking `FOR UPDATE OF bundles` that waited
        // for the lock returns the bundle row as the other transaction committed it but the
        // steps as they were before (READ COMMITTED re-reads only the locked row); written
        // back, those stale steps undid the other's (seen: a completed bundle whose step was
        // still in progress). Read after the lock, the steps include that commit.
        let mut steps = step::Entity::find().filter(step::Column::BundleId.eq(id)).all(db).await?;
        let order: Vec<String> = self
            .inner
            .catalog
            .bundle(&bundle.code)
            .map(|d| d.steps.iter().map(|s| s.id.clone()).collect())
            .unwrap_or_default();
        steps.sort_by_key(|s| order.iter().position(|o| *o == s.step_id).unwrap_or(usize::MAX));
        Ok(Aggregate { bundle, steps })
    }

    /// Applies `f` to the bundle, runs the saga rules, and stores it under its version in
    /// `txn`; a bundle that changed state gets its event. Also says whether anything changed.
    async fn apply_in(
        &self,
        txn: &DatabaseTransaction,
        id: &str,
        f: impl FnOnce(&mut Aggregate, &BundleDef),
    ) -> Result<(Aggregate, bool)> {
        let mut agg = self.load_for_update(txn, id).await?;
        let def = self
            .inner
            .catalog
            .bundle(&agg.bundle.code)
            .ok_or_else(|| Error::internal(anyhow::anyhow!("bundle {} left the catalog", agg.bundle.code)))?
            .clone();
        let before = (agg.bundle.version, agg.bundle.state, agg.steps.clone());
        let was = timing::timing(&agg);
        f(&mut agg, &def);
        let mut views: Vec<StepView> = agg
            .steps
            .iter()
            .map(|s| StepView {
                id: s.step_id.clone(),
                state: s.state,
                has_case: !s.case_id.is_empty(),
                kept: s.reason.starts_with(Reason::CaseNotRevocable.as_str()),
            })
            .collect();
        let next = saga::evaluate(&def, agg.bundle.state, &mut views);
        for (s, v) in agg.steps.iter_mut().zip(&views) {
            if s.state != v.state {
                s.state = v.state;
                if v.state == Step::Pending {
                    s.next_attempt_at = Utc::now();
                }
            }
        }
        agg.bundle.state = next;
        self.retime(&mut agg, &def);
        if before.1 == agg.bundle.state && before.2 == agg.steps && was == timing::timing(&agg) {
            return Ok((agg, false));
        }
        agg.bundle.version += 1;
        agg.bundle.updated_at = self.inner.clock.now();
        let mut am = bundle::ActiveModel::from(agg.bundle.clone()).reset_all();
        am.id = sea_orm::ActiveValue::Unchanged(agg.bundle.id.clone());
        let n = bundle::Entity::update_many()
            .set(am)
            .filter(bundle::Column::Id.eq(agg.bundle.id.clone()))
            .filter(bundle::Column::Version.eq(before.0))
            .exec(txn)
            .await?;
        if n.rows_affected != 1 {
            return Err(Error::new(
                Kind::Aborted,
                Reason::CoordinatorConcurrentUpdate,
                "the bundle changed concurrently",
            ));
        }
        write_changed_steps(txn, &agg.steps, &before.2).await?;
        if let Some(happened) = timing::what_happened(before.1, was, &agg) {
            self.inner.outbox.enqueue(txn, self.bundle_event(&agg, &happened)).await?;
        }
        if before.1 != agg.bundle.state {
            if matches!(agg.bundle.state, BundleState::Completed | BundleState::Failed | BundleState::Withdrawn) {
                observe_finished(&agg);
            }
            tracing::info!(bundle_id = %agg.bundle.id, state = %agg.bundle.state, "bundle state changed");
        }
        Ok((agg, true))
    }

    /// [`Self::apply_in`] in its own transaction, retried when another replica won the race.
    async fn apply(&self, id: &str, f: impl Fn(&mut Aggregate, &BundleDef)) -> Result<Aggregate> {
        let mut last = None;
        for _ in 0..5 {
            let txn = begin_write(&self.inner.db).await?;
            match self.apply_in(&txn, id, &f).await {
                Ok((agg, _)) => {
                    txn.commit().await?;
                    self.inner.outbox.wake();
                    self.inner.changes.changed(id);
                    self.remember(&agg);
                    return Ok(agg);
                }
                Err(e) if e.kind() == Kind::Aborted => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::internal(anyhow::anyhow!("no attempt made"))))
    }

    /// Notes the steps' cases of a committed aggregate for [`Self::knows_case_event`].
    fn remember(&self, agg: &Aggregate) {
        let mut recorded = self.inner.recorded.lock().expect("recorded cases");
        if recorded.len() >= RECORDED_MAX {
            recorded.clear();
        }
        for s in agg.steps.iter().filter(|s| !s.case_id.is_empty()) {
            recorded.insert((s.bundle_id.clone(), s.step_id.clone()), (s.case_id.clone(), s.case_version));
        }
    }

    /// Withdraws a running bundle: the driver then withdraws its open cases and revokes
    /// what may not stand alone (see [`crate::saga::evaluate`]).
    ///
    /// # Errors
    /// PERMISSION_DENIED for anyone but its applicant (and for a bundle that does not
    /// exist); FAILED_PRECONDITION for a finished bundle (also one that finished while
    /// this call ran).
    pub async fn withdraw(&self, p: &Principal, id: &str) -> Result<Aggregate> {
        use onething_platform::authz;
        authz::check(p.kind.is_applicant(), p, "WithdrawBundle", id)?;
        // Not found and not theirs answer alike: no one learns whether another's bundle exists.
        let agg = authz::hide_missing(self.load(&self.inner.db, id).await, false, p, "WithdrawBundle", id)?;
        authz::check(crate::view::owns(p, &agg), p, "WithdrawBundle", id)?;
        if agg.bundle.state != BundleState::Running {
            return Err(Error::failed_precondition(
                Reason::CoordinatorBundleFinished,
                "the bundle is no longer running",
            ));
        }
        // Checked again under the row's lock: a bundle that completed meanwhile stays so.
        let agg = self
            .apply(id, |agg, _| {
                if agg.bundle.state == BundleState::Running {
                    agg.bundle.state = BundleState::Withdrawn;
                }
            })
            .await?;
        if agg.bundle.state != BundleState::Withdrawn {
            return Err(Error::failed_precondition(
                Reason::CoordinatorBundleFinished,
                "the bundle is no longer running",
            ));
        }
        self.spawn_drive(agg.clone());
        Ok(agg)
    }

    /// The bundles `p` may see, newest first: an applicant their own, staff those with a
    /// step in their department, supervision all.
    ///
    /// # Errors
    /// PERMISSION_DENIED for anyone else; a database failure.
    pub async fn list(&self, p: &Principal, limit: u64) -> Result<Vec<Aggregate>> {
        use onething_platform::{auth::SubjectKind, authz};
        let mut q = bundle::Entity::find().order_by_desc(bundle::Column::CreatedAt);
        let reader = p;
        if let Some((kind, id)) = reader.applicant() {
            q = q
                .filter(
                    bundle::Column::ApplicantKind.eq(onething_platform::store::case::ApplicantKind::from_proto(kind)),
                )
                .filter(bundle::Column::ApplicantIdentifier.eq(id));
        } else if authz::is_supervision(reader) {
        } else if reader.kind == SubjectKind::Staff {
            let theirs = sea_orm::sea_query::Query::select()
                .column(step::Column::BundleId)
                .from(step::Entity)
                .and_where(step::Column::Department.eq(reader.dept.clone()))
                .to_owned();
            q = q.filter(bundle::Column::Id.in_subquery(theirs));
        } else {
            return Err(authz::deny(p, "ListBundles", "bundles"));
        }
        let rows = sea_orm::QuerySelect::limit(q, limit).all(&self.inner.db).await?;
        let mut out = Vec::with_capacity(rows.len());
        for b in rows {
            out.push(self.load(&self.inner.db, &b.id).await?);
        }
        Ok(out)
    }
}
