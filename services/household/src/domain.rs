//! Household rules that need no database: whether an ID number is local, whether a
//! residence is long enough, and the sequence code of a newborn's ID number. Pure and
//! unit-tested.

use chrono::NaiveDate;
use onething_platform::ids::CitizenId;

/// Region prefix of Weihai (威海市): households here are local.
pub const LOCAL_PREFIX: &str = "3710";

/// Months of residence a residence permit needs (居住证暂行条例: half a year).
pub const RESIDENCE_MONTHS: u32 = 6;

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

    #[test]
    fn residence_and_locality() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
        assert!(resided_long_enough(NaiveDate::from_ymd_opt(2026, 5, 29).unwrap(), today));
        assert!(!resided_long_enough(NaiveDate::from_ymd_opt(2026, 5, 30).unwrap(), today));
        let local = crate::store::seed_id("371002", "1990-03-15", 11).unwrap();
        assert!(is_local(&local));
        assert!(!is_local(&CitizenId::parse("11010519491231002X").unwrap()));
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
