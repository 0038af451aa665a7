//! The saga of one bundle, as pure rules: how a case's state moves its step, what follows
//! from the steps' states (dependants start, refused prerequisites skip their dependants,
//! a refused required step fails the bundle and withdraws or revokes what cannot stand
//! alone, a withdrawal stops what is open and revokes what cannot stand without the
//! required steps), and the bundle's due time from its steps' committed times.

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
    /// Approved.
    Done,
    /// Approved provisionally: a 容缺 material is owed. Done when it arrives; refused (and
    /// compensated like any refusal) when its deadline passes.
    Provisional,
    /// Approved, but the bundle failed (or was withdrawn before its required steps were
    /// approved) and this step may not stand alone: its approval is being revoked at the
    /// department.
    Revoking,
    /// Its approval was revoked, its effects undone (compensation).
    Revoked,
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
        matches!(self, Step::Done | Step::Refused | Step::Cancelled | Step::Skipped | Step::Revoked)
    }

    /// Whether the step is decided: final, or approved while a material is owed.
    pub fn is_settled(self) -> bool {
        self.is_final() || self == Step::Provisional
    }

    /// Whether steps that wait for this one may start: it was approved (provisionally too).
    pub fn lets_dependants_start(self) -> bool {
        matches!(self, Step::Done | Step::Provisional)
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
    /// Every step decided, at least one approved provisionally (容缺): completed once the
    /// owed materials arrive, failed when one misses its deadline.
    CompletedProvisionally,
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

/// The step a case in `state` puts its step in (when the step is still active). A revoked
/// case refuses its step: its owed material came too late (a revocation the coordinator
/// asked for is recorded as [`Step::Revoked`] by the engine).
pub fn step_of_case(state: CaseState) -> Step {
    match state {
        CaseState::Approved => Step::Done,
        CaseState::ApprovedProvisionally => Step::Provisional,
        CaseState::NotAccepted | CaseState::Rejected | CaseState::Revoked => Step::Refused,
        CaseState::Withdrawn | CaseState::Cancelled => Step::Cancelled,
        _ => Step::InProgress,
    }
}

/// Whether the bundle is still being handled (its steps may start, be decided or owe).
pub fn is_live(state: BundleState) -> bool {
    matches!(state, BundleState::Running | BundleState::CompletedProvisionally)
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
    /// Whether its department said its approval cannot be revoked (`CASE_NOT_REVOCABLE`):
    /// it stands, and is never asked to be revoked again.
    pub kept: bool,
}

impl StepView {
    /// Whether the step's approval may be revoked by compensation: it has a case and its
    /// department did not say the approval stands.
    fn revocable(&self) -> bool {
        self.has_case && !self.kept
    }
}

/// What follows from the steps' states: their new states and the bundle's.
pub fn evaluate(def: &Bundle, current: BundleState, steps: &mut [StepView]) -> BundleState {
    unblock(def, steps);
    // A required step refused, skipped, or withdrawn on its own (its case withdrawn at the
    // department): the bundle cannot complete.
    let required_refused = steps.iter().any(|s| {
        matches!(s.state, Step::Refused | Step::Skipped | Step::Cancelled)
            && def.step(&s.id).is_some_and(|d| !d.optional)
    });
    let next = if is_live(current) && required_refused { BundleState::Failed } else { current };
    match next {
        BundleState::Failed => compensate(def, steps),
        BundleState::Withdrawn => withdraw(def, steps),
        _ => {}
    }
    if !is_live(next) {
        return next;
    }
    if steps.iter().all(|s| s.state.is_final()) {
        BundleState::Completed
    } else if steps.iter().all(|s| s.state.is_settled()) {
        BundleState::CompletedProvisionally
    } else {
        BundleState::Running
    }
}

/// Dependants of refused or skipped steps are skipped; of approved ones, they start.
fn unblock(def: &Bundle, steps: &mut [StepView]) {
    let included: Vec<String> = steps.iter().map(|s| s.id.clone()).collect();
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
            if prereqs.iter().any(|p| {
                matches!(
                    p,
                    Step::Refused | Step::Skipped | Step::Cancelled | Step::Cancelling | Step::Revoking | Step::Revoked
                )
            }) {
                s.state = Step::Skipped;
                changed = true;
            } else if prereqs.iter().all(|p| p.lets_dependants_start()) {
                s.state = Step::Pending;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
}

/// Compensation of a failed bundle: what may not stand alone stops — an open step is
/// withdrawn (its case cancelled), an approved one (provisionally too) revoked.
fn compensate(def: &Bundle, steps: &mut [StepView]) {
    for s in steps.iter_mut() {
        if def.step(&s.id).is_some_and(|d| d.stands_alone) {
            continue;
        }
        s.state = match (s.state, s.has_case) {
            (Step::Done | Step::Provisional, true) if s.revocable() => Step::Revoking,
            (Step::InProgress | Step::Pending | Step::Cancelling, true) => Step::Cancelling,
            (Step::Blocked | Step::Pending | Step::InProgress, false) => Step::Cancelled,
            (other, _) => other,
        };
    }
}

/// The applicant withdrew: every open step stops. What was decided stays decided while the
/// bundle's required steps are all approved (the withdrawal only gives up the optional
/// rest); otherwise an approved step that may not stand alone is revoked, as when the
/// bundle fails (withdrawn before its licence was decided, no filing that needs the
/// licence stands).
fn withdraw(def: &Bundle, steps: &mut [StepView]) {
    let required: Vec<Step> =
        steps.iter().filter(|s| def.step(&s.id).is_some_and(|d| !d.optional)).map(|s| s.state).collect();
    // Revoked only once every required step's withdrawal has ended: one approved meanwhile
    // (the approver was quicker) lets what was decided stand.
    let required_settled = required.iter().all(|s| s.is_settled());
    let required_approved = required.iter().all(|s| s.lets_dependants_start());
    for s in steps.iter_mut().filter(|s| !matches!(s.state, Step::Revoking)) {
        let stands_alone = required_approved || def.step(&s.id).is_some_and(|d| d.stands_alone);
        s.state = match (s.state, s.has_case) {
            (Step::Done | Step::Provisional, true) if !stands_alone && required_settled && s.revocable() => {
                Step::Revoking
            }
            (settled, _) if settled.is_settled() => settled,
            (Step::InProgress | Step::Pending | Step::Cancelling, true) => Step::Cancelling,
            _ => Step::Cancelled,
        };
    }
}

/// The bundle's due time from `start` (its submission): the latest of its steps' due
/// times — a step's case's own when `known` has it (moved by its pauses), else estimated
/// from its committed time after its prerequisites (clock hours as hours, 即办 by the close
/// of that working day).
pub fn due(
    def: &Bundle,
    included: &[String],
    catalog: &Catalog,
    calendar: &Calendar,
    start: chrono::DateTime<chrono::Utc>,
    known: &BTreeMap<String, chrono::DateTime<chrono::Utc>>,
) -> Due {
    let mut at: BTreeMap<&str, chrono::DateTime<chrono::Utc>> = BTreeMap::new();
    let mut provisional = false;
    for st in def.steps.iter().filter(|s| included.contains(&s.id)) {
        let due = match known.get(&st.id) {
            Some(d) => *d,
            None => {
                let from = st.after.iter().filter_map(|a| at.get(a.as_str())).max().copied().unwrap_or(start);
                let (unit, limit) =
                    catalog.get(&st.matter).map_or((TimeUnit::Immediate, 0), |m| (m.time_unit, m.time_limit));
                let d = calendar.due(from, unit, limit);
                provisional |= d.provisional;
                d.at
            }
        };
        at.insert(&st.id, due);
    }
    Due { at: at.values().max().copied().unwrap_or(start), provisional }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::load("").unwrap()
    }

    fn views(pairs: &[(&str, Step, bool)]) -> Vec<StepView> {
        pairs.iter().map(|(id, s, c)| StepView { id: (*id).into(), state: *s, has_case: *c, kept: false }).collect()
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
        let none = BTreeMap::new();
        // Deregistration 1 working day, then the cancellations 1 each: 2 working days.
        assert_eq!(due(def, &all, &c, &cal, start, &none).at, cal.add_working_days(start, 2).at);
        let ent = c.bundle("enterprise_operating").unwrap();
        let both = vec!["hotel_licence".to_string(), "precursor_filing".to_string()];
        assert_eq!(
            due(ent, &both, &c, &cal, start, &none).at,
            cal.add_working_days(start, 10).at,
            "parallel: the longest"
        );
        // The precursor filing alone: 24 clock hours, not a day rounded up.
        let filing = vec!["precursor_filing".to_string()];
        assert_eq!(due(ent, &filing, &c, &cal, start, &none).at, start + chrono::Duration::hours(24));
        // A step's case paused: its own due time, moved, counts; its dependants follow it.
        let moved = cal.add_working_days(start, 4).at;
        let known = BTreeMap::from([("deregistration".to_string(), moved)]);
        assert_eq!(due(def, &all, &c, &cal, start, &known).at, cal.add_working_days(moved, 1).at);
    }

    #[test]
    fn a_provisional_step_completes_the_bundle_provisionally_and_then_either_way() {
        let c = catalog();
        let def = c.bundle("enterprise_operating").unwrap();
        let mut v = views(&[("hotel_licence", Step::Provisional, true), ("precursor_filing", Step::Done, true)]);
        assert_eq!(evaluate(def, BundleState::Running, &mut v), BundleState::CompletedProvisionally);
        // The owed material arrives.
        let mut done = v.clone();
        done[0].state = Step::Done;
        assert_eq!(evaluate(def, BundleState::CompletedProvisionally, &mut done), BundleState::Completed);
        // Or its deadline passes: the hotel licence is refused, the approved filing that may
        // not stand alone is revoked.
        v[0].state = Step::Refused;
        assert_eq!(evaluate(def, BundleState::CompletedProvisionally, &mut v), BundleState::Failed);
        assert_eq!(states(&v), [Step::Refused, Step::Revoking]);
        v[1].state = Step::Revoked;
        assert_eq!(evaluate(def, BundleState::Failed, &mut v), BundleState::Failed);
    }

    #[test]
    fn a_refusal_after_an_approval_revokes_what_may_not_stand_alone() {
        let c = catalog();
        let def = c.bundle("enterprise_operating").unwrap();
        let mut v = views(&[("hotel_licence", Step::Refused, true), ("precursor_filing", Step::Done, true)]);
        assert_eq!(evaluate(def, BundleState::Running, &mut v), BundleState::Failed);
        assert_eq!(states(&v), [Step::Refused, Step::Revoking]);
        // A provisional dependency lets dependants start.
        let death = c.bundle("after_death").unwrap();
        let mut v = views(&[
            ("deregistration", Step::Provisional, true),
            ("driving_licence", Step::Blocked, false),
            ("travel_documents", Step::Blocked, false),
        ]);
        assert_eq!(evaluate(death, BundleState::Running, &mut v), BundleState::Running);
        assert_eq!(states(&v), [Step::Provisional, Step::Pending, Step::Pending]);
    }

    #[test]
    fn withdrawal_revokes_only_what_cannot_stand_alone() {
        let c = catalog();
        let def = c.bundle("enterprise_operating").unwrap();
        let mut v = views(&[("hotel_licence", Step::InProgress, true), ("precursor_filing", Step::Done, true)]);
        assert_eq!(evaluate(def, BundleState::Withdrawn, &mut v), BundleState::Withdrawn);
        assert_eq!(states(&v), [Step::Cancelling, Step::Done], "the licence's withdrawal ends first");
        v[0].state = Step::Cancelled;
        assert_eq!(evaluate(def, BundleState::Withdrawn, &mut v), BundleState::Withdrawn);
        assert_eq!(states(&v), [Step::Cancelled, Step::Revoking]);
        // The approver was quicker than the withdrawal: the licence and its filing stand.
        let mut v = views(&[("hotel_licence", Step::Done, true), ("precursor_filing", Step::Done, true)]);
        assert_eq!(evaluate(def, BundleState::Withdrawn, &mut v), BundleState::Withdrawn);
        assert_eq!(states(&v), [Step::Done, Step::Done]);
        // The licence's case withdrawn on its own at the department: the bundle fails and
        // the filing is revoked.
        let mut v = views(&[("hotel_licence", Step::Cancelled, true), ("precursor_filing", Step::Done, true)]);
        assert_eq!(evaluate(def, BundleState::Running, &mut v), BundleState::Failed);
        assert_eq!(states(&v), [Step::Cancelled, Step::Revoking]);
        // The licence granted, only the optional filing given up: the licence stays.
        let mut v = views(&[("hotel_licence", Step::Done, true), ("precursor_filing", Step::InProgress, true)]);
        assert_eq!(evaluate(def, BundleState::Withdrawn, &mut v), BundleState::Withdrawn);
        assert_eq!(states(&v), [Step::Done, Step::Cancelling]);
        let death = c.bundle("after_death").unwrap();
        let mut v = views(&[
            ("deregistration", Step::Done, true),
            ("driving_licence", Step::InProgress, true),
            ("travel_documents", Step::Pending, false),
        ]);
        assert_eq!(evaluate(death, BundleState::Withdrawn, &mut v), BundleState::Withdrawn);
        assert_eq!(states(&v), [Step::Done, Step::Cancelling, Step::Cancelled]);
    }

    #[test]
    fn an_approval_its_department_keeps_is_not_asked_again() {
        let c = catalog();
        let def = c.bundle("enterprise_operating").unwrap();
        let mut v = views(&[("hotel_licence", Step::Refused, true), ("precursor_filing", Step::Done, true)]);
        v[1].kept = true;
        assert_eq!(evaluate(def, BundleState::Running, &mut v), BundleState::Failed);
        assert_eq!(states(&v), [Step::Refused, Step::Done]);
        let mut v = views(&[("hotel_licence", Step::Cancelled, true), ("precursor_filing", Step::Done, true)]);
        v[1].kept = true;
        assert_eq!(evaluate(def, BundleState::Withdrawn, &mut v), BundleState::Withdrawn);
        assert_eq!(states(&v), [Step::Cancelled, Step::Done]);
    }

    #[test]
    fn cases_move_steps() {
        assert_eq!(step_of_case(CaseState::ApprovedProvisionally), Step::Provisional);
        assert_eq!(step_of_case(CaseState::Approved), Step::Done);
        assert_eq!(step_of_case(CaseState::Revoked), Step::Refused);
        assert_eq!(step_of_case(CaseState::NotAccepted), Step::Refused);
        assert_eq!(step_of_case(CaseState::Accepted), Step::InProgress);
        assert_eq!(step_of_case(CaseState::Cancelled), Step::Cancelled);
    }
}
