//! What the AWS side needs to know: where the data lives (log groups,
//! metric dimensions, SSM parameter, ECS service) and where the worker reads
//! and writes (queue, DLQ, bucket, topic, webhook). Validated without I/O,
//! every problem reported at once, before any client is built.

use std::collections::BTreeMap;
use std::path::PathBuf;

use demo_model::events::ns;

/// The AWS deployment of one service. Field names follow the Terraform
/// outputs they come from (docs/deploy-aws.md).
#[derive(Debug, Clone)]
pub struct AwsConfig {
    /// AWS region (`us-east-1`).
    pub region: String,
    /// Endpoint override for every service (moto in tests); `None` = AWS.
    pub endpoint_url: Option<String>,
    /// The service's log group (`/ecs/devops-agent-demo-dev`).
    pub log_group: String,
    /// Log group holding EventBridge "ECS Task State Change" events for the
    /// service (the Terraform `investigator` module creates the rule).
    pub task_events_log_group: Option<String>,
    /// ECS cluster and service names (deployments, events, tasks).
    pub cluster: Option<String>,
    pub service: Option<String>,
    /// ALB target group ARN (current target health).
    pub target_group_arn: Option<String>,
    /// SSM parameter the deploy workflow overwrites at each deployment; its
    /// history is the deployment history.
    pub deployment_parameter: String,
    /// Service-level dimensions per namespace (`AWS/ECS` → ClusterName,
    /// ServiceName; `AWS/ApplicationELB` → LoadBalancer, TargetGroup). A
    /// listed metric belongs to this service when its dimensions, less the
    /// per-task and per-route ones, are exactly these.
    pub dimensions: BTreeMap<String, Vec<(String, String)>>,
    /// Namespaces listed for series (the catalogue's and the analyzers').
    pub namespaces: Vec<String>,
    /// Granularity of `GetMetricData` in seconds (60 in AWS: standard
    /// resolution; smaller for high-resolution or replayed data).
    pub metric_period_s: i32,
    /// Most log lines one investigation reads; past it, a gap is recorded.
    pub max_log_lines: u64,
    /// Divides the alarm's period (only for replaying a time-scaled local
    /// run; 1 for real AWS data).
    pub time_scale: f64,
    /// Git clone of the service's repository for code correlation; `None`
    /// makes code correlation an investigation gap.
    pub repo: Option<PathBuf>,
    /// `git fetch` in `repo` before each investigation.
    pub fetch_repo: bool,
    /// Alarm queue, its dead-letter queue, receives before the DLQ.
    pub queue_url: Option<String>,
    pub dlq_url: Option<String>,
    pub max_receives: u32,
    /// Visibility timeout after a failed try, in seconds, doubled per
    /// receive (at most 15 minutes).
    pub retry_visibility_s: i32,
    /// Report bucket and key prefix.
    pub bucket: Option<String>,
    pub prefix: String,
    /// Topic for the one-line summaries.
    pub summary_topic_arn: Option<String>,
    /// Managed-agent bridge: webhook URL and the Secrets Manager secret with
    /// its HMAC key. Both or neither.
    pub webhook_url: Option<String>,
    pub webhook_secret_id: Option<String>,
}

impl AwsConfig {
    /// Defaults for the service described by the catalogue, with nothing
    /// about the worker set.
    pub fn new(region: &str, log_group: &str, deployment_parameter: &str) -> AwsConfig {
        AwsConfig {
            region: region.to_owned(),
            endpoint_url: None,
            log_group: log_group.to_owned(),
            task_events_log_group: None,
            cluster: None,
            service: None,
            target_group_arn: None,
            deployment_parameter: deployment_parameter.to_owned(),
            dimensions: BTreeMap::new(),
            namespaces: vec![
                ns::ECS.to_owned(),
                ns::CONTAINER_INSIGHTS.to_owned(),
                ns::ALB.to_owned(),
                ns::APP.to_owned(),
            ],
            metric_period_s: 60,
            max_log_lines: 200_000,
            time_scale: 1.0,
            repo: None,
            fetch_repo: false,
            queue_url: None,
            dlq_url: None,
            max_receives: 3,
            retry_visibility_s: 30,
            bucket: None,
            prefix: "reports/".to_owned(),
            summary_topic_arn: None,
            webhook_url: None,
            webhook_secret_id: None,
        }
    }

