//! The coordinator end to end, with every department running: each of the seven bundles
//! from submit to completed; after_death waits for the deregistration; a refused step
//! fails the bundle and withdraws what cannot stand alone; a department that is down
//! delays, never loses and never duplicates a step; two coordinator replicas; the same
//! submit twice; bad input creates nothing anywhere.

use crate::common::*;
use onething_proto::{
    common as cpb,
    coordinator::{self as pb, BundleState, StepState, bundle_service_client::BundleServiceClient},
};
use std::time::Duration;

pub fn applicant(kind: cpb::ApplicantKind, id: &str, name: &str) -> Option<cpb::Applicant> {
    Some(cpb::Applicant { kind: kind as i32, identifier: id.into(), name: name.into(), phone: String::new() })
}

/// A citizen applicant who gave a phone number (the PII tests look for it in telemetry).
pub fn citizen_with_phone(id: &str, name: &str, phone: &str) -> Option<cpb::Applicant> {
    Some(cpb::Applicant {
        kind: cpb::ApplicantKind::Citizen as i32,
        identifier: id.into(),
        name: name.into(),
        phone: phone.into(),
    })
}

/// 新生儿出生 by `who`: `parent`'s child `(name, sex)` born 2026-11-20, medical
/// certificate `certificate`.
pub fn newborn(
    who: Option<cpb::Applicant>,
    parent: &str,
    (child_name, child_sex): (&str, &str),
    certificate: &str,
    key: &str,
) -> pb::SubmitBundleRequest {
    let applicant = who.as_ref().map(|a| a.identifier.clone()).unwrap_or_default();
    let mut request = submit(
        "newborn",
        who,
        &[
            ("child_name", child_name),
            ("child_sex", child_sex),
            ("birth_date", "2026-11-20"),
            ("parent_id_number", parent),
            ("birth_certificate_number", certificate),
        ],
        &["birth_medical_certificate"],
        &[],
        key,
    );
    // A verified certificate naming the parent and, when another, the applicant.
    let father = if applicant == parent { "" } else { applicant.as_str() };
    request.materials[0].elicence = birth_elicence(certificate, (child_name, child_sex), "2026-11-20", parent, father);
    request
}

/// 公民身后 by `who`: `subject` died 2026-11-20, death certificate `certificate`.
pub fn after_death(
    who: Option<cpb::Applicant>,
    subject: &str,
    certificate: &str,
    key: &str,
) -> pb::SubmitBundleRequest {
    let mut request = submit(
        "after_death",
        who,
        &[("subject_id_number", subject), ("death_date", "2026-11-20"), ("death_certificate_number", certificate)],
        &["death_certificate"],
        &[],
        key,
    );
    request.materials[0].elicence = death_elicence(subject, certificate, "2026-11-20");
    request
}

pub(crate) fn citizen_applicant(id: &str) -> Option<cpb::Applicant> {
    applicant(cpb::ApplicantKind::Citizen, id, "申请人")
}

pub(crate) fn enterprise_applicant(code: &str) -> Option<cpb::Applicant> {
    applicant(cpb::ApplicantKind::Enterprise, code, "威海示例企业")
}

fn materials(codes: &[&str]) -> Vec<cpb::Material> {
    codes.iter().map(|c| material(c)).collect()
}

/// A bundle application; the materials its steps weigh as evidence carry verified
/// e-licences (as the applicant's e-licence wallet gives them).
pub fn submit(
    code: &str,
    who: Option<cpb::Applicant>,
    f: &[(&str, &str)],
    mats: &[&str],
    optional: &[&str],
    key: &str,
) -> pb::SubmitBundleRequest {
    verified_bundle(pb::SubmitBundleRequest {
        code: code.into(),
        applicant: who,
        form: form(f),
        materials: materials(mats),
        optional_steps: optional.iter().map(|s| (*s).to_string()).collect(),
        idempotency_key: key.into(),
    })
}

/// 企业准营 for the seeded chemicals enterprise `chem`: a hotel licence and the optional
/// precursor filing.
pub(crate) fn operating(chem: &str, key: &str) -> pb::SubmitBundleRequest {
    submit(
        "enterprise_operating",
        enterprise_applicant(chem),
        &[
            ("hotel_name", "化工园宾馆"),
            ("address", "威海市环翠区化工园2号"),
            ("rooms", "40"),
            ("chemical", "acetone"),
            ("quantity_kg", "100"),
            ("purpose", "purchase"),
            ("counterparty_credit_code", "91350100M000100Y43"),
        ],
        &[
            "business_licence",
            "premises_certificate",
            "fire_safety_certificate",
            "security_plan",
            "purchase_contract",
            "qualification_certificate",
        ],
        &["precursor_filing"],
        key,
    )
}

