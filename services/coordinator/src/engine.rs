//! The saga engine: submits a bundle (validated in full first, so bad input creates nothing
//! anywhere), creates each step's case at its department with an idempotency key derived
//! from bundle and step, follows the departments' case events, starts dependent steps,
//! withdraws what must not stand alone when a required step is refused, and retries a
//! department that is down with backoff while the bundle waits. State lives in the
//! coordinator's database under the bundle's version, so any replica can drive any bundle.

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

type Client = CaseServiceClient<InterceptedService<TracedChannel, PeerIdentity>>;

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

/// Takes bundle `id` off the driving list if its drive ends without releasing it (a panic,
/// a cancelled task); a drive that ends normally releases it itself, under its lock.
struct Driving<'a>(&'a Inner, &'a str, bool);

impl Drop for Driving<'_> {
    fn drop(&mut self) {
        if self.2 {
            self.0.driving.lock().expect("driving list").remove(self.1);
        }
    }
}

/// The idempotency key of a step's case.
pub fn step_key(bundle_id: &str, step_id: &str) -> String {
    format!("bundle:{bundle_id}:{step_id}")
}

fn violation(field: impl Into<String>, description: impl Into<String>) -> FieldViolation {
    FieldViolation { field: field.into(), description: description.into() }
}

fn retry_after(attempts: i32) -> chrono::Duration {
    let ms = 500u64.saturating_mul(1 << attempts.clamp(0, 6)).min(30_000);
    chrono::Duration::milliseconds(i64::try_from(ms).unwrap_or(30_000))
}

