//! Regression tests, one per bug of the original project's infrastructure,
//! each proving the bug cannot come back: they evaluate the Terraform (and
//! read the workflows) rather than grep for one spelling of the fix.

mod common;

use std::collections::BTreeSet;

use demo_infra_tests::{
    Module, Scope, attr, describe, expect_attr, nested, repo_root, terraform_root,
};
use hcl::{Block, Expression, Value};

fn string(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

/// Every module and root under infra/terraform.
fn all_modules() -> Vec<Module> {
    let mut dirs = vec![
        terraform_root().join("envs/dev"),
        terraform_root().join("bootstrap"),
    ];
    for e in std::fs::read_dir(terraform_root().join("modules")).unwrap() {
        dirs.push(e.unwrap().path());
    }
    dirs.iter().map(|d| Module::load_dir(d).unwrap()).collect()
}

/// One `statement` of an `aws_iam_policy_document`.
#[derive(Debug)]
struct Statement {
    sid: String,
    effect: String,
    actions: Vec<String>,
    resources: Vec<String>,
    block: Block,
}

fn statements(doc: &Block) -> Vec<Statement> {
    let lit = Scope::default();
    nested(doc.body(), "statement")
        .map(|s| {
            // Literal strings as values, references as their source text.
            let strings = |key: &str| -> Vec<String> {
                match attr(s.body(), key) {
                    Some(Expression::Array(items)) => items
                        .iter()
                        .map(|e| match lit.eval(e) {
                            Ok(Value::String(v)) => v,
                            _ => e.to_string(),
                        })
                        .collect(),
                    Some(e) => vec![e.to_string()],
                    None => vec![],
                }
            };
            Statement {
                sid: attr(s.body(), "sid")
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
                effect: attr(s.body(), "effect")
                    .and_then(|e| lit.eval(e).ok())
                    .map_or("Allow".to_string(), |v| string(&v).to_string()),
                actions: strings("actions"),
                resources: strings("resources"),
                block: s.clone(),
            }
        })
        .collect()
}

fn allowed_actions(doc: &Block) -> BTreeSet<String> {
    statements(doc)
        .into_iter()
        .filter(|s| s.effect == "Allow")
        .flat_map(|s| s.actions)
        .collect()
}

fn workflow(name: &str) -> serde_yaml_ng::Value {
    let path = repo_root().join(".github/workflows").join(name);
    serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn steps(job: &serde_yaml_ng::Value) -> &Vec<serde_yaml_ng::Value> {
    job["steps"].as_sequence().expect("a job with steps")
}

/// Original: port 80 redirected to an HTTPS listener that did not exist
/// without a certificate, so the service answered nothing.
#[test]
fn regression_http_redirects_only_when_an_https_listener_exists() {
    let lb = Module::load("modules/load_balancer").unwrap();
    let http = lb.resource("aws_lb_listener", "http");
    let https = lb.resource("aws_lb_listener", "https");
    let action = nested(http.body(), "default_action").next().unwrap();
    let redirect = nested(action.body(), "dynamic")
        .find(|d| d.labels()[0].as_str() == "redirect")
        .expect("the redirect is a dynamic block");

    for (cert, https_listeners, http_action) in [
        (Value::Null, 0, "forward"),
        (
            Value::from("arn:aws:acm:us-east-1:123456789012:certificate/x"),
            1,
            "redirect",
        ),
    ] {
        let mut s = Scope::for_module(&lb).with(&["var", "certificate_arn"], cert.clone());
        s.set(
            &["aws_lb_target_group", "app", "arn"],
            Value::from("arn:tg"),
        );
        s.resolve_locals(&lb);
        assert_eq!(
            s.eval_attr(https, "count"),
            Value::from(https_listeners),
            "HTTPS listeners with certificate {cert}"
        );
        assert_eq!(
            string(&s.eval_attr(action, "type")),
            http_action,
            "certificate {cert}"
        );
        let redirects = s.eval_attr(redirect, "for_each");
        let n = redirects.as_array().map_or(0, Vec::len);
        if http_action == "forward" {
            assert_eq!(n, 0, "no redirect block without a certificate");
            assert_eq!(
                s.eval_attr(action, "target_group_arn"),
                Value::from("arn:tg")
            );
        } else {
            assert_eq!(n, 1);
            assert_eq!(s.eval_attr(action, "target_group_arn"), Value::Null);
        }
    }

    // The HTTPS listener, when it exists, uses a TLS 1.3/1.2-only policy.
    assert_eq!(
        expect_attr(https, "ssl_policy").to_string(),
        "var.ssl_policy"
    );
    let policy = lb.variable("ssl_policy");
    let default = Scope::default().eval_attr(policy, "default");
    assert!(
        string(&default).starts_with("ELBSecurityPolicy-TLS13-"),
        "{default}"
    );

    // Invalid headers are dropped before they reach the service.
    let alb = lb.resource("aws_lb", "this");
    assert_eq!(
        Scope::default().eval_attr(alb, "drop_invalid_header_fields"),
        Value::Bool(true)
    );
}

/// Original: a space-delimited filter (`[..., level=ERROR, ...]`) that never
/// matched the service's JSON log lines, so ErrorCount stayed at zero.
#[test]
fn regression_error_count_uses_a_json_filter_pattern() {
    let catalog = demo_model::Catalog::embedded();
    let f = catalog
        .metric_filters
        .iter()
        .find(|f| f.metric_name == "ErrorCount")
        .expect("an ErrorCount filter in the catalogue");
    let p = f.pattern.trim();
    assert!(
        p.starts_with('{') && p.ends_with('}'),
        "not a JSON filter: {p}"
    );
    assert!(
        p.contains("$.level"),
        "does not select the JSON `level` field: {p}"
    );
    assert!(!p.starts_with('['), "space-delimited filter: {p}");

    // And Terraform uses that pattern, not one of its own.
    let obs = Module::load("modules/observability").unwrap();
    let filter = obs.resource("aws_cloudwatch_log_metric_filter", "catalog");
    assert_eq!(
        expect_attr(filter, "pattern").to_string(),
        "each.value.pattern"
    );
}

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Original: the task definition ran `:latest` while the pipeline pushed
/// SHA tags, so deployments did not change what ran.
#[test]
fn regression_the_task_definition_cannot_use_latest() {
    let ecs = Module::load("modules/ecs_service").unwrap();
    let var = ecs.variable("image_tag");
    let validation = nested(var.body(), "validation")
        .next()
        .expect("image_tag is validated");
    for (tag, ok) in [
        (SHA, true),
        (&SHA[..7], true),
        (DIGEST, true),
        ("latest", false),
        ("LATEST", false),
        ("main", false),
        ("v1.2.3", false),
        ("", false),
        ("0123456789abcdef0123456789abcdef01234567:latest", false),
    ] {
        let s = Scope::default().with(&["var", "image_tag"], Value::from(tag));
        assert_eq!(
            s.eval_attr(validation, "condition"),
            Value::Bool(ok),
            "image_tag {tag:?} accepted = {ok}"
        );
    }

    // The image reference is pinned: by tag in an immutable repository, or by digest.
    for (tag, want) in [
        (SHA.to_string(), format!("repo:{SHA}")),
        (DIGEST.to_string(), format!("repo@{DIGEST}")),
    ] {
        let mut s = Scope::for_module(&ecs)
            .with(&["var", "repository_url"], Value::from("repo"))
            .with(&["var", "image_tag"], Value::from(tag));
        s.resolve_locals(&ecs);
        assert_eq!(s.get(&["local", "image"]), Some(&Value::from(want)));
    }

    // A :latest image fails the task definition's precondition too.
    let td = ecs.resource("aws_ecs_task_definition", "app");
    let lifecycle = nested(td.body(), "lifecycle").next().unwrap();
    let pre = nested(lifecycle.body(), "precondition")
        .next()
        .expect("a precondition");
    let s = Scope::default().with(&["local", "image"], Value::from("repo:latest"));
    assert_eq!(s.eval_attr(pre, "condition"), Value::Bool(false));

    let registry = Module::load("modules/registry").unwrap();
    let repo = registry.resource("aws_ecr_repository", "this");
    assert_eq!(
        Scope::default().eval_attr(repo, "image_tag_mutability"),
        Value::from("IMMUTABLE")
    );
    let scan = nested(repo.body(), "image_scanning_configuration")
        .next()
        .unwrap();
    assert_eq!(
        Scope::default().eval_attr(scan, "scan_on_push"),
        Value::Bool(true)
    );
    registry.resource("aws_ecr_lifecycle_policy", "this");

    // The deploy workflow deploys the digest it just pushed.
    let text = std::fs::read_to_string(repo_root().join(".github/workflows/deploy.yml")).unwrap();
    assert!(!text.contains(":latest"), "deploy.yml mentions :latest");
    assert!(
        text.contains("@$digest"),
        "deploy.yml must deploy by digest"
    );
}

/// Original: the commit message was interpolated into a shell step
/// (`${{ github.event.head_commit.message }}` inside `run:`), a script
/// injection. Ours passes every expression through `env:`.
#[test]
fn regression_no_workflow_interpolates_expressions_into_scripts() {
    let dir = repo_root().join(".github/workflows");
    let mut checked = 0;
    for name in ["deploy.yml", "terraform.yml"] {
        let wf = workflow(name);
        for (job_name, job) in wf["jobs"].as_mapping().unwrap() {
            for step in steps(job) {
                for key in ["run", "script"] {
                    let script = step
                        .get(key)
                        .or_else(|| step.get("with").and_then(|w| w.get(key)))
                        .and_then(|s| s.as_str());
                    if let Some(script) = script {
                        checked += 1;
                        assert!(
                            !script.contains("${{"),
                            "{name} job {job_name:?} step {:?}: `${{{{ }}}}` inside a script",
                            step.get("name")
                        );
                    }
                }
            }
        }
    }
    assert!(
        checked >= 8,
        "expected scripts to check in {}",
        dir.display()
    );

    let deploy = workflow("deploy.yml");
    let record = steps(&deploy["jobs"]["deploy"])
        .iter()
        .find(|s| s["name"].as_str().is_some_and(|n| n.contains("metadata")))
        .expect("a step recording deployment metadata");
    assert_eq!(
        record["env"]["COMMIT_MESSAGE"].as_str(),
        // deploy runs on workflow_run (after ci): the commit is the run's.
        Some("${{ github.event.workflow_run.head_commit.message }}")
    );
    let run = record["run"].as_str().unwrap();
    for field in [
        "sha",
        "message",
        "author",
        "image_digest",
        "task_definition",
        "previous_task_definition",
        "time",
    ] {
        assert!(
            run.contains(&format!("{field}: $")),
            "metadata lacks {field}"
        );
    }
    assert!(run.contains("aws ssm put-parameter"));
}

/// Original: the apply job's condition could never be true for the events
/// the workflow ran on. Ours runs on pushes to main and applies the plan
/// that the plan job saved.
#[test]
fn regression_apply_runs_on_main_from_the_saved_plan() {
    let wf = workflow("terraform.yml");
    let branches = wf["on"]["push"]["branches"]
        .as_sequence()
        .expect("push trigger");
    assert!(branches.iter().any(|b| b.as_str() == Some("main")));
    assert!(
        wf["on"].get("pull_request").is_some(),
        "plans on pull requests"
    );

    let plan = &wf["jobs"]["plan"];
    let plan_runs: Vec<&str> = steps(plan)
        .iter()
        .filter_map(|s| s["run"].as_str())
        .collect();
    assert!(plan_runs.iter().any(|r| r.contains("fmt -check")));
    assert!(plan_runs.iter().any(|r| r.contains("validate")));
    assert!(
        plan_runs
            .iter()
            .any(|r| r.contains("plan") && r.contains("-out=tfplan"))
    );
    assert!(
        plan_runs
            .iter()
            .any(|r| r.contains("s3 cp") && r.contains("PLAN_KEY"))
    );

    let apply = &wf["jobs"]["apply"];
    assert_eq!(apply["needs"].as_str(), Some("plan"));
    let cond = apply["if"].as_str().unwrap();
    assert!(cond.contains("refs/heads/main"), "{cond}");
    assert!(
        cond.contains("github.event_name != 'pull_request'"),
        "{cond}"
    );
    assert!(!cond.contains("== 'pull_request'"), "{cond}");
    let apply_runs: Vec<&str> = steps(apply)
        .iter()
        .filter_map(|s| s["run"].as_str())
        .collect();
    assert!(
        apply_runs
            .iter()
            .any(|r| r.contains("s3 cp") && r.contains("tfplan"))
    );
    assert!(
        apply_runs
            .iter()
            .any(|r| r.contains(" apply ") && r.trim_end().ends_with("tfplan")),
        "apply must apply the saved plan file: {apply_runs:?}"
    );
}

/// Original: the DevOps agent's role could not read CloudWatch or ECS.
#[test]
fn regression_agent_role_reads_cloudwatch_ecs_and_logs_and_writes_nothing() {
    let iam = Module::load("modules/iam").unwrap();
    let actions = allowed_actions(iam.data("aws_iam_policy_document", "agent"));
    for needed in [
        "ecs:DescribeClusters",
        "ecs:DescribeServices",
        "ecs:DescribeTasks",
        "ecs:ListTasks",
        "ecs:DescribeTaskDefinition",
        "cloudwatch:GetMetricData",
        "cloudwatch:DescribeAlarms",
        "cloudwatch:DescribeAlarmHistory",
        "logs:FilterLogEvents",
        "logs:GetLogEvents",
        "logs:StartQuery",
        "logs:GetQueryResults",
        "elasticloadbalancing:DescribeTargetHealth",
        "elasticloadbalancing:DescribeTargetGroups",
        "ec2:DescribeSubnets",
        "ec2:DescribeSecurityGroups",
        "ecr:DescribeImages",
        "ssm:GetParameterHistory",
        "sqs:ReceiveMessage",
    ] {
        assert!(actions.contains(needed), "agent role lacks {needed}");
    }
    // Read-only, apart from consuming its own alarm queue.
    let consume = [
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:ReceiveMessage",
        "kms:Decrypt",
    ];
    for a in &actions {
        let verb = a.split(':').nth(1).unwrap();
        let read = [
            "Describe",
            "List",
            "Get",
            "FilterLogEvents",
            "StartQuery",
            "StopQuery",
        ]
        .iter()
        .any(|p| verb.starts_with(p));
        assert!(read || consume.contains(&a.as_str()), "agent role may {a}");
        assert!(!a.contains('*'), "wildcard action {a}");
    }
    // The env hands the agent the alarm queue it reads.
    let env = Module::load("envs/dev").unwrap();
    assert_eq!(
        expect_attr(env.module_call("iam"), "alarm_queue_arn").to_string(),
        "module.observability.alarm_queue_arn"
    );
}

/// Original: ECS Exec was enabled without the task role permissions it needs.
#[test]
fn regression_ecs_exec_has_its_permissions() {
    let ecs = Module::load("modules/ecs_service").unwrap();
    let svc = ecs.resource("aws_ecs_service", "app");
    assert_eq!(
        Scope::default().eval_attr(svc, "enable_execute_command"),
        Value::Bool(true)
    );
    let td = ecs.resource("aws_ecs_task_definition", "app");
    assert_eq!(
        expect_attr(td, "task_role_arn").to_string(),
        "var.task_role_arn"
    );

    let env = Module::load("envs/dev").unwrap();
    assert_eq!(
        expect_attr(env.module_call("ecs_service"), "task_role_arn").to_string(),
        "module.iam.task_role_arn"
    );

    let iam = Module::load("modules/iam").unwrap();
    let task = allowed_actions(iam.data("aws_iam_policy_document", "task"));
    for needed in [
        "ssmmessages:CreateControlChannel",
        "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel",
        "logs:PutLogEvents",
        "kms:Decrypt",
    ] {
        assert!(
            task.contains(needed),
            "task role lacks {needed} for ECS Exec"
        );
    }
    let role = iam.resource("aws_iam_role_policy", "task");
    assert_eq!(
        expect_attr(role, "role").to_string(),
        "aws_iam_role.task.id"
    );
}

/// Original: an example with one availability zone, which an ALB rejects.
#[test]
fn regression_at_least_two_availability_zones() {
    let env = Module::load("envs/dev").unwrap();
    let azs = env.variable("availability_zones");
    let default = Scope::default().eval_attr(azs, "default");
    let list: BTreeSet<&str> = default.as_array().unwrap().iter().map(string).collect();
    assert!(list.len() >= 2, "default AZs: {default}");

    for module in [&env, &Module::load("modules/network").unwrap()] {
        let v = module.variable("availability_zones");
        let validation = nested(v.body(), "validation")
            .next()
            .expect("AZ count is validated");
        for (azs, ok) in [
            (vec!["us-east-1a"], false),
            (vec!["us-east-1a", "us-east-1b"], true),
        ] {
            let value = Value::Array(azs.iter().map(|a| Value::from(*a)).collect());
            let s = Scope::default().with(&["var", "availability_zones"], value);
            assert_eq!(
                s.eval_attr(validation, "condition"),
                Value::Bool(ok),
                "{}",
                describe(v)
            );
        }
    }

    let net = Module::load("modules/network").unwrap();
    for subnet in ["public", "private"] {
        let b = net.resource("aws_subnet", subnet);
        assert_eq!(
            expect_attr(b, "count").to_string(),
            "length(var.availability_zones)"
        );
    }
    let lb = Module::load("modules/load_balancer").unwrap();
    assert_eq!(
        expect_attr(lb.resource("aws_lb", "this"), "subnets").to_string(),
        "var.public_subnet_ids"
    );
}

/// Original: static AWS keys in CI. Ours: GitHub OIDC only, and the deploy
/// role trusts only this repository's deploy branch.
#[test]
fn regression_no_static_keys_and_the_deploy_role_trusts_one_repo_branch() {
    for m in all_modules() {
        for forbidden in ["aws_iam_access_key", "aws_iam_user"] {
            assert_eq!(
                m.resources_of_type(forbidden).count(),
                0,
                "{} creates {forbidden}",
                m.dir.display()
            );
        }
    }
    for name in ["deploy.yml", "terraform.yml"] {
        let text =
            std::fs::read_to_string(repo_root().join(".github/workflows").join(name)).unwrap();
        for forbidden in [
            "aws-access-key-id",
            "aws-secret-access-key",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_ACCESS_KEY_ID",
        ] {
            assert!(!text.contains(forbidden), "{name} uses {forbidden}");
        }
        assert!(
            text.contains("role-to-assume"),
            "{name} assumes a role via OIDC"
        );
        let wf = workflow(name);
        for (job_name, job) in wf["jobs"].as_mapping().unwrap() {
            assert_eq!(
                job["permissions"]["id-token"].as_str(),
                Some("write"),
                "{name} job {job_name:?} needs id-token: write for OIDC"
            );
        }
    }

    let iam = Module::load("modules/iam").unwrap();
    let trust = iam.data("aws_iam_policy_document", "deploy_assume");
    let st = statements(trust);
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].actions, ["sts:AssumeRoleWithWebIdentity"]);
    let principal = nested(st[0].block.body(), "principals").next().unwrap();
    assert_eq!(
        Scope::default().eval_attr(principal, "type"),
        Value::from("Federated")
    );

    let mut s = Scope::for_module(&iam)
        .with(
            &["var", "github_repository"],
            Value::from("acme/devops-agent-demo"),
        )
        .with(&["var", "github_deploy_branch"], Value::from("main"))
        .with(&["var", "cluster_name"], Value::from("c"))
        .with(&["var", "service_name"], Value::from("s"))
        .with(&["var", "app_parameter_path"], Value::from("/p/app"))
        .with(
            &["var", "deployment_parameter_path"],
            Value::from("/p/deployments"),
        )
        .with(&["var", "log_group_name"], Value::from("/ecs/x"));
    s.resolve_locals(&iam);
    let mut conditions = std::collections::BTreeMap::new();
    for c in nested(st[0].block.body(), "condition") {
        conditions.insert(
            string(&s.eval_attr(c, "variable")).to_string(),
            (
                string(&s.eval_attr(c, "test")).to_string(),
                s.eval_attr(c, "values"),
            ),
        );
    }
    let sub = &conditions["token.actions.githubusercontent.com:sub"];
    assert_eq!(sub.0, "StringEquals", "no wildcards in the subject");
    assert_eq!(
        sub.1,
        Value::Array(vec![Value::from(
            "repo:acme/devops-agent-demo:ref:refs/heads/main"
        )])
    );
    let aud = &conditions["token.actions.githubusercontent.com:aud"];
    assert_eq!(aud.1, Value::Array(vec![Value::from("sts.amazonaws.com")]));

    // The deploy role can change this service only, and pass only its roles.
    let deploy = statements(iam.data("aws_iam_policy_document", "deploy"));
    let update = deploy
        .iter()
        .find(|st| st.actions.iter().any(|a| a == "ecs:UpdateService"))
        .unwrap();
    assert_eq!(update.resources, ["local.service_arn"]);
    let pass = deploy
        .iter()
        .find(|st| st.actions == ["iam:PassRole"])
        .unwrap();
    assert!(
        nested(pass.block.body(), "condition").next().is_some(),
        "PassRole without condition"
    );
    for st in &deploy {
        assert!(
            !st.actions.iter().any(|a| a.ends_with(":*") || a == "*"),
            "{}: wildcard",
            st.sid
        );
    }
}

