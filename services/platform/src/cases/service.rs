//! The generic `onething.common.v1.CaseService`: request validation, idempotent intake,
//! clerk actions through the lifecycle, the clock, optimistic versioning, and one
//! `CaseStateChanged` event per transition written to the outbox in the same transaction.

use super::{
    CaseRecord, Department, Refusal,
    record::{ApplicantRecord, MaterialRecord},
};
use crate::reason::Reason;
use crate::{
    auth::Principal,
    authz::{self, COORDINATOR, ROLE_APPROVER, ROLE_CLERK},
    calendar::Calendar,
    cases::record::timestamp,
    catalog::{Catalog, Handling, Matter},
    error::{Error, FieldViolation, Kind, Result},
    events::{Outbox, OutgoingEvent, nats::subject_root},
    lifecycle::{Action, State},
    store::case as row,
};
use chrono::{DateTime, Utc};
use onething_proto::common::{self as pb, case_service_server::CaseService};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// How the coordinator's keys of bundle steps begin (`bundle:<bundle id>:<step id>`);
/// reserved to it.
pub const BUNDLE_KEY_PREFIX: &str = "bundle:";

/// Largest page of ListCases.
pub const MAX_PAGE_SIZE: i32 = 100;
const DEFAULT_PAGE_SIZE: i32 = 20;

/// The case service of one department.
pub struct CaseApi<D> {
    inner: Arc<Inner<D>>,
}

impl<D> Clone for CaseApi<D> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

struct Inner<D> {
    dept: D,
    db: DatabaseConnection,
    outbox: Outbox,
    catalog: Arc<Catalog>,
    calendar: Arc<Calendar>,
    /// Told of every case written, so the case gauges follow within a second.
    changed: tokio::sync::Notify,
}

/// Events of the transitions made while handling one request, written before commit.
type Pending = Vec<OutgoingEvent>;

/// What an action on an existing case needs of its caller (docs/security.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Window intake: staff of this department with the clerk role.
    Intake,
    /// Decision: staff of this department with the approver role.
    Decide,
    /// Materials: the applicant, a clerk of this department, or the coordinator.
    Supply,
    /// Withdrawal: the applicant or the coordinator.
    Withdraw,
    /// Compensation: the coordinator only.
    Cancel,
}

/// An action in progress: its transaction, the loaded case, the version it had.
struct Action_ {
    txn: DatabaseTransaction,
    case: CaseRecord,
    before: (i64, State),
    events: Pending,
}

impl<D: Department> CaseApi<D> {
    /// The case service of `dept` over its database and outbox.
    pub fn new(
        dept: D,
        db: DatabaseConnection,
        outbox: Outbox,
        catalog: Arc<Catalog>,
        calendar: Arc<Calendar>,
    ) -> Self {
        Self { inner: Arc::new(Inner { dept, db, outbox, catalog, calendar, changed: tokio::sync::Notify::new() }) }
    }

    /// The department rules.
    pub fn department(&self) -> &D {
        &self.inner.dept
    }

