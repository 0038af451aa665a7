//! Supervision rules that need no database: where a case stands against its due time, the
//! steps of a complaint and their deadlines, and the 双随机 draw — seeded, weighted by credit
//! risk, capped per enterprise per year — that anyone can run again from its inputs.

use chrono::{DateTime, Duration, Utc};
use onething_proto::supervision::{ComplaintStep, DeadlineState};
use std::collections::BTreeMap;

/// How long before its due time an item whose warning time is unknown (an event from before
/// warning times were published) is in warning (预警).
pub const WARNING_WINDOW_HOURS: i64 = 24;
/// Working days to fix what a bad review found.
pub const FIX_WITHIN_WORKING_DAYS: u32 = 5;
/// Inspections an enterprise may have in one year (压减涉企检查频次, M17).
pub const ANNUAL_CAP: u32 = 2;

/// Where an open, running item stands at `now`: overdue past `due`, in warning past `warn`
/// (its owner's share of its committed time; a fixed window when it gave none).
pub fn deadline_state(due: DateTime<Utc>, warn: Option<DateTime<Utc>>, now: DateTime<Utc>) -> DeadlineState {
    if now > due {
        DeadlineState::Overdue
    } else if now > warn.unwrap_or(due - Duration::hours(WARNING_WINDOW_HOURS)) {
        DeadlineState::Warning
    } else {
        DeadlineState::Normal
    }
}

/// Whether `c` is a contact supervision can reply to, at most 100 characters: a mobile
/// number (11 digits from 1, optionally after +86), a landline (7 or 8 digits, optionally
/// after a 3- or 4-digit area code from 0 and a `-`), or an e-mail address (one `@`, a host
/// with a dot, no spaces).
pub fn is_contact(c: &str) -> bool {
    if c.is_empty() || c.chars().count() > 100 {
        return false;
    }
    let digits =
        |s: &str, n: std::ops::RangeInclusive<usize>| n.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    let mobile = onething_platform::seal::mobile_digits(c).is_some();
    let landline = match c.split_once('-') {
        Some((area, number)) => digits(area, 3..=4) && area.starts_with('0') && digits(number, 7..=8),
        None => digits(c, 7..=8),
    };
    let mail = c.split_once('@').is_some_and(|(user, host)| {
        !user.is_empty()
            && !host.contains('@')
            && host.contains('.')
            && !host.starts_with('.')
            && !host.ends_with('.')
            && !host.contains("..")
            && !c.contains(char::is_whitespace)
    });
    mobile || landline || mail
}

/// The contact as kept: a mobile number as its 11 digits (without `+86`), so the same number
/// written two ways is the same contact; anything else trimmed.
pub fn canonical_contact(c: &str) -> String {
    let c = c.trim();
    onething_platform::seal::mobile_digits(c).unwrap_or(c).to_string()
}

/// The step after `s`, and the working days the next one is due in.
pub fn next_step(s: ComplaintStep) -> Option<(ComplaintStep, u32)> {
    use ComplaintStep as C;
    match s {
        C::Accepted => Some((C::Verified, 3)),
        C::Verified => Some((C::Handled, 5)),
        C::Handled => Some((C::Replied, 2)),
        C::Replied => Some((C::Rectified, 10)),
        C::Rectified | C::Unspecified => None,
    }
}

/// Working days from acceptance to verification: the deadline of a new complaint.
pub const FIRST_STEP_DAYS: u32 = 3;

/// The draw's random numbers: SplitMix64, simple enough to re-implement anywhere.
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

/// Weight of a credit risk class: the riskier, the likelier to be drawn.
pub fn weight(class: &str) -> u64 {
    match class {
        "A" => 1,
        "B" => 2,
        "C" => 3,
        "D" => 4,
        _ => 0,
    }
}

/// The result of a draw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draw {
    /// Targets in draw order, each with its inspectors.
    pub inspections: Vec<(String, Vec<String>)>,
    /// Candidates left out because they reached the annual cap.
    pub capped: Vec<String>,
}

