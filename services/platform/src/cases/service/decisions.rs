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
    /// any) is not the case's; FAILED_PRECONDITION when the case is not accepted, waits for
    /// a fact from elsewhere (`CASE_NOT_READY`) or the matter's preconditions are not met.
    pub async fn approve(&self, p: &Principal, case_id: &str, expected_version: i64) -> Result<CaseRecord> {
        self.approve_with(p, ("ApproveCase", &[]), case_id, expected_version).await
    }

    /// [`Self::approve`] through a department's own decision RPC `rpc`, which records
    /// `result` fields on the case first, in the same transaction (the matter's
    /// `before_approve` may require them: an inspection's recorded outcome).
    ///
    /// # Errors
    /// As [`Self::approve`].
    pub async fn approve_with(
        &self,
        p: &Principal,
        (rpc, result): (&str, &[(&str, &str)]),
        case_id: &str,
        expected_version: i64,
    ) -> Result<CaseRecord> {
        let mut a = self.begin_action(p, rpc, Need::Decide, case_id, expected_version).await?;
        if a.case.state == State::Accepted {
            // A matter waiting for its fact (a cancellation for a death not yet confirmed)
            // is decided when the fact comes: no approver decides it ahead.
            if !self.rules(&a.case.matter_code)?.ready(&a.txn, &a.case).await? {
                return Err(Error::failed_precondition(
                    Reason::CaseNotReady,
                    "the case waits for the fact it depends on; it is decided when that comes",
                ));
            }
            record(&mut a.case, result);
            let matter = self.catalog_matter(&a.case)?.clone();
            self.decide(&a.txn, &mut a.case, &matter, self.clock().now(), &mut a.events).await?;
        } else {
            // Refused by the lifecycle before the department's effect runs.
            self.step(&mut a.case, Action::Approve, self.clock().now(), &mut a.events)?;
        }
        self.finish_action(a).await
    }

    /// Rejects an accepted case as `p` with a reason `(code, text)`: the approver's own
    /// code, under the department's prefix (`HOUSEHOLD_…`). The codes the mesh declares
    /// (a withdrawal, an overdue supplement, a failed inspection …) only the mesh sets, so
    /// no rejection passes for one of them.
    ///
    /// # Errors
    /// As [`Self::approve`]; INVALID_ARGUMENT for a code not in UPPER_SNAKE_CASE, outside
    /// the department's prefix, or declared by the mesh.
    pub async fn reject(
        &self,
        p: &Principal,
        case_id: &str,
        reason: (&str, &str),
        expected_version: i64,
    ) -> Result<CaseRecord> {
        self.reject_as(p, ("RejectCase", &[], true), case_id, reason, expected_version).await
    }

    /// [`Self::reject`] through a department's own decision RPC `rpc`, recording `result`
    /// fields on the case with the rejection; its code may be one the mesh declares (the
    /// RPC is the mesh setting it).
    ///
    /// # Errors
    /// As [`Self::approve`]; INVALID_ARGUMENT for a code not in UPPER_SNAKE_CASE.
    pub async fn reject_with(
        &self,
        p: &Principal,
        (rpc, result): (&str, &[(&str, &str)]),
        case_id: &str,
        reason: (&str, &str),
        expected_version: i64,
    ) -> Result<CaseRecord> {
        self.reject_as(p, (rpc, result, false), case_id, reason, expected_version).await
    }

    async fn reject_as(
        &self,
        p: &Principal,
        (rpc, result, approvers_own): (&str, &[(&str, &str)], bool),
        case_id: &str,
        (code, text): (&str, &str),
        expected_version: i64,
    ) -> Result<CaseRecord> {
        let prefix = format!("{}_", self.inner.dept.name().to_uppercase());
        self.act((p, rpc, Need::Decide), case_id, expected_version, |me, case, ev| {
            check_reason_code(code)?;
            let own = code.len() > prefix.len() && code.starts_with(&prefix) && Reason::parse(code).is_none();
            if approvers_own && !own {
                return Err(Error::invalid_field(
                    Reason::CaseInvalidRequest,
                    "reason_code",
                    format!("the approver's own code, starting {prefix} and not one the mesh declares"),
                ));
            }
            // Recorded whatever the state: a rejection the lifecycle refuses rolls it back.
            record(case, result);
            case.reason_code = code.to_string();
            case.reason_text = text.chars().take(500).collect();
            me.step(case, Action::Reject, me.clock().now(), ev)
        })
        .await
    }
}

/// Sets the result fields a decision RPC records.
fn record(case: &mut CaseRecord, result: &[(&str, &str)]) {
    for (k, v) in result {
        case.result.insert((*k).to_string(), (*v).to_string());
    }
}
