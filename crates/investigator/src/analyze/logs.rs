//! Log template analysis: every message in the analysis range goes through
//! the `logmine` miner, and each template's count in the incident window is
//! compared with its rate in the baseline before it. Templates that are new
//! or surged are the log evidence; their constant words are what the code
//! correlation looks for in diffs.
//!
//! Lines are first grouped (`groups`: same message, task, level, route,
//! status, grid bucket), so the tally and the miner see a few thousand
//! groups instead of hundreds of thousands of lines, and the source may read
//! the window in any order and in parts on several threads; distinct
//! messages are mined once (a service logs a handful of shapes thousands of
//! times). The same pass counts access lines (records with a route and a
//! status) per route, for route attribution when no per-route metrics exist.

use std::collections::{BTreeMap, HashMap};

use demo_model::events::Window;
use logmine::{ClusterId, Masker, Miner, MinerConfig};
use serde::Serialize;

use super::series::Grid;
use crate::sources::{LogEntry, LogSource, SourceError, SourceResult, on_threads};

mod groups;
#[cfg(test)]
mod reference;

/// One template's statistics.
#[derive(Debug, Clone, Serialize)]
pub struct TemplateStat {
    pub template: String,
    /// Runs of consecutive constant tokens (`Quote engine v2 rejected`), the
    /// phrases looked for in code.
    pub phrases: Vec<String>,
    pub level: String,
    /// Share of lines at ERROR or WARN.
    pub error_like: bool,
    pub baseline_count: u64,
    pub incident_count: u64,
    pub baseline_per_min: f64,
    pub incident_per_min: f64,
    pub is_new: bool,
    pub surged: bool,
    /// Poisson-style z score of the incident count against the baseline rate.
    pub z: f64,
    pub first_incident_ms: Option<i64>,
    /// Incident lines per route / task, most first.
    pub routes: Vec<(String, u64)>,
    pub tasks: Vec<(String, u64)>,
    /// Lines per bucket of the analysis grid.
    pub buckets: Vec<u64>,
    pub example: String,
    /// Trace ids of example incident lines with the `example` message (filled by
    /// the investigation for the templates it cites; empty when the source has none).
    pub trace_ids: Vec<String>,
}

/// Access-line counts for one route.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AccessCounts {
    pub baseline_requests: u64,
    pub baseline_5xx: u64,
    pub incident_requests: u64,
    pub incident_5xx: u64,
}

/// What one task served and how it failed, per bucket of the analysis grid:
/// the raw material of the deployment cohort comparison.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TaskTraffic {
    /// Access lines (records with a route and a status) per bucket.
    pub requests: Vec<u32>,
    /// Access lines with a 5xx status per bucket.
    pub errors_5xx: Vec<u32>,
    /// ERROR/FATAL lines per bucket (an error logged without a failed response counts too).
    pub error_lines: Vec<u32>,
    /// Incident-window (requests, 5xx) per route.
    pub routes: BTreeMap<String, (u64, u64)>,
}