/// Fault injection is off in AWS unless enabled, and its token is an SSM
/// SecureString injected as a secret, never plain configuration.
#[test]
fn faults_are_off_by_default_and_the_token_is_a_secret() {
    let env = Module::load("envs/dev").unwrap();
    let default = Scope::default().eval_attr(env.variable("faults_enabled"), "default");
    assert_eq!(default, Value::Bool(false));

    let ecs = Module::load("modules/ecs_service").unwrap();
    let param = ecs.resource("aws_ssm_parameter", "fault_token");
    assert_eq!(
        Scope::default().eval_attr(param, "type"),
        Value::from("SecureString")
    );

    for faults in [false, true] {
        let s = common::ecs_scope(&ecs, SHA, faults);
        let app = common::container(&ecs, &s);
        let env = app["environment"].as_array().unwrap();
        let faults_env = env.iter().find(|e| e["name"] == "FAULTS").unwrap();
        assert_eq!(
            faults_env["value"],
            if faults { "enabled" } else { "disabled" }
        );
        assert!(
            env.iter().all(|e| e["name"] != "FAULT_TOKEN"),
            "FAULT_TOKEN in plain env"
        );
        let secrets = app["secrets"].as_array().unwrap();
        if faults {
            assert_eq!(secrets.len(), 1);
            assert_eq!(secrets[0]["name"], "FAULT_TOKEN");
            assert_eq!(secrets[0]["valueFrom"], common::FAULT_TOKEN_ARN);
        } else {
            assert!(secrets.is_empty(), "no token when faults are off");
        }
    }
}
