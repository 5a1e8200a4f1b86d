//! Reads the Terraform under `infra/terraform` the way Terraform does (every
//! `*.tf` file of a directory belongs to one module) and evaluates its
//! expressions with hcl-rs, so tests can prove what AWS would be configured
//! with, without a provider, an account or the network.
//!
//! The point is the "one catalogue" rule of the design: alarms, the log metric
//! filter, the health check and the task size are defined only in
//! `config/observability.yaml`. The tests in `tests/` evaluate the Terraform
//! against that file (decoded here exactly as `yamldecode` would) and compare
//! the results with [`demo_model::Catalog`], the local runtime's view of it.
//!
//! Only the few Terraform functions the configuration uses are implemented.
//! Anything else fails evaluation with the expression in the message, which
//! fails the test that asked: better than silently guessing.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use hcl::eval::{Context, Evaluate, FuncArgs, FuncDef, ParamType};
use hcl::{Attribute, Block, Body, Expression, Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid HCL: {source}")]
    Parse { path: PathBuf, source: hcl::Error },
    #[error("{0} has no .tf files")]
    Empty(PathBuf),
    #[error("cannot evaluate `{expr}`: {message}")]
    Eval { expr: String, message: String },
    #[error("{path} is not valid YAML: {source}")]
    Yaml {
        path: PathBuf,
        source: serde_yaml_ng::Error,
    },
}

/// The repository root (this crate lives in `crates/infra-tests`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}

/// `infra/terraform` in the repository.
pub fn terraform_root() -> PathBuf {
    repo_root().join("infra/terraform")
}

/// The catalogue as Terraform's `yamldecode(file(...))` sees it.
pub fn catalogue_as_terraform_sees_it() -> Result<Value, Error> {
    let path = repo_root().join(demo_model::catalog::DEFAULT_PATH);
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Read {
        path: path.clone(),
        source,
    })?;
    yaml_to_value(&text).map_err(|source| Error::Yaml { path, source })
}

fn yaml_to_value(text: &str) -> Result<Value, serde_yaml_ng::Error> {
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)?;
    Ok(hcl::to_value(yaml).expect("YAML values are representable in HCL"))
}

/// One Terraform module: the merged bodies of a directory's `*.tf` files.
#[derive(Debug, Clone)]
pub struct Module {
    pub dir: PathBuf,
    pub body: Body,
}

impl Module {
    /// Loads `infra/terraform/<rel>`.
    pub fn load(rel: &str) -> Result<Module, Error> {
        Module::load_dir(&terraform_root().join(rel))
    }

    pub fn load_dir(dir: &Path) -> Result<Module, Error> {
        let read_dir = std::fs::read_dir(dir).map_err(|source| Error::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut files: Vec<PathBuf> = read_dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "tf"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(Error::Empty(dir.to_path_buf()));
        }
        let mut structures = Vec::new();
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
            let body = hcl::parse(&text).map_err(|source| Error::Parse { path, source })?;
            structures.extend(body.into_inner());
        }
        Ok(Module {
            dir: dir.to_path_buf(),
            body: Body::from(structures),
        })
    }

    /// Every top-level block with this identifier (`resource`, `variable`, ...).
    pub fn blocks<'a>(&'a self, identifier: &'a str) -> impl Iterator<Item = &'a Block> + 'a {
        self.body
            .blocks()
            .filter(move |b| b.identifier() == identifier)
    }

    /// The top-level block with this identifier and exactly these labels.
    pub fn block<'a>(&'a self, identifier: &'a str, labels: &[&str]) -> Option<&'a Block> {
        self.blocks(identifier).find(|b| {
            b.labels().len() == labels.len()
                && b.labels().iter().zip(labels).all(|(l, w)| l.as_str() == *w)
        })
    }

    pub fn resource(&self, ty: &str, name: &str) -> &Block {
        self.block("resource", &[ty, name])
            .unwrap_or_else(|| panic!("{}: no resource {ty}.{name}", self.dir.display()))
    }

    pub fn data(&self, ty: &str, name: &str) -> &Block {
        self.block("data", &[ty, name])
            .unwrap_or_else(|| panic!("{}: no data {ty}.{name}", self.dir.display()))
    }

    pub fn variable(&self, name: &str) -> &Block {
        self.block("variable", &[name])
            .unwrap_or_else(|| panic!("{}: no variable {name}", self.dir.display()))
    }

    pub fn module_call(&self, name: &str) -> &Block {
        self.block("module", &[name])
            .unwrap_or_else(|| panic!("{}: no module {name}", self.dir.display()))
    }

    /// Resources of one type, by name.
    pub fn resources_of_type<'a>(&'a self, ty: &'a str) -> impl Iterator<Item = &'a Block> + 'a {
        self.blocks("resource")
            .filter(move |b| b.labels().first().is_some_and(|l| l.as_str() == ty))
    }

    /// Every attribute of every `locals` block.
    pub fn locals(&self) -> impl Iterator<Item = &Attribute> {
        self.blocks("locals").flat_map(|b| b.body().attributes())
    }
}

