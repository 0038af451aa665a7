//! Supervision's operations: deadlines and 督办 notices, complaints, 好差评, the 办不成事
//! window, KPIs per department and period, and random inspections. Its own facts are
//! written with their events in one transaction (and projected again from its stream).

use crate::{
    domain,
    projection::{Arrival, window},
    store::{complaint, drawn, rating, request, tracked, unresolved},
};
use chrono::{DateTime, Utc};
use onething_platform::reason::Reason;
use onething_platform::{
    auth::{Principal, ServiceIdentity, SubjectKind},
    authz,
    calendar::Calendar,
    cases::timestamp,
    db::begin_write,
    error::{Error, Kind, Result},
    events::{Outbox, OutgoingEvent},
    grpc::Peers,
};
use onething_proto::{common as cpb, coordinator as copb, supervision as pb};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    sea_query::Expr,
};
use std::{collections::BTreeMap, sync::Arc};

/// Supervision.
#[derive(Clone)]
pub struct Supervision {
    db: DatabaseConnection,
    outbox: Outbox,
    calendar: Arc<Calendar>,
    peers: Peers,
    identity: ServiceIdentity,
}

fn staff(p: &Principal) -> bool {
    authz::is_supervision(p)
}

fn deadline(m: &tracked::Model, at: DateTime<Utc>) -> pb::DeadlineState {
    match m.due_at {
        Some(due) if !m.closed && !m.paused => domain::deadline_state(due, at),
        _ => pb::DeadlineState::Normal,
    }
}

fn item(m: &tracked::Model, at: DateTime<Utc>) -> pb::TrackedItem {
    pb::TrackedItem {
        kind: m.kind.clone(),
        id: m.id.clone(),
        department: m.department.clone(),
        code: m.code.clone(),
        due_time: m.due_at.map(timestamp),
        deadline_state: deadline(m, at) as i32,
        paused: m.paused,
    }
}

/// The API message of a rating.
pub fn rating_pb(m: &rating::Model) -> pb::Rating {
    pb::Rating {
        rating_id: m.id.clone(),
        target_kind: m.target_kind.clone(),
        target_id: m.target_id.clone(),
        department: m.department.clone(),
        score: u32::try_from(m.score).unwrap_or(0),
        bad: m.score <= 2,
        fix_due: m.fix_due.map(timestamp),
        fix_note: m.fix_note.clone(),
    }
}

/// The API message of a complaint as `reader` sees it: staff notes for supervision staff
/// only (a complainant sees the step and its deadline, not the investigators' notes).
pub fn complaint_pb(m: &complaint::Model, reader: &Principal) -> pb::Complaint {
    pb::Complaint {
        complaint_id: m.id.clone(),
        channel: pb::Channel::from_str_name(&m.channel).unwrap_or(pb::Channel::Unspecified) as i32,
        department: m.department.clone(),
        summary: m.summary.clone(),
        step: pb::ComplaintStep::from_str_name(&m.step).unwrap_or(pb::ComplaintStep::Unspecified) as i32,
        next_step_due: m.next_step_due.map(timestamp),
        notes: if staff(reader) { serde_json::from_str(&m.notes).unwrap_or_default() } else { Vec::new() },
    }
}

/// The API message of a window item.
pub fn unresolved_pb(m: &unresolved::Model) -> pb::UnresolvedItem {
    pb::UnresolvedItem {
        item_id: m.id.clone(),
        source: m.source.clone(),
        ref_id: m.ref_id.clone(),
        department: m.department.clone(),
        tier: m.tier.clone(),
        response_due: Some(timestamp(m.response_due)),
        resolved: m.resolved,
        reason: m.reason.clone(),
    }
}

/// The KPI row of department `d`, made when missing.
fn row<'a>(by: &'a mut BTreeMap<String, pb::DepartmentKpi>, d: &str) -> &'a mut pb::DepartmentKpi {
    by.entry(d.to_string()).or_insert_with(|| pb::DepartmentKpi { department: d.into(), ..Default::default() })
}

