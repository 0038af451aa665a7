//! What every onething service stands on: configuration, telemetry, identity (JWT) and
//! authorisation, gRPC server defaults (TLS, mTLS) and the one error mapping, database connection and migrations, the event bus
//! (CloudEvents on JetStream, outbox, idempotent consumer), the shared case lifecycle and
//! case service, the catalog, business-time due dates, Chinese identifiers, and shutdown.

pub mod auth;
pub mod authz;
pub mod bounds;
pub mod calendar;
pub mod cases;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod db;
pub mod elicence;
pub mod error;
pub mod events;
pub mod facts;
pub mod grpc;
pub mod idempotency;
pub mod ids;
pub mod import;
pub mod lifecycle;
pub mod metrics;
pub mod notices;
pub mod policy;
pub mod reason;
pub mod runtime;
pub mod seal;
pub mod service_kind;
pub mod shutdown;
pub mod store;
pub mod sweep;
pub mod telemetry;

/// The attribute a [`cases::MatterRules`] implementation carries (its methods are async).
pub use async_trait::async_trait;
pub use error::{Error, Result};

/// Every binary linking the platform (each service, `onething`, the tests) allocates with
/// mimalloc: under load glibc's allocator took about a fifth of the services' CPU in `perf`
/// (`malloc`, `free` and their consolidation of freed chunks across threads); see
/// docs/benchmark.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(test)]
mod fuzz;
