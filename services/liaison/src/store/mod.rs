//! Liaison's tables — enterprises with their liaison officers (M8), filed seals, enterprise
//! requests — with synthetic seed data, and its migrator (platform tables first).

pub mod entities;

use entities::{enterprise, request, seal};
use onething_platform::ids::CreditCode;
use sea_orm_migration::{
    prelude::*,
    sea_orm::{ActiveValue::Set, EntityTrait},
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