/// The expression of attribute `key` in `body`.
pub fn attr<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes().find(|a| a.key() == key).map(|a| a.expr())
}

/// Like [`attr`], panicking with the block's description when it is missing.
pub fn expect_attr<'a>(block: &'a Block, key: &str) -> &'a Expression {
    attr(block.body(), key).unwrap_or_else(|| panic!("{} has no attribute {key}", describe(block)))
}

/// Nested blocks of `body` with this identifier.
pub fn nested<'a>(body: &'a Body, identifier: &'a str) -> impl Iterator<Item = &'a Block> + 'a {
    body.blocks().filter(move |b| b.identifier() == identifier)
}

/// `resource "type" "name"`, for messages.
pub fn describe(block: &Block) -> String {
    let labels: Vec<_> = block.labels().iter().map(|l| l.as_str()).collect();
    format!("{} {}", block.identifier(), labels.join("."))
}

/// True for expressions that are constants: a hard-coded value, as opposed
/// to a reference or a computation.
pub fn is_literal(expr: &Expression) -> bool {
    match expr {
        Expression::Null | Expression::Bool(_) | Expression::Number(_) | Expression::String(_) => {
            true
        }
        Expression::Array(items) => items.iter().all(is_literal),
        Expression::Object(obj) => obj.values().all(is_literal),
        Expression::Parenthesis(e) => is_literal(e),
        _ => false,
    }
}

/// The names a scope can resolve: `var`, `local`, `each`, `path`, `data`,
/// resource types... Each is an object value; nested keys are set with
/// [`Scope::set`].
#[derive(Debug, Clone, Default)]
pub struct Scope {
    roots: BTreeMap<String, Value>,
}

impl Scope {
    /// A scope for a module in `dir`: `path.module` is set, and the data
    /// sources every module here uses resolve to a fixed test account.
    pub fn for_module(module: &Module) -> Scope {
        let dir = module.dir.display().to_string();
        Scope::default()
            .with(&["path", "module"], Value::from(dir.clone()))
            .with(&["path", "root"], Value::from(dir))
            .with(
                &["data", "aws_region", "current", "region"],
                Value::from("us-east-1"),
            )
            .with(
                &["data", "aws_caller_identity", "current", "account_id"],
                Value::from("123456789012"),
            )
            .with(
                &["data", "aws_partition", "current", "partition"],
                Value::from("aws"),
            )
    }

