//! Reading a stream back: every event of a stream from its start, after a sequence, or
//! from a time, through an ephemeral consumer, for operators (`onething events replay`) and
//! for subscribers catching up after an outage.

use super::Envelope;
use async_nats::jetstream::{
    self,
    consumer::{DeliverPolicy, pull},
};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use std::time::Duration;

/// Where a replay starts.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// The first event of the stream.
    All,
    /// The first event after this stream sequence.
    After(u64),
    /// The first event at or after this time.
    Since(DateTime<Utc>),
}

/// An event read back from a stream.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// Its stream sequence.
    pub sequence: u64,
    /// The NATS subject it was published on.
    pub subject: String,
    /// The event.
    pub event: Envelope,
}

/// Every event of `stream` on `subject` (a filter, `>` wildcards allowed) from `start`, at
/// most `limit`. Messages that are not onething events are skipped.
///
/// # Errors
/// NATS unreachable, or an unknown stream.
pub async fn replay(
    js: &jetstream::Context,
    stream: &str,
    subject: &str,
    start: Start,
    limit: usize,
) -> anyhow::Result<Vec<Replayed>> {
    let stream = js.get_stream(stream).await?;
    let deliver_policy = match start {
        Start::All => DeliverPolicy::All,
        Start::After(seq) => DeliverPolicy::ByStartSequence { start_sequence: seq + 1 },
        Start::Since(t) => DeliverPolicy::ByStartTime {
            start_time: time::OffsetDateTime::from_unix_timestamp(t.timestamp())
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
        },
    };
    let mut consumer: jetstream::consumer::Consumer<pull::Config> = stream
        .create_consumer(pull::Config {
            deliver_policy,
            filter_subject: subject.to_string(),
            ack_policy: jetstream::consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await?;
    let pending = usize::try_from(consumer.info().await?.num_pending).unwrap_or(usize::MAX).min(limit);
    let mut out = Vec::with_capacity(pending);
    while out.len() < pending {
        let want = pending - out.len();
        let mut batch = consumer.fetch().max_messages(want).expires(Duration::from_secs(2)).messages().await?;
        let mut got = 0;
        while let Some(m) = batch.next().await {
            let m = m.map_err(|e| anyhow::anyhow!("{e}"))?;
            got += 1;
            let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
            if let Ok(event) = Envelope::from_nats(m.headers.as_ref(), m.payload.clone()) {
                out.push(Replayed { sequence: seq, subject: m.subject.to_string(), event });
            }
        }
        if got == 0 {
            break;
        }
    }
    Ok(out)
}
