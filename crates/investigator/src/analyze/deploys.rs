//! Deployment and code correlation: for each deployment in the analysis
//! range, does its timing fit the change point, and what does its code say
//! about what broke?
//!
//! * a deployment of another revision is read through its diff: changed
//!   lines in the functions that serve an implicated route (the handler
//!   bound in the route table at the deployed revision, and the functions
//!   it calls), lines that could log a surged template (its constant words),
//!   new failure paths (see [`super::code`]);
//! * a configuration-only deployment is read through the code that uses the
//!   changed keys at the deployed revision (`git grep`), with the commit that
//!   introduced it (`git blame`);
//! * words shared by a changed key and a failing route or message are
//!   recorded as [`KeyLink`]s: weak, supporting evidence only.
//!
//! Whether the deployment's own tasks fail is the cohort analyzer's
//! ([`super::cohorts`]) question; the ranking weighs both.

use std::collections::BTreeMap;

use demo_model::events::{Deployment, EpochMs};
use serde::Serialize;

use super::code;
use super::tasks::TaskAnalysis;
use crate::sources::{CodeSource, Commit, DeploymentSource, SourceError};

/// A changed or tree line that mentions something implicated in the incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CodeMatch {
    pub file: String,
    pub line_no: u32,
    pub text: String,
    /// The string found (a template phrase, a route, a config key).
    pub needle: String,
    /// `template` (a line that logs, or could log, a surged message),
    /// `handler` (a changed line in a function serving an implicated route,
    /// or one it calls), `risk` (a new panic/unwrap/expect/error path),
    /// `route` or `config_key`.
    pub kind: &'static str,
    /// `added`, `removed` (diff lines) or `tree` (`git grep` at the deployed revision).
    pub origin: &'static str,
    /// For a tree line: the commit that introduced it (`git blame`), as
    /// `<short sha> <summary>` — the code a configuration-only deployment switched on.
    pub commit: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CodeEvidence {
    pub from_sha: Option<String>,
    pub to_sha: String,
    pub commits: Vec<Commit>,
    pub files: Vec<String>,
    pub matches: Vec<CodeMatch>,
}

/// A configuration key whose words appear in what broke.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyLink {
    pub key: String,
    pub value: Option<String>,
    pub word: String,
    /// The template or route it appears in.
    pub found_in: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeployCorrelation {
    pub deployment: Deployment,
    pub previous: Option<Deployment>,
    pub timing_fit: bool,
    /// Onset minus rollout start (negative: the change came first).
    pub onset_after_start_ms: i64,
    /// Onset minus rollout end (positive: after the rollout finished).
    pub onset_after_end_ms: i64,
    pub code: Option<CodeEvidence>,
    pub key_links: Vec<KeyLink>,
    /// Tasks of this deployment that crashed or were OOM-killed in the incident.
    pub failed_tasks: Vec<String>,
    pub gaps: Vec<String>,
}

/// What the incident implicates, to look for in deployments.
#[derive(Debug, Clone, Default)]
pub struct Implicated {
    /// Phrases of surged error-like templates, with the template they come from.
    pub phrases: Vec<(String, String)>,
    /// The surged error-like templates themselves.
    pub templates: Vec<String>,
    pub routes: Vec<String>,
}

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() >= 4)
        .map(str::to_ascii_lowercase)
        .collect()
}

