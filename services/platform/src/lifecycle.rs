//! The case lifecycle every matter shares (DESIGN.md, "The case lifecycle"): states, the
//! actions clerks, applicants and the coordinator take, and which action is legal where.
//! Pure: departments add their rules around it, never new transitions.

use onething_proto::common::CaseState as Proto;
use sea_orm::entity::prelude::{DeriveActiveEnum, EnumIter, StringLen};
use std::fmt;

/// A case state. See the proto `onething.common.v1.CaseState` for meanings. Stored by
/// [`State::as_str`]'s name; a stored name that is none of these fails the read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)", rename_all = "snake_case")]
pub enum State {
    /// 已申请.
    Submitted,
    /// 已受理; the clock runs.
    Accepted,
    /// 补正; the clock is paused.
    AwaitingSupplement,
    /// 特别程序; the clock is paused.
    SpecialProcedure,
    /// 办结·通过.
    Approved,
    /// 办结·容缺通过.
    ApprovedProvisionally,
    /// 办结·不通过.
    Rejected,
    /// 不予受理.
    NotAccepted,
    /// Withdrawn by the applicant.
    Withdrawn,
    /// Cancelled by compensation.
    Cancelled,
    /// An approval revoked: the owed 容缺 material came too late, or the bundle's
    /// compensation undid it.
    Revoked,
}

/// What someone does to a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Clerk or automatic intake accepts (受理).
    Accept,
    /// Intake refuses (不予受理).
    NotAccept,
    /// Decision: approved.
    Approve,
    /// Decision: approved with a 容缺 material owed.
    ApproveProvisionally,
    /// Decision: rejected.
    Reject,
    /// A supplement (补正) is asked for, with everything missing or wrong listed at once
    /// (一次性告知): at intake for missing materials, or by a clerk after acceptance.
    RequestSupplement,
    /// Applicant supplies what a clerk asked for after acceptance; back to accepted.
    SupplyMaterials,
    /// Applicant supplies what intake found missing; back to submitted, and intake runs again.
    SupplyForIntake,
    /// A special procedure starts (e.g. on-site inspection).
    StartSpecialProcedure,
    /// The special procedure ends; back to accepted.
    EndSpecialProcedure,
    /// The owed 容缺 material arrived: provisional becomes final.
    CompleteOwed,
    /// An approval undone: the owed 容缺 material's deadline passed, or the coordinator
    /// compensates a bundle whose definition says this step may not stand alone.
    Revoke,
    /// The applicant withdraws.
    Withdraw,
    /// The coordinator's compensation cancels.
    Cancel,
}

/// An action that is not legal in a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action:?} a case that is {from}")]
pub struct IllegalTransition {
    /// The state the case was in.
    pub from: State,
    /// The action refused.
    pub action: Action,
}

impl State {
    /// Every state, for exhaustive tests and documentation.
    pub const ALL: [State; 11] = [
        State::Submitted,
        State::Accepted,
        State::AwaitingSupplement,
        State::SpecialProcedure,
        State::Approved,
        State::ApprovedProvisionally,
        State::Rejected,
        State::NotAccepted,
        State::Withdrawn,
        State::Cancelled,
        State::Revoked,
    ];

    /// Open states: the case is still being handled and can be withdrawn or cancelled.
    pub fn is_open(self) -> bool {
        matches!(self, State::Submitted | State::Accepted | State::AwaitingSupplement | State::SpecialProcedure)
    }

    /// Whether the committed-time clock is paused in this state.
    pub fn pauses_clock(self) -> bool {
        matches!(self, State::AwaitingSupplement | State::SpecialProcedure)
    }

    /// Whether the case is finished (no further action but those on a provisional approval).
    pub fn is_final(self) -> bool {
        !self.is_open()
    }

    /// The state an action leads to from here.
    ///
    /// # Errors
    /// [`IllegalTransition`] when the action is not allowed in this state.
    pub fn apply(self, action: Action) -> Result<State, IllegalTransition> {
        use Action as A;
        use State as S;
        let to = match (self, action) {
            (S::Submitted, A::Accept) => S::Accepted,
            (S::Submitted, A::NotAccept) => S::NotAccepted,
            (S::Submitted, A::RequestSupplement) => S::AwaitingSupplement,
            // The supplement did not come in time: before acceptance it is not accepted,
            // after acceptance rejected.
            (S::AwaitingSupplement, A::NotAccept) => S::NotAccepted,
            (S::AwaitingSupplement, A::Reject) => S::Rejected,
            (S::AwaitingSupplement, A::SupplyForIntake) => S::Submitted,
            (S::Accepted, A::Approve) => S::Approved,
            (S::Accepted, A::ApproveProvisionally) => S::ApprovedProvisionally,
            (S::Accepted, A::Reject) => S::Rejected,
            (S::Accepted, A::RequestSupplement) => S::AwaitingSupplement,
            (S::AwaitingSupplement, A::SupplyMaterials) => S::Accepted,
            (S::Accepted, A::StartSpecialProcedure) => S::SpecialProcedure,
            (S::SpecialProcedure, A::EndSpecialProcedure) => S::Accepted,
            (S::ApprovedProvisionally, A::CompleteOwed) => S::Approved,
            (S::ApprovedProvisionally | S::Approved, A::Revoke) => S::Revoked,
            (s, A::Withdraw) if s.is_open() => S::Withdrawn,
            (s, A::Cancel) if s.is_open() => S::Cancelled,
            (from, action) => return Err(IllegalTransition { from, action }),
        };
        Ok(to)
    }

