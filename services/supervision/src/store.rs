//! Supervision's tables: what it derives from the streams (tracked cases and bundles,
//! enterprise requests, ratings, the 办不成事 window, inspection history) and its primary
//! records (complaints). Everything but complaints can be rebuilt by replaying the streams.

use onething_platform::store::{Indexes, RescopeKeys};
use sea_orm_migration::prelude::Index;

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

/// What supervision follows against a due time: a case, a bundle, a complaint's next
/// step, a bad review's fix.
pub mod tracked {
    use sea_orm::entity::prelude::*;

    /// One item.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "tracked")]
    pub struct Model {
        /// `case`, `bundle`, `complaint` or `rating`.
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
        /// From when it is close to due (预警), as its owner computed it.
        pub warn_at: Option<DateTimeUtc>,
        /// The due time the last 督办 notice was for: a notice is owed once per deadline, so a
        /// deadline that moves (a pause, the next complaint step, a request handed up) is
        /// noticed again when it passes.
        pub noticed_due: Option<DateTimeUtc>,
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
        #[sea_orm(column_type = "Text")]
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
        #[sea_orm(column_type = "Text")]
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
        #[sea_orm(column_type = "Text")]
        summary: String,
        /// Step (proto name).
        step: String,
        /// Next step due.
        next_step_due: Option<DateTimeUtc>,
        /// Investigators' notes.
        notes: onething_platform::store::json::Texts,
        /// Received.
        created_at: DateTimeUtc,
        /// How to reach the complainant. Personal data.
        #[sea_orm(column_type = "Text", default_value = "")]
        contact: String,
    }
);

onething_platform::migrator!(
    /// Supervision's migrator.
    Migrator,
    [
        onething_platform::tables!("m20261129_600001_supervision_tables", [tracked, request, rating, unresolved, drawn, complaint]),
        RescopeKeys {
            name: "m20261202_600002_complaint_keys_by_caller",
            table: "complaints",
            // Who sent them was not kept: no caller's key finds them again.
            scope_sql: "'unknown'",
        },
        // One rating per case or bundle.
        Indexes {
            name: "m20261204_600003_one_rating_per_target",
            create: || {
                vec![Index::create().name("ratings_target").table("ratings").col("target_kind").col("target_id").unique().to_owned()]
            },
        },
        onething_platform::store::AddColumns {
            name: "m20261208_600004_tracked_warnings",
            table: "tracked",
            columns: |s| vec![s.get_column_def::<tracked::Entity>(tracked::Column::WarnAt)],
        },
        onething_platform::store::AddColumns {
            name: "m20261208_600005_complaint_contact",
            table: "complaints",
            columns: |s| vec![s.get_column_def::<complaint::Entity>(complaint::Column::Contact)],
        },
        // A notice per deadline: the due time last noticed; items noticed before it was kept
        // were noticed for the due time they have.
        onething_platform::store::AddColumns {
            name: "m20261208_600006_tracked_noticed_due",
            table: "tracked",
            columns: |s| vec![s.get_column_def::<tracked::Entity>(tracked::Column::NoticedDue)],
        },
        onething_platform::store::Sql {
            name: "m20261208_600007_tracked_noticed_due_backfill",
            statements: &["UPDATE tracked SET noticed_due = due_at WHERE notice_sent = TRUE AND noticed_due IS NULL"],
        },
    ]
);
