//! Supervision's operations: deadlines and 督办 notices, complaints, 好差评, the 办不成事
//! window, KPIs per department and period, and random inspections. Its own facts are
//! written with their events in one transaction (and projected again from its stream).
//!
//! One module per sub-domain, each adding to the one [`Supervision`]: [`notices`],
//! [`complaints`], [`ratings`], [`undone`], [`kpis`], [`draw`].

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
    clock::Clock,
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

mod complaints;
mod draw;
mod kpis;
mod notices;
mod ratings;
mod undone;

pub use complaints::complaint_pb;
pub use ratings::rating_pb;
pub use undone::unresolved_pb;

/// Supervision.
#[derive(Clone)]
pub struct Supervision {
    db: DatabaseConnection,
    outbox: Outbox,
    calendar: Arc<Calendar>,
    peers: Peers,
    identity: ServiceIdentity,
    clock: Clock,
    sealer: Arc<onething_platform::seal::Sealer>,
}

/// What [`Supervision`] works with.
pub struct Parts {
    /// Its database.
    pub db: DatabaseConnection,
    /// Its outbox.
    pub outbox: Outbox,
    /// The working-day calendar.
    pub calendar: Arc<Calendar>,
    /// The departments and the coordinator, asked about ownership.
    pub peers: Peers,
    /// Its identity, acting for raters.
    pub identity: ServiceIdentity,
    /// The business clock.
    pub clock: Clock,
    /// Seals the personal part of its complaints' events.
    pub sealer: Arc<onething_platform::seal::Sealer>,
}

fn staff(p: &Principal) -> bool {
    authz::is_supervision(p)
}

fn deadline(m: &tracked::Model, at: DateTime<Utc>) -> pb::DeadlineState {
    match m.due_at {
        Some(due) if !m.closed && !m.paused => domain::deadline_state(due, m.warn_at, at),
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

/// The KPI row of department `d`, made when missing.
fn row<'a>(by: &'a mut BTreeMap<String, pb::DepartmentKpi>, d: &str) -> &'a mut pb::DepartmentKpi {
    by.entry(d.to_string()).or_insert_with(|| pb::DepartmentKpi { department: d.into(), ..Default::default() })
}

impl Supervision {
    /// Supervision over its database, outbox, calendar and clock (from `runtime`); `peers`
    /// are the departments and the coordinator it asks about ownership, as `identity` acting
    /// for the rater; `sealer` seals the personal part of its complaints' events.
    pub fn new(
        runtime: &onething_platform::runtime::ServiceRuntime,
        peers: Peers,
        identity: ServiceIdentity,
        sealer: Arc<onething_platform::seal::Sealer>,
    ) -> Self {
        Self::from_parts(Parts {
            db: runtime.db.clone(),
            outbox: runtime.outbox.clone(),
            calendar: runtime.calendar.clone(),
            peers,
            identity,
            clock: runtime.clock().clone(),
            sealer,
        })
    }

    /// Supervision over the parts given one by one (a tool or a test working on a database
    /// without a running service).
    pub fn from_parts(p: Parts) -> Self {
        let Parts { db, outbox, calendar, peers, identity, clock, sealer } = p;
        Self { db, outbox, calendar, peers, identity, clock, sealer }
    }

    /// The business clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }
}
