//! Evidence rules of the catalog (M24): per material of a matter, whether it must be a
//! verified e-licence, may be one, or is plain (not named), of which kind, and which of the
//! licence's values must match the application.
//!
//! ```toml
//! evidence.death_certificate = { elicence = "optional", kind = "death_medical_certificate",
//!   match = { subject_id_number = "sub", death_certificate_number = "jti", death_date = "fields.death_date" } }
//! ```
//! A `match` key is a form field, or `@applicant` (the applicant's identifier); its value
//! names the licence's value (`sub`, `jti`, `holder`, `fields.<name>`), alternatives joined
//! by `|` (`fields.mother_id_number|fields.father_id_number`: either parent). `kind` may name
//! alternatives the same way (`deregistration_notice|bankruptcy_ruling`), each one of the
//! kinds the mesh knows ([`crate::elicence::KINDS`]).

use crate::elicence::Licence;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Whether a material must be a verified e-licence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceMode {
    /// Only a verified e-licence: anything else is not accepted.
    Required,
    /// A verified e-licence lets the matter be decided automatically; anything else goes to
    /// a clerk, with what could not be verified.
    Optional,
}

/// The rule of one material.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceRule {
    /// Required or optional.
    pub elicence: EvidenceMode,
    /// The e-licence kind, e.g. `death_medical_certificate`; alternatives joined by `|`.
    pub kind: String,
    /// Form field (or `@applicant`) → the licence value it must equal.
    #[serde(default, rename = "match")]
    pub matches: BTreeMap<String, String>,
}

/// `v` as the registers write it when it is a citizen ID number or a plate; as it is
/// otherwise.
fn canonical(v: &str) -> String {
    use crate::ids::{CitizenId, Plate};
    CitizenId::parse(v)
        .map(|id| id.expose().to_string())
        .or_else(|_| Plate::parse(v).map(|p| p.expose().to_string()))
        .unwrap_or_else(|_| v.to_string())
}

/// The form key standing for the applicant's identifier.
pub const APPLICANT: &str = "@applicant";

