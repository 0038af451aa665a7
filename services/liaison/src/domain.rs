//! Liaison rules that need no database: matter forms, the tier and unit of an enterprise
//! request by category (分级办理), the loop of a request, and the completion rate (M26).

use onething_platform::{
    cases::{ApplicantRecord, Form},
    catalog::Matter,
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
/// Precursor chemicals of the filing (a subset of the controlled list).
pub const CHEMICALS: &[&str] =
    &["hydrochloric_acid", "sulfuric_acid", "acetone", "toluene", "potassium_permanganate", "methyl_ethyl_ketone"];
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

/// Checks the form of a liaison matter.
pub fn validate(matter: &Matter, applicant: Option<&ApplicantRecord>, form: &Form) -> Vec<FieldViolation> {
    let mut out = Vec::new();
    let v = |f: &str, d: &str| FieldViolation { field: f.to_string(), description: d.to_string() };
    let get = |n: &str| form.get(n).map(String::as_str).filter(|s| !s.is_empty());
    if applicant.is_some_and(|a| a.kind != ApplicantKind::Enterprise) {
        out.push(v("applicant.kind", "applied for by the enterprise"));
    }
    match matter.code.as_str() {
        "liaison.seal_engraving_filing" => {
            match get("seal_kinds") {
                None => out.push(v("form.seal_kinds", "required")),
                Some(k) if !k.split(',').all(|x| SEAL_KINDS.contains(&x.trim())) => {
                    out.push(v("form.seal_kinds", &format!("comma separated, of {}", SEAL_KINDS.join(", "))));
                }
                Some(_) => {}
            }
            if get("engraving_company").is_none_or(|c| c.chars().count() > 100) {
                out.push(v("form.engraving_company", "required, at most 100 characters"));
            }
        }
        "liaison.seal_cancellation" => {
            if !matches!(get("reason"), Some("deregistration" | "bankruptcy")) {
                out.push(v("form.reason", "deregistration or bankruptcy"));
            }
        }
        "liaison.hotel_special_trade_licence" => {
            if get("hotel_name").is_none_or(|n| n.chars().count() > 100) {
                out.push(v("form.hotel_name", "required, at most 100 characters"));
            }
            if get("address").is_none_or(|n| n.chars().count() > 200) {
                out.push(v("form.address", "required, at most 200 characters"));
            }
            if !get("rooms").and_then(|r| r.parse::<u32>().ok()).is_some_and(|r| (1..=5000).contains(&r)) {
                out.push(v("form.rooms", "a whole number from 1 to 5000"));
            }
        }
        "liaison.precursor_chemical_filing" => {
            if !get("chemical").is_some_and(|c| CHEMICALS.contains(&c)) {
                out.push(v("form.chemical", &format!("one of {}", CHEMICALS.join(", "))));
            }
            if !get("quantity_kg").and_then(|q| q.parse::<f64>().ok()).is_some_and(|q| q > 0.0 && q <= 100_000.0) {
                out.push(v("form.quantity_kg", "more than 0, at most 100000"));
            }
            if !matches!(get("purpose"), Some("purchase" | "transport")) {
                out.push(v("form.purpose", "purchase or transport"));
            }
            match get("counterparty_credit_code").map(CreditCode::parse) {
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    out.push(v("form.counterparty_credit_code", &format!("not a unified social credit code: {e}")))
                }
                None => out.push(v("form.counterparty_credit_code", "required")),
            }
        }
        _ => out.push(v("matter_code", "liaison has no rules for this matter")),
    }
    out
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