    /// Every problem with the settings an investigation needs, each naming
    /// its field; empty when valid. No I/O beyond checking the repo exists.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.region.trim().is_empty() {
            p.push("region: must not be empty".into());
        }
        if self.log_group.trim().is_empty() {
            p.push("log_group: must not be empty".into());
        }
        if !self.deployment_parameter.starts_with('/') {
            p.push(format!(
                "deployment_parameter: {:?} must be an SSM path starting with /",
                self.deployment_parameter
            ));
        }
        if let Some(u) = self
            .endpoint_url
            .as_ref()
            .filter(|u| !(u.starts_with("http://") || u.starts_with("https://")))
        {
            p.push(format!(
                "endpoint_url: {u:?} must start with http:// or https://"
            ));
        }
        if self.metric_period_s < 1 {
            p.push(format!(
                "metric_period_s: {} must be at least 1",
                self.metric_period_s
            ));
        }
        if self.max_log_lines == 0 {
            p.push("max_log_lines: must be at least 1".into());
        }
        if !(self.time_scale.is_finite() && self.time_scale > 0.0) {
            p.push(format!(
                "time_scale: {} must be a positive number",
                self.time_scale
            ));
        }
        if let Some(r) = self.repo.as_ref().filter(|r| !r.exists()) {
            p.push(format!("repo: {} does not exist", r.display()));
        }
        if self.fetch_repo && self.repo.is_none() {
            p.push("fetch_repo: needs repo".into());
        }
        if self.cluster.is_some() != self.service.is_some() {
            p.push("cluster, service: give both or neither".into());
        }
        if self.webhook_url.is_some() != self.webhook_secret_id.is_some() {
            p.push("webhook_url, webhook_secret_id: give both or neither".into());
        }
        if let Some(u) = &self.webhook_url {
            let local = u.starts_with("http://127.0.0.1:") || u.starts_with("http://localhost:");
            if !u.starts_with("https://") && !local {
                p.push(format!(
                    "webhook_url: {u:?} must be https:// (the signature is not a secret, the body is)"
                ));
            }
        }
        p
    }

    /// The worker also needs a queue and a bucket; `max_receives` ≥ 1.
    pub fn validate_worker(&self) -> Vec<String> {
        let mut p = self.validate();
        if self.queue_url.is_none() {
            p.push("queue_url: the worker needs the alarm queue".into());
        }
        if self.bucket.is_none() {
            p.push("bucket: the worker needs the report bucket".into());
        }
        if self.retry_visibility_s < 0 {
            p.push(format!(
                "retry_visibility_s: {} must not be negative",
                self.retry_visibility_s
            ));
        }
        if self.max_receives == 0 {
            p.push("max_receives: must be at least 1".into());
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut c = AwsConfig::new("", "", "no-slash");
        c.time_scale = 0.0;
        c.cluster = Some("c".into());
        c.webhook_url = Some("http://example.com/hook".into());
        let p = c.validate();
        for field in [
            "region:",
            "log_group:",
            "deployment_parameter:",
            "time_scale:",
            "cluster, service:",
            "webhook_url, webhook_secret_id:",
            "webhook_url: \"http://example.com",
        ] {
            assert!(p.iter().any(|m| m.starts_with(field)), "{field} in {p:?}");
        }
        let w = c.validate_worker();
        assert!(w.iter().any(|m| m.starts_with("queue_url:")));
        assert!(w.iter().any(|m| m.starts_with("bucket:")));
    }

    #[test]
    fn a_complete_config_is_valid() {
        let mut c = AwsConfig::new("us-east-1", "/ecs/demo", "/demo/dev/deployments/latest");
        c.queue_url = Some("http://127.0.0.1:1/q".into());
        c.bucket = Some("b".into());
        assert!(c.validate_worker().is_empty(), "{:?}", c.validate_worker());
    }
}
