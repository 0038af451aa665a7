//! Liaison rules that need no database: the seal kinds, the tier and unit of an enterprise
//! request by category (分级办理), the loop of a request, and the completion rate (M26).

use onething_platform::ids::CreditCode;
use onething_proto::liaison::{RequestState, Tier};
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
/// The city bureau's handling unit (市局), for city-tier and handed-up requests.
pub const CITY_UNIT: &str = "3710";
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
        Tier::City => (tier, CITY_UNIT.into()),
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