    /// Creates a case (see the proto for the contract).
    ///
    /// # Errors
    /// PERMISSION_DENIED for a caller who may not apply (or applies as someone else);
    /// INVALID_ARGUMENT for an unknown matter or malformed fields; FAILED_PRECONDITION when
    /// the idempotency key was used for another application; INTERNAL on database failure.
    pub async fn create(&self, p: &Principal, req: pb::CreateCaseRequest) -> Result<CaseRecord> {
        let me = &self.inner;
        let may_create =
            p.kind.is_applicant() || (self.is_staff(p) && p.has_role(ROLE_CLERK)) || p.is_service(COORDINATOR);
        authz::check(may_create, p, "CreateCase", &req.matter_code)?;
        // Only the coordinator puts a case in a bundle: a bundle id or a step's key from
        // anyone else would let them steer someone else's bundle.
        let in_bundle = !req.bundle_id.trim().is_empty() || req.idempotency_key.trim().starts_with(BUNDLE_KEY_PREFIX);
        authz::check(!in_bundle || p.is_service(COORDINATOR), p, "CreateCase", "bundle")?;
        let matter = self.matter_of(&req.matter_code)?;
        let mut violations = Vec::new();
        let key = req.idempotency_key.trim();
        if key.is_empty() || key.len() > 128 {
            violations.push(violation("idempotency_key", "required, at most 128 characters"));
        }
        if req.bundle_id.len() > 128 {
            violations.push(violation("bundle_id", "at most 128 characters"));
        }
        let applicant = ApplicantRecord::validate(req.applicant.as_ref(), &mut violations);
        let materials = MaterialRecord::validate(&req.materials, matter, &mut violations);
        let form: super::Form = req.form.into_iter().map(|(k, v)| (k, v.trim().to_string())).collect();
        me.catalog.check_form(&form, &mut violations);
        violations.extend(me.dept.validate(matter, applicant.as_ref(), &form));
        if let Some(e) = Error::from_violations(Reason::CaseInvalidRequest, violations) {
            return Err(e);
        }
        let Some(applicant) = applicant else {
            return Err(Error::internal(anyhow::anyhow!("applicant validated without a value")));
        };
        // Applicants apply for themselves; clerks and the coordinator for anyone.
        if p.kind.is_applicant() {
            authz::check(authz::is_applicant(p, applicant.kind, &applicant.identifier), p, "CreateCase", &matter.code)?;
        }
        let now = Utc::now();
        let case = CaseRecord {
            id: uuid::Uuid::now_v7().to_string(),
            matter_code: matter.code.clone(),
            department: me.dept.name().to_string(),
            state: State::Submitted,
            applicant,
            form,
            materials,
            missing_materials: Vec::new(),
            reason_code: String::new(),
            reason_text: String::new(),
            result: Default::default(),
            time_unit: matter.time_unit,
            time_limit: matter.time_limit,
            due_at: None,
            paused_since: None,
            due_provisional: false,
            priority: matter.priority,
            idempotency_key: crate::idempotency::scoped(p, key),
            bundle_id: req.bundle_id.trim().to_string(),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        // A department rule that lost a race with a concurrent request (ABORTED: a number
        // taken meanwhile) runs again at once in a fresh transaction, with the case as it
        // was before the attempt; the caller sees a conflict only when it keeps losing.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.create_once(case.clone(), matter, now).await {
                Err(e) if e.kind() == Kind::Aborted && attempt < 5 => continue,
                other => return other,
            }
        }
    }

    /// One attempt of [`Self::create`]: intake, the automatic decision, the row and its
    /// events in one transaction.
    ///
    /// The key is not looked up first (a statement fewer for every new case): a repeated
    /// request (the coordinator retrying, a client resending) does the work again in its
    /// transaction, finds its row already there, undoes everything and answers with the case
    /// it made. A repeat can also fail where the first succeeded (its effect is in place
    /// now), so a failed attempt asks for the key before it reports the failure.
    async fn create_once(&self, mut case: CaseRecord, matter: &Matter, now: DateTime<Utc>) -> Result<CaseRecord> {
        let me = &self.inner;
        let key = case.idempotency_key.clone();
        let txn = crate::db::begin_write(&me.db).await?;
        let events = match self.intake(&txn, &mut case, matter, now).await {
            Ok(events) => events,
            Err(e) => {
                txn.rollback().await?;
                return match find_by_key(&me.db, &key).await? {
                    Some(existing) => same_request(existing, matter, &case.applicant),
                    None => Err(e),
                };
            }
        };
        let inserted = row::Entity::insert(case.to_active())
            .on_conflict_do_nothing_on([row::Column::IdempotencyKey])
            .exec_without_returning(&txn)
            .await?;
        if !matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
            // The key is taken: by an earlier request, or a concurrent one that committed.
            txn.rollback().await?;
            let existing = find_by_key(&me.db, &key)
                .await?
                .ok_or_else(|| Error::internal(anyhow::anyhow!("idempotency key taken by no case")))?;
            return same_request(existing, matter, &case.applicant);
        }
        // The case is new in this transaction: when every event is about it or about
        // something else new in it (a household established), they go to the relay as they
        // are. An event about an older thing (a person's death) may have older ones of its
        // own waiting: then the relay reads the change's events from the outbox, all in the
        // order they were written.
        let own = format!("cases/{}", case.id);
        if events.iter().all(|e| e.ce_subject == own || e.subject_is_new) {
            let handed = me.outbox.enqueue_new(&txn, events).await?;
            txn.commit().await?;
            handed.hand_over();
        } else {
            me.outbox.enqueue_all(&txn, events).await?;
            txn.commit().await?;
            me.outbox.wake();
        }
        me.changed.notify_one();
        crate::telemetry::record_ids(Some(&case.id), Some(&case.bundle_id));
        tracing::info!(case_id = %case.id, matter = %case.matter_code, state = %case.state, "case created");
        Ok(case)
    }

    /// The intake of a new case in `txn`: required materials, the department's conditions,
    /// and for an automatic matter the decision; returns the events to write with its row.
    async fn intake(
        &self,
        txn: &DatabaseTransaction,
        case: &mut CaseRecord,
        matter: &Matter,
        now: DateTime<Utc>,
    ) -> Result<Pending> {
        let me = &self.inner;
        let mut events: Pending = vec![self.event(case, None)];
        let missing: Vec<String> =
            matter.required_materials.iter().filter(|m| !case.has_material(m)).cloned().collect();
        let refusal = if !missing.is_empty() {
            case.missing_materials = missing;
            Some(Refusal::new(Reason::CaseMissingMaterials, "required materials are missing"))
        } else {
            me.dept.check_intake(txn, case).await?
        };
        if let Some(r) = refusal {
            case.reason_code = r.reason_code.into();
            case.reason_text = r.reason_text;
            self.step(case, Action::NotAccept, now, &mut events)?;
        } else {
            (case.time_unit, case.time_limit) = me.dept.time_limit(matter, case);
            me.dept.on_intake(txn, case).await?;
            match matter.handling {
                Handling::Automatic => {
                    self.step(case, Action::Accept, now, &mut events)?;
                    if me.dept.ready(txn, case).await? {
                        self.decide(txn, case, matter, now, &mut events).await?;
                    }
                }
                Handling::AutoAccept => self.step(case, Action::Accept, now, &mut events)?,
                Handling::Review => {}
            }
        }
        Ok(events)
    }

    /// Approves (or provisionally approves, when a 容缺 material is owed) an accepted case
    /// and applies the department's effect.
    async fn decide(
        &self,
        txn: &DatabaseTransaction,
        case: &mut CaseRecord,
        matter: &Matter,
        now: DateTime<Utc>,
        events: &mut Pending,
    ) -> Result<()> {
        let owed: Vec<String> = matter.deferrable_materials.iter().filter(|m| !case.has_material(m)).cloned().collect();
        case.result = self.inner.dept.on_approve(txn, events, case).await?;
        if owed.is_empty() {
            self.step(case, Action::Approve, now, events)
        } else {
            case.missing_materials = owed;
            // The owed material's own deadline; missing it revokes the approval.
            let due = self.inner.calendar.add_working_days(now, matter.owed_within_working_days);
            (case.due_at, case.due_provisional) = (Some(due.at), due.provisional);
            self.step(case, Action::ApproveProvisionally, now, events)
        }
    }

    /// Applies `action` to `case`: lifecycle, clock, version, and its event.
    fn step(&self, case: &mut CaseRecord, action: Action, now: DateTime<Utc>, events: &mut Pending) -> Result<()> {
        let from = case.state;
        let to =
            from.apply(action).map_err(|e| Error::failed_precondition(Reason::CaseIllegalTransition, e.to_string()))?;
        match action {
            Action::Accept => {
                let due = self.inner.calendar.due(now, case.time_unit, case.time_limit);
                case.due_at = Some(due.at);
                case.due_provisional = due.provisional;
            }
            Action::RequestSupplement | Action::StartSpecialProcedure => case.paused_since = Some(now),
            Action::Approve | Action::ApproveProvisionally | Action::CompleteOwed => {
                // A decision ends any waiting or supplement explanation the case carried.
                case.reason_code.clear();
                case.reason_text.clear();
            }
            Action::SupplyMaterials | Action::EndSpecialProcedure => {
                // The time the clock stood still is added back: working days for a
                // working-day limit, clock time for clock hours.
                if let (Some(due), Some(since)) = (case.due_at, case.paused_since.take()) {
                    let moved = self.inner.calendar.extend(due, case.time_unit, since, now);
                    case.due_at = Some(moved.at);
                    case.due_provisional |= moved.provisional;
                }
            }
            _ => {}
        }
        if to.is_final() {
            case.paused_since = None;
        }
        case.state = to;
        case.version += 1;
        case.updated_at = now;
        events.push(self.event(case, Some(from)));
        Ok(())
    }

    fn event(&self, case: &CaseRecord, from: Option<State>) -> OutgoingEvent {
        let msg = pb::CaseStateChanged {
            case_id: case.id.clone(),
            matter_code: case.matter_code.clone(),
            department: case.department.clone(),
            from_state: from.map_or(pb::CaseState::Unspecified, State::to_proto) as i32,
            to_state: case.state.to_proto() as i32,
            reason_code: case.reason_code.clone(),
            missing_materials: case.missing_materials.clone(),
            version: case.version,
            due_time: case.due_at.map(timestamp),
            occur_time: Some(timestamp(case.updated_at)),
            // Only a bundle step's key: the coordinator needs it; anyone else's key is free
            // text of its caller and no subscriber's business.
            idempotency_key: Some(crate::idempotency::client_key(&case.idempotency_key))
                .filter(|k| k.starts_with(BUNDLE_KEY_PREFIX))
                .unwrap_or_default()
                .to_string(),
            bundle_id: case.bundle_id.clone(),
            applicant_kind: case.applicant.kind as i32,
            due_time_provisional: case.due_provisional,
        };
        OutgoingEvent::new(
            format!("{}.v1.case.{}", subject_root(&case.department), case.state.as_str()),
            format!("cases/{}", case.id),
            &msg,
        )
    }

    fn matter_of(&self, code: &str) -> Result<&Matter> {
        let me = &self.inner;
        match me.catalog.get(code) {
            Some(m) if m.department == me.dept.name() => Ok(m),
            Some(_) => Err(Error::invalid_field(
                Reason::CaseWrongDepartment,
                "matter_code",
                format!("not a matter of the {} department", me.dept.name()),
            )),
            None => Err(Error::invalid_field(Reason::CaseUnknownMatter, "matter_code", "not in the catalog")),
        }
    }

    /// Reads one case.
    ///
    /// # Errors
    /// INVALID_ARGUMENT for an empty id, NOT_FOUND for an unknown one, PERMISSION_DENIED
    /// for a caller who may not read it.
    pub async fn get(&self, p: &Principal, case_id: &str) -> Result<CaseRecord> {
        crate::telemetry::record_ids(Some(case_id), None);
        // Who may read cases here at all is decided before the request is looked at.
        let may = self.reads_department(p)
            || p.kind.is_applicant()
            || authz::acting_for(p).is_some()
            || p.is_service(COORDINATOR);
        authz::check(may, p, "GetCase", case_id)?;
        // Nobody outside may learn whether a case exists: a refusal and an unknown id
        // answer alike for whoever may not read this department's cases at all.
        let case =
            authz::hide_missing(load(&self.inner.db, case_id).await, self.reads_department(p), p, "GetCase", case_id)?;
        authz::check(self.can_read(p, &case), p, "GetCase", case_id)?;
        Ok(case)
    }

    fn is_staff(&self, p: &Principal) -> bool {
        p.is_staff_of(self.inner.dept.name())
    }

    fn is_owner(p: &Principal, case: &CaseRecord) -> bool {
        authz::is_applicant(p, case.applicant.kind, &case.applicant.identifier)
    }

    /// Who may read every case of this department: its staff and supervision.
    fn reads_department(&self, p: &Principal) -> bool {
        self.is_staff(p) || authz::is_supervision(p)
    }

    /// Who may read a case: those who read the department, its applicant, a service acting
    /// for its applicant (supervision asking before a rating), and the coordinator for the
    /// cases of its bundles (what its steps need; it lists nothing).
    fn can_read(&self, p: &Principal, case: &CaseRecord) -> bool {
        self.reads_department(p)
            || Self::is_owner(p, case)
            || authz::acting_for(p).is_some_and(|a| Self::is_owner(a, case))
            || (p.is_service(COORDINATOR) && !case.bundle_id.is_empty())
    }

    /// Whether `p` may take an action needing `need` on `case` (`None`: before loading it,
    /// where only the role-based needs can be decided).
    fn may(&self, p: &Principal, need: Need, case: Option<&CaseRecord>) -> bool {
        let clerk = self.is_staff(p) && p.has_role(ROLE_CLERK);
        // The coordinator acts on the cases of its bundles, nothing else.
        let coordinator = p.is_service(COORDINATOR) && case.is_none_or(|c| !c.bundle_id.is_empty());
        let owner = match case {
            Some(c) => Self::is_owner(p, c),
            None => p.kind.is_applicant(),
        };
        match need {
            Need::Intake => clerk,
            Need::Decide => self.is_staff(p) && p.has_role(ROLE_APPROVER),
            Need::Supply => owner || clerk || coordinator,
            Need::Withdraw => owner || coordinator,
            Need::Cancel => coordinator,
        }
    }

    /// Opens the transaction of an action, loads the case, and checks the caller and
    /// `expected_version`. Nothing is written before these checks pass.
    async fn begin_action(
        &self,
        p: &Principal,
        rpc: &str,
        need: Need,
        case_id: &str,
        expected_version: i64,
    ) -> Result<Action_> {
        authz::check(self.may(p, need, None), p, rpc, case_id)?;
        let txn = crate::db::begin_write(&self.inner.db).await?;
        // As in `get`: an unknown id and another's case answer alike to outsiders.
        let case = authz::hide_missing(load(&txn, case_id).await, self.reads_department(p), p, rpc, case_id)?;
        authz::check(self.may(p, need, Some(&case)), p, rpc, case_id)?;
        if expected_version != 0 && expected_version != case.version {
            return Err(Error::new(Kind::Aborted, Reason::CaseVersionMismatch, "the case changed; reload and retry"));
        }
        Ok(Action_ { before: (case.version, case.state), txn, case, events: Pending::new() })
    }

    /// Stores the case if nobody changed it meanwhile, with its events, and commits.
    async fn finish_action(&self, a: Action_) -> Result<CaseRecord> {
        let Action_ { txn, case, before, events } = a;
        self.store_in(&txn, &case, before, events).await?;
        txn.commit().await?;
        self.inner.outbox.wake();
        tracing::info!(case_id = %case.id, state = %case.state, version = case.version, "case updated");
        Ok(case)
    }

    /// Writes `case` (if still at the version of `before`) and its events in `txn`, then
    /// runs the department's [`Department::after_change`].
    async fn store_in(
        &self,
        txn: &DatabaseTransaction,
        case: &CaseRecord,
        (version, from): (i64, State),
        events: Pending,
    ) -> Result<()> {
        let updated = row::Entity::update_many()
            .set(case.to_active())
            .filter(row::Column::Id.eq(case.id.clone()))
            .filter(row::Column::Version.eq(version))
            .exec(txn)
            .await?;
        if updated.rows_affected != 1 {
            return Err(Error::new(
                Kind::Aborted,
                Reason::CaseConcurrentUpdate,
                "the case changed concurrently; retry",
            ));
        }
        self.inner.outbox.enqueue_all(txn, events).await?;
        self.inner.changed.notify_one();
        self.inner.dept.after_change(txn, case, from).await
    }

    /// Changes a case without a lifecycle transition (e.g. a rescheduled booking) inside the
    /// caller's transaction: `f` edits it, the version goes up, no state event is written.
    ///
    /// # Errors
    /// NOT_FOUND, the error `f` returns, or ABORTED on a concurrent change.
    pub async fn amend_in(
        &self,
        txn: &DatabaseTransaction,
        case_id: &str,
        f: impl FnOnce(&mut CaseRecord) -> Result<()>,
    ) -> Result<CaseRecord> {
        let mut case = load(txn, case_id).await?;
        let before = (case.version, case.state);
        f(&mut case)?;
        case.version += 1;
        case.updated_at = Utc::now();
        self.store_in(txn, &case, before, Pending::new()).await?;
        Ok(case)
    }

    /// Reads a case inside the caller's transaction.
    ///
    /// # Errors
    /// NOT_FOUND or a database failure.
    pub async fn load_in(&self, txn: &DatabaseTransaction, case_id: &str) -> Result<CaseRecord> {
        load(txn, case_id).await
    }

    /// Revokes provisional approvals whose owed material is overdue at `now` (each with its
    /// event and reason `CASE_OWED_MATERIAL_OVERDUE`). Returns how many. The runtime calls
    /// it periodically; tests call it with a chosen `now`.
    ///
    /// # Errors
    /// A database failure (cases revoked before it stay revoked).
    pub async fn revoke_overdue(&self, now: DateTime<Utc>) -> Result<usize> {
        let overdue = row::Entity::find()
            .filter(row::Column::Department.eq(self.inner.dept.name()))
            .filter(row::Column::State.eq(State::ApprovedProvisionally.as_str()))
            .filter(row::Column::DueAt.lt(now))
            .all(&self.inner.db)
            .await?;
        let mut revoked = 0;
        for m in overdue {
            let txn = crate::db::begin_write(&self.inner.db).await?;
            let mut case = load(&txn, &m.id).await?;
            if case.state != State::ApprovedProvisionally || case.due_at.is_none_or(|d| d >= now) {
                continue; // Supplied meanwhile.
            }
            let before = (case.version, case.state);
            let mut events = Pending::new();
            case.reason_code = Reason::CaseOwedMaterialOverdue.into();
            case.reason_text = format!("owed materials not supplied in time: {}", case.missing_materials.join(", "));
            self.step(&mut case, Action::Revoke, now, &mut events)?;
            self.store_in(&txn, &case, before, events).await?;
            txn.commit().await?;
            tracing::info!(case_id = %case.id, "provisional approval revoked: owed material overdue");
            revoked += 1;
        }
        if revoked > 0 {
            self.inner.outbox.wake();
        }
        Ok(revoked)
    }

    /// Sets the case gauges of this department: cases by state, and open cases whose
    /// running clock is past the due time at `now`. The runtime calls it periodically.
    ///
    /// # Errors
    /// A database failure.
    pub async fn record_gauges(&self, now: DateTime<Utc>) -> Result<()> {
        use sea_orm::{PaginatorTrait, QuerySelect};
        let dept = self.inner.dept.name();
        let counts: Vec<(String, i64)> = row::Entity::find()
            .select_only()
            .column(row::Column::State)
            .column_as(row::Column::Id.count(), "n")
            .filter(row::Column::Department.eq(dept))
            .group_by(row::Column::State)
            .into_tuple()
            .all(&self.inner.db)
            .await?;
        let overdue = row::Entity::find()
            .filter(row::Column::Department.eq(dept))
            .filter(row::Column::State.is_in(State::ALL.iter().filter(|s| s.is_open()).map(|s| s.as_str())))
            .filter(row::Column::PausedSince.is_null())
            .filter(row::Column::DueAt.lt(now))
            .count(&self.inner.db)
            .await?;
        let m = crate::metrics::metrics();
        // Every state, so a state that emptied reads 0 rather than its last count.
        for state in State::ALL {
            let n = counts.iter().find(|(s, _)| s == state.as_str()).map_or(0, |(_, n)| *n);
            m.cases
                .get_or_create(&crate::metrics::CaseStateLabels {
                    department: dept.into(),
                    state: state.as_str().into(),
                })
                .set(n);
        }
        m.cases_overdue
            .get_or_create(&crate::metrics::DepartmentLabels { department: dept.into() })
            .set(overdue as i64);
        Ok(())
    }

    /// Keeps the case gauges current until `stop`: within five seconds of cases changing (so
    /// a burst costs one refresh; each refresh counts the department's whole table, which
    /// once a second was a full scan per second under load), and every 15 seconds, as the
    /// clock makes cases overdue.
    pub async fn run_gauges(self, stop: tokio_util::sync::CancellationToken) {
        loop {
            if let Err(e) = self.record_gauges(Utc::now()).await {
                tracing::warn!(error = %e, "refreshing the case gauges failed");
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.inner.changed.notified() => {}
                _ = tokio::time::sleep(std::time::Duration::from_secs(15)) => {}
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            }
        }
    }

    /// Decides the accepted cases of automatic matters among `case_ids` that are now
    /// ready, inside the caller's transaction (a consumer's inbox transaction, so the fact
    /// that made them ready and their decision commit together). Returns how many advanced.
    ///
    /// # Errors
    /// A database failure or a refused effect; the caller's transaction should roll back.
    pub async fn advance(&self, txn: &DatabaseTransaction, case_ids: &[String]) -> Result<usize> {
        let mut advanced = 0;
        for id in case_ids {
            let mut case = load(txn, id).await?;
            let Some(matter) = self.inner.catalog.get(&case.matter_code).cloned() else { continue };
            if case.state != State::Accepted
                || matter.handling != Handling::Automatic
                || !self.inner.dept.ready(txn, &case).await?
            {
                continue;
            }
            let before = (case.version, case.state);
            let mut events = Pending::new();
            self.decide(txn, &mut case, &matter, Utc::now(), &mut events).await?;
            self.store_in(txn, &case, before, events).await?;
            tracing::info!(case_id = %case.id, state = %case.state, "waiting case decided");
            advanced += 1;
        }
        Ok(advanced)
    }

    /// Tells the relay that a caller's transaction committed events.
    pub fn wake_outbox(&self) {
        self.inner.outbox.wake();
    }

    /// Runs a synchronous change on a case in one transaction.
    async fn act(
        &self,
        (p, rpc, need): (&Principal, &str, Need),
        case_id: &str,
        expected_version: i64,
        f: impl FnOnce(&Self, &mut CaseRecord, &mut Pending) -> Result<()>,
    ) -> Result<CaseRecord> {
        crate::telemetry::record_ids(Some(case_id), None);
        let mut a = self.begin_action(p, rpc, need, case_id, expected_version).await?;
        f(self, &mut a.case, &mut a.events)?;
        self.finish_action(a).await
    }

    fn catalog_matter(&self, case: &CaseRecord) -> Result<&Matter> {
        self.inner
            .catalog
            .get(&case.matter_code)
            .ok_or_else(|| Error::internal(anyhow::anyhow!("matter {} left the catalog", case.matter_code)))
    }

    /// Lists cases, green-channel first, then newest first.
    ///
    /// # Errors
    /// INVALID_ARGUMENT for a negative page size or a bad page token; PERMISSION_DENIED
    /// for staff of another department.
    pub async fn list(&self, p: &Principal, req: pb::ListCasesRequest) -> Result<(Vec<CaseRecord>, String)> {
        // Staff and supervision see the department's cases; an applicant sees their own;
        // anyone else (the coordinator included) nothing.
        let everything = self.reads_department(p);
        let own = p.applicant().map(|(kind, id)| (crate::idempotency::applicant_kind_name(kind), id.to_string()));
        authz::check(everything || own.is_some(), p, "ListCases", self.inner.dept.name())?;
        if req.page_size < 0 {
            return Err(Error::invalid_field(Reason::CaseInvalidRequest, "page_size", "must not be negative"));
        }
        let size = if req.page_size == 0 { DEFAULT_PAGE_SIZE } else { req.page_size.min(MAX_PAGE_SIZE) };
        let offset: u64 = if req.page_token.is_empty() {
            0
        } else {
            req.page_token.strip_prefix("o").and_then(|n| n.parse().ok()).ok_or_else(|| {
                Error::invalid_field(Reason::CaseInvalidRequest, "page_token", "not a token from this API")
            })?
        };
        let mut q = row::Entity::find()
            .filter(row::Column::Department.eq(self.inner.dept.name()))
            .order_by_desc(row::Column::Priority)
            .order_by_desc(row::Column::CreatedAt)
            .order_by_desc(row::Column::Id);
        if let Some(state) = pb::CaseState::try_from(req.state).ok().and_then(State::from_proto) {
            q = q.filter(row::Column::State.eq(state.as_str()));
        }
        if !req.matter_code.is_empty() {
            q = q.filter(row::Column::MatterCode.eq(req.matter_code));
        }
        if !everything && let Some((kind, id)) = own {
            q = q.filter(row::Column::ApplicantKind.eq(kind)).filter(row::Column::ApplicantIdentifier.eq(id));
        }
        let rows = q.offset(offset).limit(size as u64 + 1).all(&self.inner.db).await?;
        let more = rows.len() > size as usize;
        let cases = rows.into_iter().take(size as usize).map(CaseRecord::from_model).collect::<Result<Vec<_>>>()?;
        let next = if more { format!("o{}", offset + size as u64) } else { String::new() };
        Ok((cases, next))
    }
}

