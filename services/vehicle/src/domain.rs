//! Vehicle rules that need no database: the slot grid of a station, whether a slot has
//! begun, and the order of a 交钥匙 proxy inspection (M14).

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use onething_platform::calendar::china;
use onething_proto::vehicle::ProxyState;

/// Parses `HH:MM`.
pub fn parse_time(s: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(s, "%H:%M").ok()
}

/// Whether a slot starting at `time` lies on the station's grid: at or after opening, a
/// whole number of slots after it, and ending by closing.
pub fn slot_fits(opens: NaiveTime, closes: NaiveTime, slot_minutes: u32, time: NaiveTime) -> bool {
    let from_open = (time - opens).num_minutes();
    let length = i64::from(slot_minutes.max(1));
    time >= opens && from_open % length == 0 && time + chrono::Duration::minutes(length) <= closes
}

/// The slot starts of a day, in order.
pub fn slots(opens: NaiveTime, closes: NaiveTime, slot_minutes: u32) -> Vec<NaiveTime> {
    let mut out = Vec::new();
    let mut t = opens;
    while slot_fits(opens, closes, slot_minutes, t) {
        out.push(t);
        t += chrono::Duration::minutes(i64::from(slot_minutes.max(1)));
    }
    out
}

/// Whether a slot has already begun at `now` (China time).
pub fn has_begun(date: NaiveDate, time: NaiveTime, now: DateTime<Utc>) -> bool {
    date.and_time(time) <= now.with_timezone(&china()).naive_local()
}

/// The next state of a proxy inspection; `None` after the vehicle is returned.
pub fn next_proxy_state(s: ProxyState) -> Option<ProxyState> {
    use ProxyState as P;
    match s {
        P::Booked => Some(P::HandedOver),
        P::HandedOver => Some(P::Inspecting),
        P::Inspecting => Some(P::Inspected),
        P::Inspected => Some(P::Returned),
        P::Returned | P::Unspecified => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: &str) -> NaiveTime {
        parse_time(s).unwrap()
    }

    #[test]
    fn the_slot_grid() {
        let (o, c) = (t("08:30"), t("17:00"));
        assert!(slot_fits(o, c, 30, t("08:30")));
        assert!(slot_fits(o, c, 30, t("16:30")));
        assert!(!slot_fits(o, c, 30, t("17:00")), "ends after closing");
        assert!(!slot_fits(o, c, 30, t("08:00")), "before opening");
        assert!(!slot_fits(o, c, 30, t("09:15")), "off the grid");
        assert_eq!(slots(o, c, 30).len(), 17);
    }

    #[test]
    fn past_slots_and_proxy_order() {
        let now = china().with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap().with_timezone(&Utc);
        let d = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        assert!(has_begun(d, t("09:30"), now));
        assert!(!has_begun(d, t("10:30"), now));
        let mut s = ProxyState::Booked;
        let mut seen = vec![s];
        while let Some(n) = next_proxy_state(s) {
            seen.push(n);
            s = n;
        }
        assert_eq!(seen.len(), 5);
        assert_eq!(s, ProxyState::Returned);
    }
}
