//! Liaison rules that need no database: what matter forms mean beyond the catalog, the tier and unit of an enterprise
//! request by category (分级办理), the loop of a request, and the completion rate (M26).

use onething_platform::{
    cases::{ApplicantRecord, Form},
    catalog::{Matter, form::FormCheck},
    error::FieldViolation,
    ids::CreditCode,
};
use onething_proto::{
    common::ApplicantKind,
    liaison::{RequestState, Tier},
};
use std::collections::BTreeMap;

/// Seal kinds an enterprise may file.
pub const SEAL_KINDS: &[&str] = &["official", "finance", "contract", "invoice", "legal_representative"];
/// Request categories and who handles them: district matters stay with the district bureau.
pub const CATEGORIES: &[(&str, Tier)] = &[
    ("security_protection", Tier::District),
    ("traffic_logistics", Tier::District),
    ("permit_consultation", Tier::District),
    ("staff_background_check", Tier::District),
    ("economic_crime", Tier::City),
    ("cyber_security", Tier::City),
    ("foreign_talent", Tier::City),
];
/// M26's target completion rate.
pub const TARGET_RATE: f64 = 0.9;
/// Working days to handle a request, per tier (catalog values).
pub fn handling_days(t: Tier) -> u32 {
    if t == Tier::City { 10 } else { 5 }
}

/// The tier and handling unit of a request: the district bureau of the enterprise's
/// registration region, or the city bureau (`3710`).
pub fn route(category: &str, credit_code: &CreditCode) -> Option<(Tier, String)> {
    let tier = CATEGORIES.iter().find(|(c, _)| *c == category)?.1;
    Some(match tier {
        Tier::City => (tier, "3710".into()),
        _ => (tier, credit_code.region().into()),
    })
}

/// The state after rating: 3 or better closes; 1 and 2 are bad and call for a visit.
pub fn after_rating(rating: u32) -> RequestState {
    if rating >= 3 { RequestState::Closed } else { RequestState::BadlyRated }
}

/// Whether a request counts as completed (办结) in the completion rate: handled, and not
/// ended in a responsibility record.
pub fn completed(handled: bool, state: RequestState) -> bool {
    handled && state != RequestState::ResponsibilityAssigned
}

/// Received and completed per unit.
pub fn completion(requests: impl IntoIterator<Item = (String, bool)>) -> BTreeMap<String, (u32, u32)> {
    let mut out: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for (unit, done) in requests {
        let e = out.entry(unit).or_default();
        e.0 += 1;
        e.1 += u32::from(done);
    }
    out
}

/// What liaison checks of a form beyond the catalog's declaration of it (kinds, bounds,
/// required fields, enumerations): an enterprise applies, filed seal kinds, the number of
/// rooms and the quantity of a chemical.
pub fn validate(_matter: &Matter, applicant: Option<&ApplicantRecord>, form: &Form) -> Vec<FieldViolation> {
    let mut f = FormCheck::new(form);
    f.applicant_kind(applicant, ApplicantKind::Enterprise, "the enterprise");
    f.rule(
        "seal_kinds",
        |k| k.split(',').all(|x| SEAL_KINDS.contains(&x.trim())),
        &format!("comma separated, of {}", SEAL_KINDS.join(", ")),
    );
    f.rule("rooms", |r| r.parse::<u32>().is_ok_and(|r| (1..=5000).contains(&r)), "a whole number from 1 to 5000");
    f.rule("quantity_kg", |q| q.parse::<f64>().is_ok_and(|q| q > 0.0 && q <= 100_000.0), "more than 0, at most 100000");
    f.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_by_category() {
        let code = CreditCode::complete("91371002MA3C00001").unwrap();
        assert_eq!(route("traffic_logistics", &code), Some((Tier::District, "371002".into())));
        assert_eq!(route("economic_crime", &code), Some((Tier::City, "3710".into())));
        assert_eq!(route("astrology", &code), None);
        assert_eq!((handling_days(Tier::District), handling_days(Tier::City)), (5, 10));
    }

    #[test]
    fn ratings_and_completion() {
        assert_eq!(after_rating(3), RequestState::Closed);
        assert_eq!(after_rating(2), RequestState::BadlyRated);
        assert!(completed(true, RequestState::Closed));
        assert!(completed(true, RequestState::Visited));
        assert!(!completed(true, RequestState::ResponsibilityAssigned));
        assert!(!completed(false, RequestState::Submitted));
        // 10 received by unit A, 9 completed: 90%, on target; unit B 1 of 2.
        let mut data: Vec<(String, bool)> = (0..10).map(|i| ("A".to_string(), i != 0)).collect();
        data.extend([("B".to_string(), true), ("B".to_string(), false)]);
        let c = completion(data);
        assert_eq!(c["A"], (10, 9));
        assert_eq!(c["B"], (2, 1));
    }
}

#[cfg(test)]
mod form_tests {
    use super::*;
    use onething_platform::catalog::Catalog;

    #[test]
    fn forms_as_create_case_checks_them() {
        let c = Catalog::load("").unwrap();
        let check = |code: &str, pairs: &[(&str, &str)]| {
            let m = c.get(code).unwrap();
            let form: Form = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
            let mut got: Vec<String> =
                c.check_case_form(m, &form, validate(m, None, &form)).into_iter().map(|v| v.field).collect();
            got.sort_unstable();
            got
        };
        let seals = "liaison.seal_engraving_filing";
        assert!(check(seals, &[("seal_kinds", "official, finance"), ("engraving_company", "某刻章厂")]).is_empty());
        assert_eq!(check(seals, &[("seal_kinds", "official,secret")]), ["form.engraving_company", "form.seal_kinds"]);
        let chem = "liaison.precursor_chemical_filing";
        let good = [
            ("chemical", "acetone"),
            ("quantity_kg", "12.5"),
            ("purpose", "purchase"),
            ("counterparty_credit_code", "91350100M000100Y43"),
        ];
        assert!(check(chem, &good).is_empty());
        let bad =
            [("chemical", "gold"), ("quantity_kg", "0"), ("purpose", "resale"), ("counterparty_credit_code", "x")];
        assert_eq!(
            check(chem, &bad),
            ["form.chemical", "form.counterparty_credit_code", "form.purpose", "form.quantity_kg"]
        );
        assert_eq!(check("liaison.seal_cancellation", &[("reason", "boredom")]), ["form.reason"]);
        assert_eq!(
            check(
                "liaison.hotel_special_trade_licence",
                &[("hotel_name", "海景"), ("address", "威海"), ("rooms", "0")]
            ),
            ["form.rooms"]
        );
    }
}