/// The case made by the request with this idempotency key, if any.
async fn find_by_key<C: sea_orm::ConnectionTrait>(db: &C, key: &str) -> Result<Option<CaseRecord>> {
    row::Entity::find()
        .filter(row::Column::IdempotencyKey.eq(key))
        .one(db)
        .await?
        .map(CaseRecord::from_model)
        .transpose()
}

async fn load<C: sea_orm::ConnectionTrait>(db: &C, case_id: &str) -> Result<CaseRecord> {
    if case_id.trim().is_empty() {
        return Err(Error::invalid_field(Reason::CaseInvalidRequest, "case_id", "required"));
    }
    let m = row::Entity::find_by_id(case_id.trim().to_string())
        .one(db)
        .await?
        .ok_or_else(|| Error::not_found(Reason::CaseNotFound, "no such case"))?;
    CaseRecord::from_model(m)
}

/// A retried create returns the first case only when it is the same matter for the same
/// applicant; anything else reuses a key and learns nothing about the other case.
fn same_request(existing: CaseRecord, matter: &Matter, applicant: &ApplicantRecord) -> Result<CaseRecord> {
    if existing.matter_code == matter.code
        && existing.applicant.kind == applicant.kind
        && existing.applicant.identifier == applicant.identifier
    {
        Ok(existing)
    } else {
        Err(Error::failed_precondition(
            Reason::CaseIdempotencyKeyReused,
            "the idempotency key was already used for another application",
        ))
    }
}

