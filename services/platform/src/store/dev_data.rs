//! Development data: synthetic, valid records (no real person or enterprise) that `make run`
//! and the tests work on. A migration never loads them, so a production database holds only
//! what was imported from the systems of record; `onething seed <service>` puts them into a
//! development database, and `onething seed <service> --remove` deletes exactly them from a
//! database that got them (by an earlier release's seed migration, or by mistake).

use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, IntoActiveModel, TransactionTrait,
    TryInsertResult,
};

/// A department's development data.
#[async_trait::async_trait]
pub trait DevData: Sync {
    /// Puts its rows in; a row whose key is already there stays as it is. Returns how many
    /// were added.
    ///
    /// # Errors
    /// A database failure.
    async fn put(&self, db: &sea_orm::DatabaseTransaction) -> Result<u64, DbErr>;

    /// Deletes exactly the rows [`DevData::put`] adds, by their keys, whatever became of
    /// them since; nothing else. Returns how many were deleted.
    ///
    /// # Errors
    /// A database failure.
    async fn remove(&self, db: &sea_orm::DatabaseTransaction) -> Result<u64, DbErr>;
}

/// Puts `data` into `db` (or, with `remove`, takes it out) in one transaction. Returns the
/// rows added (or deleted).
///
/// # Errors
/// A database failure; nothing is changed then.
pub async fn apply(db: &DatabaseConnection, data: &dyn DevData, remove: bool) -> anyhow::Result<u64> {
    let txn = db.begin().await?;
    let n = if remove { data.remove(&txn).await? } else { data.put(&txn).await? };
    txn.commit().await?;
    Ok(n)
}

/// Inserts `model` unless a row with its primary key is there; 1 when it was added.
///
/// # Errors
/// A database failure.
pub async fn insert_new<A>(db: &impl ConnectionTrait, model: A) -> Result<u64, DbErr>
where
    A: ActiveModelTrait + Send,
    <A::Entity as EntityTrait>::Model: IntoActiveModel<A>,
{
    Ok(match <A::Entity as EntityTrait>::insert(model).on_conflict_do_nothing().exec_without_returning(db).await? {
        TryInsertResult::Inserted(n) => n,
        _ => 0,
    })
}

/// A migration that once loaded development data and now does nothing: kept by name, so a
/// database that ran it still matches the migrator (remove its rows with `onething seed
/// <service> --remove`).
pub struct Retired(pub &'static str);

impl sea_orm_migration::MigrationName for Retired {
    fn name(&self) -> &str {
        self.0
    }
}

#[async_trait::async_trait]
impl sea_orm_migration::MigrationTrait for Retired {
    async fn up(&self, _m: &sea_orm_migration::SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }

    async fn down(&self, _m: &sea_orm_migration::SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}
