//! The investigator's source traits over AWS, one module per system. The
//! traits are synchronous; each source holds a tokio runtime handle and
//! blocks on the SDK call, so sources must be used from a blocking thread
//! (the worker runs investigations in `spawn_blocking`).
//!
//! A source that returns only part of what was asked (the log cap, a
//! throttle after some pages) still answers with what it got and records a
//! [`Gaps`] entry; the caller adds those to the report's investigation gaps.

pub mod cloudwatch_logs;
pub mod cloudwatch_metrics;
pub mod ecs;
pub mod ssm_deployments;

use std::sync::{Arc, Mutex};

use investigator::report::Gap;
use investigator::sources::{CodeSource, SourceError, Sources, git::Git};
use tokio::runtime::Handle;

use crate::{AwsConfig, Clients};

/// Partial answers, collected while an investigation runs.
#[derive(Debug, Clone, Default)]
pub struct Gaps(Arc<Mutex<Vec<Gap>>>);

impl Gaps {
    pub fn push(&self, source: &str, detail: impl Into<String>) {
        self.0.lock().unwrap().push(Gap {
            source: source.to_owned(),
            detail: detail.into(),
        });
    }
    pub fn take(&self) -> Vec<Gap> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

pub(crate) fn unavailable(source: &str, e: impl std::fmt::Display) -> SourceError {
    SourceError::Unavailable {
        source_name: source.to_owned(),
        detail: e.to_string(),
    }
}

/// Every source of one AWS deployment.
pub struct AwsSources {
    pub logs: cloudwatch_logs::CloudWatchLogs,
    pub metrics: cloudwatch_metrics::CloudWatchMetrics,
    pub deployments: ssm_deployments::SsmDeployments,
    pub tasks: ecs::EcsTasks,
    pub code: Option<Git>,
    pub gaps: Gaps,
}

impl AwsSources {
    /// `rt` must be the runtime the clients were built on.
    pub fn new(cfg: &AwsConfig, clients: &Clients, rt: Handle) -> AwsSources {
        let gaps = Gaps::default();
        AwsSources {
            logs: cloudwatch_logs::CloudWatchLogs::new(
                clients.logs.clone(),
                rt.clone(),
                &cfg.log_group,
                cfg.max_log_lines,
                gaps.clone(),
            ),
            metrics: cloudwatch_metrics::CloudWatchMetrics::new(
                clients.cloudwatch.clone(),
                rt.clone(),
                cfg,
                gaps.clone(),
            ),
            deployments: ssm_deployments::SsmDeployments::new(
                clients.ssm.clone(),
                clients.ecs.clone(),
                rt.clone(),
                cfg,
            ),
            tasks: ecs::EcsTasks::new(clients.clone(), rt, cfg, gaps.clone()),
            code: cfg.repo.as_deref().map(Git::new),
            gaps,
        }
    }

    /// The borrowed view the investigator takes.
    pub fn as_sources(&self) -> Sources<'_> {
        Sources {
            logs: &self.logs,
            metrics: &self.metrics,
            deployments: &self.deployments,
            tasks: &self.tasks,
            code: self.code.as_ref().map(|g| g as &dyn CodeSource),
        }
    }
}

/// Milliseconds → SDK timestamp.
pub(crate) fn dt(ms: i64) -> aws_smithy_types::DateTime {
    aws_smithy_types::DateTime::from_millis(ms)
}

/// SDK timestamp → milliseconds.
pub(crate) fn ms(t: &aws_smithy_types::DateTime) -> i64 {
    t.to_millis().unwrap_or(i64::MAX)
}
