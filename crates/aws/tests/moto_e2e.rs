//! End to end against moto_server (started here on 127.0.0.1, a free port):
//! a real local scenario run (`tests/fixtures/<scenario>.json.gz`, made by
//! `devops-agent-demo aws export --state-dir ... --snapshot ...` from
//! `scenario run <name> --time-scale 20`) is loaded into a local store and
//! investigated locally, then exported into moto — log group, task-event log
//! group, metrics, SSM deployment history — and its alarm put on the queue
//! as CloudWatch's SNS notification. The worker must write a report to S3
//! whose root cause equals the local investigator's, publish the summary,
//! and write nothing more when the message is redelivered; a poison message
//! must reach the DLQ after `max_receives` receives.
//!
//! moto gaps and what stands in for them (also in docs/deploy-aws.md):
//! GetMetricData ignores the namespace when a query has dimensions (so the
//! Container Insights series get one more dimension here); percentile
//! statistics are not served (the source records a gap and reads
//! TargetResponseTime as the period average);
//! ECS services never start tasks in moto, so task history comes from the
//! EventBridge task-state-change log group only (ListTasks answers empty);
//! DescribeAlarmHistory is missing, which only `aws investigate` uses (unit
//! test on a recorded response in the CLI). Skipped with a loud message
//! only when moto cannot be started and DEMO_REQUIRE_MOTO is unset; `.ci/run`
//! installs moto and sets it, so CI never skips.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use demo_aws::alarm::{parse_body, sns_notification, transition};
use demo_aws::export::{Snapshot, StoreData, export};
use demo_aws::worker::{Handled, Worker};
use demo_aws::{AwsConfig, Clients};
use demo_model::Catalog;
use demo_model::events::{AlarmTransition, ns};
use demo_store::Store;
use investigator::{Investigator, InvestigatorConfig};