    /// The lowercase snake name used in event subjects and storage, e.g. `not_accepted`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Submitted => "submitted",
            State::Accepted => "accepted",
            State::AwaitingSupplement => "awaiting_supplement",
            State::SpecialProcedure => "special_procedure",
            State::Approved => "approved",
            State::ApprovedProvisionally => "approved_provisionally",
            State::Rejected => "rejected",
            State::NotAccepted => "not_accepted",
            State::Withdrawn => "withdrawn",
            State::Cancelled => "cancelled",
            State::Revoked => "revoked",
        }
    }

    /// Parses [`State::as_str`]'s form.
    pub fn from_str_name(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The proto enum value.
    pub fn to_proto(self) -> Proto {
        match self {
            State::Submitted => Proto::Submitted,
            State::Accepted => Proto::Accepted,
            State::AwaitingSupplement => Proto::AwaitingSupplement,
            State::SpecialProcedure => Proto::SpecialProcedure,
            State::Approved => Proto::Approved,
            State::ApprovedProvisionally => Proto::ApprovedProvisionally,
            State::Rejected => Proto::Rejected,
            State::NotAccepted => Proto::NotAccepted,
            State::Withdrawn => Proto::Withdrawn,
            State::Cancelled => Proto::Cancelled,
            State::Revoked => Proto::Revoked,
        }
    }

    /// From the proto enum; `None` for UNSPECIFIED.
    pub fn from_proto(p: Proto) -> Option<State> {
        State::ALL.into_iter().find(|s| s.to_proto() == p)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::{Action as A, State as S};

    #[test]
    fn the_stored_name_is_the_subject_name() {
        for s in S::ALL {
            assert_eq!(sea_orm::ActiveEnum::to_value(&s), s.as_str());
        }
        for u in <crate::catalog::TimeUnit as sea_orm::Iterable>::iter() {
            assert_eq!(sea_orm::ActiveEnum::to_value(&u), u.as_str());
        }
    }

    const ACTIONS: [A; 14] = [
        A::Accept,
        A::NotAccept,
        A::Approve,
        A::ApproveProvisionally,
        A::Reject,
        A::RequestSupplement,
        A::SupplyMaterials,
        A::SupplyForIntake,
        A::StartSpecialProcedure,
        A::EndSpecialProcedure,
        A::CompleteOwed,
        A::Revoke,
        A::Withdraw,
        A::Cancel,
    ];

    /// The complete table of DESIGN.md; every pair not listed must be refused.
    const ALLOWED: &[(S, A, S)] = &[
        (S::Submitted, A::Accept, S::Accepted),
        (S::Submitted, A::NotAccept, S::NotAccepted),
        (S::Submitted, A::RequestSupplement, S::AwaitingSupplement),
        (S::Submitted, A::Withdraw, S::Withdrawn),
        (S::Submitted, A::Cancel, S::Cancelled),
        (S::Accepted, A::Approve, S::Approved),
        (S::Accepted, A::ApproveProvisionally, S::ApprovedProvisionally),
        (S::Accepted, A::Reject, S::Rejected),
        (S::Accepted, A::RequestSupplement, S::AwaitingSupplement),
        (S::Accepted, A::StartSpecialProcedure, S::SpecialProcedure),
        (S::Accepted, A::Withdraw, S::Withdrawn),
        (S::Accepted, A::Cancel, S::Cancelled),
        (S::AwaitingSupplement, A::SupplyMaterials, S::Accepted),
        (S::AwaitingSupplement, A::SupplyForIntake, S::Submitted),
        (S::AwaitingSupplement, A::NotAccept, S::NotAccepted),
        (S::AwaitingSupplement, A::Reject, S::Rejected),
        (S::AwaitingSupplement, A::Withdraw, S::Withdrawn),
        (S::AwaitingSupplement, A::Cancel, S::Cancelled),
        (S::SpecialProcedure, A::EndSpecialProcedure, S::Accepted),
        (S::SpecialProcedure, A::Withdraw, S::Withdrawn),
        (S::SpecialProcedure, A::Cancel, S::Cancelled),
        (S::ApprovedProvisionally, A::CompleteOwed, S::Approved),
        (S::ApprovedProvisionally, A::Revoke, S::Revoked),
        (S::Approved, A::Revoke, S::Revoked),
    ];

    #[test]
    fn every_transition_allowed_and_refused() {
        let mut checked = 0;
        for from in S::ALL {
            for action in ACTIONS {
                let expected = ALLOWED.iter().find(|(f, a, _)| *f == from && *a == action).map(|(_, _, to)| *to);
                match (from.apply(action), expected) {
                    (Ok(to), Some(want)) => assert_eq!(to, want, "{from:?} --{action:?}"),
                    (Err(e), None) => {
                        assert_eq!(e.from, from);
                        assert_eq!(e.action, action);
                    }
                    (got, want) => panic!("{from:?} --{action:?}: got {got:?}, want {want:?}"),
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 11 * 14);
    }

    #[test]
    fn names_and_proto_round_trip() {
        for s in S::ALL {
            assert_eq!(S::from_str_name(s.as_str()), Some(s));
            assert_eq!(S::from_proto(s.to_proto()), Some(s));
        }
        assert_eq!(S::from_proto(onething_proto::common::CaseState::Unspecified), None);
    }

    #[test]
    fn clock_pauses_only_in_supplement_and_special_procedure() {
        let paused: Vec<S> = S::ALL.into_iter().filter(|s| s.pauses_clock()).collect();
        assert_eq!(paused, vec![S::AwaitingSupplement, S::SpecialProcedure]);
    }
}
