//! Supervision's tables: what it derives from the streams (tracked cases and bundles,
//! enterprise requests, ratings, the 办不成事 window, inspection history) and its primary
//! records (complaints). Everything but complaints can be rebuilt by replaying the streams.

use sea_orm_migration::{prelude::*, schema::*};

/// A sea-orm entity module with no relations: the shape every table here shares.
macro_rules! entity {
    ($(#[$doc:meta])* $module:ident, $table:literal, { $($(#[$fdoc:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        pub mod $module {
            use sea_orm::entity::prelude::*;

            /// One row.
            #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
            #[sea_orm(table_name = $table)]
            pub struct Model {
                $($(#[$fdoc])* pub $field: $ty,)*
            }

            /// No relations.
            #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
            pub enum Relation {}

            impl ActiveModelBehavior for ActiveModel {}
        }
    };
}

/// A case or bundle followed against its due time.
pub mod tracked {
    use sea_orm::entity::prelude::*;

    /// One item.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "tracked")]
    pub struct Model {
        /// `case` or `bundle`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub kind: String,
        /// Case or bundle id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// Department (`coordinator` for bundles).
        pub department: String,
        /// Matter or bundle code.
        pub code: String,
        /// Due time.
        pub due_at: Option<DateTimeUtc>,
        /// Clock paused.
        pub paused: bool,
        /// Finished.
        pub closed: bool,
        /// When it finished.
        pub closed_at: Option<DateTimeUtc>,
        /// Last state seen.
        pub last_state: String,
        /// Last version seen (older events are ignored).
        pub version: i64,
        /// A 督办 notice was issued.
        pub notice_sent: bool,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

entity!(
    /// An enterprise request as liaison reported it.
    request, "requests", {
        /// Request id.
        #[sea_orm(primary_key, auto_increment = false)]
        id: String,
        /// Handling unit.
        unit: String,
        /// Received.
        received_at: DateTimeUtc,
        /// Reached 办.
        handled: bool,
        /// Ended in a responsibility record.
        responsibility: bool,
    }
);

entity!(
    /// A 好差评 rating.
    rating, "ratings", {
        /// Rating id.
        #[sea_orm(primary_key, auto_increment = false)]
        id: String,
        /// `case` or `bundle`.
        target_kind: String,
        /// Case or bundle id.
        target_id: String,
        /// Department.
        department: String,
        /// 1–5.
        score: i32,
        /// Fix due (bad reviews).
        fix_due: Option<DateTimeUtc>,
        /// The fix.
        fix_note: String,
        /// When.
        created_at: DateTimeUtc,
    }
);

entity!(
    /// An item of the 办不成事 window.
    unresolved, "unresolved", {
        /// `<source>:<ref>`.
        #[sea_orm(primary_key, auto_increment = false)]
        id: String,
        /// `bundle_failed`, `case_overdue`, `enterprise_request`.
        source: String,
        /// Bundle, case or request id.
        ref_id: String,
        /// Department.
        department: String,
        /// `city` or `district`.
        tier: String,
        /// Response due.
        response_due: DateTimeUtc,
        /// Resolved.
        resolved: bool,
        /// Why it arrived.
        reason: String,
    }
);

entity!(
    /// An enterprise drawn for inspection (the annual cap's history).
    drawn, "drawn", {
        /// Draw id.
        #[sea_orm(primary_key, auto_increment = false)]
        draw_id: String,
        /// Credit code.
        #[sea_orm(primary_key, auto_increment = false)]
        credit_code: String,
        /// Year.
        year: i32,
    }
);

entity!(
    /// A complaint (投诉举报): a primary record, backed up like any database.
    complaint, "complaints", {
        /// Id.
        #[sea_orm(primary_key, auto_increment = false)]
        id: String,
        /// Client key.
        #[sea_orm(unique)]
        idempotency_key: String,
        /// Channel (proto name).
        channel: String,
        /// Department complained about.
        department: String,
        /// What happened. Personal data possible.
        summary: String,
        /// Step (proto name).
        step: String,
        /// Next step due.
        next_step_due: Option<DateTimeUtc>,
        /// Investigators' notes.
        notes: onething_platform::store::json::Texts,
        /// Received.
        created_at: DateTimeUtc,
    }
);

/// Supervision's migrator.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut m = onething_platform::store::migrations();
        m.push(Box::new(CreateTables));
        m.push(Box::new(onething_platform::store::RescopeKeys {
            name: "m20261202_600002_complaint_keys_by_caller",
            table: "complaints",
            // Who sent them was not kept: no caller's key finds them again.
            scope_sql: "'unknown'",
        }));
        m
    }
}

struct CreateTables;

impl MigrationName for CreateTables {
    fn name(&self) -> &str {
        "m20261129_600001_supervision_tables"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateTables {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let tables = [
            Table::create()
                .table("tracked")
                .if_not_exists()
                .col(string("kind"))
                .col(string("id"))
                .col(string("department"))
                .col(string("code"))
                .col(timestamp_with_time_zone_null("due_at"))
                .col(boolean("paused"))
                .col(boolean("closed"))
                .col(timestamp_with_time_zone_null("closed_at"))
                .col(string("last_state"))
                .col(big_integer("version"))
                .col(boolean("notice_sent"))
                .primary_key(Index::create().col("kind").col("id"))
                .to_owned(),
            Table::create()
                .table("requests")
                .if_not_exists()
                .col(string("id").primary_key())
                .col(string("unit"))
                .col(timestamp_with_time_zone("received_at"))
                .col(boolean("handled"))
                .col(boolean("responsibility"))
                .to_owned(),
            Table::create()
                .table("ratings")
                .if_not_exists()
                .col(string("id").primary_key())
                .col(string("target_kind"))
                .col(string("target_id"))
                .col(string("department"))
                .col(integer("score"))
                .col(timestamp_with_time_zone_null("fix_due"))
                .col(text("fix_note"))
                .col(timestamp_with_time_zone("created_at"))
                .index(Index::create().name("ratings_target").col("target_kind").col("target_id").unique())
                .to_owned(),
            Table::create()
                .table("unresolved")
                .if_not_exists()
                .col(string("id").primary_key())
                .col(string("source"))
                .col(string("ref_id"))
                .col(string("department"))
                .col(string("tier"))
                .col(timestamp_with_time_zone("response_due"))
                .col(boolean("resolved"))
                .col(text("reason"))
                .to_owned(),
            Table::create()
                .table("drawn")
                .if_not_exists()
                .col(string("draw_id"))
                .col(string("credit_code"))
                .col(integer("year"))
                .primary_key(Index::create().col("draw_id").col("credit_code"))
                .to_owned(),
            Table::create()
                .table("complaints")
                .if_not_exists()
                .col(string("id").primary_key())
                .col(string_uniq("idempotency_key"))
                .col(string("channel"))
                .col(string("department"))
                .col(text("summary"))
                .col(string("step"))
                .col(timestamp_with_time_zone_null("next_step_due"))
                .col(text("notes"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        ];
        for t in tables {
            m.create_table(t).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["complaints", "drawn", "unresolved", "ratings", "requests", "tracked"] {
            m.drop_table(Table::drop().table(t).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}