impl Engine {
    /// An engine over the coordinator's database, calling departments at `peers` as `identity`.
    pub fn new(
        db: DatabaseConnection,
        catalog: Arc<Catalog>,
        calendar: Arc<Calendar>,
        outbox: Outbox,
        identity: ServiceIdentity,
        peers: Peers,
        changes: crate::watch::Changes,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                catalog,
                calendar,
                outbox,
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

    fn client(&self, department: &str) -> Result<Client> {
        let channel = self
            .inner
            .peers
            .channel(department)
            .ok_or_else(|| Error::internal(anyhow::anyhow!("no address for department {department}")))?;
        Ok(CaseServiceClient::new(InterceptedService::new(channel, self.inner.identity.to(department))))
    }

    /// Submits a bundle (see the proto for the contract).
    ///
    /// # Errors
    /// INVALID_ARGUMENT with field violations; PERMISSION_DENIED for someone applying in
    /// another's name; FAILED_PRECONDITION when the key was used for another application.
    pub async fn submit(&self, p: &Principal, r: pb::SubmitBundleRequest) -> Result<Aggregate> {
        // A window clerk of any department (一窗受理); supervision decides nothing.
        let clerk = p.kind == onething_platform::auth::SubjectKind::Staff
            && p.has_role(onething_platform::authz::ROLE_CLERK)
            && !onething_platform::authz::is_supervision(p);
        // Who may submit at all is decided before the request is looked at.
        onething_platform::authz::check(p.kind.is_applicant() || clerk, p, "SubmitBundle", &r.code)?;
        let def = self
            .inner
            .catalog
            .bundle(&r.code)
            .ok_or_else(|| Error::invalid_field("COORDINATOR_UNKNOWN_BUNDLE", "code", "not a bundle of the catalog"))?
            .clone();
        let mut bad = Vec::new();
        let applicant = ApplicantRecord::validate(r.applicant.as_ref(), &mut bad);
        let key = r.idempotency_key.trim().to_string();
        if key.is_empty() || key.len() > 128 {
            bad.push(violation("idempotency_key", "required, at most 128 characters"));
        }
        for (i, s) in r.optional_steps.iter().enumerate() {
            if !def.step(s).is_some_and(|d| d.optional) {
                bad.push(violation(format!("optional_steps[{i}]"), "not an optional step of this bundle"));
            }
        }
        let included: Vec<String> = def
            .steps
            .iter()
            .filter(|s| !s.optional || r.optional_steps.contains(&s.id))
            .map(|s| s.id.clone())
            .collect();
        if included.is_empty() {
            bad.push(violation("optional_steps", "choose at least one step"));
        }
        let form: BTreeMap<String, String> = r.form.iter().map(|(k, v)| (k.clone(), v.trim().to_string())).collect();
        // The catalog's fields, as for a case's form: a bundle's form becomes its steps' cases.
        self.inner.catalog.check_form(&form, &mut bad);
        for st in def.steps.iter().filter(|s| included.contains(&s.id)) {
            for source in st.fields.values().filter(|v| !v.starts_with('=')) {
                if form.get(source).is_none_or(|v| v.is_empty())
                    && !bad.iter().any(|b: &FieldViolation| b.field == format!("form.{source}"))
                {
                    bad.push(violation(format!("form.{source}"), format!("required by step {}", st.id)));
                }
            }
        }
        let matters: Vec<_> = def
            .steps
            .iter()
            .filter(|s| included.contains(&s.id))
            .filter_map(|s| self.inner.catalog.get(&s.matter))
            .collect();
        for (st, m) in def.steps.iter().filter(|s| included.contains(&s.id)).zip(&matters) {
            for required in &m.required_materials {
                if !r.materials.iter().any(|x| &x.code == required)
                    && !bad.iter().any(|b: &FieldViolation| b.description.contains(required.as_str()))
                {
                    bad.push(violation("materials", format!("{required} is required by step {}", st.id)));
                }
            }
        }
        let known = |code: &str| matters.iter().any(|mt| mt.knows_material(code));
        MaterialRecord::validate_with(&r.materials, known, "belongs to no step of this bundle", &mut bad);
        if let Some(e) = Error::from_violations("COORDINATOR_INVALID_REQUEST", bad) {
            return Err(e);
        }
        let Some(applicant) = applicant else {
            return Err(Error::internal(anyhow::anyhow!("applicant validated without a value")));
        };
        // Applicants apply for themselves; window clerks of any department for anyone.
        let own = onething_platform::authz::is_applicant(p, applicant.kind, &applicant.identifier);
        onething_platform::authz::check(own || clerk, p, "SubmitBundle", &def.code)?;
        // The key is the caller's: another caller's same key finds nothing of this one.
        let key = onething_platform::idempotency::scoped(p, &key);
        let now = Utc::now();
        let id = uuid::Uuid::now_v7().to_string();
        let materials: Vec<MaterialRecord> = r
            .materials
            .iter()
            .map(|m| MaterialRecord { code: m.code.clone(), document_uri: m.document_uri.trim().into() })
            .collect();
        let due = saga::due(&def, &included, &self.inner.catalog, &self.inner.calendar, now);
        let kind = onething_platform::idempotency::applicant_kind_name(applicant.kind);
        let b = bundle::Model {
            id: id.clone(),
            code: def.code.clone(),
            state: BundleState::Running.as_str().into(),
            applicant_kind: kind.into(),
            applicant_identifier: applicant.identifier.clone(),
            applicant_name: applicant.name.clone(),
            applicant_phone: applicant.phone.clone(),
            form: serde_json::to_string(&form).map_err(Error::internal)?,
            materials: serde_json::to_string(&materials).map_err(Error::internal)?,
            idempotency_key: key.clone(),
            due_at: due.at,
            version: 1,
            created_at: now,
            updated_at: now,
            traceparent: telemetry::current_traceparent(),
        };
        let steps: Vec<step::Model> = def
            .steps
            .iter()
            .filter(|s| included.contains(&s.id))
            .map(|s| step::Model {
                bundle_id: id.clone(),
                step_id: s.id.clone(),
                matter_code: s.matter.clone(),
                department: s.matter.split('.').next().unwrap_or_default().to_string(),
                state: if s.after.iter().any(|a| included.contains(a)) { Step::Blocked } else { Step::Pending }
                    .as_str()
                    .into(),
                case_id: String::new(),
                case_state: String::new(),
                case_version: 0,
                reason: String::new(),
                result: "{}".into(),
                attempts: 0,
                next_attempt_at: now,
            })
            .collect();
        let agg = Aggregate { bundle: b, steps };
        let txn = begin_write(&self.inner.db).await?;
        // A repeated submit is answered with the bundle it made. The key is not looked up
        // first: the insert that finds it taken (also by a concurrent submit that committed)
        // is the lookup, one statement fewer for every new bundle.
        let inserted = bundle::Entity::insert(bundle::ActiveModel::from(agg.bundle.clone()).reset_all())
            .on_conflict_do_nothing_on([bundle::Column::IdempotencyKey])
            .exec_without_returning(&txn)
            .await?;
        if !matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
            txn.rollback().await?;
            let existing = bundle::Entity::find()
                .filter(bundle::Column::IdempotencyKey.eq(key.clone()))
                .one(&self.inner.db)
                .await?
                .ok_or_else(|| Error::internal(anyhow::anyhow!("idempotency key taken by no bundle")))?;
            if existing.code == def.code
                && existing.form == agg.bundle.form
                && existing.applicant_kind == kind
                && existing.applicant_identifier == applicant.identifier
            {
                return self.load(&self.inner.db, &existing.id).await;
            }
            return Err(Error::failed_precondition(
                "COORDINATOR_IDEMPOTENCY_KEY_REUSED",
                "the key was used for another application",
            ));
        }
        step::Entity::insert_many(agg.steps.iter().map(|s| step::ActiveModel::from(s.clone()).reset_all()))
            .exec_without_returning(&txn)
            .await?;
        // The bundle is new in this transaction: its event goes to the relay as it is.
        let handed = self.inner.outbox.enqueue_new(&txn, vec![Self::bundle_event(&agg, "submitted")]).await?;
        txn.commit().await?;
        handed.hand_over();
        tracing::info!(bundle_id = %id, code = %def.code, "bundle submitted");
        self.spawn_drive(agg.clone());
        Ok(agg)
    }

