//! The fetchq worker runtime (handler pools, leases, heartbeats, graceful
//! shutdown, migration workers). Not implemented yet: this crate reserves the
//! name and the place in the workspace; until it lands, drive queues with
//! [`fetchq_core::Client`] directly.
#![warn(missing_docs)]

pub use fetchq_core;
