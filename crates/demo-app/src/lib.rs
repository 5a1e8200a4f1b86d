//! demo-app: the instrumented service every other part of the project watches,
//! deploys, breaks on purpose and investigates.
//!
//! `main.rs` only wires these modules together; everything testable lives here.

pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod error;
pub mod extract;
pub mod faults;
pub mod healthcheck;
pub mod log;
pub mod metrics;
pub mod observe;
pub mod routes;
pub mod server;
pub mod supervised;
pub mod trace;
