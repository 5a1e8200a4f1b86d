//! Deployment history: every version of the SSM parameter the deploy
//! workflow overwrites at each deployment (`GetParameterHistory`), plus the
//! ECS service's own deployments (`DescribeServices`) that no workflow
//! recorded — a circuit-breaker rollback, a Terraform-driven change.
//!
//! The record (`schema: 2`, written by `.github/workflows/deploy.yml`) holds
//! what the investigator's deployment correlation needs: id (the ECS
//! deployment id, which ECS puts in each task's `startedBy`), commit,
//! version, times, outcome, the container environment (secrets redacted) and
//! the keys the deployment changed. `schema: 1` records (no environment, no
//! changes) are still read.

use std::collections::BTreeMap;

use demo_model::events::{ConfigChange, Deployment, DeploymentOutcome, Window, redact_env};
use investigator::sources::{DeploymentSource, SourceResult};
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use super::{ms, unavailable};
use crate::AwsConfig;

/// One version of the deployment parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    pub schema: u32,
    /// ECS deployment id (schema 2); schema 1 falls back to the task definition.
    #[serde(default)]
    pub id: Option<String>,
    pub sha: String,
    #[serde(default)]
    pub version: String,
    /// Start of the rollout (RFC 3339).
    pub time: String,
    #[serde(default)]
    pub finished: Option<String>,
    /// `succeeded`, `failed`, `rolled_back`, `in_progress`.
    pub status: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub task_definition: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub changes: Vec<ConfigChange>,
    #[serde(default)]
    pub reason: Option<String>,
}

fn parse_time(s: &str) -> Result<i64, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|e| format!("time {s:?} is not RFC 3339: {e}"))
}

/// RFC 3339 with milliseconds, UTC.
pub fn fmt_time(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .unwrap_or_default()
}

impl DeploymentRecord {
    /// The record of a deployment (what the exporter writes).
    pub fn from_deployment(d: &Deployment) -> DeploymentRecord {
        DeploymentRecord {
            schema: 2,
            id: Some(d.id.clone()),
            sha: d.git_sha.clone(),
            version: d.version.clone(),
            time: fmt_time(d.started_ms),
            finished: d.finished_ms.map(fmt_time),
            status: match d.outcome {
                DeploymentOutcome::Completed => "succeeded",
                DeploymentOutcome::Failed => "failed",
                DeploymentOutcome::RolledBack => "rolled_back",
                DeploymentOutcome::InProgress => "in_progress",
            }
            .to_owned(),
            message: d.description.clone(),
            task_definition: None,
            env: redact_env(&d.env),
            changes: d.changes.clone(),
            reason: d.reason.clone(),
        }
    }

    fn to_deployment(&self, previous_id: Option<String>) -> Result<Deployment, String> {
        let outcome = match self.status.as_str() {
            "succeeded" | "completed" => DeploymentOutcome::Completed,
            "failed" => DeploymentOutcome::Failed,
            "rolled_back" => DeploymentOutcome::RolledBack,
            "in_progress" => DeploymentOutcome::InProgress,
            other => {
                return Err(format!(
                    "status {other:?} is not succeeded/failed/rolled_back/in_progress"
                ));
            }
        };
        let id = self
            .id
            .clone()
            .or_else(|| self.task_definition.clone())
            .ok_or("neither id nor task_definition")?;
        Ok(Deployment {
            id,
            started_ms: parse_time(&self.time)?,
            finished_ms: self.finished.as_deref().map(parse_time).transpose()?,
            version: self.version.clone(),
            git_sha: self.sha.clone(),
            env: self.env.clone(),
            changes: self.changes.clone(),
            outcome,
            previous_id,
            description: self.message.clone(),
            reason: self.reason.clone(),
        })
    }
}

pub struct SsmDeployments {
    ssm: aws_sdk_ssm::Client,
    ecs: aws_sdk_ecs::Client,
    rt: Handle,
    parameter: String,
    service: Option<(String, String)>,
}

impl SsmDeployments {
    pub fn new(
        ssm: aws_sdk_ssm::Client,
        ecs: aws_sdk_ecs::Client,
        rt: Handle,
        cfg: &AwsConfig,
    ) -> SsmDeployments {
        SsmDeployments {
            ssm,
            ecs,
            rt,
            parameter: cfg.deployment_parameter.clone(),
            service: cfg.cluster.clone().zip(cfg.service.clone()),
        }
    }

