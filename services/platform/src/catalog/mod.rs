//! The catalog of matters (事项清单, M22): one versioned data file loaded by every service,
//! so the same matter has the same materials and time limit everywhere.

pub mod evidence;
pub mod fields;
pub mod form;

use anyhow::{Context as _, bail};
use sea_orm::entity::prelude::StringLen;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The catalog built into every binary.
pub const BUILTIN: &str = include_str!("../../catalog.toml");

/// Who decides a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Handling {
    /// The system accepts and decides when the conditions hold (no human step).
    Automatic,
    /// A clerk accepts and decides.
    Review,
    /// Accepted at intake when the conditions hold (e.g. a booked inspection slot); a
    /// clerk decides.
    AutoAccept,
}

/// How the committed time is counted; stored by [`TimeUnit::as_str`]'s name (an unknown
/// stored name fails the read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, sea_orm::EnumIter, sea_orm::DeriveActiveEnum)]
#[serde(rename_all = "snake_case")]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)", rename_all = "snake_case")]
pub enum TimeUnit {
    /// 即办: at once.
    Immediate,
    /// Working days.
    WorkingDays,
    /// Clock hours.
    ClockHours,
}

impl TimeUnit {
    /// Storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeUnit::Immediate => "immediate",
            TimeUnit::WorkingDays => "working_days",
            TimeUnit::ClockHours => "clock_hours",
        }
    }

    /// From the storage name.
    pub fn from_str_name(s: &str) -> Option<Self> {
        [TimeUnit::Immediate, TimeUnit::WorkingDays, TimeUnit::ClockHours].into_iter().find(|u| u.as_str() == s)
    }

    /// The proto enum.
    pub fn to_proto(self) -> onething_proto::common::TimeLimitUnit {
        use onething_proto::common::TimeLimitUnit as P;
        match self {
            TimeUnit::Immediate => P::Immediate,
            TimeUnit::WorkingDays => P::WorkingDays,
            TimeUnit::ClockHours => P::ClockHours,
        }
    }
}

/// One matter (事项).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matter {
    /// `<department>.<matter>`, e.g. `household.birth_registration`.
    pub code: String,
    /// Chinese name.
    pub name: String,
    /// Owning department.
    pub department: String,
    /// The measure(s) of the seed document it implements.
    #[serde(default)]
    pub measure: String,
    /// Automatic or clerk review.
    pub handling: Handling,
    /// Unit of the committed time.
    pub time_unit: TimeUnit,
    /// Committed time in that unit (0 for immediate).
    pub time_limit: u32,
    /// 全程网办.
    #[serde(default)]
    pub online: bool,
    /// 跨省通办.
    #[serde(default)]
    pub cross_province: bool,
    /// Green-channel matter: its cases are listed first.
    #[serde(default)]
    pub priority: bool,
    /// Materials without which the case is not accepted.
    #[serde(default)]
    pub required_materials: Vec<String>,
    /// Materials that may be owed (容缺): accepted and approved provisionally without them.
    #[serde(default)]
    pub deferrable_materials: Vec<String>,
    /// Materials that may be given but are never required.
    #[serde(default)]
    pub optional_materials: Vec<String>,
    /// Its form: each field it takes, required unless marked optional, with its values when
    /// it is an enumeration. Every field is declared under the catalog's `fields`.
    #[serde(default)]
    pub form: fields::MatterForm,
    /// Working days within which an owed 容缺 material must follow a provisional approval;
    /// later, the approval is revoked.
    #[serde(default = "default_owed_days")]
    pub owed_within_working_days: u32,
    /// Working days within which an asked-for supplement (补正) must come; later, the case
    /// is not accepted (before acceptance) or rejected (after). A catalog value.
    #[serde(default = "default_supplement_days")]
    pub supplement_within_working_days: u32,
    /// The share of the committed time before the due time from which a case counts as
    /// close to due (预警): 0.25 warns in the last quarter, whatever the limit's length.
    #[serde(default = "default_warn_share")]
    pub warn_share: f64,
    /// Whether an approval can be revoked with its effects undone (compensation of a
    /// bundle). A bundle step that may not stand alone must be of a revocable matter.
    #[serde(default)]
    pub revocable: bool,
    /// The committed time (in the matter's unit) of an applicant who qualifies for M12's
    /// green channel for private-enterprise employees, handled first; none: no such channel.
    #[serde(default)]
    pub green_channel_time_limit: Option<u32>,
    /// Per material: whether it must or may be a verified e-licence, of which kind, and what
    /// of it must match the application (M24). A material not named is plain.
    #[serde(default)]
    pub evidence: BTreeMap<String, evidence::EvidenceRule>,
}

fn default_owed_days() -> u32 {
    10
}

fn default_supplement_days() -> u32 {
    5
}

