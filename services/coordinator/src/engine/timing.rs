//! The bundle's time rules and its facts: its due time as the latest of its steps' (moved by
//! every pause of theirs), whether it waits on its applicant (a step's supplement: its clock
//! paused), from when it is close to due, and the `BundleChanged` event of what happened.

use super::*;

impl Engine {
    /// Recomputes the bundle's due time and whether it waits on its applicant, from its
    /// steps as they now stand.
    pub(super) fn retime(&self, agg: &mut Aggregate, def: &BundleDef) {
        let included: Vec<String> = agg.steps.iter().map(|s| s.step_id.clone()).collect();
        let known: BTreeMap<String, chrono::DateTime<Utc>> =
            agg.steps.iter().filter_map(|s| s.due_at.map(|d| (s.step_id.clone(), d))).collect();
        let due = saga::due(def, &included, &self.inner.catalog, &self.inner.calendar, agg.bundle.created_at, &known);
        agg.bundle.due_at = due.at;
        agg.bundle.waiting = saga::is_live(agg.bundle.state) && agg.steps.iter().any(|s| s.waiting);
    }

    /// From when the bundle counts as close to due: its due time less its definition's
    /// warning share of the time from submission to due.
    pub(super) fn warn_at(&self, b: &bundle::Model) -> chrono::DateTime<Utc> {
        let share = self.inner.catalog.bundle(&b.code).map_or(0.25, |d| d.warn_share);
        let span = (b.due_at - b.created_at).num_milliseconds().max(0);
        b.due_at - chrono::Duration::milliseconds((span as f64 * share) as i64)
    }

    /// The `BundleChanged` event `onething.coordinator.v1.bundle.<happened>`.
    pub(super) fn bundle_event(&self, agg: &Aggregate, happened: &str) -> OutgoingEvent {
        OutgoingEvent::new(
            format!("onething.coordinator.v1.bundle.{happened}"),
            format!("bundles/{}", agg.bundle.id),
            &pb::BundleChanged {
                bundle_id: agg.bundle.id.clone(),
                code: agg.bundle.code.clone(),
                state: crate::view::state_pb(agg.bundle.state) as i32,
                step_outcomes: agg.steps.iter().map(|s| format!("{}={}", s.step_id, s.state)).collect(),
                due_time: Some(timestamp(agg.bundle.due_at)),
                occur_time: Some(timestamp(self.inner.clock.now())),
                waiting_on_applicant: agg.bundle.waiting,
                warn_time: Some(timestamp(self.warn_at(&agg.bundle))),
            },
        )
    }
}

/// What a change of the bundle from `state` and `(due, waiting)` to `agg` tells subscribers:
/// its new state; else that it waits on its applicant (`paused`) or no longer (`resumed`);
/// else that its due time moved (`rescheduled`); else nothing.
pub(super) fn what_happened(
    state: BundleState,
    (due, waiting): (chrono::DateTime<Utc>, bool),
    agg: &Aggregate,
) -> Option<String> {
    let b = &agg.bundle;
    if b.state != state {
        Some(b.state.to_string())
    } else if b.waiting != waiting {
        Some(if b.waiting { "paused" } else { "resumed" }.into())
    } else if b.due_at != due {
        Some("rescheduled".into())
    } else {
        None
    }
}
