//! Business time on the Chinese calendar. Working days skip weekends and public holidays
//! and include the adjusted working weekends (调休); each year is a data file
//! (`calendar/<year>.toml`, built in for 2024–2026), and operators add the next year's file
//! to `calendar_dir` when the State Council announces it. A date in a year without data is
//! counted on weekends alone and the result is marked provisional, with a warning and the
//! metric `onething_calendar_provisional_total`, so operators know to add the file.

use crate::catalog::TimeUnit;
use anyhow::{Context as _, bail};
use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};

/// Year files built into the binary.
const BUILTIN: [&str; 3] = [
    include_str!("../calendar/2024.toml"),
    include_str!("../calendar/2025.toml"),
    include_str!("../calendar/2026.toml"),
];

/// When a working day's business ends (China time): a case due on a day is due then.
pub const CLOSE_OF_BUSINESS: (u32, u32) = (17, 0);

/// China Standard Time (UTC+8, no daylight saving).
pub fn china() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).unwrap_or(FixedOffset::east_opt(0).expect("zero offset"))
}

/// The date in China (UTC+8) at `at`: the business date of an instant.
pub fn date_in_china(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&china()).date_naive()
}

/// A computed due time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// When the case is due.
    pub at: DateTime<Utc>,
    /// True when a day of a year without holiday data was counted.
    pub provisional: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YearFile {
    year: i32,
    holidays: Vec<Holiday>,
    working_days: Vec<NaiveDate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Holiday {
    #[allow(dead_code)]
    name: String,
    from: NaiveDate,
    to: NaiveDate,
}

#[derive(Debug, Clone, Default)]
struct Year {
    off: HashSet<NaiveDate>,
    on: HashSet<NaiveDate>,
}

/// The working-day calendar.
#[derive(Debug, Clone, Default)]
pub struct Calendar {
    years: BTreeMap<i32, Year>,
}

impl Calendar {
    /// The built-in years.
    ///
    /// # Panics
    /// Never for the files shipped (a test parses them).
    pub fn builtin() -> Self {
        let mut c = Self::default();
        for text in BUILTIN {
            c.add_year(text).expect("built-in calendar data is valid");
        }
        c
    }

    /// The built-in years, plus every `*.toml` year file in `dir` (empty: none). A file for a
    /// built-in year replaces it.
    ///
    /// # Errors
    /// An unreadable folder or file, or a malformed year file (named in the message).
    pub fn load(dir: &str) -> anyhow::Result<Self> {
        let mut c = Self::builtin();
        if dir.is_empty() {
            return Ok(c);
        }
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("reading calendar folder {dir}"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        for p in paths {
            let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            c.add_year(&text).with_context(|| format!("calendar file {}", p.display()))?;
        }
        Ok(c)
    }

    fn add_year(&mut self, text: &str) -> anyhow::Result<()> {
        let f: YearFile = toml::from_str(text).context("not a calendar year file")?;
        let mut y = Year::default();
        for h in &f.holidays {
            if h.to < h.from || h.from.year() != f.year {
                bail!("holiday {}..{} does not fit year {}", h.from, h.to, f.year);
            }
            let mut d = h.from;
            while d <= h.to {
                y.off.insert(d);
                d = d.succ_opt().context("date overflow")?;
            }
        }
        for d in &f.working_days {
            if d.year() != f.year || y.off.contains(d) {
                bail!("working day {d} is outside {} or also a holiday", f.year);
            }
            y.on.insert(*d);
        }
        self.years.insert(f.year, y);
        Ok(())
    }

    /// Years with data.
    pub fn years(&self) -> impl Iterator<Item = i32> + '_ {
        self.years.keys().copied()
    }

    /// Whether `d` is a working day, and whether that answer is provisional (no data for its year).
    pub fn is_working_day(&self, d: NaiveDate) -> (bool, bool) {
        let weekend = matches!(d.weekday(), Weekday::Sat | Weekday::Sun);
        match self.years.get(&d.year()) {
            Some(y) if y.on.contains(&d) => (true, false),
            Some(y) if y.off.contains(&d) => (false, false),
            Some(_) => (!weekend, false),
            None => (!weekend, true),
        }
    }

    /// The close of business of the `n`-th working day after the day of `start` (China time).
    /// `n = 0` is the same working day: the close of `start`'s day if it is a working day
    /// and `start` is before the close, otherwise the close of the next working day.
    pub fn add_working_days(&self, start: DateTime<Utc>, n: u32) -> Due {
        let local = start.with_timezone(&china());
        let close = close_time();
        let mut day = local.date_naive();
        let mut provisional = false;
        let check = |d: NaiveDate, provisional: &mut bool| {
            let (working, guessed) = self.is_working_day(d);
            *provisional |= guessed;
            working
        };
        let mut left = n;
        if n == 0 && !(check(day, &mut provisional) && local.time() < close) {
            left = 1;
        }
        while left > 0 {
            day = day.succ_opt().unwrap_or(day);
            if check(day, &mut provisional) {
                left -= 1;
            }
        }
        if provisional {
            warn_provisional(day.year());
        }
        let at = china().from_local_datetime(&day.and_time(close)).single().map_or(start, |d| d.with_timezone(&Utc));
        Due { at, provisional }
    }

    /// Working days strictly after the day of `from` up to and including the day of `to`
    /// (China time): how many working days a clock paused at `from` and resumed at `to` lost.
    pub fn working_days_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> u32 {
        let (mut day, last) = (from.with_timezone(&china()).date_naive(), to.with_timezone(&china()).date_naive());
        let mut n = 0;
        while day < last {
            day = day.succ_opt().unwrap_or(last);
            if self.is_working_day(day).0 {
                n += 1;
            }
        }
        n
    }

    /// A due time moved later by the time its clock was paused (`from` → `to`): working days
    /// for a working-day limit, clock time for a clock-hour limit.
    pub fn extend(&self, due: DateTime<Utc>, unit: TimeUnit, from: DateTime<Utc>, to: DateTime<Utc>) -> Due {
        match unit {
            TimeUnit::WorkingDays => match self.working_days_between(from, to) {
                0 => Due { at: due, provisional: false },
                n => self.add_working_days(due, n),
            },
            TimeUnit::ClockHours => Due { at: due + (to - from), provisional: false },
            TimeUnit::Immediate => Due { at: due, provisional: false },
        }
    }

    /// The due time of a case received at `start` with a committed `limit` in `unit`:
    /// immediate (即办) → the close of that working day (the next one's after hours); clock
    /// hours → `start + limit h` (M16: 24 hours means 24 hours); working days →
    /// [`Calendar::add_working_days`].
    pub fn due(&self, start: DateTime<Utc>, unit: TimeUnit, limit: u32) -> Due {
        match unit {
            TimeUnit::Immediate => self.add_working_days(start, 0),
            TimeUnit::ClockHours => Due { at: start + Duration::hours(i64::from(limit)), provisional: false },
            TimeUnit::WorkingDays => self.add_working_days(start, limit),
        }
    }
}

fn close_time() -> NaiveTime {
    NaiveTime::from_hms_opt(CLOSE_OF_BUSINESS.0, CLOSE_OF_BUSINESS.1, 0).unwrap_or(NaiveTime::MIN)
}

fn warn_provisional(year: i32) {
    tracing::warn!(year, "no holiday data for this year: due time counted on weekends only (add calendar/<year>.toml)");
    static COUNTER: std::sync::OnceLock<opentelemetry::metrics::Counter<u64>> = std::sync::OnceLock::new();
    COUNTER
        .get_or_init(|| {
            opentelemetry::global::meter("onething")
                .u64_counter("onething_calendar_provisional_total")
                .with_description("Due times computed without holiday data for their year")
                .build()
        })
        .add(1, &[opentelemetry::KeyValue::new("year", i64::from(year))]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cst(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        china().with_ymd_and_hms(y, m, d, h, min, 0).unwrap().with_timezone(&Utc)
    }

    fn close(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        cst(y, m, d, 17, 0)
    }

    #[test]
    fn builtin_years_parse() {
        let c = Calendar::builtin();
        assert_eq!(c.years().collect::<Vec<_>>(), [2024, 2025, 2026]);
    }

    #[test]
    fn spring_festival_2025_with_its_adjusted_saturday() {
        let c = Calendar::builtin();
        // Fri 2025-01-24 afternoon; Sun 01-26 is a working day; 01-28..02-04 off; Sat 02-08 works.
        assert_eq!(c.add_working_days(cst(2025, 1, 24, 15, 0), 1).at, close(2025, 1, 26));
        assert_eq!(c.add_working_days(cst(2025, 1, 24, 15, 0), 2).at, close(2025, 1, 27));
        assert_eq!(c.add_working_days(cst(2025, 1, 24, 15, 0), 3).at, close(2025, 2, 5));
        assert_eq!(c.add_working_days(cst(2025, 2, 7, 10, 0), 1).at, close(2025, 2, 8));
        assert!(!c.add_working_days(cst(2025, 1, 24, 15, 0), 3).provisional);
    }

    #[test]
    fn national_day_2025_with_adjusted_sunday_and_saturday() {
        let c = Calendar::builtin();
        // Fri 09-26; Sun 09-28 works; 10-01..10-08 off; Sat 10-11 works.
        assert_eq!(c.add_working_days(cst(2025, 9, 26, 9, 0), 1).at, close(2025, 9, 28));
        assert_eq!(c.add_working_days(cst(2025, 9, 29, 9, 0), 2).at, close(2025, 10, 9));
        assert_eq!(c.add_working_days(cst(2025, 10, 9, 9, 0), 2).at, close(2025, 10, 11));
    }

    #[test]
    fn friday_afternoon_and_the_same_day() {
        let c = Calendar::builtin();
        // 2026-11-27 is an ordinary Friday.
        assert_eq!(c.add_working_days(cst(2026, 11, 27, 15, 0), 2).at, close(2026, 12, 1));
        // Same day: before the close it is today; after it, the next working day.
        assert_eq!(c.add_working_days(cst(2026, 11, 27, 9, 0), 0).at, close(2026, 11, 27));
        assert_eq!(c.add_working_days(cst(2026, 11, 27, 18, 0), 0).at, close(2026, 11, 30));
        // A holiday is not a same day: 2026-10-01 → the next working day, 10-08.
        assert_eq!(c.add_working_days(cst(2026, 10, 1, 9, 0), 0).at, close(2026, 10, 8));
    }

    #[test]
    fn a_year_without_data_is_provisional() {
        let c = Calendar::builtin();
        let d = c.add_working_days(cst(2026, 12, 30, 9, 0), 3);
        assert!(d.provisional, "2027 has no data yet");
        assert_eq!(d.at, close(2027, 1, 4), "weekends alone: Thu 12-31, Fri 01-01, Mon 01-04");
        assert!(!c.add_working_days(cst(2026, 12, 21, 9, 0), 3).provisional);
    }

    #[test]
    fn a_paused_clock_moves_the_due_time_by_the_working_days_lost() {
        let c = Calendar::builtin();
        // Due Tue 2025-09-30; paused Fri 09-26 to Thu 10-09 across National Day: the lost
        // working days are Sun 09-28 (调休), Mon 09-29, Tue 09-30 and Thu 10-09.
        let due = close(2025, 9, 30);
        let moved = c.extend(due, TimeUnit::WorkingDays, cst(2025, 9, 26, 10, 0), cst(2025, 10, 9, 10, 0));
        assert_eq!(c.working_days_between(cst(2025, 9, 26, 10, 0), cst(2025, 10, 9, 10, 0)), 4);
        // Four working days after Tue 09-30: Thu 10-09, Fri 10-10, Sat 10-11 (调休), Mon 10-13.
        assert_eq!(moved.at, close(2025, 10, 13));
        // Paused and resumed the same day: no working day lost.
        assert_eq!(c.extend(due, TimeUnit::WorkingDays, cst(2025, 9, 26, 9, 0), cst(2025, 9, 26, 16, 0)).at, due);
        // Clock hours move by the clock.
        let h = c.extend(due, TimeUnit::ClockHours, cst(2025, 9, 26, 9, 0), cst(2025, 9, 26, 12, 0));
        assert_eq!(h.at, due + Duration::hours(3));
    }

    #[test]
    fn clock_hours_ignore_the_calendar() {
        let c = Calendar::builtin();
        let s = cst(2026, 9, 30, 15, 0);
        assert_eq!(c.due(s, TimeUnit::ClockHours, 24).at, cst(2026, 10, 1, 15, 0));
        // 即办: by the close of that working day; after hours on the eve of the National Day
        // holiday (10-01..10-07), by the close of 10-08.
        assert_eq!(c.due(s, TimeUnit::Immediate, 0).at, close(2026, 9, 30));
        assert_eq!(c.due(cst(2026, 9, 30, 18, 0), TimeUnit::Immediate, 0).at, close(2026, 10, 8));
    }

    #[test]
    fn an_operator_file_adds_a_year_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("2027.toml"),
            "year = 2027\nholidays = [{ name = \"元旦\", from = \"2027-01-01\", to = \"2027-01-01\" }]\nworking_days = []\n",
        )
        .unwrap();
        let c = Calendar::load(&dir.path().display().to_string()).unwrap();
        assert!(!c.add_working_days(cst(2026, 12, 30, 9, 0), 3).provisional);
        std::fs::write(dir.path().join("bad.toml"), "year = 2028\nholidays = [{ name = \"x\", from = \"2027-01-02\", to = \"2027-01-01\" }]\nworking_days = []\n").unwrap();
        assert!(Calendar::load(&dir.path().display().to_string()).is_err());
    }
}