fn violation(field: &str, description: &str) -> FieldViolation {
    FieldViolation { field: field.to_string(), description: description.to_string() }
}

fn check_reason_code(code: &str) -> Result<()> {
    let ok = !code.is_empty()
        && code.len() <= 64
        && code.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_field(Reason::CaseInvalidRequest, "reason_code", "UPPER_SNAKE_CASE, at most 64"))
    }
}

fn reply(case: CaseRecord) -> Option<pb::Case> {
    Some(case.to_proto())
}

/// The case as `p` may see it: masked for a reader without the personal-data role.
fn shown(p: &Principal, case: &CaseRecord) -> pb::Case {
    if authz::sees_personal_data(p) { case.to_proto() } else { super::record::masked(case.to_proto()) }
}

#[tonic::async_trait]
impl<D: Department> CaseService for CaseApi<D> {
    async fn create_case(&self, r: Request<pb::CreateCaseRequest>) -> Result<Response<pb::CreateCaseResponse>, Status> {
        let p = authz::principal(&r)?;
        let case = self.create(&p, r.into_inner()).await?;
        Ok(Response::new(pb::CreateCaseResponse { case: reply(case) }))
    }

    async fn get_case(&self, r: Request<pb::GetCaseRequest>) -> Result<Response<pb::GetCaseResponse>, Status> {
        let p = authz::principal(&r)?;
        let case = self.get(&p, &r.into_inner().case_id).await?;
        Ok(Response::new(pb::GetCaseResponse { case: Some(shown(&p, &case)) }))
    }

