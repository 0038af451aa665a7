//! The sea-orm entities of exit-entry's tables.

/// A foreigner's residence permit.
pub mod permit {
    use sea_orm::entity::prelude::*;

    /// One permit. The passport number is personal data.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "foreigner_permits")]
    pub struct Model {
        /// Permit number.
        #[sea_orm(primary_key, auto_increment = false)]
        pub permit_number: String,
        /// Holder's passport number.
        pub passport_number: String,
        /// `work`.
        pub kind: String,
        /// First day, YYYY-MM-DD.
        pub valid_from: String,
        /// Last day, YYYY-MM-DD.
        pub valid_until: String,
        /// Case that granted it (empty for seeded history).
        pub case_id: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A violation on a foreigner's record.
pub mod violation {
    use sea_orm::entity::prelude::*;

    /// One violation.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "foreigner_violations")]
    pub struct Model {
        /// Row id.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// Passport number.
        pub passport_number: String,
        /// Date, YYYY-MM-DD.
        pub date: String,
        /// What happened.
        pub summary: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A citizen's travel document.
pub mod travel_document {
    use sea_orm::entity::prelude::*;

    /// One document.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "travel_documents")]
    pub struct Model {
        /// Document number.
        #[sea_orm(primary_key, auto_increment = false)]
        pub document_number: String,
        /// Holder's ID number.
        pub id_number: String,
        /// `passport`, `hk_macao_permit`, `taiwan_permit`.
        pub kind: String,
        /// Last day, YYYY-MM-DD.
        pub valid_until: String,
        /// Whether it still stands.
        pub status: onething_platform::store::case::Standing,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A citizen employed by an enterprise (M15 links the trip to the enterprise).
pub mod staff {
    use sea_orm::entity::prelude::*;

    /// One employment link.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "enterprise_staff")]
    pub struct Model {
        /// Enterprise credit code.
        #[sea_orm(primary_key, auto_increment = false)]
        pub credit_code: String,
        /// Employee ID number.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id_number: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A service commissioner (服务专员) for high-level talent (M13).
pub mod commissioner {
    use sea_orm::entity::prelude::*;

    /// One officer.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "service_commissioners")]
    pub struct Model {
        /// Officer id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub officer_id: String,
        /// Officer name (staff, not an applicant).
        pub name: String,
        /// Cases assigned so far (the least loaded is chosen).
        pub assigned: i32,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
