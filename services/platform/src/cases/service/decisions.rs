//! The decisions a department's approver takes (办结): approve — with the matter's own
//! preconditions and effects, provisionally while a 容缺 material is owed — or reject with a
//! reason. Public, so a department's own API can decide through them (vehicle's inspection
//! result).

use super::*;

impl CaseApi {
    /// Approves an accepted case as `p` (an approver of this department): the matter's
    /// [`super::super::MatterRules::before_approve`] and its effect, in one transaction with
    /// the event.
    ///
    /// # Errors
    /// PERMISSION_DENIED for anyone else; NOT_FOUND; ABORTED when `expected_version` (0:
    /// any) is not the case's; FAILED_PRECONDITION when the case is not accepted or the
    /// matter's preconditions are not met.
    pub async fn approve(&self, p: &Principal, case_id: &str, expected_version: i64) -> Result<CaseRecord> {
        let mut a = self.begin_action(p, "ApproveCase", Need::Decide, case_id, expected_version).await?;
        if a.case.state == State::Accepted {
            let matter = self.catalog_matter(&a.case)?.clone();
            self.decide(&a.txn, &mut a.case, &matter, self.clock().now(), &mut a.events).await?;
        } else {
            // Refused by the lifecycle before the department's effect runs.
            self.step(&mut a.case, Action::Approve, self.clock().now(), &mut a.events)?;
        }
        self.finish_action(a).await
    }

    /// Rejects an accepted case as `p` with a reason `(code, text)`.
    ///
    /// # Errors
    /// As [`Self::approve`]; INVALID_ARGUMENT for a code not in UPPER_SNAKE_CASE.
    pub async fn reject(
        &self,
        p: &Principal,
        case_id: &str,
        (code, text): (&str, &str),
        expected_version: i64,
    ) -> Result<CaseRecord> {
        self.act((p, "RejectCase", Need::Decide), case_id, expected_version, |me, case, ev| {
            check_reason_code(code)?;
            case.reason_code = code.to_string();
            case.reason_text = text.chars().take(500).collect();
            me.step(case, Action::Reject, me.clock().now(), ev)
        })
        .await
    }
}
