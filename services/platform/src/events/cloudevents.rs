//! CloudEvents 1.0 in binary content mode over NATS: each context attribute is a `ce-…`
//! header, `content-type: application/protobuf`, the payload a protobuf message whose full
//! name is the event type. `traceparent` rides along so consumers join the producer's trace.

use async_nats::HeaderMap;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};

/// CloudEvents spec version we speak.
pub const SPEC_VERSION: &str = "1.0";
/// Content type of every payload.
pub const CONTENT_TYPE: &str = "application/protobuf";

/// An event about to be written to the outbox.
#[derive(Debug, Clone)]
pub struct OutgoingEvent {
    /// NATS subject, e.g. `onething.household.v1.case.approved`.
    pub subject: String,
    /// CloudEvents `subject`: the resource, e.g. `cases/0193…`.
    pub ce_subject: String,
    /// CloudEvents `type`: the payload's proto full name.
    pub ce_type: String,
    /// Encoded payload.
    pub payload: Vec<u8>,
    /// The transaction writing the event also creates its subject (a person born, a
    /// household established): no older event of it can be waiting in the outbox.
    pub subject_is_new: bool,
}

impl OutgoingEvent {
    /// An event carrying `message`, typed by its proto full name.
    pub fn new<M: prost::Message + prost::Name>(
        subject: impl Into<String>,
        ce_subject: impl Into<String>,
        message: &M,
    ) -> Self {
        Self {
            subject: subject.into(),
            ce_subject: ce_subject.into(),
            ce_type: M::full_name(),
            payload: message.encode_to_vec(),
            subject_is_new: false,
        }
    }

    /// The event, marked as written by the transaction that creates its subject
    /// ([`OutgoingEvent::subject_is_new`]).
    #[must_use]
    pub fn of_new_subject(mut self) -> Self {
        self.subject_is_new = true;
        self
    }
}

/// A received (or relayed) event: CloudEvents context plus payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// `ce-id`, unique per event; the consumer inbox key.
    pub id: String,
    /// `ce-source`, e.g. `/onething/household`.
    pub source: String,
    /// `ce-type`, the proto full name of the payload.
    pub ce_type: String,
    /// `ce-subject`, the resource.
    pub subject: String,
    /// `ce-time`.
    pub time: DateTime<Utc>,
    /// W3C trace context, if any.
    pub traceparent: Option<String>,
    /// The protobuf payload.
    pub data: Bytes,
}

/// Why a message is not a usable event. Such a message is poison: retrying cannot help.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// A required header is absent.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// A header has a value we cannot use.
    #[error("invalid header {0}")]
    InvalidHeader(&'static str),
    /// The payload is not the message its type names.
    #[error("payload does not decode as {0}")]
    Payload(String),
    /// The event is of another type than the one asked for (a newer release's, perhaps).
    #[error("event is not a {0}")]
    OtherType(String),
}

/// The size of a NATS header block.
pub fn header_size(h: &HeaderMap) -> usize {
    "NATS/1.0\r\n\r\n".len()
        + h.iter()
            .map(|(k, vs)| vs.iter().map(|v| AsRef::<[u8]>::as_ref(k).len() + 2 + v.as_str().len() + 2).sum::<usize>())
            .sum::<usize>()
}

