//! Storing imported records idempotently: each is looked up by its key; a new one is added,
//! one that differs updates the record, one equal to it is left alone (a file imported again
//! writes nothing).

use super::Applied;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter};
use std::collections::HashMap;

/// Rows looked up and written per statement (well under SQLite's bound on parameters).
const CHUNK: usize = 400;

/// How one entity's records are keyed and merged.
pub struct Keyed<E: EntityTrait> {
    /// The column records are looked up by (the primary key, or its first column).
    pub column: E::Column,
    /// A record's value of that column.
    pub of: fn(&E::Model) -> String,
    /// A record's key (the whole primary key).
    pub key: fn(&E::Model) -> String,
    /// Carries into an imported record what the registry owns in the one it replaces (its
    /// creation time, the case that made it), before they are compared.
    pub keep: fn(&E::Model, &mut E::Model),
}

/// Adds, updates or leaves each of `records` (keys unique among them).
///
/// # Errors
/// A database failure.
pub async fn upsert<E>(db: &impl ConnectionTrait, how: &Keyed<E>, records: Vec<E::Model>) -> Result<Applied, DbErr>
where
    E: EntityTrait,
    E::Model: Clone + PartialEq + IntoActiveModel<E::ActiveModel> + Send + Sync,
    E::ActiveModel: ActiveModelTrait<Entity = E> + Send,
{
    let mut applied = Applied::default();
    let mut records = records.into_iter().peekable();
    while records.peek().is_some() {
        let chunk: Vec<E::Model> = records.by_ref().take(CHUNK).collect();
        let keys: Vec<String> = chunk.iter().map(how.of).collect();
        let existing: HashMap<String, E::Model> =
            E::find().filter(how.column.is_in(keys)).all(db).await?.into_iter().map(|m| ((how.key)(&m), m)).collect();
        let mut new = Vec::new();
        for mut record in chunk {
            match existing.get(&(how.key)(&record)) {
                None => new.push(record.into_active_model().reset_all()),
                Some(old) => {
                    (how.keep)(old, &mut record);
                    if *old == record {
                        applied.unchanged += 1;
                    } else {
                        E::update(record.into_active_model().reset_all()).exec(db).await?;
                        applied.updated += 1;
                    }
                }
            }
        }
        applied.added += new.len() as u64;
        if !new.is_empty() {
            E::insert_many(new).exec_without_returning(db).await?;
        }
    }
    Ok(applied)
}