struct Moto {
    child: Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts moto_server on 127.0.0.1; `None` when it is not installed.
fn start_moto() -> Option<Moto> {
    let port = free_port().to_string();
    let candidates: [(&str, Vec<&str>); 2] = [
        ("moto_server", vec!["-H", "127.0.0.1", "-p", &port]),
        (
            "python3",
            vec!["-m", "moto.server", "-H", "127.0.0.1", "-p", &port],
        ),
    ];
    for (prog, args) in candidates {
        let Ok(mut child) = Command::new(prog)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            continue;
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break; // exited: not installed (python3 without moto)
            }
            if TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).is_ok() {
                return Some(Moto {
                    child,
                    url: format!("http://127.0.0.1:{port}"),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    None
}

fn moto_or_skip() -> Option<Moto> {
    match start_moto() {
        Some(m) => Some(m),
        None if std::env::var_os("DEMO_REQUIRE_MOTO").is_some() => {
            panic!(
                "moto_server cannot be started and DEMO_REQUIRE_MOTO is set: pip install 'moto[server]'"
            )
        }
        None => {
            eprintln!(
                "\n!!!!!!!! SKIPPED: moto_server is not installed (pip install 'moto[server]'); \
                 the AWS end-to-end test did not run !!!!!!!!\n"
            );
            None
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

const CLUSTER: &str = "devops-agent-demo-dev-cluster";
const SERVICE: &str = "devops-agent-demo-dev-service";
const CLUSTER_ARN: &str =
    "arn:aws:ecs:us-east-1:123456789012:cluster/devops-agent-demo-dev-cluster";

fn config(moto: &Moto, catalog: &Catalog) -> AwsConfig {
    let mut c = AwsConfig::new(
        "us-east-1",
        &catalog.logs.group,
        "/devops-agent-demo/dev/deployments/latest",
    );
    c.endpoint_url = Some(moto.url.clone());
    c.task_events_log_group = Some("/aws/events/ecs/devops-agent-demo-dev".into());
    let ecs = vec![
        ("ClusterName".to_string(), CLUSTER.to_string()),
        ("ServiceName".to_string(), SERVICE.to_string()),
    ];
    c.dimensions.insert(ns::ECS.into(), ecs.clone());
    // moto's GetMetricData ignores the namespace when a query has
    // dimensions, so RunningTaskCount of AWS/ECS and of Container Insights
    // would be summed: one more dimension keeps them apart in moto.
    let mut insights = ecs;
    insights.push((
        "TaskDefinitionFamily".to_string(),
        "devops-agent-demo-dev-task".to_string(),
    ));
    c.dimensions.insert(ns::CONTAINER_INSIGHTS.into(), insights);
    c.dimensions.insert(
        ns::ALB.into(),
        vec![
            (
                "LoadBalancer".to_string(),
                "app/devops-agent-demo-dev/0123456789abcdef".to_string(),
            ),
            (
                "TargetGroup".to_string(),
                "targetgroup/devops-agent-demo-dev/0123456789abcdef".to_string(),
            ),
        ],
    );
    for f in &catalog.metric_filters {
        if !c.namespaces.contains(&f.metric_namespace) {
            c.namespaces.push(f.metric_namespace.clone());
        }
    }
    // The exporter stretches the time-scaled run to real-time pace.
    c.metric_period_s = 1;
    c.repo = Some(repo_root());
    c.max_receives = 2;
    c.retry_visibility_s = 0;
    c.prefix = "reports/".into();
    c
}

fn credentials() -> aws_sdk_sqs::config::Credentials {
    aws_sdk_sqs::config::Credentials::new("testing", "testing", None, None, "moto")
}

/// (category, entity) of the local investigator on exactly what the worker
/// gets: the stretched rows and the transition parsed from the notification.
fn local_root_cause(data: &StoreData, t: &AlarmTransition, dir: &Path) -> String {
    let store = Store::open(dir).unwrap();
    let w = store.writer();
    data.write_to(&w).unwrap();
    let mut t = t.clone();
    t.id = w.transition(t.clone()).unwrap();
    w.flush();
    let inv = Investigator::new(
        InvestigatorConfig {
            state_dir: dir.to_owned(),
            repo: Some(repo_root()),
            catalog: Catalog::embedded(),
            time_scale: 1.0,
        },
        w,
    )
    .unwrap();
    let out = inv.investigate(&t).unwrap();
    format!(
        "{}{}",
        out.top.category,
        out.top.entity.map(|e| format!(" {e}")).unwrap_or_default()
    )
}

async fn setup(c: &Clients, cfg: &mut AwsConfig) -> String {
    let q = c
        .sqs
        .create_queue()
        .queue_name("alarms")
        .send()
        .await
        .unwrap();
    let dlq = c
        .sqs
        .create_queue()
        .queue_name("alarms-dlq")
        .send()
        .await
        .unwrap();
    cfg.queue_url = q.queue_url;
    cfg.dlq_url = dlq.queue_url;
    c.s3.create_bucket().bucket("reports").send().await.unwrap();
    cfg.bucket = Some("reports".into());
    let topic = c
        .sns
        .create_topic()
        .name("investigations")
        .send()
        .await
        .unwrap();
    let topic_arn = topic.topic_arn.unwrap();
    // A queue subscribed to the summary topic, to read what was published.
    let sum = c
        .sqs
        .create_queue()
        .queue_name("summaries")
        .send()
        .await
        .unwrap();
    let sum_url = sum.queue_url.unwrap();
    let sum_arn = c
        .sqs
        .get_queue_attributes()
        .queue_url(&sum_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    c.sns
        .subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(sum_arn)
        .send()
        .await
        .unwrap();
    cfg.summary_topic_arn = Some(topic_arn);
    sum_url
}

async fn count_objects(c: &Clients, prefix: &str) -> usize {
    c.s3.list_objects_v2()
        .bucket("reports")
        .prefix(prefix)
        .send()
        .await
        .unwrap()
        .contents
        .unwrap_or_default()
        .len()
}

/// Polls until the worker handles one message (moto's long poll can
/// return empty).
async fn next(worker: &Worker) -> Handled {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = worker.poll_once().await.unwrap();
        if let Some((_, h)) = got.into_iter().next() {
            return h;
        }
        assert!(Instant::now() < deadline, "no message received in 120 s");
    }
}

fn run_scenario(name: &str) {
    let Some(moto) = moto_or_skip() else { return };
    let catalog = Catalog::embedded();
    let snap = Snapshot::read_gz(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{name}.json.gz")),
    )
    .unwrap();
    // The run at real-time pace and as AWS can hold it (see
    // `StoreData::stretched` and `as_aws_records_it`), and the notification
    // CloudWatch would have sent for its alarm. Both sides get exactly this.
    let data = snap
        .data
        .clone()
        .stretched(snap.transition.at_ms, snap.time_scale)
        .as_aws_records_it(1);
    let body = sns_notification(&snap.transition, &catalog);
    let t = transition(&parse_body(&body).unwrap(), &catalog, 1.0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let local = local_root_cause(&data, &t, dir.path());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut cfg = config(&moto, &catalog);
        let c = Clients::with_credentials(&cfg, Some(credentials())).await;
        let summaries = setup(&c, &mut cfg).await;
        let data = snap
            .data
            .clone()
            .stretched(snap.transition.at_ms, snap.time_scale);
        let n = export(&c, &cfg, data, CLUSTER_ARN).await.unwrap();
        assert!(
            n.log_lines > 100 && n.samples > 100 && n.task_events > 0,
            "{n:?}"
        );

        let queue = cfg.queue_url.clone().unwrap();
        c.sqs
            .send_message()
            .queue_url(&queue)
            .message_body(&body)
            .send()
            .await
            .unwrap();
        let mut worker = Worker::new(cfg.clone(), c.clone(), catalog.clone())
            .await
            .unwrap();
        worker.wait_s = 1;

        let Handled::Investigated {
            alarm,
            keys,
            root_cause,
        } = next(&worker).await
        else {
            panic!("first delivery was not investigated");
        };
        assert_eq!(alarm, snap.transition.alarm);
        eprintln!("{name}: local {local:?}, AWS {root_cause:?}");
        assert_eq!(root_cause, local, "{name}: AWS root cause vs local");
        let json = worker.bucket().get_text(&keys.json).await.unwrap();
        let report: investigator::Report = serde_json::from_str(&json).unwrap();
        assert_eq!(
            format!(
                "{}{}",
                report.root_cause.category,
                report
                    .root_cause
                    .entity
                    .as_deref()
                    .map(|e| format!(" {e}"))
                    .unwrap_or_default()
            ),
            local
        );
        assert!(
            worker
                .bucket()
                .get_text(&keys.html)
                .await
                .unwrap()
                .contains("<svg")
        );
        let prefix = format!("reports/{}/", snap.transition.alarm);
        assert_eq!(count_objects(&c, &prefix).await, 3, "json, md, html");

        // The summary reached the topic, with the report's location.
        let got = c
            .sqs
            .receive_message()
            .queue_url(&summaries)
            .wait_time_seconds(2)
            .send()
            .await
            .unwrap();
        let msg = got.messages.unwrap_or_default();
        assert_eq!(msg.len(), 1, "one summary");
        assert!(msg[0].body().unwrap_or_default().contains(&keys.html));

        // Redelivery (same message again): no second report, no summary.
        c.sqs
            .send_message()
            .queue_url(&queue)
            .message_body(&body)
            .send()
            .await
            .unwrap();
        let h = next(&worker).await;
        assert!(matches!(h, Handled::Duplicate { .. }), "{h:?}");
        assert_eq!(count_objects(&c, &prefix).await, 3);
        assert_eq!(count_objects(&c, "reports/episodes/").await, 1);
        let again = c
            .sqs
            .receive_message()
            .queue_url(&summaries)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        assert!(
            again.messages.unwrap_or_default().is_empty(),
            "no second summary"
        );
    });
}

#[test]
fn bad_deploy_in_moto_matches_the_local_investigator() {
    run_scenario("bad-deploy");
}

#[test]
fn memory_leak_in_moto_matches_the_local_investigator() {
    run_scenario("memory-leak");
}

#[test]
fn unhealthy_targets_in_moto_matches_the_local_investigator() {
    run_scenario("unhealthy-targets");
}

#[test]
fn a_poison_message_goes_to_the_dlq_after_max_receives() {
    let Some(moto) = moto_or_skip() else { return };
    let catalog = Catalog::embedded();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut cfg = config(&moto, &catalog);
        let c = Clients::with_credentials(&cfg, Some(credentials())).await;
        setup(&c, &mut cfg).await;
        let queue = cfg.queue_url.clone().unwrap();
        c.sqs
            .send_message()
            .queue_url(&queue)
            .message_body("{not json")
            .send()
            .await
            .unwrap();
        let mut worker = Worker::new(cfg.clone(), c.clone(), catalog).await.unwrap();
        worker.wait_s = 1;
        let first = next(&worker).await;
        assert!(
            matches!(first, Handled::Retry { receives: 1, .. }),
            "{first:?}"
        );
        let second = next(&worker).await;
        let Handled::DeadLettered { error, receives: 2 } = second else {
            panic!("second receive not dead-lettered: {second:?}");
        };
        assert!(error.contains("body is not JSON"), "{error}");
        let dlq = c
            .sqs
            .receive_message()
            .queue_url(cfg.dlq_url.as_deref().unwrap())
            .message_attribute_names("All")
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        assert_eq!(dlq.len(), 1);
        assert_eq!(dlq[0].body(), Some("{not json"));
        let attrs = dlq[0].message_attributes().unwrap();
        assert!(
            attrs["error"]
                .string_value()
                .unwrap()
                .contains("body is not JSON")
        );
        // Nothing left on the alarm queue.
        let left = c
            .sqs
            .receive_message()
            .queue_url(&queue)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        assert!(left.messages.unwrap_or_default().is_empty());
    });
}
