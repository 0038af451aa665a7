//! The tonic adapter: each CaseService RPC authenticated, handed to the workflow, and
//! answered (masked where the reader may not see personal data).

use super::*;

/// The result field naming the special procedure under way; once it ends, its outcome is
/// `procedure.<name>` (`passed` or `failed`) with `procedure.<name>.note`.
pub const PROCEDURE: &str = "procedure";

pub(super) fn reply(case: CaseRecord) -> Option<pb::Case> {
    Some(case.to_proto())
}

#[tonic::async_trait]
impl CaseService for CaseApi {
    async fn create_case(&self, r: Request<pb::CreateCaseRequest>) -> Result<Response<pb::CreateCaseResponse>, Status> {
        let p = authz::principal(&r)?;
        let case = self.create(&p, r.into_inner()).await?;
        Ok(Response::new(pb::CreateCaseResponse { case: reply(case) }))
    }

    async fn get_case(&self, r: Request<pb::GetCaseRequest>) -> Result<Response<pb::GetCaseResponse>, Status> {
        let p = authz::principal(&r)?;
        let case = self.get(&p, &r.into_inner().case_id).await?;
        Ok(Response::new(pb::GetCaseResponse { case: Some(shown(&p, &case)) }))
    }

    async fn list_cases(&self, r: Request<pb::ListCasesRequest>) -> Result<Response<pb::ListCasesResponse>, Status> {
        let p = authz::principal(&r)?;
        let (cases, next_page_token) = self.list(&p, r.into_inner()).await?;
        Ok(Response::new(pb::ListCasesResponse {
            cases: cases.iter().map(|c| shown(&p, c)).collect(),
            next_page_token,
        }))
    }

    async fn accept_case(&self, r: Request<pb::AcceptCaseRequest>) -> Result<Response<pb::AcceptCaseResponse>, Status> {
        let p = authz::principal(&r)?;
        let r = r.into_inner();
        let case = self
            .act((&p, "AcceptCase", Need::Intake), &r.case_id, r.expected_version, |me, case, ev| {
                me.step(case, Action::Accept, me.clock().now(), ev)
            })
            .await?;
        Ok(Response::new(pb::AcceptCaseResponse { case: reply(case) }))
    }

    async fn request_supplement(
        &self,
        r: Request<pb::RequestSupplementRequest>,
    ) -> Result<Response<pb::RequestSupplementResponse>, Status> {
        let p = authz::principal(&r)?;
        let r = r.into_inner();
        let case = self
            .act((&p, "RequestSupplement", Need::Intake), &r.case_id, r.expected_version, |me, case, ev| {
                // Intake asks for what is missing by itself (一次性告知); a clerk asks for more
                // of an accepted case, so intake's work is never done twice.
                if case.state != State::Accepted {
                    return Err(Error::failed_precondition(
                        Reason::CaseIllegalTransition,
                        format!("a clerk asks for a supplement of an accepted case, not a {} one", case.state),
                    ));
                }
                if case.supplement_asked {
                    return Err(Error::failed_precondition(
                        Reason::CaseSupplementAlreadyAsked,
                        "a supplement was asked for once already (一次性告知); decide on what the case has",
                    ));
                }
                let matter = me.catalog_matter(case)?;
                let mut bad = Vec::new();
                if r.material_codes.is_empty() {
                    bad.push(violation("material_codes", "name at least one material"));
                }
                for (i, code) in r.material_codes.iter().enumerate() {
                    if !matter.knows_material(code) {
                        bad.push(violation(&format!("material_codes[{i}]"), "not a material of this matter"));
                    }
                }
                if let Some(e) = Error::from_violations(Reason::CaseInvalidRequest, bad) {
                    return Err(e);
                }
                case.missing_materials = r.material_codes.clone();
                case.supplement_asked = true;
                case.reason_text = r.reason_text.chars().take(500).collect();
                me.step(case, Action::RequestSupplement, me.clock().now(), ev)
            })
            .await?;
        Ok(Response::new(pb::RequestSupplementResponse { case: reply(case) }))
    }

    async fn start_special_procedure(
        &self,
        r: Request<pb::StartSpecialProcedureRequest>,
    ) -> Result<Response<pb::StartSpecialProcedureResponse>, Status> {
        let p = authz::principal(&r)?;
        let r = r.into_inner();
        let case = self
            .act((&p, "StartSpecialProcedure", Need::Intake), &r.case_id, r.expected_version, |me, case, ev| {
                let procedure = r.procedure.trim();
                // A name, not text: it becomes the result key `procedure.<name>`.
                let name = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
                if procedure.is_empty() || procedure.len() > 64 || !procedure.chars().all(name) {
                    return Err(Error::invalid_field(
                        Reason::CaseInvalidRequest,
                        "procedure",
                        "required: 1 to 64 lowercase letters, digits and underscores",
                    ));
                }
                case.reason_text = format!("special procedure: {procedure}");
                case.result.insert(PROCEDURE.into(), procedure.to_string());
                me.step(case, Action::StartSpecialProcedure, me.clock().now(), ev)
            })
            .await?;
        Ok(Response::new(pb::StartSpecialProcedureResponse { case: reply(case) }))
    }

