//! The generic `onething.common.v1.CaseService`: request validation, idempotent intake,
//! clerk actions through the lifecycle, the clock, optimistic versioning, and one
//! `CaseStateChanged` event per transition written to the outbox in the same transaction.
//!
//! Split by concern: [`workflow`] (intake and the lifecycle), [`decisions`] (approve,
//! reject), [`policy`] (who may), [`store`]
//! (the table and its transactions), [`sweep`] (the clock's work) and [`grpc`] (the tonic
//! adapter); each adds to the one `CaseApi`.

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

mod decisions;
mod evidence;
mod grpc;

pub use evidence::evidence_of;
pub use grpc::PROCEDURE;
mod policy;
mod store;
mod supply;
mod sweep;
mod workflow;

use policy::shown;
use store::{find_by_key, load};
use workflow::{check_reason_code, violation};

/// How the coordinator's keys of bundle steps begin (`bundle:<bundle id>:<step id>`);
/// reserved to it.
pub const BUNDLE_KEY_PREFIX: &str = "bundle:";

/// Largest page of ListCases.
pub const MAX_PAGE_SIZE: i32 = 100;

const DEFAULT_PAGE_SIZE: i32 = 20;

/// The case service of one department.
pub struct CaseApi {
    inner: Arc<Inner>,
}

impl Clone for CaseApi {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

struct Inner {
    dept: Department,
    clock: crate::clock::Clock,
    db: DatabaseConnection,
    outbox: Outbox,
    catalog: Arc<Catalog>,
    calendar: Arc<Calendar>,
    /// The e-licence issuers trusted (M24).
    trust: Arc<crate::elicence::Trust>,
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

impl CaseApi {
    /// The case service of `dept` over its database and outbox, reading business time
    /// from `clock`.
    ///
    /// # Errors
    /// The department's registered matters are not exactly the catalog's matters of that
    /// department, or one is registered twice (the error names the codes).
    pub fn new(
        dept: Department,
        db: DatabaseConnection,
        outbox: Outbox,
        catalog: Arc<Catalog>,
        calendar: Arc<Calendar>,
        clock: crate::clock::Clock,
        trust: Arc<crate::elicence::Trust>,
    ) -> anyhow::Result<Self> {
        registered(&dept, &catalog)?;
        let inner = Inner { dept, clock, db, outbox, catalog, calendar, trust, changed: tokio::sync::Notify::new() };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The department and its matters' rules.
    pub fn department(&self) -> &Department {
        &self.inner.dept
    }

    /// The business clock.
    pub fn clock(&self) -> &crate::clock::Clock {
        &self.inner.clock
    }

    /// Tells the relay that a caller's transaction committed events.
    pub fn wake_outbox(&self) {
        self.inner.outbox.wake();
    }

    /// The rules of `code`, registered at start for every matter of the department.
    fn rules(&self, code: &str) -> Result<&dyn super::MatterRules> {
        self.inner.dept.rules(code).ok_or_else(|| Error::internal(anyhow::anyhow!("no rules for matter {code}")))
    }
}

/// Checks that `dept` has rules for exactly the catalog's matters of its department, each
/// once.
fn registered(dept: &Department, catalog: &Catalog) -> anyhow::Result<()> {
    use std::collections::BTreeSet;
    let listed: BTreeSet<&str> =
        catalog.matters.iter().filter(|m| m.department == dept.name()).map(|m| m.code.as_str()).collect();
    let mut ruled = BTreeSet::new();
    for code in dept.codes() {
        if !ruled.insert(code) {
            anyhow::bail!("{}: the rules for {code} are registered twice", dept.name());
        }
    }
    let unruled: Vec<_> = listed.difference(&ruled).collect();
    let unlisted: Vec<_> = ruled.difference(&listed).collect();
    if !unruled.is_empty() || !unlisted.is_empty() {
        anyhow::bail!(
            "{}: the catalog's matters {unruled:?} have no rules here, and the rules for {unlisted:?} no catalog matter",
            dept.name()
        );
    }
    Ok(())
}
