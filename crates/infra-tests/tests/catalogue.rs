//! The Terraform reads the alarms, metric filter, health check, task size,
//! log group and deployment settings from `config/observability.yaml`, and
//! evaluating it against that file gives exactly the catalogue the local
//! runtime loads (`demo_model::Catalog`). Nothing is defined twice.

mod common;

use common::{catalog, container, ecs_scope, scope_with_catalogue};
use demo_infra_tests::{
    Module, Scope, attr, catalogue_as_terraform_sees_it, describe, expect_attr, is_literal, keys,
    nested,
};
use demo_model::catalog::Dimensions;
use hcl::Value;

fn num(v: &Value) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("expected a number, got {v}"))
}

fn string(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

/// serde's spelling of a catalogue enum, which is AWS's spelling.
fn aws_name<T: serde::Serialize>(v: T) -> String {
    serde_json::to_value(v)
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn dev_environment_decodes_the_committed_catalogue_and_hands_it_to_the_modules() {
    let env = Module::load("envs/dev").unwrap();
    let catalog_expr = env
        .locals()
        .find(|a| a.key() == "catalog")
        .expect("envs/dev has local.catalog")
        .expr();
    let text = catalog_expr.to_string();
    assert!(
        text.contains("yamldecode(file(") && text.contains("config/observability.yaml"),
        "local.catalog must be yamldecode(file(.../config/observability.yaml)), is {text}"
    );

    // Evaluating the real expression (path.module = envs/dev) reads the
    // committed catalogue: the relative path is right.
    let mut scope = Scope::for_module(&env);
    scope.resolve_locals(&env);
    let decoded = scope
        .get(&["local", "catalog"])
        .expect("local.catalog evaluates");
    assert_eq!(decoded, &catalogue_as_terraform_sees_it().unwrap());

    // The environment's name comes from the catalogue too.
    let c = catalog();
    assert_eq!(
        scope.get(&["local", "name"]),
        Some(&Value::from(format!(
            "{}-{}",
            c.service.name, c.service.environment
        )))
    );

    for module in ["load_balancer", "observability", "ecs_service"] {
        let call = env.module_call(module);
        assert_eq!(
            expect_attr(call, "catalog").to_string(),
            "local.catalog",
            "module {module} must receive the decoded catalogue"
        );
    }
}

#[test]
fn there_is_one_alarm_per_catalogue_alarm_and_no_other_alarm() {
    let obs = Module::load("modules/observability").unwrap();
    let c = catalog();

    // No hand-written alarm anywhere in the tree.
    for dir in ["envs/dev", "bootstrap"]
        .into_iter()
        .map(String::from)
        .chain(
            std::fs::read_dir(demo_infra_tests::terraform_root().join("modules"))
                .unwrap()
                .map(|e| format!("modules/{}", e.unwrap().file_name().to_string_lossy())),
        )
    {
        let m = Module::load(&dir).unwrap();
        let alarms: Vec<_> = m
            .resources_of_type("aws_cloudwatch_metric_alarm")
            .map(describe)
            .collect();
        // The investigator's own health (its queue's age, its DLQ) is not
        // the service's: those two alarms go to the summary topic, never to
        // the alarm queue, so they are neither catalogued nor investigated.
        let expected: &[&str] = match dir.as_str() {
            "modules/observability" => &["resource aws_cloudwatch_metric_alarm.catalog"],
            "modules/investigator" => &[
                "resource aws_cloudwatch_metric_alarm.queue_age",
                "resource aws_cloudwatch_metric_alarm.dlq_depth",
            ],
            _ => &[],
        };
        assert_eq!(alarms, expected, "alarms defined in {dir}");
    }

    let alarm = obs.resource("aws_cloudwatch_metric_alarm", "catalog");
    let mut scope = scope_with_catalogue(&obs);
    scope.resolve_locals(&obs);
    let for_each = scope.eval_attr(alarm, "for_each");
    let mut want: Vec<String> = c.alarms.iter().map(|a| a.name.clone()).collect();
    want.sort();
    let mut got = keys(&for_each);
    got.sort();
    assert_eq!(got, want, "for_each keys are the catalogue's alarm names");
}

#[test]
fn every_alarm_evaluates_to_its_catalogue_entry() {
    let obs = Module::load("modules/observability").unwrap();
    let c = catalog();
    let alarm = obs.resource("aws_cloudwatch_metric_alarm", "catalog");

    let mut scope = scope_with_catalogue(&obs)
        .with(&["var", "name"], Value::from("demo-dev"))
        .with(&["var", "cluster_name"], Value::from("demo-dev-cluster"))
        .with(&["var", "service_name"], Value::from("demo-dev-service"))
        .with(
            &["var", "load_balancer_arn_suffix"],
            Value::from("app/demo-dev-alb/abc"),
        )
        .with(
            &["var", "target_group_arn_suffix"],
            Value::from("targetgroup/demo-dev-tg/def"),
        );
    scope.resolve_locals(&obs);
    let for_each = scope.eval_attr(alarm, "for_each");

    for a in &c.alarms {
        let entry = for_each
            .as_object()
            .and_then(|o| o.get(&a.name))
            .unwrap_or_else(|| panic!("no for_each entry for {}", a.name))
            .clone();
        let s = scope
            .clone()
            .with(&["each", "key"], Value::from(a.name.clone()))
            .with(&["each", "value"], entry);
        let get = |key: &str| s.eval_attr(alarm, key);
        let at = &a.name;

        assert_eq!(string(&get("alarm_name")), format!("demo-dev-{at}"));
        assert_eq!(string(&get("alarm_description")), a.description, "{at}");
        assert_eq!(string(&get("namespace")), a.namespace, "{at}");
        assert_eq!(string(&get("metric_name")), a.metric_name, "{at}");
        assert_eq!(num(&get("threshold")), a.threshold, "{at}");
        assert_eq!(num(&get("period")), f64::from(a.period_seconds), "{at}");
        assert_eq!(
            num(&get("evaluation_periods")),
            f64::from(a.evaluation_periods),
            "{at}"
        );
        assert_eq!(
            num(&get("datapoints_to_alarm")),
            f64::from(a.datapoints_to_alarm),
            "{at}"
        );
        assert_eq!(
            string(&get("comparison_operator")),
            aws_name(a.comparison),
            "{at}"
        );
        assert_eq!(
            string(&get("treat_missing_data")),
            aws_name(a.treat_missing_data),
            "{at}"
        );
        assert_eq!(string(&get("unit")), a.unit, "{at}");

        // Percentiles are extended statistics; CloudWatch rejects them in
        // `statistic`, and the two are mutually exclusive.
        let (statistic, extended) = (get("statistic"), get("extended_statistic"));
        if a.statistic.is_extended() {
            assert_eq!(statistic, Value::Null, "{at}: percentile in statistic");
            assert_eq!(string(&extended), a.statistic.to_string(), "{at}");
        } else {
            assert_eq!(string(&statistic), a.statistic.to_string(), "{at}");
            assert_eq!(
                extended,
                Value::Null,
                "{at}: plain statistic in extended_statistic"
            );
        }

        let dims = get("dimensions");
        let want: &[(&str, &str)] = match a.dimensions {
            Dimensions::Service => &[
                ("ClusterName", "demo-dev-cluster"),
                ("ServiceName", "demo-dev-service"),
            ],
            Dimensions::TargetGroup => &[
                ("LoadBalancer", "app/demo-dev-alb/abc"),
                ("TargetGroup", "targetgroup/demo-dev-tg/def"),
            ],
            Dimensions::LoadBalancer => &[("LoadBalancer", "app/demo-dev-alb/abc")],
            Dimensions::None => &[],
        };
        let got: Vec<(String, String)> = dims
            .as_object()
            .unwrap_or_else(|| panic!("{at}: dimensions is not an object: {dims}"))
            .iter()
            .map(|(k, v)| (k.clone(), string(v).to_string()))
            .collect();
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        assert_eq!(got, want, "{at}: dimensions for {:?}", a.dimensions);
    }

    // Alarms notify the alarm topic, both ways.
    for key in ["alarm_actions", "ok_actions"] {
        let text: String = expect_attr(alarm, key)
            .to_string()
            .split_whitespace()
            .collect();
        assert_eq!(text, "[aws_sns_topic.alarms.arn]", "{key}");
    }
}

#[test]
fn no_alarm_value_is_hard_coded() {
    let obs = Module::load("modules/observability").unwrap();
    let alarm = obs.resource("aws_cloudwatch_metric_alarm", "catalog");
    for a in alarm.body().attributes() {
        assert!(
            !is_literal(a.expr()),
            "aws_cloudwatch_metric_alarm.catalog.{} is hard-coded ({}); it must come from the catalogue",
            a.key(),
            a.expr()
        );
    }
    for key in [
        "threshold",
        "period",
        "evaluation_periods",
        "datapoints_to_alarm",
        "comparison_operator",
        "namespace",
        "metric_name",
    ] {
        let text = expect_attr(alarm, key).to_string();
        assert!(text.starts_with("each.value."), "{key} = {text}");
    }
}

#[test]
fn the_metric_filter_is_the_catalogues_json_filter() {
    let obs = Module::load("modules/observability").unwrap();
    let c = catalog();
    let filters: Vec<_> = obs
        .resources_of_type("aws_cloudwatch_log_metric_filter")
        .map(describe)
        .collect();
    assert_eq!(
        filters,
        ["resource aws_cloudwatch_log_metric_filter.catalog"]
    );

    let filter = obs.resource("aws_cloudwatch_log_metric_filter", "catalog");
    let mut scope = scope_with_catalogue(&obs).with(&["var", "name"], Value::from("demo-dev"));
    scope.resolve_locals(&obs);
    let for_each = scope.eval_attr(filter, "for_each");
    assert_eq!(
        keys(&for_each),
        c.metric_filters
            .iter()
            .map(|f| f.name.clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        expect_attr(filter, "log_group_name").to_string(),
        "aws_cloudwatch_log_group.app.name"
    );

    for f in &c.metric_filters {
        let s = scope
            .clone()
            .with(&["each", "key"], Value::from(f.name.clone()))
            .with(
                &["each", "value"],
                for_each.as_object().unwrap()[&f.name].clone(),
            );
        let pattern = s.eval_attr(filter, "pattern");
        assert_eq!(string(&pattern), f.pattern);

        let t = nested(filter.body(), "metric_transformation")
            .next()
            .expect("metric_transformation block");
        assert_eq!(string(&s.eval_attr(t, "namespace")), f.metric_namespace);
        assert_eq!(string(&s.eval_attr(t, "name")), f.metric_name);
        assert_eq!(string(&s.eval_attr(t, "value")), f.metric_value);
        assert_eq!(num(&s.eval_attr(t, "default_value")), f.default_value);

        // Published with the unit its alarms filter on, or they never fire.
        let unit = s.eval_attr(t, "unit");
        for a in c
            .alarms
            .iter()
            .filter(|a| a.namespace == f.metric_namespace && a.metric_name == f.metric_name)
        {
            assert_eq!(
                string(&unit),
                a.unit,
                "{} publishes what {} expects",
                f.name,
                a.name
            );
        }
    }

    // The filter reads the catalogue's log group, kept for its retention.
    let group = obs.resource("aws_cloudwatch_log_group", "app");
    assert_eq!(string(&scope.eval_attr(group, "name")), c.logs.group);
    assert_eq!(
        num(&scope.eval_attr(group, "retention_in_days")),
        f64::from(c.logs.retention_days)
    );
}

#[test]
fn the_target_group_health_check_is_the_catalogues() {
    let lb = Module::load("modules/load_balancer").unwrap();
    let c = catalog();
    let tg = lb.resource("aws_lb_target_group", "app");
    let hc = nested(tg.body(), "health_check")
        .next()
        .expect("a health_check block");
    let mut scope = scope_with_catalogue(&lb).with(&["var", "certificate_arn"], Value::Null);
    scope.resolve_locals(&lb);

    let h = &c.health_check;
    let expect = [
        ("path", Value::from(h.path.clone())),
        ("interval", Value::from(h.interval_seconds)),
        ("timeout", Value::from(h.timeout_seconds)),
        ("healthy_threshold", Value::from(h.healthy_threshold)),
        ("unhealthy_threshold", Value::from(h.unhealthy_threshold)),
        ("matcher", Value::from(h.matcher.clone())),
    ];
    for (key, want) in expect {
        let expr = expect_attr(hc, key);
        assert!(
            !is_literal(expr),
            "health_check.{key} is hard-coded ({expr})"
        );
        assert!(
            expr.to_string().starts_with("local.health_check."),
            "health_check.{key} = {expr}"
        );
        assert_eq!(scope.eval_attr(hc, key), want, "health_check.{key}");
    }
    assert_eq!(
        num(&scope.eval_attr(tg, "port")),
        f64::from(c.service.container_port)
    );
    assert_eq!(string(&scope.eval_attr(tg, "target_type")), "ip");
}

#[test]
fn task_size_container_and_service_settings_are_the_catalogues() {
    let ecs = Module::load("modules/ecs_service").unwrap();
    let c = catalog();
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let scope = ecs_scope(&ecs, sha, false);

    let td = ecs.resource("aws_ecs_task_definition", "app");
    assert_eq!(
        scope.eval_attr(td, "cpu"),
        Value::from(c.task.cpu_units.to_string())
    );
    assert_eq!(
        scope.eval_attr(td, "memory"),
        Value::from(c.task.memory_mib.to_string())
    );
    for key in ["cpu", "memory"] {
        assert!(
            !is_literal(expect_attr(td, key)),
            "task {key} is hard-coded"
        );
    }

    let app = container(&ecs, &scope);
    assert_eq!(
        app["portMappings"][0]["containerPort"],
        c.service.container_port
    );
    assert_eq!(app["stopTimeout"], c.task.stop_timeout_seconds);
    assert_eq!(
        app["healthCheck"]["command"],
        serde_json::json!(["CMD", "/demo-app", "healthcheck"])
    );
    assert_eq!(
        app["healthCheck"]["interval"],
        c.health_check.interval_seconds
    );
    assert_eq!(
        app["healthCheck"]["timeout"],
        c.health_check.timeout_seconds
    );
    assert_eq!(
        app["healthCheck"]["retries"],
        c.health_check.unhealthy_threshold
    );
    assert_eq!(app["logConfiguration"]["logDriver"], "awslogs");
    assert_eq!(
        app["logConfiguration"]["options"]["awslogs-group"],
        c.logs.group
    );
    assert_eq!(
        app["user"], "10001:10001",
        "the container never runs as root"
    );
    let env: std::collections::BTreeMap<String, String> = app["environment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().into(),
                e["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(env["PORT"], c.service.container_port.to_string());
    assert_eq!(env["ENVIRONMENT"], c.service.environment);

    let svc = ecs.resource("aws_ecs_service", "app");
    let d = &c.service.deployment;
    assert_eq!(
        num(&scope.eval_attr(svc, "desired_count")),
        f64::from(c.service.desired_count)
    );
    assert_eq!(
        num(&scope.eval_attr(svc, "deployment_maximum_percent")),
        f64::from(d.maximum_percent)
    );
    assert_eq!(
        num(&scope.eval_attr(svc, "deployment_minimum_healthy_percent")),
        f64::from(d.minimum_healthy_percent)
    );
    let cb = nested(svc.body(), "deployment_circuit_breaker")
        .next()
        .expect("circuit breaker");
    assert_eq!(
        scope.eval_attr(cb, "enable"),
        Value::Bool(d.circuit_breaker.enable)
    );
    assert_eq!(
        scope.eval_attr(cb, "rollback"),
        Value::Bool(d.circuit_breaker.rollback)
    );

    // Autoscaling never goes below the catalogue's count.
    let target = ecs.resource("aws_appautoscaling_target", "service");
    assert_eq!(
        num(&scope.eval_attr(target, "min_capacity")),
        f64::from(c.service.desired_count)
    );
    let policies: Vec<_> = ecs
        .resources_of_type("aws_appautoscaling_policy")
        .map(describe)
        .collect();
    assert_eq!(
        policies.len(),
        2,
        "CPU and memory target tracking: {policies:?}"
    );
}

#[test]
fn the_environment_wires_the_catalogue_log_group_into_the_task() {
    let env = Module::load("envs/dev").unwrap();
    let call = env.module_call("ecs_service");
    assert_eq!(
        attr(call.body(), "log_group_name").unwrap().to_string(),
        "module.observability.log_group_name"
    );
    let obs_outputs = Module::load("modules/observability").unwrap();
    let out = obs_outputs.block("output", &["log_group_name"]).unwrap();
    assert_eq!(
        expect_attr(out, "value").to_string(),
        "aws_cloudwatch_log_group.app.name"
    );
}
