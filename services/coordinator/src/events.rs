//! What the coordinator consumes: every department's case events, one durable consumer per
//! department stream, moving the steps of our bundles.

use crate::engine::Engine;
use onething_platform::{
    events::{ConsumerSpec, Envelope, Handler, nats::stream_name},
    lifecycle::State,
};
use onething_proto::common::CaseStateChanged;
use sea_orm::{DatabaseConnection, DatabaseTransaction};

/// The departments whose cases bundles are made of.
pub const DEPARTMENTS: [&str; 4] = onething_platform::service_kind::DEPARTMENT_NAMES;

/// The consumer of `department`'s case events.
pub fn case_events_spec(department: &str) -> ConsumerSpec {
    ConsumerSpec {
        name: format!("coordinator-{department}-cases"),
        stream: stream_name(department),
        // Every state, `submitted` too: a case first submitted by our own CreateCase tells
        // nothing new (once its answer is recorded the event is skipped before any
        // transaction; before, it is applied and the answer then adds only its result), but
        // one submitted again when the applicant supplies what intake asked for (一次性告知)
        // no longer waits on the applicant.
        filter_subjects: State::ALL.iter().map(|s| format!("onething.{department}.v1.case.{}", s.as_str())).collect(),
        // Handlers lock the bundle row, which the other departments' consumers lock too.
        batch: 1,
    }
}

/// Moves bundle steps from the case events of one department's stream.
pub struct CaseEvents {
    /// The engine whose bundles the events move.
    pub engine: Engine,
    /// The department whose stream this consumer reads: an event counts only for a step of
    /// that department, so no other department (nor anyone who got a case into it) can move
    /// another's step.
    pub department: &'static str,
}

impl Handler for CaseEvents {
    async fn handle(&self, txn: &DatabaseTransaction, event: &Envelope) -> anyhow::Result<()> {
        let changed: CaseStateChanged = event.decode()?;
        if changed.bundle_id.is_empty() {
            return Ok(());
        }
        // Kept as our error type: the consumer retries a lost concurrency race (ABORTED) at once.
        self.engine.on_case_event(txn, self.department, &changed).await.map_err(anyhow::Error::new)
    }

    fn committed(&self, event: &Envelope) {
        // The bundle's watchers read it again (events of no bundle ring nothing).
        if let Ok(changed) = event.decode::<CaseStateChanged>()
            && !changed.bundle_id.is_empty()
        {
            self.engine.changes().changed(&changed.bundle_id);
        }
    }

    async fn already_applied(&self, db: &DatabaseConnection, event: &Envelope) -> anyhow::Result<bool> {
        // Most case events repeat what the CreateCase answer already recorded.
        let Ok(changed) = event.decode::<CaseStateChanged>() else { return Ok(false) };
        self.engine.knows_case_event(db, self.department, &changed).await.map_err(anyhow::Error::new)
    }
}
