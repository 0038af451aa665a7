//! The outbox quarantine (`outbox_dead`): the relay moves a row here when the broker can
//! never take it or it failed `outbox.max_attempts` times, and holds its aggregate's later
//! rows back meanwhile, so its events keep their order; the other aggregates flow.
//! Operators list, retry or drop what is here (`onething outbox list|retry|drop`). Each move
//! is one transaction, so a row is always in exactly one of the two tables.

use crate::store::{outbox as row, outbox::dead};
use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};

/// Why a reason is cut: it is shown in a table and a log line.
const REASON_CHARS: usize = 2000;

/// Moves outbox row `r`, while still unsent, into the quarantine with `attempts` and
/// `reason` (sizes and broker errors; numbers masked). Returns whether it moved (not when
/// another replica published it meanwhile).
///
/// # Errors
/// The database failed; the row stays in the outbox.
pub async fn quarantine(db: &DatabaseConnection, r: &row::Model, attempts: i32, reason: &str) -> Result<bool, DbErr> {
    let txn = db.begin().await?;
    let taken = row::Entity::delete_many()
        .filter(row::Column::Seq.eq(r.seq))
        .filter(row::Column::SentAt.is_null())
        .exec(&txn)
        .await?
        .rows_affected;
    if taken == 0 {
        return Ok(false);
    }
    dead::Entity::insert(dead::ActiveModel {
        seq: Set(r.seq),
        event_id: Set(r.event_id.clone()),
        subject: Set(r.subject.clone()),
        ce_type: Set(r.ce_type.clone()),
        ce_source: Set(r.ce_source.clone()),
        ce_subject: Set(r.ce_subject.clone()),
        ce_time: Set(r.ce_time),
        traceparent: Set(r.traceparent.clone()),
        payload: Set(r.payload.clone()),
        created_at: Set(r.created_at),
        attempts: Set(attempts),
        reason: Set(crate::ids::scrub(reason).chars().take(REASON_CHARS).collect()),
        dead_at: Set(Utc::now()),
    })
    .on_conflict_do_nothing_on([dead::Column::Seq])
    .exec_without_returning(&txn)
    .await?;
    txn.commit().await?;
    Ok(true)
}

/// The aggregates (`ce-subject`) with a quarantined row, as a subquery.
pub fn aggregates() -> sea_orm::sea_query::SelectStatement {
    sea_orm::sea_query::Query::select().column(dead::Column::CeSubject).from(dead::Entity).to_owned()
}

/// Which of `aggregates` have a quarantined row.
///
/// # Errors
/// The database failed.
pub async fn held<'a>(
    db: &DatabaseConnection,
    aggregates: impl Iterator<Item = &'a str>,
) -> Result<std::collections::HashSet<String>, DbErr> {
    let wanted: std::collections::BTreeSet<&str> = aggregates.collect();
    let rows: Vec<String> = dead::Entity::find()
        .select_only()
        .column(dead::Column::CeSubject)
        .filter(dead::Column::CeSubject.is_in(wanted))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().collect())
}

/// One quarantined row as an operator sees it: no payload (it may hold personal data).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Quarantined {
    /// Outbox sequence number: what `retry` and `drop` take.
    pub seq: i64,
    /// CloudEvents id.
    pub event_id: String,
    /// CloudEvents `type`.
    pub ce_type: String,
    /// The aggregate (`ce-subject`, e.g. `complaints/…`; numbers masked).
    pub ce_subject: String,
    /// Payload size in bytes.
    pub payload_bytes: usize,
    /// Failed attempts.
    pub attempts: i32,
    /// Why it was quarantined.
    pub reason: String,
    /// When (RFC 3339).
    pub dead_at: String,
}

/// The quarantined rows, oldest first, at most `limit`.
///
/// # Errors
/// The database failed.
pub async fn list(db: &DatabaseConnection, limit: u64) -> Result<Vec<Quarantined>, DbErr> {
    let rows = dead::Entity::find().order_by_asc(dead::Column::Seq).limit(limit).all(db).await?;
    Ok(rows
        .into_iter()
        .map(|d| Quarantined {
            seq: d.seq,
            event_id: d.event_id,
            ce_type: d.ce_type,
            ce_subject: crate::ids::scrub(&d.ce_subject),
            payload_bytes: d.payload.len(),
            attempts: d.attempts,
            reason: d.reason,
            dead_at: d.dead_at.to_rfc3339(),
        })
        .collect())
}

/// How many rows are quarantined.
///
/// # Errors
/// The database failed.
pub async fn count(db: &DatabaseConnection) -> Result<u64, DbErr> {
    dead::Entity::find().count(db).await
}

/// Puts quarantined row `seq` back into the outbox under its own sequence number and event
/// id (so it is published before the rows of its aggregate held behind it, and a
/// subscriber that saw it once drops the repeat), with its attempts reset. Returns whether
/// there was such a row.
///
/// # Errors
/// The database failed; nothing moved.
pub async fn retry(db: &DatabaseConnection, seq: i64) -> Result<bool, DbErr> {
    let txn = db.begin().await?;
    let Some(d) = dead::Entity::find_by_id(seq).one(&txn).await? else {
        return Ok(false);
    };
    row::Entity::insert(row::ActiveModel {
        seq: Set(d.seq),
        event_id: Set(d.event_id),
        subject: Set(d.subject),
        ce_type: Set(d.ce_type),
        ce_source: Set(d.ce_source),
        ce_subject: Set(d.ce_subject),
        ce_time: Set(d.ce_time),
        traceparent: Set(d.traceparent),
        payload: Set(d.payload),
        created_at: Set(d.created_at),
        sent_at: Set(None),
        attempts: Set(0),
        stream_seq: Set(None),
    })
    .exec_without_returning(&txn)
    .await?;
    dead::Entity::delete_by_id(seq).exec(&txn).await?;
    txn.commit().await?;
    Ok(true)
}

/// Deletes quarantined row `seq` for good: its event is never published, and its
/// aggregate's later events flow again. Returns whether there was such a row.
///
/// # Errors
/// The database failed.
pub async fn drop(db: &DatabaseConnection, seq: i64) -> Result<bool, DbErr> {
    Ok(dead::Entity::delete_by_id(seq).exec(db).await?.rows_affected > 0)
}
