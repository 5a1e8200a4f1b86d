//! `aws worker`, `aws investigate` and `aws export`: the investigator against
//! a deployment in AWS (crates/aws). Settings come from flags or from the
//! environment variables the Terraform `investigator` module gives the
//! worker's task (`INVESTIGATOR_*`), so the same binary runs on a laptop and
//! in ECS. Every problem with them is reported at once, before any request.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use demo_aws::export::export;
use demo_aws::worker::Worker;
use demo_aws::{AwsConfig, AwsError, Clients};
use demo_model::Catalog;
use demo_model::events::ns;

#[derive(Debug, Subcommand)]
pub enum AwsCmd {
    /// Long-poll the alarm queue and investigate each ALARM episode once:
    /// report to S3, summary to SNS, poison messages to the DLQ.
    Worker(WorkerArgs),
    /// Investigate one alarm episode now (read-only credentials suffice) and
    /// print the report.
    Investigate {
        /// Alarm name (as in the catalogue and CloudWatch).
        #[arg(long)]
        alarm: String,
        /// The episode at or before this time (RFC 3339 or epoch ms); default: the latest.
        #[arg(long)]
        at: Option<String>,
        /// Output: md, json or html.
        #[arg(long, default_value = "md")]
        format: String,
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Write a local run's store into AWS (log group, metrics, SSM history,
    /// task-event log group), or into a snapshot file with --snapshot.
    Export {
        /// The run's state directory (`.state/scenarios/NAME-TIME`).
        #[arg(long)]
        run: PathBuf,
        /// The alarm whose episode is exported.
        #[arg(long)]
        alarm: String,
        /// The episode at or before this time (RFC 3339 or epoch ms).
        #[arg(long)]
        at: Option<String>,
        /// Time scale the run used (scenario run --time-scale).
        #[arg(long, default_value_t = 1.0)]
        run_time_scale: f64,
        /// Write a gzip JSON snapshot here instead of calling AWS.
        #[arg(long)]
        snapshot: Option<PathBuf>,
        #[command(flatten)]
        source: SourceArgs,
    },
}

/// Where the service's data lives.
#[derive(Debug, Args)]
pub struct SourceArgs {
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
    /// Endpoint for every service (moto_server on 127.0.0.1 for local tests).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    /// The service's log group (default: the catalogue's).
    #[arg(long, env = "INVESTIGATOR_LOG_GROUP")]
    log_group: Option<String>,
    /// Log group of the EventBridge "ECS Task State Change" events.
    #[arg(long, env = "INVESTIGATOR_TASK_EVENTS_LOG_GROUP")]
    task_events_log_group: Option<String>,
    #[arg(long, env = "INVESTIGATOR_CLUSTER")]
    cluster: Option<String>,
    #[arg(long, env = "INVESTIGATOR_SERVICE")]
    service: Option<String>,
    /// ALB dimension value `app/NAME/ID` (CloudWatch's LoadBalancer dimension).
    #[arg(long, env = "INVESTIGATOR_LOAD_BALANCER")]
    load_balancer: Option<String>,
    /// ALB dimension value `targetgroup/NAME/ID`.
    #[arg(long, env = "INVESTIGATOR_TARGET_GROUP")]
    target_group: Option<String>,
    /// Target group ARN (current target health).
    #[arg(long, env = "INVESTIGATOR_TARGET_GROUP_ARN")]
    target_group_arn: Option<String>,
    /// SSM parameter with the deployment history (default
    /// `/<service>/<environment>/deployments/latest` from the catalogue).
    #[arg(long, env = "INVESTIGATOR_DEPLOYMENT_PARAMETER")]
    deployment_parameter: Option<String>,
    /// GetMetricData granularity in seconds.
    #[arg(long, env = "INVESTIGATOR_METRIC_PERIOD", default_value_t = 60)]
    metric_period: i32,
    #[arg(long, env = "INVESTIGATOR_MAX_LOG_LINES", default_value_t = 200_000)]
    max_log_lines: u64,
    /// Git clone of the service's repository (code correlation).
    #[arg(long, env = "INVESTIGATOR_REPO")]
    repo: Option<PathBuf>,
    /// `git fetch` in --repo before each investigation.
    #[arg(long, env = "INVESTIGATOR_FETCH_REPO")]
    fetch_repo: bool,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    source: SourceArgs,
    #[arg(long, env = "INVESTIGATOR_QUEUE_URL")]
    queue_url: Option<String>,
    #[arg(long, env = "INVESTIGATOR_DLQ_URL")]
    dlq_url: Option<String>,
    /// Receives of a failing message before it goes to the DLQ.
    #[arg(long, env = "INVESTIGATOR_MAX_RECEIVES", default_value_t = 3)]
    max_receives: u32,
    #[arg(long, env = "INVESTIGATOR_BUCKET")]
    bucket: Option<String>,
    #[arg(long, env = "INVESTIGATOR_PREFIX", default_value = "reports/")]
    prefix: String,
    #[arg(long, env = "INVESTIGATOR_SUMMARY_TOPIC_ARN")]
    summary_topic_arn: Option<String>,
    /// DevOps Agent generic webhook URL (optional bridge).
    #[arg(long, env = "INVESTIGATOR_WEBHOOK_URL")]
    webhook_url: Option<String>,
    /// Secrets Manager secret holding the webhook's HMAC key.
    #[arg(long, env = "INVESTIGATOR_WEBHOOK_SECRET_ID")]
    webhook_secret_id: Option<String>,
}

fn config(a: &SourceArgs, catalog: &Catalog) -> AwsConfig {
    let parameter = a.deployment_parameter.clone().unwrap_or_else(|| {
        format!(
            "/{}/{}/deployments/latest",
            catalog.service.name, catalog.service.environment
        )
    });
    let mut c = AwsConfig::new(
        &a.region,
        a.log_group.as_deref().unwrap_or(&catalog.logs.group),
        &parameter,
    );
    c.endpoint_url.clone_from(&a.endpoint_url);
    c.task_events_log_group.clone_from(&a.task_events_log_group);
    c.cluster.clone_from(&a.cluster);
    c.service.clone_from(&a.service);
    c.target_group_arn.clone_from(&a.target_group_arn);
    if let (Some(cl), Some(sv)) = (&a.cluster, &a.service) {
        let ecs = vec![
            ("ClusterName".to_owned(), cl.clone()),
            ("ServiceName".to_owned(), sv.clone()),
        ];
        c.dimensions.insert(ns::ECS.into(), ecs.clone());
        c.dimensions.insert(ns::CONTAINER_INSIGHTS.into(), ecs);
    }
    if let (Some(lb), Some(tg)) = (&a.load_balancer, &a.target_group) {
        c.dimensions.insert(
            ns::ALB.into(),
            vec![
                ("LoadBalancer".to_owned(), lb.clone()),
                ("TargetGroup".to_owned(), tg.clone()),
            ],
        );
    }
    for f in &catalog.metric_filters {
        if !c.namespaces.contains(&f.metric_namespace) {
            c.namespaces.push(f.metric_namespace.clone());
        }
    }
    c.metric_period_s = a.metric_period;
    c.max_log_lines = a.max_log_lines;
    c.repo.clone_from(&a.repo);
    c.fetch_repo = a.fetch_repo;
    c
}

fn check(problems: Vec<String>) -> Result<()> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(crate::commands::usage_error(
            AwsError::Config(problems).to_string(),
        ))
    }
}