fn tokens_lower(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

#[allow(clippy::too_many_arguments)]
pub fn analyze(
    deploys: &dyn DeploymentSource,
    code: Option<&dyn CodeSource>,
    candidates: Vec<Deployment>,
    onset_ms: EpochMs,
    alarm_ms: EpochMs,
    period_ms: i64,
    implicated: &Implicated,
    tasks: &TaskAnalysis,
    incident_start: EpochMs,
) -> Vec<DeployCorrelation> {
    let mut out = Vec::new();
    for d in candidates.into_iter().filter(|d| d.started_ms <= alarm_ms) {
        let mut gaps = Vec::new();
        let previous = match &d.previous_id {
            Some(p) => match deploys.deployment(p) {
                Ok(Some(p)) => Some(p),
                Ok(None) => {
                    gaps.push(format!(
                        "deployment {} names previous {p}, which is not recorded",
                        d.id
                    ));
                    None
                }
                Err(e) => {
                    gaps.push(e.to_string());
                    None
                }
            },
            None => None,
        };
        let end = d.finished_ms.unwrap_or(alarm_ms);
        let onset_after_start_ms = onset_ms - d.started_ms;
        let onset_after_end_ms = onset_ms - end;
        // The change must follow the rollout's start (one period of slack for
        // bucket resolution) and come before it ended or within 3 periods after.
        let timing_fit = onset_after_start_ms >= -period_ms && onset_after_end_ms <= 3 * period_ms;

        let mut key_links = Vec::new();
        for c in &d.changes {
            let kw = words(&c.key);
            let places = implicated
                .phrases
                .iter()
                .map(|p| &p.1)
                .chain(&implicated.routes);
            for place in places {
                let toks = tokens_lower(place);
                if let Some(w) = kw.iter().find(|w| toks.contains(w)) {
                    let link = KeyLink {
                        key: c.key.clone(),
                        value: c.to.clone(),
                        word: w.clone(),
                        found_in: place.clone(),
                    };
                    if !key_links.contains(&link) {
                        key_links.push(link);
                    }
                }
            }
        }

        let failed_tasks: Vec<String> = tasks
            .tasks
            .values()
            .filter(|t| t.deployment_id.as_deref() == Some(d.id.as_str()))
            .filter(|t| {
                t.oom_kills.iter().any(|&x| x >= incident_start)
                    || t.crashes.iter().any(|c| c.0 >= incident_start)
            })
            .map(|t| t.task_id.clone())
            .collect();

        let code_ev = match code {
            None => None,
            Some(src) => match correlate_code(src, &d, previous.as_ref(), implicated) {
                Ok((c, unread)) => {
                    gaps.extend(
                        unread
                            .into_iter()
                            .map(|g| format!("code for deployment {}: {g}", d.id)),
                    );
                    Some(c)
                }
                Err(e) => {
                    gaps.push(format!("code for deployment {}: {e}", d.id));
                    None
                }
            },
        };
        out.push(DeployCorrelation {
            deployment: d,
            previous,
            timing_fit,
            onset_after_start_ms,
            onset_after_end_ms,
            code: code_ev,
            key_links,
            failed_tasks,
            gaps,
        });
    }
    out
}

const MAX_MATCHES: usize = 40;

/// The code evidence of a deployment, and what the source could not read
/// along the way (a file it could not show, a line it could not blame): the
/// evidence stands without them, and the report says what is missing.
fn correlate_code(
    src: &dyn CodeSource,
    d: &Deployment,
    previous: Option<&Deployment>,
    implicated: &Implicated,
) -> Result<(CodeEvidence, Vec<String>), SourceError> {
    let to_sha = src.resolve(&d.git_sha)?;
    let from_sha = match previous {
        Some(p) => Some(src.resolve(&p.git_sha)?),
        None => None,
    };
    let mut needles: Vec<(String, &'static str)> = Vec::new();
    for (p, _) in &implicated.phrases {
        needles.push((p.clone(), "template"));
    }
    for r in &implicated.routes {
        needles.push((r.clone(), "route"));
    }
    // Version, commit and binary changes are what every deployment changes: they
    // say nothing about which code a deployment switched on.
    for c in d
        .changes
        .iter()
        .filter(|c| !["APP_VERSION", "GIT_SHA", "binary"].contains(&c.key.as_str()))
    {
        needles.push((c.key.clone(), "config_key"));
    }
    needles.dedup();
    let mut matches = Vec::new();
    let mut commits = Vec::new();
    let mut files = Vec::new();
    // Files of the deployed tree, read once each.
    let mut tree = TreeFiles::default();
    if let Some(from) = from_sha.as_deref().filter(|f| *f != to_sha) {
        commits = src.commits_between(from, &to_sha)?;
        let diff = src.diff(from, &to_sha)?;
        files = diff.files;
        let related = route_functions(src, &to_sha, &implicated.routes)?;
        let template_words: Vec<(String, Vec<String>)> = implicated
            .templates
            .iter()
            .map(|t| (t.clone(), code::template_words(t)))
            .collect();
        let push =
            |matches: &mut Vec<CodeMatch>, l: &crate::sources::DiffLine, needle: String, kind| {
                let dup = matches
                    .iter()
                    .any(|m| m.kind == kind && m.file == l.file && m.line_no == l.line_no);
                if !dup && matches.len() < MAX_MATCHES {
                    matches.push(CodeMatch {
                        file: l.file.clone(),
                        line_no: l.line_no,
                        text: l.text.trim().to_owned(),
                        needle,
                        kind,
                        origin: if l.added { "added" } else { "removed" },
                        commit: None,
                    });
                }
            };
        for l in &diff.lines {
            let lower = l.text.to_ascii_lowercase();
            for (n, kind) in &needles {
                if lower.contains(&n.to_ascii_lowercase()) {
                    push(&mut matches, l, n.clone(), kind);
                }
            }
            if !l.added || !is_code(&l.file) || code::is_comment(&l.text) {
                continue;
            }
            let lines = tree.lines(src, &to_sha, &l.file);
            if code::in_test_code(&lines, l.line_no as usize) {
                continue;
            }
            for (t, words) in &template_words {
                if code::could_emit(&l.text, words) {
                    push(&mut matches, l, t.clone(), "template");
                }
            }
            if let Some(f) = code::enclosing_function(&lines, l.line_no as usize)
                && let Some(route) = related.get(f)
            {
                push(&mut matches, l, format!("{route} (fn {f})"), "handler");
            }
            if code::is_failure_path(&l.text) {
                push(&mut matches, l, "new failure path".into(), "risk");
            }
        }
    }
    // Where the changed keys are read and the surged messages are logged in
    // the deployed tree: a configuration-only deployment has no diff, but it
    // can switch on code that was already there.
    let tree_needles: Vec<String> = needles
        .iter()
        .filter(|(_, k)| *k != "route")
        .map(|(n, _)| n.clone())
        .collect();
    if !tree_needles.is_empty() {
        let hits: Vec<_> = src
            .grep(&to_sha, &tree_needles)?
            .into_iter()
            .filter(|h| {
                is_code(&h.file)
                    && !code::is_comment(&h.text)
                    && !code::in_test_code(&tree.lines(src, &to_sha, &h.file), h.line_no as usize)
            })
            .take(MAX_MATCHES)
            .collect();
        for h in hits {
            let kind = needles
                .iter()
                .find(|(n, _)| *n == h.needle)
                .map_or("template", |(_, k)| *k);
            // Which commit brought this line: for a configuration-only deployment,
            // that commit is the code change the deployment activated.
            let commit = match src.blame_line(&to_sha, &h.file, h.line_no) {
                Ok(c) => c,
                Err(e) => {
                    tree.unread.push(format!(
                        "which commit brought {}:{} is unknown: {e}",
                        h.file, h.line_no
                    ));
                    None
                }
            }
            .map(|c| format!("{} {}", &c.sha[..c.sha.len().min(10)], c.summary));
            matches.push(CodeMatch {
                file: h.file,
                line_no: h.line_no,
                text: h.text,
                needle: h.needle,
                kind,
                origin: "tree",
                commit,
            });
        }
    }
    Ok((
        CodeEvidence {
            from_sha,
            to_sha,
            commits,
            files,
            matches,
        },
        tree.unread,
    ))
}

/// Files of the deployed tree, each read once (`git show`) and kept. A file
/// the source cannot show reads as empty (no enclosing function, not test
/// code), and why is kept once in `unread` for the report's gaps.
#[derive(Default)]
struct TreeFiles {
    files: BTreeMap<String, String>,
    unread: Vec<String>,
}

impl TreeFiles {
    fn lines(&mut self, src: &dyn CodeSource, rev: &str, file: &str) -> Vec<&str> {
        let unread = &mut self.unread;
        self.files
            .entry(file.to_owned())
            .or_insert_with(|| match src.show(rev, file) {
                Ok(text) => text.unwrap_or_default(),
                Err(e) => {
                    unread.push(format!(
                        "{file} could not be read ({e}): its lines were taken as deployed code outside any function"
                    ));
                    String::new()
                }
            })
            .lines()
            .collect()
    }
}

/// Names too common to tie a callee to a handler.
const COMMON_CALLS: &[&str] = &[
    "new",
    "from",
    "into",
    "clone",
    "map",
    "ok",
    "err",
    "some",
    "json",
    "format",
    "vec",
    "to_string",
    "to_owned",
    "unwrap",
    "expect",
    "len",
    "iter",
    "collect",
    "push",
    "get",
    "insert",
    "as_str",
    "parse",
    "default",
    "with",
    "send",
    "await",
    "string",
    "print",
    "println",
    "write",
    "writeln",
    "assert",
    "if",
    "for",
    "while",
    "match",
    "return",
    "fn",
];

/// The functions that serve each implicated route at revision `rev`: the
/// handler bound to it in the route table, and the functions that handler
/// calls (one level), each mapped to its route.
fn route_functions(
    src: &dyn CodeSource,
    rev: &str,
    routes: &[String],
) -> Result<BTreeMap<String, String>, SourceError> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let spellings: Vec<(String, &String)> = routes
        .iter()
        .flat_map(|r| code::route_spellings(r).into_iter().map(move |s| (s, r)))
        .collect();
    if spellings.is_empty() {
        return Ok(out);
    }
    let needles: Vec<String> = spellings.iter().map(|s| s.0.clone()).collect();
    let mut handlers: Vec<(String, String)> = Vec::new();
    for h in src
        .grep(rev, &needles)?
        .into_iter()
        .filter(|h| is_code(&h.file))
    {
        let Some((spelling, route)) = spellings.iter().find(|s| s.0 == h.needle) else {
            continue;
        };
        if let Some(name) = code::handler_in_line(&h.text, spelling)
            && !handlers.contains(&(name.clone(), (*route).clone()))
        {
            handlers.push((name, (*route).clone()));
        }
    }
    if handlers.is_empty() {
        return Ok(out);
    }
    let defs: Vec<String> = handlers
        .iter()
        .flat_map(|(n, _)| {
            ["fn {}(", "fn {}<", "def {}(", "function {}(", "func {}("]
                .iter()
                .map(move |p| p.replace("{}", n))
        })
        .collect();
    for (n, r) in &handlers {
        out.insert(n.clone(), r.clone());
    }
    for h in src
        .grep(rev, &defs)?
        .into_iter()
        .filter(|h| is_code(&h.file))
    {
        let Some((name, route)) = handlers
            .iter()
            .find(|(n, _)| code::defines(&h.text).is_some_and(|d| d.eq_ignore_ascii_case(n)))
        else {
            continue;
        };
        let Some(text) = src.show(rev, &h.file)? else {
            continue;
        };
        let lines: Vec<&str> = text.lines().collect();
        let (s, e) = code::function_extent(&lines, h.line_no as usize);
        let body = lines[s.saturating_sub(1)..e.min(lines.len())].join("\n");
        for c in code::calls(&body) {
            if c.len() >= 3
                && !COMMON_CALLS.contains(&c.to_ascii_lowercase().as_str())
                && c != *name
            {
                out.entry(c).or_insert_with(|| route.clone());
            }
        }
    }
    Ok(out)
}

/// Whether a tree hit is code that runs (not documentation, tests or CI
/// definitions, which mention the same words without causing anything).
fn is_code(file: &str) -> bool {
    let lower = file.to_ascii_lowercase();
    let doc = [".md", ".txt", ".rst", ".adoc"]
        .iter()
        .any(|e| lower.ends_with(e));
    let test_or_ci = lower.starts_with("tests/")
        || lower.contains("/tests/")
        || lower.starts_with("docs/")
        || lower.starts_with(".github/")
        || lower.starts_with("benches/")
        || lower.contains("/benches/")
        || lower.starts_with("examples/")
        || lower.contains("/examples/")
        || lower.ends_with("_test.go")
        || lower.ends_with(".test.js");
    !doc && !test_or_ci
}

#[cfg(test)]
mod code_file_tests {
    #[test]
    fn docs_tests_and_ci_are_not_code() {
        for f in [
            "README.md",
            "docs/deploy-aws.md",
            "tests/api.rs",
            "crates/x/tests/a.rs",
            "crates/x/benches/b.rs",
            "examples/fill.rs",
            ".github/workflows/deploy.yml",
        ] {
            assert!(!super::is_code(f), "{f}");
        }
        for f in [
            "crates/demo-app/src/api.rs",
            "src/main.rs",
            "Dockerfile",
            "infra/terraform/main.tf",
        ] {
            assert!(super::is_code(f), "{f}");
        }
    }
}

#[cfg(test)]
mod unread_tests {
    use super::*;
    use crate::sources::{Commit, Diff, DiffLine, GrepHit, SourceResult};
    use demo_model::events::{ConfigChange, DeploymentOutcome};

    /// A repository where one changed file cannot be shown and no line can
    /// be blamed (a broken object, a timed-out git).
    struct Broken;

    fn unavailable(what: &str) -> SourceError {
        SourceError::Unavailable {
            source_name: "git".into(),
            detail: format!("{what}: object missing"),
        }
    }

    impl CodeSource for Broken {
        fn name(&self) -> &str {
            "broken git"
        }
        fn resolve(&self, rev: &str) -> SourceResult<String> {
            Ok(rev.to_owned())
        }
        fn commits_between(&self, _from: &str, _to: &str) -> SourceResult<Vec<Commit>> {
            Ok(Vec::new())
        }
        fn diff(&self, _from: &str, _to: &str) -> SourceResult<Diff> {
            Ok(Diff {
                files: vec!["src/quote.rs".into()],
                lines: vec![DiffLine {
                    file: "src/quote.rs".into(),
                    line_no: 3,
                    added: true,
                    text: "let engine = cfg.quote_engine.unwrap();".into(),
                }],
            })
        }
        fn grep(&self, _rev: &str, needles: &[String]) -> SourceResult<Vec<GrepHit>> {
            Ok(vec![GrepHit {
                file: "src/config.rs".into(),
                line_no: 7,
                text: "quote_engine: env(\"QUOTE_ENGINE\"),".into(),
                needle: needles[0].clone(),
            }])
        }
        fn blame_line(
            &self,
            _rev: &str,
            file: &str,
            _line_no: u32,
        ) -> SourceResult<Option<Commit>> {
            Err(unavailable(&format!("blame {file}")))
        }
        fn show(&self, _rev: &str, file: &str) -> SourceResult<Option<String>> {
            if file == "src/quote.rs" {
                Err(unavailable(&format!("show {file}")))
            } else {
                Ok(Some("fn config() {\n}\n".into()))
            }
        }
    }

    fn deployment(id: &str, sha: &str, changes: Vec<ConfigChange>) -> Deployment {
        Deployment {
            id: id.into(),
            started_ms: 0,
            finished_ms: Some(10),
            version: "v".into(),
            git_sha: sha.into(),
            env: BTreeMap::new(),
            changes,
            outcome: DeploymentOutcome::Completed,
            previous_id: None,
            description: String::new(),
            reason: None,
        }
    }

    /// What git could not read is named, once per file, beside the evidence
    /// it still found, instead of being taken silently as an empty file.
    #[test]
    fn files_and_lines_git_cannot_read_are_gaps_not_silence() {
        let prev = deployment("d-1", "aaa", Vec::new());
        let d = deployment(
            "d-2",
            "bbb",
            vec![ConfigChange {
                key: "QUOTE_ENGINE".into(),
                from: Some("v1".into()),
                to: Some("v2".into()),
            }],
        );
        let (ev, unread) =
            correlate_code(&Broken, &d, Some(&prev), &Implicated::default()).unwrap();
        assert!(
            ev.matches.iter().any(|m| m.file == "src/config.rs"),
            "{ev:?}"
        );
        assert_eq!(unread.len(), 2, "{unread:?}");
        assert!(
            unread[0].starts_with("src/quote.rs could not be read"),
            "{unread:?}"
        );
        assert!(
            unread[1].contains("src/config.rs:7 is unknown"),
            "{unread:?}"
        );
    }
}
