//! Due times in business time. Working days here skip weekends only: the holiday and
//! adjusted-working-day (调休) data files per year arrive with the exit-entry issue, so every
//! working-day due time computed now is marked provisional, and says so in the API and events.

use crate::catalog::TimeUnit;
use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveTime, TimeZone, Utc, Weekday};

/// China Standard Time (UTC+8, no daylight saving).
pub fn china() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).unwrap_or(FixedOffset::east_opt(0).expect("zero offset"))
}

/// A computed due time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// When the case is due.
    pub at: DateTime<Utc>,
    /// True when computed without announced holiday data.
    pub provisional: bool,
}

/// The due time of a case accepted at `start` with a committed `limit` in `unit`:
/// immediate → `start`; clock hours → `start + limit h`; working days → the end
/// (17:00 China time) of the `limit`-th working day after the start day.
pub fn due(start: DateTime<Utc>, unit: TimeUnit, limit: u32) -> Due {
    match unit {
        TimeUnit::Immediate => Due { at: start, provisional: false },
        TimeUnit::ClockHours => Due { at: start + Duration::hours(i64::from(limit)), provisional: false },
        TimeUnit::WorkingDays => {
            let mut day = start.with_timezone(&china()).date_naive();
            let mut left = limit;
            while left > 0 {
                day = day.succ_opt().unwrap_or(day);
                if !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
                    left -= 1;
                }
            }
            let close = NaiveTime::from_hms_opt(17, 0, 0).unwrap_or_default();
            let at =
                china().from_local_datetime(&day.and_time(close)).single().map_or(start, |d| d.with_timezone(&Utc));
            Due { at, provisional: true }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cst(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        china().with_ymd_and_hms(y, m, d, h, 0, 0).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn friday_afternoon_skips_the_weekend() {
        // 2026-11-27 is a Friday.
        let d = due(cst(2026, 11, 27, 15), TimeUnit::WorkingDays, 1);
        assert_eq!(d.at, cst(2026, 11, 30, 17));
        assert!(d.provisional);
    }

    #[test]
    fn clock_hours_and_immediate() {
        let s = cst(2026, 11, 27, 15);
        assert_eq!(due(s, TimeUnit::ClockHours, 24).at, cst(2026, 11, 28, 15));
        assert_eq!(due(s, TimeUnit::Immediate, 0).at, s);
        assert!(!due(s, TimeUnit::ClockHours, 24).provisional);
    }
}
