//! One round's rows: cut into waves that keep the outbox's order and one row per aggregate,
//! and, for a row that did not go, whose fault it was — only a row's own failures count
//! towards its quarantine.

use crate::store::outbox as row;
use async_nats::jetstream;
#[cfg(test)]
use chrono::Utc;
use std::collections::HashSet;

/// A row of a round that did not go, and why.
pub(super) struct Failed<'a> {
    pub(super) row: &'a row::Model,
    pub(super) error: anyhow::Error,
    pub(super) fault: Fault,
}

/// Whose fault a failed publish is: only a row's own failures count towards its quarantine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fault {
    /// The row can never go (too large for the broker or the stream): quarantined at once.
    Permanent,
    /// Maybe the row's (no stream for its subject, an unknown refusal):
    /// counted only when the broker took other rows in the same round.
    Row,
    /// The broker's (a full stream, no storage, no quorum, a lost connection, no ack in time): every row
    /// would fail alike, so none is counted; the rows wait.
    Broker,
}

impl Fault {
    /// Classifies a failed publish or ack.
    pub(super) fn of(e: &jetstream::context::PublishError) -> Self {
        use jetstream::{ErrorCode, context::PublishErrorKind as K};
        match e.kind() {
            K::MaxPayloadExceeded => return Self::Permanent,
            // No ack in time is how a broker going away mid-round shows, for every row in
            // flight alike: no row's fault (its aggregate still waits, and the backlog alert fires).
            K::BrokenPipe | K::MaxAckPending | K::TimedOut => return Self::Broker,
            K::Other => {}
            _ => return Self::Row,
        }
        let code = std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<jetstream::Error>())
            .map(jetstream::Error::error_code);
        match code {
            Some(ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM | ErrorCode::STREAM_HEADER_EXCEEDS_MAXIMUM) => {
                Self::Permanent
            }
            Some(
                ErrorCode::STREAM_STORE_FAILED
                | ErrorCode::INSUFFICIENT_RESOURCES
                | ErrorCode::STORAGE_RESOURCES_EXCEEDED
                | ErrorCode::MEMORY_RESOURCES_EXCEEDED
                | ErrorCode::ACCOUNT_RESOURCES_EXCEEDED
                | ErrorCode::STREAM_MAX_STREAM_BYTES_EXCEEDED
                | ErrorCode::CLUSTER_NOT_AVAILABLE
                | ErrorCode::STREAM_SEALED,
            ) => Self::Broker,
            _ => Self::Row,
        }
    }
}

/// Cuts `rows` (in sequence order) into waves: runs of consecutive rows holding at most one
/// row per aggregate (`ce-subject`). A wave's publishes are pipelined, and the next wave
/// starts once its acks are in, so a failed ack can never be overtaken by a later event of
/// its aggregate; and since the waves are consecutive, the stream keeps the outbox's order.
pub(super) fn waves(rows: &[row::Model]) -> Vec<&[row::Model]> {
    let mut waves = Vec::new();
    let (mut start, mut seen) = (0, HashSet::new());
    for (i, r) in rows.iter().enumerate() {
        if !seen.insert(r.ce_subject.as_str()) {
            waves.push(&rows[start..i]);
            start = i;
            seen.clear();
            seen.insert(r.ce_subject.as_str());
        }
    }
    if start < rows.len() {
        waves.push(&rows[start..]);
    }
    waves
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64, aggregate: &str) -> row::Model {
        row::Model {
            seq,
            event_id: format!("e{seq}"),
            subject: "onething.x.v1.y".into(),
            ce_type: "x".into(),
            ce_source: "x".into(),
            ce_subject: aggregate.into(),
            ce_time: Utc::now(),
            traceparent: None,
            payload: Vec::new(),
            created_at: Utc::now(),
            sent_at: None,
            attempts: 0,
            stream_seq: None,
        }
    }

    #[test]
    fn waves_keep_the_outbox_order_and_one_row_per_aggregate() {
        let rows: Vec<_> = [(1, "a"), (2, "b"), (3, "a"), (4, "c"), (5, "b"), (6, "b"), (7, "d")]
            .iter()
            .map(|(s, a)| row(*s, a))
            .collect();
        let cut: Vec<Vec<i64>> = waves(&rows).iter().map(|w| w.iter().map(|r| r.seq).collect()).collect();
        assert_eq!(cut, vec![vec![1, 2], vec![3, 4, 5], vec![6, 7]]);
        assert!(waves(&[]).is_empty());
    }
}
