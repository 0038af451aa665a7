//! The catalog's form fields: every field a matter's or a bundle's form takes, with its kind
//! (what a value must look like) and its bound in characters. Every form is checked against
//! them where it enters the mesh — a case's at `CreateCase`, a bundle's at `SubmitBundle` —
//! so a field is as long and as well-formed as the catalog says, whichever way it comes. A
//! field the catalog does not name is bounded by [`MAX_VALUE_CHARS`]. Each matter declares
//! its form over these fields ([`MatterForm`]: required or optional, the values of an
//! enumeration), checked by [`check_matter_form`]; the departments still check what a value
//! means (a date not in the future, the applicant a parent) through [`super::form::FormCheck`].

use crate::{
    error::FieldViolation,
    ids::{CitizenId, CreditCode, Plate},
};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Most fields a form may carry.
pub const MAX_FIELDS: usize = 64;
/// Longest field name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest value of a field the catalog does not name, in characters; no declared bound
/// may be larger.
pub const MAX_VALUE_CHARS: usize = 1024;

/// What a field's value must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Any text within the bound.
    #[default]
    Text,
    /// A citizen ID number (GB 11643, check digit included).
    IdNumber,
    /// A unified social credit code (GB 32100, check character included).
    CreditCode,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// `true` or `false`.
    Flag,
    /// A certificate or document number: 4 to 32 ASCII letters, digits or `-`.
    Code,
    /// A civil vehicle plate ([`crate::ids::Plate`]).
    Plate,
}

/// One form field as the catalog declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    /// What its value must look like.
    #[serde(default)]
    pub kind: Kind,
    /// Longest value, in characters.
    pub max: usize,
}

impl Field {
    /// Checks a (trimmed, non-empty) value; the error says what is expected, never echoing
    /// the value (it may be personal data).
    ///
    /// # Errors
    /// The value is longer than the bound or not of the field's kind.
    pub fn check(&self, value: &str) -> Result<(), String> {
        if value.chars().count() > self.max {
            return Err(format!("at most {} characters", self.max));
        }
        match self.kind {
            Kind::Text => Ok(()),
            Kind::IdNumber => CitizenId::parse(value).map(|_| ()).map_err(|e| format!("not a citizen ID number: {e}")),
            Kind::CreditCode => {
                CreditCode::parse(value).map(|_| ()).map_err(|e| format!("not a unified social credit code: {e}"))
            }
            Kind::Date => chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
                .map(|_| ())
                .map_err(|_| "a date as YYYY-MM-DD".to_string()),
            Kind::Flag => matches!(value, "true" | "false").then_some(()).ok_or_else(|| "true or false".to_string()),
            Kind::Code => ((4..=32).contains(&value.len())
                && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
            .then_some(())
            .ok_or_else(|| "4 to 32 letters, digits or '-'".to_string()),
            Kind::Plate => Plate::parse(value).map(|_| ()).map_err(|e| format!("not a plate: {e}")),
        }
    }
}

/// The declared fields, by name.
pub type Fields = BTreeMap<String, Field>;

/// Checks `form` (values trimmed) against `fields`: at most [`MAX_FIELDS`] fields, names of
/// 1 to [`MAX_NAME_CHARS`] characters, each value within its declared bound and of its kind
/// (an empty value is left to the matter: required or not), an undeclared field within
/// [`MAX_VALUE_CHARS`]. Each violation names `form.<field>` and the bound.
pub fn check_form(fields: &Fields, form: &BTreeMap<String, String>, out: &mut Vec<FieldViolation>) {
    let violation = |field: String, description: String| FieldViolation { field, description };
    if form.len() > MAX_FIELDS {
        out.push(violation("form".into(), format!("at most {MAX_FIELDS} fields")));
    }
    for (name, value) in form {
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            out.push(violation("form".into(), format!("field names of 1 to {MAX_NAME_CHARS} characters")));
            continue;
        }
        let checked = match fields.get(name) {
            Some(f) if !value.is_empty() => f.check(value),
            Some(_) => Ok(()),
            None if value.chars().count() > MAX_VALUE_CHARS => Err(format!("at most {MAX_VALUE_CHARS} characters")),
            None => Ok(()),
        };
        if let Err(description) = checked {
            out.push(violation(format!("form.{name}"), description));
        }
    }
}

/// A field of one matter's form, as the catalog declares it under the matter's `form`:
/// required unless `optional`, and one of `values` when they are given.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormField {
    /// May be left out or empty.
    #[serde(default)]
    pub optional: bool,
    /// The values it may take (an enumeration); empty means any of its kind.
    #[serde(default)]
    pub values: Vec<String>,
}