fn parse_at(s: Option<&str>) -> Result<Option<i64>> {
    s.map(|s| {
        s.parse::<i64>().or_else(|_| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
                .map_err(|e| {
                    crate::commands::usage_error(format!(
                        "--at {s:?}: expected RFC 3339 or epoch ms ({e})"
                    ))
                })
        })
    })
    .transpose()
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")
}

pub fn command(cmd: AwsCmd) -> Result<()> {
    let catalog = Catalog::embedded();
    match cmd {
        AwsCmd::Worker(a) => {
            let mut c = config(&a.source, &catalog);
            c.queue_url = a.queue_url;
            c.dlq_url = a.dlq_url;
            c.max_receives = a.max_receives;
            c.bucket = a.bucket;
            c.prefix = a.prefix;
            c.summary_topic_arn = a.summary_topic_arn;
            c.webhook_url = a.webhook_url;
            c.webhook_secret_id = a.webhook_secret_id;
            check(c.validate_worker())?;
            runtime()?.block_on(async {
                let clients = Clients::new(&c).await;
                let worker = Worker::new(c, clients, catalog).await?;
                worker
                    .run(async {
                        let _ = tokio::signal::ctrl_c().await;
                    })
                    .await;
                Ok::<(), AwsError>(())
            })?;
            Ok(())
        }
        AwsCmd::Investigate {
            alarm,
            at,
            format,
            source,
        } => {
            let c = config(&source, &catalog);
            let mut problems = c.validate();
            let format: investigator::Format = match format.parse() {
                Ok(f) => f,
                Err(e) => {
                    problems.push(format!("format: {e}"));
                    investigator::Format::Markdown
                }
            };
            check(problems)?;
            let at = parse_at(at.as_deref())?;
            let report = runtime()?.block_on(async {
                let clients = Clients::new(&c).await;
                let t = demo_aws::alarm::find_transition(
                    &clients.cloudwatch,
                    &catalog,
                    &alarm,
                    at,
                    c.time_scale,
                )
                .await?;
                demo_aws::worker::investigate(&c, &clients, &catalog, &t).await
            })?;
            let text = match format {
                investigator::Format::Json => serde_json::to_string_pretty(&report)?,
                investigator::Format::Markdown => investigator::report::markdown::render(&report),
                investigator::Format::Html => investigator::report::html::render(&report),
            };
            print!("{text}");
            Ok(())
        }
        AwsCmd::Export {
            run,
            alarm,
            at,
            run_time_scale,
            snapshot,
            source,
        } => {
            let c = config(&source, &catalog);
            let mut problems = if snapshot.is_some() {
                Vec::new()
            } else {
                c.validate()
            };
            if !(run_time_scale.is_finite() && run_time_scale > 0.0) {
                problems.push(format!(
                    "run_time_scale: {run_time_scale} must be a positive number"
                ));
            }
            check(problems)?;
            let at = parse_at(at.as_deref())?;
            let name = run
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let snap = demo_aws::export::snapshot_of(&run, &name, &alarm, at, run_time_scale)?;
            if let Some(path) = snapshot {
                snap.write_gz(&path)?;
                eprintln!(
                    "{}: {} log lines, {} samples, {} deployments, {} task events",
                    path.display(),
                    snap.data.logs.len(),
                    snap.data.samples.len(),
                    snap.data.deployments.len(),
                    snap.data.task_events.len()
                );
                return Ok(());
            }
            let data = snap
                .data
                .stretched(snap.transition.at_ms, run_time_scale)
                .as_aws_records_it(i64::from(c.metric_period_s.min(60)));
            let cluster_arn = format!(
                "arn:aws:ecs:{}:000000000000:cluster/{}",
                c.region,
                c.cluster.as_deref().unwrap_or("cluster")
            );
            let n = runtime()?.block_on(async {
                let clients = Clients::new(&c).await;
                export(&clients, &c, data, &cluster_arn).await
            })?;
            eprintln!("exported {n:?}");
            Ok(())
        }
    }
}
