//! M12's green channels end to end: household asks liaison's enterprise register whether
//! the applicant is an employee of a private enterprise on record.

use crate::common::*;
use onething_proto::common::{self as cpb, CaseState};
use tonic::Code;

/// M12's green channel for private-enterprise employees: household asks liaison's register.
/// An employee of a private enterprise on record gets the expedited ID card and a residence
/// permit handled first within the green channel's five working days; a state enterprise's
/// employee, or someone the enterprise did not report, is refused; with the register out
/// of reach, nothing is stored and the caller is told to retry.
async fn green_channels_check_the_employer_and_the_employee(backend: Backend) {
    let Some(mut w) = TestMesh::with(backend).service(HOUSEHOLD).service(LIAISON).start().await else { return };
    let logistics = onething_liaison::store::seed_logistics().to_string();
    let chemicals = onething_liaison::store::seed_chemicals().to_string();
    let mut cases = w.coordinator_cases(HOUSEHOLD).await;
    let id_card_for = |applicant: &str, who: &str, employer: &str, key: &str| cpb::CreateCaseRequest {
        matter_code: "household.id_card_expedited".into(),
        applicant: citizen(applicant),
        form: form(&[("subject_id_number", who), ("employer_credit_code", employer)]),
        materials: vec![material("employment_proof"), material("photo")],
        idempotency_key: key.into(),
        bundle_id: String::new(),
    };
    let id_card = |who: &str, employer: &str, key: &str| id_card_for(who, who, employer, key);
    let admitted = cases.create_case(id_card(&seeded_parent(), &logistics, "g-1")).await.case();
    assert_eq!(admitted.state(), CaseState::Submitted);
    assert_eq!(admitted.result["green_channel"], "private_enterprise_employee");
    for (who, employer, key) in
        [(seeded_parent(), chemicals.clone(), "g-2"), (seeded_person(), logistics.clone(), "g-3")]
    {
        let refused = cases.create_case(id_card(&who, &employer, key)).await.case();
        assert_eq!(
            (refused.state(), refused.reason_code.as_str()),
            (CaseState::NotAccepted, "HOUSEHOLD_NOT_GREEN_CHANNEL")
        );
        // One refusal whichever condition failed: nothing learnt of the register.
        assert_eq!(refused.reason_text, onething_household::matters::green::NOT_GREEN_CHANNEL);
    }
    // The employee applies for their own card: a relative asking for his card (or he for
    // hers) is refused the same way whether anyone works anywhere, and the register is not
    // asked.
    for (applicant, subject, key) in
        [(seeded_spouse(), seeded_parent(), "g-1h"), (seeded_parent(), seeded_spouse(), "g-1s")]
    {
        let relative = cases.create_case(id_card_for(&applicant, &subject, &logistics, key)).await.case();
        assert_eq!(
            (relative.state(), relative.reason_code.as_str(), relative.result.is_empty()),
            (CaseState::NotAccepted, "HOUSEHOLD_NOT_GREEN_CHANNEL", true)
        );
        assert!(relative.reason_text.contains("own card"), "{}", relative.reason_text);
    }
    // A stranger naming an employee hears the household rule, and nothing of the employment.
    let stranger = cases.create_case(id_card_for(&seeded_person(), &seeded_parent(), &logistics, "g-1x")).await.case();
    assert_eq!(stranger.reason_code, "HOUSEHOLD_NOT_SAME_HOUSEHOLD");
    assert!(stranger.result.is_empty(), "{:?}", stranger.result);
    let stranger = cases.create_case(id_card_for(&seeded_person(), &seeded_spouse(), &logistics, "g-1y")).await.case();
    assert_eq!(stranger.reason_code, "HOUSEHOLD_NOT_SAME_HOUSEHOLD", "the same answer for a non-employee");

    // The residence permit: in the green channel only when the employer is named and checks out.
    let permit = |employer: Option<&str>, key: &str| {
        let mut r = residence_request(key);
        if let Some(e) = employer {
            r.form.insert("employer_credit_code".into(), e.into());
        }
        r
    };
    let ordinary = cases.create_case(permit(None, "g-4")).await.case();
    let green = cases.create_case(permit(Some(&logistics), "g-5")).await.case();
    let (o, g) = (ordinary.time_rule.unwrap(), green.time_rule.unwrap());
    assert_eq!((o.limit, g.limit), (10, 5), "the green channel's own committed time");
    assert!(g.due_time.unwrap().seconds < o.due_time.unwrap().seconds);
    let queue = w
        .clerk(HOUSEHOLD)
        .await
        .list_cases(cpb::ListCasesRequest { matter_code: "household.residence_permit".into(), ..Default::default() })
        .await
        .answer()
        .cases;
    assert_eq!(queue.first().map(|c| c.case_id.as_str()), Some(green.case_id.as_str()), "handled first");
    // Only the holder's own employment counts: naming an employee as subject does nothing.
    let newcomer =
        onething_platform::ids::CitizenId::assign("110105", chrono::NaiveDate::from_ymd_opt(1985, 1, 1).unwrap(), 23)
            .unwrap()
            .expose()
            .to_string();
    let mut borrowed = permit(Some(&logistics), "g-5b");
    borrowed.applicant = citizen(&newcomer);
    borrowed.form.insert("subject_id_number".into(), seeded_parent());
    let borrowed = cases.create_case(borrowed).await.case();
    assert_eq!(borrowed.state(), CaseState::Submitted);
    assert!(borrowed.result.contains_key("green_channel_refused"), "{:?}", borrowed.result);
    // Refused the channel, not the permit: handled in the ordinary way, the reason noted.
    let slower = cases.create_case(permit(Some(&chemicals), "g-6")).await.case();
    assert_eq!(slower.state(), CaseState::Submitted);
    assert_eq!(slower.time_rule.unwrap().limit, 10);
    assert!(slower.result["green_channel_refused"].contains("private enterprise"), "{:?}", slower.result);
    assert!(!slower.result.contains_key("green_channel"));

    // The register out of reach: refused for now, nothing stored.
    w.stop(LIAISON).await;
    let before = count(w.db(HOUSEHOLD), "cases").await;
    let err = cases.create_case(id_card(&seeded_parent(), &logistics, "g-7")).await.unwrap_err();
    assert_eq!((err.code(), reason_of(&err).as_str()), (Code::Unavailable, "HOUSEHOLD_REGISTER_UNAVAILABLE"));
    // An outage of ours costs no entitled applicant the channel: the permit waits for a retry.
    let err = cases.create_case(permit(Some(&logistics), "g-8")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(count(w.db(HOUSEHOLD), "cases").await, before);
    w.restart(LIAISON).await;
    w.stop_all().await;
}
both_backends!(green_channels_check_the_employer_and_the_employee);