impl Supervision {
    /// Supervision over its database, outbox and calendar; `peers` are the departments and
    /// the coordinator it asks about ownership, as `identity` acting for the rater.
    pub fn new(
        db: DatabaseConnection,
        outbox: Outbox,
        calendar: Arc<Calendar>,
        peers: Peers,
        identity: ServiceIdentity,
    ) -> Self {
        Self { db, outbox, calendar, peers, identity }
    }

    /// Cases and bundles in warning or overdue at `at`.
    ///
    /// # Errors
    /// PERMISSION_DENIED for anyone but supervision staff.
    pub async fn deadlines(&self, p: &Principal, at: DateTime<Utc>) -> Result<Vec<pb::TrackedItem>> {
        authz::check(staff(p), p, "ListDeadlines", "tracked")?;
        self.late(at).await
    }

    /// Items in warning or overdue at `at`, oldest due first.
    ///
    /// # Errors
    /// A database failure.
    pub async fn late(&self, at: DateTime<Utc>) -> Result<Vec<pb::TrackedItem>> {
        let open = tracked::Entity::find()
            .filter(tracked::Column::Closed.eq(false))
            .order_by_asc(tracked::Column::DueAt)
            .all(&self.db)
            .await?;
        Ok(open.iter().filter(|m| deadline(m, at) != pb::DeadlineState::Normal).map(|m| item(m, at)).collect())
    }

    /// Issues a 督办 notice for every item that turned overdue by `now` and has none yet.
    /// Returns how many. Runs every minute; tests call it with a chosen `now`.
    ///
    /// # Errors
    /// A database failure.
    pub async fn issue_notices(&self, now: DateTime<Utc>) -> Result<usize> {
        let due = tracked::Entity::find()
            .filter(tracked::Column::Closed.eq(false))
            .filter(tracked::Column::Paused.eq(false))
            .filter(tracked::Column::NoticeSent.eq(false))
            .filter(tracked::Column::DueAt.lt(now))
            .all(&self.db)
            .await?;
        let mut n = 0;
        for m in due {
            let txn = begin_write(&self.db).await?;
            // Claimed by one conditional update: of two replicas (or two runs) reaching the
            // same item at once, the second finds it claimed (PostgreSQL re-checks the
            // condition once the first commits) and issues nothing.
            let claimed = tracked::Entity::update_many()
                .col_expr(tracked::Column::NoticeSent, Expr::value(true))
                .filter(tracked::Column::Kind.eq(m.kind.clone()))
                .filter(tracked::Column::Id.eq(m.id.clone()))
                .filter(tracked::Column::NoticeSent.eq(false))
                .filter(tracked::Column::Closed.eq(false))
                .filter(tracked::Column::Paused.eq(false))
                .filter(tracked::Column::DueAt.lt(now))
                .exec(&txn)
                .await?
                .rows_affected;
            if claimed == 0 {
                continue;
            }
            let Some(fresh) = tracked::Entity::find_by_id((m.kind.clone(), m.id.clone())).one(&txn).await? else {
                continue;
            };
            window(
                &txn,
                &self.calendar,
                Arrival {
                    source: "case_overdue",
                    ref_id: &fresh.id,
                    department: &fresh.department,
                    tier: "district",
                    reason: "overdue: 督办 notice issued",
                    at: now,
                },
            )
            .await
            .map_err(Error::internal)?;
            self.outbox
                .enqueue(
                    &txn,
                    OutgoingEvent::new(
                        "onething.supervision.v1.notice.issued",
                        format!("{}s/{}", fresh.kind, fresh.id),
                        &pb::NoticeIssued {
                            kind: fresh.kind.clone(),
                            id: fresh.id.clone(),
                            department: fresh.department.clone(),
                            due_time: fresh.due_at.map(timestamp),
                            occur_time: Some(timestamp(now)),
                        },
                    ),
                )
                .await?;
            txn.commit().await?;
            tracing::info!(kind = %fresh.kind, id = %fresh.id, department = %fresh.department, "督办 notice issued");
            n += 1;
        }
        if n > 0 {
            self.outbox.wake();
        }
        Ok(n)
    }

