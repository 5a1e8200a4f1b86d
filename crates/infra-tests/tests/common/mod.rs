//! Helpers shared by the test files: the catalogue, and scopes that call
//! modules the way envs/dev does.

#![allow(dead_code)] // each test binary uses a different subset

use demo_infra_tests::{Module, Scope, catalogue_as_terraform_sees_it, repo_root};
use demo_model::catalog::Catalog;
use hcl::Value;

pub fn catalog() -> Catalog {
    Catalog::load(&repo_root().join(demo_model::catalog::DEFAULT_PATH)).expect("valid catalogue")
}

/// A scope where `var.catalog` is the catalogue, as envs/dev passes it.
pub fn scope_with_catalogue(module: &Module) -> Scope {
    Scope::for_module(module).with(
        &["var", "catalog"],
        catalogue_as_terraform_sees_it().unwrap(),
    )
}

pub const FAULT_TOKEN_ARN: &str =
    "arn:aws:ssm:us-east-1:123456789012:parameter/devops-agent-demo/dev/app/fault-token";

/// Scope for the ECS module as envs/dev calls it.
pub fn ecs_scope(module: &Module, image_tag: &str, faults: bool) -> Scope {
    let c = catalog();
    let mut s = scope_with_catalogue(module)
        .with(&["var", "name"], Value::from("demo-dev"))
        .with(
            &["var", "repository_url"],
            Value::from("123456789012.dkr.ecr.us-east-1.amazonaws.com/demo-dev"),
        )
        .with(&["var", "image_tag"], Value::from(image_tag))
        .with(
            &["var", "log_group_name"],
            Value::from(c.logs.group.clone()),
        )
        .with(&["var", "log_level"], Value::from("info"))
        .with(&["var", "faults_enabled"], Value::Bool(faults))
        .with(&["var", "execution_role_arn"], Value::from("arn:exec"))
        .with(&["var", "task_role_arn"], Value::from("arn:task"));
    let params = if faults {
        let mut param = hcl::Map::new();
        param.insert("arn".to_string(), Value::from(FAULT_TOKEN_ARN));
        vec![Value::Object(param)]
    } else {
        vec![]
    };
    s.set(&["aws_ssm_parameter", "fault_token"], Value::Array(params));
    s.resolve_locals(module);
    s
}

pub fn container(module: &Module, scope: &Scope) -> serde_json::Value {
    let td = module.resource("aws_ecs_task_definition", "app");
    let json = scope.eval_attr(td, "container_definitions");
    let defs: serde_json::Value =
        serde_json::from_str(json.as_str().expect("jsonencode returns a string")).unwrap();
    let defs = defs.as_array().expect("a JSON array of containers");
    assert_eq!(defs.len(), 1, "one container");
    defs[0].clone()
}
