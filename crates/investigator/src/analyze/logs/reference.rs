//! The log analysis as it was before lines were grouped, kept verbatim as the
//! oracle the grouped analysis must match: the tests below run both over the
//! same stored lines (several tasks, routes, statuses, levels and messages,
//! lines without a message, long lines, lines on the window edges, lines
//! stored out of time order) and require identical output.

use std::collections::{BTreeMap, HashMap};

use demo_model::events::{LogRecord, Stream, Window};
use logmine::{ClusterId, Masker, Miner, MinerConfig};

use super::{
    Acc, AccessCounts, LogAnalysis, Reading, TaskTraffic, analyze, is_error_level, templates,
};
use crate::analyze::series::Grid;
use crate::sources::local_store::LocalStore;
use crate::sources::{LogEntry, LogSource, SourceResult};

/// `analyze` as it was before lines were grouped (commit c1ce99a), verbatim:
/// every line tallied one by one, oldest first. Mines the logs of `baseline ∪ incident` (adjacent windows). Requests
/// to `health_path` are not counted as traffic a task served (a task is
/// health-checked before it takes any).
pub(super) fn analyze_line_by_line(
    src: &dyn LogSource,
    baseline: Window,
    incident: Window,
    grid: Grid,
    health_path: &str,
) -> SourceResult<LogAnalysis> {
    let masker = Masker::with_defaults();
    let mut miner = Miner::new(MinerConfig::default()).expect("default miner config is valid");
    let mut cache: HashMap<Box<str>, ClusterId> = HashMap::new();
    // Accumulators in first-seen order, found through `acc_slots`.
    let mut accs: Vec<(ClusterId, Acc)> = Vec::new();
    let mut acc_slots: HashMap<ClusterId, usize> = HashMap::new();
    // The previous line's text (a reused buffer) and its cluster.
    let mut last_text: (String, Option<ClusterId>) = (String::new(), None);
    let mut last_acc: Option<(ClusterId, usize)> = None;
    let mut access: BTreeMap<String, AccessCounts> = BTreeMap::new();
    // Few tasks, many lines: a short list searched from the last hit.
    let mut per_task: Vec<(Box<str>, TaskTraffic)> = Vec::new();
    let mut last_task = 0usize;
    let (mut nb, mut ni) = (0u64, 0u64);
    let range = Window::new(baseline.start_ms, incident.end_ms);
    let lines = src.scan(range, &mut |e: LogEntry<'_>| {
        // Long raw lines (stack traces) are mined on their first 512 bytes.
        let mut text = e.text;
        if text.len() > 512 {
            let mut cut = 512;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text = &text[..cut];
        }
        // Consecutive lines mostly share their message (access lines): compare
        // with the previous one before hashing.
        let id = match last_text.1 {
            Some(id) if last_text.0 == text => id,
            _ => {
                let id = match cache.get(text) {
                    Some(id) => *id,
                    None => {
                        let masked = masker.mask(text);
                        let id = miner.add(&masked);
                        cache.insert(text.into(), id);
                        id
                    }
                };
                last_text.0.clear();
                last_text.0.push_str(text);
                last_text.1 = Some(id);
                id
            }
        };
        let inc = incident.contains(e.ts_ms);
        let slot = match last_acc {
            Some((lid, slot)) if lid == id => slot,
            _ => {
                let slot = *acc_slots.entry(id).or_insert_with(|| {
                    accs.push((
                        id,
                        Acc {
                            buckets: vec![0; grid.len],
                            example: text.to_owned(),
                            ..Acc::default()
                        },
                    ));
                    accs.len() - 1
                });
                last_acc = Some((id, slot));
                slot
            }
        };
        let a = &mut accs[slot].1;
        if inc {
            a.inc += 1;
            ni += 1;
            a.first_inc.get_or_insert(e.ts_ms);
            if let Some(r) = e.route {
                match a.routes.get_mut(r) {
                    Some(n) => *n += 1,
                    None => {
                        a.routes.insert(r.to_owned(), 1);
                    }
                }
            }
            match a.tasks.get_mut(e.task_id) {
                Some(n) => *n += 1,
                None => {
                    a.tasks.insert(e.task_id.to_owned(), 1);
                }
            }
        } else {
            a.base += 1;
            nb += 1;
        }
        if let Some(l) = e.level {
            if is_error_level(l) {
                a.errorish += 1;
            }
            match a.levels.get_mut(l) {
                Some(n) => *n += 1,
                None => {
                    a.levels.insert(l.to_owned(), 1);
                }
            }
        }
        let bucket = grid.index(e.ts_ms);
        if let Some(i) = bucket {
            a.buckets[i] += 1;
        }
        if let Some(i) = bucket {
            let is_access = e.status.is_some() && e.route.is_some_and(|r| r != health_path);
            let is_error = e.level.is_some_and(|l| {
                l.eq_ignore_ascii_case("ERROR") || l.eq_ignore_ascii_case("FATAL")
            });
            if is_access || is_error {
                if per_task.get(last_task).is_none_or(|t| &*t.0 != e.task_id) {
                    last_task = match per_task.iter().position(|t| &*t.0 == e.task_id) {
                        Some(i) => i,
                        None => {
                            per_task.push((e.task_id.into(), TaskTraffic::new(grid.len)));
                            per_task.len() - 1
                        }
                    };
                }
                let t = &mut per_task[last_task].1;
                if is_error {
                    t.error_lines[i] += 1;
                }
                if let (Some(r), Some(s)) = (e.route.filter(|_| is_access), e.status) {
                    t.requests[i] += 1;
                    t.errors_5xx[i] += u32::from(s >= 500);
                    if inc {
                        let rc = match t.routes.get_mut(r) {
                            Some(rc) => rc,
                            None => t.routes.entry(r.to_owned()).or_default(),
                        };
                        rc.0 += 1;
                        rc.1 += u64::from(s >= 500);
                    }
                }
            }
        }
        if let (Some(r), Some(s)) = (e.route, e.status) {
            let c = match access.get_mut(r) {
                Some(c) => c,
                None => access.entry(r.to_owned()).or_default(),
            };
            if inc {
                c.incident_requests += 1;
                c.incident_5xx += u64::from(s >= 500);
            } else {
                c.baseline_requests += 1;
                c.baseline_5xx += u64::from(s >= 500);
            }
        }
    })?;
    let templates = templates(&mut miner, accs, baseline, incident);
    Ok(LogAnalysis {
        lines,
        baseline_lines: nb,
        incident_lines: ni,
        templates,
        access,
        per_task: per_task
            .into_iter()
            .map(|(k, v)| (k.into_string(), v))
            .collect(),
    })
}

