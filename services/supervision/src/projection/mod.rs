//! Supervision's projection: every department's, the coordinator's and its own events move
//! its derived records. A pure function of the streams: wipe the database, give the
//! consumers a new suffix (`consumer_suffix`), and the same records come back.

use crate::store::{complaint, drawn, rating, request, tracked, unresolved};
use chrono::{DateTime, Utc};
use onething_platform::{
    calendar::Calendar,
    events::{ConsumerSpec, Envelope, Handler, nats::stream_name},
    lifecycle::State,
};
use onething_proto::{common, coordinator, liaison, supervision as pb};
use prost::Name;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    sea_query::OnConflict,
};
use std::sync::Arc;

/// The streams supervision reads, its own included.
pub const STREAMS: [&str; 6] = onething_platform::service_kind::SERVICE_NAMES;

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
    /// Opens the personal part of its complaints' events.
    pub sealer: Arc<onething_platform::seal::Sealer>,
}

/// The share of the time a deadline gives before it from which supervision's own items (a
/// complaint's step, a bad review's fix, an enterprise request) are close to due (预警);
/// cases and bundles bring their owners' warning times.
pub(super) const WARN_SHARE: f64 = 0.25;

/// `m`'s due time set to `due`, given at `at`: when it moves, its warning time with it.
pub(super) fn set_due(m: &mut tracked::Model, due: Option<DateTime<Utc>>, at: DateTime<Utc>) {
    if due == m.due_at {
        return;
    }
    m.due_at = due;
    m.warn_at = due.map(|d| {
        let span = (d - at).num_milliseconds().max(0);
        d - chrono::Duration::milliseconds((span as f64 * WARN_SHARE) as i64)
    });
}

/// A record not seen before.
fn blank(kind: &str, id: &str) -> tracked::Model {
    tracked::Model {
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
        warn_at: None,
        noticed_due: None,
    }
}

async fn track(
    txn: &DatabaseTransaction,
    kind: &str,
    id: &str,
    f: impl FnOnce(&mut tracked::Model),
) -> anyhow::Result<()> {
    let existing = tracked::Entity::find_by_id((kind.to_string(), id.to_string())).one(txn).await?;
    let fresh = existing.is_none();
    let mut m = existing.unwrap_or_else(|| blank(kind, id));
    let before = m.clone();
    f(&mut m);
    if fresh {
        tracked::Entity::insert(tracked::ActiveModel::from(m).reset_all()).exec_without_returning(txn).await?;
    } else if m != before {
        tracked::ActiveModel::from(m).reset_all().update(txn).await?;
    }
    Ok(())
}

/// A case's transition applied to its record (an older event, redelivered late, changes nothing).
fn apply_case(m: &mut tracked::Model, c: &common::CaseStateChanged, to: State, at: DateTime<Utc>) {
    if c.version <= m.version {
        return;
    }
    m.version = c.version;
    m.department = c.department.clone();
    m.code = c.matter_code.clone();
    m.last_state = to.as_str().into();
    if let Some(due) = ts(c.due_time) {
        m.due_at = Some(due);
    }
    m.warn_at = ts(c.warn_time).or(m.warn_at);
    m.paused = to.pauses_clock();
    if to.is_final() && !m.closed {
        m.closed = true;
        m.closed_at = Some(at);
    }
}

/// A bundle's change applied to its record.
fn apply_bundle(
    m: &mut tracked::Model,
    b: &coordinator::BundleChanged,
    state: coordinator::BundleState,
    at: DateTime<Utc>,
) {
    // An older change delivered late moves nothing (events before versions carry 0).
    if b.version != 0 {
        if b.version <= m.version {
            return;
        }
        m.version = b.version;
    }
    m.department = "coordinator".into();
    m.code = b.code.clone();
    m.due_at = ts(b.due_time).or(m.due_at);
    m.warn_at = ts(b.warn_time).or(m.warn_at);
    // A bundle whose step's clock is paused (补正, 特别程序) is paused: its due time will move,
    // and no 督办 is due meanwhile.
    m.paused = b.waiting_on_applicant || b.clock_paused;
    m.last_state = state.as_str_name().into();
    if state != coordinator::BundleState::Running && !m.closed {
        m.closed = true;
        m.closed_at = Some(at);
    }
}

