//! Supplements (补正) and owed materials (容缺): what the applicant supplies afterwards is
//! validated and weighed as at intake, then takes the case on by its state.

use super::*;

impl CaseApi {
    /// Takes supplied `materials` into the action's case: what a supplement asked for (at
    /// intake the case is received again, and accepted or decided by its handling; after
    /// acceptance it goes back to accepted) or the materials a provisional approval owes.
    ///
    /// # Errors
    /// INVALID_ARGUMENT for no or malformed materials, one not asked for or owed, or one
    /// still missing; FAILED_PRECONDITION when the case waits for none, or
    /// `CASE_ELICENCE_NOT_VERIFIED` when a material the catalog requires as a verified
    /// e-licence is not one (nothing changes).
    pub(super) async fn supply(&self, a: &mut Action_, materials: &[pb::Material]) -> Result<()> {
        let matter = self.catalog_matter(&a.case)?.clone();
        let action = match a.case.state {
            State::AwaitingSupplement if a.case.accepted_at.is_none() => Action::SupplyForIntake,
            State::AwaitingSupplement => Action::SupplyMaterials,
            State::ApprovedProvisionally => Action::CompleteOwed,
            _ => {
                return Err(Error::failed_precondition(
                    Reason::CaseNotAwaitingMaterials,
                    format!("a {} case does not take materials", a.case.state),
                ));
            }
        };
        let mut bad = Vec::new();
        if materials.is_empty() {
            bad.push(violation("materials", "required"));
        }
        let supplied = MaterialRecord::validate(materials, &matter, &mut bad);
        // Only what was asked for or is owed: a material already reviewed is not replaced
        // behind the clerk's back.
        for (i, m) in materials.iter().enumerate() {
            if matter.knows_material(&m.code) && !a.case.missing_materials.contains(&m.code) {
                bad.push(violation(&format!("materials[{i}].code"), "not asked for"));
            }
        }
        let now = self.clock().now();
        let (form, applicant) = (&a.case.form, &a.case.applicant.identifier);
        let weighed = crate::cases::evidence::weigh(&self.inner.trust, &matter, &supplied, form, applicant, now);
        if let Some(e) = Error::from_violations(Reason::CaseInvalidRequest, bad) {
            return Err(e);
        }
        let weighed = weighed?;
        // A material the catalog requires verified is refused as at intake, but the case
        // keeps waiting: the applicant may still supply a verified one in time.
        if let Some(r) = crate::cases::evidence::required_unverified(&matter, &weighed) {
            return Err(Error::failed_precondition(r.reason_code, r.reason_text));
        }
        let case = &mut a.case;
        // What the supplied e-licences prove replaces what was found before about them.
        for e in weighed {
            case.evidence.retain(|x| x.material != e.material);
            case.evidence.push(e);
        }
        // Everything asked for comes now (a material asked for again replaces the one given).
        let still: Vec<String> =
            case.missing_materials.iter().filter(|c| !supplied.iter().any(|m| &m.code == *c)).cloned().collect();
        for m in supplied {
            case.materials.retain(|x| x.code != m.code);
            case.materials.push(m);
        }
        if !still.is_empty() {
            return Err(Error::invalid_field(
                Reason::CaseMaterialsStillMissing,
                "materials",
                format!("still missing: {}", still.join(", ")),
            ));
        }
        case.missing_materials.clear();
        case.reason_code.clear();
        // What still did not verify stays before the clerk.
        case.reason_text = super::evidence::for_clerk(case).unwrap_or_default();
        self.step(case, action, now, &mut a.events)?;
        match action {
            Action::SupplyForIntake => self.receive(&a.txn, &mut a.case, &matter, now, &mut a.events).await?,
            // Back to accepted, an automatic matter is decided at once if its fact came
            // while it waited (the sweep of facts passed it by).
            Action::SupplyMaterials
                if matter.handling == Handling::Automatic && self.decides_itself(&a.txn, &a.case).await? =>
            {
                self.decide(&a.txn, &mut a.case, &matter, now, &mut a.events).await?;
            }
            _ => {}
        }
        Ok(())
    }
}
