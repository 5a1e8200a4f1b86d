//! The investigator in AWS: the same analyzers, ranking and report as the
//! local runtime, fed by AWS instead of SQLite, and the worker that turns a
//! CloudWatch alarm on the SNS → SQS path into a report in S3.
//!
//! * [`sources`]: the investigator's source traits implemented over AWS, one
//!   module per system ([`sources::cloudwatch_logs`],
//!   [`sources::cloudwatch_metrics`], [`sources::ssm_deployments`],
//!   [`sources::ecs`]); code comes from a git clone (the investigator's own
//!   `git` source). Nothing above the sources knows where data came from.
//! * [`alarm`]: the SNS-wrapped CloudWatch alarm message → an alarm transition.
//! * [`reports`]: the report bucket, with the once-per-episode marker written
//!   with `If-None-Match: *` (a conditional write, not local memory).
//! * [`worker`]: long-polls the queue, investigates, writes, publishes the
//!   summary, sends poison messages to the DLQ after N receives.
//! * [`webhook`]: the optional bridge to an AWS DevOps Agent generic webhook
//!   (HMAC-SHA256 over `timestamp:body`).
//! * [`export`]: writes a local store's rows into CloudWatch Logs, CloudWatch
//!   metrics, SSM and the task-event log group, in the shapes AWS produces
//!   them (used by the moto end-to-end test and `aws export`).
//!
//! The SDK is async; the investigator's source traits are not. Sources hold a
//! runtime handle and block on it, so an investigation runs on a blocking
//! thread (`spawn_blocking`), never on a runtime worker.

#![forbid(unsafe_code)]

pub mod alarm;
pub mod clients;
pub mod config;
pub mod export;
pub mod reports;
pub mod sources;
pub mod webhook;
pub mod worker;

pub use clients::Clients;
pub use config::AwsConfig;

/// What can go wrong in this crate, each with what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("invalid AWS configuration:\n  - {}", .0.join("\n  - "))]
    Config(Vec<String>),
    #[error("{op}: {detail}")]
    Api { op: String, detail: String },
    #[error("alarm message: {0}")]
    Message(String),
    #[error("investigation: {0}")]
    Investigate(String),
    #[error("webhook: {0}")]
    Webhook(String),
}

/// Formats an SDK error with its whole source chain (the SDK's `Display`
/// alone says only "service error").
pub fn api_error<E: std::error::Error>(op: &str, e: E) -> AwsError {
    AwsError::Api {
        op: op.to_owned(),
        detail: error_chain(&e),
    }
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

pub use demo_model::now_ms;
