//! Vehicle rules that need no database: booking forms, the slot grid of a station, and the
//! order of a 交钥匙 proxy inspection (M14).

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use onething_platform::{
    calendar::china,
    cases::{ApplicantRecord, Form},
    catalog::Matter,
    catalog::form::FormCheck,
    error::FieldViolation,
};
use onething_proto::{common::ApplicantKind, vehicle::ProxyState};

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

/// What vehicle checks of a form beyond the catalog's declaration of it (kinds, bounds,
/// required fields): a booked slot, unless walking in, with a valid date and time not yet
/// begun; an enterprise for the verification.
pub fn validate(
    matter: &Matter,
    applicant: Option<&ApplicantRecord>,
    form: &Form,
    now: DateTime<Utc>,
) -> Vec<FieldViolation> {
    let mut f = FormCheck::new(form);
    match matter.code.as_str() {
        "vehicle.inspection_booking" if !f.flag("walk_in") => {
            let time = f.value("slot_time").map(parse_time);
            // A malformed date the catalog reports; a missing one needs the walk-in hint.
            if f.value("slot_date").is_none() {
                f.refuse("slot_date", "a date as YYYY-MM-DD (or walk_in=true)");
            }
            if !matches!(time, Some(Some(_))) {
                f.refuse("slot_time", "a time as HH:MM (or walk_in=true)");
            }
            if let (Some(d), Some(Some(t))) = (f.date("slot_date"), time)
                && has_begun(d, t, now)
            {
                f.refuse("slot_date", "the slot lies in the past");
            }
        }
        "vehicle.enterprise_vehicle_verification" => {
            f.applicant_kind(applicant, ApplicantKind::Enterprise, "the enterprise");
        }
        // The catalog's declaration says all there is to check.
        _ => {}
    }
    f.finish()
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

    #[test]
    fn booking_forms() {
        let c = onething_platform::catalog::Catalog::load("").unwrap();
        let m = c.get("vehicle.inspection_booking").unwrap();
        let now = china().with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap().with_timezone(&Utc);
        let f = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect::<Form>();
        let fields = |v: Vec<FieldViolation>| v.into_iter().map(|x| x.field).collect::<Vec<_>>();
        // As CreateCase checks it: the catalog's declaration, then vehicle's rules.
        let validate = |m, a, form: &Form, now| c.check_case_form(m, form, super::validate(m, a, form, now));
        let ok = f(&[("plate", "鲁K12345"), ("station_id", "S1"), ("slot_date", "2026-11-30"), ("slot_time", "09:00")]);
        assert!(validate(m, None, &ok, now).is_empty());
        let past =
            f(&[("plate", "鲁K1234"), ("station_id", "S1"), ("slot_date", "2026-11-26"), ("slot_time", "09:00")]);
        assert_eq!(fields(validate(m, None, &past, now)), ["form.plate", "form.slot_date"]);
        let walk_in = f(&[("plate", "鲁K12345"), ("station_id", "S1"), ("walk_in", "true")]);
        assert!(validate(m, None, &walk_in, now).is_empty());
    }
}
