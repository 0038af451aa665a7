//! The case record in memory: conversions to the table row and to the API message, and the
//! validation of what every application carries (applicant, materials; the form is checked
//! against the catalog's fields).

use crate::{
    catalog::{Matter, TimeUnit},
    error::FieldViolation,
    ids::{CitizenId, CreditCode},
    lifecycle::State,
    store::case as row,
};
use chrono::{DateTime, Utc};
use onething_proto::common as pb;
use prost_types::Timestamp;
use sea_orm::ActiveValue::Set;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Form fields of an application.
pub type Form = BTreeMap<String, String>;

/// Longest document reference of a material, in characters.
pub const MAX_URI_CHARS: usize = 1024;
/// Most materials an application may carry.
pub const MAX_MATERIALS: usize = 64;

/// Who applies, validated.
#[derive(Clone, PartialEq, Eq)]
pub struct ApplicantRecord {
    /// Citizen or enterprise.
    pub kind: pb::ApplicantKind,
    /// ID number or credit code (validated for its kind).
    pub identifier: String,
    /// Name.
    pub name: String,
    /// Phone, may be empty.
    pub phone: String,
}

impl std::fmt::Debug for ApplicantRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applicant")
            .field("kind", &self.kind)
            .field("identifier", &crate::ids::mask_id(&self.identifier))
            .field("name", &crate::ids::mask_name(&self.name))
            .field("phone", &crate::ids::mask_phone(&self.phone))
            .finish()
    }
}

impl ApplicantRecord {
    /// Validates the applicant of a request; violations are named `applicant.<field>`.
    pub fn validate(a: Option<&pb::Applicant>, out: &mut Vec<FieldViolation>) -> Option<Self> {
        let Some(a) = a else {
            out.push(v("applicant", "required"));
            return None;
        };
        let before = out.len();
        let kind = pb::ApplicantKind::try_from(a.kind).unwrap_or(pb::ApplicantKind::Unspecified);
        let identifier = match kind {
            pb::ApplicantKind::Citizen => CitizenId::parse(&a.identifier)
                .map(|id| id.expose().to_string())
                .map_err(|e| out.push(v("applicant.identifier", &format!("not a citizen ID number: {e}"))))
                .ok(),
            pb::ApplicantKind::Enterprise => CreditCode::parse(&a.identifier)
                .map(|c| c.as_str().to_string())
                .map_err(|e| out.push(v("applicant.identifier", &format!("not a unified social credit code: {e}"))))
                .ok(),
            pb::ApplicantKind::Foreigner => crate::ids::Passport::parse(&a.identifier)
                .map(|p| p.expose().to_string())
                .map_err(|e| out.push(v("applicant.identifier", &format!("not a passport number: {e}"))))
                .ok(),
            pb::ApplicantKind::Unspecified => {
                out.push(v("applicant.kind", "must be CITIZEN, ENTERPRISE or FOREIGNER"));
                None
            }
        };
        let name = a.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            out.push(v("applicant.name", "required, at most 100 characters"));
        }
        let phone = a.phone.trim();
        if !phone.is_empty() && !valid_phone(phone) {
            out.push(v("applicant.phone", "7 to 15 digits, optionally with + and -"));
        }
        (out.len() == before).then(|| Self {
            kind,
            identifier: identifier.unwrap_or_default(),
            name: name.to_string(),
            phone: phone.to_string(),
        })
    }
}

fn valid_phone(p: &str) -> bool {
    let digits = p.chars().filter(char::is_ascii_digit).count();
    (7..=15).contains(&digits) && p.chars().all(|c| c.is_ascii_digit() || c == '-' || c == '+')
}

fn v(field: &str, description: &str) -> FieldViolation {
    FieldViolation { field: field.to_string(), description: description.to_string() }
}

/// One submitted material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaterialRecord {
    /// Catalog code.
    pub code: String,
    /// Where the document is.
    pub document_uri: String,
    /// The material as an e-licence (a signed JWS, [`crate::elicence`]); empty: a plain
    /// document.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub elicence: String,
}

impl MaterialRecord {
    /// Validates materials against `matter`: known codes, no duplicates, a document reference.
    pub fn validate(materials: &[pb::Material], matter: &Matter, out: &mut Vec<FieldViolation>) -> Vec<Self> {
        let unknown = format!("not a material of {}", matter.code);
        Self::validate_with(materials, |code| matter.knows_material(code), &unknown, out)
    }

