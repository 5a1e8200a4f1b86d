//! Groups a window's log lines so that the tally sees each distinct kind of
//! line once, with a count, instead of every line: an hour of two busy tasks
//! is ~720,000 access lines but a few thousand groups (text, task, level,
//! route, status, grid bucket, incident side). The lines may arrive in any
//! order (the store reads its table in rowid order); each group remembers
//! its first line in the source's time order, and the groups are handed out
//! in that order, which is the order a line-by-line pass meets them in.

use demo_model::events::Window;
// FxHash: the keys are a few integers or a short string of our own log
// data, hashed once per line; SipHash's protection buys nothing here.
use logmine::FxMap;

use super::mined_text;
use crate::analyze::series::Grid;
use crate::sources::LogEntry;

/// "No value" for an interned optional field, a status or a bucket.
const NONE: u32 = u32::MAX;

/// What the tally reads of a line, all but its time, interned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    text: u32,
    task: u32,
    level: u32,
    route: u32,
    status: u32,
    bucket: u32,
    incident: bool,
}

/// How many lines a group holds and where its first one sits in the
/// source's order (`(ts_ms, order key)`).
#[derive(Debug, Clone, Copy)]
struct Group {
    n: u64,
    first: (i64, i64),
}

/// Distinct strings to numbers, the last one found tried first (a field
/// often repeats from one line to the next).
#[derive(Default)]
struct Interner {
    ids: FxMap<Box<str>, u32>,
    names: Vec<Box<str>>,
    last: u32,
}

impl Interner {
    fn id(&mut self, s: &str) -> u32 {
        if self
            .names
            .get(self.last as usize)
            .is_some_and(|n| **n == *s)
        {
            return self.last;
        }
        let id = match self.ids.get(s) {
            Some(id) => *id,
            None => {
                let id = u32::try_from(self.names.len()).expect("fewer than 2^32 distinct values");
                self.names.push(s.into());
                self.ids.insert(s.into(), id);
                id
            }
        };
        self.last = id;
        id
    }
    fn opt(&mut self, s: Option<&str>) -> u32 {
        s.map_or(NONE, |s| self.id(s))
    }
    fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }
    fn opt_name(&self, id: u32) -> Option<&str> {
        (id != NONE).then(|| self.name(id))
    }
}

/// The groups of one window, filled line by line.
pub(super) struct Grouping {
    /// Lines on either side of its start are grouped apart (`None`: the
    /// caller splits on a bucket boundary later).
    incident: Option<Window>,
    grid: Grid,
    texts: Interner,
    tasks: Interner,
    levels: Interner,
    routes: Interner,
    groups: FxMap<Key, Group>,
}

impl Grouping {
    pub(super) fn new(incident: Option<Window>, grid: Grid) -> Grouping {
        Grouping {
            incident,
            grid,
            texts: Interner::default(),
            tasks: Interner::default(),
            levels: Interner::default(),
            routes: Interner::default(),
            groups: FxMap::default(),
        }
    }

    /// Counts line `e`, whose place in the source's order is `(e.ts_ms, order)`.
    pub(super) fn add(&mut self, order: i64, e: &LogEntry<'_>) {
        let key = Key {
            text: self.texts.id(mined_text(e.text)),
            task: self.tasks.id(e.task_id),
            level: self.levels.opt(e.level),
            route: self.routes.opt(e.route),
            status: e.status.map_or(NONE, u32::from),
            bucket: self
                .grid
                .index(e.ts_ms)
                .map_or(NONE, |i| u32::try_from(i).unwrap_or(NONE)),
            incident: self.incident.is_some_and(|w| w.contains(e.ts_ms)),
        };
        let here = (e.ts_ms, order);
        self.groups
            .entry(key)
            .and_modify(|g| {
                g.n += 1;
                g.first = g.first.min(here);
            })
            .or_insert(Group { n: 1, first: here });
    }

    /// Adds the groups of `other` (lines of another part of the same window).
    pub(super) fn merge(&mut self, other: Grouping) {
        for (k, g) in other.groups {
            let key = Key {
                text: self.texts.id(other.texts.name(k.text)),
                task: self.tasks.id(other.tasks.name(k.task)),
                level: self.levels.opt(other.levels.opt_name(k.level)),
                route: self.routes.opt(other.routes.opt_name(k.route)),
                ..k
            };
            self.groups
                .entry(key)
                .and_modify(|m| {
                    m.n += g.n;
                    m.first = m.first.min(g.first);
                })
                .or_insert(g);
        }
    }

    /// Calls `f` once per group whose first line is not before `from_ms`, in
    /// the order of the groups' first lines, with that first line and the
    /// group's size; returns how many lines those groups hold. (A group lies
    /// in one grid bucket, so from a bucket boundary on this leaves out
    /// exactly the lines before it.)
    pub(super) fn for_each_in_order(
        self,
        from_ms: i64,
        mut f: impl FnMut(LogEntry<'_>, u64),
    ) -> u64 {
        let mut groups: Vec<(Key, Group)> = self
            .groups
            .into_iter()
            .filter(|(_, g)| g.first.0 >= from_ms)
            .collect();
        groups.sort_unstable_by_key(|(_, g)| g.first);
        let mut lines = 0;
        for (k, g) in groups {
            lines += g.n;
            f(
                LogEntry {
                    ts_ms: g.first.0,
                    task_id: self.tasks.name(k.task),
                    level: self.levels.opt_name(k.level),
                    text: self.texts.name(k.text),
                    route: self.routes.opt_name(k.route),
                    status: u16::try_from(k.status).ok(),
                },
                g.n,
            );
        }
        lines
    }
}
