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
    let in_a_day = chrono::Utc::now().timestamp() + 86_400;
    let to_clerk = [
        ("forged", forged.join("."), "its signature does not verify", "bad_signature"),
        ("kind", certificate("dev.scjg", "E2E-2", |_| {}), "its issuer may not issue this kind", "kind_not_allowed"),
        ("expired", certificate("dev.wjw", "E2E-3", |l| l.exp = Some(l.iat + 60)), "expired", "expired"),
        ("early", certificate("dev.wjw", "E2E-8", |l| l.nbf = in_a_day), "not valid yet", "not_yet_valid"),
        ("revoked", certificate("dev.wjw", "E2E-REVOKED", |_| {}), "revoked by its issuer", "revoked"),
        ("plain", String::new(), "not an e-licence", "not_an_elicence"),
    ];
    for (key, token, why, code) in to_clerk {
        let number = token_number(&token, key);
        let req = with(deregistration(&elder, &number, key, ""), token);
        let case = cases.create_case(req).await.unwrap().into_inner().case.unwrap();
        assert_eq!(case.state(), CaseState::Accepted, "{key}: waits for a clerk");
        assert!(case.reason_text.contains(why), "{key}: {}", case.reason_text);
        // The clerk's view and the case's event say what did not verify; never the document.
        assert_eq!((case.evidence[0].verified, case.evidence[0].unverified_reason.as_str()), (false, code), "{key}");
    }
    let js = mesh.nats.jetstream().await;
    let accepted = eventually(std::time::Duration::from_secs(30), "the clerk-bound cases' events", || async {
        let all = on_subject(&js, "ONETHING_HOUSEHOLD", "onething.household.v1.case.accepted").await;
        (all.len() >= 6).then_some(all)
    })
    .await
    .unwrap();
    for m in accepted {
        let e = pb::CaseStateChanged::decode(m).unwrap();
        assert!(e.evidence.iter().all(|x| !x.verified && !x.unverified_reason.is_empty()), "{:?}", e.evidence);
    }
    // Verified, but about someone else: refused at the door, nothing stored.
    let stored = count(mesh.db(HOUSEHOLD), "cases").await;
    let other = certificate("dev.wjw", "E2E-4", |l| l.sub = seeded_parent());
    let err = cases.create_case(with(deregistration(&elder, "E2E-4", "other", ""), other)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert_eq!(err.get_error_details().error_info().unwrap().reason, "CASE_ELICENCE_MISMATCH");
    assert!(err.message().contains("subject_id_number"), "{}", err.message());
    // Signed by its issuer but expired as well: still refused as about someone else.
    let stale_other = certificate("dev.wjw", "E2E-9", |l| {
        l.sub = seeded_parent();
        l.exp = Some(l.iat + 60);
    });
    let err =
        cases.create_case(with(deregistration(&elder, "E2E-9", "stale-other", ""), stale_other)).await.unwrap_err();
    assert_eq!(err.get_error_details().error_info().unwrap().reason, "CASE_ELICENCE_MISMATCH");
    // Not an e-licence at all: a malformed request naming the material.
    for (key, token) in [("junk", "a.b".to_string()), ("huge", format!("{good}.{}", "A".repeat(17 * 1024)))] {
        let err = cases.create_case(with(deregistration(&elder, "E2E-5", key, ""), token)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        let fields: Vec<String> =
            err.get_error_details().bad_request().unwrap().field_violations.iter().map(|v| v.field.clone()).collect();
        assert_eq!(fields, ["materials[0].elicence"], "{key}");
    }
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
    assert_eq!(refused.reason_code, "HOUSEHOLD_NOT_RELATIVE");
    let alive = count(mesh.db(HOUSEHOLD), &format!("persons WHERE id_number = '{elder}' AND status = 'active'")).await;
    assert_eq!(alive, 1, "nobody was deregistered");
    let deceased = "onething.household.v1.person.deceased";
    assert!(on_subject(&js, "ONETHING_HOUSEHOLD", deceased).await.is_empty(), "no death published");

    // A verified certificate for her, from her son: recorded at once, and the fact says on what.
    let done =
        cases.create_case(deregistration(&elder, "E2E-7", "verified", "")).await.unwrap().into_inner().case.unwrap();
    assert_eq!(done.state(), CaseState::Approved, "{}", done.reason_text);
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
    assert_eq!(deaths[0].case_id, done.case_id);
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

/// The reason code of a gRPC error.
fn reason(err: &tonic::Status) -> String {
    err.get_error_details().error_info().map(|i| i.reason.clone()).unwrap_or_default()
}

/// An online seal filing (M23, done at once) rests on the enterprise's 电子营业执照, which the
/// catalog requires verified: a paper licence, one signed by an issuer that may not sign
/// business licences, or another enterprise's is refused and no seal is filed; a supplement
/// must be verified too (the case keeps waiting for one); a verified licence files at once.
async fn an_online_seal_filing_rests_on_a_verified_business_licence(backend: Backend) {
    let Some(mesh) = TestMesh::with(backend).service(LIAISON).start().await else { return };
    let code = onething_platform::ids::CreditCode::complete("91371002MA3E00001").unwrap().to_string();
    let mut cases = mesh.cases(LIAISON, &enterprise_token(&code)).await;
    let filing = |key: &str, business_licence: Option<pb::Material>| {
        let mut req = crate::liaison::case(
            "liaison.seal_engraving_filing",
            &code,
            &[("seal_kinds", "official"), ("engraving_company", "威海示例刻章店")],
            &["seal_imprints"],
            key,
        );
        req.materials.extend(business_licence);
        req
    };
    let licence = |token: String| Some(pb::Material { elicence: token, ..material("business_licence") });
    let now = chrono::Utc::now().timestamp();
    let by_wjw = dev_issuers().key("dev.wjw").unwrap().issue(&Licence::business(&code, "威海示例企业", now)).unwrap();
    for (key, material, why) in [
        ("paper", Some(material("business_licence")), "not an e-licence"),
        ("wrong-issuer", licence(by_wjw), "its issuer may not issue this kind"),
    ] {
        let case = cases.create_case(filing(key, material)).await.unwrap().into_inner().case.unwrap();
        assert_eq!((case.state(), case.reason_code.as_str()), (CaseState::NotAccepted, "CASE_ELICENCE_NOT_VERIFIED"));
        assert!(case.reason_text.contains(why), "{key}: {}", case.reason_text);
    }
    // Another enterprise's licence, verified: refused at the door, nothing stored.
    let stored = count(mesh.db(LIAISON), "cases").await;
    let err = cases
        .create_case(filing(
            "other",
            licence(business_elicence(&onething_liaison::store::seed_logistics().to_string())),
        ))
        .await
        .unwrap_err();
    assert_eq!((err.code(), reason(&err).as_str()), (tonic::Code::FailedPrecondition, "CASE_ELICENCE_MISMATCH"));
    assert!(err.message().contains("@applicant"), "{}", err.message());
    assert_eq!(count(mesh.db(LIAISON), "cases").await, stored, "nothing stored");
    assert_eq!(count(mesh.db(LIAISON), &format!("seals WHERE credit_code = '{code}'")).await, 0, "no seal filed");

    // Without the licence: asked for; a paper one supplied is refused and changes nothing.
    let waiting = cases.create_case(filing("later", None)).await.unwrap().into_inner().case.unwrap();
    assert_eq!(waiting.state(), CaseState::AwaitingSupplement);
    assert_eq!(waiting.missing_materials, ["business_licence"]);
    let supply = |m: Option<pb::Material>| pb::SupplyMaterialsRequest {
        case_id: waiting.case_id.clone(),
        materials: m.into_iter().collect(),
        expected_version: 0,
    };
    let err = cases.supply_materials(supply(Some(material("business_licence")))).await.unwrap_err();
    assert_eq!((err.code(), reason(&err).as_str()), (tonic::Code::FailedPrecondition, "CASE_ELICENCE_NOT_VERIFIED"));
    let still = cases
        .get_case(pb::GetCaseRequest { case_id: waiting.case_id.clone() })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!((still.state(), still.version), (CaseState::AwaitingSupplement, waiting.version), "nothing changed");
    // The verified licence: filed at once, and the case says on what.
    let done = cases.supply_materials(supply(licence(business_elicence(&code)))).await.unwrap().into_inner();
    assert_eq!(done.case.unwrap().state(), CaseState::Approved);
    assert_eq!(count(mesh.db(LIAISON), &format!("seals WHERE credit_code = '{code}'")).await, 1);
    let fresh = cases
        .create_case(crate::liaison::case(
            "liaison.seal_engraving_filing",
            &code,
            &[("seal_kinds", "finance"), ("engraving_company", "威海示例刻章店")],
            &["business_licence", "seal_imprints"],
            "verified",
        ))
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(fresh.state(), CaseState::Approved, "{}", fresh.reason_text);
    let js = mesh.nats.jetstream().await;
    let evidence: Vec<pb::Evidence> =
        eventually(std::time::Duration::from_secs(30), "the approval's event", || async {
            on_subject(&js, "ONETHING_LIAISON", "onething.liaison.v1.case.approved").await.into_iter().find_map(|m| {
                let e = pb::CaseStateChanged::decode(m).ok()?;
                (e.case_id == fresh.case_id && e.to_state() == CaseState::Approved).then_some(e.evidence)
            })
        })
        .await
        .unwrap();
    assert_eq!(evidence.len(), 1);
    assert!(evidence[0].verified && evidence[0].issuer == "dev.scjg", "{evidence:?}");
    mesh.stop_all().await;
}
both_backends!(an_online_seal_filing_rests_on_a_verified_business_licence);

/// A death may be reported online by a close relative on record in another household (a
/// granddaughter), not by anyone else; a parent who registers a child is on record as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_relative_on_record_reports_a_death() {
    let Some(mesh) = TestMesh::with(Backend::Sqlite).service(HOUSEHOLD).start().await else { return };
    let mut cases = mesh.coordinator_cases(HOUSEHOLD).await;
    let elder = seeded_elder();
    let granddaughter = onething_household::store::seed_id("371082", "1995-02-28", 82).unwrap().expose().to_string();
    // Someone of another household with no relation on record: refused, as a stranger is.
    let mut unrelated = deregistration(&elder, "SW-K-1", "kin-unrelated", "");
    unrelated.applicant = citizen(&seeded_spouse());
    let refused = cases.create_case(unrelated).await.unwrap().into_inner().case.unwrap();
    assert_eq!((refused.state(), refused.reason_code.as_str()), (CaseState::NotAccepted, "HOUSEHOLD_NOT_RELATIVE"));
    // Her granddaughter, with the verified certificate: recorded at once.
    let mut req = deregistration(&elder, "SW-K-2", "kin-granddaughter", "");
    req.applicant = citizen(&granddaughter);
    let done = cases.create_case(req).await.unwrap().into_inner().case.unwrap();
    assert_eq!(done.state(), CaseState::Approved, "{}: {}", done.reason_code, done.reason_text);
    assert_eq!(
        count(mesh.db(HOUSEHOLD), &format!("persons WHERE id_number = '{elder}' AND status = 'deceased'")).await,
        1
    );

    // A birth puts the registering parent on record, both ways.
    let born = cases.create_case(birth_request("kin-birth", "Q-KIN-1")).await.unwrap().into_inner().case.unwrap();
    assert_eq!(born.state(), CaseState::Approved, "{}", born.reason_text);
    let child = &born.result["new_id_number"];
    let parent = seeded_parent();
    for (who, relative, relation) in [(child.as_str(), parent.as_str(), "parent"), (&parent, child, "child")] {
        let q =
            format!("kin WHERE id_number = '{who}' AND relative_id_number = '{relative}' AND relation = '{relation}'");
        assert_eq!(count(mesh.db(HOUSEHOLD), &q).await, 1, "{relation} on record");
    }
    mesh.stop_all().await;
}

/// A birth is registered at once only on a verified certificate naming the applicant as a
/// parent: one naming other parents, or another child, is refused at the door.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_birth_rests_on_a_certificate_naming_the_applicant() {
    let Some(mesh) = TestMesh::with(Backend::Sqlite).service(HOUSEHOLD).start().await else { return };
    let mut cases = mesh.coordinator_cases(HOUSEHOLD).await;
    let parent = seeded_parent();
    let stored = count(mesh.db(HOUSEHOLD), "cases").await;
    let strangers = birth_elicence("Q-B-1", ("王小明", "M"), "2026-11-01", &seeded_person(), "");
    let other_child = birth_elicence("Q-B-1", ("王小红", "M"), "2026-11-01", &parent, "");
    // The sex decides the parity of the new ID number: a certificate of a girl registers no boy.
    let other_sex = birth_elicence("Q-B-1", ("王小明", "F"), "2026-11-01", &parent, "");
    let refused =
        [("parents", strangers, "@applicant"), ("child", other_child, "child_name"), ("sex", other_sex, "child_sex")];
    for (why, token, field) in refused {
        let mut req = birth_request(&format!("birth-{why}"), "Q-B-1");
        req.materials[0].elicence = token;
        let err = cases.create_case(req).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{why}: {err:?}");
        assert!(err.message().contains(field), "{why}: {}", err.message());
    }
    assert_eq!(count(mesh.db(HOUSEHOLD), "cases").await, stored, "nothing stored");
    let born = cases.create_case(birth_request("birth-ok", "Q-B-1")).await.unwrap().into_inner().case.unwrap();
    assert_eq!(born.state(), CaseState::Approved, "{}", born.reason_text);
    mesh.stop_all().await;
}

