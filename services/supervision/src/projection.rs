//! Supervision's projection: every department's, the coordinator's and its own events move
//! its derived records. A pure function of the streams: wipe the database, give the
//! consumers a new suffix (`consumer_suffix`), and the same records come back.

use crate::store::{drawn, rating, request, tracked, unresolved};
use chrono::{DateTime, Utc};
use onething_platform::{
    calendar::Calendar,
    events::{ConsumerSpec, Envelope, Handler, nats::stream_name},
    lifecycle::State,
};
use onething_proto::{common, coordinator, liaison, supervision as pb};
use prost::Name;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, DatabaseTransaction, EntityTrait, sea_query::OnConflict};
use std::sync::Arc;

/// The streams supervision reads, its own included.
pub const STREAMS: [&str; 6] = ["household", "exit_entry", "vehicle", "liaison", "coordinator", "supervision"];

/// The consumer of one stream.
pub fn spec(stream: &str) -> ConsumerSpec {
    // Each stream's events touch only that stream's records here, so batches are safe.
    ConsumerSpec {
        name: format!("supervision-{stream}"),
        stream: stream_name(stream),
        filter_subjects: vec![],
        batch: 64,
    }
}

fn ts(t: Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
}

/// Working days to answer in the 办不成事 window, by tier.
pub fn response_days(tier: &str) -> u32 {
    if tier == "city" { 3 } else { 5 }
}

/// Something arriving in the 办不成事 window.
pub struct Arrival<'a> {
    /// `bundle_failed`, `case_overdue`, `enterprise_request`.
    pub source: &'a str,
    /// Bundle, case or request id.
    pub ref_id: &'a str,
    /// Department concerned.
    pub department: &'a str,
    /// `city` or `district`.
    pub tier: &'a str,
    /// Why it arrived.
    pub reason: &'a str,
    /// When.
    pub at: DateTime<Utc>,
}

