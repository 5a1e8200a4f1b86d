//! Scenarios are the contract: each is a data file (`scenarios/*.yaml`, or any
//! file a user writes) saying what traffic to send, which faults, deployments
//! or traffic changes to apply and when, which alarms must fire (and clear
//! again after recovery), and what root cause an investigator must name —
//! including the wrong answers it must not give. The same files drive the
//! end-to-end tests, `scenario run` and `scenario bench`.

pub mod parse;
pub mod runner;
pub mod score;
pub mod spec;
pub mod steps;
pub mod traffic;

pub use parse::{all, all_with, find, find_with, load_dir, load_file, parse_with};
pub use runner::{Finding, Investigate, RunOptions, RunResult, run};
pub use score::AlarmScore;
pub use spec::{Scenario, ScenarioError};