    /// Sets `path[0].path[1]...` to `value`, creating objects on the way.
    pub fn set(&mut self, path: &[&str], value: Value) {
        let (first, rest) = path.split_first().expect("a non-empty path");
        let slot = self
            .roots
            .entry((*first).to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        set_in(slot, rest, value);
    }

    /// The value at `path`, if set.
    pub fn get(&self, path: &[&str]) -> Option<&Value> {
        let (first, rest) = path.split_first()?;
        let mut v = self.roots.get(*first)?;
        for key in rest {
            v = v.as_object()?.get(*key)?;
        }
        Some(v)
    }

    pub fn with(mut self, path: &[&str], value: Value) -> Scope {
        self.set(path, value);
        self
    }

    /// Evaluates `expr` with this scope and the supported functions.
    pub fn eval(&self, expr: &Expression) -> Result<Value, Error> {
        let mut ctx = Context::new();
        for (name, value) in &self.roots {
            ctx.declare_var(name.as_str(), value.clone());
        }
        declare_functions(&mut ctx);
        expr.evaluate(&ctx).map_err(|e| Error::Eval {
            expr: expr.to_string(),
            message: e.to_string(),
        })
    }

    /// Evaluates an attribute of a block; panics (failing the test) with
    /// the block, attribute and cause when it cannot.
    pub fn eval_attr(&self, block: &Block, key: &str) -> Value {
        let expr = expect_attr(block, key);
        self.eval(expr)
            .unwrap_or_else(|e| panic!("{}.{key}: {e}", describe(block)))
    }

    /// Evaluates the module's locals into `local.*`, in dependency order.
    /// Returns the names that could not be evaluated with this scope (e.g.
    /// locals that depend on resources the test did not declare).
    pub fn resolve_locals(&mut self, module: &Module) -> Vec<String> {
        let mut pending: Vec<&Attribute> = module.locals().collect();
        if !self.roots.contains_key("local") {
            self.roots.insert("local".into(), Value::Object(Map::new()));
        }
        loop {
            let before = pending.len();
            let mut still = Vec::new();
            for a in pending {
                match self.eval(a.expr()) {
                    Ok(v) => self.set(&["local", a.key()], v),
                    Err(_) => still.push(a),
                }
            }
            pending = still;
            if pending.is_empty() || pending.len() == before {
                return pending.iter().map(|a| a.key().to_string()).collect();
            }
        }
    }
}

fn set_in(slot: &mut Value, path: &[&str], value: Value) {
    match path.split_first() {
        None => *slot = value,
        Some((key, rest)) => {
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            let obj = slot.as_object_mut().expect("just made an object");
            let child = obj
                .entry((*key).to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            set_in(child, rest, value);
        }
    }
}

/// Terraform's functions, as far as this configuration uses them.
fn declare_functions(ctx: &mut Context<'_>) {
    let s = || ParamType::String;
    ctx.declare_func(
        "startswith",
        FuncDef::builder().param(s()).param(s()).build(startswith),
    );
    ctx.declare_func(
        "endswith",
        FuncDef::builder().param(s()).param(s()).build(endswith),
    );
    ctx.declare_func(
        "tostring",
        FuncDef::builder().param(ParamType::Any).build(tostring),
    );
    ctx.declare_func(
        "jsonencode",
        FuncDef::builder().param(ParamType::Any).build(jsonencode),
    );
    ctx.declare_func(
        "length",
        FuncDef::builder().param(ParamType::Any).build(length),
    );
    ctx.declare_func(
        "regexall",
        FuncDef::builder().param(s()).param(s()).build(regexall),
    );
    ctx.declare_func(
        "distinct",
        FuncDef::builder()
            .param(ParamType::array_of(ParamType::Any))
            .build(distinct),
    );
    ctx.declare_func("file", FuncDef::builder().param(s()).build(file));
    ctx.declare_func(
        "yamldecode",
        FuncDef::builder().param(s()).build(yamldecode),
    );
}

fn str_arg(args: &FuncArgs, i: usize) -> &str {
    args[i].as_str().expect("checked by the parameter type")
}

fn startswith(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::Bool(
        str_arg(&args, 0).starts_with(str_arg(&args, 1)),
    ))
}

fn endswith(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::Bool(str_arg(&args, 0).ends_with(str_arg(&args, 1))))
}

fn tostring(args: FuncArgs) -> Result<Value, String> {
    match &args[0] {
        Value::String(s) => Ok(Value::from(s.clone())),
        Value::Number(n) => Ok(Value::from(n.to_string())),
        Value::Bool(b) => Ok(Value::from(b.to_string())),
        Value::Null => Ok(Value::Null),
        other => Err(format!("tostring: cannot convert {other} to a string")),
    }
}

fn jsonencode(args: FuncArgs) -> Result<Value, String> {
    serde_json::to_string(&args[0])
        .map(Value::from)
        .map_err(|e| format!("jsonencode: {e}"))
}

fn length(args: FuncArgs) -> Result<Value, String> {
    match &args[0] {
        Value::Array(a) => Ok(Value::from(a.len())),
        Value::Object(o) => Ok(Value::from(o.len())),
        Value::String(s) => Ok(Value::from(s.chars().count())),
        other => Err(format!("length: {other} has no length")),
    }
}