    /// Receives a complaint; the same caller's same key answers with the complaint it made.
    ///
    /// # Errors
    /// PERMISSION_DENIED for anyone but applicants (online) and supervision staff;
    /// INVALID_ARGUMENT for an unknown channel, an empty summary or key.
    pub async fn submit_complaint(&self, p: &Principal, r: pb::SubmitComplaintRequest) -> Result<complaint::Model> {
        // Who may complain at all is decided before the request is looked at.
        authz::check(staff(p) || p.kind.is_applicant(), p, "SubmitComplaint", "complaints")?;
        let channel = pb::Channel::try_from(r.channel).unwrap_or(pb::Channel::Unspecified);
        let mut bad = Vec::new();
        let v = |f: &str, d: &str| onething_platform::error::FieldViolation { field: f.into(), description: d.into() };
        if channel == pb::Channel::Unspecified {
            bad.push(v("channel", "CHANNEL_110, CHANNEL_12389, CHANNEL_CONSULTATION_LINE or CHANNEL_ONLINE"));
        }
        if r.summary.trim().is_empty() || r.summary.chars().count() > 2000 {
            bad.push(v("summary", "required, at most 2000 characters"));
        }
        // A department of the mesh, not free text: an unbounded one made an event too large
        // to publish, which held up the stream behind it.
        if !crate::projection::STREAMS.contains(&r.department.trim()) || r.department.trim() == "coordinator" {
            bad.push(v("department", "household, exit_entry, vehicle, liaison or supervision"));
        }
        if r.idempotency_key.trim().is_empty() || r.idempotency_key.len() > 128 {
            bad.push(v("idempotency_key", "required, at most 128 characters"));
        }
        if let Some(e) = Error::from_violations(Reason::SupervisionInvalidRequest, bad) {
            return Err(e);
        }
        // Online complaints come from citizens and enterprises; phone ones are entered by staff.
        authz::check(
            staff(p) || (channel == pb::Channel::Online && p.kind.is_applicant()),
            p,
            "SubmitComplaint",
            "complaints",
        )?;
        // The key is the caller's: another's same key finds nothing of theirs.
        let key = onething_platform::idempotency::scoped(p, &r.idempotency_key);
        if let Some(m) =
            complaint::Entity::find().filter(complaint::Column::IdempotencyKey.eq(key.clone())).one(&self.db).await?
        {
            let same = m.channel == channel.as_str_name()
                && m.department == r.department.trim()
                && m.summary == r.summary.trim();
            if !same {
                return Err(Error::failed_precondition(
                    Reason::SupervisionIdempotencyKeyReused,
                    "the key was used for another complaint",
                ));
            }
            return Ok(m);
        }
        let now = Utc::now();
        let m = complaint::Model {
            id: format!("TS{}", now.format("%Y%m%d%H%M%S%f")),
            idempotency_key: key,
            channel: channel.as_str_name().into(),
            department: r.department.trim().into(),
            summary: r.summary.trim().into(),
            step: pb::ComplaintStep::Accepted.as_str_name().into(),
            next_step_due: Some(self.calendar.add_working_days(now, domain::FIRST_STEP_DAYS).at),
            notes: "[]".into(),
            created_at: now,
        };
        let txn = begin_write(&self.db).await?;
        complaint::Entity::insert(complaint::ActiveModel::from(m.clone()).reset_all())
            .exec_without_returning(&txn)
            .await?;
        self.outbox.enqueue(&txn, Self::complaint_event(&m, "accepted")).await?;
        txn.commit().await?;
        self.outbox.wake();
        Ok(m)
    }

    fn complaint_event(m: &complaint::Model, step: &str) -> OutgoingEvent {
        OutgoingEvent::new(
            format!("onething.supervision.v1.complaint.{step}"),
            format!("complaints/{}", m.id),
            &pb::ComplaintChanged {
                complaint_id: m.id.clone(),
                channel: pb::Channel::from_str_name(&m.channel).unwrap_or(pb::Channel::Unspecified) as i32,
                department: m.department.clone(),
                step: pb::ComplaintStep::from_str_name(&m.step).unwrap_or(pb::ComplaintStep::Unspecified) as i32,
                next_step_due: m.next_step_due.map(timestamp),
                occur_time: Some(timestamp(Utc::now())),
            },
        )
    }

