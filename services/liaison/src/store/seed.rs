//! Liaison's development data ([`DevData`]): two synthetic enterprises with their seals,
//! ownership and staff (no real enterprise or person), put in by `onething seed liaison` and
//! `onething dev`, never by a migration.

use super::entities::{employee, enterprise, seal};
use onething_platform::{
    ids::CreditCode,
    store::dev_data::{DevData, insert_new},
};
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, QueryFilter};

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

/// A seeded enterprise.
struct SeedEnterprise {
    code: CreditCode,
    name: &'static str,
    legal_representative: &'static str,
    address: &'static str,
    park: &'static str,
    liaison_officer: &'static str,
    precursor_qualified: bool,
    ownership: &'static str,
}

/// The seeded enterprises: a private logistics one and a state-owned chemical one.
fn enterprises() -> [SeedEnterprise; 2] {
    [
        SeedEnterprise {
            code: seed_logistics(),
            name: "威海示例物流有限公司",
            legal_representative: "周强",
            address: "山东省威海市环翠区示例路100号",
            park: "威海临港经济技术开发区",
            liaison_officer: "园区警长 张警官",
            precursor_qualified: false,
            ownership: "private",
        },
        SeedEnterprise {
            code: seed_chemicals(),
            name: "威海示例化工有限公司",
            legal_representative: "陈静",
            address: "山东省威海市环翠区化工园1号",
            park: "威海化工产业园",
            liaison_officer: "项目警长 李警官",
            precursor_qualified: true,
            ownership: "state",
        },
    ]
}

/// The seeded staff of the logistics enterprise: a local employee (household's seeded
/// parent) and a non-local one.
fn staff() -> [String; 2] {
    let parent = onething_platform::ids::CitizenId::assign(
        "371002",
        chrono::NaiveDate::from_ymd_opt(1990, 3, 15).unwrap_or_default(),
        11,
    )
    .map(|id| id.expose().to_string())
    .unwrap_or_default();
    [parent, SEED_NON_LOCAL_EMPLOYEE.to_string()]
}

/// The kinds of seal each seeded enterprise has filed.
const SEALS: [&str; 2] = ["official", "finance"];

/// Liaison's development data.
pub struct DevRecords;

#[onething_platform::async_trait]
impl DevData for DevRecords {
    async fn put(&self, db: &DatabaseTransaction) -> Result<u64, DbErr> {
        let mut added = 0;
        for e in enterprises() {
            let row = enterprise::ActiveModel {
                credit_code: Set(e.code.as_str().into()),
                name: Set(e.name.into()),
                legal_representative: Set(e.legal_representative.into()),
                address: Set(e.address.into()),
                park: Set(e.park.into()),
                liaison_officer: Set(e.liaison_officer.into()),
                precursor_qualified: Set(e.precursor_qualified),
                ownership: Set(e.ownership.into()),
            };
            added += insert_new(db, row).await?;
            for kind in SEALS {
                let row = seal::ActiveModel {
                    credit_code: Set(e.code.as_str().into()),
                    kind: Set(kind.into()),
                    status: Set(onething_platform::store::case::Standing::Active),
                    case_id: Set(String::new()),
                };
                added += insert_new(db, row).await?;
            }
        }
        for id in staff() {
            let row = employee::ActiveModel {
                credit_code: Set(seed_logistics().as_str().into()),
                id_number: Set(id),
                since: Set("2023-03-01".into()),
            };
            added += insert_new(db, row).await?;
        }
        Ok(added)
    }

    async fn remove(&self, db: &DatabaseTransaction) -> Result<u64, DbErr> {
        let codes: Vec<String> = enterprises().iter().map(|e| e.code.as_str().to_string()).collect();
        let mut deleted = employee::Entity::delete_many()
            .filter(employee::Column::CreditCode.eq(seed_logistics().as_str()))
            .filter(employee::Column::IdNumber.is_in(staff()))
            .exec(db)
            .await?
            .rows_affected;
        deleted += seal::Entity::delete_many()
            .filter(seal::Column::CreditCode.is_in(codes.clone()))
            .filter(seal::Column::Kind.is_in(SEALS))
            .exec(db)
            .await?
            .rows_affected;
        deleted += enterprise::Entity::delete_many()
            .filter(enterprise::Column::CreditCode.is_in(codes))
            .exec(db)
            .await?
            .rows_affected;
        Ok(deleted)
    }
}