/// A source that can only scan in order: the grouped analysis then goes
/// through `LogSource::scan_unordered`'s default.
struct InOrder<'a>(&'a LocalStore);

impl LogSource for InOrder<'_> {
    fn name(&self) -> &str {
        "in order"
    }
    fn scan(&self, w: Window, f: &mut dyn FnMut(LogEntry<'_>)) -> SourceResult<u64> {
        self.0.scan(w, f)
    }
}

/// A small deterministic generator (no randomness crate, same data every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

const T0: i64 = 1_000_000;
const BUCKET_MS: i64 = 1_000;
const LEN: usize = 120;
const HEALTH: &str = "/health";

/// One stored line: varied tasks, routes, statuses, levels and messages,
/// lines without a message (plain text), long lines cut inside a multi-byte
/// character, health checks, error lines without a route.
fn line(rng: &mut Lcg, i: u64) -> (String, String) {
    let task = format!("task-{}", rng.next(3) + 1);
    let route = ["/api/items", "/api/quote", "/api/products/{id}", HEALTH][rng.next(4) as usize];
    let status = [200, 200, 200, 201, 404, 500, 503][rng.next(7) as usize];
    let level = ["INFO", "INFO", "WARN", "ERROR", "info", "FATAL"][rng.next(6) as usize];
    let line = match rng.next(10) {
        0..=4 => format!(
            r#"{{"level":"{level}","message":"request completed","route":"{route}","status":{status}}}"#
        ),
        5 => format!(
            r#"{{"level":"ERROR","message":"Quote engine v2 rejected item {} of order {}","route":"/api/quote","status":500}}"#,
            rng.next(50),
            i
        ),
        6 => format!(
            r#"{{"level":"{level}","message":"user {} logged in from 10.0.0.{}"}}"#,
            rng.next(1000),
            rng.next(255)
        ),
        7 => format!("plain text line {} without json", rng.next(20)),
        8 => {
            // Cut at 512 bytes inside a three-byte character.
            let long = format!("{}€ tail {}", "x".repeat(511), rng.next(3));
            format!(r#"{{"level":"WARN","message":"{long}","route":"{route}"}}"#)
        }
        _ => format!(
            r#"{{"level":"{level}","message":"database timeout after {} ms","status":{status}}}"#,
            rng.next(3000)
        ),
    };
    (task, line)
}

/// A store whose lines were written out of time order, with lines on every
/// window edge; returns the store's directory.
fn store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = demo_store::Store::open(dir.path()).unwrap();
    let w = store.writer();
    let mut rng = Lcg(7);
    let end = T0 + LEN as i64 * BUCKET_MS;
    // Edges: before the grid, its first and last millisecond, the incident
    // start (bucket 100) and just before it, the end and after it.
    let edges = [
        T0 - 1,
        T0,
        T0 + 100 * BUCKET_MS - 1,
        T0 + 100 * BUCKET_MS,
        end - 1,
        end,
        end + 5,
    ];
    let mut i = 0;
    for ts in edges
        .into_iter()
        .chain((0..6_000).map(|k| T0 - 2_000 + k * 21))
    {
        for _ in 0..1 + rng.next(3) {
            // Every fifth line arrives late (stored after newer ones).
            let ts = if rng.next(5) == 0 {
                ts - rng.next(4_000) as i64
            } else {
                ts
            };
            let (task, text) = line(&mut rng, i);
            w.log(LogRecord::from_line(ts, &task, Stream::Stdout, text));
            i += 1;
        }
        // A fault from the incident start on: a new error template.
        if ts >= T0 + 100 * BUCKET_MS && rng.next(2) == 0 {
            let text = format!(
                r#"{{"level":"ERROR","message":"Connection pool exhausted after {} ms","route":"/api/items","status":503}}"#,
                rng.next(900)
            );
            w.log(LogRecord::from_line(ts + 3, "task-2", Stream::Stdout, text));
        }
    }
    w.flush();
    dir
}

