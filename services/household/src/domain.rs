//! Household rules that need no database: the form of each matter, and the choice of the
//! sequence code of a newborn's ID number. Pure and unit-tested.

use chrono::{Local, NaiveDate};
use onething_platform::{
    cases::{ApplicantRecord, Form},
    catalog::Matter,
    error::FieldViolation,
    ids::{CitizenId, CreditCode},
};
use onething_proto::common::ApplicantKind;

/// Region prefix of Weihai (威海市): households here are local.
pub const LOCAL_PREFIX: &str = "3710";

/// Purposes an information confirmation may serve (M23: school enrollment, retirement).
pub const CONFIRMATION_PURPOSES: &[&str] = &["school_enrollment", "retirement"];

/// Months of residence a residence permit needs (居住证暂行条例: half a year).
pub const RESIDENCE_MONTHS: u32 = 6;

/// Checks the form of a household matter. Field names follow the catalog's forms.
pub fn validate(matter: &Matter, applicant: Option<&ApplicantRecord>, form: &Form) -> Vec<FieldViolation> {
    let mut out = Vec::new();
    let f = Fields { form, out: &mut out };
    match matter.code.as_str() {
        "household.birth_registration" => {
            let mut f = f;
            f.text("child_name", 50);
            f.one_of("child_sex", &["M", "F"]);
            f.past_date("birth_date");
            f.citizen_id("parent_id_number");
            f.code("birth_certificate_number");
            f.citizen_applicant(applicant);
            // A parent registers the child: naming someone else would add a child to a
            // stranger's household.
            let parent = form.get("parent_id_number").and_then(|p| CitizenId::parse(p).ok());
            if let (Some(a), Some(parent)) = (applicant, parent)
                && a.kind == ApplicantKind::Citizen
                && parent.expose() != a.identifier
            {
                out.push(violation("form.parent_id_number", "must be the applicant: a parent registers the child"));
            }
        }
        "household.certificate" => {
            let mut f = f;
            f.citizen_id("subject_id_number");
            f.text("purpose", 100);
        }
        "household.info_confirmation" => {
            let mut f = f;
            f.citizen_id("subject_id_number");
            f.one_of("purpose", CONFIRMATION_PURPOSES);
        }
        "household.residence_permit" => {
            let mut f = f;
            f.citizen_applicant(applicant);
            f.text("residence_address", 200);
            f.past_date("residence_since");
        }
        "household.deregistration" => {
            let mut f = f;
            f.citizen_id("subject_id_number");
            f.past_date("death_date");
            f.code("death_certificate_number");
        }
        "household.collective_household" => {
            let mut f = f;
            if applicant.is_some_and(|a| a.kind != ApplicantKind::Enterprise) {
                f.out.push(violation("applicant.kind", "a collective household is applied for by an enterprise"));
            }
            f.citizen_id("legal_representative_id_number");
            f.text("premises_address", 200);
        }
        "household.id_card_expedited" => {
            let mut f = f;
            f.citizen_id("subject_id_number");
            f.credit_code("employer_credit_code");
        }
        _ => out.push(violation("matter_code", "household has no rules for this matter")),
    }
    out
}

struct Fields<'a> {
    form: &'a Form,
    out: &'a mut Vec<FieldViolation>,
}

impl Fields<'_> {
    fn get(&mut self, name: &str) -> Option<&str> {
        match self.form.get(name).map(String::as_str) {
            Some(v) if !v.is_empty() => Some(v),
            _ => {
                self.out.push(violation(&format!("form.{name}"), "required"));
                None
            }
        }
    }

    fn text(&mut self, name: &str, max: usize) {
        if let Some(v) = self.get(name)
            && v.chars().count() > max
        {
            self.out.push(violation(&format!("form.{name}"), &format!("at most {max} characters")));
        }
    }

    fn one_of(&mut self, name: &str, allowed: &[&str]) {
        if let Some(v) = self.get(name)
            && !allowed.contains(&v)
        {
            self.out.push(violation(&format!("form.{name}"), &format!("one of {}", allowed.join(", "))));
        }
    }

    fn past_date(&mut self, name: &str) {
        if let Some(v) = self.get(name) {
            match NaiveDate::parse_from_str(v, "%Y-%m-%d") {
                Ok(d) if d <= Local::now().date_naive() && d >= NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or(d) => {}
                Ok(_) => self.out.push(violation(&format!("form.{name}"), "must not be in the future or before 1900")),
                Err(_) => self.out.push(violation(&format!("form.{name}"), "a date as YYYY-MM-DD")),
            }
        }
    }

    fn citizen_id(&mut self, name: &str) {
        if let Some(v) = self.get(name)
            && let Err(e) = CitizenId::parse(v)
        {
            self.out.push(violation(&format!("form.{name}"), &format!("not a citizen ID number: {e}")));
        }
    }

    fn credit_code(&mut self, name: &str) {
        if let Some(v) = self.get(name)
            && let Err(e) = CreditCode::parse(v)
        {
            self.out.push(violation(&format!("form.{name}"), &format!("not a unified social credit code: {e}")));
        }
    }

    fn code(&mut self, name: &str) {
        if let Some(v) = self.get(name)
            && (!(4..=32).contains(&v.len()) || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            self.out.push(violation(&format!("form.{name}"), "4 to 32 letters, digits or '-'"));
        }
    }

    fn citizen_applicant(&mut self, applicant: Option<&ApplicantRecord>) {
        if applicant.is_some_and(|a| a.kind != ApplicantKind::Citizen) {
            self.out.push(violation("applicant.kind", "this matter is applied for by a citizen"));
        }
    }
}

fn violation(field: &str, description: &str) -> FieldViolation {
    FieldViolation { field: field.to_string(), description: description.to_string() }
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
        v.iter().map(|x| x.field.as_str()).collect()
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
            ["form.child_name", "form.child_sex", "form.birth_date", "form.parent_id_number"]
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
        assert_eq!(fields(&validate(&cert, Some(&citizen()), &form(&[]))), ["form.subject_id_number", "form.purpose"]);
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
        assert_eq!(fields(&validate(&m, Some(&citizen()), &bad)), ["form.death_date", "form.death_certificate_number"]);
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
