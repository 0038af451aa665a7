//! Exactly-once handling: an event's effect and its id in the consumer's inbox in one
//! database transaction, so a redelivered event finds its id and does nothing; one event
//! at a time ([`handle_one`]) or several in one transaction ([`handle_batch`]). Public so
//! tests drive a handler without a broker.

use super::{cloudevents::Envelope, consumer::Handler};
use crate::store::inbox;
use chrono::Utc;
use sea_orm::{ActiveValue::Set, DatabaseConnection, DatabaseTransaction, EntityTrait};
use tracing::Instrument;

/// What [`handle_one`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The effect was applied and the event recorded.
    Applied,
    /// The event was handled before; nothing was done.
    Duplicate,
    /// The handler's state already reflected the event ([`Handler::already_applied`]);
    /// nothing was written.
    Known,
}

/// Handles one event exactly once for `consumer`: inbox insert and effect in one transaction
/// (nothing at all when [`Handler::already_applied`] says the state has it), retried at
/// once up to three times when the handler lost a concurrency race.
///
/// # Errors
/// The handler or the database failed (also after the retries); nothing was committed.
pub async fn handle_one<H: Handler>(
    db: &DatabaseConnection,
    consumer: &str,
    handler: &H,
    event: &Envelope,
) -> anyhow::Result<Outcome> {
    // A failing check is no answer: the event is then handled the ordinary way.
    if handler.already_applied(db, event).await.unwrap_or(false) {
        return Ok(Outcome::Known);
    }
    // A handler that lost an optimistic-concurrency race (ABORTED) tries again at once in a
    // fresh transaction; waiting for a redelivery would add seconds for nothing.
    let mut attempt = 0;
    loop {
        attempt += 1;
        match handle_once(db, consumer, handler, event).await {
            Err(e) if attempt < 4 && is_conflict(&e) => continue,
            other => return other,
        }
    }
}

/// Whether a handler's error is a lost concurrency race worth an immediate retry.
fn is_conflict(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<crate::error::Error>().is_some_and(|e| e.kind() == crate::error::Kind::Aborted))
}

async fn handle_once<H: Handler>(
    db: &DatabaseConnection,
    consumer: &str,
    handler: &H,
    event: &Envelope,
) -> anyhow::Result<Outcome> {
    let txn = crate::db::begin_write(db).await?;
    let outcome = handle_in(&txn, consumer, handler, event).await?;
    match outcome {
        Outcome::Applied => {
            txn.commit().await?;
            handler.committed(event);
        }
        Outcome::Duplicate | Outcome::Known => txn.rollback().await?,
    }
    Ok(outcome)
}

/// The inbox insert and, for an event not seen before, its effect, in `txn`.
async fn handle_in<H: Handler>(
    txn: &DatabaseTransaction,
    consumer: &str,
    handler: &H,
    event: &Envelope,
) -> anyhow::Result<Outcome> {
    let inserted = inbox::Entity::insert(inbox::ActiveModel {
        consumer: Set(consumer.to_string()),
        event_id: Set(event.id.clone()),
        handled_at: Set(Utc::now()),
    })
    .on_conflict_do_nothing_on([inbox::Column::Consumer, inbox::Column::EventId])
    .exec_without_returning(txn)
    .await?;
    if !matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
        return Ok(Outcome::Duplicate);
    }
    handler.handle(txn, event).await?;
    Ok(Outcome::Applied)
}

/// Handles several events in one transaction: one inbox insert for all of them (those
/// already in the inbox, or repeated within the batch, are duplicates), then
/// [`Handler::handle_many`] with the new ones, then one commit. When any of them fails, or
/// the commit does, the whole batch is undone and every event is handled on its own with
/// [`handle_one`] (the inbox makes that safe), so a failing event is retried and redelivered
/// alone.
pub async fn handle_batch<H: Handler>(
    db: &DatabaseConnection,
    consumer: &str,
    handler: &H,
    events: &[(Envelope, tracing::Span)],
) -> Vec<anyhow::Result<Outcome>> {
    let together = async {
        let txn = crate::db::begin_write(db).await?;
        let mut fresh = record_new(&txn, consumer, events.iter().map(|(e, _)| e.id.as_str())).await?;
        let mut out = Vec::with_capacity(events.len());
        let mut new = Vec::with_capacity(events.len());
        for pair in events {
            // `remove`: the same event twice in one batch is applied once.
            if fresh.remove(pair.0.id.as_str()) {
                new.push(pair);
                out.push(Outcome::Applied);
            } else {
                out.push(Outcome::Duplicate);
            }
        }
        if !new.is_empty() {
            handler.handle_many(&txn, &new).await?;
        }
        txn.commit().await?;
        for (event, _) in &new {
            handler.committed(event);
        }
        anyhow::Ok(out)
    };
    if let Ok(out) = together.await {
        return out.into_iter().map(Ok).collect();
    }
    let mut results = Vec::with_capacity(events.len());
    for (event, span) in events {
        results.push(handle_one(db, consumer, handler, event).instrument(span.clone()).await);
    }
    results
}

/// Records `ids` in `consumer`'s inbox with one statement; returns those not there before.
async fn record_new<'a>(
    txn: &DatabaseTransaction,
    consumer: &str,
    ids: impl Iterator<Item = &'a str>,
) -> anyhow::Result<std::collections::HashSet<String>> {
    let now = Utc::now();
    let rows: Vec<inbox::ActiveModel> = ids
        .map(|id| inbox::ActiveModel {
            consumer: Set(consumer.to_string()),
            event_id: Set(id.to_string()),
            handled_at: Set(now),
        })
        .collect();
    let inserted = inbox::Entity::insert_many(rows)
        .on_conflict_do_nothing_on([inbox::Column::Consumer, inbox::Column::EventId])
        .exec_with_returning_keys(txn)
        .await?;
    Ok(match inserted {
        sea_orm::TryInsertResult::Inserted(keys) => keys.into_iter().map(|(_, id)| id).collect(),
        sea_orm::TryInsertResult::Empty | sea_orm::TryInsertResult::Conflicted => Default::default(),
    })
}

/// Deletes `consumer`'s inbox rows older than the horizon. Returns how many went.
///
/// # Errors
/// The database failed; nothing was deleted.
pub async fn prune_inbox(db: &DatabaseConnection, consumer: &str, retain_hours: u64) -> anyhow::Result<u64> {
    use sea_orm::{ColumnTrait, QueryFilter};
    let cutoff = Utc::now() - chrono::Duration::hours(retain_hours as i64);
    Ok(inbox::Entity::delete_many()
        .filter(inbox::Column::Consumer.eq(consumer))
        .filter(inbox::Column::HandledAt.lt(cutoff))
        .exec(db)
        .await?
        .rows_affected)
}