impl EvidenceRule {
    /// The kinds it takes.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.kind.split('|').map(str::trim)
    }

    /// What of `licence` does not match the application (`form`, `applicant`'s identifier):
    /// the names of the form fields that differ, and `kind` when the licence is of another
    /// kind. Empty: it matches.
    pub fn mismatches(&self, licence: &Licence, form: &BTreeMap<String, String>, applicant: &str) -> Vec<String> {
        let mut wrong = Vec::new();
        if !self.kinds().any(|k| k == licence.kind) {
            wrong.push("kind".to_string());
        }
        for (field, names) in &self.matches {
            let given = if field == APPLICANT { applicant } else { form.get(field).map_or("", String::as_str) };
            // Exactly: a number that differs in case is another number to the registry's
            // unique indexes (a second child on one certificate). ID numbers and plates in
            // their one written form, as the registers keep them (a final x is X).
            let given = canonical(given);
            let matched = !given.is_empty()
                && names.split('|').any(|n| licence.value(n.trim()).is_some_and(|v| canonical(v) == given));
            if !matched {
                wrong.push(field.clone());
            }
        }
        wrong
    }

    /// Checks the rule itself against its matter: a kind, and each `match` key a field of
    /// the form or `@applicant`, each value licence value names.
    ///
    /// # Errors
    /// What is wrong, naming the material.
    pub fn check(&self, material: &str, form_fields: &[&str]) -> Result<(), String> {
        if self.kind.trim().is_empty() {
            return Err(format!("evidence {material} names no kind"));
        }
        if let Some(k) = self.kinds().find(|k| !crate::elicence::KINDS.iter().any(|(known, _)| known == k)) {
            return Err(format!("evidence {material}: {k:?} is not a known e-licence kind"));
        }
        for (field, names) in &self.matches {
            if field != APPLICANT && !form_fields.contains(&field.as_str()) {
                return Err(format!("evidence {material} matches {field}, which is not in the form"));
            }
            for n in names.split('|').map(str::trim) {
                let known =
                    matches!(n, "sub" | "jti" | "holder") || n.strip_prefix("fields.").is_some_and(|f| !f.is_empty());
                if !known {
                    return Err(format!("evidence {material} matches {field} to {n:?}, not a licence value"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn birth_rule() -> EvidenceRule {
        EvidenceRule {
            elicence: EvidenceMode::Optional,
            kind: "birth_medical_certificate".into(),
            matches: [
                ("birth_certificate_number".to_string(), "jti".to_string()),
                (APPLICANT.to_string(), "fields.mother_id_number|fields.father_id_number".to_string()),
            ]
            .into(),
        }
    }

    #[test]
    fn a_licence_matches_its_fields_and_either_parent() {
        let rule = birth_rule();
        let licence = Licence {
            kind: "birth_medical_certificate".into(),
            jti: "N1".into(),
            fields: [
                ("mother_id_number".to_string(), "M".to_string()),
                ("father_id_number".to_string(), "F".to_string()),
            ]
            .into(),
            ..Default::default()
        };
        let form: BTreeMap<String, String> = [("birth_certificate_number".to_string(), "N1".to_string())].into();
        assert!(rule.mismatches(&licence, &form, "F").is_empty());
        assert!(rule.mismatches(&licence, &form, "M").is_empty());
        assert_eq!(rule.mismatches(&licence, &form, "X"), ["@applicant"]);
        // A number in another case is another number.
        let lower: BTreeMap<String, String> = [("birth_certificate_number".to_string(), "n1".to_string())].into();
        assert_eq!(rule.mismatches(&licence, &lower, "M"), ["birth_certificate_number"]);
        let other: BTreeMap<String, String> = [("birth_certificate_number".to_string(), "N2".to_string())].into();
        assert_eq!(rule.mismatches(&licence, &other, "M"), ["birth_certificate_number"]);
        let wrong_kind = Licence { kind: "business_licence".into(), ..licence };
        assert_eq!(rule.mismatches(&wrong_kind, &form, "M"), ["kind"]);
        // An empty value never matches an empty one.
        assert_eq!(
            rule.mismatches(&Licence { kind: rule.kind.clone(), ..Default::default() }, &BTreeMap::new(), "").len(),
            2
        );
    }

    #[test]
    fn id_numbers_match_in_their_one_written_form() {
        let born = chrono::NaiveDate::from_ymd_opt(1991, 7, 2).unwrap();
        let upper = (1..999)
            .map(|seq| crate::ids::CitizenId::assign("371002", born, seq).unwrap().expose().to_string())
            .find(|id| id.ends_with('X'))
            .unwrap();
        let rule = EvidenceRule {
            elicence: EvidenceMode::Optional,
            kind: "death_medical_certificate".into(),
            matches: [("subject_id_number".to_string(), "sub".to_string())].into(),
        };
        let licence = Licence { kind: rule.kind.clone(), sub: upper.clone(), ..Default::default() };
        let form = |v: &str| BTreeMap::from([("subject_id_number".to_string(), v.to_string())]);
        assert!(rule.mismatches(&licence, &form(&upper.to_ascii_lowercase()), "").is_empty());
        assert!(rule.mismatches(&licence, &form(&upper), "").is_empty());
    }

    #[test]
    fn a_rule_names_form_fields_and_licence_values() {
        let rule = birth_rule();
        assert!(rule.check("m", &["birth_certificate_number"]).is_ok());
        assert!(rule.check("m", &[]).unwrap_err().contains("not in the form"));
        let bad = EvidenceRule { matches: [("x".to_string(), "nothing".to_string())].into(), ..birth_rule() };
        assert!(bad.check("m", &["x"]).unwrap_err().contains("not a licence value"));
        assert!(EvidenceRule { kind: " ".into(), ..birth_rule() }.check("m", &[]).is_err());
    }
}
