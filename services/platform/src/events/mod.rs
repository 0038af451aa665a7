//! The event bus: facts as CloudEvents 1.0 (binary mode: attributes in NATS headers,
//! protobuf payload) on JetStream; a transactional outbox and its relay on the producing
//! side; an idempotent, inbox-backed consumer on the receiving side.

pub mod cloudevents;
pub mod consumer;
pub mod contract;
pub mod dlq;
pub mod idempotent;
pub mod nats;
pub mod nats_server;
pub mod outbox;
pub mod quarantine;
pub mod reconcile;
pub mod relay;
pub mod replay;

pub use cloudevents::{Envelope, EnvelopeError, OutgoingEvent};
pub use consumer::{ConsumerSpec, Handler};
pub use idempotent::Outcome;
pub use outbox::{NewEvents, Outbox};
pub use reconcile::Reconciler;
pub use relay::Relay;
