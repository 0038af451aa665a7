//! Liaison's tables — enterprises with their liaison officers (M8), filed seals, enterprise
//! requests — with synthetic seed data, and its migrator (platform tables first).

pub mod entities;

use entities::{employee, enterprise, request, seal};
use onething_platform::ids::CreditCode;
use sea_orm_migration::{
    prelude::*,
    sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter},
};

onething_platform::migrator!(
    /// Liaison's migrator.
    Migrator,
    [
        onething_platform::tables!("m20261129_400001_liaison_tables", [enterprise, seal, request]),
        Seed,
        onething_platform::store::RescopeKeys {
            name: "m20261202_400003_request_keys_by_caller",
            table: "enterprise_requests",
            // The enterprise most likely sent it (a clerk's entries cannot be told apart).
            scope_sql: "('enterprise:' || credit_code)",
        },
        onething_platform::store::AddColumns {
            name: "m20261208_400004_request_escalation",
            table: "enterprise_requests",
            columns: |s| {
                [request::Column::Escalated, request::Column::EscalationNote]
                    .into_iter()
                    .map(|c| s.get_column_def::<request::Entity>(c))
                    .collect()
            },
        },
        onething_platform::store::AddColumns {
            name: "m20261208_400005_enterprise_ownership",
            table: "enterprises",
            columns: |s| vec![s.get_column_def::<enterprise::Entity>(enterprise::Column::Ownership)],
        },
        onething_platform::tables!("m20261208_400006_employees", [employee]),
        StaffSeed,
    ]
);

/// The seeded logistics enterprise (also the fleet owner and trip employer in other seeds).
pub fn seed_logistics() -> CreditCode {
    CreditCode::complete("91371000MA3D00001").expect("valid seed credit code")
}

/// The seeded chemical enterprise, qualified for precursor chemicals.
pub fn seed_chemicals() -> CreditCode {
    CreditCode::complete("91371002MA3C00005").expect("valid seed credit code")
}

/// A seeded employee of the logistics enterprise who lives in Weihai without being
/// registered here (the residence permit's green channel).
pub const SEED_NON_LOCAL_EMPLOYEE: &str = "11010519491231002X";

struct Seed;

impl MigrationName for Seed {
    fn name(&self) -> &str {
        "m20261129_400002_liaison_seed"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Seed {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        let rows = [
            (
                seed_logistics(),
                "威海示例物流有限公司",
                "周强",
                "山东省威海市环翠区示例路100号",
                "威海临港经济技术开发区",
                "园区警长 张警官",
                false,
            ),
            (
                seed_chemicals(),
                "威海示例化工有限公司",
                "陈静",
                "山东省威海市环翠区化工园1号",
                "威海化工产业园",
                "项目警长 李警官",
                true,
            ),
        ];
        for (code, name, rep, address, park, officer, qualified) in rows {
            enterprise::Entity::insert(enterprise::ActiveModel {
                credit_code: Set(code.as_str().into()),
                name: Set(name.into()),
                legal_representative: Set(rep.into()),
                address: Set(address.into()),
                park: Set(park.into()),
                liaison_officer: Set(officer.into()),
                precursor_qualified: Set(qualified),
                ownership: sea_orm::ActiveValue::NotSet,
            })
            .exec_without_returning(db)
            .await?;
            for kind in ["official", "finance"] {
                seal::Entity::insert(seal::ActiveModel {
                    credit_code: Set(code.as_str().into()),
                    kind: Set(kind.into()),
                    status: Set(onething_platform::store::case::Standing::Active),
                    case_id: Set(String::new()),
                })
                .exec_without_returning(db)
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, _m: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}

/// Ownership of the seeded enterprises (the logistics one private, the chemical one state
/// owned) and the logistics enterprise's staff: a local employee (the seeded parent of
/// household) and a non-local one.
struct StaffSeed;

impl MigrationName for StaffSeed {
    fn name(&self) -> &str {
        "m20261208_400007_liaison_staff_seed"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for StaffSeed {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        for (code, ownership) in [(seed_logistics(), "private"), (seed_chemicals(), "state")] {
            enterprise::Entity::update_many()
                .col_expr(enterprise::Column::Ownership, sea_orm::sea_query::Expr::value(ownership))
                .filter(enterprise::Column::CreditCode.eq(code.as_str()))
                .exec(db)
                .await?;
        }
        let parent = onething_platform::ids::CitizenId::assign(
            "371002",
            chrono::NaiveDate::from_ymd_opt(1990, 3, 15).expect("seed date"),
            11,
        )
        .expect("seed ID");
        for id in [parent.expose(), SEED_NON_LOCAL_EMPLOYEE] {
            employee::Entity::insert(employee::ActiveModel {
                credit_code: Set(seed_logistics().as_str().into()),
                id_number: Set(id.into()),
                since: Set("2023-03-01".into()),
            })
            .on_conflict_do_nothing()
            .exec_without_returning(db)
            .await?;
        }
        Ok(())
    }

    async fn down(&self, _m: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}