    /// Moves a complaint to its next step (受理 → 核查 → 处置 → 反馈 → 整改).
    ///
    /// # Errors
    /// PERMISSION_DENIED for anyone but supervision staff; FAILED_PRECONDITION out of order.
    pub async fn advance_complaint(&self, p: &Principal, r: pb::AdvanceComplaintRequest) -> Result<complaint::Model> {
        authz::check(staff(p), p, "AdvanceComplaint", &r.complaint_id)?;
        if r.note.trim().is_empty() {
            return Err(Error::invalid_field(Reason::SupervisionInvalidRequest, "note", "required"));
        }
        let txn = begin_write(&self.db).await?;
        let m = complaint::Entity::find_by_id(r.complaint_id.clone())
            .one(&txn)
            .await?
            .ok_or_else(|| Error::not_found(Reason::SupervisionComplaintNotFound, "no such complaint"))?;
        let current = pb::ComplaintStep::from_str_name(&m.step).unwrap_or(pb::ComplaintStep::Unspecified);
        let wanted = pb::ComplaintStep::try_from(r.step).unwrap_or(pb::ComplaintStep::Unspecified);
        if domain::next_step(current).map(|(s, _)| s) != Some(wanted) {
            return Err(Error::failed_precondition(
                Reason::SupervisionComplaintOutOfOrder,
                "steps follow 受理 → 核查 → 处置 → 反馈 → 整改",
            ));
        }
        let mut notes: Vec<String> = serde_json::from_str(&m.notes).unwrap_or_default();
        notes.push(format!(
            "{}: {}",
            wanted.as_str_name().trim_start_matches("COMPLAINT_STEP_").to_lowercase(),
            r.note.trim()
        ));
        let mut next = m.clone();
        next.step = wanted.as_str_name().into();
        next.notes = serde_json::to_string(&notes).unwrap_or_else(|_| "[]".into());
        next.next_step_due =
            domain::next_step(wanted).map(|(_, days)| self.calendar.add_working_days(Utc::now(), days).at);
        complaint::ActiveModel::from(next.clone()).reset_all().update(&txn).await?;
        let step = wanted.as_str_name().trim_start_matches("COMPLAINT_STEP_").to_lowercase();
        self.outbox.enqueue(&txn, Self::complaint_event(&next, &step)).await?;
        txn.commit().await?;
        self.outbox.wake();
        Ok(next)
    }

    /// Rates a finished case or bundle. Ownership is the owning service's call, asked by
    /// supervision acting for the rater (its own token, the rater as the actor): the rater's
    /// token never leaves supervision.
    ///
    /// # Errors
    /// INVALID_ARGUMENT outside 1–5 or for an unknown target kind; PERMISSION_DENIED for
    /// someone else's case or a non-applicant; FAILED_PRECONDITION when it is not finished;
    /// ALREADY_EXISTS when it was rated.
    pub async fn rate(&self, p: &Principal, r: pb::RateRequest) -> Result<rating::Model> {
        // Who may rate at all is decided before the request is looked at.
        authz::check(p.kind.is_applicant(), p, "Rate", &r.target_id)?;
        if !(1..=5).contains(&r.score) {
            return Err(Error::invalid_field(Reason::SupervisionInvalidRating, "score", "from 1 to 5"));
        }
        let kind = r.target_kind.as_str();
        if !matches!(kind, "case" | "bundle") {
            return Err(Error::invalid_field(Reason::SupervisionInvalidRequest, "target_kind", "case or bundle"));
        }
        if r.target_id.trim().is_empty() || r.target_id.len() > 128 {
            return Err(Error::invalid_field(
                Reason::SupervisionInvalidRequest,
                "target_id",
                "required, at most 128 characters",
            ));
        }
        let department = if kind == "bundle" { "coordinator".to_string() } else { r.department.replace('-', "_") };
        self.ask_owner(kind, &department, &r.target_id, p).await?;
        let finished = tracked::Entity::find_by_id((kind.to_string(), r.target_id.clone()))
            .one(&self.db)
            .await?
            .is_some_and(|t| t.closed);
        if !finished {
            return Err(Error::failed_precondition(
                Reason::SupervisionNotFinished,
                "only a finished case or bundle is rated",
            ));
        }
        let exists = rating::Entity::find()
            .filter(rating::Column::TargetKind.eq(kind))
            .filter(rating::Column::TargetId.eq(r.target_id.clone()))
            .one(&self.db)
            .await?;
        if exists.is_some() {
            return Err(Error::new(Kind::AlreadyExists, Reason::SupervisionAlreadyRated, "it was rated already"));
        }
        let now = Utc::now();
        let m = rating::Model {
            id: uuid::Uuid::now_v7().to_string(),
            target_kind: kind.into(),
            target_id: r.target_id.clone(),
            department: department.clone(),
            score: i32::try_from(r.score).unwrap_or(0),
            fix_due: (r.score <= 2).then(|| self.calendar.add_working_days(now, domain::FIX_WITHIN_WORKING_DAYS).at),
            fix_note: String::new(),
            created_at: now,
        };
        let txn = begin_write(&self.db).await?;
        rating::Entity::insert(rating::ActiveModel::from(m.clone()).reset_all()).exec_without_returning(&txn).await?;
        self.outbox.enqueue(&txn, Self::rating_event(&m, false, "submitted")).await?;
        txn.commit().await?;
        self.outbox.wake();
        Ok(m)
    }