impl TaskTraffic {
    fn new(len: usize) -> TaskTraffic {
        TaskTraffic {
            requests: vec![0; len],
            errors_5xx: vec![0; len],
            error_lines: vec![0; len],
            routes: BTreeMap::new(),
        }
    }
    /// Failures in bucket `i`: 5xx responses or ERROR lines, whichever the
    /// task shows more of (a failing request usually produces both).
    pub fn failures(&self, i: usize) -> u32 {
        self.errors_5xx[i].max(self.error_lines[i])
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LogAnalysis {
    pub lines: u64,
    pub baseline_lines: u64,
    pub incident_lines: u64,
    pub templates: Vec<TemplateStat>,
    pub access: BTreeMap<String, AccessCounts>,
    /// Per task id: what it served and how it failed, bucket by bucket.
    pub per_task: BTreeMap<String, TaskTraffic>,
}

impl LogAnalysis {
    /// Surged or new templates, strongest first.
    pub fn surged(&self) -> impl Iterator<Item = &TemplateStat> {
        self.templates.iter().filter(|t| t.surged)
    }
}

#[derive(Default)]
struct Acc {
    base: u64,
    inc: u64,
    errorish: u64,
    levels: BTreeMap<String, u64>,
    routes: HashMap<String, u64>,
    tasks: HashMap<String, u64>,
    buckets: Vec<u64>,
    first_inc: Option<i64>,
    example: String,
}

fn is_error_level(l: &str) -> bool {
    l.eq_ignore_ascii_case("ERROR")
        || l.eq_ignore_ascii_case("WARN")
        || l.eq_ignore_ascii_case("WARNING")
        || l.eq_ignore_ascii_case("FATAL")
}

/// Mines the logs of `baseline ∪ incident` (adjacent windows). Requests
/// to `health_path` are not counted as traffic a task served (a task is
/// health-checked before it takes any).
///
/// Lines are read in whatever order the source reads fastest and grouped
/// ([`groups`]): lines that differ only in time within one grid bucket count
/// the same everywhere. The groups are then tallied in the order of their
/// first line, which is the order a line-by-line pass would have met them
/// in, so the miner sees the distinct messages in the same order and the
/// result is the same as tallying every line oldest first.
pub fn analyze(
    src: &dyn LogSource,
    baseline: Window,
    incident: Window,
    grid: Grid,
    health_path: &str,
) -> SourceResult<LogAnalysis> {
    let range = Window::new(baseline.start_ms, incident.end_ms);
    let grouping = read(src, range, grid, Some(incident))?;
    Ok(tally(grouping, baseline, incident, grid, health_path))
}

/// Reads `range` grouped, in parts on several threads when the source offers
/// them. With `incident`, lines on either side of its start are grouped
/// apart; without, only by grid bucket.
fn read(
    src: &dyn LogSource,
    range: Window,
    grid: Grid,
    incident: Option<Window>,
) -> SourceResult<groups::Grouping> {
    match src.parts(range)? {
        None => read_whole(src, range, grid, incident),
        Some(parts) => merge(
            on_threads(
                parts
                    .into_iter()
                    .map(|part| move || read_part(part, grid, incident))
                    .collect(),
            ),
            grid,
            incident,
        ),
    }
}

fn read_whole(
    src: &dyn LogSource,
    range: Window,
    grid: Grid,
    incident: Option<Window>,
) -> SourceResult<groups::Grouping> {
    let mut grouping = groups::Grouping::new(incident, grid);
    src.scan_unordered(range, &mut |key, e| grouping.add(key, &e))?;
    Ok(grouping)
}

fn read_part(
    part: crate::sources::LogPart<'_>,
    grid: Grid,
    incident: Option<Window>,
) -> SourceResult<groups::Grouping> {
    let mut grouping = groups::Grouping::new(incident, grid);
    part(&mut |key, e| grouping.add(key, &e))?;
    Ok(grouping)
}

/// The groups of every part; no parts (an empty window): no groups.
fn merge(
    parts: impl IntoIterator<Item = SourceResult<groups::Grouping>>,
    grid: Grid,
    incident: Option<Window>,
) -> SourceResult<groups::Grouping> {
    let mut all = groups::Grouping::new(incident, grid);
    for g in parts {
        all.merge(g?);
    }
    Ok(all)
}

fn tally(
    grouping: groups::Grouping,
    baseline: Window,
    incident: Window,
    grid: Grid,
    health_path: &str,
) -> LogAnalysis {
    let mut tally = Tally::new(baseline, incident, grid, health_path);
    let lines = grouping.for_each_in_order(baseline.start_ms, |e, n| tally.add(&e, n));
    tally.finish(lines)
}

/// The lines of a whole analysis grid, read on other threads while the
/// caller works on something else (the investigation reads its logs while
/// it analyses the metrics that decide where the incident starts), then
/// tallied for any baseline and incident that start on bucket boundaries
/// ([`GridLines::analyze`]).
pub struct Reading<'scope> {
    grid: Grid,
    state: ReadingState<'scope>,
}

type PartHandle<'scope> = std::thread::ScopedJoinHandle<'scope, SourceResult<groups::Grouping>>;

enum ReadingState<'scope> {
    /// One thread per part of the source's.
    Threads(Vec<PartHandle<'scope>>),
    /// The source reads in one part: read when finished, on the caller's thread.
    Later,
    Failed(SourceError),
}

impl<'scope> Reading<'scope> {
    /// Starts reading the lines of `grid`'s whole range on threads of `scope`.
    pub fn start<'env>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        src: &'env dyn LogSource,
        grid: Grid,
    ) -> Reading<'scope> {
        let range = Window::new(grid.start_ms, grid.end_ms());
        let state = match src.parts(range) {
            Ok(None) => ReadingState::Later,
            Ok(Some(parts)) => ReadingState::Threads(
                parts
                    .into_iter()
                    .map(|part| scope.spawn(move || read_part(part, grid, None)))
                    .collect(),
            ),
            Err(e) => ReadingState::Failed(e),
        };
        Reading { grid, state }
    }

    /// Waits for the parts (or reads now, through `src`, if the source
    /// reads in one part).
    pub fn finish(self, src: &dyn LogSource) -> SourceResult<GridLines> {
        let grouping = match self.state {
            ReadingState::Threads(handles) => merge(
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))),
                self.grid,
                None,
            )?,
            ReadingState::Later => {
                let range = Window::new(self.grid.start_ms, self.grid.end_ms());
                read_whole(src, range, self.grid, None)?
            }
            ReadingState::Failed(e) => return Err(e),
        };
        Ok(GridLines {
            grid: self.grid,
            grouping,
        })
    }
}

