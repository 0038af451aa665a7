//! Calls to the departments: a client per department, every call through the department's
//! breaker and bulkhead, and what a failed call means for its step.

use super::*;
use onething_platform::reason::Reason;

pub(super) type Client = CaseServiceClient<InterceptedService<TracedChannel, PeerIdentity>>;

impl Engine {
    pub(super) fn client(&self, department: &str) -> Result<Client> {
        let channel = self
            .inner
            .peers
            .channel(department)
            .ok_or_else(|| Error::internal(anyhow::anyhow!("no address for department {department}")))?;
        Ok(CaseServiceClient::new(InterceptedService::new(channel, self.inner.identity.to(department))))
    }

    pub(super) async fn create_case(
        &self,
        agg: &Aggregate,
        s: &step::Model,
    ) -> std::result::Result<cpb::Case, Failure> {
        let def = self.inner.catalog.bundle(&agg.bundle.code).and_then(|d| d.step(&s.step_id)).cloned();
        let matter = self.inner.catalog.get(&s.matter_code).cloned();
        let (Some(def), Some(matter)) = (def, matter) else {
            return Err(Failure::Refused("step left the catalog".into()));
        };
        let (form, materials) = (&agg.bundle.form, &agg.bundle.materials);
        let request = cpb::CreateCaseRequest {
            matter_code: s.matter_code.clone(),
            applicant: Some(cpb::Applicant {
                kind: agg.bundle.applicant_kind.to_proto() as i32,
                identifier: agg.bundle.applicant_identifier.clone(),
                name: agg.bundle.applicant_name.clone(),
                phone: agg.bundle.applicant_phone.clone(),
            }),
            form: def.form_of(form).into_iter().collect(),
            materials: materials
                .iter()
                .filter(|m| matter.knows_material(&m.code))
                .map(|m| cpb::Material {
                    code: m.code.clone(),
                    document_uri: m.document_uri.clone(),
                    elicence: m.elicence.clone(),
                })
                .collect(),
            idempotency_key: step_key(&agg.bundle.id, &s.step_id),
            bundle_id: agg.bundle.id.clone(),
        };
        let mut client = self.client(&s.department).map_err(|e| Failure::Retry(format!("{e}")))?;
        match self.guarded(&s.department, client.create_case(request)).await {
            Ok(r) => r.into_inner().case.ok_or_else(|| Failure::Retry("the department returned no case".into())),
            Err(status) => Err(Failure::of(&status, &s.department)),
        }
    }

    /// Makes `call` to `department` through its breaker and bulkhead: refused at once
    /// (UNAVAILABLE) while the breaker is open, or after a moment when the department has
    /// its share of calls in flight; its outcome recorded otherwise.
    pub(super) async fn guarded<T>(
        &self,
        department: &str,
        call: impl Future<Output = std::result::Result<T, tonic::Status>>,
    ) -> std::result::Result<T, tonic::Status> {
        // Room first: a call turned back as busy must not take the breaker's one probe
        // (the probe would then never report, and the department stay paused).
        let Some(_room) = self.inner.bulkheads.enter(department).await else {
            let mut busy = tonic::Status::unavailable(format!("{department} has {DEPARTMENT_CALLS} calls in flight"));
            busy.set_source(std::sync::Arc::new(Busy));
            return Err(busy);
        };
        if !self.inner.breakers.allow(department) {
            return Err(tonic::Status::unavailable(format!("{department} paused after failing calls")));
        }
        let answer = call.await;
        self.inner
            .breakers
            .record(department, answer.as_ref().err().is_some_and(|s| crate::breaker::is_down(s.code())));
        answer
    }