    async fn list_cases(&self, r: Request<pb::ListCasesRequest>) -> Result<Response<pb::ListCasesResponse>, Status> {
        let p = authz::principal(&r)?;
        let (cases, next_page_token) = self.list(&p, r.into_inner()).await?;
        Ok(Response::new(pb::ListCasesResponse {
            cases: cases.iter().map(|c| shown(&p, c)).collect(),
            next_page_token,
        }))
    }

    async fn accept_case(&self, r: Request<pb::AcceptCaseRequest>) -> Result<Response<pb::AcceptCaseResponse>, Status> {
        let p = authz::principal(&r)?;
        let r = r.into_inner();
        let case = self
            .act((&p, "AcceptCase", Need::Intake), &r.case_id, r.expected_version, |me, case, ev| {
                me.step(case, Action::Accept, Utc::now(), ev)
            })
            .await?;
        Ok(Response::new(pb::AcceptCaseResponse { case: reply(case) }))
    }

    async fn request_supplement(
        &self,
        r: Request<pb::RequestSupplementRequest>,
    ) -> Result<Response<pb::RequestSupplementResponse>, Status> {
        let p = authz::principal(&r)?;
        let r = r.into_inner();
        let case = self
            .act((&p, "RequestSupplement", Need::Intake), &r.case_id, r.expected_version, |me, case, ev| {
                let matter = me.catalog_matter(case)?;
                let mut bad = Vec::new();
                if r.material_codes.is_empty() {
                    bad.push(violation("material_codes", "name at least one material"));
                }
                for (i, code) in r.material_codes.iter().enumerate() {
                    if !matter.knows_material(code) {
                        bad.push(violation(&format!("material_codes[{i}]"), "not a material of this matter"));
                    }
                }
                if let Some(e) = Error::from_violations(Reason::CaseInvalidRequest, bad) {
                    return Err(e);
                }
                case.missing_materials = r.material_codes.clone();
                case.reason_text = r.reason_text.chars().take(500).collect();
                me.step(case, Action::RequestSupplement, Utc::now(), ev)
            })
            .await?;
        Ok(Response::new(pb::RequestSupplementResponse { case: reply(case) }))
    }