    async fn end_special_procedure(
        &self,
        r: Request<pb::EndSpecialProcedureRequest>,
    ) -> Result<Response<pb::EndSpecialProcedureResponse>, Status> {
        let p = authz::principal(&r)?;
        let r = r.into_inner();
        let case = self
            .act((&p, "EndSpecialProcedure", Need::Intake), &r.case_id, r.expected_version, |me, case, ev| {
                let note: String = r.outcome.chars().take(500).collect();
                // What the procedure found stays on the case: a decision may depend on it.
                if let Some(name) = case.result.remove(PROCEDURE) {
                    let found = if r.passed { "passed" } else { "failed" };
                    case.result.insert(format!("{PROCEDURE}.{name}"), found.into());
                    case.result.insert(format!("{PROCEDURE}.{name}.note"), note.clone());
                }
                case.reason_text = note;
                me.step(case, Action::EndSpecialProcedure, me.clock().now(), ev)
            })
            .await?;
        Ok(Response::new(pb::EndSpecialProcedureResponse { case: reply(case) }))
    }

    async fn supply_materials(
        &self,
        r: Request<pb::SupplyMaterialsRequest>,
    ) -> Result<Response<pb::SupplyMaterialsResponse>, Status> {
        let p = authz::principal(&r)?;
        let r = r.into_inner();
        let mut a = self.begin_action(&p, "SupplyMaterials", Need::Supply, &r.case_id, r.expected_version).await?;
        self.supply(&mut a, &r.materials).await?;
        let case = self.finish_action(a).await?;
        Ok(Response::new(pb::SupplyMaterialsResponse { case: reply(case) }))
    }

    async fn approve_case(
        &self,
        r: Request<pb::ApproveCaseRequest>,
    ) -> Result<Response<pb::ApproveCaseResponse>, Status> {
        let p = authz::principal(&r)?;
        let r = r.into_inner();
        let case = self.approve(&p, &r.case_id, r.expected_version).await?;
        Ok(Response::new(pb::ApproveCaseResponse { case: reply(case) }))
    }

    async fn reject_case(&self, r: Request<pb::RejectCaseRequest>) -> Result<Response<pb::RejectCaseResponse>, Status> {
        let p = authz::principal(&r)?;
        let r = r.into_inner();
        let case = self.reject(&p, &r.case_id, (&r.reason_code, &r.reason_text), r.expected_version).await?;
        Ok(Response::new(pb::RejectCaseResponse { case: reply(case) }))
    }

    async fn withdraw_case(
        &self,
        r: Request<pb::WithdrawCaseRequest>,
    ) -> Result<Response<pb::WithdrawCaseResponse>, Status> {
        let p = authz::principal(&r)?;
        let r = r.into_inner();
        let case = self
            .act((&p, "WithdrawCase", Need::Withdraw), &r.case_id, 0, |me, case, ev| {
                case.reason_code = Reason::WithdrawnByApplicant.into();
                case.reason_text = r.reason_text.chars().take(500).collect();
                me.step(case, Action::Withdraw, me.clock().now(), ev)
            })
            .await?;
        Ok(Response::new(pb::WithdrawCaseResponse { case: reply(case) }))
    }

    async fn list_notices(
        &self,
        r: Request<pb::ListNoticesRequest>,
    ) -> Result<Response<pb::ListNoticesResponse>, Status> {
        let p = authz::principal(&r)?;
        let notices = self.notices(&p, r.into_inner().page_size).await?;
        Ok(Response::new(pb::ListNoticesResponse { notices }))
    }

    async fn cancel_case(&self, r: Request<pb::CancelCaseRequest>) -> Result<Response<pb::CancelCaseResponse>, Status> {
        let p = authz::principal(&r)?;
        let r = r.into_inner();
        let mut a = self.begin_action(&p, "CancelCase", Need::Cancel, &r.case_id, 0).await?;
        // Checked after the caller: a stranger learns nothing from a validation answer.
        check_reason_code(&r.reason_code)?;
        let now = self.clock().now();
        if matches!(a.case.state, State::Approved | State::ApprovedProvisionally) {
            // Compensation of a finished step: the approval is revoked and undone, where the
            // catalog says it can be (what cannot be revoked stands).
            if !self.catalog_matter(&a.case)?.revocable {
                return Err(Error::failed_precondition(
                    Reason::CaseNotRevocable,
                    format!("an approved {} is not revoked", a.case.matter_code),
                )
                .into());
            }
            let text = "revoked: the bundle it belongs to did not complete".to_string();
            self.revoke(&a.txn, &mut a.case, (&r.reason_code, text), now, &mut a.events).await?;
        } else {
            a.case.reason_code = r.reason_code.clone();
            self.step(&mut a.case, Action::Cancel, now, &mut a.events)?;
        }
        let case = self.finish_action(a).await?;
        Ok(Response::new(pb::CancelCaseResponse { case: reply(case) }))
    }
}
