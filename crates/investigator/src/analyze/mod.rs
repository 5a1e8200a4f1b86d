//! The analyzers: each turns source data into findings that the hypothesis
//! ranking weighs. They never read a source the trait does not offer and
//! never decide the root cause themselves.

pub mod code;
pub mod cohorts;
pub mod deploys;
pub mod logs;
pub mod metrics;
pub mod routes;
pub mod series;
pub mod tasks;