    fn rating_event(m: &rating::Model, fixed: bool, happened: &str) -> OutgoingEvent {
        OutgoingEvent::new(
            format!("onething.supervision.v1.rating.{happened}"),
            format!("ratings/{}", m.id),
            &pb::RatingChanged {
                rating_id: m.id.clone(),
                target_kind: m.target_kind.clone(),
                target_id: m.target_id.clone(),
                department: m.department.clone(),
                score: u32::try_from(m.score).unwrap_or(0),
                fixed,
                occur_time: Some(timestamp(m.created_at)),
            },
        )
    }

    async fn ask_owner(&self, kind: &str, department: &str, id: &str, rater: &Principal) -> Result<()> {
        let channel = self.peers.channel(department).ok_or_else(|| {
            Error::invalid_field(Reason::SupervisionUnknownDepartment, "department", "no such department")
        })?;
        let on_behalf = self.identity.acting_for(rater, department).map_err(Error::internal)?;
        let intercepted = tonic::service::interceptor::InterceptedService::new(channel, on_behalf);
        let answer = if kind == "bundle" {
            copb::bundle_service_client::BundleServiceClient::new(intercepted)
                .get_bundle(copb::GetBundleRequest { bundle_id: id.into() })
                .await
                .map(|_| ())
        } else {
            cpb::case_service_client::CaseServiceClient::new(intercepted)
                .get_case(cpb::GetCaseRequest { case_id: id.into() })
                .await
                .map(|_| ())
        };
        answer.map_err(|s| match s.code() {
            tonic::Code::PermissionDenied => {
                Error::new(Kind::PermissionDenied, Reason::AuthPermissionDenied, "not your case")
            }
            tonic::Code::NotFound => Error::not_found(Reason::SupervisionTargetNotFound, "no such case or bundle"),
            _ => Error::new(
                Kind::Unavailable,
                Reason::SupervisionOwnerUnavailable,
                "the owning service did not answer; retry",
            ),
        })
    }

    /// Records the follow-up and fix of a bad review.
    ///
    /// # Errors
    /// PERMISSION_DENIED for anyone but supervision or the department's staff;
    /// FAILED_PRECONDITION for a good rating or one fixed already.
    pub async fn record_fix(&self, p: &Principal, r: pb::RecordFixRequest) -> Result<rating::Model> {
        // Staff only, before anything is looked up; which department's, once it is.
        authz::check(p.kind == SubjectKind::Staff, p, "RecordFix", &r.rating_id)?;
        let txn = begin_write(&self.db).await?;
        let found = rating::Entity::find_by_id(r.rating_id.clone()).one(&txn).await?;
        let found = found.ok_or_else(|| Error::not_found(Reason::SupervisionRatingNotFound, "no such rating"));
        // Staff of a department learn nothing of ratings that do not exist.
        let m = authz::hide_missing(found, staff(p), p, "RecordFix", &r.rating_id)?;
        authz::check(
            // A case's department fixes its bad reviews; a bundle's (stored under the
            // coordinator, which has no staff) only supervision.
            staff(p) || (p.kind == SubjectKind::Staff && m.target_kind == "case" && p.dept == m.department),
            p,
            "RecordFix",
            &r.rating_id,
        )?;
        if m.score > 2 || !m.fix_note.is_empty() {
            return Err(Error::failed_precondition(
                Reason::SupervisionNothingToFix,
                "only an unfixed bad review takes a fix",
            ));
        }
        if r.note.trim().is_empty() {
            return Err(Error::invalid_field(Reason::SupervisionInvalidRequest, "note", "required"));
        }
        let mut next = m.clone();
        next.fix_note = r.note.trim().into();
        rating::ActiveModel::from(next.clone()).reset_all().update(&txn).await?;
        self.outbox.enqueue(&txn, Self::rating_event(&next, true, "fixed")).await?;
        txn.commit().await?;
        self.outbox.wake();
        Ok(next)
    }