    async fn start_special_procedure(
        &self,
        r: Request<pb::StartSpecialProcedureRequest>,
    ) -> Result<Response<pb::StartSpecialProcedureResponse>, Status> {
        let p = authz::principal(&r)?;
        let r = r.into_inner();
        let case = self
            .act((&p, "StartSpecialProcedure", Need::Intake), &r.case_id, r.expected_version, |me, case, ev| {
                let procedure = r.procedure.trim();
                if procedure.is_empty() || procedure.len() > 64 {
                    return Err(Error::invalid_field(
                        Reason::CaseInvalidRequest,
                        "procedure",
                        "required, at most 64 characters",
                    ));
                }
                case.reason_text = format!("special procedure: {procedure}");
                me.step(case, Action::StartSpecialProcedure, Utc::now(), ev)
            })
            .await?;
        Ok(Response::new(pb::StartSpecialProcedureResponse { case: reply(case) }))
    }

    async fn end_special_procedure(
        &self,
        r: Request<pb::EndSpecialProcedureRequest>,
    ) -> Result<Response<pb::EndSpecialProcedureResponse>, Status> {
        let p = authz::principal(&r)?;
        let r = r.into_inner();
        let case = self
            .act((&p, "EndSpecialProcedure", Need::Intake), &r.case_id, r.expected_version, |me, case, ev| {
                case.reason_text = r.outcome.chars().take(500).collect();
                me.step(case, Action::EndSpecialProcedure, Utc::now(), ev)
            })
            .await?;
        Ok(Response::new(pb::EndSpecialProcedureResponse { case: reply(case) }))
    }

