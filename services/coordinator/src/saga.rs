//! The saga of one bundle, as pure rules: how a case's state moves its step, what follows
//! from the steps' states (dependants start, refused prerequisites skip their dependants,
//! a refused required step fails the bundle and withdraws what cannot stand alone), and the
//! bundle's due time from its steps' committed times.

use onething_platform::{
    calendar::{Calendar, Due},
    catalog::{Bundle, Catalog, TimeUnit},
    lifecycle::State as CaseState,
};
use sea_orm::entity::prelude::{DeriveActiveEnum, EnumIter, StringLen};
use std::collections::BTreeMap;

/// Where a step stands, stored by its snake-case name; a stored name that is none of these
/// fails the read (never a default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)", rename_all = "snake_case")]
pub enum Step {
    /// Waiting for its prerequisites.
    Blocked,
    /// To be created at the department (retried with backoff while it is down).
    Pending,
    /// The department has the case.
    InProgress,
    /// Approved (or provisionally approved).
    Done,
    /// Refused by the department.
    Refused,
    /// Its open case is to be withdrawn (the bundle failed or was withdrawn).
    Cancelling,
    /// Withdrawn.
    Cancelled,
    /// Never started: a prerequisite was refused.
    Skipped,
}

impl Step {
    /// Whether nothing more happens to the step.
    pub fn is_final(self) -> bool {
        matches!(self, Step::Done | Step::Refused | Step::Cancelled | Step::Skipped)
    }
}

/// Where the bundle stands, stored by its snake-case name (an unknown name fails the read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)", rename_all = "snake_case")]
pub enum BundleState {
    /// Steps are being handled.
    Running,
    /// Every step is done.
    Completed,
    /// A required step was refused.
    Failed,
    /// Withdrawn by the applicant.
    Withdrawn,
}

/// Both are shown (logs, spans, metric labels) by their stored names.
macro_rules! display_by_stored_name {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&sea_orm::ActiveEnum::to_value(self))
            }
        }
    )*};
}
display_by_stored_name!(Step, BundleState);

/// The step a case in `state` puts its step in (when the step is still active).
pub fn step_of_case(state: CaseState) -> Step {
    match state {
        CaseState::Approved | CaseState::ApprovedProvisionally => Step::Done,
        CaseState::NotAccepted | CaseState::Rejected | CaseState::Revoked => Step::Refused,
        CaseState::Withdrawn | CaseState::Cancelled => Step::Cancelled,
        _ => Step::InProgress,
    }
}

/// A step of a running bundle, as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepView {
    /// Step id.
    pub id: String,
    /// State.
    pub state: Step,
    /// Whether the department has a case for it.
    pub has_case: bool,
}

