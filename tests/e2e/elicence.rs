//! Verified evidence (电子证照, M24): a death is recorded automatically only on a death
//! certificate that is an e-licence its issuer signed, valid and not revoked, for that
//! person, reported by someone who may; anything less goes to a clerk with what could not
//! be verified, or is refused, and nothing is deregistered nor published.

use crate::common::*;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use onething_platform::elicence::Licence;
use onething_proto::common::{self as pb, CaseState};
use prost::Message as _;
use tonic_types::StatusExt as _;

/// A death certificate of the seeded elder, number `number`, changed by `change` and signed
/// by `issuer`.
fn certificate(issuer: &str, number: &str, change: impl FnOnce(&mut Licence)) -> String {
    death_elicence_by(issuer, &seeded_elder(), number, "2026-11-20", change)
}

fn with(mut req: pb::CreateCaseRequest, elicence: String) -> pb::CreateCaseRequest {
    req.materials[0].elicence = elicence;
    req
}

async fn no_one_is_declared_dead_on_unverified_evidence(backend: Backend) {
    // Revoked before the mesh reads the list.
    dev_issuers().revoke("dev.wjw", &["E2E-REVOKED".into()], &[]).unwrap();
    let Some(mesh) = TestMesh::with(backend).service(HOUSEHOLD).start().await else { return };
    let mut cases = mesh.coordinator_cases(HOUSEHOLD).await;
    let elder = seeded_elder();
    let good = certificate("dev.wjw", "E2E-1", |_| {});
    // One bit of the signature changed.
    let mut forged: Vec<String> = good.split('.').map(str::to_string).collect();
    let mut signature = URL_SAFE_NO_PAD.decode(&forged[2]).unwrap();
    signature[0] ^= 1;
    forged[2] = URL_SAFE_NO_PAD.encode(signature);
    let to_clerk = [
        ("forged", forged.join("."), "its signature does not verify"),
        ("kind", certificate("dev.scjg", "E2E-2", |_| {}), "its issuer may not issue this kind"),
        ("expired", certificate("dev.wjw", "E2E-3", |l| l.exp = Some(l.iat + 60)), "expired"),
        ("revoked", certificate("dev.wjw", "E2E-REVOKED", |_| {}), "revoked by its issuer"),
        ("plain", String::new(), "not an e-licence"),
    ];
    for (key, token, why) in to_clerk {
        let number = token_number(&token, key);
        let req = with(deregistration(&elder, &number, key, ""), token);
        let case = cases.create_case(req).await.unwrap().into_inner().case.unwrap();
        assert_eq!(case.state(), CaseState::Accepted, "{key}: waits for a clerk");
        assert!(case.reason_text.contains(why), "{key}: {}", case.reason_text);
    }
    // Verified, but about someone else: refused at the door, nothing stored.
    let stored = count(mesh.db(HOUSEHOLD), "cases").await;
    let other = certificate("dev.wjw", "E2E-4", |l| l.sub = seeded_parent());
    let err = cases.create_case(with(deregistration(&elder, "E2E-4", "other", ""), other)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert_eq!(err.get_error_details().error_info().unwrap().reason, "CASE_ELICENCE_MISMATCH");
    assert!(err.message().contains("subject_id_number"), "{}", err.message());
    // Not an e-licence at all: a malformed request naming the material.
    let err = cases.create_case(with(deregistration(&elder, "E2E-5", "junk", ""), "a.b".into())).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let fields: Vec<String> =
        err.get_error_details().bad_request().unwrap().field_violations.iter().map(|v| v.field.clone()).collect();
    assert_eq!(fields, ["materials[0].elicence"]);
    assert_eq!(count(mesh.db(HOUSEHOLD), "cases").await, stored, "nothing stored");
    // A verified certificate from someone outside the household: refused with a reason.
    let mut stranger = deregistration(&elder, "E2E-6", "stranger", "");
    stranger.applicant = citizen(&seeded_parent());
    let refused = cases
        .create_case(with(stranger, certificate("dev.wjw", "E2E-6", |_| {})))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(refused.state(), CaseState::NotAccepted);
    assert_eq!(refused.reason_code, "HOUSEHOLD_NOT_SAME_HOUSEHOLD");
    let alive = count(mesh.db(HOUSEHOLD), &format!("persons WHERE id_number = '{elder}' AND status = 'active'")).await;
    assert_eq!(alive, 1, "nobody was deregistered");

    // A verified certificate for her, from her son: recorded at once, and the fact says on what.
    let done =
        cases.create_case(deregistration(&elder, "E2E-7", "verified", "")).await.unwrap().into_inner().case.unwrap();
    assert_eq!(done.state(), CaseState::Approved, "{}", done.reason_text);
    let js = mesh.nats.jetstream().await;
    let deaths: Vec<onething_proto::household::PersonDeceased> =
        eventually(std::time::Duration::from_secs(30), "the death published", || async {
            let all = read_stream(&js, 1).await;
            let deaths: Vec<_> = all
                .iter()
                .filter(|m| m.subject.as_str() == "onething.household.v1.person.deceased")
                .map(|m| onething_proto::household::PersonDeceased::decode(m.payload.clone()).unwrap())
                .collect();
            (!deaths.is_empty()).then_some(deaths)
        })
        .await
        .unwrap();
    assert_eq!(deaths.len(), 1, "one death, on the verified certificate only");
    let evidence = &deaths[0].evidence;
    assert_eq!(evidence.len(), 1);
    assert!(evidence[0].verified);
    assert_eq!((evidence[0].issuer.as_str(), evidence[0].kind.as_str()), ("dev.wjw", "death_medical_certificate"));
    mesh.stop_all().await;
}
both_backends!(no_one_is_declared_dead_on_unverified_evidence);

/// The certificate number a test case's form names: the licence's own where it has one.
fn token_number(token: &str, key: &str) -> String {
    onething_platform::elicence::parse(token).map_or_else(|_| format!("E2E-{key}"), |p| p.licence.jti)
}