    fn bundle_event(agg: &Aggregate, happened: &str) -> OutgoingEvent {
        let state = match BundleState::parse(&agg.bundle.state) {
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
                occur_time: Some(timestamp(Utc::now())),
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
            q.one(db).await?.ok_or_else(|| Error::not_found("COORDINATOR_BUNDLE_NOT_FOUND", "no such bundle"))?;
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
        let before = (agg.bundle.version, agg.bundle.state.clone(), agg.steps.clone());
        f(&mut agg, &def);
        let mut views: Vec<StepView> = agg
            .steps
            .iter()
            .map(|s| StepView { id: s.step_id.clone(), state: Step::parse(&s.state), has_case: !s.case_id.is_empty() })
            .collect();
        let next = saga::evaluate(&def, BundleState::parse(&agg.bundle.state), &mut views);
        for (s, v) in agg.steps.iter_mut().zip(&views) {
            if Step::parse(&s.state) != v.state {
                s.state = v.state.as_str().into();
                if v.state == Step::Pending {
                    s.next_attempt_at = Utc::now();
                }
            }
        }
        agg.bundle.state = next.as_str().into();
        if before.1 == agg.bundle.state && before.2 == agg.steps {
            return Ok((agg, false));
        }
        agg.bundle.version += 1;
        agg.bundle.updated_at = Utc::now();
        let mut am = bundle::ActiveModel::from(agg.bundle.clone()).reset_all();
        am.id = sea_orm::ActiveValue::Unchanged(agg.bundle.id.clone());
        let n = bundle::Entity::update_many()
            .set(am)
            .filter(bundle::Column::Id.eq(agg.bundle.id.clone()))
            .filter(bundle::Column::Version.eq(before.0))
            .exec(txn)
            .await?;
        if n.rows_affected != 1 {
            return Err(Error::new(Kind::Aborted, "COORDINATOR_CONCURRENT_UPDATE", "the bundle changed concurrently"));
        }
        // The changed steps in one statement: an upsert whose rows all exist, so it updates.
        let changed: Vec<step::ActiveModel> = agg
            .steps
            .iter()
            .zip(&before.2)
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
        if before.1 != agg.bundle.state {
            self.inner.outbox.enqueue(txn, Self::bundle_event(&agg, &agg.bundle.state)).await?;
            if BundleState::parse(&agg.bundle.state) != BundleState::Running {
                // Counted before the commit: a commit that then fails counts a bundle that
                // will finish again later (rare, and only ever an extra sample).
                let took = (agg.bundle.updated_at - agg.bundle.created_at).num_milliseconds().max(0) as f64 / 1000.0;
                onething_platform::metrics::metrics()
                    .bundle_duration
                    .get_or_create(&onething_platform::metrics::BundleLabels {
                        bundle: agg.bundle.code.clone(),
                        outcome: agg.bundle.state.clone(),
                    })
                    .observe(took);
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

    /// A department reported a case of one of our bundles (inside the consumer's inbox
    /// transaction, so the event and its effect commit together). The event counts only
    /// when it comes from `department`'s stream, names that department, carries the step's
    /// key, and concerns the case the step's CreateCase created: an event of another
    /// department, or for another case, moves nothing.
    ///
    /// # Errors
    /// A database failure or a concurrent change: the event is redelivered.
    pub async fn on_case_event(
        &self,
        txn: &DatabaseTransaction,
        department: &str,
        e: &cpb::CaseStateChanged,
    ) -> Result<()> {
        let Some(step_id) = Self::step_of(department, e) else { return Ok(()) };
        if bundle::Entity::find_by_id(e.bundle_id.clone()).one(txn).await?.is_none() {
            return Ok(()); // Not ours (another coordinator deployment, or a test's own case).
        }
        let state = cpb::CaseState::try_from(e.to_state).ok().and_then(CaseState::from_proto);
        let (id, version, reason) = (e.case_id.clone(), e.version, e.reason_code.clone());
        let (_, changed) = self
            .apply_in(txn, &e.bundle_id, |agg, _| {
                let step = agg.steps.iter_mut().find(|s| s.step_id == step_id && Self::is_its_case(s, department, &id));
                if let (Some(s), Some(state)) = (step, state) {
                    record_case(s, &id, state, version, &reason, None);
                }
            })
            .await?;
        // Most events only confirm what the create call already told the driver; only a
        // change can give the driver work.
        if changed {
            self.inner.wake.notify_one();
        }
        Ok(())
    }

    /// The step an event of `department`'s stream speaks of: its key is the coordinator's
    /// step key and it names the stream's department.
    fn step_of<'e>(department: &str, e: &'e cpb::CaseStateChanged) -> Option<&'e str> {
        if e.department != department || e.case_id.is_empty() {
            return None;
        }
        e.idempotency_key.strip_prefix(&format!("bundle:{}:", e.bundle_id))
    }

    /// Whether `case_id` can be the case the step's CreateCase created in `department`: the
    /// one recorded, or any while none is recorded yet (the answer may still be on its way,
    /// and the event must not be lost). No one else's case can pass for it: only the
    /// coordinator may create a case with a step's key, and one key makes one case.
    fn is_its_case(s: &step::Model, department: &str, case_id: &str) -> bool {
        s.department == department && (s.case_id.is_empty() || s.case_id == case_id)
    }

    /// Whether a department's case event is already reflected in its step (the same case
    /// at this version or a later one) or concerns no step of ours: handling it would
    /// change nothing, now or later, since versions only go up. An event for a step whose
    /// CreateCase is still in flight is not known: the case may have moved on past what the
    /// answer will say (accepted, then approved by the department's own consumer), so it is
    /// applied, and the older answer then changes nothing but the result.
    ///
    /// # Errors
    /// A database failure.
    pub async fn knows_case_event(
        &self,
        db: &DatabaseConnection,
        department: &str,
        e: &cpb::CaseStateChanged,
    ) -> Result<bool> {
        let Some(step_id) = Self::step_of(department, e) else { return Ok(true) };
        let key = (e.bundle_id.clone(), step_id.to_string());
        let seen = |case_id: &str, version: i64| case_id == e.case_id && version >= e.version;
        if let Some((case_id, version)) = self.inner.recorded.lock().expect("recorded cases").get(&key)
            && seen(case_id, *version)
        {
            return Ok(true);
        }
        let known = step::Entity::find_by_id(key).one(db).await?;
        // Another case than the step's (or none recorded yet) would change nothing either.
        Ok(known.is_none_or(|s| !Self::is_its_case(&s, department, &e.case_id) || seen(&s.case_id, s.case_version)))
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

    /// Drives bundle `id` in the background, in the trace of `traceparent`.
    /// Drives a bundle this process has just written, starting from `agg` as committed
    /// (its first round reads nothing).
    /// With every drive slot taken, the driver's next sweep drives it instead.
    fn spawn_drive(&self, agg: Aggregate) {
        let Ok(slot) = self.inner.drive_slots.clone().try_acquire_owned() else {
            self.inner.wake.notify_one();
            return;
        };
        let engine = self.clone();
        tokio::spawn(async move {
            let id = agg.bundle.id.clone();
            let traceparent = agg.bundle.traceparent.clone();
            engine.drive_traced(&id, Some(traceparent), Some(agg)).await;
            drop(slot);
        });
    }

    /// Advances one bundle: creates due pending steps, withdraws steps being cancelled,
    /// and fetches the results of steps that finished through events. Errors are logged;
    /// the driver comes back. A bundle already being driven in this process is not driven
    /// twice at once: the running drive goes round once more instead, so a wake-up is never
    /// lost and a department is not asked for the same case twice by one replica.
    pub async fn drive(&self, id: &str) {
        self.drive_traced(id, None, None).await;
    }

    /// [`Self::drive`] with the bundle's trace context when the caller has it already
    /// (`None`: read it from the bundle), and the bundle as just committed, if the caller has it.
    async fn drive_traced(&self, id: &str, traceparent: Option<Option<String>>, first: Option<Aggregate>) {
        if self.claim(id) {
            self.drive_claimed(id, traceparent, first).await;
        }
    }

    /// Claims bundle `id` for a drive in this process: `true` when none is running (the
    /// caller drives it, then [`Self::drive_claimed`] releases it), else `false`, and the
    /// running drive goes round once more. One lock for both, so no wake-up falls between.
    fn claim(&self, id: &str) -> bool {
        let mut driving = self.inner.driving.lock().expect("driving list");
        if let Some(again) = driving.get_mut(id) {
            *again = true;
            return false;
        }
        driving.insert(id.to_string(), false);
        true
    }

    /// Drives bundle `id`, claimed by [`Self::claim`], round after round while wake-ups came
    /// meanwhile; releases the claim under the lock that sees the last wake-up.
    async fn drive_claimed(&self, id: &str, traceparent: Option<Option<String>>, mut first: Option<Aggregate>) {
        let mut claim = Driving(&self.inner, id, true);
        // Whoever wakes the driver (the submit, an event, the sweeper), its calls and events
        // belong to the bundle's trace.
        let parent = match traceparent {
            Some(known) => known,
            None => bundle::Entity::find_by_id(id).one(&self.inner.db).await.ok().flatten().and_then(|b| b.traceparent),
        };
        loop {
            let span = tracing::info_span!("bundle.drive", bundle_id = %id);
            telemetry::set_remote_parent(&span, parent.as_deref());
            tracing::Instrument::instrument(self.drive_rounds(id, first.take()), span).await;
            let mut driving = self.inner.driving.lock().expect("driving list");
            match driving.get_mut(id) {
                Some(again) if *again => *again = false,
                _ => {
                    driving.remove(id);
                    claim.2 = false;
                    break;
                }
            }
        }
    }

    async fn drive_rounds(&self, id: &str, mut first: Option<Aggregate>) {
        for _ in 0..50 {
            match self.drive_once(id, first.take()).await {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(bundle_id = %id, error = %e, "driving the bundle failed; retrying later");
                    break;
                }
            }
        }
    }

    /// One round; `known` is the bundle as this process just committed it (else it is read).
    async fn drive_once(&self, id: &str, known: Option<Aggregate>) -> Result<bool> {
        let agg = match known {
            Some(agg) => agg,
            None => self.load(&self.inner.db, id).await?,
        };
        let now = Utc::now();
        let state = BundleState::parse(&agg.bundle.state);
        // The steps due for their case are created at their departments at once and the
        // answers recorded together: one round trip's time and one transaction, not one per
        // step. A step that does not stand alone waits while another required step is still
        // pending, so a refusal there withdraws it before any case exists (as one by one).
        let def = self.inner.catalog.bundle(&agg.bundle.code);
        let pending = |s: &step::Model| Step::parse(&s.state) == Step::Pending;
        let required = |s: &step::Model| def.and_then(|d| d.step(&s.step_id)).is_none_or(|d| !d.optional);
        let stands_alone = |s: &step::Model| def.and_then(|d| d.step(&s.step_id)).is_some_and(|d| d.stands_alone);
        let mut due: Vec<&step::Model> = agg
            .steps
            .iter()
            .filter(|s| pending(s) && s.next_attempt_at <= now && state == BundleState::Running)
            .collect();
        let at_once: Vec<&step::Model> = due
            .iter()
            .copied()
            .filter(|s| {
                stands_alone(s) || !agg.steps.iter().any(|o| o.step_id != s.step_id && pending(o) && required(o))
            })
            .collect();
        if !at_once.is_empty() {
            due = at_once;
        } else {
            due.truncate(1);
        }
        if !due.is_empty() {
            let answers = futures::future::join_all(due.iter().map(|s| self.create_case(&agg, s))).await;
            let outcomes: Vec<(String, std::result::Result<cpb::Case, Failure>)> =
                due.iter().map(|s| s.step_id.clone()).zip(answers).collect();
            let agg = self
                .apply(id, |agg, _| {
                    for (sid, outcome) in &outcomes {
                        if let Some(st) = agg.steps.iter_mut().find(|x| &x.step_id == sid) {
                            record_created(st, outcome);
                        }
                    }
                })
                .await?;
            // The next pass sees what this one changed; a bundle whose steps all ended has none.
            return Ok(agg.steps.iter().any(|s| !Step::parse(&s.state).is_final()));
        }
        for s in &agg.steps {
            match Step::parse(&s.state) {
                Step::Cancelling if s.next_attempt_at <= now => {
                    let outcome = self.cancel_case(s, state).await;
                    let sid = s.step_id.clone();
                    self.apply(id, |agg, _| {
                        let Some(st) = agg.steps.iter_mut().find(|x| x.step_id == sid) else { return };
                        match &outcome {
                            Ok(case) => {
                                let cs = cpb::CaseState::try_from(case.state).ok().and_then(CaseState::from_proto);
                                st.case_state = cs.map(|c| c.as_str().to_string()).unwrap_or_default();
                                st.case_version = case.version;
                                st.state = match cs.map(saga::step_of_case) {
                                    Some(Step::Done) => Step::Done,
                                    Some(Step::Refused) => Step::Refused,
                                    _ => Step::Cancelled,
                                }
                                .as_str()
                                .into();
                            }
                            Err(why) => {
                                st.attempts += 1;
                                st.next_attempt_at = Utc::now() + retry_after(st.attempts);
                                st.reason = why.clone();
                            }
                        }
                    })
                    .await?;
                    return Ok(true);
                }
                Step::InProgress if awaiting_result(s) && s.next_attempt_at <= now => {
                    // Finished through an event: fetch the case's result for the applicant.
                    let fetched = match self.client(&s.department) {
                        Ok(mut c) => self
                            .guarded(&s.department, c.get_case(cpb::GetCaseRequest { case_id: s.case_id.clone() }))
                            .await
                            .map_err(|e| format!("{} unavailable; retrying ({:?})", s.department, e.code())),
                        Err(e) => Err(e.to_string()),
                    };
                    let r = match fetched {
                        Ok(r) => r,
                        Err(why) => {
                            // Tried again later, waiting longer each time.
                            let sid = s.step_id.clone();
                            self.apply(id, |agg, _| {
                                if let Some(st) = agg.steps.iter_mut().find(|x| x.step_id == sid) {
                                    st.attempts += 1;
                                    st.next_attempt_at = Utc::now() + retry_after(st.attempts);
                                    st.reason = why.clone();
                                }
                            })
                            .await?;
                            return Ok(false);
                        }
                    };
                    let result = r.into_inner().case.map(|c| c.result).unwrap_or_default();
                    let json =
                        serde_json::to_string(&result.into_iter().collect::<BTreeMap<_, _>>()).unwrap_or_default();
                    let sid = s.step_id.clone();
                    self.apply(id, |agg, _| {
                        if let Some(st) = agg.steps.iter_mut().find(|x| x.step_id == sid)
                            && awaiting_result(st)
                        {
                            st.result = json.clone();
                            st.state = Step::Done.as_str().into();
                        }
                    })
                    .await?;
                    return Ok(true);
                }
                _ => {}
            }
        }
        Ok(false)
    }

    async fn create_case(&self, agg: &Aggregate, s: &step::Model) -> std::result::Result<cpb::Case, Failure> {
        let def = self.inner.catalog.bundle(&agg.bundle.code).and_then(|d| d.step(&s.step_id)).cloned();
        let matter = self.inner.catalog.get(&s.matter_code).cloned();
        let (Some(def), Some(matter)) = (def, matter) else {
            return Err(Failure::Refused("step left the catalog".into()));
        };
        let form: BTreeMap<String, String> = serde_json::from_str(&agg.bundle.form).unwrap_or_default();
        let materials: Vec<MaterialRecord> = serde_json::from_str(&agg.bundle.materials).unwrap_or_default();
        let request = cpb::CreateCaseRequest {
            matter_code: s.matter_code.clone(),
            applicant: Some(cpb::Applicant {
                kind: match agg.bundle.applicant_kind.as_str() {
                    "enterprise" => cpb::ApplicantKind::Enterprise,
                    "foreigner" => cpb::ApplicantKind::Foreigner,
                    _ => cpb::ApplicantKind::Citizen,
                } as i32,
                identifier: agg.bundle.applicant_identifier.clone(),
                name: agg.bundle.applicant_name.clone(),
                phone: agg.bundle.applicant_phone.clone(),
            }),
            form: def
                .fields
                .iter()
                .map(|(to, from)| {
                    let value = from
                        .strip_prefix('=')
                        .map_or_else(|| form.get(from).cloned().unwrap_or_default(), str::to_string);
                    (to.clone(), value)
                })
                .collect(),
            materials: materials
                .iter()
                .filter(|m| matter.knows_material(&m.code))
                .map(|m| cpb::Material { code: m.code.clone(), document_uri: m.document_uri.clone() })
                .collect(),
            idempotency_key: step_key(&agg.bundle.id, &s.step_id),
            bundle_id: agg.bundle.id.clone(),
        };
        let mut client = self.client(&s.department).map_err(|e| Failure::Retry(format!("{e}")))?;
        match self.guarded(&s.department, client.create_case(request)).await {
            Ok(r) => r.into_inner().case.ok_or_else(|| Failure::Retry("the department returned no case".into())),
            Err(status) => Err(Failure::of(&status, &s.department)),
        }
    }

    /// Makes `call` to `department` through its breaker and bulkhead: refused at once
    /// (UNAVAILABLE) while the breaker is open, or after a moment when the department has
    /// its share of calls in flight; its outcome recorded otherwise.
    async fn guarded<T>(
        &self,
        department: &str,
        call: impl Future<Output = std::result::Result<T, tonic::Status>>,
    ) -> std::result::Result<T, tonic::Status> {
        if !self.inner.breakers.allow(department) {
            return Err(tonic::Status::unavailable(format!("{department} paused after failing calls")));
        }
        let Some(_room) = self.inner.bulkheads.enter(department).await else {
            return Err(tonic::Status::unavailable(format!("{department} has {DEPARTMENT_CALLS} calls in flight")));
        };
        let answer = call.await;
        self.inner
            .breakers
            .record(department, answer.as_ref().err().is_some_and(|s| crate::breaker::is_down(s.code())));
        answer
    }

    async fn cancel_case(&self, s: &step::Model, state: BundleState) -> std::result::Result<cpb::Case, String> {
        let mut client = self.client(&s.department).map_err(|e| e.to_string())?;
        let result = if state == BundleState::Withdrawn {
            let request =
                cpb::WithdrawCaseRequest { case_id: s.case_id.clone(), reason_text: "bundle withdrawn".into() };
            self.guarded(&s.department, client.withdraw_case(request)).await.map(|r| r.into_inner().case)
        } else {
            let request =
                cpb::CancelCaseRequest { case_id: s.case_id.clone(), reason_code: "BUNDLE_STEP_REFUSED".into() };
            self.guarded(&s.department, client.cancel_case(request)).await.map(|r| r.into_inner().case)
        };
        match result {
            Ok(Some(c)) => Ok(c),
            Ok(None) => Err("the department returned no case".into()),
            // Already finished: take the case as it is.
            Err(st) if st.code() == tonic::Code::FailedPrecondition => client
                .get_case(cpb::GetCaseRequest { case_id: s.case_id.clone() })
                .await
                .ok()
                .and_then(|r| r.into_inner().case)
                .ok_or_else(|| "cannot read the case".into()),
            Err(st) => Err(format!("{} unavailable; retrying ({:?})", s.department, st.code())),
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
        if BundleState::parse(&agg.bundle.state) != BundleState::Running {
            return Err(Error::failed_precondition("COORDINATOR_BUNDLE_FINISHED", "the bundle is no longer running"));
        }
        let agg = self.apply(id, |agg, _| agg.bundle.state = BundleState::Withdrawn.as_str().into()).await?;
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
                .filter(bundle::Column::ApplicantKind.eq(onething_platform::idempotency::applicant_kind_name(kind)))
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

    /// The driver: every half second (or when an event arrived), every bundle with a step
    /// due for a (re)try or a withdrawal is driven. Runs until `stop`.
    pub async fn run_driver(self, stop: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            let due = step::Entity::find()
                .filter(step::Column::State.is_in([
                    Step::Pending.as_str(),
                    Step::Cancelling.as_str(),
                    Step::InProgress.as_str(),
                ]))
                .filter(step::Column::NextAttemptAt.lte(Utc::now()))
                .all(&self.inner.db)
                .await;
            let Ok(due) = due else { continue };
            let mut ids: Vec<String> = due
                .into_iter()
                .filter(|s| Step::parse(&s.state) != Step::InProgress || awaiting_result(s))
                .map(|s| s.bundle_id)
                .collect();
            ids.sort();
            ids.dedup();
            // Each bundle in a task of its own, a bounded number at once: a bundle waiting
            // on a slow department holds one slot, not the sweep; with every slot taken,
            // the sweep ends and the next one drives the rest. A bundle still being driven
            // takes no slot (its drive goes round once more instead).
            for id in ids {
                let Ok(slot) = self.inner.drive_slots.clone().try_acquire_owned() else { break };
                if !self.claim(&id) {
                    continue;
                }
                let engine = self.clone();
                tokio::spawn(async move {
                    engine.drive_claimed(&id, None, None).await;
                    drop(slot);
                });
            }
        }
    }
}

/// Why a step's case could not be created.
enum Failure {
    /// The department is down or failed: try again later.
    Retry(String),
    /// The department refused the request.
    Refused(String),
}

impl Failure {
    fn of(status: &tonic::Status, department: &str) -> Self {
        use tonic::Code as C;
        match status.code() {
            C::Unavailable | C::DeadlineExceeded | C::Unknown | C::Aborted | C::Internal | C::Cancelled => {
                Failure::Retry(format!("{department} unavailable; retrying"))
            }
            _ => {
                let reason = status.get_error_details().error_info().map(|i| i.reason.clone()).unwrap_or_default();
                Failure::Refused(format!("{reason}: {}", status.message()))
            }
        }
    }
}

/// Records the answer to a step's CreateCase. The case's own events may have been
/// recorded first (the step is then in progress with this case): the answer still brings
/// the result, which events never carry. A failure counts only for a step still pending.
fn record_created(st: &mut step::Model, outcome: &std::result::Result<cpb::Case, Failure>) {
    let pending = Step::parse(&st.state) == Step::Pending;
    // Withdrawn (or compensated) while its CreateCase was in flight: the case made a
    // moment later is recorded, and withdrawn in turn (see `record_case`).
    let cancelled_before_its_case = Step::parse(&st.state) == Step::Cancelled && st.case_id.is_empty();
    match outcome {
        Ok(case)
            if pending
                || cancelled_before_its_case
                || (Step::parse(&st.state) == Step::InProgress && st.case_id == case.case_id) =>
        {
            if let Some(cs) = cpb::CaseState::try_from(case.state).ok().and_then(CaseState::from_proto) {
                record_case(st, &case.case_id, cs, case.version, &case.reason_code, Some(&case.result));
            }
        }
        Err(Failure::Retry(why)) if pending => {
            st.attempts += 1;
            st.next_attempt_at = Utc::now() + retry_after(st.attempts);
            st.reason = why.clone();
        }
        Err(Failure::Refused(why)) if pending => {
            st.state = Step::Refused.as_str().into();
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
        s.result = serde_json::to_string(&r.iter().collect::<BTreeMap<_, _>>()).unwrap_or_else(|_| "{}".into());
    }
    if version > s.case_version || s.case_id.is_empty() {
        s.case_id = case_id.to_string();
        s.case_state = state.as_str().into();
        s.case_version = version;
        s.reason = reason.to_string();
    }
    let open_case = CaseState::from_str_name(&s.case_state).is_some_and(|c| !saga::step_of_case(c).is_final());
    if Step::parse(&s.state) == Step::Cancelled && open_case {
        // A case still open behind a cancelled step (its CreateCase answered, or its event
        // came, after the withdrawal): the driver withdraws it, so no case is orphaned.
        s.state = Step::Cancelling.as_str().into();
        s.attempts = 0;
        s.next_attempt_at = Utc::now();
        return;
    }
    if matches!(Step::parse(&s.state), Step::Pending | Step::InProgress) {
        let known = CaseState::from_str_name(&s.case_state).unwrap_or(state);
        s.state = match saga::step_of_case(known) {
            Step::Done if result.is_none() && awaiting_result(s) => Step::InProgress,
            other => other,
        }
        .as_str()
        .into();
    }
}

/// An approved case whose result the coordinator has not fetched yet.
fn awaiting_result(s: &step::Model) -> bool {
    s.result == "{}"
        && matches!(
            CaseState::from_str_name(&s.case_state),
            Some(CaseState::Approved | CaseState::ApprovedProvisionally)
        )
}