    /// Validates materials: at most [`MAX_MATERIALS`], codes `known` takes (otherwise the
    /// violation says `unknown`), none twice, a document reference of 1 to
    /// [`MAX_URI_CHARS`] characters, and an e-licence, when given, that parses as one.
    pub fn validate_with(
        materials: &[pb::Material],
        known: impl Fn(&str) -> bool,
        unknown: &str,
        out: &mut Vec<FieldViolation>,
    ) -> Vec<Self> {
        if materials.len() > MAX_MATERIALS {
            out.push(v("materials", &format!("at most {MAX_MATERIALS} materials")));
            return Vec::new();
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut list = Vec::with_capacity(materials.len());
        for (i, m) in materials.iter().enumerate() {
            if !known(&m.code) {
                out.push(v(&format!("materials[{i}].code"), unknown));
            } else if !seen.insert(m.code.as_str()) {
                out.push(v(&format!("materials[{i}].code"), "given twice"));
            }
            let uri = m.document_uri.trim();
            // Characters, as the request schema counts them (services/platform/src/bounds.rs).
            if uri.is_empty() || uri.chars().count() > MAX_URI_CHARS {
                out.push(v(
                    &format!("materials[{i}].document_uri"),
                    &format!("required, at most {MAX_URI_CHARS} characters"),
                ));
            } else if !safe_document_uri(uri) {
                out.push(v(&format!("materials[{i}].document_uri"), DOCUMENT_URI_RULE));
            }
            // Any e-licence given must be one, whether or not the catalog weighs it: nothing
            // malformed is stored to be shown as evidence later.
            let elicence = m.elicence.trim();
            let malformed = match crate::elicence::parse(elicence) {
                _ if elicence.is_empty() => None,
                Err(crate::elicence::Malformed::TooLong) => {
                    Some(format!("at most {} bytes", crate::elicence::MAX_ELICENCE_BYTES))
                }
                Err(e) => Some(e.to_string()),
                Ok(_) => None,
            };
            if let Some(why) = malformed {
                out.push(v(&format!("materials[{i}].elicence"), &format!("{}: {why}", m.code)));
            }
            list.push(Self { code: m.code.clone(), document_uri: uri.to_string(), elicence: elicence.to_string() });
        }
        list
    }
}

/// The schemes a document reference may use: the e-licence system, the government cloud's
/// object store, and HTTPS. Anything a clerk's page could turn into an action (`javascript:`,
/// `data:`) or a read of the server (`file:`) is refused.
pub const DOCUMENT_URI_SCHEMES: [&str; 3] = ["elicence", "oss", "https"];

const DOCUMENT_URI_RULE: &str =
    "an elicence://, oss:// or https:// reference in printable ASCII (percent-encode the rest)";

/// Whether `uri` is `<scheme>://<something>` with a scheme of [`DOCUMENT_URI_SCHEMES`], in
/// printable ASCII only (non-ASCII is percent-encoded; no spaces, controls or invisible
/// direction marks that could make a link read as another).
pub fn safe_document_uri(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once("://") else { return false };
    DOCUMENT_URI_SCHEMES.contains(&scheme) && !rest.is_empty() && uri.chars().all(|c| c.is_ascii_graphic())
}

/// A case in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseRecord {
    /// Case id.
    pub id: String,
    /// Matter code.
    pub matter_code: String,
    /// Department.
    pub department: String,
    /// Lifecycle state.
    pub state: State,
    /// Applicant.
    pub applicant: ApplicantRecord,
    /// Form fields.
    pub form: Form,
    /// Materials.
    pub materials: Vec<MaterialRecord>,
    /// Missing (not accepted), requested (supplement) or owed (容缺) material codes.
    pub missing_materials: Vec<String>,
    /// Reason code of the last refusal.
    pub reason_code: String,
    /// Reason text of the last decision.
    pub reason_text: String,
    /// Result fields.
    pub result: BTreeMap<String, String>,
    /// Time unit.
    pub time_unit: TimeUnit,
    /// Time limit.
    pub time_limit: u32,
    /// Due time.
    pub due_at: Option<DateTime<Utc>>,
    /// Clock paused since.
    pub paused_since: Option<DateTime<Utc>>,
    /// Due time provisional.
    pub due_provisional: bool,
    /// Green channel.
    pub priority: bool,
    /// Idempotency key.
    pub idempotency_key: String,
    /// Bundle id.
    pub bundle_id: String,
    /// Version.
    pub version: i64,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Updated.
    pub updated_at: DateTime<Utc>,
    /// Accepted (受理); `None` before.
    pub accepted_at: Option<DateTime<Utc>>,
    /// From when the case counts as close to its due time (预警).
    pub warn_at: Option<DateTime<Utc>>,
    /// While a supplement is asked for: by when it must come.
    pub supplement_due_at: Option<DateTime<Utc>>,
    /// When supervision issued a 督办 notice for it.
    pub notice_at: Option<DateTime<Utc>>,
    /// Whether a clerk asked for a supplement after acceptance (一次性告知: once).
    pub supplement_asked: bool,
    /// What was found about its e-licence materials (M24); a case with unverified evidence
    /// is decided by a clerk.
    pub evidence: Vec<crate::elicence::Evidence>,
}

