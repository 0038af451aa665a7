//! What a reader sees of a bundle: its applicant everything; the staff of a department
//! with a step in it their own steps, the others' states only, the applicant masked;
//! supervision everything masked unless its role needs personal data; no one else anything.

use crate::{
    engine::Aggregate,
    saga::{BundleState, Step},
};
use onething_platform::{
    auth::{Principal, SubjectKind},
    authz,
    cases::timestamp,
    ids::{mask_id, mask_name, mask_phone},
    lifecycle::State as CaseState,
    store::case::ApplicantKind,
};
use onething_proto::{common as cpb, coordinator as pb};

/// A reader's view of one bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum View {
    /// Its applicant (or a service acting for them), and supervision with the personal-data
    /// role; a window clerk who entered a bundle sees it so in the submit's answer alone.
    Full,
    /// Staff of this department, which has a step in the bundle.
    Department(String),
    /// Supervision staff without the personal-data role: states, times and reasons.
    Masked,
}

impl View {
    /// Whether `p` may ask for bundles at all (before any is looked up): applicants and
    /// staff, and — where `acting` (GetBundle: supervision checking a rater owns what they
    /// rate) — a service acting for an applicant. A service on its own reads none, and an
    /// on-behalf token lists and watches nothing.
    pub fn may_ask(p: &Principal, acting: bool) -> bool {
        let reader = if acting { authz::acting_for(p).unwrap_or(p) } else { p };
        reader.kind.is_applicant() || reader.kind == SubjectKind::Staff
    }

    /// The view `p` has of `agg`, or `None` when `p` may not see it.
    pub fn of(p: &Principal, agg: &Aggregate) -> Option<Self> {
        let reader = authz::acting_for(p).unwrap_or(p);
        if owns(reader, agg) {
            return Some(Self::Full);
        }
        if authz::is_supervision(reader) {
            return Some(if authz::sees_personal_data(reader) { Self::Full } else { Self::Masked });
        }
        let in_it = reader.kind == SubjectKind::Staff && agg.steps.iter().any(|s| s.department == reader.dept);
        in_it.then(|| Self::Department(reader.dept.clone()))
    }

    /// `agg` as this view shows it.
    pub fn show(&self, agg: &Aggregate) -> pb::Bundle {
        let mut b = to_proto(agg);
        if *self == Self::Full {
            return b;
        }
        if let Some(a) = b.applicant.as_mut() {
            a.identifier = mask_id(&a.identifier);
            a.name = mask_name(&a.name);
            a.phone = mask_phone(&a.phone);
        }
        for s in &mut b.steps {
            match self {
                Self::Department(d) if *d == s.department => {}
                Self::Department(_) => {
                    // Another department's case: that it moves, not what it holds.
                    s.case_id.clear();
                    s.result.clear();
                    s.reason.clear();
                }
                // Results hold permit and licence numbers; states and reasons are what
                // supervision watches.
                _ => s.result.clear(),
            }
        }
        b
    }
}

/// Whether `p` is the bundle's applicant (kind and identifier).
pub fn owns(p: &Principal, agg: &Aggregate) -> bool {
    p.applicant().is_some_and(|(kind, id)| {
        ApplicantKind::from_proto(kind) == agg.bundle.applicant_kind && id == agg.bundle.applicant_identifier
    })
}

/// The API state of a bundle.
pub fn state_pb(s: BundleState) -> pb::BundleState {
    match s {
        BundleState::Running => pb::BundleState::Running,
        BundleState::Completed => pb::BundleState::Completed,
        BundleState::CompletedProvisionally => pb::BundleState::CompletedProvisionally,
        BundleState::Failed => pb::BundleState::Failed,
        BundleState::Withdrawn => pb::BundleState::Withdrawn,
    }
}

/// The API state of a step.
fn step_pb(s: Step) -> pb::StepState {
    match s {
        Step::Blocked => pb::StepState::Blocked,
        Step::Pending => pb::StepState::Pending,
        Step::InProgress | Step::Cancelling => pb::StepState::InProgress,
        Step::Done => pb::StepState::Done,
        Step::Provisional => pb::StepState::Provisional,
        Step::Revoking => pb::StepState::Revoking,
        Step::Revoked => pb::StepState::Revoked,
        Step::Refused => pb::StepState::Refused,
        Step::Cancelled => pb::StepState::Cancelled,
        Step::Skipped => pb::StepState::Skipped,
    }
}

/// The whole API message of a bundle (what its applicant sees).
pub fn to_proto(a: &Aggregate) -> pb::Bundle {
    let b = &a.bundle;
    pb::Bundle {
        bundle_id: b.id.clone(),
        code: b.code.clone(),
        state: state_pb(b.state) as i32,
        applicant: Some(cpb::Applicant {
            kind: b.applicant_kind.to_proto() as i32,
            identifier: b.applicant_identifier.clone(),
            name: b.applicant_name.clone(),
            phone: b.applicant_phone.clone(),
        }),
        steps: a
            .steps
            .iter()
            .map(|s| pb::BundleStep {
                step_id: s.step_id.clone(),
                matter_code: s.matter_code.clone(),
                department: s.department.clone(),
                state: step_pb(s.state) as i32,
                case_id: s.case_id.clone(),
                case_state: CaseState::from_str_name(&s.case_state)
                    .map_or(cpb::CaseState::Unspecified, CaseState::to_proto) as i32,
                reason: if s.state == Step::Cancelling { "withdrawing".into() } else { s.reason.clone() },
                result: s.result.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                due_time: s.due_at.map(timestamp),
                owed_materials: s.owed.to_vec(),
                owed_by: s.owed_by.map(timestamp),
                waiting_on_applicant: s.waiting,
            })
            .collect(),
        due_time: Some(timestamp(b.due_at)),
        version: b.version,
        create_time: Some(timestamp(b.created_at)),
        update_time: Some(timestamp(b.updated_at)),
        waiting_on_applicant: b.waiting,
    }
}
