//! Scenarios are the contract: each is a data file (`scenarios/*.yaml`) saying
//! what traffic to send, which faults or deployments to apply and when, which
//! alarms must fire (and clear again after recovery), and what root cause an
//! investigator must name — including the wrong answers it must not give.
//! The same files drive the end-to-end tests, `scenario run` and `scenario bench`.

pub mod runner;
pub mod spec;
pub mod traffic;

pub use runner::{Finding, Investigate, RunOptions, RunResult, run};
pub use spec::{Scenario, ScenarioError, all, find};
