//! The kinds of migration every store uses, listed as data: a service's migrator is
//! [`crate::migrator!`] over a list of these (and its own seed migrations), not a struct and
//! two trait impls per step.
//!
//! The entity is each table's one schema source. [`Tables`] creates tables from their
//! entities, so a fresh database gets the current shape at once; a column added later to an
//! entity is named in an [`AddColumns`], which adds it (as the entity declares it) only where
//! it is missing: in a database made before the column existed. Indexes over several columns, and partial ones,
//! are [`Indexes`] and [`Sql`].

use sea_orm_migration::{
    prelude::*,
    sea_orm::{ConnectionTrait, Schema},
};

/// Creates tables from their entities when missing.
pub struct Tables {
    /// Migration name, e.g. `m20261129_500001_coordinator_tables`.
    pub name: &'static str,
    /// The tables, e.g. `|s| vec![s.create_table_from_entity(bundle::Entity)]`.
    pub create: fn(&Schema) -> Vec<TableCreateStatement>,
}

/// Adds columns an entity gained to its table where they are missing.
pub struct AddColumns {
    /// Migration name.
    pub name: &'static str,
    /// Table.
    pub table: &'static str,
    /// The columns, from the entity, e.g.
    /// `|s| vec![s.get_column_def::<bundle::Entity>(bundle::Column::Traceparent)]`.
    pub columns: fn(&Schema) -> Vec<ColumnDef>,
}

/// Creates indexes when missing.
pub struct Indexes {
    /// Migration name.
    pub name: &'static str,
    /// The indexes.
    pub create: fn() -> Vec<IndexCreateStatement>,
}

/// Runs SQL statements that read the same on SQLite and PostgreSQL (a partial index, a
/// dropped index).
pub struct Sql {
    /// Migration name.
    pub name: &'static str,
    /// The statements, in order; each must be safe to run twice.
    pub statements: &'static [&'static str],
}

macro_rules! named {
    ($($t:ty),*) => {$(
        impl MigrationName for $t {
            fn name(&self) -> &str {
                self.name
            }
        }
    )*};
}
named!(Tables, AddColumns, Indexes, Sql);

#[async_trait::async_trait]
impl MigrationTrait for Tables {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let schema = Schema::new(m.get_database_backend());
        for mut table in (self.create)(&schema) {
            m.create_table(table.if_not_exists().to_owned()).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddColumns {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let schema = Schema::new(m.get_database_backend());
        for mut column in (self.columns)(&schema) {
            if !m.has_column(self.table, column.get_column_name()).await? {
                m.alter_table(Table::alter().table(self.table).add_column(&mut column).to_owned()).await?;
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Indexes {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for mut index in (self.create)() {
            m.create_index(index.if_not_exists().to_owned()).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Sql {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for sql in self.statements {
            m.get_connection().execute_unprepared(sql).await?;
        }
        Ok(())
    }
}

/// A [`Tables`] migration creating the tables of the entity modules listed, in order:
/// `tables!("m20261129_400001_liaison_tables", [enterprise, seal, request])`.
#[macro_export]
macro_rules! tables {
    ($name:literal, [$($module:path),* $(,)?]) => {
        $crate::store::Tables {
            name: $name,
            create: |schema| vec![$({
                use $module as table;
                schema.create_table_from_entity(table::Entity)
            }),*],
        }
    };
}

/// Declares a service's migrator: the platform's migrations ([`crate::store::migrations`])
/// first, then the service's own, in order.
///
/// ```ignore
/// onething_platform::migrator!(Migrator, [Tables { name: "m…", create: |s| vec![…] }, Seed]);
/// ```
#[macro_export]
macro_rules! migrator {
    ($(#[$meta:meta])* $name:ident, [$($migration:expr),* $(,)?]) => {
        $(#[$meta])*
        pub struct $name;

        #[sea_orm_migration::async_trait::async_trait]
        impl sea_orm_migration::MigratorTrait for $name {
            fn migrations() -> Vec<Box<dyn sea_orm_migration::MigrationTrait>> {
                let mut all = $crate::store::migrations();
                $(all.push(Box::new($migration));)*
                all
            }
        }
    };
}
