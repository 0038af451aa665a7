//! What a department checks of a form beyond the catalog's declaration of it (each field's
//! kind and bound, the matter's required fields and enumerations:
//! [`super::fields::check_matter_form`]). A [`FormCheck`] rule looks only at values given
//! (a missing one is the catalog's to report) for what they mean — a date not in the
//! future, a list of allowed items, a field required when another is set — and
//! [`super::Catalog::check_case_form`] keeps one violation per field, the catalog's first,
//! so every department says it the same way.

use crate::{cases::ApplicantRecord, error::FieldViolation};
use chrono::NaiveDate;
use onething_proto::common::ApplicantKind;
use std::collections::BTreeMap;

/// A department's checks over one form; [`FormCheck::finish`] gives the violations.
pub struct FormCheck<'a> {
    form: &'a BTreeMap<String, String>,
    out: Vec<FieldViolation>,
}

impl<'a> FormCheck<'a> {
    /// Checks over `form` (values trimmed).
    pub fn new(form: &'a BTreeMap<String, String>) -> Self {
        Self { form, out: Vec::new() }
    }

    /// The value of `name`, when it is given and not empty.
    pub fn value(&self, name: &str) -> Option<&'a str> {
        self.form.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// Whether flag `name` is `true`.
    pub fn flag(&self, name: &str) -> bool {
        self.value(name) == Some("true")
    }

    /// The date `name`, when it is given as `YYYY-MM-DD`.
    pub fn date(&self, name: &str) -> Option<NaiveDate> {
        self.value(name).and_then(|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").ok())
    }

    /// Reports `form.<name>` with `description`.
    pub fn refuse(&mut self, name: &str, description: impl Into<String>) {
        self.out.push(FieldViolation { field: format!("form.{name}"), description: description.into() });
    }

    /// Reports `form.<name>` when its value is given and `ok` says no; `rule` says what it
    /// must be.
    pub fn rule(&mut self, name: &str, ok: impl Fn(&str) -> bool, rule: &str) {
        if let Some(v) = self.value(name)
            && !ok(v)
        {
            self.refuse(name, rule);
        }
    }

    /// `name` is required when `when` holds (a field the catalog marks optional).
    pub fn required_if(&mut self, name: &str, when: bool, why: &str) {
        if when && self.value(name).is_none() {
            self.refuse(name, format!("required {why}"));
        }
    }

    /// The date `name` lies between 1900-01-01 and `today`.
    pub fn past_date(&mut self, name: &str, today: NaiveDate) {
        let floor = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or(NaiveDate::MIN);
        if self.date(name).is_some_and(|d| d > today || d < floor) {
            self.refuse(name, "must not be in the future or before 1900");
        }
    }

    /// The date `name` is `today` or later.
    pub fn not_past(&mut self, name: &str, today: NaiveDate) {
        if self.date(name).is_some_and(|d| d < today) {
            self.refuse(name, "must not be in the past");
        }
    }

    /// The applicant is of `kind` (`who` names it for the message).
    pub fn applicant_kind(&mut self, applicant: Option<&ApplicantRecord>, kind: ApplicantKind, who: &str) {
        if applicant.is_some_and(|a| a.kind != kind) {
            self.out.push(FieldViolation {
                field: "applicant.kind".into(),
                description: format!("this matter is applied for by {who}"),
            });
        }
    }

    /// The violations found.
    pub fn finish(self) -> Vec<FieldViolation> {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_given_values_are_looked_at() {
        let form: BTreeMap<String, String> =
            [("born", "2099-01-01"), ("trip", "2000-01-01"), ("empty", ""), ("bad", "01.02.2003")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let today = NaiveDate::from_ymd_opt(2026, 12, 4).unwrap();
        let mut f = FormCheck::new(&form);
        f.past_date("born", today);
        f.not_past("trip", today);
        f.past_date("empty", today);
        f.past_date("bad", today); // the catalog reports a malformed date
        f.required_if("reason", true, "when urgent");
        f.required_if("other", false, "never");
        let got: Vec<_> = f.finish().into_iter().map(|v| v.field).collect();
        assert_eq!(got, ["form.born", "form.trip", "form.reason"]);
    }
}
