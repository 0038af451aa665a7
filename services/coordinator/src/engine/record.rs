//! What the departments say about a step's case, recorded on the step: the case's state and
//! version (an older version changes nothing), its result once fetched, and its time rules
//! — the case's due time while it is open, what it owes or was asked for and by when,
//! whether it waits on the applicant.

use super::*;

/// One report of a step's case: a department's event or its answer to a call.
pub(super) struct CaseNews<'a> {
    /// The department's case id.
    pub case_id: &'a str,
    /// The case's state in the department.
    pub state: CaseState,
    /// The case's version; older news than the step holds is ignored.
    pub version: i64,
    /// The stable reason code of the last change (empty when none).
    pub reason: &'a str,
    /// The result fields (answers carry them; events never do).
    pub result: Option<&'a std::collections::HashMap<String, String>>,
    /// The case's own due time: its decision, or its owed materials while provisional.
    pub due: Option<chrono::DateTime<Utc>>,
    /// Materials owed after a provisional approval (容缺).
    pub owed: &'a [String],
    /// When an asked-for supplement is due (一次性告知), while the case awaits it.
    pub supplement_due: Option<chrono::DateTime<Utc>>,
}

fn instant(t: Option<&prost_types::Timestamp>) -> Option<chrono::DateTime<Utc>> {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
}

impl<'a> CaseNews<'a> {
    /// A department's event about the case.
    pub(super) fn of_event(e: &'a cpb::CaseStateChanged) -> Option<Self> {
        let state = cpb::CaseState::try_from(e.to_state).ok().and_then(CaseState::from_proto)?;
        Some(Self {
            case_id: &e.case_id,
            state,
            version: e.version,
            reason: &e.reason_code,
            result: None,
            due: instant(e.due_time.as_ref()),
            owed: &e.missing_materials,
            supplement_due: instant(e.supplement_due_time.as_ref()),
        })
    }

    /// A department's answer with the case.
    pub(super) fn of_case(c: &'a cpb::Case) -> Option<Self> {
        let state = cpb::CaseState::try_from(c.state).ok().and_then(CaseState::from_proto)?;
        let rule = c.time_rule.as_ref();
        Some(Self {
            case_id: &c.case_id,
            state,
            version: c.version,
            reason: &c.reason_code,
            result: Some(&c.result),
            due: instant(rule.and_then(|r| r.due_time.as_ref())),
            owed: &c.missing_materials,
            supplement_due: instant(rule.and_then(|r| r.supplement_due_time.as_ref())),
        })
    }
}

/// Records the answer to a step's CreateCase. The case's own events may have been
/// recorded first (the step is then in progress with this case): the answer still brings
/// the result, which events never carry. A failure counts only for a step still pending.
pub(super) fn record_created(st: &mut step::Model, outcome: &std::result::Result<cpb::Case, Failure>) {
    let pending = st.state == Step::Pending;
    // Withdrawn (or compensated) while its CreateCase was in flight: the case made a
    // moment later is recorded, and withdrawn in turn (see `record_case`).
    let cancelled_before_its_case = st.state == Step::Cancelled && st.case_id.is_empty();
    match outcome {
        Ok(case)
            if pending || cancelled_before_its_case || (st.state == Step::InProgress && st.case_id == case.case_id) =>
        {
            if let Some(news) = CaseNews::of_case(case) {
                record_case(st, &news);
            }
        }
        Err(f @ (Failure::Retry(_) | Failure::Busy(_))) if pending => f.reschedule(st),
        Err(Failure::Refused(why)) if pending => {
            st.state = Step::Refused;
            st.reason = why.clone();
        }
        _ => {}
    }
}