fn default_warn_share() -> f64 {
    0.25
}

impl Matter {
    /// Whether `code` is a material this matter knows.
    pub fn knows_material(&self, code: &str) -> bool {
        self.required_materials
            .iter()
            .chain(&self.deferrable_materials)
            .chain(&self.optional_materials)
            .any(|m| m == code)
    }
}

/// One step of a bundle.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Step id within the bundle.
    pub id: String,
    /// Matter code.
    pub matter: String,
    /// Steps that must be approved first.
    #[serde(default)]
    pub after: Vec<String>,
    /// The applicant may leave it out.
    #[serde(default)]
    pub optional: bool,
    /// It carries on when another step is refused; otherwise it is withdrawn.
    #[serde(default)]
    pub stands_alone: bool,
    /// Step form field ← bundle form field, or a constant written `=value`.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

impl Step {
    /// The form of this step's case, from the bundle's `form`: each field from the bundle
    /// field it names, or the constant written `=value`.
    pub fn form_of(&self, form: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        self.fields
            .iter()
            .map(|(to, from)| {
                let value =
                    from.strip_prefix('=').map_or_else(|| form.get(from).cloned().unwrap_or_default(), str::to_string);
                (to.clone(), value)
            })
            .collect()
    }
}

/// A bundle (一件事).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// Code, e.g. `after_death`.
    pub code: String,
    /// Chinese name.
    pub name: String,
    /// Steps.
    pub steps: Vec<Step>,
    /// The share of the time from submission to due before the due time from which the
    /// bundle counts as close to due (预警).
    #[serde(default = "default_warn_share")]
    pub warn_share: f64,
}

impl Bundle {
    /// The step with `id`.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }
}

/// The whole catalog.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Catalog version, published with every change.
    pub version: String,
    /// Every matter.
    pub matters: Vec<Matter>,
    /// Every bundle.
    #[serde(default)]
    pub bundles: Vec<Bundle>,
    /// Every form field a matter or a bundle takes: its kind and bound.
    #[serde(default)]
    pub fields: fields::Fields,
    #[serde(skip)]
    index: HashMap<String, usize>,
}

