//! Who may do what with a case (docs/security.md): reading, the clerk's and approver's
//! actions, the applicant's, the coordinator's, and what a reader sees masked.

use super::*;

impl CaseApi {
    /// Reads one case.
    ///
    /// # Errors
    /// INVALID_ARGUMENT for an empty id, NOT_FOUND for an unknown one, PERMISSION_DENIED
    /// for a caller who may not read it.
    pub async fn get(&self, p: &Principal, case_id: &str) -> Result<CaseRecord> {
        crate::telemetry::record_ids(Some(case_id), None);
        // Who may read cases here at all is decided before the request is looked at.
        let may = self.reads_department(p)
            || p.kind.is_applicant()
            || authz::acting_for(p).is_some()
            || p.is_service(COORDINATOR);
        authz::check(may, p, "GetCase", case_id)?;
        // Nobody outside may learn whether a case exists: a refusal and an unknown id
        // answer alike for whoever may not read this department's cases at all.
        let case =
            authz::hide_missing(load(&self.inner.db, case_id).await, self.reads_department(p), p, "GetCase", case_id)?;
        authz::check(self.can_read(p, &case), p, "GetCase", case_id)?;
        Ok(case)
    }

    pub(super) fn is_staff(&self, p: &Principal) -> bool {
        p.is_staff_of(self.inner.dept.name())
    }

    pub(super) fn is_owner(p: &Principal, case: &CaseRecord) -> bool {
        authz::is_applicant(p, case.applicant.kind, &case.applicant.identifier)
    }

    /// Who may read every case of this department: its staff and supervision.
    pub(super) fn reads_department(&self, p: &Principal) -> bool {
        self.is_staff(p) || authz::is_supervision(p)
    }

    /// Who may read a case: those who read the department, its applicant, a service acting
    /// for its applicant (supervision asking before a rating), and the coordinator for the
    /// cases of its bundles (what its steps need; it lists nothing).
    pub(super) fn can_read(&self, p: &Principal, case: &CaseRecord) -> bool {
        self.reads_department(p)
            || Self::is_owner(p, case)
            || authz::acting_for(p).is_some_and(|a| Self::is_owner(a, case))
            || (p.is_service(COORDINATOR) && !case.bundle_id.is_empty())
    }

    /// Whether `p` may take an action needing `need` on `case` (`None`: before loading it,
    /// where only the role-based needs can be decided).
    pub(super) fn may(&self, p: &Principal, need: Need, case: Option<&CaseRecord>) -> bool {
        let clerk = self.is_staff(p) && p.has_role(ROLE_CLERK);
        // The coordinator acts on the cases of its bundles, nothing else.
        let coordinator = p.is_service(COORDINATOR) && case.is_none_or(|c| !c.bundle_id.is_empty());
        let owner = match case {
            Some(c) => Self::is_owner(p, c),
            None => p.kind.is_applicant(),
        };
        match need {
            Need::Intake => clerk,
            Need::Decide => self.is_staff(p) && p.has_role(ROLE_APPROVER),
            Need::Supply => owner || clerk || coordinator,
            Need::Withdraw => owner || coordinator,
            Need::Cancel => coordinator,
        }
    }
}

/// The case as `p` may see it: masked for a reader without the personal-data role.
pub(super) fn shown(p: &Principal, case: &CaseRecord) -> pb::Case {
    if authz::sees_personal_data(p) { case.to_proto() } else { crate::cases::record::masked(case.to_proto()) }
}