/// Records what a department said about a step's case. An older version changes
/// nothing, its result included; an answer's result of the version held or a later one is
/// kept whenever it comes. A step is approved only once its result is in: an approval
/// learned from an event (which carries no personal data), or an answer older than it,
/// leaves it in progress until the driver fetches the case. A revocation the coordinator
/// asked for revokes the step; any other refuses it.
pub(super) fn record_case(s: &mut step::Model, news: &CaseNews<'_>) {
    // An answer the event of a later version overtook (the case created, then approved by
    // the department at once): its result is the older case's (none yet), not the approved
    // one's, and must not end the step with it.
    let current = news.version >= s.case_version || s.case_id.is_empty();
    let result = news.result.filter(|_| current);
    if let Some(r) = result {
        set_result(s, r);
    }
    if news.version > s.case_version || s.case_id.is_empty() {
        s.case_id = news.case_id.to_string();
        s.case_state = news.state.as_str().into();
        s.case_version = news.version;
        s.reason = news.reason.to_string();
        record_time_rules(s, news);
    }
    let known = CaseState::from_str_name(&s.case_state).unwrap_or(news.state);
    let behind = saga::step_of_case(known);
    if s.state == Step::Cancelled && (!behind.is_settled() || behind.lets_dependants_start()) {
        // A case still open, or already approved (an automatic matter), behind a cancelled
        // step (its CreateCase answered, or its event came, after the withdrawal): the
        // driver withdraws it, or finds it approved and the bundle's rules revoke what may
        // not stand, so no case and no approval is orphaned.
        s.state = Step::Cancelling;
        s.attempts = 0;
        s.next_attempt_at = Utc::now();
        return;
    }
    if s.state == Step::Revoking && known == CaseState::Revoked {
        s.state = Step::Revoked;
        return;
    }
    if matches!(s.state, Step::Pending | Step::InProgress | Step::Provisional) {
        s.state = match saga::step_of_case(known) {
            Step::Done | Step::Provisional if result.is_none() && awaiting_result(s) => Step::InProgress,
            other => other,
        };
    }
}

/// What an approved case brings its step when the step learns of the approval from a
/// withdrawal or revocation that found it (not from the create answer or an event): its
/// result for the applicant, and what it owes by when.
pub(super) fn record_decided(s: &mut step::Model, case: &cpb::Case) {
    if let Some(news) = CaseNews::of_case(case) {
        set_result(s, &case.result);
        record_time_rules(s, &news);
    }
}

/// The case's result fields, for the applicant, on its step.
fn set_result(s: &mut step::Model, result: &std::collections::HashMap<String, String>) {
    s.result = result.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<BTreeMap<_, _>>().into();
}

/// The case's time rules on its step: its due time while open (a decision keeps the last),
/// what it owes (容缺: by the owed deadline) or was asked for (补正: by the supplement's),
/// and whether it waits on the applicant.
fn record_time_rules(s: &mut step::Model, news: &CaseNews<'_>) {
    if news.state.is_open() && news.due.is_some() {
        s.due_at = news.due;
    }
    s.waiting = news.state == CaseState::AwaitingSupplement;
    (s.owed, s.owed_by) = match news.state {
        CaseState::AwaitingSupplement => (news.owed.to_vec().into(), news.supplement_due),
        CaseState::ApprovedProvisionally => (news.owed.to_vec().into(), news.due),
        _ => (Vec::new().into(), None),
    };
}

/// An approved case whose result the coordinator has not fetched yet.
pub(super) fn awaiting_result(s: &step::Model) -> bool {
    s.result.is_empty()
        && matches!(
            CaseState::from_str_name(&s.case_state),
            Some(CaseState::Approved | CaseState::ApprovedProvisionally)
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step() -> step::Model {
        step::Model {
            bundle_id: "b".into(),
            step_id: "driving_licence".into(),
            matter_code: "vehicle.driving_licence_cancellation".into(),
            department: "vehicle".into(),
            state: Step::InProgress,
            case_id: String::new(),
            case_state: String::new(),
            case_version: 0,
            reason: String::new(),
            result: Default::default(),
            attempts: 0,
            next_attempt_at: Utc::now(),
            due_at: None,
            owed: Default::default(),
            owed_by: None,
            waiting: false,
        }
    }

    fn news<'a>(
        state: CaseState,
        version: i64,
        result: Option<&'a std::collections::HashMap<String, String>>,
    ) -> CaseNews<'a> {
        CaseNews { case_id: "c", state, version, reason: "", result, due: None, owed: &[], supplement_due: None }
    }

    #[test]
    fn an_answer_overtaken_by_the_approval_does_not_end_the_step_without_its_result() {
        let mut s = step();
        // The approval's event (version 3) first, then the CreateCase answer of version 2
        // (accepted, waiting for the death fact, no result yet).
        record_case(&mut s, &news(CaseState::Approved, 3, None));
        assert_eq!(s.state, Step::InProgress, "an event brings no result");
        let empty = std::collections::HashMap::new();
        record_case(&mut s, &news(CaseState::Accepted, 2, Some(&empty)));
        assert_eq!(s.state, Step::InProgress, "the older answer's empty result ends nothing");
        // The driver's fetch of version 3 brings the result.
        let result = std::collections::HashMap::from([("cancelled_count".to_string(), "1".to_string())]);
        record_case(&mut s, &news(CaseState::Approved, 3, Some(&result)));
        assert_eq!(s.state, Step::Done);
        assert!(!awaiting_result(&s));
    }
}