/// One matter's form: its fields by name.
pub type MatterForm = BTreeMap<String, FormField>;

/// Checks `form` (values trimmed) as a case of a matter with `declared` fields: every
/// [`check_form`] rule, then each declared field present unless optional and one of its
/// values. A field gets one violation at most (the first found).
pub fn check_matter_form(
    fields: &Fields,
    declared: &MatterForm,
    form: &BTreeMap<String, String>,
    out: &mut Vec<FieldViolation>,
) {
    check_form(fields, form, out);
    for (name, f) in declared {
        let path = format!("form.{name}");
        if out.iter().any(|v| v.field == path) {
            continue;
        }
        match form.get(name).map(String::as_str).filter(|v| !v.is_empty()) {
            None if f.optional => {}
            None => out.push(FieldViolation { field: path, description: "required".into() }),
            Some(v) if !f.values.is_empty() && !f.values.iter().any(|x| x == v) => {
                out.push(FieldViolation { field: path, description: format!("one of {}", f.values.join(", ")) });
            }
            Some(_) => {}
        }
    }
}

/// Adds `more` to `out`, each only when its field has no violation yet: the catalog's
/// check and a department's say one thing per field.
pub fn merge(out: &mut Vec<FieldViolation>, more: Vec<FieldViolation>) {
    for v in more {
        if !out.iter().any(|x| x.field == v.field) {
            out.push(v);
        }
    }
}

/// Checks the declarations themselves: bounds from 1 to [`MAX_VALUE_CHARS`].
///
/// # Errors
/// A bound out of that range, or a name too long.
pub fn check_declarations(fields: &Fields) -> anyhow::Result<()> {
    for (name, f) in fields {
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            anyhow::bail!("catalog: form field name {name:?} must be 1 to {MAX_NAME_CHARS} characters");
        }
        if f.max == 0 || f.max > MAX_VALUE_CHARS {
            anyhow::bail!("catalog: form field {name} must be bounded by 1 to {MAX_VALUE_CHARS} characters");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Fields {
        [
            ("subject_id_number".to_string(), Field { kind: Kind::IdNumber, max: 18 }),
            ("death_date".to_string(), Field { kind: Kind::Date, max: 10 }),
            ("walk_in".to_string(), Field { kind: Kind::Flag, max: 5 }),
            ("child_name".to_string(), Field { kind: Kind::Text, max: 50 }),
        ]
        .into()
    }

    fn check(pairs: &[(&str, &str)]) -> Vec<FieldViolation> {
        let form = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut out = Vec::new();
        check_form(&fields(), &form, &mut out);
        out
    }

    #[test]
    fn declared_fields_are_checked_by_kind_and_bound() {
        assert!(check(&[("subject_id_number", "11010519491231002X"), ("death_date", "2026-01-02")]).is_empty());
        assert!(check(&[("walk_in", "true"), ("child_name", &"名".repeat(50)), ("death_date", "")]).is_empty());
        let bad = check(&[
            ("subject_id_number", "110105194912310021"),
            ("death_date", "02.01.2026"),
            ("walk_in", "yes"),
            ("child_name", &"名".repeat(51)),
        ]);
        let got: Vec<(&str, &str)> = bad.iter().map(|v| (v.field.as_str(), v.description.as_str())).collect();
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[0], ("form.child_name", "at most 50 characters"));
        assert_eq!(got[1], ("form.death_date", "a date as YYYY-MM-DD"));
        assert!(got[2].0 == "form.subject_id_number" && got[2].1.starts_with("not a citizen ID number"));
        assert_eq!(got[3], ("form.walk_in", "true or false"));
        assert!(!got.iter().any(|(_, d)| d.contains("110105")), "no value echoed");
    }

    #[test]
    fn undeclared_fields_and_the_form_are_bounded() {
        assert!(check(&[("remark", &"x".repeat(MAX_VALUE_CHARS))]).is_empty());
        assert_eq!(check(&[("remark", &"x".repeat(MAX_VALUE_CHARS + 1))])[0].description, "at most 1024 characters");
        assert_eq!(check(&[(&"k".repeat(65), "v")])[0].field, "form");
        let many: Vec<(String, String)> = (0..=MAX_FIELDS).map(|i| (format!("f{i}"), String::new())).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(check(&many)[0].description, format!("at most {MAX_FIELDS} fields"));
    }

    #[test]
    fn declarations_are_bounded() {
        assert!(check_declarations(&fields()).is_ok());
        let mut f = fields();
        f.insert("huge".into(), Field { kind: Kind::Text, max: MAX_VALUE_CHARS + 1 });
        assert!(check_declarations(&f).is_err());
    }
}