/// What follows from the steps' states: their new states and the bundle's.
pub fn evaluate(def: &Bundle, current: BundleState, steps: &mut [StepView]) -> BundleState {
    let included: Vec<String> = steps.iter().map(|s| s.id.clone()).collect();
    // Dependants of refused or skipped steps are skipped; of done ones, they start.
    loop {
        let snapshot: BTreeMap<String, Step> = steps.iter().map(|s| (s.id.clone(), s.state)).collect();
        let mut changed = false;
        for s in steps.iter_mut().filter(|s| s.state == Step::Blocked) {
            let prereqs: Vec<Step> = def
                .step(&s.id)
                .map(|d| {
                    d.after.iter().filter(|a| included.contains(a)).filter_map(|a| snapshot.get(a).copied()).collect()
                })
                .unwrap_or_default();
            if prereqs.iter().any(|p| matches!(p, Step::Refused | Step::Skipped | Step::Cancelled | Step::Cancelling)) {
                s.state = Step::Skipped;
                changed = true;
            } else if prereqs.iter().all(|p| *p == Step::Done) {
                s.state = Step::Pending;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let required_refused = steps
        .iter()
        .any(|s| matches!(s.state, Step::Refused | Step::Skipped) && def.step(&s.id).is_some_and(|d| !d.optional));
    let next = match current {
        BundleState::Running if required_refused => BundleState::Failed,
        other => other,
    };
    if matches!(next, BundleState::Failed | BundleState::Withdrawn) {
        // Compensation: what cannot stand alone (everything, on withdrawal) stops.
        for s in steps.iter_mut() {
            let stands = next == BundleState::Failed && def.step(&s.id).is_some_and(|d| d.stands_alone);
            if stands || s.state.is_final() {
                continue;
            }
            s.state = match (s.state, s.has_case) {
                (Step::InProgress | Step::Pending | Step::Cancelling, true) => Step::Cancelling,
                _ => Step::Cancelled,
            };
        }
    }
    if next == BundleState::Running && steps.iter().all(|s| s.state.is_final()) {
        return BundleState::Completed;
    }
    next
}

/// The bundle's due time: along the longest chain of prerequisites, each step's committed
/// time in working days (clock hours rounded up to days, immediate steps none).
pub fn due(
    def: &Bundle,
    included: &[String],
    catalog: &Catalog,
    calendar: &Calendar,
    start: chrono::DateTime<chrono::Utc>,
) -> Due {
    let mut offset: BTreeMap<&str, u32> = BTreeMap::new();
    for st in def.steps.iter().filter(|s| included.contains(&s.id)) {
        let own = catalog.get(&st.matter).map_or(0, |m| match m.time_unit {
            TimeUnit::Immediate => 0,
            TimeUnit::WorkingDays => m.time_limit,
            TimeUnit::ClockHours => m.time_limit.div_ceil(24),
        });
        let before = st.after.iter().filter_map(|a| offset.get(a.as_str())).max().copied().unwrap_or(0);
        offset.insert(&st.id, before + own);
    }
    calendar.add_working_days(start, offset.values().max().copied().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::load("").unwrap()
    }

    fn views(pairs: &[(&str, Step, bool)]) -> Vec<StepView> {
        pairs.iter().map(|(id, s, c)| StepView { id: (*id).into(), state: *s, has_case: *c }).collect()
    }

    fn states(v: &[StepView]) -> Vec<Step> {
        v.iter().map(|s| s.state).collect()
    }

    #[test]
    fn the_death_fact_gates_the_rest() {
        let c = catalog();
        let def = c.bundle("after_death").unwrap();
        let mut v = views(&[
            ("deregistration", Step::InProgress, true),
            ("driving_licence", Step::Blocked, false),
            ("travel_documents", Step::Blocked, false),
        ]);
        assert_eq!(evaluate(def, BundleState::Running, &mut v), BundleState::Running);
        assert_eq!(states(&v), [Step::InProgress, Step::Blocked, Step::Blocked]);
        v[0].state = Step::Done;
        assert_eq!(evaluate(def, BundleState::Running, &mut v), BundleState::Running);
        assert_eq!(states(&v), [Step::Done, Step::Pending, Step::Pending]);
        v[1].state = Step::Done;
        v[2].state = Step::Done;
        assert_eq!(evaluate(def, BundleState::Running, &mut v), BundleState::Completed);
    }

    #[test]
    fn a_refused_prerequisite_fails_the_bundle_and_skips_the_rest() {
        let c = catalog();
        let def = c.bundle("after_death").unwrap();
        let mut v = views(&[
            ("deregistration", Step::Refused, true),
            ("driving_licence", Step::Blocked, false),
            ("travel_documents", Step::Blocked, false),
        ]);
        assert_eq!(evaluate(def, BundleState::Running, &mut v), BundleState::Failed);
        assert_eq!(states(&v), [Step::Refused, Step::Skipped, Step::Skipped]);
    }

    #[test]
    fn a_refused_required_step_withdraws_what_cannot_stand_alone() {
        let c = catalog();
        let def = c.bundle("enterprise_deregistration").unwrap();
        let mut v =
            views(&[("seal_cancellation", Step::Refused, true), ("vehicle_verification", Step::InProgress, true)]);
        assert_eq!(evaluate(def, BundleState::Running, &mut v), BundleState::Failed);
        assert_eq!(states(&v), [Step::Refused, Step::Cancelling]);
        // Optional steps that stand alone carry on.
        let def = c.bundle("enterprise_opening").unwrap();
        let mut v = views(&[("seal_filing", Step::Refused, true), ("collective_household", Step::InProgress, true)]);
        assert_eq!(evaluate(def, BundleState::Running, &mut v), BundleState::Failed);
        assert_eq!(states(&v), [Step::Refused, Step::InProgress]);
        // An optional step refused does not fail the bundle.
        let mut v = views(&[("seal_filing", Step::Done, true), ("collective_household", Step::Refused, true)]);
        assert_eq!(evaluate(def, BundleState::Running, &mut v), BundleState::Completed);
    }

    #[test]
    fn withdrawal_stops_everything_open() {
        let c = catalog();
        let def = c.bundle("after_death").unwrap();
        let mut v = views(&[
            ("deregistration", Step::InProgress, true),
            ("driving_licence", Step::Blocked, false),
            ("travel_documents", Step::Blocked, false),
        ]);
        assert_eq!(evaluate(def, BundleState::Withdrawn, &mut v), BundleState::Withdrawn);
        assert_eq!(states(&v), [Step::Cancelling, Step::Cancelled, Step::Cancelled]);
    }

    #[test]
    fn the_bundle_is_due_along_its_longest_chain() {
        let c = catalog();
        let cal = Calendar::builtin();
        let def = c.bundle("after_death").unwrap();
        let all: Vec<String> = def.steps.iter().map(|s| s.id.clone()).collect();
        let start = chrono::TimeZone::with_ymd_and_hms(&onething_platform::calendar::china(), 2026, 11, 23, 9, 0, 0)
            .unwrap()
            .to_utc();
        // Deregistration 1 working day, then the cancellations 1 each: 2 working days.
        assert_eq!(due(def, &all, &c, &cal, start).at, cal.add_working_days(start, 2).at);
        let ent = c.bundle("enterprise_operating").unwrap();
        let both = vec!["hotel_licence".to_string(), "precursor_filing".to_string()];
        assert_eq!(due(ent, &both, &c, &cal, start).at, cal.add_working_days(start, 10).at, "parallel: the longest");
    }

    #[test]
    fn cases_move_steps() {
        assert_eq!(step_of_case(CaseState::ApprovedProvisionally), Step::Done);
        assert_eq!(step_of_case(CaseState::NotAccepted), Step::Refused);
        assert_eq!(step_of_case(CaseState::Accepted), Step::InProgress);
        assert_eq!(step_of_case(CaseState::Cancelled), Step::Cancelled);
    }
}