impl Envelope {
    /// NATS headers of this event, including `Nats-Msg-Id` = `ce-id` for broker-side dedup.
    pub fn to_headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("ce-specversion", SPEC_VERSION);
        h.insert("ce-id", self.id.as_str());
        h.insert("ce-source", self.source.as_str());
        h.insert("ce-type", self.ce_type.as_str());
        h.insert("ce-subject", self.subject.as_str());
        h.insert("ce-time", self.time.to_rfc3339_opts(SecondsFormat::Micros, true).as_str());
        h.insert("content-type", CONTENT_TYPE);
        h.insert(async_nats::header::NATS_MESSAGE_ID, self.id.as_str());
        if let Some(tp) = &self.traceparent {
            h.insert("traceparent", tp.as_str());
        }
        h
    }

    /// The size of this event on the wire as NATS counts it against `max_payload`: the
    /// header block (`NATS/1.0`, one `name: value` line each, a blank line) and the payload.
    pub fn wire_size(&self) -> usize {
        header_size(&self.to_headers()) + self.data.len()
    }

    /// Reads an event from a NATS message's headers and payload.
    ///
    /// # Errors
    /// [`EnvelopeError`] when a required attribute is missing or malformed, or the spec
    /// version or content type is not ours.
    pub fn from_nats(headers: Option<&HeaderMap>, payload: Bytes) -> Result<Self, EnvelopeError> {
        let h = headers.ok_or(EnvelopeError::MissingHeader("ce-id"))?;
        let get = |name: &'static str| -> Result<String, EnvelopeError> {
            h.get(name)
                .map(|v| v.as_str().to_string())
                .filter(|v| !v.is_empty())
                .ok_or(EnvelopeError::MissingHeader(name))
        };
        if get("ce-specversion")? != SPEC_VERSION {
            return Err(EnvelopeError::InvalidHeader("ce-specversion"));
        }
        if get("content-type")? != CONTENT_TYPE {
            return Err(EnvelopeError::InvalidHeader("content-type"));
        }
        let time = DateTime::parse_from_rfc3339(&get("ce-time")?)
            .map_err(|_| EnvelopeError::InvalidHeader("ce-time"))?
            .with_timezone(&Utc);
        Ok(Self {
            id: get("ce-id")?,
            source: get("ce-source")?,
            ce_type: get("ce-type")?,
            subject: get("ce-subject").unwrap_or_default(),
            time,
            traceparent: get("traceparent").ok(),
            data: payload,
        })
    }

    /// Decodes the payload as `M`, checking that the event's type is `M`'s full name.
    ///
    /// # Errors
    /// [`EnvelopeError::Payload`] for another type or undecodable bytes.
    pub fn decode<M: prost::Message + prost::Name + Default>(&self) -> Result<M, EnvelopeError> {
        if self.ce_type != M::full_name() {
            return Err(EnvelopeError::OtherType(M::full_name()));
        }
        M::decode(self.data.clone()).map_err(|_| EnvelopeError::Payload(M::full_name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onething_proto::common::CaseStateChanged;

    fn sample() -> Envelope {
        let msg = CaseStateChanged { case_id: "c1".into(), version: 3, ..Default::default() };
        let ev = OutgoingEvent::new("onething.household.v1.case.approved", "cases/c1", &msg);
        Envelope {
            id: "e1".into(),
            source: "/onething/household".into(),
            ce_type: ev.ce_type,
            subject: ev.ce_subject,
            time: Utc::now(),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            data: ev.payload.into(),
        }
    }

    #[test]
    fn headers_round_trip() {
        let e = sample();
        let h = e.to_headers();
        assert_eq!(h.get("Nats-Msg-Id").unwrap().as_str(), "e1");
        assert_eq!(h.get("ce-type").unwrap().as_str(), "onething.common.v1.CaseStateChanged");
        let back = Envelope::from_nats(Some(&h), e.data.clone()).unwrap();
        // Time is carried at microsecond precision.
        assert_eq!(back.id, e.id);
        assert_eq!(back.traceparent, e.traceparent);
        let msg: CaseStateChanged = back.decode().unwrap();
        assert_eq!(msg.version, 3);
    }

    #[test]
    fn refuses_missing_or_foreign_attributes() {
        let e = sample();
        assert!(matches!(Envelope::from_nats(None, e.data.clone()), Err(EnvelopeError::MissingHeader(_))));
        let mut h = e.to_headers();
        h.insert("content-type", "application/json");
        assert!(matches!(
            Envelope::from_nats(Some(&h), e.data.clone()),
            Err(EnvelopeError::InvalidHeader("content-type"))
        ));
        let mut wrong = e.clone();
        wrong.ce_type = "onething.household.v1.PersonBorn".into();
        assert!(wrong.decode::<CaseStateChanged>().is_err());
        let mut garbage = e;
        garbage.data = Bytes::from_static(&[0xff, 0xff, 0xff]);
        assert!(garbage.decode::<CaseStateChanged>().is_err());
    }
}