/// Draws `count` targets from `candidates` (credit code, risk class), weighted by class,
/// without repeats, leaving out those with `prior` inspections at the cap; then
/// `per_target` distinct inspectors for each. The same inputs give the same draw.
pub fn draw(
    seed: u64,
    count: usize,
    candidates: &[(String, String)],
    prior: &BTreeMap<String, u32>,
    inspectors: &[String],
    per_target: usize,
) -> Draw {
    let mut rng = SplitMix64::new(seed);
    // Sorted, so the order the inputs were listed in does not matter.
    let mut pool: Vec<(String, u64)> = candidates.iter().map(|(c, k)| (c.clone(), weight(k))).collect();
    pool.sort();
    pool.dedup_by(|a, b| a.0 == b.0);
    let capped: Vec<String> =
        pool.iter().filter(|(c, _)| prior.get(c).copied().unwrap_or(0) >= ANNUAL_CAP).map(|(c, _)| c.clone()).collect();
    pool.retain(|(c, w)| *w > 0 && !capped.contains(c));
    let mut people: Vec<String> = inspectors.to_vec();
    people.sort();
    people.dedup();
    let mut inspections = Vec::new();
    while inspections.len() < count && !pool.is_empty() {
        let total: u64 = pool.iter().map(|(_, w)| w).sum();
        let mut r = rng.below(total);
        let i = pool
            .iter()
            .position(|(_, w)| {
                if r < *w {
                    true
                } else {
                    r -= w;
                    false
                }
            })
            .unwrap_or(0);
        let (code, _) = pool.remove(i);
        let mut left = people.clone();
        let mut team = Vec::new();
        while team.len() < per_target && !left.is_empty() {
            let j = usize::try_from(rng.below(left.len() as u64)).unwrap_or(0);
            team.push(left.remove(j));
        }
        inspections.push((code, team));
    }
    Draw { inspections, capped }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn contacts_are_phones_or_addresses() {
        assert!(is_contact("13712345678") && is_contact("0631-5192533") && is_contact("wang@example.cn"));
        assert!(!is_contact("") && !is_contact("call me") && !is_contact("12") && !is_contact("a@b"));
        assert!(is_contact("+86 13712345678") && is_contact("5192533") && is_contact("010-52012345"));
        assert_eq!(canonical_contact("+86 13712345678"), "13712345678");
        assert_eq!(canonical_contact(" +8613712345678 "), "13712345678");
        assert_eq!(canonical_contact("0631-5192533"), "0631-5192533");
        for bad in
            ["a@@b.cn", "1371234567", "137123456789", "23712345678", "1-5192533", "wang@cn.", "１３７１２３４５６７８"]
        {
            assert!(!is_contact(bad), "{bad}");
        }
        assert!(!is_contact(&"1".repeat(101)));
    }

    #[test]
    fn normal_warning_overdue() {
        let due = Utc.with_ymd_and_hms(2026, 10, 9, 9, 0, 0).unwrap();
        assert_eq!(deadline_state(due, None, due - Duration::hours(30)), DeadlineState::Normal);
        assert_eq!(deadline_state(due, None, due - Duration::hours(2)), DeadlineState::Warning);
        assert_eq!(deadline_state(due, None, due + Duration::minutes(1)), DeadlineState::Overdue);
        // A 24-hour matter warns in its last six hours, not from the moment it arrives.
        let warn = Some(due - Duration::hours(6));
        assert_eq!(deadline_state(due, warn, due - Duration::hours(23)), DeadlineState::Normal);
        assert_eq!(deadline_state(due, warn, due - Duration::hours(5)), DeadlineState::Warning);
    }

    #[test]
    fn complaint_steps_in_order() {
        let mut s = ComplaintStep::Accepted;
        let mut seen = vec![s];
        while let Some((n, _)) = next_step(s) {
            seen.push(n);
            s = n;
        }
        assert_eq!(seen.len(), 5);
    }

    fn candidates() -> Vec<(String, String)> {
        (0..20).map(|i| (format!("CODE{i:02}"), ["A", "B", "C", "D"][i % 4].to_string())).collect()
    }

    fn people() -> Vec<String> {
        (1..=6).map(|i| format!("INSP{i}")).collect()
    }

    #[test]
    fn the_same_inputs_give_the_same_draw() {
        let a = draw(20261129, 5, &candidates(), &BTreeMap::new(), &people(), 2);
        let mut shuffled = candidates();
        shuffled.reverse();
        let b = draw(20261129, 5, &shuffled, &BTreeMap::new(), &people(), 2);
        assert_eq!(a, b, "the listed order does not matter");
        assert_eq!(a.inspections.len(), 5);
        assert!(a.inspections.iter().all(|(_, t)| t.len() == 2 && t[0] != t[1]));
        assert_ne!(a, draw(7, 5, &candidates(), &BTreeMap::new(), &people(), 2), "another seed, another draw");
    }

    #[test]
    fn the_annual_cap_is_respected() {
        let prior: BTreeMap<String, u32> = (0..18).map(|i| (format!("CODE{i:02}"), 2)).collect();
        let d = draw(1, 5, &candidates(), &prior, &people(), 1);
        assert_eq!(d.capped.len(), 18);
        let drawn: Vec<&str> = d.inspections.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(drawn.len(), 2, "only two candidates remain under the cap");
        assert!(drawn.iter().all(|c| *c == "CODE18" || *c == "CODE19"));
    }

    #[test]
    fn riskier_classes_are_drawn_more_often() {
        let mut by_class: BTreeMap<String, u32> = BTreeMap::new();
        let classes: BTreeMap<String, String> = candidates().into_iter().collect();
        for seed in 0..400 {
            for (c, _) in draw(seed, 1, &candidates(), &BTreeMap::new(), &people(), 1).inspections {
                *by_class.entry(classes[&c].clone()).or_default() += 1;
            }
        }
        assert!(by_class["D"] > by_class["A"] * 2, "{by_class:?}");
    }
}
