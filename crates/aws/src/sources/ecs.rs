//! Task lifecycle from ECS: the history of "ECS Task State Change" events
//! that an EventBridge rule writes to a log group (the Terraform
//! `investigator` module creates both; `DescribeTasks` forgets a stopped task
//! after about an hour), merged with `ListTasks`/`DescribeTasks` for the
//! tasks ECS still knows, and ALB target health (`DescribeTargetHealth`, the
//! current state only: a gap says so when a target is unhealthy now).
//!
//! Mapping (per task, on each change of last status or health):
//! RUNNING → started; health HEALTHY/UNHEALTHY → healthy/unhealthy; desired
//! STOPPED while running → draining; STOPPED → stopped with the container's
//! exit code and the stopped reason, or oom_killed when a container's reason
//! says `OutOfMemoryError`. `startedBy` is the ECS deployment id.

use std::collections::{BTreeMap, HashSet};

use demo_model::events::{TaskEvent, TaskEventKind, Window};
use investigator::sources::{SourceResult, TaskSource};
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use super::cloudwatch_logs::CloudWatchLogs;
use super::{Gaps, ms, unavailable};
use crate::{AwsConfig, Clients};

/// The part of EventBridge's "ECS Task State Change" event this reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStateChange {
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    pub source: String,
    pub time: String,
    pub detail: TaskDetail,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDetail {
    pub task_arn: String,
    pub last_status: String,
    #[serde(default)]
    pub desired_status: Option<String>,
    #[serde(default)]
    pub health_status: Option<String>,
    #[serde(default)]
    pub started_by: Option<String>,
    #[serde(default)]
    pub stop_code: Option<String>,
    #[serde(default)]
    pub stopped_reason: Option<String>,
    /// When this state was reached (RFC 3339, milliseconds).
    pub updated_at: String,
    #[serde(default)]
    pub containers: Vec<ContainerDetail>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDetail {
    pub name: String,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub reason: Option<String>,
}

fn task_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

fn parse_ms(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// The task event one state change stands for, if it is a change.
pub fn event_of(d: &TaskDetail, ts_ms: i64) -> Option<TaskEvent> {
    let container = d
        .containers
        .iter()
        .find(|c| c.exit_code.is_some() || c.reason.is_some());
    let (kind, exit_code, reason) = match d.last_status.as_str() {
        "STOPPED" => {
            let oom = d.containers.iter().find(|c| {
                c.reason
                    .as_deref()
                    .is_some_and(|r| r.contains("OutOfMemoryError"))
            });
            match oom {
                Some(c) => (TaskEventKind::OomKilled, c.exit_code, c.reason.clone()),
                None => (
                    TaskEventKind::Stopped,
                    container.and_then(|c| c.exit_code),
                    d.stopped_reason.clone(),
                ),
            }
        }
        "RUNNING" | "DEACTIVATING" | "STOPPING" => {
            if d.desired_status.as_deref() == Some("STOPPED") {
                (TaskEventKind::Draining, None, d.stopped_reason.clone())
            } else {
                match d.health_status.as_deref() {
                    Some("HEALTHY") => (TaskEventKind::Healthy, None, None),
                    Some("UNHEALTHY") => (TaskEventKind::Unhealthy, None, d.stopped_reason.clone()),
                    _ => (TaskEventKind::Started, None, None),
                }
            }
        }
        _ => return None,
    };
    Some(TaskEvent {
        ts_ms,
        task_id: task_id(&d.task_arn).to_owned(),
        kind,
        exit_code,
        reason,
        deployment_id: d.started_by.clone(),
    })
}

/// The state change that stands for `e` (what the exporter writes).
pub fn state_change_of(e: &TaskEvent, cluster_arn: &str) -> TaskStateChange {
    let mut d = TaskDetail {
        task_arn: format!("{cluster_arn}/{}", e.task_id).replace(":cluster/", ":task/"),
        started_by: e.deployment_id.clone(),
        updated_at: super::ssm_deployments::fmt_time(e.ts_ms),
        ..TaskDetail::default()
    };
    let container = |exit_code, reason| ContainerDetail {
        name: "app".into(),
        exit_code,
        reason,
    };
    match e.kind {
        TaskEventKind::Started => {
            d.last_status = "RUNNING".into();
            d.health_status = Some("UNKNOWN".into());
        }
        TaskEventKind::Healthy => {
            d.last_status = "RUNNING".into();
            d.health_status = Some("HEALTHY".into());
        }
        TaskEventKind::Unhealthy => {
            d.last_status = "RUNNING".into();
            d.health_status = Some("UNHEALTHY".into());
            d.stopped_reason = e.reason.clone();
        }
        TaskEventKind::Draining => {
            d.last_status = "RUNNING".into();
            d.desired_status = Some("STOPPED".into());
            d.stopped_reason = e.reason.clone();
        }
        TaskEventKind::Stopped => {
            d.last_status = "STOPPED".into();
            d.stop_code = Some("ServiceSchedulerInitiated".into());
            d.stopped_reason = e.reason.clone();
            d.containers = vec![container(e.exit_code, None)];
        }
        TaskEventKind::OomKilled => {
            d.last_status = "STOPPED".into();
            d.stop_code = Some("EssentialContainerExited".into());
            d.stopped_reason = Some("Essential container in task exited".into());
            d.containers = vec![container(
                e.exit_code,
                Some(
                    e.reason
                        .clone()
                        .filter(|r| r.contains("OutOfMemoryError"))
                        .unwrap_or_else(|| {
                            "OutOfMemoryError: Container killed due to memory usage".into()
                        }),
                ),
            )];
        }
    }
    TaskStateChange {
        detail_type: "ECS Task State Change".into(),
        source: "aws.ecs".into(),
        time: super::ssm_deployments::fmt_time(e.ts_ms),
        detail: d,
    }
}

pub struct EcsTasks {
    clients: Clients,
    rt: Handle,
    events_group: Option<String>,
    service: Option<(String, String)>,
    target_group: Option<String>,
    cap: u64,
    gaps: Gaps,
}

impl EcsTasks {
    pub fn new(clients: Clients, rt: Handle, cfg: &AwsConfig, gaps: Gaps) -> EcsTasks {
        EcsTasks {
            clients,
            rt,
            events_group: cfg.task_events_log_group.clone(),
            service: cfg.cluster.clone().zip(cfg.service.clone()),
            target_group: cfg.target_group_arn.clone(),
            cap: cfg.max_log_lines,
            gaps,
        }
    }

    fn read_event_log(&self, group: &str, w: Window) -> SourceResult<Vec<TaskEvent>> {
        let name = format!("ECS task state changes in {group}");
        let (mut raw, cut) =
            CloudWatchLogs::fetch(&self.clients.logs, &self.rt, group, w, self.cap);
        if let Some(why) = cut {
            if raw.is_empty() && !why.starts_with("stopped at the cap") {
                return Err(unavailable(&name, why));
            }
            self.gaps
                .push(&name, format!("read {} events, then {why}", raw.len()));
        }
        raw.sort_by_key(|r| r.0);
        let mut last: BTreeMap<String, (TaskEventKind, Option<String>)> = BTreeMap::new();
        let mut out = Vec::new();
        let mut bad = 0usize;
        for (ts, _, line) in raw {
            let Ok(ev) = serde_json::from_str::<TaskStateChange>(&line) else {
                bad += 1;
                continue;
            };
            if ev.detail_type != "ECS Task State Change" {
                continue;
            }
            let at = parse_ms(&ev.detail.updated_at).unwrap_or(ts);
            let Some(e) = event_of(&ev.detail, at) else {
                continue;
            };
            // ECS repeats a state in several events (attachments, network
            // changes): one task event per change of kind.
            let key = (e.kind, e.deployment_id.clone());
            let terminal = matches!(e.kind, TaskEventKind::Stopped | TaskEventKind::OomKilled);
            if !terminal && last.get(&e.task_id) == Some(&key) {
                continue;
            }
            last.insert(e.task_id.clone(), key);
            out.push(e);
        }
        if bad > 0 {
            self.gaps.push(
                &name,
                format!("{bad} lines were not ECS task state change events"),
            );
        }
        Ok(out)
    }

    /// Tasks ECS still knows (running, or stopped within about an hour).
    fn read_described(
        &self,
        cluster: &str,
        service: &str,
        w: Window,
    ) -> SourceResult<Vec<TaskEvent>> {
        use aws_sdk_ecs::types::DesiredStatus;
        let ecs = &self.clients.ecs;
        let mut arns = Vec::new();
        for status in [DesiredStatus::Running, DesiredStatus::Stopped] {
            let mut token: Option<String> = None;
            loop {
                let r = self
                    .rt
                    .block_on(
                        ecs.list_tasks()
                            .cluster(cluster)
                            .service_name(service)
                            .desired_status(status.clone())
                            .set_next_token(token.take())
                            .send(),
                    )
                    .map_err(|e| unavailable("ECS ListTasks", crate::error_chain(&e)))?;
                arns.extend(r.task_arns.unwrap_or_default());
                match r.next_token {
                    Some(t) if !t.is_empty() => token = Some(t),
                    _ => break,
                }
            }
        }
        let mut out = Vec::new();
        for chunk in arns.chunks(100) {
            let r = self
                .rt
                .block_on(
                    ecs.describe_tasks()
                        .cluster(cluster)
                        .set_tasks(Some(chunk.to_vec()))
                        .send(),
                )
                .map_err(|e| unavailable("ECS DescribeTasks", crate::error_chain(&e)))?;
            for t in r.tasks.unwrap_or_default() {
                let arn = t.task_arn.clone().unwrap_or_default();
                let containers: Vec<ContainerDetail> = t
                    .containers()
                    .iter()
                    .map(|c| ContainerDetail {
                        name: c.name.clone().unwrap_or_default(),
                        exit_code: c.exit_code,
                        reason: c.reason.clone(),
                    })
                    .collect();
                let base = TaskDetail {
                    task_arn: arn,
                    started_by: t.started_by.clone(),
                    stop_code: t.stop_code.as_ref().map(|c| c.as_str().to_owned()),
                    stopped_reason: t.stopped_reason.clone(),
                    containers,
                    ..TaskDetail::default()
                };
                if let Some(at) = t.started_at.as_ref().map(ms) {
                    let d = TaskDetail {
                        last_status: "RUNNING".into(),
                        containers: Vec::new(),
                        ..base.clone()
                    };
                    out.extend(event_of(&d, at));
                }
                if let Some(at) = t.stopped_at.as_ref().map(ms) {
                    let d = TaskDetail {
                        last_status: "STOPPED".into(),
                        ..base.clone()
                    };
                    out.extend(event_of(&d, at));
                }
            }
        }
        out.retain(|e| w.contains(e.ts_ms));
        Ok(out)
    }

    fn target_health(&self, tg: &str) {
        let r = self.rt.block_on(
            self.clients
                .elb
                .describe_target_health()
                .target_group_arn(tg)
                .send(),
        );
        match r {
            Ok(r) => {
                let bad: Vec<String> = r
                    .target_health_descriptions()
                    .iter()
                    .filter(|d| {
                        d.target_health()
                            .and_then(|h| h.state())
                            .is_some_and(|s| s.as_str() == "unhealthy")
                    })
                    .map(|d| d.target().and_then(|t| t.id()).unwrap_or("?").to_owned())
                    .collect();
                if !bad.is_empty() {
                    self.gaps.push(
                        "ALB target health",
                        format!(
                            "targets unhealthy now: {} (DescribeTargetHealth has no history; when they turned unhealthy comes from the task events)",
                            bad.join(", ")
                        ),
                    );
                }
            }
            Err(e) => self.gaps.push("ALB target health", crate::error_chain(&e)),
        }
    }
}

impl TaskSource for EcsTasks {
    fn name(&self) -> &str {
        "ECS task events"
    }

    fn task_events(&self, w: Window) -> SourceResult<Vec<TaskEvent>> {
        let mut out = Vec::new();
        if let Some(g) = &self.events_group {
            out = self.read_event_log(g, w)?;
        }
        if let Some((cluster, service)) = &self.service {
            let seen: HashSet<(String, &'static str, i64)> = out
                .iter()
                .map(|e| (e.task_id.clone(), e.kind.as_str(), e.ts_ms / 1000))
                .collect();
            for e in self.read_described(cluster, service, w)? {
                if !seen.contains(&(e.task_id.clone(), e.kind.as_str(), e.ts_ms / 1000)) {
                    out.push(e);
                }
            }
        }
        if let Some(tg) = &self.target_group {
            self.target_health(tg);
        }
        if self.events_group.is_none() && self.service.is_none() {
            return Err(unavailable(
                "ECS task events",
                "neither task_events_log_group nor cluster/service is configured",
            ));
        }
        out.sort_by_key(|e| e.ts_ms);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_event_kind_round_trips_through_a_state_change() {
        for kind in [
            TaskEventKind::Started,
            TaskEventKind::Healthy,
            TaskEventKind::Unhealthy,
            TaskEventKind::Draining,
            TaskEventKind::Stopped,
            TaskEventKind::OomKilled,
        ] {
            let e = TaskEvent {
                ts_ms: 1_715_508_123_456,
                task_id: "t-a".into(),
                kind,
                exit_code: matches!(kind, TaskEventKind::Stopped | TaskEventKind::OomKilled)
                    .then_some(137),
                reason: match kind {
                    TaskEventKind::OomKilled => {
                        Some("OutOfMemoryError: Container killed due to memory usage".into())
                    }
                    TaskEventKind::Started | TaskEventKind::Healthy => None,
                    _ => Some("Task failed ELB health checks".into()),
                },
                deployment_id: Some("d-0001".into()),
            };
            let sc = state_change_of(&e, "arn:aws:ecs:us-east-1:123456789012:cluster/demo");
            let json = serde_json::to_string(&sc).unwrap();
            let back: TaskStateChange = serde_json::from_str(&json).unwrap();
            let at = parse_ms(&back.detail.updated_at).unwrap();
            assert_eq!(event_of(&back.detail, at), Some(e), "{kind:?}");
        }
    }

    #[test]
    fn an_ecs_oom_stop_is_an_oom_kill() {
        let d = TaskDetail {
            task_arn: "arn:aws:ecs:us-east-1:1:task/c/abc".into(),
            last_status: "STOPPED".into(),
            stopped_reason: Some("Essential container in task exited".into()),
            updated_at: "2026-01-01T00:00:00Z".into(),
            containers: vec![ContainerDetail {
                name: "app".into(),
                exit_code: Some(137),
                reason: Some("OutOfMemoryError: Container killed due to memory usage".into()),
            }],
            ..TaskDetail::default()
        };
        let e = event_of(&d, 0).unwrap();
        assert_eq!(e.kind, TaskEventKind::OomKilled);
        assert_eq!(e.task_id, "abc");
        assert_eq!(e.exit_code, Some(137));
    }
}
