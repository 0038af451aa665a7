//! The end-to-end suite: one test binary, a module per area. Every test starts its own
//! nats-server and database and talks gRPC over a real socket.

// Test code: a failed unwrap is a failed test with its location, which is what we want.
#![allow(clippy::unwrap_used)]

mod authz_matrix;
mod bench;
mod bounds;
mod bundles;
mod chaos;
mod common;
mod compensation;
mod deploy;
mod elicence;
mod errors;
mod events_contract;
mod evidence_bundles;
mod exit_entry;
mod green;
mod hostile;
mod household;
mod inbox;
mod kubelet;
mod liaison;
mod measures;
mod metrics;
mod mtls;
mod nats_cluster;
mod nats_permissions;
mod netpol;
mod outbox;
mod pii;
mod poison;
mod prometheus;
mod races;
mod reference_data;
mod reflection;
mod registrars;
mod security;
mod supervision;
mod test_department;
mod traces;
mod vehicle;
mod watch;
