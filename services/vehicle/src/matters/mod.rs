//! Vehicle's matters, one plug-in each ([`onething_platform::cases::MatterRules`]),
//! registered in [`department`]: the inspection booking on a station's slots (M14, with
//! 交钥匙 and 容缺), the enterprise's vehicle verification, and the driving licence
//! cancellation once household confirms a death.

pub mod booking;
mod licence_cancellation;
mod verification;

use onething_platform::cases::Department;

/// Department name and event namespace.
pub const DEPARTMENT: &str = "vehicle";
/// The inspection booking's catalog code.
pub const BOOKING: &str = "vehicle.inspection_booking";
/// The driving licence cancellation's catalog code (decided when a death arrives).
pub const LICENCE_CANCELLATION: &str = "vehicle.driving_licence_cancellation";

/// Vehicle and the rules of each of its matters.
pub fn department() -> Department {
    Department::new(DEPARTMENT)
        .with(booking::InspectionBooking)
        .with(verification::EnterpriseVehicleVerification)
        .with(licence_cancellation::DrivingLicenceCancellation)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use onething_platform::{
        calendar::china,
        cases::{Form, check_case_form},
        catalog::Catalog,
    };

    #[test]
    fn booking_forms() {
        let c = Catalog::load("").unwrap();
        let m = c.get(super::BOOKING).unwrap();
        let dept = super::department();
        let rules = dept.rules(super::BOOKING).unwrap();
        let now = china().with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap().with_timezone(&Utc);
        let f = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect::<Form>();
        let fields = |form: &Form| {
            check_case_form(&c, m, rules, None, form, now).into_iter().map(|x| x.field).collect::<Vec<_>>()
        };
        let ok = f(&[("plate", "鲁K12345"), ("station_id", "S1"), ("slot_date", "2026-11-30"), ("slot_time", "09:00")]);
        assert!(fields(&ok).is_empty());
        let past =
            f(&[("plate", "鲁K1234"), ("station_id", "S1"), ("slot_date", "2026-11-26"), ("slot_time", "09:00")]);
        assert_eq!(fields(&past), ["form.plate", "form.slot_date"]);
        let walk_in = f(&[("plate", "鲁K12345"), ("station_id", "S1"), ("walk_in", "true")]);
        assert!(fields(&walk_in).is_empty());
    }
}
