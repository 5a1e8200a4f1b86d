//! Regression checks for the AWS findings of issue 9 (file:line at 3e1a01e)
//! and the investigator module: each evaluates the Terraform or reads the
//! workflows, so the finding cannot come back under another spelling.

use demo_infra_tests::{Module, attr, expect_attr, nested, repo_root};
use hcl::{Block, Expression};

fn workflow(name: &str) -> serde_yaml_ng::Value {
    let path = repo_root().join(".github/workflows").join(name);
    serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn runs(job: &serde_yaml_ng::Value) -> Vec<String> {
    job["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|s| s["run"].as_str().map(str::to_owned))
        .collect()
}

/// A block's HCL with every space removed (formatting-independent).
fn src(b: &Block) -> String {
    hcl::to_string(b)
        .unwrap()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}

fn text(e: Option<&Expression>) -> String {
    e.map(|e| {
        e.to_string()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect()
    })
    .unwrap_or_default()
}

/// (sid, actions, resources) as source text, per statement.
fn statements(doc: &Block) -> Vec<(String, String, String)> {
    nested(doc.body(), "statement")
        .map(|s| {
            (
                text(attr(s.body(), "sid")),
                text(attr(s.body(), "actions")),
                text(attr(s.body(), "resources")),
            )
        })
        .collect()
}

/// 3e1a01e: the plan role trusted `pull_request` and could write `plans/*`,
/// so a pull request could replace the plan that apply later applied.
#[test]
fn regression_a_pull_request_cannot_write_the_saved_plan() {
    let boot = Module::load("bootstrap").unwrap();
    let main_trust = src(boot.data("aws_iam_policy_document", "plan_assume"));
    assert!(
        !main_trust.contains("pull_request"),
        "main plan role trusts PRs"
    );
    let pr_trust = src(boot.data("aws_iam_policy_document", "pr_plan_assume"));
    assert!(pr_trust.contains(":pull_request"));
    for (sid, actions, resources) in
        statements(boot.data("aws_iam_policy_document", "pr_plan_state"))
    {
        if actions.contains("PutObject") || actions.contains("DeleteObject") {
            assert!(
                !resources.contains("plans/") && !resources.contains("/*\""),
                "{sid}: PR role may write {resources}"
            );
        }
    }
    assert_eq!(
        expect_attr(
            boot.resource("aws_iam_role", "terraform_pr_plan"),
            "assume_role_policy"
        )
        .to_string(),
        "data.aws_iam_policy_document.pr_plan_assume.json"
    );
    let wf = workflow("terraform.yml");
    let plan = &wf["jobs"]["plan"];
    let creds = plan["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|s| s["with"]["role-to-assume"].is_string())
        .unwrap();
    let role = creds["with"]["role-to-assume"].as_str().unwrap();
    assert!(
        role.contains("github.event_name == 'pull_request' && vars.AWS_TERRAFORM_PR_PLAN_ROLE_ARN"),
        "{role}"
    );
    // The apply job checks the plan it fetched against the plan job's checksum.
    assert!(
        plan["outputs"]["plan_sha256"]
            .as_str()
            .is_some_and(|s| s.contains("sha256")),
        "plan job publishes the checksum"
    );
    let apply = runs(&wf["jobs"]["apply"]);
    assert!(
        apply
            .iter()
            .any(|r| r.contains("s3 cp") && r.contains("sha256sum --check")),
        "{apply:?}"
    );
}

/// 3e1a01e: deploy ran beside CI on every push, and re-deploying a commit
/// rebuilt `:$GITHUB_SHA` into an immutable tag (push rejected).
#[test]
fn regression_deploy_follows_ci_and_reuses_the_commits_image() {
    let wf = workflow("deploy.yml");
    assert!(
        wf["on"].get("push").is_none(),
        "deploy must not start on push"
    );
    let run = &wf["on"]["workflow_run"];
    assert_eq!(run["workflows"][0].as_str(), Some("ci"));
    assert_eq!(run["types"][0].as_str(), Some("completed"));
    let cond = wf["jobs"]["deploy"]["if"].as_str().unwrap();
    assert!(
        cond.contains("workflow_run.conclusion == 'success'"),
        "{cond}"
    );
    let build = runs(&wf["jobs"]["deploy"])
        .into_iter()
        .find(|r| r.contains("docker build"))
        .unwrap();
    let check = build.find("describe-images").unwrap();
    assert!(
        check < build.find("docker build").unwrap(),
        "existence check first"
    );
    assert!(build.contains("reusing"), "{build}");
    assert!(
        !build.contains("date -u"),
        "the build date must not change per run"
    );
}

/// 3e1a01e: actions pinned by tag. (`.ci/infra-checks.sh` checks every
/// workflow line too.)
#[test]
fn regression_actions_are_pinned_to_commits() {
    let re = regex::Regex::new(r"^[^@\s]+@[0-9a-f]{40}$").unwrap();
    for name in ["ci.yml", "deploy.yml", "terraform.yml"] {
        let wf = workflow(name);
        for (job, j) in wf["jobs"].as_mapping().unwrap() {
            for s in j["steps"].as_sequence().unwrap() {
                if let Some(u) = s["uses"].as_str() {
                    assert!(re.is_match(u), "{name} {job:?}: {u}");
                }
            }
        }
    }
}

/// 3e1a01e: `faults_enabled` without a certificate sent x-fault-token in
/// clear text; `/metrics` was public through the ALB.
#[test]
fn regression_faults_need_https_and_metrics_are_not_public() {
    let env = Module::load("envs/dev").unwrap();
    let v = env.variable("faults_enabled");
    let val = nested(v.body(), "validation").next().expect("a validation");
    let cond = expect_attr(val, "condition").to_string();
    assert!(
        cond.contains("!var.faults_enabled") && cond.contains("var.certificate_arn != null"),
        "{cond}"
    );
    let lb = Module::load("modules/load_balancer").unwrap();
    let rule = src(lb.resource("aws_lb_listener_rule", "no_public_metrics"));
    assert!(
        rule.contains("\"/metrics\"") && rule.contains("fixed-response") && rule.contains("404")
    );
    // On whichever listener forwards to the targets.
    assert!(
        rule.contains("aws_lb_listener.https[0].arn") && rule.contains("aws_lb_listener.http.arn")
    );
}

/// 3e1a01e: no dashboard. One is generated from the catalogue's alarms.
#[test]
fn regression_a_dashboard_is_generated_from_the_catalogue() {
    let obs = Module::load("modules/observability").unwrap();
    let dash = src(obs.resource("aws_cloudwatch_dashboard", "service"));
    assert!(dash.contains("local.dashboard_alarm_widgets"));
    let widgets = obs
        .locals()
        .find(|a| a.key.as_str() == "dashboard_alarm_widgets")
        .unwrap()
        .expr
        .to_string();
    assert!(widgets.contains("var.catalog.alarms") && widgets.contains("a.threshold"));
    let routes = obs
        .locals()
        .find(|a| a.key.as_str() == "dashboard_route_errors")
        .unwrap()
        .expr
        .to_string();
    assert!(routes.contains("by bin(1m), route"), "{routes}");
}

/// Issue 9: the DevOps Agent role trusted only `type = "AWS"` principals;
/// the agent assumes it as the aidevops service, limited to this account.
#[test]
fn the_agent_role_trusts_the_devops_agent_service_with_source_conditions() {
    let iam = Module::load("modules/iam").unwrap();
    let trust = src(iam.data("aws_iam_policy_document", "agent_assume"));
    assert!(trust.contains("\"aidevops.amazonaws.com\""), "{trust}");
    assert!(trust.contains("aws:SourceAccount") && trust.contains("aws:SourceArn"));
    assert!(trust.contains(":agentspace/*"));
}

/// The investigator module: bucket private, encrypted, versioned, with a
/// lifecycle; the worker's role reads and consumes, writes only reports,
/// summaries and dead letters; queue age and DLQ depth are alarmed.
#[test]
fn the_investigator_module_is_private_least_privilege_and_watched() {
    let m = Module::load("modules/investigator").unwrap();
    let pab = src(m.resource("aws_s3_bucket_public_access_block", "reports"));
    for k in [
        "block_public_acls",
        "block_public_policy",
        "ignore_public_acls",
        "restrict_public_buckets",
    ] {
        assert!(pab.contains(&format!("{k}=true")), "{k}");
    }
    assert!(
        src(m.resource(
            "aws_s3_bucket_server_side_encryption_configuration",
            "reports"
        ))
        .contains("aws:kms")
    );
    assert!(src(m.resource("aws_s3_bucket_versioning", "reports")).contains("Enabled"));
    assert!(
        src(m.resource("aws_s3_bucket_lifecycle_configuration", "reports")).contains("expiration")
    );
    let svc = src(m.resource("aws_ecs_service", "worker"));
    assert!(svc.contains("desired_count=1") && svc.contains("assign_public_ip=false"));
    let td = src(m.resource("aws_ecs_task_definition", "worker"));
    assert!(
        td.contains("\"worker\"") && td.contains("\"aws\""),
        "runs `aws worker`"
    );

    let writes = [
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:SendMessage",
        "s3:PutObject",
        "sns:Publish",
        "kms:GenerateDataKey",
    ];
    for (sid, actions, resources) in statements(m.data("aws_iam_policy_document", "worker")) {
        for a in actions.trim_matches(['[', ']']).split(',') {
            let a = a.trim().trim_matches('"');
            if a.is_empty() {
                continue;
            }
            assert!(!a.contains('*'), "{sid}: wildcard action {a}");
            let verb = a.split(':').nth(1).unwrap_or("");
            let read = ["Describe", "List", "Get", "Filter", "Receive", "Decrypt"]
                .iter()
                .any(|p| verb.starts_with(p));
            assert!(read || writes.contains(&a), "{sid}: worker may {a}");
        }
        if actions.contains("sqs:SendMessage") {
            assert_eq!(
                resources, "[var.alarm_dlq_arn]",
                "SendMessage only to the DLQ"
            );
        }
        if actions.contains("s3:PutObject") {
            assert!(
                resources.contains("aws_s3_bucket.reports.arn"),
                "{resources}"
            );
        }
    }
    for alarm in ["queue_age", "dlq_depth"] {
        let a = src(m.resource("aws_cloudwatch_metric_alarm", alarm));
        assert!(a.contains("AWS/SQS"), "{alarm}");
    }
    // Wired into the environment, fed by the alarm queue and its DLQ.
    let env = Module::load("envs/dev").unwrap();
    let call = env.module_call("investigator");
    assert_eq!(
        expect_attr(call, "alarm_queue_url").to_string(),
        "module.observability.alarm_queue_url"
    );
    assert_eq!(
        expect_attr(call, "alarm_dlq_arn").to_string(),
        "module.observability.alarm_dlq_arn"
    );
}

/// Issue 9: the optional Agent Space is off by default, made with the
/// awscc resources of AWS's guide, and uses the read-only agent role.
#[test]
fn the_agent_space_is_optional_and_off_by_default() {
    let env = Module::load("envs/dev").unwrap();
    let var = env.variable("agent_space_enabled");
    assert_eq!(text(attr(var.body(), "default")), "false");
    let call = env.module_call("agent_space");
    assert_eq!(
        expect_attr(call, "count").to_string(),
        "var.agent_space_enabled ? 1 : 0"
    );
    assert_eq!(
        expect_attr(call, "agent_role_arn").to_string(),
        "module.iam.agent_role_arn"
    );
    let m = Module::load("modules/agent_space").unwrap();
    m.resource("awscc_devopsagent_agent_space", "this");
    let assoc = src(m.resource("awscc_devopsagent_association", "account"));
    assert!(assoc.contains("service_id=\"aws\""), "{assoc}");
    assert!(
        assoc.contains("account_type=\"monitor\"")
            && assoc.contains("assumable_role_arn=var.agent_role_arn")
    );
}
