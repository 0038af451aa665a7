//! Household rules that need no database: what a matter's form means beyond the catalog's
//! declaration of it, and the choice of the
//! sequence code of a newborn's ID number. Pure and unit-tested.

use chrono::{Local, NaiveDate};
use onething_platform::{
    cases::{ApplicantRecord, Form},
    catalog::{Matter, form::FormCheck},
    error::FieldViolation,
    ids::CitizenId,
};
use onething_proto::common::ApplicantKind;

/// Region prefix of Weihai (威海市): households here are local.
pub const LOCAL_PREFIX: &str = "3710";

/// Months of residence a residence permit needs (居住证暂行条例: half a year).
pub const RESIDENCE_MONTHS: u32 = 6;

/// What household checks of a form beyond the catalog's declaration of it (kinds, bounds,
/// required fields, enumerations): dates not in the future, who may apply.
pub fn validate(matter: &Matter, applicant: Option<&ApplicantRecord>, form: &Form) -> Vec<FieldViolation> {
    let mut f = FormCheck::new(form);
    let today = Local::now().date_naive();
    match matter.code.as_str() {
        "household.birth_registration" => {
            f.past_date("birth_date", today);
            f.applicant_kind(applicant, ApplicantKind::Citizen, "a citizen");
            // A parent registers the child: naming someone else would add a child to a
            // stranger's household.
            let parent = f.value("parent_id_number").and_then(|p| CitizenId::parse(p).ok());
            if let (Some(a), Some(parent)) = (applicant, parent)
                && a.kind == ApplicantKind::Citizen
                && parent.expose() != a.identifier
            {
                f.refuse("parent_id_number", "must be the applicant: a parent registers the child");
            }
        }
        "household.residence_permit" => {
            f.applicant_kind(applicant, ApplicantKind::Citizen, "a citizen");
            f.past_date("residence_since", today);
        }
        "household.deregistration" => f.past_date("death_date", today),
        "household.collective_household" => f.applicant_kind(applicant, ApplicantKind::Enterprise, "an enterprise"),
        // The catalog's declaration says all there is to check.
        _ => {}
    }
    f.finish()
}

/// The sequence code for a newborn of `sex` (`M` odd, `F` even) given the highest
/// sequence already used for the same region and birth date; `None` when exhausted.
pub fn next_sequence(highest_used: Option<u16>, sex: &str) -> Option<u16> {
    let male = sex == "M";
    let mut next = highest_used.map_or(1, |h| h + 1);
    if (next % 2 == 1) != male {
        next += 1;
    }
    (next <= 999).then_some(next)
}

/// Whether an ID number was issued in Weihai.
pub fn is_local(id: &CitizenId) -> bool {
    id.region().starts_with(LOCAL_PREFIX)
}

/// Whether someone living somewhere since `since` has lived there long enough on `today`.
pub fn resided_long_enough(since: NaiveDate, today: NaiveDate) -> bool {
    since.checked_add_months(chrono::Months::new(RESIDENCE_MONTHS)).is_some_and(|d| d <= today)
}

#[cfg(test)]
mod tests {
    use super::*;
    use onething_platform::catalog::Catalog;

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

    /// The form as CreateCase checks it: the catalog's declaration, then household's rules.
    fn validate(m: &Matter, applicant: Option<&ApplicantRecord>, form: &Form) -> Vec<FieldViolation> {
        Catalog::load("").unwrap().check_case_form(m, form, super::validate(m, applicant, form))
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
            validate(&cert, Some(&citizen()), &form(&[("subject_id_number", &parent()), ("purpose", "就业")]))
                .is_empty()
        );
        assert_eq!(fields(&validate(&cert, Some(&citizen()), &form(&[]))), ["form.purpose", "form.subject_id_number"]);
        let conf = matter("household.info_confirmation");
        assert!(
            validate(&conf, Some(&citizen()), &form(&[("subject_id_number", &parent()), ("purpose", "retirement")]))
                .is_empty()
        );
        assert_eq!(
            fields(&validate(
                &conf,
                Some(&citizen()),
                &form(&[("subject_id_number", &parent()), ("purpose", "travel")])
            )),
            ["form.purpose"]
        );
    }

    #[test]
    fn residence_permit_rules() {
        let m = matter("household.residence_permit");
        let ok = form(&[("residence_address", "威海市环翠区某处"), ("residence_since", "2025-01-01")]);
        assert!(validate(&m, Some(&citizen()), &ok).is_empty());
        let today = NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
        assert!(resided_long_enough(NaiveDate::from_ymd_opt(2026, 5, 29).unwrap(), today));
        assert!(!resided_long_enough(NaiveDate::from_ymd_opt(2026, 5, 30).unwrap(), today));
        assert!(is_local(&CitizenId::parse(&parent()).unwrap()));
        assert!(!is_local(&CitizenId::parse("11010519491231002X").unwrap()));
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

    #[test]
    fn sequence_codes_follow_sex_parity() {
        assert_eq!(next_sequence(None, "M"), Some(1));
        assert_eq!(next_sequence(None, "F"), Some(2));
        assert_eq!(next_sequence(Some(1), "M"), Some(3));
        assert_eq!(next_sequence(Some(1), "F"), Some(2));
        assert_eq!(next_sequence(Some(998), "M"), Some(999));
        assert_eq!(next_sequence(Some(999), "F"), None);
    }
}
