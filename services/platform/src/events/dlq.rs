//! Dead letters: a message a consumer cannot apply — undecodable, or failing past
//! `consumers.max_deliver` for a reason trying again cannot mend — goes to `ONETHING_DLQ`
//! with its original headers and payload, the consumer, the reason, where it came from and
//! how often it was delivered; then it is acknowledged, so the messages behind it flow.

use super::consumer::Delivery;
use anyhow::Context as _;
use async_nats::jetstream::{self, AckKind};

/// Puts `msg` into the dead-letter stream with its original headers and payload, and the
/// consumer, the reason, where it came from and how often it was delivered.
///
/// # Errors
/// NATS did not take it; the caller leaves the message to be redelivered.
pub async fn dead_letter(
    js: &jetstream::Context,
    delivery: &Delivery,
    consumer: &str,
    msg: &jetstream::Message,
    reason: &str,
) -> anyhow::Result<()> {
    // The original headers but the broker's own (Nats-Expected-…, Nats-Rollup … would make
    // the dead-letter stream refuse the letter).
    let mut headers = async_nats::HeaderMap::new();
    for (name, values) in msg.headers.iter().flat_map(|h| h.iter()) {
        let key: &str = name.as_ref();
        if !key.to_ascii_lowercase().starts_with("nats-") {
            for v in values {
                headers.append(key, v.as_str());
            }
        }
    }
    let (stream, seq, delivered) =
        msg.info().map(|i| (i.stream.to_string(), i.stream_sequence, i.delivered)).unwrap_or_default();
    // One reason line, bounded (a header holds no line breaks), and no number in it whole:
    // a database error may quote an ID number.
    let reason: String =
        crate::ids::scrub(reason).chars().map(|c| if c.is_control() { ' ' } else { c }).take(512).collect();
    headers.insert("onething-dlq-consumer", consumer);
    headers.insert("onething-dlq-reason", reason.as_str());
    headers.insert("onething-dlq-stream", stream.as_str());
    headers.insert("onething-dlq-sequence", seq.to_string().as_str());
    headers.insert("onething-dlq-subject", msg.subject.as_str());
    headers.insert("onething-dlq-deliveries", delivered.to_string().as_str());
    // Several consumers may give up on one event: each letter is its own message.
    headers.insert(async_nats::header::NATS_MESSAGE_ID, format!("{consumer}:{stream}:{seq}").as_str());
    let subject = super::nats::dlq_subject(&delivery.service, consumer);
    let ack = match js.publish_with_headers(subject.clone(), headers.clone(), msg.payload.clone()).await {
        Ok(ack) => ack.await,
        Err(e) => return Err(anyhow::Error::new(e).context("publishing a dead letter")),
    };
    if ack.is_err() {
        // Most likely the dead-letter stream is not there yet: make it, then once more.
        super::nats::ensure_dlq_stream(js, delivery.replicas).await?;
        js.publish_with_headers(subject, headers, msg.payload.clone())
            .await
            .context("publishing a dead letter")?
            .await
            .context("waiting for the dead letter's ack")?;
    }
    crate::metrics::metrics()
        .events_dead_lettered
        .get_or_create_owned(&crate::metrics::ConsumerLabels { consumer: consumer.to_string() })
        .inc();
    tracing::error!(consumer, stream = %stream, stream_sequence = seq, deliveries = delivered, reason = %reason, "message moved to the dead-letter stream");
    Ok(())
}

/// Whether a handler's error can never go away by trying again: the event does not decode
/// (its payload, through [`Envelope::decode`] or prost directly, or a header it needs). An
/// event of a type the handler does not know yet is not: a newer release may be rolling out.
pub(super) fn is_permanent(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<prost::DecodeError>().is_some()
            || c.downcast_ref::<super::EnvelopeError>()
                .is_some_and(|x| !matches!(x, super::EnvelopeError::OtherType(_)))
    })
}

/// Dead-letters `msg` and acknowledges it (terminated); when the dead-letter stream cannot
/// be written, leaves it to be redelivered later instead, so nothing is lost. Counts it in
/// `events_consumed` as `dead_lettered` once the letter is written, as `failed` otherwise.
pub(super) async fn give_up(
    js: &jetstream::Context,
    delivery: &Delivery,
    consumer: &str,
    msg: &jetstream::Message,
    reason: &str,
) {
    match dead_letter(js, delivery, consumer, msg, reason).await {
        Ok(()) => {
            super::consumer::count_consumed(consumer, &msg.subject, "dead_lettered");
            if let Err(e) = msg.ack_with(AckKind::Term).await {
                tracing::warn!(consumer, error = %e, "terminating a dead-lettered message failed; it may come once more");
            }
        }
        Err(e) => {
            super::consumer::count_consumed(consumer, &msg.subject, "failed");
            tracing::warn!(consumer, error = %format!("{e:#}"), "dead-letter stream unavailable; message kept for redelivery");
            let _ = msg.ack_with(AckKind::Nak(Some(delivery.retry_delay(16)))).await;
        }
    }
}
