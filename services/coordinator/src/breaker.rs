//! One circuit breaker per department: after `threshold` calls in a row that found it down
//! or hanging (UNAVAILABLE, DEADLINE_EXCEEDED, a timeout), calls to it fail at once for a cool-down,
//! then one probe call decides; each failed probe doubles the cool-down (to a ceiling). So
//! a department that hangs costs each of its steps a fast retry instead of a driver slot
//! held for the call's whole timeout, and the other departments' steps go on.
//!
//! Before the breaker has seen enough failures, a bulkhead per department bounds the calls
//! in flight to it ([`Bulkheads`]): a call waits a moment for room and is otherwise turned
//! back as busy (tried again later), so a department that hangs holds at most its own share
//! of the driver, never all of it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A bound on the calls in flight to each department.
#[derive(Debug)]
pub struct Bulkheads {
    per_department: usize,
    wait: Duration,
    rooms: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Bulkheads {
    /// At most `per_department` calls in flight to each department; a call waits at most
    /// `wait` for room.
    pub fn new(per_department: usize, wait: Duration) -> Self {
        Self { per_department: per_department.max(1), wait, rooms: Mutex::new(HashMap::new()) }
    }

    /// Room for one call to `department`, held until the permit is dropped; `None` when
    /// none came free within the wait (the department is busy: try later).
    pub async fn enter(&self, department: &str) -> Option<OwnedSemaphorePermit> {
        let room = {
            let mut rooms = self.rooms.lock().expect("bulkheads");
            rooms.entry(department.to_string()).or_insert_with(|| Arc::new(Semaphore::new(self.per_department))).clone()
        };
        if let Ok(permit) = room.clone().try_acquire_owned() {
            return Some(permit);
        }
        tokio::time::timeout(self.wait, room.acquire_owned()).await.ok()?.ok()
    }
}

/// The breakers of every department.
#[derive(Debug)]
pub struct Breakers {
    states: Mutex<HashMap<String, State>>,
    threshold: u32,
    cooldown: Duration,
    ceiling: Duration,
}

/// A probe unanswered this long is taken as lost: longer than any call's timeout.
const PROBE_LOST: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct State {
    /// Down-or-hanging answers in a row.
    failures: u32,
    /// Open until then; `None`: closed.
    open_until: Option<Instant>,
    /// The cool-down the next opening lasts.
    cooldown: Duration,
    /// When a probe call went (half open): no other call goes meanwhile, unless it never
    /// told its outcome (its task ended) within [`PROBE_LOST`].
    probing: Option<Instant>,
}

impl Breakers {
    /// Breakers opening after `threshold` failures in a row, for `cooldown` at first, at
    /// most `ceiling`.
    pub fn new(threshold: u32, cooldown: Duration, ceiling: Duration) -> Self {
        Self { states: Mutex::new(HashMap::new()), threshold: threshold.max(1), cooldown, ceiling }
    }

    /// Whether a call to `department` may go now. Closed: yes. Open: no, until the
    /// cool-down ends; then yes for one probe, whose outcome ([`Breakers::record`]) closes
    /// or reopens it.
    pub fn allow(&self, department: &str) -> bool {
        let mut states = self.states.lock().expect("breakers");
        let s = states.entry(department.to_string()).or_default();
        match s.open_until {
            None => true,
            Some(until) if Instant::now() >= until && s.probing.is_none_or(|at| at.elapsed() >= PROBE_LOST) => {
                s.probing = Some(Instant::now());
                true
            }
            Some(_) => false,
        }
    }

    /// Records how a call to `department` ended: `down` when it found the department
    /// unavailable or hanging; any other answer (even a refusal) shows it works.
    pub fn record(&self, department: &str, down: bool) {
        let mut states = self.states.lock().expect("breakers");
        let s = states.entry(department.to_string()).or_default();
        if !down {
            *s = State::default();
            return;
        }
        s.failures = s.failures.saturating_add(1);
        let probed = s.probing.is_some();
        if probed || s.failures >= self.threshold {
            s.cooldown = if probed { (s.cooldown * 2).min(self.ceiling) } else { self.cooldown };
            s.open_until = Some(Instant::now() + s.cooldown);
            s.probing = None;
            if s.failures == self.threshold {
                tracing::warn!(
                    department,
                    cooldown_ms = s.cooldown.as_millis() as u64,
                    "department unreachable; calls to it paused"
                );
            }
        }
    }

    /// Whether `department`'s breaker is open (calls fail at once).
    pub fn is_open(&self, department: &str) -> bool {
        self.states.lock().expect("breakers").get(department).is_some_and(|s| s.open_until.is_some())
    }
}

/// Whether an answer means the department is down or hanging (what opens a breaker):
/// UNAVAILABLE, DEADLINE_EXCEEDED, or CANCELLED, which is how a call that ran into the
/// channel's own timeout ends.
pub fn is_down(code: tonic::Code) -> bool {
    matches!(code, tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_probes_after_the_cooldown() {
        let b = Breakers::new(3, Duration::from_millis(30), Duration::from_millis(100));
        for _ in 0..2 {
            assert!(b.allow("vehicle"));
            b.record("vehicle", true);
        }
        assert!(b.allow("vehicle"), "two failures: still closed");
        b.record("vehicle", true);
        assert!(!b.allow("vehicle"), "open");
        assert!(b.allow("household"), "the others are not affected");
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow("vehicle"), "one probe after the cool-down");
        assert!(!b.allow("vehicle"), "only one");
        b.record("vehicle", true);
        assert!(!b.allow("vehicle"), "a failed probe reopens");
        std::thread::sleep(Duration::from_millis(40));
        assert!(!b.allow("vehicle"), "for twice as long");
        std::thread::sleep(Duration::from_millis(30));
        assert!(b.allow("vehicle"));
        b.record("vehicle", false);
        assert!(!b.is_open("vehicle"));
        assert!(b.allow("vehicle") && b.allow("vehicle"), "closed again");
    }

    #[tokio::test]
    async fn a_bulkhead_bounds_each_department_alone() {
        let b = Bulkheads::new(2, Duration::from_millis(20));
        let (one, two) = (b.enter("vehicle").await, b.enter("vehicle").await);
        assert!(one.is_some() && two.is_some());
        assert!(b.enter("vehicle").await.is_none(), "full: turned back after the wait");
        assert!(b.enter("household").await.is_some(), "the others have their own room");
        drop(one);
        assert!(b.enter("vehicle").await.is_some(), "room again");
    }

    #[test]
    fn a_refusal_is_an_answer() {
        let b = Breakers::new(1, Duration::from_secs(60), Duration::from_secs(60));
        b.record("liaison", is_down(tonic::Code::InvalidArgument));
        assert!(b.allow("liaison"));
        b.record("liaison", is_down(tonic::Code::DeadlineExceeded));
        assert!(!b.allow("liaison"));
    }
}