/// 企业开办 for `who`, legally represented by the seeded parent: liaison, household and
/// vehicle steps, no human step.
pub(crate) fn opening(who: Option<cpb::Applicant>, key: &str) -> pb::SubmitBundleRequest {
    submit(
        "enterprise_opening",
        who,
        &[
            ("seal_kinds", "official,finance"),
            ("engraving_company", "威海示例刻章店"),
            ("legal_representative_id_number", &seeded_parent()),
            ("premises_address", "威海市环翠区示例园区9号"),
        ],
        &["business_licence", "seal_imprints", "legal_representative_id_card", "premises_property_certificate"],
        &["collective_household", "vehicle_verification"],
        key,
    )
}

/// A liaison clerk accepts and approves both steps of the 企业准营 bundle `id`, which then
/// completes.
pub(crate) async fn approve_operating(w: &TestMesh, applicant: &mut BundleServiceClient<Authed>, id: &str) {
    let mut l_clerk = w.clerk(LIAISON).await;
    for step in ["hotel_licence", "precursor_filing"] {
        let case = case_of(applicant, id, step).await;
        l_clerk.accept_case(cpb::AcceptCaseRequest { case_id: case.clone(), expected_version: 0 }).await.unwrap();
        if step == "hotel_licence" {
            inspect_on_site(&mut l_clerk, &case, true).await;
        }
        l_clerk.approve_case(cpb::ApproveCaseRequest { case_id: case, expected_version: 0 }).await.unwrap();
    }
    assert_eq!(finished(applicant, id).await.state(), BundleState::Completed);
}

/// A liaison clerk holds the on-site inspection of hotel licence `case` (a special
/// procedure) and records it `passed` or not.
pub(crate) async fn inspect_on_site(clerk: &mut CaseServiceClient<Authed>, case: &str, passed: bool) {
    clerk
        .start_special_procedure(cpb::StartSpecialProcedureRequest {
            case_id: case.into(),
            procedure: "on_site_inspection".into(),
            expected_version: 0,
        })
        .await
        .case();
    clerk
        .end_special_procedure(cpb::EndSpecialProcedureRequest {
            case_id: case.into(),
            outcome: if passed { "现场核查合格" } else { "消防通道堵塞" }.into(),
            expected_version: 0,
            passed,
        })
        .await
        .case();
}

/// Waits until the bundle is finished (and every step final), then returns it.
pub async fn finished(c: &mut BundleServiceClient<Authed>, id: &str) -> pb::Bundle {
    eventually(Duration::from_secs(60), "the bundle to finish", || {
        let mut c = c.clone();
        let id = id.to_string();
        async move {
            let b = c.get_bundle(pb::GetBundleRequest { bundle_id: id }).await.ok()?.into_inner().bundle?;
            let done = !matches!(b.state(), BundleState::Running | BundleState::CompletedProvisionally)
                && b.steps.iter().all(|s| {
                    !matches!(
                        s.state(),
                        StepState::Blocked
                            | StepState::Pending
                            | StepState::InProgress
                            | StepState::Provisional
                            | StepState::Revoking
                    )
                });
            done.then_some(b)
        }
    })
    .await
    .unwrap()
}

/// Waits until `step` has a case, and returns its id.
pub(crate) async fn case_of(c: &mut BundleServiceClient<Authed>, id: &str, step: &str) -> String {
    eventually(Duration::from_secs(60), "the step's case", || {
        let mut c = c.clone();
        let (id, step) = (id.to_string(), step.to_string());
        async move {
            let b = c.get_bundle(pb::GetBundleRequest { bundle_id: id }).await.ok()?.into_inner().bundle?;
            let s = b.steps.into_iter().find(|s| s.step_id == step)?;
            (!s.case_id.is_empty()).then_some(s.case_id)
        }
    })
    .await
    .unwrap()
}

fn steps(b: &pb::Bundle) -> Vec<(String, StepState)> {
    b.steps.iter().map(|s| (s.step_id.clone(), s.state())).collect()
}

mod sagas;
