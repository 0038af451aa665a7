//! Exit-entry rules that need no database: the validity of a work-type residence permit
//! (M13) with the explanation a reviewer reads. Pure and unit-tested.

use chrono::{Months, NaiveDate};

/// Longest ordinary validity of a work-type residence permit, in years (a catalog value,
/// never beyond the work permit itself).
pub const ORDINARY_MAX_YEARS: u32 = 2;
/// Validity granted under M13.
pub const FIVE_YEARS: u32 = 5;

/// A work-type residence permit the applicant held before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prior {
    /// Permit number.
    pub number: String,
    /// First day.
    pub from: NaiveDate,
    /// Last day.
    pub until: NaiveDate,
}

/// A violation on the applicant's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offence {
    /// When.
    pub date: NaiveDate,
    /// What (no personal data).
    pub summary: String,
}

/// Which rule set the validity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// M13's five years.
    FiveYear,
    /// The ordinary validity.
    Ordinary,
}

/// The validity decision and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validity {
    /// The rule applied.
    pub rule: Rule,
    /// First day.
    pub from: NaiveDate,
    /// Last day.
    pub until: NaiveDate,
    /// For the reviewer: which permits were counted, what blocked the five years.
    pub explanation: String,
    /// Permit numbers the five-year rule looked at (the latest two).
    pub counted: Vec<String>,
    /// The violation that blocked it, if any.
    pub blocking: Option<String>,
}

fn years_from(d: NaiveDate, years: u32) -> NaiveDate {
    d.checked_add_months(Months::new(12 * years)).and_then(|x| x.pred_opt()).unwrap_or(d)
}

/// Whether a permit lasted at least one year (有效期1年以上: a year counts).
fn lasted_a_year(p: &Prior) -> bool {
    p.until >= years_from(p.from, 1)
}

/// M13: on a third application, five years when the previous two consecutive work-type
/// permits each lasted at least a year and no violation is on record; otherwise the
/// ordinary validity, never beyond the work permit.
pub fn decide_validity(
    today: NaiveDate,
    work_permit_until: NaiveDate,
    history: &[Prior],
    offences: &[Offence],
) -> Validity {
    let mut h: Vec<&Prior> = history.iter().collect();
    h.sort_by_key(|p| p.from);
    let last_two: Vec<&Prior> = h.iter().rev().take(2).rev().copied().collect();
    let counted: Vec<String> = last_two.iter().map(|p| p.number.clone()).collect();
    let mut failed = Vec::new();
    if h.len() < 2 {
        failed.push(format!("此前工作类居留许可{}次，不满足连续两次的条件", h.len()));
    } else {
        let (a, b) = (last_two[0], last_two[1]);
        for p in [a, b] {
            if !lasted_a_year(p) {
                failed.push(format!("许可{}有效期{}至{}，不足1年", p.number, p.from, p.until));
            }
        }
        if a.until.succ_opt().is_some_and(|next| b.from > next) {
            failed.push(format!("许可{}（至{}）与{}（自{}）之间不连续", a.number, a.until, b.number, b.from));
        }
    }
    let blocking = offences.iter().max_by_key(|o| o.date).map(|o| format!("{} {}", o.date, o.summary));
    if let Some(b) = &blocking {
        failed.push(format!("有违法违规记录：{b}"));
    }
    if failed.is_empty() {
        let numbers = last_two.iter().map(|p| format!("{}（{}至{}）", p.number, p.from, p.until)).collect::<Vec<_>>();
        return Validity {
            rule: Rule::FiveYear,
            from: today,
            until: years_from(today, FIVE_YEARS),
            explanation: format!(
                "第三次申请：此前连续两次工作类居留许可{}均在1年以上且无违法违规记录，依M13批准有效期{FIVE_YEARS}年",
                numbers.join("、")
            ),
            counted,
            blocking: None,
        };
    }
    let until = work_permit_until.min(years_from(today, ORDINARY_MAX_YEARS));
    Validity {
        rule: Rule::Ordinary,
        from: today,
        until,
        explanation: format!("{}；按普通有效期批准至{until}（不超过工作许可有效期）", failed.join("；")),
        counted,
        blocking,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn prior(n: &str, from: &str, until: &str) -> Prior {
        Prior { number: n.into(), from: d(from), until: d(until) }
    }

    const TODAY: &str = "2026-11-29";
    const WORK_PERMIT: &str = "2029-12-31";

    fn decide(history: &[Prior], offences: &[Offence]) -> Validity {
        decide_validity(d(TODAY), d(WORK_PERMIT), history, offences)
    }

    #[test]
    fn eligible_third_application_gets_five_years() {
        let v = decide(&[prior("WR1", "2022-03-01", "2023-02-28"), prior("WR2", "2023-03-01", "2025-02-28")], &[]);
        assert_eq!(v.rule, Rule::FiveYear);
        assert_eq!(v.until, d("2031-11-28"));
        assert_eq!(v.counted, ["WR1", "WR2"]);
        assert!(
            v.explanation.contains("WR1") && v.explanation.contains("WR2") && v.explanation.contains("5年"),
            "{}",
            v.explanation
        );
        // Only the latest two count: an older short permit does not matter.
        let v = decide(
            &[
                prior("WR0", "2020-01-01", "2020-06-30"),
                prior("WR1", "2022-03-01", "2023-02-28"),
                prior("WR2", "2023-03-01", "2025-02-28"),
            ],
            &[],
        );
        assert_eq!(v.rule, Rule::FiveYear);
    }

    #[test]
    fn only_one_prior_permit() {
        let v = decide(&[prior("WR1", "2024-01-01", "2025-12-31")], &[]);
        assert_eq!(v.rule, Rule::Ordinary);
        assert!(v.explanation.contains("此前工作类居留许可1次"), "{}", v.explanation);
        assert_eq!(v.until, d("2028-11-28"), "two years, within the work permit");
    }

    #[test]
    fn a_prior_permit_shorter_than_a_year() {
        let v = decide(&[prior("WR1", "2023-01-01", "2023-12-31"), prior("WR2", "2024-01-01", "2024-06-30")], &[]);
        assert_eq!(v.rule, Rule::Ordinary);
        assert!(v.explanation.contains("许可WR2") && v.explanation.contains("不足1年"), "{}", v.explanation);
        assert!(!v.explanation.contains("许可WR1有效期"), "WR1 lasted a year: {}", v.explanation);
    }

    #[test]
    fn the_two_are_not_consecutive() {
        let v = decide(&[prior("WR1", "2021-01-01", "2021-12-31"), prior("WR2", "2023-01-01", "2023-12-31")], &[]);
        assert_eq!(v.rule, Rule::Ordinary);
        assert!(v.explanation.contains("不连续"), "{}", v.explanation);
    }

    #[test]
    fn a_violation_blocks_five_years() {
        let v = decide(
            &[prior("WR1", "2022-03-01", "2023-02-28"), prior("WR2", "2023-03-01", "2025-02-28")],
            &[Offence { date: d("2024-05-10"), summary: "逾期居留3日".into() }],
        );
        assert_eq!(v.rule, Rule::Ordinary);
        assert_eq!(v.blocking.as_deref(), Some("2024-05-10 逾期居留3日"));
        assert!(v.explanation.contains("违法违规记录"), "{}", v.explanation);
    }

    #[test]
    fn the_ordinary_validity_never_passes_the_work_permit() {
        let v = decide_validity(d(TODAY), d("2027-06-30"), &[], &[]);
        assert_eq!(v.until, d("2027-06-30"));
    }
}
