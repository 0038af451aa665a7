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
                clock_paused: clock_paused(agg),
                version: agg.bundle.version,
            },
        )
    }
}

/// Whether a step's clock is paused (补正 or 特别程序) while the bundle is live: its due time
/// will move by the pause, and it is not late meanwhile.
pub(super) fn clock_paused(agg: &Aggregate) -> bool {
    saga::is_live(agg.bundle.state)
        && agg.steps.iter().any(|s| CaseState::from_str_name(&s.case_state).is_some_and(|c| c.pauses_clock()))
}

/// The bundle's time rules as subscribers see them: due time, waiting on its applicant, clock
/// paused.
pub(super) type Timing = (chrono::DateTime<Utc>, bool, bool);

/// [`Timing`] of `agg`.
pub(super) fn timing(agg: &Aggregate) -> Timing {
    (agg.bundle.due_at, agg.bundle.waiting, clock_paused(agg))
}

/// What a change of the bundle from `state` and `before` to `agg` tells subscribers: its new
/// state; else that its clock paused (`paused`) or runs again (`resumed`); else that its due
/// time moved or its applicant is waited on or no longer (`rescheduled`); else nothing.
pub(super) fn what_happened(state: BundleState, before: Timing, agg: &Aggregate) -> Option<String> {
    let b = &agg.bundle;
    let now = timing(agg);
    if b.state != state {
        Some(b.state.to_string())
    } else if now.2 != before.2 {
        Some(if now.2 { "paused" } else { "resumed" }.into())
    } else if now != before {
        Some("rescheduled".into())
    } else {
        None
    }
}