/// Every line of a grid's range, grouped by bucket ([`Reading`]).
pub struct GridLines {
    grid: Grid,
    grouping: groups::Grouping,
}

impl GridLines {
    /// [`analyze`] for the baseline from bucket `from` to bucket `split` and
    /// the incident from `split` to the grid's end: the same result as
    /// reading those windows, because a bucket lies wholly on one side of
    /// the incident's start (lines before `from` are left out).
    pub fn analyze(self, from: usize, split: usize, health_path: &str) -> LogAnalysis {
        let g = self.grid;
        let split = split.min(g.len);
        let baseline = Window::new(g.time(from.min(split)), g.time(split));
        let incident = Window::new(g.time(split), g.end_ms());
        tally(self.grouping, baseline, incident, g, health_path)
    }
}

/// Counts lines into templates, routes and tasks. Fed oldest first, `n`
/// identical lines at a time (same text, task, level, route, status, grid
/// bucket and side of the incident start; `e.ts_ms` the first one's time).
struct Tally<'h> {
    baseline: Window,
    incident: Window,
    grid: Grid,
    health_path: &'h str,
    masker: Masker,
    miner: Miner,
    cache: HashMap<Box<str>, ClusterId>,
    // Accumulators in first-seen order, found through `acc_slots`.
    accs: Vec<(ClusterId, Acc)>,
    acc_slots: HashMap<ClusterId, usize>,
    // The previous line's text (a reused buffer) and its cluster.
    last_text: (String, Option<ClusterId>),
    last_acc: Option<(ClusterId, usize)>,
    access: BTreeMap<String, AccessCounts>,
    // Few tasks, many lines: a short list searched from the last hit.
    per_task: Vec<(Box<str>, TaskTraffic)>,
    last_task: usize,
    nb: u64,
    ni: u64,
}