    /// The 办不成事 window.
    ///
    /// # Errors
    /// PERMISSION_DENIED for anyone but supervision staff.
    pub async fn unresolved(&self, p: &Principal, include_resolved: bool) -> Result<Vec<unresolved::Model>> {
        authz::check(staff(p), p, "ListUnresolved", "unresolved")?;
        let mut q = unresolved::Entity::find().order_by_asc(unresolved::Column::ResponseDue);
        if !include_resolved {
            q = q.filter(unresolved::Column::Resolved.eq(false));
        }
        Ok(q.all(&self.db).await?)
    }

    /// Resolves a window item.
    ///
    /// # Errors
    /// PERMISSION_DENIED for anyone but supervision staff; NOT_FOUND.
    pub async fn resolve(&self, p: &Principal, id: &str) -> Result<unresolved::Model> {
        authz::check(staff(p), p, "ResolveItem", id)?;
        let txn = begin_write(&self.db).await?;
        let m = unresolved::Entity::find_by_id(id.to_string())
            .one(&txn)
            .await?
            .ok_or_else(|| Error::not_found(Reason::SupervisionItemNotFound, "no such item"))?;
        let mut am: unresolved::ActiveModel = m.clone().into();
        am.resolved = Set(true);
        let m = am.update(&txn).await?;
        self.outbox
            .enqueue(
                &txn,
                OutgoingEvent::new(
                    "onething.supervision.v1.unresolved.resolved",
                    format!("unresolved/{}", m.id),
                    &pb::UnresolvedResolved {
                        source: m.source.clone(),
                        ref_id: m.ref_id.clone(),
                        occur_time: Some(timestamp(Utc::now())),
                    },
                ),
            )
            .await?;
        txn.commit().await?;
        self.outbox.wake();
        Ok(m)
    }

