//! The case row of the shared lifecycle. Every department database has this table; its
//! department rules keep their own tables beside it.

use sea_orm::entity::prelude::*;

/// One case (办件). Structured columns are JSON text ([`super::json`]).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "cases")]
pub struct Model {
    /// Case id (UUID v7 text).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Catalog code of the matter.
    pub matter_code: String,
    /// Owning department.
    pub department: String,
    /// Lifecycle state.
    pub state: crate::lifecycle::State,
    /// Who applied.
    pub applicant_kind: ApplicantKind,
    /// Citizen ID number or credit code. Personal data.
    pub applicant_identifier: String,
    /// Applicant name. Personal data.
    pub applicant_name: String,
    /// Applicant phone. Personal data.
    pub applicant_phone: String,
    /// Form fields.
    pub form: super::json::Fields,
    /// Materials.
    pub materials: super::json::Materials,
    /// Missing or owed material codes.
    pub missing_materials: super::json::Texts,
    /// Reason code of the last refusal.
    pub reason_code: String,
    /// Reason text of the last decision.
    #[sea_orm(column_type = "Text")]
    pub reason_text: String,
    /// Result fields.
    pub result: super::json::Fields,
    /// How the committed time is counted.
    pub time_unit: crate::catalog::TimeUnit,
    /// Committed limit in that unit.
    pub time_limit: i32,
    /// Due time, counted from receipt.
    pub due_at: Option<DateTimeUtc>,
    /// Set while the clock is paused.
    pub paused_since: Option<DateTimeUtc>,
    /// Due time computed without holiday data.
    pub due_provisional: bool,
    /// Green-channel case, handled first.
    pub priority: bool,
    /// Client idempotency key.
    #[sea_orm(unique)]
    pub idempotency_key: String,
    /// Bundle id, or empty.
    pub bundle_id: String,
    /// Optimistic concurrency version.
    pub version: i64,
    /// Created.
    pub created_at: DateTimeUtc,
    /// Last changed.
    pub updated_at: DateTimeUtc,
    /// When it was accepted (受理); unset before.
    pub accepted_at: Option<DateTimeUtc>,
    /// From when it counts as close to its due time (预警).
    pub warn_at: Option<DateTimeUtc>,
    /// While a supplement is asked for: by when it must come.
    pub supplement_due_at: Option<DateTimeUtc>,
    /// When supervision issued a 督办 notice for it.
    pub notice_at: Option<DateTimeUtc>,
    /// Whether a clerk asked for a supplement after acceptance (一次性告知: once).
    #[sea_orm(default_value = false)]
    pub supplement_asked: bool,
    /// What was found about its e-licence materials (M24).
    #[sea_orm(default_value = "[]")]
    pub evidence: super::json::EvidenceList,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Whether a document, seal or licence a department keeps still stands, stored by name
/// (`active`, `cancelled`); an unknown stored name fails the read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)", rename_all = "snake_case")]
pub enum Standing {
    /// In force.
    Active,
    /// Cancelled (deregistration, death, replacement).
    Cancelled,
}

/// Who applied, stored by name (`citizen`, `enterprise`, `foreigner`); an unknown stored name
/// fails the read. Cases and bundles both keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)", rename_all = "snake_case")]
pub enum ApplicantKind {
    /// A citizen, by ID number.
    Citizen,
    /// An enterprise, by unified social credit code.
    Enterprise,
    /// A foreigner, by passport.
    Foreigner,
}

impl std::fmt::Display for ApplicantKind {
    /// The stored name.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_value())
    }
}

impl ApplicantKind {
    /// From the proto enum; UNSPECIFIED is a citizen (the form's default).
    pub fn from_proto(kind: onething_proto::common::ApplicantKind) -> Self {
        use onething_proto::common::ApplicantKind as P;
        match kind {
            P::Enterprise => ApplicantKind::Enterprise,
            P::Foreigner => ApplicantKind::Foreigner,
            P::Citizen | P::Unspecified => ApplicantKind::Citizen,
        }
    }

    /// The proto enum.
    pub fn to_proto(self) -> onething_proto::common::ApplicantKind {
        use onething_proto::common::ApplicantKind as P;
        match self {
            ApplicantKind::Citizen => P::Citizen,
            ApplicantKind::Enterprise => P::Enterprise,
            ApplicantKind::Foreigner => P::Foreigner,
        }
    }
}