/// Puts an item in the 办不成事 window (once), due by its tier's response time.
///
/// # Errors
/// A database failure.
pub async fn window(txn: &DatabaseTransaction, calendar: &Calendar, a: Arrival<'_>) -> anyhow::Result<()> {
    unresolved::Entity::insert(unresolved::ActiveModel {
        id: Set(format!("{}:{}", a.source, a.ref_id)),
        source: Set(a.source.into()),
        ref_id: Set(a.ref_id.into()),
        department: Set(a.department.into()),
        tier: Set(a.tier.into()),
        response_due: Set(calendar.add_working_days(a.at, response_days(a.tier)).at),
        resolved: Set(false),
        reason: Set(a.reason.into()),
    })
    .on_conflict(OnConflict::column(unresolved::Column::Id).do_nothing().to_owned())
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// Moves supervision's records from one event.
pub struct Projection {
    /// The working-day calendar.
    pub calendar: Arc<Calendar>,
}

async fn track(
    txn: &DatabaseTransaction,
    kind: &str,
    id: &str,
    f: impl FnOnce(&mut tracked::Model),
) -> anyhow::Result<()> {
    let existing = tracked::Entity::find_by_id((kind.to_string(), id.to_string())).one(txn).await?;
    let fresh = existing.is_none();
    let mut m = existing.unwrap_or(tracked::Model {
        kind: kind.into(),
        id: id.into(),
        department: String::new(),
        code: String::new(),
        due_at: None,
        paused: false,
        closed: false,
        closed_at: None,
        last_state: String::new(),
        version: 0,
        notice_sent: false,
    });
    let before = m.clone();
    f(&mut m);
    if fresh {
        tracked::Entity::insert(tracked::ActiveModel::from(m).reset_all()).exec_without_returning(txn).await?;
    } else if m != before {
        tracked::ActiveModel::from(m).reset_all().update(txn).await?;
    }
    Ok(())
}

impl Handler for Projection {
    async fn handle(&self, txn: &DatabaseTransaction, e: &Envelope) -> anyhow::Result<()> {
        let t = e.ce_type.as_str();
        if t == common::CaseStateChanged::full_name() {
            let c: common::CaseStateChanged = e.decode()?;
            let Some(to) = common::CaseState::try_from(c.to_state).ok().and_then(State::from_proto) else {
                return Ok(());
            };
            let at = ts(c.occur_time).unwrap_or(e.time);
            track(txn, "case", &c.case_id, |m| {
                if c.version <= m.version {
                    return; // An older event, redelivered late.
                }
                m.version = c.version;
                m.department = c.department.clone();
                m.code = c.matter_code.clone();
                m.last_state = to.as_str().into();
                if let Some(due) = ts(c.due_time) {
                    m.due_at = Some(due);
                }
                m.paused = to.pauses_clock();
                if to.is_final() && !m.closed {
                    m.closed = true;
                    m.closed_at = Some(at);
                }
            })
            .await?;
        } else if t == coordinator::BundleChanged::full_name() {
            let b: coordinator::BundleChanged = e.decode()?;
            let state = coordinator::BundleState::try_from(b.state).unwrap_or(coordinator::BundleState::Unspecified);
            let at = ts(b.occur_time).unwrap_or(e.time);
            track(txn, "bundle", &b.bundle_id, |m| {
                m.department = "coordinator".into();
                m.code = b.code.clone();
                m.due_at = ts(b.due_time).or(m.due_at);
                m.last_state = state.as_str_name().into();
                if state != coordinator::BundleState::Running && !m.closed {
                    m.closed = true;
                    m.closed_at = Some(at);
                }
            })
            .await?;
            if state == coordinator::BundleState::Failed {
                window(
                    txn,
                    &self.calendar,
                    Arrival {
                        source: "bundle_failed",
                        ref_id: &b.bundle_id,
                        department: "coordinator",
                        tier: "city",
                        reason: &b.step_outcomes.join(", "),
                        at,
                    },
                )
                .await?;
            }
        } else if t == liaison::EnterpriseRequestChanged::full_name() {
            let r: liaison::EnterpriseRequestChanged = e.decode()?;
            let state = liaison::RequestState::try_from(r.state).unwrap_or(liaison::RequestState::Unspecified);
            let at = ts(r.occur_time).unwrap_or(e.time);
            let existing = request::Entity::find_by_id(r.request_id.clone()).one(txn).await?;
            let handled = !matches!(state, liaison::RequestState::Submitted | liaison::RequestState::Unspecified);
            let responsibility = state == liaison::RequestState::ResponsibilityAssigned;
            match existing {
                None => {
                    request::Entity::insert(request::ActiveModel {
                        id: Set(r.request_id.clone()),
                        unit: Set(r.unit.clone()),
                        received_at: Set(at),
                        handled: Set(handled),
                        responsibility: Set(responsibility),
                    })
                    .exec_without_returning(txn)
                    .await?;
                }
                Some(m) => {
                    let mut am: request::ActiveModel = m.clone().into();
                    am.handled = Set(m.handled || handled);
                    am.responsibility = Set(m.responsibility || responsibility);
                    am.update(txn).await?;
                }
            }
            if r.flagged || responsibility {
                let tier = if r.tier == liaison::Tier::City as i32 { "city" } else { "district" };
                let why = if responsibility { "unresolved: responsibility assigned" } else { r.flag_reason.as_str() };
                window(
                    txn,
                    &self.calendar,
                    Arrival {
                        source: "enterprise_request",
                        ref_id: &r.request_id,
                        department: "liaison",
                        tier,
                        reason: why,
                        at,
                    },
                )
                .await?;
            }
        } else if t == pb::NoticeIssued::full_name() {
            let n: pb::NoticeIssued = e.decode()?;
            let at = ts(n.occur_time).unwrap_or(e.time);
            track(txn, &n.kind, &n.id, |m| {
                m.notice_sent = true;
                if m.department.is_empty() {
                    m.department = n.department.clone();
                }
            })
            .await?;
            window(
                txn,
                &self.calendar,
                Arrival {
                    source: "case_overdue",
                    ref_id: &n.id,
                    department: &n.department,
                    tier: "district",
                    reason: "overdue: 督办 notice issued",
                    at,
                },
            )
            .await?;
        } else if t == pb::RatingChanged::full_name() {
            let r: pb::RatingChanged = e.decode()?;
            let at = ts(r.occur_time).unwrap_or(e.time);
            let bad = r.score <= 2;
            rating::Entity::insert(rating::ActiveModel {
                id: Set(r.rating_id.clone()),
                target_kind: Set(r.target_kind.clone()),
                target_id: Set(r.target_id.clone()),
                department: Set(r.department.clone()),
                score: Set(i32::try_from(r.score).unwrap_or(0)),
                fix_due: Set(bad.then(|| self.calendar.add_working_days(at, crate::domain::FIX_WITHIN_WORKING_DAYS).at)),
                fix_note: Set(if r.fixed { "fixed".into() } else { String::new() }),
                created_at: Set(at),
            })
            .on_conflict(OnConflict::column(rating::Column::Id).do_nothing().to_owned())
            .exec_without_returning(txn)
            .await?;
            if r.fixed
                && let Some(m) = rating::Entity::find_by_id(r.rating_id.clone()).one(txn).await?
                && m.fix_note.is_empty()
            {
                let mut am: rating::ActiveModel = m.into();
                am.fix_note = Set("fixed".into());
                am.update(txn).await?;
            }
        } else if t == pb::UnresolvedResolved::full_name() {
            let u: pb::UnresolvedResolved = e.decode()?;
            if let Some(m) = unresolved::Entity::find_by_id(format!("{}:{}", u.source, u.ref_id)).one(txn).await? {
                let mut am: unresolved::ActiveModel = m.into();
                am.resolved = Set(true);
                am.update(txn).await?;
            }
        } else if t == pb::InspectionsDrawn::full_name() {
            let d: pb::InspectionsDrawn = e.decode()?;
            for i in &d.inspections {
                drawn::Entity::insert(drawn::ActiveModel {
                    draw_id: Set(d.draw_id.clone()),
                    credit_code: Set(i.credit_code.clone()),
                    year: Set(d.year),
                })
                .on_conflict(
                    OnConflict::columns([drawn::Column::DrawId, drawn::Column::CreditCode]).do_nothing().to_owned(),
                )
                .exec_without_returning(txn)
                .await?;
            }
        }
        Ok(())
    }
}