/// Whether [`Projection::handle`] applies events of type `t` one at a time, each in its own way.
fn own_handling(t: &str) -> bool {
    [
        liaison::EnterpriseRequestChanged::full_name(),
        pb::NoticeIssued::full_name(),
        pb::RatingChanged::full_name(),
        pb::UnresolvedResolved::full_name(),
        pb::InspectionsDrawn::full_name(),
        pb::ComplaintChanged::full_name(),
    ]
    .iter()
    .any(|n| n == t)
}

/// The events a batch applies in memory: case and bundle changes, the bulk of every stream.
enum Change {
    Case(common::CaseStateChanged, State, DateTime<Utc>),
    Bundle(coordinator::BundleChanged, coordinator::BundleState, DateTime<Utc>),
    /// Moves no record (an unknown state, or a kind of event not followed).
    Nothing,
}

impl Change {
    /// The change `e` makes, or `None` for the kinds handled one at a time.
    fn of(e: &Envelope) -> anyhow::Result<Option<Self>> {
        let t = e.ce_type.as_str();
        Ok(Some(if t == common::CaseStateChanged::full_name() {
            let c: common::CaseStateChanged = e.decode()?;
            match common::CaseState::try_from(c.to_state).ok().and_then(State::from_proto) {
                Some(to) => {
                    let at = ts(c.occur_time).unwrap_or(e.time);
                    Self::Case(c, to, at)
                }
                None => Self::Nothing,
            }
        } else if t == coordinator::BundleChanged::full_name() {
            let b: coordinator::BundleChanged = e.decode()?;
            let state = coordinator::BundleState::try_from(b.state).unwrap_or(coordinator::BundleState::Unspecified);
            let at = ts(b.occur_time).unwrap_or(e.time);
            Self::Bundle(b, state, at)
        } else if own_handling(t) {
            return Ok(None);
        } else {
            // Kinds the projection does not follow (registrations, permits …).
            Self::Nothing
        }))
    }

    fn key(&self) -> Option<(&'static str, &str)> {
        match self {
            Self::Case(c, ..) => Some(("case", &c.case_id)),
            Self::Bundle(b, ..) => Some(("bundle", &b.bundle_id)),
            Self::Nothing => None,
        }
    }
}

impl Projection {
    /// A failed bundle enters the 办不成事 window.
    async fn bundle_failed(
        &self,
        txn: &DatabaseTransaction,
        b: &coordinator::BundleChanged,
        at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
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
        .await
    }

