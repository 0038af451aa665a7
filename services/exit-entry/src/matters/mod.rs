//! Exit-entry's matters, one plug-in each ([`onething_platform::cases::MatterRules`]),
//! registered in [`department`]: the work-type residence permit decided on the permit
//! history (M13), expedited documents for enterprise business trips (M15), and travel
//! documents cancelled once household confirms a death.

mod business_travel;
mod document_cancellation;
mod work_residence;

use chrono::NaiveDate;
use onething_platform::{
    cases::Department,
    error::{Error, Result},
};

/// Department name and event namespace.
pub const DEPARTMENT: &str = "exit_entry";
/// The document cancellation's catalog code (decided when a death arrives).
pub const DOCUMENT_CANCELLATION: &str = "exit_entry.document_cancellation";

/// Exit-entry and the rules of each of its matters.
pub fn department() -> Department {
    Department::new(DEPARTMENT)
        .with(work_residence::WorkResidencePermit)
        .with(business_travel::BusinessTravelExpedited)
        .with(document_cancellation::DocumentCancellation)
}

/// A date the case service stored after checking it.
fn stored_date(s: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| Error::internal(anyhow::anyhow!("stored date does not parse")))
}

#[cfg(test)]
mod tests {
    use onething_platform::{
        cases::{Form, check_case_form},
        catalog::{Catalog, TimeUnit},
    };

    #[test]
    fn forms() {
        let c = Catalog::load("").unwrap();
        let dept = super::department();
        let fields = |code: &str, form: &Form| {
            let m = c.get(code).unwrap();
            let v = check_case_form(&c, m, dept.rules(code).unwrap(), None, form, chrono::Utc::now());
            let mut got: Vec<_> = v.into_iter().map(|x| x.field).collect();
            got.sort_unstable();
            got
        };
        let trip = "exit_entry.business_travel_expedited";
        let mut form: Form = [
            ("employer_credit_code", "91350100M000100Y43"),
            ("purpose", "tourism"),
            ("destination", "雅加达"),
            ("departure_date", "2099-01-01"),
            ("document_kind", "passport"),
            ("extremely_urgent", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(fields(trip, &form), ["form.purpose", "form.urgency_reason"]);
        form.insert("purpose".into(), "contract_signing".into());
        form.insert("urgency_reason".into(), "签约时间提前".into());
        assert!(fields(trip, &form).is_empty());
        assert_eq!(
            fields("exit_entry.work_residence_permit", &Form::new()),
            [
                "form.employer_credit_code",
                "form.nationality",
                "form.work_permit_number",
                "form.work_permit_valid_until"
            ]
        );
    }

    #[test]
    fn extremely_urgent_trips_are_same_day() {
        let c = Catalog::load("").unwrap();
        let code = "exit_entry.business_travel_expedited";
        let m = c.get(code).unwrap();
        let dept = super::department();
        let applicant = onething_platform::cases::ApplicantRecord {
            kind: onething_proto::common::ApplicantKind::Citizen,
            identifier: "11010519491231002X".into(),
            name: "申请人".into(),
            phone: String::new(),
        };
        let mut case =
            onething_platform::cases::CaseRecord::received(m, applicant, Form::new(), Vec::new(), chrono::Utc::now());
        assert_eq!(dept.rules(code).unwrap().time_limit(m, &case), (TimeUnit::WorkingDays, 2));
        case.form.insert("extremely_urgent".into(), "true".into());
        assert_eq!(dept.rules(code).unwrap().time_limit(m, &case), (TimeUnit::WorkingDays, 0));
    }
}
