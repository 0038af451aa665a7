//! The saga engine: submits a bundle (validated in full first, so bad input creates nothing
//! anywhere), creates each step's case at its department with an idempotency key derived
//! from bundle and step, follows the departments' case events, starts dependent steps,
//! withdraws what must not stand alone when a required step is refused, and retries a
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
mod submit;

use calls::Failure;

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

    fn bundle_event(&self, agg: &Aggregate, happened: &str) -> OutgoingEvent {
        let state = match agg.bundle.state {
            BundleState::Running => pb::BundleState::Running,
            BundleState::Completed => pb::BundleState::Completed,
            BundleState::Failed => pb::BundleState::Failed,
            BundleState::Withdrawn => pb::BundleState::Withdrawn,
        };
        OutgoingEvent::new(
            format!("onething.coordinator.v1.bundle.{happened}"),
            format!("bundles/{}", agg.bundle.id),
            &pb::BundleChanged {
                bundle_id: agg.bundle.id.clone(),
                code: agg.bundle.code.clone(),
                state: state as i32,
                step_outcomes: agg.steps.iter().map(|s| format!("{}={}", s.step_id, s.state)).collect(),
                due_time: Some(timestamp(agg.bundle.due_at)),
                occur_time: Some(timestamp(self.inner.clock.now())),
            },
        )
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
        f(&mut agg, &def);
        let mut views: Vec<StepView> = agg
            .steps
            .iter()
            .map(|s| StepView { id: s.step_id.clone(), state: s.state, has_case: !s.case_id.is_empty() })
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
        if before.1 == agg.bundle.state && before.2 == agg.steps {
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
        if before.1 != agg.bundle.state {
            self.inner.outbox.enqueue(txn, self.bundle_event(&agg, &agg.bundle.state.to_string())).await?;
            if agg.bundle.state != BundleState::Running {
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

    /// Withdraws a running bundle.
    ///
    /// # Errors
    /// PERMISSION_DENIED for anyone but its applicant (and for a bundle that does not
    /// exist); FAILED_PRECONDITION for a
    /// finished bundle.
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
        let agg = self.apply(id, |agg, _| agg.bundle.state = BundleState::Withdrawn).await?;
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

/// Records the answer to a step's CreateCase. The case's own events may have been
/// recorded first (the step is then in progress with this case): the answer still brings
/// the result, which events never carry. A failure counts only for a step still pending.
fn record_created(st: &mut step::Model, outcome: &std::result::Result<cpb::Case, Failure>) {
    let pending = st.state == Step::Pending;
    // Withdrawn (or compensated) while its CreateCase was in flight: the case made a
    // moment later is recorded, and withdrawn in turn (see `record_case`).
    let cancelled_before_its_case = st.state == Step::Cancelled && st.case_id.is_empty();
    match outcome {
        Ok(case)
            if pending || cancelled_before_its_case || (st.state == Step::InProgress && st.case_id == case.case_id) =>
        {
            if let Some(cs) = cpb::CaseState::try_from(case.state).ok().and_then(CaseState::from_proto) {
                record_case(st, &case.case_id, cs, case.version, &case.reason_code, Some(&case.result));
            }
        }
        Err(Failure::Retry(why)) if pending => retry_later(st, why),
        Err(Failure::Refused(why)) if pending => {
            st.state = Step::Refused;
            st.reason = why.clone();
        }
        _ => {}
    }
}

/// Records what a department said about a step's case. An older version changes
/// nothing; a result (from the create response) is kept whenever it comes. A step is done
/// only once its result is in: an approval learned from an event (which carries no
/// personal data) leaves it in progress until the driver fetches the case.
fn record_case(
    s: &mut step::Model,
    case_id: &str,
    state: CaseState,
    version: i64,
    reason: &str,
    result: Option<&std::collections::HashMap<String, String>>,
) {
    if let Some(r) = result {
        s.result = r.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<BTreeMap<_, _>>().into();
    }
    if version > s.case_version || s.case_id.is_empty() {
        s.case_id = case_id.to_string();
        s.case_state = state.as_str().into();
        s.case_version = version;
        s.reason = reason.to_string();
    }
    let open_case = CaseState::from_str_name(&s.case_state).is_some_and(|c| !saga::step_of_case(c).is_final());
    if s.state == Step::Cancelled && open_case {
        // A case still open behind a cancelled step (its CreateCase answered, or its event
        // came, after the withdrawal): the driver withdraws it, so no case is orphaned.
        s.state = Step::Cancelling;
        s.attempts = 0;
        s.next_attempt_at = Utc::now();
        return;
    }
    if matches!(s.state, Step::Pending | Step::InProgress) {
        let known = CaseState::from_str_name(&s.case_state).unwrap_or(state);
        s.state = match saga::step_of_case(known) {
            Step::Done if result.is_none() && awaiting_result(s) => Step::InProgress,
            other => other,
        };
    }
}

/// An approved case whose result the coordinator has not fetched yet.
fn awaiting_result(s: &step::Model) -> bool {
    s.result.is_empty()
        && matches!(
            CaseState::from_str_name(&s.case_state),
            Some(CaseState::Approved | CaseState::ApprovedProvisionally)
        )
}