/// A running service takes its issuers' new revocation lists on its refresh interval: a
/// certificate revoked, and then the key that signed certificates, stop verifying without
/// a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_a_running_service() {
    let issuers = dev_issuers();
    let mut list: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&issuers.trust_list).unwrap()).unwrap();
    list["refresh_seconds"] = 1.into();
    let fast = issuers.dir.join("trust-list-fast.json");
    std::fs::write(&fast, list.to_string()).unwrap();
    let file = fast.display().to_string();
    let Some(mesh) = TestMesh::with(Backend::Sqlite)
        .service(HOUSEHOLD)
        .settings(move |_, s| s.elicence.trust_list_file = file.clone())
        .start()
        .await
    else {
        return;
    };
    let cases = mesh.coordinator_cases(HOUSEHOLD).await;
    // Reports by someone who may not make them: refused, so nobody dies, but each case
    // keeps what its evidence was found to be.
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let found = |number: &'static str| {
        let (mut cases, attempts) = (cases.clone(), attempts.clone());
        async move {
            let attempt = attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let key = format!("probe-{attempt}");
            let mut req =
                with(deregistration(&seeded_elder(), number, &key, ""), certificate("dev.wjw", number, |_| {}));
            req.applicant = citizen(&seeded_spouse());
            let c = cases.create_case(req).await.unwrap().into_inner().case.unwrap();
            assert_eq!(c.reason_code, "HOUSEHOLD_NOT_RELATIVE");
            c.evidence[0].unverified_reason.clone()
        }
    };
    assert_eq!(found("E2E-LATE").await, "", "verified before it is revoked");
    issuers.revoke("dev.wjw", &["E2E-LATE".into()], &[]).unwrap();
    // What a fresh case of `number` finds, once it says revoked (the service reads its lists
    // every second) or after ten seconds.
    let revoked = |number: &'static str| {
        let found = &found;
        async move {
            let mut seen = String::new();
            for _ in 0..50 {
                seen = found(number).await;
                if seen == "revoked" {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            seen
        }
    };
    assert_eq!(revoked("E2E-LATE").await, "revoked", "the list was taken while running");
    assert_eq!(found("E2E-OTHER").await, "", "another certificate still verifies");
    let kid = issuers.key("dev.wjw").unwrap().kid;
    issuers.revoke("dev.wjw", &[], &[kid]).unwrap();
    assert_eq!(revoked("E2E-OTHER").await, "revoked", "nothing the revoked key signed verifies");
    mesh.stop_all().await;
}