    async fn supply_materials(
        &self,
        r: Request<pb::SupplyMaterialsRequest>,
    ) -> Result<Response<pb::SupplyMaterialsResponse>, Status> {
        let p = authz::principal(&r)?;
        let r = r.into_inner();
        let case = self
            .act((&p, "SupplyMaterials", Need::Supply), &r.case_id, r.expected_version, |me, case, ev| {
                let matter = me.catalog_matter(case)?;
                let mut bad = Vec::new();
                if r.materials.is_empty() {
                    bad.push(violation("materials", "required"));
                }
                let supplied = MaterialRecord::validate(&r.materials, matter, &mut bad);
                if let Some(e) = Error::from_violations(Reason::CaseInvalidRequest, bad) {
                    return Err(e);
                }
                for m in supplied {
                    case.materials.retain(|x| x.code != m.code);
                    case.materials.push(m);
                }
                let still: Vec<String> =
                    case.missing_materials.iter().filter(|c| !case.has_material(c)).cloned().collect();
                let action = match case.state {
                    State::AwaitingSupplement => Action::SupplyMaterials,
                    State::ApprovedProvisionally => Action::CompleteOwed,
                    _ => {
                        return Err(Error::failed_precondition(
                            Reason::CaseNotAwaitingMaterials,
                            format!("a {} case does not take materials", case.state),
                        ));
                    }
                };
                if !still.is_empty() {
                    return Err(Error::invalid_field(
                        Reason::CaseMaterialsStillMissing,
                        "materials",
                        format!("still missing: {}", still.join(", ")),
                    ));
                }
                case.missing_materials.clear();
                me.step(case, action, Utc::now(), ev)
            })
            .await?;
        Ok(Response::new(pb::SupplyMaterialsResponse { case: reply(case) }))
    }