/// Long raw lines (stack traces) are mined on their first 512 bytes.
fn mined_text(text: &str) -> &str {
    if text.len() <= 512 {
        return text;
    }
    let mut cut = 512;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

impl<'h> Tally<'h> {
    fn new(baseline: Window, incident: Window, grid: Grid, health_path: &'h str) -> Tally<'h> {
        Tally {
            baseline,
            incident,
            grid,
            health_path,
            masker: Masker::with_defaults(),
            miner: Miner::new(MinerConfig::default()).expect("default miner config is valid"),
            cache: HashMap::new(),
            accs: Vec::new(),
            acc_slots: HashMap::new(),
            last_text: (String::new(), None),
            last_acc: None,
            access: BTreeMap::new(),
            per_task: Vec::new(),
            last_task: 0,
            nb: 0,
            ni: 0,
        }
    }

    /// Counts `n` lines like `e`.
    fn add(&mut self, e: &LogEntry<'_>, n: u64) {
        let n32 = u32::try_from(n).unwrap_or(u32::MAX);
        let text = mined_text(e.text);
        // Consecutive lines mostly share their message (access lines): compare
        // with the previous one before hashing.
        let id = match self.last_text.1 {
            Some(id) if self.last_text.0 == text => id,
            _ => {
                let id = match self.cache.get(text) {
                    Some(id) => *id,
                    None => {
                        let masked = self.masker.mask(text);
                        let id = self.miner.add(&masked);
                        self.cache.insert(text.into(), id);
                        id
                    }
                };
                self.last_text.0.clear();
                self.last_text.0.push_str(text);
                self.last_text.1 = Some(id);
                id
            }
        };
        let inc = self.incident.contains(e.ts_ms);
        let slot = match self.last_acc {
            Some((lid, slot)) if lid == id => slot,
            _ => {
                let (accs, len) = (&mut self.accs, self.grid.len);
                let slot = *self.acc_slots.entry(id).or_insert_with(|| {
                    accs.push((
                        id,
                        Acc {
                            buckets: vec![0; len],
                            example: text.to_owned(),
                            ..Acc::default()
                        },
                    ));
                    accs.len() - 1
                });
                self.last_acc = Some((id, slot));
                slot
            }
        };
        let a = &mut self.accs[slot].1;
        if inc {
            a.inc += n;
            self.ni += n;
            a.first_inc.get_or_insert(e.ts_ms);
            if let Some(r) = e.route {
                match a.routes.get_mut(r) {
                    Some(c) => *c += n,
                    None => {
                        a.routes.insert(r.to_owned(), n);
                    }
                }
            }
            match a.tasks.get_mut(e.task_id) {
                Some(c) => *c += n,
                None => {
                    a.tasks.insert(e.task_id.to_owned(), n);
                }
            }
        } else {
            a.base += n;
            self.nb += n;
        }
        if let Some(l) = e.level {
            if is_error_level(l) {
                a.errorish += n;
            }
            match a.levels.get_mut(l) {
                Some(c) => *c += n,
                None => {
                    a.levels.insert(l.to_owned(), n);
                }
            }
        }
        let bucket = self.grid.index(e.ts_ms);
        if let Some(i) = bucket {
            a.buckets[i] += n;
        }
        if let Some(i) = bucket {
            let is_access = e.status.is_some() && e.route.is_some_and(|r| r != self.health_path);
            let is_error = e.level.is_some_and(|l| {
                l.eq_ignore_ascii_case("ERROR") || l.eq_ignore_ascii_case("FATAL")
            });
            if is_access || is_error {
                let per_task = &mut self.per_task;
                if per_task
                    .get(self.last_task)
                    .is_none_or(|t| &*t.0 != e.task_id)
                {
                    self.last_task = match per_task.iter().position(|t| &*t.0 == e.task_id) {
                        Some(i) => i,
                        None => {
                            per_task.push((e.task_id.into(), TaskTraffic::new(self.grid.len)));
                            per_task.len() - 1
                        }
                    };
                }
                let t = &mut per_task[self.last_task].1;
                if is_error {
                    t.error_lines[i] += n32;
                }
                if let (Some(r), Some(s)) = (e.route.filter(|_| is_access), e.status) {
                    let failed = if s >= 500 { n } else { 0 };
                    t.requests[i] += n32;
                    t.errors_5xx[i] += if s >= 500 { n32 } else { 0 };
                    if inc {
                        let rc = match t.routes.get_mut(r) {
                            Some(rc) => rc,
                            None => t.routes.entry(r.to_owned()).or_default(),
                        };
                        rc.0 += n;
                        rc.1 += failed;
                    }
                }
            }
        }
        if let (Some(r), Some(s)) = (e.route, e.status) {
            let failed = if s >= 500 { n } else { 0 };
            let c = match self.access.get_mut(r) {
                Some(c) => c,
                None => self.access.entry(r.to_owned()).or_default(),
            };
            if inc {
                c.incident_requests += n;
                c.incident_5xx += failed;
            } else {
                c.baseline_requests += n;
                c.baseline_5xx += failed;
            }
        }
    }

    /// The templates, strongest first, with everything counted.
    fn finish(self, lines: u64) -> LogAnalysis {
        let Tally {
            baseline,
            incident,
            mut miner,
            accs,
            access,
            per_task,
            nb,
            ni,
            ..
        } = self;
        let templates = templates(&mut miner, accs, baseline, incident);
        LogAnalysis {
            lines,
            baseline_lines: nb,
            incident_lines: ni,
            templates,
            access,
            per_task: per_task
                .into_iter()
                .map(|(k, v)| (k.into_string(), v))
                .collect(),
        }
    }
}

/// The templates of a mining pass from their per-cluster accumulators:
/// clusters the miner's merge pass joined are summed, each is scored against
/// its baseline rate, strongest first. Shared by the grouped analysis and its
/// line-by-line test oracle, which differ only in how they fill `accs`.
fn templates(
    miner: &mut Miner,
    accs: Vec<(ClusterId, Acc)>,
    baseline: Window,
    incident: Window,
) -> Vec<TemplateStat> {
    miner.finish();
    // Merge accumulators of clusters the merge pass joined.
    let mut merged: BTreeMap<ClusterId, Acc> = BTreeMap::new();
    for (id, a) in accs {
        let root = miner.resolve(id);
        match merged.get_mut(&root) {
            None => {
                merged.insert(root, a);
            }
            Some(m) => {
                m.base += a.base;
                m.inc += a.inc;
                m.errorish += a.errorish;
                for (k, v) in a.levels {
                    *m.levels.entry(k).or_default() += v;
                }
                for (k, v) in a.routes {
                    *m.routes.entry(k).or_default() += v;
                }
                for (k, v) in a.tasks {
                    *m.tasks.entry(k).or_default() += v;
                }
                for (x, y) in m.buckets.iter_mut().zip(a.buckets) {
                    *x += y;
                }
                m.first_inc = match (m.first_inc, a.first_inc) {
                    (Some(x), Some(y)) => Some(x.min(y)),
                    (x, y) => x.or(y),
                };
            }
        }
    }
    let base_min = (baseline.duration_ms().max(1) as f64) / 60_000.0;
    let inc_min = (incident.duration_ms().max(1) as f64) / 60_000.0;
    let mut templates: Vec<TemplateStat> = merged
        .into_iter()
        .map(|(id, a)| {
            let c = miner.cluster(id);
            let tokens = c.tokens();
            let total = a.base + a.inc;
            let level = a
                .levels
                .iter()
                .max_by_key(|(_, n)| **n)
                .map(|(l, _)| l.clone())
                .unwrap_or_else(|| "-".into());
            // Expected incident count at the baseline rate; a baseline with
            // no occurrence still allows half a line (it might have been unlucky).
            let base_rate = if a.base == 0 {
                0.5 / base_min
            } else {
                a.base as f64 / base_min
            };
            let expected = base_rate * inc_min;
            let z = (a.inc as f64 - expected) / (expected + 1.0).sqrt();
            let is_new = a.base == 0 && a.inc >= 3 && baseline.duration_ms() > 0;
            let ratio = (a.inc as f64 / inc_min) / base_rate;
            let surged = a.inc >= 3 && z >= 4.0 && ratio >= 2.0;
            let sort = |m: HashMap<String, u64>| {
                let mut v: Vec<(String, u64)> = m.into_iter().collect();
                v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                v
            };
            TemplateStat {
                template: c.template(),
                phrases: phrases(&tokens),
                level,
                error_like: total > 0 && a.errorish * 2 >= total,
                baseline_count: a.base,
                incident_count: a.inc,
                baseline_per_min: a.base as f64 / base_min,
                incident_per_min: a.inc as f64 / inc_min,
                is_new,
                surged,
                z,
                first_incident_ms: a.first_inc,
                routes: sort(a.routes),
                tasks: sort(a.tasks),
                buckets: a.buckets,
                example: a.example,
                trace_ids: Vec::new(),
            }
        })
        .collect();
    templates.sort_by(|a, b| {
        b.surged
            .cmp(&a.surged)
            .then(b.error_like.cmp(&a.error_like))
            .then(b.z.total_cmp(&a.z))
            .then_with(|| a.template.cmp(&b.template))
    });
    templates
}

/// Maximal runs of constant tokens (no `<*>`), joined by spaces; a run of one
/// token counts only if it is a long word (a lone `failed` is everywhere).
pub fn phrases(tokens: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut run: Vec<&str> = Vec::new();
    let flush = |run: &mut Vec<&str>, out: &mut Vec<String>| {
        let words = run
            .iter()
            .filter(|t| t.chars().any(char::is_alphanumeric))
            .count();
        let phrase = run
            .join(" ")
            .trim_matches(|c: char| !c.is_alphanumeric())
            .to_owned();
        if words >= 2 || (words == 1 && phrase.len() >= 8) {
            out.push(phrase);
        }
        run.clear();
    };
    for t in tokens {
        if t.contains(logmine::WILDCARD) {
            flush(&mut run, &mut out);
        } else {
            run.push(t);
        }
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrases_are_constant_runs() {
        let t = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            phrases(&t("Quote engine v2 rejected item <*> of order")),
            vec!["Quote engine v2 rejected item", "of order"]
        );
        assert_eq!(phrases(&t("failed <*>")), Vec::<String>::new());
        assert_eq!(
            phrases(&t("Crash injected: process exiting")),
            vec!["Crash injected: process exiting"]
        );
    }
}