/// Like Terraform's: a list of matches; with capture groups, each match is
/// the list of its groups.
fn regexall(args: FuncArgs) -> Result<Value, String> {
    let re = regex::Regex::new(str_arg(&args, 0)).map_err(|e| format!("regexall: {e}"))?;
    let text = str_arg(&args, 1);
    let groups = re.captures_len() - 1;
    let matches = re
        .captures_iter(text)
        .map(|c| {
            if groups == 0 {
                Value::from(c[0].to_string())
            } else {
                Value::Array(
                    (1..=groups)
                        .map(|i| c.get(i).map_or(Value::Null, |m| Value::from(m.as_str())))
                        .collect(),
                )
            }
        })
        .collect();
    Ok(Value::Array(matches))
}

/// The list without repeated elements, first occurrences in order.
fn distinct(args: FuncArgs) -> Result<Value, String> {
    let mut out: Vec<Value> = Vec::new();
    for v in args[0].as_array().expect("checked by the parameter type") {
        if !out.contains(v) {
            out.push(v.clone());
        }
    }
    Ok(Value::Array(out))
}

fn file(args: FuncArgs) -> Result<Value, String> {
    std::fs::read_to_string(str_arg(&args, 0))
        .map(Value::from)
        .map_err(|e| format!("file({:?}): {e}", str_arg(&args, 0)))
}

fn yamldecode(args: FuncArgs) -> Result<Value, String> {
    yaml_to_value(str_arg(&args, 0)).map_err(|e| format!("yamldecode: {e}"))
}

/// A value as a number, for comparing catalogue numbers with Terraform's.
pub fn as_f64(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// An object value's keys.
pub fn keys(v: &Value) -> Vec<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// Display adapter listing a module's resources, for failure messages.
pub struct Resources<'a>(pub &'a Module);

impl fmt::Display for Resources<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0.blocks("resource") {
            writeln!(f, "  {}", describe(b))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(src: &str, scope: &Scope) -> Value {
        let body = hcl::parse(&format!("x = {src}\n")).unwrap();
        let expr = attr(&body, "x").unwrap().clone();
        scope.eval(&expr).unwrap()
    }

    #[test]
    fn functions_behave_like_terraforms() {
        let s = Scope::default();
        assert_eq!(eval(r#"startswith("p99", "p")"#, &s), Value::Bool(true));
        assert_eq!(
            eval(r#"endswith("a:latest", ":latest")"#, &s),
            Value::Bool(true)
        );
        assert_eq!(eval("tostring(256)", &s), Value::from("256"));
        assert_eq!(
            eval(r#"length(regexall("^([0-9a-f]{7,40})$", "latest"))"#, &s),
            Value::from(0)
        );
        assert_eq!(
            eval(r#"length(regexall("^([0-9a-f]{7,40})$", "abc1234"))"#, &s),
            Value::from(1)
        );
        assert_eq!(
            eval(r#"jsonencode({a = [1]})"#, &s),
            Value::from(r#"{"a":[1]}"#)
        );
        assert!(
            Scope::default()
                .eval(&Expression::from(hcl::Variable::new("nope").unwrap()))
                .is_err()
        );
    }

    #[test]
    fn locals_resolve_in_dependency_order_and_report_the_rest() {
        let body =
            hcl::parse("locals {\n  b = local.a + 1\n  a = var.x\n  c = aws_thing.y.id\n}\n")
                .unwrap();
        let module = Module {
            dir: PathBuf::from("."),
            body,
        };
        let mut scope = Scope::default().with(&["var", "x"], Value::from(1));
        let unresolved = scope.resolve_locals(&module);
        assert_eq!(unresolved, vec!["c".to_string()]);
        assert_eq!(scope.get(&["local", "b"]), Some(&Value::from(2)));
    }

    #[test]
    fn literals_are_told_apart_from_references() {
        let body =
            hcl::parse("a = 80\nb = each.value.threshold\nc = [\"x\", 1]\nd = \"${var.x}\"\n")
                .unwrap();
        assert!(is_literal(attr(&body, "a").unwrap()));
        assert!(!is_literal(attr(&body, "b").unwrap()));
        assert!(is_literal(attr(&body, "c").unwrap()));
        assert!(!is_literal(attr(&body, "d").unwrap()));
    }
}
