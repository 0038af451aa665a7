//! Test harness for the end-to-end suite: a throwaway nats-server with JetStream per test
//! (on a port it picks, stoppable and restartable on the same port and store), a fresh
//! database per test (SQLite file or a new PostgreSQL database), services started
//! in-process on port 0, and [`TestMesh`], which runs any set of them around one business
//! clock the test moves.

mod answer;
mod db;
mod evidence;
mod identity;
mod mesh;
mod nats;
mod service;
mod wait;

pub use answer::*;
pub use db::*;
pub use evidence::*;
pub use identity::*;
pub use mesh::*;
pub use nats::*;
pub use onething_platform::service_kind::ServiceKind;
pub use service::*;
pub use wait::*;