    /// Every deployment, oldest first.
    fn all(&self) -> SourceResult<Vec<Deployment>> {
        let name = format!("SSM parameter history {}", self.parameter);
        let mut versions: Vec<(i64, String)> = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let r = self
                .rt
                .block_on(
                    self.ssm
                        .get_parameter_history()
                        .name(&self.parameter)
                        .set_next_token(token.take())
                        .send(),
                )
                .map_err(|e| unavailable(&name, crate::error_chain(&e)))?;
            for p in r.parameters.unwrap_or_default() {
                versions.push((p.version, p.value.unwrap_or_default()));
            }
            match r.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        versions.sort_by_key(|v| v.0);
        let mut out: Vec<Deployment> = Vec::new();
        for (version, value) in versions {
            let rec: DeploymentRecord = serde_json::from_str(&value).map_err(|e| {
                unavailable(
                    &name,
                    format!("version {version} is not a deployment record: {e}"),
                )
            })?;
            let prev = out.last().map(|d| d.id.clone());
            let d = rec
                .to_deployment(prev)
                .map_err(|e| unavailable(&name, format!("version {version}: {e}")))?;
            // The workflow may rewrite a record (in progress → finished).
            if let Some(same) = out.iter_mut().find(|o| o.id == d.id) {
                let keep_prev = same.previous_id.clone();
                *same = Deployment {
                    previous_id: keep_prev,
                    ..d
                };
            } else {
                out.push(d);
            }
        }
        if let Some((cluster, service)) = &self.service {
            self.add_ecs(cluster, service, &mut out)?;
        }
        out.sort_by_key(|d| d.started_ms);
        Ok(out)
    }

    /// ECS deployments of the service that no record names.
    fn add_ecs(&self, cluster: &str, service: &str, out: &mut Vec<Deployment>) -> SourceResult<()> {
        let r = self
            .rt
            .block_on(
                self.ecs
                    .describe_services()
                    .cluster(cluster)
                    .services(service)
                    .send(),
            )
            .map_err(|e| unavailable("ECS DescribeServices", crate::error_chain(&e)))?;
        for svc in r.services.unwrap_or_default() {
            for d in svc.deployments.unwrap_or_default() {
                let id = d.id.clone().unwrap_or_default();
                let td = d.task_definition.clone().unwrap_or_default();
                if id.is_empty() || out.iter().any(|o| o.id == id || o.id == td) {
                    continue;
                }
                let started = d.created_at.as_ref().map(ms).unwrap_or(0);
                let outcome = match d.rollout_state.as_ref().map(|s| s.as_str()) {
                    Some("COMPLETED") => DeploymentOutcome::Completed,
                    Some("FAILED") => DeploymentOutcome::Failed,
                    _ => DeploymentOutcome::InProgress,
                };
                out.push(Deployment {
                    id,
                    started_ms: started,
                    finished_ms: (outcome != DeploymentOutcome::InProgress)
                        .then(|| d.updated_at.as_ref().map(ms))
                        .flatten(),
                    version: td.rsplit('/').next().unwrap_or(&td).to_owned(),
                    git_sha: "unknown".into(),
                    env: BTreeMap::new(),
                    changes: Vec::new(),
                    outcome,
                    previous_id: None,
                    description: format!(
                        "ECS deployment of {td} not recorded by the deploy workflow"
                    ),
                    reason: d.rollout_state_reason.clone(),
                });
            }
        }
        Ok(())
    }
}

impl DeploymentSource for SsmDeployments {
    fn name(&self) -> &str {
        "SSM deployment history"
    }

    fn deployments(&self, w: Window) -> SourceResult<Vec<Deployment>> {
        let mut all = self.all()?;
        all.retain(|d| d.started_ms < w.end_ms && d.finished_ms.is_none_or(|f| f >= w.start_ms));
        Ok(all)
    }

    fn deployment(&self, id: &str) -> SourceResult<Option<Deployment>> {
        Ok(self.all()?.into_iter().find(|d| d.id == id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_through_the_schema_2_json() {
        let d = Deployment {
            id: "d-0002".into(),
            started_ms: 1_715_508_200_000,
            finished_ms: Some(1_715_508_212_345),
            version: "1.1.0".into(),
            git_sha: "abc".into(),
            env: [("QUOTE_ENGINE".to_string(), "v2".to_string())].into(),
            changes: vec![ConfigChange {
                key: "QUOTE_ENGINE".into(),
                from: Some("v1".into()),
                to: Some("v2".into()),
            }],
            outcome: DeploymentOutcome::Completed,
            previous_id: Some("d-0001".into()),
            description: "deploy".into(),
            reason: None,
        };
        let json = serde_json::to_string(&DeploymentRecord::from_deployment(&d)).unwrap();
        let back: DeploymentRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back.to_deployment(Some("d-0001".into())).unwrap(), d);
    }

    #[test]
    fn a_schema_1_record_from_the_old_workflow_is_read() {
        let json = r#"{"schema":1,"sha":"abc","message":"m","version":"1.0.0","time":"2026-01-02T03:04:05Z",
            "status":"failed","task_definition":"arn:aws:ecs:us-east-1:1:task-definition/f:7"}"#;
        let rec: DeploymentRecord = serde_json::from_str(json).unwrap();
        let d = rec.to_deployment(None).unwrap();
        assert_eq!(d.id, "arn:aws:ecs:us-east-1:1:task-definition/f:7");
        assert_eq!(d.outcome, DeploymentOutcome::Failed);
    }

    #[test]
    fn an_unknown_status_is_an_error_naming_it() {
        let json =
            r#"{"schema":2,"id":"x","sha":"a","time":"2026-01-02T03:04:05Z","status":"meh"}"#;
        let rec: DeploymentRecord = serde_json::from_str(json).unwrap();
        assert!(rec.to_deployment(None).unwrap_err().contains("\"meh\""));
    }
}
