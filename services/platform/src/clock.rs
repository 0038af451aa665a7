//! Business time: the one clock every rule reads (due times, warnings, 督办, ratings, the
//! date a form is checked against). A service takes its clock from
//! [`crate::config::Settings::clock`]; in production that is the system clock, in a test one
//! the test moves forward ([`Clock::adjustable`]), so a deadline passes without waiting for it.
//!
//! Infrastructure time (timeouts, backoff, the outbox's retention, the inbox's horizon) stays
//! on the system clock: moving the business clock must not make a broker or a database look
//! late.

use crate::calendar::date_in_china;
use chrono::{DateTime, NaiveDate, Utc};
use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

/// What time it is for the rules. Cheap to clone; clones share one adjustment.
#[derive(Clone, Default)]
pub struct Clock {
    /// Milliseconds added to the system clock; `None`: the system clock itself.
    offset_ms: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock, never adjusted.
    pub fn system() -> Self {
        Self { offset_ms: None }
    }

    /// A clock that runs with the system clock until it is moved ([`Self::advance`],
    /// [`Self::set`]); for tests and demonstrations of deadlines.
    pub fn adjustable() -> Self {
        Self { offset_ms: Some(Arc::new(AtomicI64::new(0))) }
    }

    /// Now.
    pub fn now(&self) -> DateTime<Utc> {
        let now = Utc::now();
        match &self.offset_ms {
            None => now,
            Some(o) => now + chrono::Duration::milliseconds(o.load(Ordering::Relaxed)),
        }
    }

    /// Today's date in China (UTC+8): the date a form's dates are checked against.
    pub fn today(&self) -> NaiveDate {
        date_in_china(self.now())
    }

    /// Moves the clock forward by `by` (backward for a negative duration).
    ///
    /// # Panics
    /// On the system clock, which nobody may move.
    pub fn advance(&self, by: chrono::Duration) {
        self.offset().fetch_add(by.num_milliseconds(), Ordering::Relaxed);
    }

    /// Sets the clock to `at`; it runs on from there.
    ///
    /// # Panics
    /// On the system clock.
    pub fn set(&self, at: DateTime<Utc>) {
        self.offset().store((at - Utc::now()).num_milliseconds(), Ordering::Relaxed);
    }

    /// Whether this clock can be moved.
    pub fn is_adjustable(&self) -> bool {
        self.offset_ms.is_some()
    }

    fn offset(&self) -> &AtomicI64 {
        self.offset_ms.as_deref().expect("the system clock is not adjustable")
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.offset_ms {
            None => f.write_str("Clock::system"),
            Some(o) => write!(f, "Clock::adjustable({} ms)", o.load(Ordering::Relaxed)),
        }
    }
}

/// Two settings compare equal whatever their clocks: a clock is not configuration.
impl PartialEq for Clock {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adjustable_clock_moves_and_its_clones_with_it() {
        let c = Clock::adjustable();
        let other = c.clone();
        let before = Utc::now();
        c.advance(chrono::Duration::days(3));
        assert!(other.now() >= before + chrono::Duration::days(3));
        let at = DateTime::parse_from_rfc3339("2026-12-31T16:30:00Z").unwrap().with_timezone(&Utc);
        c.set(at);
        assert!((other.now() - at).num_seconds().abs() < 5);
        // 16:30 UTC is already the next day in China.
        assert_eq!(other.today(), NaiveDate::from_ymd_opt(2027, 1, 1).unwrap());
    }

    #[test]
    #[should_panic(expected = "not adjustable")]
    fn the_system_clock_does_not_move() {
        Clock::system().advance(chrono::Duration::hours(1));
    }
}
