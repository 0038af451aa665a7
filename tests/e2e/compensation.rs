//! Compensation as the bundle definitions say it: what may not stand without the rest of
//! its bundle is revoked whether the bundle fails or its applicant withdraws it, and what
//! the catalog does not mark revocable is never revoked, whoever asks.

use crate::bundles::{after_death, case_of, citizen_applicant, finished, operating};
use crate::common::*;
use onething_proto::{
    common::{self as cpb, CaseState},
    coordinator::{self as pb, BundleState, StepState},
};
use std::time::Duration;
use tonic::Code;

/// 企业准营 withdrawn after its precursor filing was approved and before the hotel licence
/// was decided: the licence's case is withdrawn and the filing, which may not stand without
/// the licence, is revoked (`BUNDLE_WITHDRAWN`).
async fn a_withdrawn_bundle_revokes_what_cannot_stand_alone(backend: Backend) {
    let Some(w) = TestMesh::with(backend).departments().coordinators(1).start().await else { return };
    let chem = onething_liaison::store::seed_chemicals().to_string();
    let mut as_chem = w.bundles(&enterprise_token(&chem)).await;
    let b = as_chem.submit_bundle(operating(&chem, "withdraw-1")).await.answer().bundle.unwrap();
    let hotel = case_of(&mut as_chem, &b.bundle_id, "hotel_licence").await;
    let filing = case_of(&mut as_chem, &b.bundle_id, "precursor_filing").await;
    let mut clerk = w.clerk(LIAISON).await;
    clerk.accept_case(cpb::AcceptCaseRequest { case_id: filing.clone(), expected_version: 0 }).await.case();
    let approved =
        clerk.approve_case(cpb::ApproveCaseRequest { case_id: filing.clone(), expected_version: 0 }).await.case();
    assert_eq!(approved.state(), CaseState::Approved);
    let step_state = |b: &pb::Bundle, id: &str| b.steps.iter().find(|s| s.step_id == id).map(|s| s.state());
    let reader = as_chem.clone();
    let settled = |want: &'static [(&'static str, StepState)]| {
        let c = reader.clone();
        let id = b.bundle_id.clone();
        eventually(Duration::from_secs(60), "the steps' states", move || {
            let (mut c, id) = (c.clone(), id.clone());
            async move {
                let b = c.get_bundle(pb::GetBundleRequest { bundle_id: id }).await.ok()?.into_inner().bundle?;
                want.iter().all(|(s, st)| step_state(&b, s) == Some(*st)).then_some(b)
            }
        })
    };
    settled(&[("precursor_filing", StepState::Done)]).await.unwrap();

    as_chem.withdraw_bundle(pb::WithdrawBundleRequest { bundle_id: b.bundle_id.clone() }).await.answer();
    let done =
        settled(&[("precursor_filing", StepState::Revoked), ("hotel_licence", StepState::Cancelled)]).await.unwrap();
    assert_eq!(done.state(), BundleState::Withdrawn);
    let revoked = clerk.get_case(cpb::GetCaseRequest { case_id: filing }).await.case();
    assert_eq!((revoked.state(), revoked.reason_code.as_str()), (CaseState::Revoked, "BUNDLE_WITHDRAWN"));
    let withdrawn = clerk.get_case(cpb::GetCaseRequest { case_id: hotel }).await.case();
    assert_eq!(withdrawn.state(), CaseState::Withdrawn);
    w.stop_all().await;
}
both_backends!(a_withdrawn_bundle_revokes_what_cannot_stand_alone);

/// The licence's own case withdrawn at the department (not the bundle): the bundle cannot
/// complete, so it fails and the approved filing is revoked, as if the licence were refused.
async fn a_required_case_withdrawn_alone_fails_the_bundle(backend: Backend) {
    let Some(w) = TestMesh::with(backend).departments().coordinators(1).start().await else { return };
    let chem = onething_liaison::store::seed_chemicals().to_string();
    let mut as_chem = w.bundles(&enterprise_token(&chem)).await;
    let b = as_chem.submit_bundle(operating(&chem, "withdraw-2")).await.answer().bundle.unwrap();
    let hotel = case_of(&mut as_chem, &b.bundle_id, "hotel_licence").await;
    let filing = case_of(&mut as_chem, &b.bundle_id, "precursor_filing").await;
    let mut clerk = w.clerk(LIAISON).await;
    clerk.accept_case(cpb::AcceptCaseRequest { case_id: filing.clone(), expected_version: 0 }).await.case();
    clerk.approve_case(cpb::ApproveCaseRequest { case_id: filing.clone(), expected_version: 0 }).await.case();
    w.cases(LIAISON, &enterprise_token(&chem))
        .await
        .withdraw_case(cpb::WithdrawCaseRequest { case_id: hotel, reason_text: "不办了".into() })
        .await
        .case();
    let done = finished(&mut as_chem, &b.bundle_id).await;
    assert_eq!(done.state(), BundleState::Failed);
    let revoked = clerk.get_case(cpb::GetCaseRequest { case_id: filing }).await.case();
    assert_eq!((revoked.state(), revoked.reason_code.as_str()), (CaseState::Revoked, "BUNDLE_STEP_REFUSED"));
    w.stop_all().await;
}
both_backends!(a_required_case_withdrawn_alone_fails_the_bundle);

/// A deregistration is not revocable: even the coordinator, whose compensation CancelCase
/// is, cannot revoke an approved one (the person stays deceased and the bundle complete).
async fn what_is_not_revocable_stands(backend: Backend) {
    let Some(w) = TestMesh::with(backend).departments().coordinators(1).start().await else { return };
    let (elder, relative) = (seeded_elder(), elders_son());
    let mut as_relative = w.bundles(&citizen_token(&relative)).await;
    let b = as_relative
        .submit_bundle(after_death(citizen_applicant(&relative), &elder, "SW-2026-0900", "norevoke-1"))
        .await
        .answer()
        .bundle
        .unwrap();
    let b = finished(&mut as_relative, &b.bundle_id).await;
    assert_eq!(b.state(), BundleState::Completed);
    let dereg = b.steps.iter().find(|s| s.step_id == "deregistration").unwrap().case_id.clone();
    let mut as_coordinator = w.coordinator_cases(HOUSEHOLD).await;
    let err = as_coordinator
        .cancel_case(cpb::CancelCaseRequest { case_id: dereg.clone(), reason_code: "BUNDLE_STEP_REFUSED".into() })
        .await
        .unwrap_err();
    assert_eq!((err.code(), reason_of(&err).as_str()), (Code::FailedPrecondition, "CASE_NOT_REVOCABLE"));
    let still = as_coordinator.get_case(cpb::GetCaseRequest { case_id: dereg }).await.case();
    assert_eq!(still.state(), CaseState::Approved);
    w.stop_all().await;
}
both_backends!(what_is_not_revocable_stands);
