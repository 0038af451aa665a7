//! The end-to-end suite: one test binary, a module per area. Every test starts its own
//! nats-server and database and talks gRPC over a real socket.

mod common;
mod errors;
mod household;
mod inbox;
mod outbox;
