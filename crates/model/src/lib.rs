//! Shared model: the observability catalogue (`config/observability.yaml`) and
//! the plain data types that flow between the local runtime and the
//! investigator.
//!
//! This crate does no I/O beyond reading the catalogue file; it must stay
//! dependency-light because every other crate (and the Terraform consistency
//! test) depends on it.

pub mod catalog;
pub mod events;

pub use catalog::{Alarm, Catalog, CatalogError, Comparison, Statistic, TreatMissingData};
pub use events::now_ms;