impl Catalog {
    /// Parses and checks a catalog.
    ///
    /// # Errors
    /// Malformed TOML, a duplicate code, a code not prefixed by its department, a
    /// material listed twice, a non-immediate matter with a zero time limit, a form field
    /// bound out of range, or a step field (or the bundle field it takes) not declared
    /// under `fields`, or a constant not of its field's kind.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut c: Catalog = toml::from_str(text).context("catalog is not valid")?;
        fields::check_declarations(&c.fields)?;
        for (i, m) in c.matters.iter().enumerate() {
            if c.index.insert(m.code.clone(), i).is_some() {
                bail!("catalog: matter {} appears twice", m.code);
            }
            c.check_matter(m)?;
        }
        let mut codes = BTreeSet::new();
        for b in &c.bundles {
            if !codes.insert(&b.code) {
                bail!("catalog: bundle {} appears twice", b.code);
            }
            let mut ids = BTreeSet::new();
            for st in &b.steps {
                if !ids.insert(&st.id) {
                    bail!("catalog: bundle {} has step {} twice", b.code, st.id);
                }
                c.check_step(b, st)?;
                for a in &st.after {
                    // Steps come after their prerequisites, so the order is acyclic.
                    if !ids.contains(a) || a == &st.id {
                        bail!("catalog: bundle {} step {} waits for {a}, which does not come before it", b.code, st.id);
                    }
                }
            }
        }
        Ok(c)
    }

    /// One matter: its code, time limit, form fields (declared, values of their kind) and
    /// materials (none twice).
    fn check_matter(&self, m: &Matter) -> anyhow::Result<()> {
        let prefix = format!("{}.", m.department.replace('-', "_"));
        if !m.code.starts_with(&prefix) {
            bail!("catalog: matter {} is not prefixed by its department {}", m.code, m.department);
        }
        if m.time_unit != TimeUnit::Immediate && m.time_limit == 0 {
            bail!("catalog: matter {} has no time limit", m.code);
        }
        if !(m.warn_share > 0.0 && m.warn_share < 1.0) {
            bail!("catalog: matter {} warns at a share {} of its time, not between 0 and 1", m.code, m.warn_share);
        }
        if m.supplement_within_working_days == 0 {
            bail!("catalog: matter {} gives no time for a supplement", m.code);
        }
        for (name, f) in &m.form {
            let Some(field) = self.fields.get(name) else {
                bail!("catalog: matter {} takes {name}, which is not under fields", m.code);
            };
            for v in &f.values {
                if let Err(e) = field.check(v) {
                    bail!("catalog: matter {} allows {name} = {v:?}, which is not: {e}", m.code);
                }
            }
        }
        let mut seen = BTreeSet::new();
        for mat in m.required_materials.iter().chain(&m.deferrable_materials).chain(&m.optional_materials) {
            if !seen.insert(mat) {
                bail!("catalog: matter {} lists material {} twice", m.code, mat);
            }
        }
        let form: Vec<&str> = m.form.keys().map(String::as_str).collect();
        for (mat, rule) in &m.evidence {
            if !m.knows_material(mat) {
                bail!("catalog: matter {} has evidence for {mat}, which is not one of its materials", m.code);
            }
            rule.check(mat, &form).map_err(|e| anyhow::anyhow!("catalog: matter {}: {e}", m.code))?;
            // A material that must verify is one the matter cannot do without; an optional
            // or owed one could simply be left out to get around the rule.
            if rule.elicence == evidence::EvidenceMode::Required && !m.required_materials.contains(mat) {
                bail!("catalog: matter {} requires {mat} verified, but does not require {mat}", m.code);
            }
        }
        Ok(())
    }

    /// One step of bundle `b`: a known matter, fields declared on both sides, constants of
    /// their kind and on their matter's list, every field its matter requires filled.
    fn check_step(&self, b: &Bundle, st: &Step) -> anyhow::Result<()> {
        let Some(matter) = self.get(&st.matter) else {
            bail!("catalog: bundle {} step {} names unknown matter {}", b.code, st.id, st.matter);
        };
        let at = format!("catalog: bundle {} step {}", b.code, st.id);
        for (to, from) in &st.fields {
            let Some(field) = self.fields.get(to) else {
                bail!("{at} fills {to}, which is not under fields");
            };
            match from.strip_prefix('=') {
                Some(constant) => {
                    if let Err(e) = field.check(constant) {
                        bail!("{at} sets {to} to a constant that is not: {e}");
                    }
                }
                None if !self.fields.contains_key(from) => bail!("{at} takes {from}, which is not under fields"),
                None => {}
            }
        }
        // Compensation undoes what may not stand alone; what cannot be undone must stand.
        if b.steps.len() > 1 && !st.stands_alone && !matter.revocable {
            bail!("{at} may not stand alone, but {} cannot be revoked: mark it stands_alone", matter.code);
        }
        for (name, f) in &matter.form {
            match st.fields.get(name).and_then(|from| from.strip_prefix('=')) {
                None if !f.optional && !st.fields.contains_key(name) => {
                    bail!("{at} does not fill {name}, which {} requires", matter.code)
                }
                Some(constant) if !f.values.is_empty() && !f.values.iter().any(|v| v == constant) => {
                    bail!("{at} sets {name} to {constant:?}, not one of {}'s values", matter.code)
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Checks a form (values trimmed) against the declared fields; see [`fields::check_form`].
    pub fn check_form(&self, form: &BTreeMap<String, String>, out: &mut Vec<crate::error::FieldViolation>) {
        fields::check_form(&self.fields, form, out);
    }

    /// Checks the form of a case of `matter`: the declared fields' kinds and bounds, the
    /// matter's required fields and enumerations ([`fields::check_matter_form`]), then what
    /// the department adds (`department`, one violation per field at most).
    pub fn check_case_form(
        &self,
        matter: &Matter,
        form: &BTreeMap<String, String>,
        department: Vec<crate::error::FieldViolation>,
    ) -> Vec<crate::error::FieldViolation> {
        let mut out = Vec::new();
        fields::check_matter_form(&self.fields, &matter.form, form, &mut out);
        fields::merge(&mut out, department);
        out
    }

    /// The bundle with `code`.
    pub fn bundle(&self, code: &str) -> Option<&Bundle> {
        self.bundles.iter().find(|b| b.code == code)
    }

    /// The built-in catalog, or the file at `path` when it is not empty.
    ///
    /// # Errors
    /// An unreadable file or an invalid catalog.
    pub fn load(path: &str) -> anyhow::Result<Self> {
        if path.is_empty() {
            return Self::parse(BUILTIN);
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("reading catalog {path}"))?;
        Self::parse(&text).with_context(|| format!("catalog {path}"))
    }

    /// Whether any matter requires a material as a verified e-licence.
    pub fn requires_verified_evidence(&self) -> bool {
        self.matters.iter().any(|m| m.evidence.values().any(|r| r.elicence == evidence::EvidenceMode::Required))
    }

    /// The matter with `code`.
    pub fn get(&self, code: &str) -> Option<&Matter> {
        self.index.get(code).map(|&i| &self.matters[i])
    }

    /// The matters of one department.
    pub fn of_department<'a>(&'a self, department: &'a str) -> impl Iterator<Item = &'a Matter> + 'a {
        self.matters.iter().filter(move |m| m.department == department)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_is_valid() {
        let c = Catalog::parse(BUILTIN).unwrap();
        assert_eq!(c.of_department("household").count(), 7);
        let ch = c.get("household.collective_household").unwrap();
        assert_eq!(ch.required_materials.len(), 3, "M12: exactly three materials");
    }

    #[test]
    fn the_seven_bundles_are_valid() {
        let c = Catalog::parse(BUILTIN).unwrap();
        assert_eq!(c.bundles.len(), 7);
        let after_death = c.bundle("after_death").unwrap();
        assert_eq!(after_death.step("driving_licence").unwrap().after, ["deregistration"]);
        let bad = BUILTIN.replace(
            "after = [\"deregistration\"], stands_alone = true, fields = { subject_id_number = \"subject_id_number\" } },\n  { id = \"travel_documents\"",
            "after = [\"travel_documents\"], stands_alone = true, fields = { subject_id_number = \"subject_id_number\" } },\n  { id = \"travel_documents\"",
        );
        assert_ne!(bad, BUILTIN);
        assert!(Catalog::parse(&bad).is_err(), "waiting for a later step is refused");
    }

    #[test]
    fn what_may_not_stand_alone_can_be_revoked() {
        // A recorded death cannot be undone: its step must stand alone.
        let bad = BUILTIN.replace(
            "{ id = \"deregistration\", matter = \"household.deregistration\", stands_alone = true,",
            "{ id = \"deregistration\", matter = \"household.deregistration\",",
        );
        assert_ne!(bad, BUILTIN);
        let e = format!("{:#}", Catalog::parse(&bad).unwrap_err());
        assert!(e.contains("household.deregistration cannot be revoked"), "{e}");
        let c = Catalog::parse(BUILTIN).unwrap();
        assert!(c.get("liaison.precursor_chemical_filing").unwrap().revocable);
        assert!(!c.get("household.deregistration").unwrap().revocable);
        let bad_share = BUILTIN.replacen("revocable = true", "revocable = true\nwarn_share = 1.5", 1);
        assert!(Catalog::parse(&bad_share).is_err(), "a warning share past 1 is refused");
    }

    #[test]
    fn duplicate_and_misnamed_matters_are_refused() {
        let one = "[[matters]]\ncode = \"household.a\"\nname = \"a\"\ndepartment = \"household\"\nhandling = \"review\"\ntime_unit = \"immediate\"\ntime_limit = 0\n";
        let twice = format!("version = \"1\"\n{one}{one}");
        assert!(format!("{:#}", Catalog::parse(&twice).unwrap_err()).contains("twice"));
        let wrong = "version = \"1\"\n[[matters]]\ncode = \"vehicle.a\"\nname = \"a\"\ndepartment = \"household\"\nhandling = \"review\"\ntime_unit = \"immediate\"\ntime_limit = 0\n";
        assert!(Catalog::parse(wrong).is_err());
        let no_limit = one.replace("immediate", "working_days");
        assert!(Catalog::parse(&format!("version = \"1\"\n{no_limit}")).is_err());
    }

    #[test]
    fn every_field_a_step_fills_is_declared_and_constants_fit() {
        let undeclared = BUILTIN.replace("death_certificate_number = { kind = \"code\", max = 32 }\n", "");
        let e = format!("{:#}", Catalog::parse(&undeclared).unwrap_err());
        assert!(e.contains("death_certificate_number") && e.contains("not under fields"), "{e}");
        let unfit = BUILTIN.replace("purpose = { max = 100 }", "purpose = { max = 5 }");
        let e = format!("{:#}", Catalog::parse(&unfit).unwrap_err());
        assert!(e.contains("purpose") && e.contains("is not: at most 5 characters"), "{e}");
        let unbounded = BUILTIN.replace("purpose = { max = 100 }", "purpose = { max = 5000 }");
        assert!(Catalog::parse(&unbounded).is_err());
    }

    #[test]
    fn a_step_fills_every_field_its_matter_requires_with_allowed_values() {
        let unfilled = BUILTIN.replace(", death_certificate_number = \"death_certificate_number\" }", " }");
        let e = format!("{:#}", Catalog::parse(&unfilled).unwrap_err());
        assert!(e.contains("does not fill death_certificate_number"), "{e}");
        let off_list = BUILTIN.replace("purpose = \"=retirement\"", "purpose = \"=holiday\"");
        let e = format!("{:#}", Catalog::parse(&off_list).unwrap_err());
        assert!(e.contains("not one of household.info_confirmation's values"), "{e}");
        let unknown = BUILTIN.replace("form.child_name = {}", "form.child_nickname = {}");
        let e = format!("{:#}", Catalog::parse(&unknown).unwrap_err());
        assert!(e.contains("takes child_nickname, which is not under fields"), "{e}");
    }
}
