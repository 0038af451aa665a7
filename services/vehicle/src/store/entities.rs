//! The sea-orm entities of vehicle's tables.

/// An inspection station.
pub mod station {
    use sea_orm::entity::prelude::*;

    /// One station.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "stations")]
    pub struct Model {
        /// Station id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub station_id: String,
        /// Name.
        pub name: String,
        /// Opening, HH:MM.
        pub opens: String,
        /// Closing, HH:MM.
        pub closes: String,
        /// Slot length, minutes.
        pub slot_minutes: i32,
        /// Vehicles per slot.
        pub capacity_per_slot: i32,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Bookings held on one slot: never more than its capacity.
pub mod slot {
    use sea_orm::entity::prelude::*;

    /// One slot of one station on one day.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "slots")]
    pub struct Model {
        /// Station.
        #[sea_orm(primary_key, auto_increment = false)]
        pub station_id: String,
        /// Day, YYYY-MM-DD.
        #[sea_orm(primary_key, auto_increment = false)]
        pub date: String,
        /// Start, HH:MM.
        #[sea_orm(primary_key, auto_increment = false)]
        pub time: String,
        /// Places.
        pub capacity: i32,
        /// Places taken.
        pub booked: i32,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A registered vehicle.
pub mod vehicle {
    use sea_orm::entity::prelude::*;

    /// One vehicle.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "vehicles")]
    pub struct Model {
        /// Plate.
        #[sea_orm(primary_key, auto_increment = false)]
        pub plate: String,
        /// Who owns it.
        pub owner_kind: onething_platform::store::case::ApplicantKind,
        /// Owner's ID number or credit code.
        pub owner_identifier: String,
        /// Type.
        pub vehicle_type: String,
        /// Next inspection due, YYYY-MM-DD.
        pub inspection_due: String,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A driving licence.
pub mod licence {
    use sea_orm::entity::prelude::*;

    /// One licence.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "driving_licences")]
    pub struct Model {
        /// Licence number.
        #[sea_orm(primary_key, auto_increment = false)]
        pub licence_number: String,
        /// Holder's ID number.
        pub id_number: String,
        /// Class, e.g. C1.
        pub class: String,
        /// Whether it still stands.
        pub status: onething_platform::store::case::Standing,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A 交钥匙 proxy inspection.
pub mod proxy {
    use sea_orm::entity::prelude::*;

    /// One proxy inspection, keyed by its booking case.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "proxy_inspections")]
    pub struct Model {
        /// Booking case id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub case_id: String,
        /// ProxyState name, e.g. `PROXY_STATE_BOOKED`.
        pub state: String,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