impl CaseRecord {
    /// A new case of `matter` received at `now` from `applicant`: submitted, its
    /// committed time the catalog's, nothing decided yet, no key and no bundle.
    pub fn received(
        matter: &Matter,
        applicant: ApplicantRecord,
        form: Form,
        materials: Vec<MaterialRecord>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            matter_code: matter.code.clone(),
            department: matter.department.clone(),
            state: State::Submitted,
            applicant,
            form,
            materials,
            missing_materials: Vec::new(),
            reason_code: String::new(),
            reason_text: String::new(),
            result: BTreeMap::new(),
            time_unit: matter.time_unit,
            time_limit: matter.time_limit,
            due_at: None,
            paused_since: None,
            due_provisional: false,
            priority: matter.priority,
            idempotency_key: String::new(),
            bundle_id: String::new(),
            version: 1,
            created_at: now,
            updated_at: now,
            accepted_at: None,
            warn_at: None,
            supplement_due_at: None,
            notice_at: None,
            supplement_asked: false,
            evidence: Vec::new(),
        }
    }

    /// A form field, or "" when absent.
    pub fn field(&self, name: &str) -> &str {
        self.form.get(name).map_or("", String::as_str)
    }

    /// Whether a material with `code` was given.
    pub fn has_material(&self, code: &str) -> bool {
        self.materials.iter().any(|m| m.code == code)
    }

    /// A document number issued by this case: `prefix`, the date it was received (in
    /// China), the tail of the case id (unique per case, so a retried approval issues the
    /// same number whenever it runs).
    pub fn document_number(&self, prefix: &str) -> String {
        let tail: String = self.id.chars().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect();
        let day = crate::calendar::date_in_china(self.created_at);
        format!("{prefix}{}{}", day.format("%Y%m%d"), tail.to_ascii_uppercase())
    }

    /// Reads a row (its typed columns were checked as it was read: a stored value that
    /// does not parse fails the query, never reaches here).
    pub fn from_model(m: row::Model) -> Self {
        Self {
            state: m.state,
            time_unit: m.time_unit,
            form: m.form.0,
            materials: m.materials.0,
            missing_materials: m.missing_materials.0,
            result: m.result.0,
            applicant: ApplicantRecord {
                kind: m.applicant_kind.to_proto(),
                identifier: m.applicant_identifier,
                name: m.applicant_name,
                phone: m.applicant_phone,
            },
            time_limit: u32::try_from(m.time_limit).unwrap_or_default(),
            id: m.id,
            matter_code: m.matter_code,
            department: m.department,
            reason_code: m.reason_code,
            reason_text: m.reason_text,
            due_at: m.due_at,
            paused_since: m.paused_since,
            due_provisional: m.due_provisional,
            priority: m.priority,
            idempotency_key: m.idempotency_key,
            bundle_id: m.bundle_id,
            version: m.version,
            created_at: m.created_at,
            updated_at: m.updated_at,
            accepted_at: m.accepted_at,
            warn_at: m.warn_at,
            supplement_due_at: m.supplement_due_at,
            notice_at: m.notice_at,
            supplement_asked: m.supplement_asked,
            evidence: m.evidence.0,
        }
    }

    /// The row with every column set.
    pub fn to_active(&self) -> row::ActiveModel {
        row::ActiveModel {
            id: Set(self.id.clone()),
            matter_code: Set(self.matter_code.clone()),
            department: Set(self.department.clone()),
            state: Set(self.state),
            applicant_kind: Set(row::ApplicantKind::from_proto(self.applicant.kind)),
            applicant_identifier: Set(self.applicant.identifier.clone()),
            applicant_name: Set(self.applicant.name.clone()),
            applicant_phone: Set(self.applicant.phone.clone()),
            form: Set(self.form.clone().into()),
            materials: Set(self.materials.clone().into()),
            missing_materials: Set(self.missing_materials.clone().into()),
            reason_code: Set(self.reason_code.clone()),
            reason_text: Set(self.reason_text.clone()),
            result: Set(self.result.clone().into()),
            time_unit: Set(self.time_unit),
            time_limit: Set(i32::try_from(self.time_limit).unwrap_or(i32::MAX)),
            due_at: Set(self.due_at),
            paused_since: Set(self.paused_since),
            due_provisional: Set(self.due_provisional),
            priority: Set(self.priority),
            idempotency_key: Set(self.idempotency_key.clone()),
            bundle_id: Set(self.bundle_id.clone()),
            version: Set(self.version),
            created_at: Set(self.created_at),
            updated_at: Set(self.updated_at),
            accepted_at: Set(self.accepted_at),
            warn_at: Set(self.warn_at),
            supplement_due_at: Set(self.supplement_due_at),
            notice_at: Set(self.notice_at),
            supplement_asked: Set(self.supplement_asked),
            evidence: Set(self.evidence.clone().into()),
        }
    }

    /// The API message.
    pub fn to_proto(&self) -> pb::Case {
        pb::Case {
            name: format!("cases/{}", self.id),
            case_id: self.id.clone(),
            matter_code: self.matter_code.clone(),
            department: self.department.clone(),
            state: self.state.to_proto() as i32,
            applicant: Some(pb::Applicant {
                kind: self.applicant.kind as i32,
                identifier: self.applicant.identifier.clone(),
                name: self.applicant.name.clone(),
                phone: self.applicant.phone.clone(),
            }),
            form: self.form.clone().into_iter().collect(),
            materials: self
                .materials
                .iter()
                .map(|m| pb::Material {
                    code: m.code.clone(),
                    document_uri: m.document_uri.clone(),
                    elicence: m.elicence.clone(),
                })
                .collect(),
            missing_materials: self.missing_materials.clone(),
            reason_code: self.reason_code.clone(),
            reason_text: self.reason_text.clone(),
            time_rule: Some(pb::TimeRule {
                unit: self.time_unit.to_proto() as i32,
                limit: self.time_limit,
                due_time: self.due_at.map(timestamp),
                paused_since: self.paused_since.map(timestamp),
                provisional: self.due_provisional,
                warn_time: self.warn_at.map(timestamp),
                supplement_due_time: self.supplement_due_at.map(timestamp),
            }),
            result: self.result.clone().into_iter().collect(),
            idempotency_key: crate::idempotency::client_key(&self.idempotency_key).to_string(),
            version: self.version,
            create_time: Some(timestamp(self.created_at)),
            update_time: Some(timestamp(self.updated_at)),
            bundle_id: self.bundle_id.clone(),
            notice_time: self.notice_at.map(timestamp),
            evidence: crate::cases::evidence_of(self),
        }
    }
}

/// `case` as a reader who may not see personal data sees it (supervision without the
/// personal-data role): the applicant masked, the form's values, the materials' documents
/// and the clerk's reason text withheld, results masked; the matter, states, reason codes
/// and times stay.
pub fn masked(mut case: pb::Case) -> pb::Case {
    if let Some(a) = case.applicant.as_mut() {
        a.identifier = crate::ids::mask_id(&a.identifier);
        a.name = crate::ids::mask_name(&a.name);
        a.phone = crate::ids::mask_phone(&a.phone);
    }
    for v in case.form.values_mut().chain(case.result.values_mut()) {
        *v = "***".into();
    }
    for m in &mut case.materials {
        m.document_uri.clear();
        // An e-licence names its subject and holder: personal data as the document is.
        m.elicence.clear();
    }
    // A clerk's free text may name anyone, and a client's key is free text too; the reason
    // code stays.
    case.reason_text.clear();
    case.idempotency_key.clear();
    case
}

/// A protobuf timestamp.
pub fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp { seconds: t.timestamp(), nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0) }
}