    /// A batch of case and bundle changes: their records read with one query, moved in
    /// memory in delivery order, written back with one upsert. False, having done nothing,
    /// when the batch holds a kind of event handled one at a time.
    async fn apply_changes(
        &self,
        txn: &DatabaseTransaction,
        events: &[&(Envelope, tracing::Span)],
    ) -> anyhow::Result<bool> {
        let mut changes = Vec::with_capacity(events.len());
        for (e, _) in events {
            match Change::of(e)? {
                Some(c) => changes.push(c),
                None => return Ok(false),
            }
        }
        // Each id once: a batch often holds several changes of one case or bundle.
        let ids: std::collections::BTreeSet<String> =
            changes.iter().filter_map(|c| c.key().map(|(_, id)| id.to_string())).collect();
        if ids.is_empty() {
            return Ok(true);
        }
        let mut records: std::collections::HashMap<(String, String), tracked::Model> = tracked::Entity::find()
            // Both key columns, so the primary key serves the lookup.
            .filter(tracked::Column::Kind.is_in(["case", "bundle"]))
            .filter(tracked::Column::Id.is_in(ids))
            .all(txn)
            .await?
            .into_iter()
            .map(|m| ((m.kind.clone(), m.id.clone()), m))
            .collect();
        let before = records.clone();
        for change in &changes {
            let Some((kind, id)) = change.key() else { continue };
            let m = records.entry((kind.to_string(), id.to_string())).or_insert_with(|| blank(kind, id));
            match change {
                Change::Case(c, to, at) => apply_case(m, c, *to, *at),
                Change::Bundle(b, state, at) => {
                    let newly_failed = *state == coordinator::BundleState::Failed
                        && m.last_state != coordinator::BundleState::Failed.as_str_name();
                    apply_bundle(m, b, *state, *at);
                    if newly_failed {
                        self.bundle_failed(txn, b, *at).await?;
                    }
                }
                Change::Nothing => {}
            }
        }
        let moved: Vec<tracked::ActiveModel> = records
            .into_iter()
            .filter(|(k, m)| before.get(k) != Some(m))
            .map(|(_, m)| tracked::ActiveModel::from(m).reset_all())
            .collect();
        // The columns these events move: a 督办 notice recorded meanwhile is left alone.
        let upsert = OnConflict::columns([tracked::Column::Kind, tracked::Column::Id])
            .update_columns([
                tracked::Column::Department,
                tracked::Column::Code,
                tracked::Column::DueAt,
                tracked::Column::WarnAt,
                tracked::Column::Paused,
                tracked::Column::Closed,
                tracked::Column::ClosedAt,
                tracked::Column::LastState,
                tracked::Column::Version,
            ])
            .to_owned();
        if !moved.is_empty() {
            tracked::Entity::insert_many(moved).on_conflict(upsert).exec_without_returning(txn).await?;
        }
        Ok(true)
    }
}

impl Handler for Projection {
    /// Its records are its own tables; it never writes events.
    fn writes_events(&self) -> bool {
        false
    }

    async fn handle_many(
        &self,
        txn: &DatabaseTransaction,
        events: &[&(Envelope, tracing::Span)],
    ) -> anyhow::Result<()> {
        if self.apply_changes(txn, events).await? {
            return Ok(());
        }
        for (e, span) in events.iter().map(|p| (&p.0, &p.1)) {
            tracing::Instrument::instrument(self.handle(txn, e), span.clone()).await?;
        }
        Ok(())
    }

    async fn handle(&self, txn: &DatabaseTransaction, e: &Envelope) -> anyhow::Result<()> {
        let t = e.ce_type.as_str();
        if let Some(change) = Change::of(e)? {
            match change {
                Change::Case(c, to, at) => track(txn, "case", &c.case_id, |m| apply_case(m, &c, to, at)).await?,
                Change::Bundle(b, state, at) => {
                    let mut newly_failed = false;
                    track(txn, "bundle", &b.bundle_id, |m| {
                        newly_failed = state == coordinator::BundleState::Failed
                            && m.last_state != coordinator::BundleState::Failed.as_str_name();
                        apply_bundle(m, &b, state, at);
                    })
                    .await?;
                    if newly_failed {
                        self.bundle_failed(txn, &b, at).await?;
                    }
                }
                Change::Nothing => {}
            }
        } else if t == liaison::EnterpriseRequestChanged::full_name() {
            self.enterprise_request(txn, e).await?;
        } else if t == pb::NoticeIssued::full_name() {
            self.notice_issued(txn, e).await?;
        } else if t == pb::RatingChanged::full_name() {
            self.rating_changed(txn, e).await?;
        } else if t == pb::UnresolvedResolved::full_name() {
            self.unresolved_resolved(txn, e).await?;
        } else if t == pb::InspectionsDrawn::full_name() {
            self.inspections_drawn(txn, e).await?;
        } else if t == pb::ComplaintChanged::full_name() {
            self.complaint_changed(txn, e).await?;
        }
        Ok(())
    }
}

mod own;