    /// KPIs per department over `[from, to)`, overdue counts judged at `at`.
    ///
    /// # Errors
    /// PERMISSION_DENIED for anyone but supervision staff.
    pub async fn kpis(
        &self,
        p: &Principal,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<Vec<pb::DepartmentKpi>> {
        authz::check(staff(p), p, "GetKpis", "kpis")?;
        self.compute_kpis(from, to, at).await
    }

    /// [`Self::kpis`] without the caller check (the replay test compares two instances).
    ///
    /// # Errors
    /// A database failure.
    pub async fn compute_kpis(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<Vec<pb::DepartmentKpi>> {
        let mut by: BTreeMap<String, pb::DepartmentKpi> = BTreeMap::new();
        for t in tracked::Entity::find().filter(tracked::Column::Kind.eq("case")).all(&self.db).await? {
            let k = row(&mut by, &t.department);
            if let Some(closed) = t.closed_at.filter(|c| *c >= from && *c < to) {
                k.cases_finished += 1;
                if t.due_at.is_none_or(|due| closed <= due) {
                    k.cases_on_time += 1;
                }
            }
            if deadline(&t, at) == pb::DeadlineState::Overdue {
                k.overdue_now += 1;
            }
        }
        let mut scores: BTreeMap<String, (u32, u32)> = BTreeMap::new();
        for r in rating::Entity::find()
            .filter(rating::Column::CreatedAt.gte(from))
            .filter(rating::Column::CreatedAt.lt(to))
            .all(&self.db)
            .await?
        {
            let e = scores.entry(r.department.clone()).or_default();
            e.0 += 1;
            e.1 += u32::try_from(r.score).unwrap_or(0);
        }
        for (d, (n, sum)) in scores {
            let k = row(&mut by, &d);
            k.ratings = n;
            k.satisfaction = f64::from(sum) / f64::from(n);
        }
        let requests = request::Entity::find()
            .filter(request::Column::ReceivedAt.gte(from))
            .filter(request::Column::ReceivedAt.lt(to))
            .all(&self.db)
            .await?;
        if !requests.is_empty() {
            let k = row(&mut by, "liaison");
            k.requests_received = u32::try_from(requests.len()).unwrap_or(u32::MAX);
            k.requests_completed =
                u32::try_from(requests.iter().filter(|r| r.handled && !r.responsibility).count()).unwrap_or(0);
            k.request_completion_rate = f64::from(k.requests_completed) / f64::from(k.requests_received);
        }
        for k in by.values_mut() {
            k.on_time_rate =
                if k.cases_finished == 0 { 0.0 } else { f64::from(k.cases_on_time) / f64::from(k.cases_finished) };
        }
        Ok(by.into_values().collect())
    }

    /// Draws random inspections and publishes the seed, the inputs and the result.
    ///
    /// # Errors
    /// PERMISSION_DENIED for anyone but supervision staff; INVALID_ARGUMENT for an unknown
    /// risk class, no candidates or no inspectors.
    pub async fn draw(&self, p: &Principal, r: pb::DrawInspectionsRequest) -> Result<(String, domain::Draw)> {
        authz::check(staff(p), p, "DrawInspections", "inspections")?;
        if r.candidates.is_empty() || r.inspectors.is_empty() || r.count == 0 {
            return Err(Error::invalid_field(
                Reason::SupervisionInvalidRequest,
                "candidates",
                "candidates, inspectors and a count are required",
            ));
        }
        if let Some(i) = r.candidates.iter().position(|c| domain::weight(&c.risk_class) == 0) {
            return Err(Error::invalid_field(
                Reason::SupervisionInvalidRequest,
                format!("candidates[{i}].risk_class"),
                "A, B, C or D",
            ));
        }
        let mut prior: BTreeMap<String, u32> = BTreeMap::new();
        for d in drawn::Entity::find().filter(drawn::Column::Year.eq(r.year)).all(&self.db).await? {
            *prior.entry(d.credit_code).or_default() += 1;
        }
        let candidates: Vec<(String, String)> =
            r.candidates.iter().map(|c| (c.credit_code.clone(), c.risk_class.clone())).collect();
        let per = usize::try_from(r.inspectors_per_target.max(1)).unwrap_or(1);
        let result =
            domain::draw(r.seed, usize::try_from(r.count).unwrap_or(0), &candidates, &prior, &r.inspectors, per);
        let id = uuid::Uuid::now_v7().to_string();
        let txn = begin_write(&self.db).await?;
        for (code, _) in &result.inspections {
            drawn::Entity::insert(drawn::ActiveModel {
                draw_id: Set(id.clone()),
                credit_code: Set(code.clone()),
                year: Set(r.year),
            })
            .exec_without_returning(&txn)
            .await?;
        }
        self.outbox
            .enqueue(
                &txn,
                OutgoingEvent::new(
                    "onething.supervision.v1.inspections.drawn",
                    format!("draws/{id}"),
                    &pb::InspectionsDrawn {
                        draw_id: id.clone(),
                        year: r.year,
                        seed: r.seed,
                        count: r.count,
                        candidates: r.candidates.clone(),
                        inspectors: r.inspectors.clone(),
                        inspectors_per_target: r.inspectors_per_target,
                        prior_this_year: prior.iter().map(|(c, n)| format!("{c}={n}")).collect(),
                        inspections: result
                            .inspections
                            .iter()
                            .map(|(c, t)| pb::DrawnInspection { credit_code: c.clone(), inspectors: t.clone() })
                            .collect(),
                        occur_time: Some(timestamp(Utc::now())),
                    },
                ),
            )
            .await?;
        txn.commit().await?;
        self.outbox.wake();
        Ok((id, result))
    }
}
