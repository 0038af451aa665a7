//! The sea-orm entities of liaison's tables.

/// An enterprise on record.
pub mod enterprise {
    use sea_orm::entity::prelude::*;

    /// One enterprise.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "enterprises")]
    pub struct Model {
        /// Credit code.
        #[sea_orm(primary_key, auto_increment = false)]
        pub credit_code: String,
        /// Name.
        pub name: String,
        /// Legal representative's name. Personal data.
        pub legal_representative: String,
        /// Address.
        pub address: String,
        /// Park.
        pub park: String,
        /// Liaison officer (项目警长 / 园区警长).
        pub liaison_officer: String,
        /// Qualified to buy or transport precursor chemicals.
        pub precursor_qualified: bool,
        /// Ownership as registered: `private` (民营), `state`, `foreign`, `collective`; empty
        /// when the register has not said.
        #[sea_orm(default_value = "")]
        pub ownership: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A filed company seal.
pub mod seal {
    use sea_orm::entity::prelude::*;

    /// One seal.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "seals")]
    pub struct Model {
        /// Enterprise.
        #[sea_orm(primary_key, auto_increment = false)]
        pub credit_code: String,
        /// Kind, e.g. `official`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub kind: String,
        /// Whether it still stands.
        pub status: onething_platform::store::case::Standing,
        /// Filing case.
        pub case_id: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// An enterprise request (企业诉求).
pub mod request {
    use sea_orm::entity::prelude::*;

    /// One request.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "enterprise_requests")]
    pub struct Model {
        /// Request id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// Client key.
        #[sea_orm(unique)]
        pub idempotency_key: String,
        /// Enterprise.
        pub credit_code: String,
        /// Channel (proto name).
        pub channel: String,
        /// Category.
        pub category: String,
        /// Tier (proto name).
        pub tier: String,
        /// Handling unit.
        pub unit: String,
        /// State (proto name).
        pub state: String,
        /// What is asked.
        #[sea_orm(column_type = "Text")]
        pub description: String,
        /// 办.
        #[sea_orm(column_type = "Text")]
        pub handling_note: String,
        /// 评, 0 until rated.
        pub rating: i32,
        /// 督.
        pub flagged: bool,
        /// Why flagged.
        pub flag_reason: String,
        /// 访.
        #[sea_orm(column_type = "Text")]
        pub visit_note: String,
        /// 责.
        #[sea_orm(column_type = "Text")]
        pub responsibility_note: String,
        /// Due for handling.
        pub due_at: DateTimeUtc,
        /// When handled.
        pub handled_at: Option<DateTimeUtc>,
        /// Received.
        pub created_at: DateTimeUtc,
        /// Optimistic version.
        pub version: i64,
        /// Handed up from the district to the city bureau (上下贯通).
        #[sea_orm(default_value = false)]
        pub escalated: bool,
        /// Why it was handed up.
        #[sea_orm(column_type = "Text", default_value = "")]
        pub escalation_note: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Who an enterprise on record employs, as it reported its staff (M8 员工背景审查): what
/// household's green channels for private-enterprise employees (M12) ask about.
pub mod employee {
    use sea_orm::entity::prelude::*;

    /// One employment.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "employees")]
    pub struct Model {
        /// The employer's credit code.
        #[sea_orm(primary_key, auto_increment = false)]
        pub credit_code: String,
        /// The employee's citizen ID number. Personal data.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id_number: String,
        /// Employed since (YYYY-MM-DD).
        pub since: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