    async fn approve_case(
        &self,
        r: Request<pb::ApproveCaseRequest>,
    ) -> Result<Response<pb::ApproveCaseResponse>, Status> {
        let p = authz::principal(&r)?;
        let r = r.into_inner();
        let mut a = self.begin_action(&p, "ApproveCase", Need::Decide, &r.case_id, r.expected_version).await?;
        if a.case.state == State::Accepted {
            let matter = self.catalog_matter(&a.case)?.clone();
            self.decide(&a.txn, &mut a.case, &matter, Utc::now(), &mut a.events).await?;
        } else {
            // Refused by the lifecycle before the department's effect runs.
            self.step(&mut a.case, Action::Approve, Utc::now(), &mut a.events)?;
        }
        let case = self.finish_action(a).await?;
        Ok(Response::new(pb::ApproveCaseResponse { case: reply(case) }))
    }

    async fn reject_case(&self, r: Request<pb::RejectCaseRequest>) -> Result<Response<pb::RejectCaseResponse>, Status> {
        let p = authz::principal(&r)?;
        let r = r.into_inner();
        let case = self
            .act((&p, "RejectCase", Need::Decide), &r.case_id, r.expected_version, |me, case, ev| {
                check_reason_code(&r.reason_code)?;
                case.reason_code = r.reason_code.clone();
                case.reason_text = r.reason_text.chars().take(500).collect();
                me.step(case, Action::Reject, Utc::now(), ev)
            })
            .await?;
        Ok(Response::new(pb::RejectCaseResponse { case: reply(case) }))
    }

    async fn withdraw_case(
        &self,
        r: Request<pb::WithdrawCaseRequest>,
    ) -> Result<Response<pb::WithdrawCaseResponse>, Status> {
        let p = authz::principal(&r)?;
        let r = r.into_inner();
        let case = self
            .act((&p, "WithdrawCase", Need::Withdraw), &r.case_id, 0, |me, case, ev| {
                case.reason_code = Reason::WithdrawnByApplicant.into();
                case.reason_text = r.reason_text.chars().take(500).collect();
                me.step(case, Action::Withdraw, Utc::now(), ev)
            })
            .await?;
        Ok(Response::new(pb::WithdrawCaseResponse { case: reply(case) }))
    }

    async fn cancel_case(&self, r: Request<pb::CancelCaseRequest>) -> Result<Response<pb::CancelCaseResponse>, Status> {
        let p = authz::principal(&r)?;
        let r = r.into_inner();
        let case = self
            .act((&p, "CancelCase", Need::Cancel), &r.case_id, 0, |me, case, ev| {
                check_reason_code(&r.reason_code)?;
                case.reason_code = r.reason_code.clone();
                me.step(case, Action::Cancel, Utc::now(), ev)
            })
            .await?;
        Ok(Response::new(pb::CancelCaseResponse { case: reply(case) }))
    }
}
