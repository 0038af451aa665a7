//! Evidence through the coordinator (M24): SubmitBundle weighs each step's e-licences as the
//! step's department will, so a malformed one, one about someone else, or one a step
//! requires verified and that is not, is refused at the door with nothing written; a
//! certificate that does not verify goes to a clerk, whose decision the death fact then
//! carries as unverified; a close relative on record completes 公民身后 on a verified one.

use crate::bundles::{after_death, citizen_applicant, enterprise_applicant, finished, opening};
use crate::common::*;
use onething_proto::{
    common as cpb,
    coordinator::{BundleState, StepState},
    household::PersonDeceased,
};
use prost::Message as _;
use std::time::Duration;
use tonic_types::StatusExt as _;

fn reason(err: &tonic::Status) -> String {
    err.get_error_details().error_info().map(|i| i.reason.clone()).unwrap_or_default()
}

/// Every `person.deceased` on household's stream now.
async fn deaths(js: &async_nats::jetstream::Context) -> Vec<PersonDeceased> {
    on_subject(js, "ONETHING_HOUSEHOLD", "onething.household.v1.person.deceased")
        .await
        .into_iter()
        .map(|m| PersonDeceased::decode(m).unwrap())
        .collect()
}

async fn bundles_rest_on_verified_evidence(backend: Backend) {
    let Some(w) = TestMesh::with(backend).departments().coordinators(1).start().await else { return };
    let js = w.nats.jetstream().await;
    let elder = seeded_elder();
    let granddaughter = onething_household::store::seed_id("371082", "1995-02-28", 82).unwrap().expose().to_string();
    let mut as_granddaughter = w.bundles_at(0, &citizen_token(&granddaughter)).await;

    // The public catalog says which materials are weighed, and how.
    let endpoint = w.replica(COORDINATOR, 0).endpoint();
    let mut catalog = onething_proto::coordinator::catalog_service_client::CatalogServiceClient::new(
        connect_as(&endpoint, Some(&citizen_token(&granddaughter))).await,
    );
    let matters = catalog.list_matters(onething_proto::coordinator::ListMattersRequest::default()).await;
    let matters = matters.unwrap().into_inner().matters;
    let seal = matters.iter().find(|m| m.code == "liaison.seal_engraving_filing").unwrap();
    assert_eq!(seal.evidence.len(), 1);
    assert!(seal.evidence[0].required && seal.evidence[0].kinds == ["business_licence"], "{:?}", seal.evidence);
    let dereg = matters.iter().find(|m| m.code == "household.deregistration").unwrap();
    assert!(!dereg.evidence[0].required && dereg.evidence[0].material == "death_certificate");

    // Refused at the door: a malformed e-licence, another person's certificate, and a paper
    // business licence where the seal filing requires a verified one.
    let mut junk = after_death(citizen_applicant(&granddaughter), &elder, "SW-E-1", "e-junk");
    junk.materials[0].elicence = "a.b.c".into();
    let err = as_granddaughter.submit_bundle(junk).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let fields: Vec<String> =
        err.get_error_details().bad_request().unwrap().field_violations.iter().map(|v| v.field.clone()).collect();
    assert_eq!(fields, ["materials[0].elicence"]);
    let mut other = after_death(citizen_applicant(&granddaughter), &elder, "SW-E-2", "e-other");
    other.materials[0].elicence = death_elicence(&seeded_parent(), "SW-E-2", "2026-11-20");
    let err = as_granddaughter.submit_bundle(other).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).as_str()), (tonic::Code::FailedPrecondition, "CASE_ELICENCE_MISMATCH"));
    assert!(err.message().contains("subject_id_number"), "{}", err.message());
    let code = onething_platform::ids::CreditCode::complete("91371002MA3E00002").unwrap().to_string();
    let mut paper = opening(enterprise_applicant(&code), "e-paper");
    paper.materials.iter_mut().filter(|m| m.code == "business_licence").for_each(|m| m.elicence.clear());
    let mut as_enterprise = w.bundles_at(0, &enterprise_token(&code)).await;
    let err = as_enterprise.submit_bundle(paper).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).as_str()), (tonic::Code::FailedPrecondition, "CASE_ELICENCE_NOT_VERIFIED"));
    assert!(err.message().contains("seal_filing") && err.message().contains("not an e-licence"), "{}", err.message());
    assert_eq!(count(w.db(COORDINATOR), "bundles").await, 0, "no bundle written");
    for dept in [HOUSEHOLD, LIAISON] {
        assert_eq!(count(w.db(dept), "cases").await, 0, "no case at {}", dept.name());
    }

    // 王德福's death reported by his son with a certificate that expired: the
    // deregistration waits for a clerk, told why; the other steps wait; nobody is dead yet.
    let father = onething_household::store::seed_id("371002", "1958-01-20", 31).unwrap().expose().to_string();
    let son = seeded_parent();
    let mut as_son = w.bundles_at(0, &citizen_token(&son)).await;
    let mut expired = after_death(citizen_applicant(&son), &father, "SW-E-3", "e-expired");
    expired.materials[0].elicence =
        death_elicence_by("dev.wjw", &father, "SW-E-3", "2026-11-20", |l| l.exp = Some(l.iat + 60));
    let b = as_son.submit_bundle(expired).await.unwrap().into_inner().bundle.unwrap();
    let case_id = crate::bundles::case_of(&mut as_son, &b.bundle_id, "deregistration").await;
    let mut clerk = w.clerk(HOUSEHOLD).await;
    let waiting = eventually(Duration::from_secs(30), "the deregistration accepted for a clerk", || {
        let mut clerk = clerk.clone();
        let case_id = case_id.clone();
        async move {
            let c = clerk.get_case(cpb::GetCaseRequest { case_id }).await.ok()?.into_inner().case?;
            (c.state() == cpb::CaseState::Accepted).then_some(c)
        }
    })
    .await
    .unwrap();
    assert!(waiting.reason_text.contains("expired"), "{}", waiting.reason_text);
    let e = &waiting.evidence[0];
    assert_eq!(
        (e.verified, e.unverified_reason.as_str(), e.kind.as_str()),
        (false, "expired", "death_medical_certificate")
    );
    let b = as_son.get_bundle(onething_proto::coordinator::GetBundleRequest { bundle_id: b.bundle_id.clone() }).await;
    let b = b.unwrap().into_inner().bundle.unwrap();
    assert!(b.steps[1..].iter().all(|s| s.state() == StepState::Blocked), "{:?}", b.steps);
    assert!(deaths(&js).await.is_empty(), "no death published on unverified evidence");

    // The clerk decides on the certificate seen: the death is recorded, and the fact says
    // its evidence did not verify; the bundle completes.
    let approved = clerk.approve_case(cpb::ApproveCaseRequest { case_id: case_id.clone(), expected_version: 0 }).await;
    assert_eq!(approved.unwrap().into_inner().case.unwrap().state(), cpb::CaseState::Approved);
    let done = finished(&mut as_son, &b.bundle_id).await;
    assert_eq!(done.state(), BundleState::Completed, "{:?}", done.steps);
    let by_clerk = eventually(Duration::from_secs(30), "the death fact", || async {
        deaths(&js).await.into_iter().find(|d| d.case_id == case_id)
    })
    .await
    .unwrap();
    assert_eq!((by_clerk.evidence[0].verified, by_clerk.evidence[0].unverified_reason.as_str()), (false, "expired"));

    // Her granddaughter, a close relative on record in another household, with the
    // verified certificate: 公民身后 completes with no human step.
    let b = as_granddaughter
        .submit_bundle(after_death(citizen_applicant(&granddaughter), &elder, "SW-E-4", "e-verified"))
        .await
        .unwrap()
        .into_inner()
        .bundle
        .unwrap();
    let b = finished(&mut as_granddaughter, &b.bundle_id).await;
    assert_eq!(b.state(), BundleState::Completed, "{:?}", b.steps);
    let verified = deaths(&js).await.into_iter().find(|d| d.case_id == b.steps[0].case_id).unwrap();
    assert!(verified.evidence[0].verified && verified.evidence[0].issuer == "dev.wjw", "{:?}", verified.evidence);
    assert_eq!(deaths(&js).await.len(), 2, "one death per person, each on its own case");
    w.stop_all().await;
}
both_backends!(bundles_rest_on_verified_evidence);
