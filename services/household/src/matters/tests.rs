//! Each household matter's form as `CreateCase` checks it: the catalog's declaration, then
//! what the matter's rules say the values mean.

use onething_platform::{
    cases::{ApplicantRecord, Form, check_case_form},
    catalog::{Catalog, Matter},
    error::FieldViolation,
};
use onething_proto::common::ApplicantKind;

fn citizen() -> ApplicantRecord {
    ApplicantRecord {
        kind: ApplicantKind::Citizen,
        identifier: crate::store::seed_id("371002", "1990-03-15", 11).unwrap().expose().into(),
        name: "王建国".into(),
        phone: String::new(),
    }
}

fn enterprise() -> ApplicantRecord {
    ApplicantRecord {
        kind: ApplicantKind::Enterprise,
        identifier: "91350100M000100Y43".into(),
        name: "示例有限公司".into(),
        phone: String::new(),
    }
}

fn form(pairs: &[(&str, &str)]) -> Form {
    pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
}

fn fields(v: &[FieldViolation]) -> Vec<&str> {
    let mut got: Vec<&str> = v.iter().map(|x| x.field.as_str()).collect();
    got.sort_unstable();
    got
}

/// The form as CreateCase checks it: the catalog's declaration, then the matter's rules.
fn validate(m: &Matter, applicant: Option<&ApplicantRecord>, form: &Form) -> Vec<FieldViolation> {
    let dept = super::department(super::green::Employment::unconfigured());
    let rules = dept.rules(&m.code).unwrap();
    check_case_form(&Catalog::load("").unwrap(), m, rules, applicant, form, chrono::Utc::now())
}

fn matter(code: &str) -> Matter {
    Catalog::load("").unwrap().get(code).unwrap().clone()
}

fn parent() -> String {
    citizen().identifier
}

#[test]
fn birth_registration_form() {
    let m = matter("household.birth_registration");
    let good = form(&[
        ("child_name", "王小明"),
        ("child_sex", "M"),
        ("birth_date", "2026-11-01"),
        ("parent_id_number", &parent()),
        ("birth_certificate_number", "Q370012345"),
    ]);
    assert!(validate(&m, Some(&citizen()), &good).is_empty());
    let mut bad = good.clone();
    bad.insert("child_sex".into(), "X".into());
    bad.insert("birth_date".into(), "2099-01-01".into());
    bad.insert("parent_id_number".into(), "371002199003150000".into());
    bad.remove("child_name");
    assert_eq!(
        fields(&validate(&m, Some(&citizen()), &bad)),
        ["form.birth_date", "form.child_name", "form.child_sex", "form.parent_id_number"]
    );
    assert_eq!(fields(&validate(&m, Some(&enterprise()), &good)), ["applicant.kind"]);
    let mut strangers = good.clone();
    strangers.insert("parent_id_number".into(), "11010519491231002X".into());
    assert_eq!(fields(&validate(&m, Some(&citizen()), &strangers)), ["form.parent_id_number"]);
}

#[test]
fn certificate_and_confirmation_forms() {
    let cert = matter("household.certificate");
    assert!(
        validate(&cert, Some(&citizen()), &form(&[("subject_id_number", &parent()), ("purpose", "就业")])).is_empty()
    );
    assert_eq!(fields(&validate(&cert, Some(&citizen()), &form(&[]))), ["form.purpose", "form.subject_id_number"]);
    let conf = matter("household.info_confirmation");
    assert!(
        validate(&conf, Some(&citizen()), &form(&[("subject_id_number", &parent()), ("purpose", "retirement")]))
            .is_empty()
    );
    assert_eq!(
        fields(&validate(&conf, Some(&citizen()), &form(&[("subject_id_number", &parent()), ("purpose", "travel")]))),
        ["form.purpose"]
    );
}

#[test]
fn residence_permit_rules() {
    let m = matter("household.residence_permit");
    let ok = form(&[("residence_address", "威海市环翠区某处"), ("residence_since", "2025-01-01")]);
    assert!(validate(&m, Some(&citizen()), &ok).is_empty());
}

#[test]
fn deregistration_form() {
    let m = matter("household.deregistration");
    let ok = form(&[
        ("subject_id_number", &parent()),
        ("death_date", "2026-11-20"),
        ("death_certificate_number", "SW-2026-001"),
    ]);
    assert!(validate(&m, Some(&citizen()), &ok).is_empty());
    let bad =
        form(&[("subject_id_number", &parent()), ("death_date", "20-11-2026"), ("death_certificate_number", "x")]);
    assert_eq!(fields(&validate(&m, Some(&citizen()), &bad)), ["form.death_certificate_number", "form.death_date"]);
}

#[test]
fn collective_household_needs_an_enterprise_and_a_valid_representative() {
    let m = matter("household.collective_household");
    let ok = form(&[("legal_representative_id_number", &parent()), ("premises_address", "威海市经区某园区")]);
    assert!(validate(&m, Some(&enterprise()), &ok).is_empty());
    assert_eq!(fields(&validate(&m, Some(&citizen()), &ok)), ["applicant.kind"]);
    assert_eq!(m.required_materials.len(), 3);
}

#[test]
fn id_card_expedited_needs_the_employer() {
    let m = matter("household.id_card_expedited");
    assert!(m.priority);
    let ok = form(&[("subject_id_number", &parent()), ("employer_credit_code", "91350100M000100Y43")]);
    assert!(validate(&m, Some(&citizen()), &ok).is_empty());
    let bad = form(&[("subject_id_number", &parent()), ("employer_credit_code", "91350100M000100Y44")]);
    assert_eq!(fields(&validate(&m, Some(&citizen()), &bad)), ["form.employer_credit_code"]);
}