/// The grid the stored lines were made for.
fn grid() -> Grid {
    Grid {
        start_ms: T0,
        bucket_ms: BUCKET_MS,
        len: LEN,
    }
}

fn json(a: &LogAnalysis) -> String {
    serde_json::to_string_pretty(a).unwrap()
}

#[test]
fn grouped_analysis_equals_the_line_by_line_analysis() {
    let dir = store();
    let src = LocalStore::open(dir.path()).unwrap();
    let grid = grid();
    let split = T0 + 100 * BUCKET_MS;
    let end = grid.end_ms();
    // The investigation's framing (baseline from the grid's start or from
    // where data starts), and a grid that does not cover the range.
    let cases = [
        (Window::new(T0, split), Window::new(split, end), grid),
        (
            Window::new(T0 + 7_500, split),
            Window::new(split, end),
            grid,
        ),
        (
            Window::new(T0 - 3_000, split),
            Window::new(split, end + 10),
            Grid {
                start_ms: T0 + 1_500,
                bucket_ms: 700,
                len: 90,
            },
        ),
    ];
    for (baseline, incident, grid) in cases {
        let old = analyze_line_by_line(&src, baseline, incident, grid, HEALTH).unwrap();
        let one = LocalStore::open(dir.path()).unwrap().with_read_threads(1);
        let new = analyze(&one, baseline, incident, grid, HEALTH).unwrap();
        let in_order = analyze(&InOrder(&src), baseline, incident, grid, HEALTH).unwrap();
        // The data exercises what it should.
        assert!(old.lines > 10_000, "{} lines", old.lines);
        assert!(
            old.templates.len() >= 5,
            "{} templates",
            old.templates.len()
        );
        assert!(old.templates.iter().any(|t| t.surged || t.is_new));
        assert!(old.per_task.len() == 3 && old.access.len() >= 4);
        assert_eq!(json(&new), json(&old), "{baseline:?} {incident:?} {grid:?}");
        // Read in parts on several threads (uneven parts with 3).
        for threads in [2, 3] {
            let src = LocalStore::open(dir.path())
                .unwrap()
                .with_read_threads(threads);
            let parts = analyze(&src, baseline, incident, grid, HEALTH).unwrap();
            assert_eq!(json(&parts), json(&old), "{threads} threads");
        }
        assert_eq!(
            json(&in_order),
            json(&old),
            "{baseline:?} {incident:?} {grid:?}"
        );
    }
}

#[test]
fn an_empty_window_is_analysed_alike() {
    let dir = store();
    let src = LocalStore::open(dir.path()).unwrap();
    let grid = Grid {
        start_ms: 0,
        bucket_ms: 10,
        len: 10,
    };
    let (b, i) = (Window::new(0, 50), Window::new(50, 100));
    let old = analyze_line_by_line(&src, b, i, grid, HEALTH).unwrap();
    let new = analyze(&src, b, i, grid, HEALTH).unwrap();
    assert_eq!(old.lines, 0);
    assert_eq!(json(&new), json(&old));
}

/// The investigation's path: the grid's whole range read while the metrics
/// are analysed, then tallied for windows that start on bucket boundaries,
/// gives what reading those windows line by line gives.
#[test]
fn a_grid_read_ahead_then_split_equals_the_line_by_line_analysis() {
    let dir = store();
    let src = LocalStore::open(dir.path()).unwrap();
    let grid = grid();
    for (from, split) in [(0, 100), (5, 100), (0, 60), (30, 31), (100, 100)] {
        let baseline = Window::new(grid.time(from), grid.time(split));
        let incident = Window::new(grid.time(split), grid.end_ms());
        let old = analyze_line_by_line(&src, baseline, incident, grid, HEALTH).unwrap();
        let read = |source: &dyn LogSource| {
            std::thread::scope(|scope| Reading::start(scope, source, grid).finish(source))
                .unwrap()
                .analyze(from, split, HEALTH)
        };
        for threads in [1, 2, 3] {
            let parts = LocalStore::open(dir.path())
                .unwrap()
                .with_read_threads(threads);
            assert_eq!(
                json(&read(&parts)),
                json(&old),
                "from {from} split {split}, {threads} threads"
            );
        }
        assert_eq!(json(&read(&InOrder(&src))), json(&old), "in order");
        if from < split {
            assert!(
                old.lines > 100,
                "from {from} split {split}: {} lines",
                old.lines
            );
        }
    }
}