    /// Withdraws (the applicant withdrew) or cancels the case of step `s`, or revokes its
    /// approval; returns the case as it ends, and whether its department keeps an approval
    /// it cannot revoke (`CASE_NOT_REVOCABLE`: the approval stands, and is not asked again).
    pub(super) async fn cancel_case(
        &self,
        s: &step::Model,
        state: BundleState,
    ) -> std::result::Result<(cpb::Case, bool), Failure> {
        let mut client = self.client(&s.department).map_err(|e| Failure::Retry(e.to_string()))?;
        // A revocation is always the coordinator's compensation; a withdrawal the applicant's.
        let result = if state == BundleState::Withdrawn && s.state != Step::Revoking {
            let request =
                cpb::WithdrawCaseRequest { case_id: s.case_id.clone(), reason_text: "bundle withdrawn".into() };
            self.guarded(&s.department, client.withdraw_case(request)).await.map(|r| r.into_inner().case)
        } else {
            let reason =
                if state == BundleState::Withdrawn { Reason::BundleWithdrawn } else { Reason::BundleStepRefused };
            let request = cpb::CancelCaseRequest { case_id: s.case_id.clone(), reason_code: reason.into() };
            self.guarded(&s.department, client.cancel_case(request)).await.map(|r| r.into_inner().case)
        };
        match result {
            Ok(Some(c)) => Ok((c, false)),
            Ok(None) => Err(Failure::Retry("the department returned no case".into())),
            // Already finished, or an approval that stands: take the case as it is.
            Err(st) if st.code() == tonic::Code::FailedPrecondition => {
                let stands =
                    st.get_error_details().error_info().is_some_and(|i| i.reason == Reason::CaseNotRevocable.as_str());
                let read = client.get_case(cpb::GetCaseRequest { case_id: s.case_id.clone() });
                match self.guarded(&s.department, read).await {
                    Ok(r) => r
                        .into_inner()
                        .case
                        .map(|c| (c, stands))
                        .ok_or_else(|| Failure::Retry("cannot read the case".into())),
                    Err(st) => Err(Failure::retry(&st, &s.department)),
                }
            }
            Err(st) => Err(Failure::retry(&st, &s.department)),
        }
    }
}

/// Why a call about a step's case did not succeed.
pub(super) enum Failure {
    /// The department is down or failed: try again later, waiting longer each time.
    Retry(String),
    /// The department has its share of calls in flight (its bulkhead is full): not a
    /// failure of the step, tried again soon without counting an attempt.
    Busy(String),
    /// The department refused the request.
    Refused(String),
}

/// The source of a status made when a department's bulkhead turned a call back: only this
/// process sets it (a department's own answer never carries it).
#[derive(Debug)]
struct Busy;

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the department's bulkhead is full")
    }
}

impl std::error::Error for Busy {}

impl Failure {
    /// What the failed call's `status` means for its step: refused for good, or to retry.
    pub(super) fn of(status: &tonic::Status, department: &str) -> Self {
        use tonic::Code as C;
        match status.code() {
            C::Unavailable | C::DeadlineExceeded | C::Unknown | C::Aborted | C::Internal | C::Cancelled => {
                Self::retry(status, department)
            }
            _ => {
                let reason = status.get_error_details().error_info().map(|i| i.reason.clone()).unwrap_or_default();
                Failure::Refused(format!("{reason}: {}", status.message()))
            }
        }
    }

    /// A call that failed with `status` to be tried again: soon when only its department's
    /// bulkhead was full, later each time otherwise.
    pub(super) fn retry(status: &tonic::Status, department: &str) -> Self {
        if std::error::Error::source(status).is_some_and(|e| e.is::<Busy>()) {
            Failure::Busy(format!("{department} busy; retrying"))
        } else {
            Failure::Retry(format!("{department} unavailable; retrying ({:?})", status.code()))
        }
    }

    /// Schedules step `st` again after this failure, saying why: soon when its department
    /// was only busy (no attempt counted), later each time otherwise.
    pub(super) fn reschedule(&self, st: &mut step::Model) {
        match self {
            Failure::Busy(why) => {
                st.next_attempt_at = Utc::now() + chrono::Duration::from_std(DEPARTMENT_WAIT).unwrap_or_default();
                st.reason = why.clone();
            }
            Failure::Retry(why) | Failure::Refused(why) => retry_later(st, why),
        }
    }
}
