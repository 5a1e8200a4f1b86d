//! The online template miner (Drain: He et al., ICWS'17), with a few general
//! refinements.
//!
//! A message is split on whitespace. Messages are routed through a fixed-depth
//! prefix tree — first by token count, then by their first `depth - 2` tokens
//! (a token that looks variable — see `token.rs` — takes the wildcard branch) — to a
//! leaf holding candidate clusters. The most similar cluster absorbs the
//! message if the similarity reaches the threshold (positions that differ
//! become `<*>`); otherwise the message starts a new cluster.
//!
//! Refinements over the original, all data-independent:
//! * token classes (`token.rs`): digits, weekday and month names and masks
//!   make a token variable; an empty `()` and a filled `(…)` are one variable;
//! * two tokens that both look variable count as "both variable": they
//!   neither help nor hurt the similarity (so `retry 3 of 5` joins
//!   `retry 1 of 5` even when the template still holds the first numbers);
//! * similarity is measured over the positions that are not variable on
//!   either side, so a template that has already generalised is not penalised
//!   for its wildcards;
//! * [`Miner::finish`] corrects, over the whole input, what one message at a
//!   time cannot see: a `<*>` that held only 2-3 plain words splits (`split.rs`),
//!   a word that takes 4+ values at one position merges its clusters, and so
//!   do templates equal but for a variable spanning several tokens
//!   (`merge.rs`);
//! * a message counts at most [`MAX_TOKENS`] tokens, so work per message is
//!   bounded.
//!
//! Cluster ids are dense, assigned in order of creation and never reused;
//! `add` returns the id of the cluster the message joined. After
//! [`Miner::finish`] merged two clusters, [`Miner::resolve`] maps the absorbed
//! id to the surviving one; lines recorded with [`Miner::add_line`] also
//! follow splits ([`Miner::resolve_line`]).

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use crate::mask::WILDCARD;
use crate::split::{Variants, word_key};
use crate::token::{
    MARK, empty_vs_filled, has_var_part, has_wildcard, looks_variable, same_pair, shape, shape_eq,
    shape_penalty,
};

/// Identifies a cluster within one [`Miner`]. Dense, starting at 0, stable for
/// the miner's lifetime. Displays as `E<n>` with `n = index + 1`, the loghub
/// EventId style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterId(pub u32);

impl ClusterId {
    /// The position of the cluster in [`Miner::clusters`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "E{}", u64::from(self.0) + 1)
    }
}

/// Miner settings. Build with [`MinerConfig::default`] and adjust fields;
/// call [`MinerConfig::validate`] before use ([`Miner::new`] does).
#[derive(Debug, Clone, PartialEq)]
pub struct MinerConfig {
    /// Minimum similarity (0–1) for a message to join an existing cluster:
    /// the share of comparable positions whose tokens are equal.
    pub similarity_threshold: f64,
    /// Depth of the prefix tree including the root and the token-count layer,
    /// so `depth - 2` leading tokens route a message. At least 3.
    pub depth: usize,
    /// Maximum children of a tree node before new tokens share the wildcard
    /// branch. At least 2.
    pub max_children: usize,
    /// Treat tokens that contain a digit or a calendar word (weekday, month
    /// name) as variables (routing and similarity).
    pub digits_are_variables: bool,
    /// Run the split and merge passes in [`Miner::finish`].
    pub merge_pass: bool,
    /// In [`Miner::finish`], clusters identical but for one position merge
    /// (that position becoming `<*>`) when it takes at least this many
    /// distinct values among them: a word with that many values is a
    /// variable, whatever the word. 0 disables; otherwise at least 2.
    pub min_variable_values: usize,
    /// In [`Miner::finish`], a cluster whose `<*>` position held only plain
    /// words, between 2 and this many distinct ones, is split into one
    /// cluster per word: a word with that few values tells events apart.
    /// Below 2 disables.
    pub split_max_values: usize,
    /// ...and only when every one of those words occurred in at least this
    /// many messages (a word that tells events apart recurs with its event;
    /// a few values each seen once may be a sample of a variable). 1 asks
    /// nothing more: on the Loghub-2k leave-one-out, asking for 2 cost GA.
    pub split_min_count: u64,
}

impl Default for MinerConfig {
    fn default() -> Self {
        Self {
            similarity_threshold: 0.8,
            depth: 4,
            max_children: 100,
            digits_are_variables: true,
            merge_pass: true,
            min_variable_values: 4,
            split_max_values: 3,
            split_min_count: 1,
        }
    }
}

/// A [`MinerConfig`] problem; [`MinerConfig::validate`] returns all of them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// Threshold outside 0–1 or not a number.
    #[error("similarity_threshold must be between 0 and 1, got {0}")]
    Threshold(f64),
    /// Depth below 3.
    #[error("depth must be at least 3 (root, token count, one token), got {0}")]
    Depth(usize),
    /// Fewer than 2 children allowed.
    #[error("max_children must be at least 2, got {0}")]
    MaxChildren(usize),
    /// 1 (one value is no evidence of a variable).
    #[error("min_variable_values must be 0 (off) or at least 2, got {0}")]
    MinVariableValues(usize),
}

/// All problems of a configuration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid miner configuration: ")?;
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl MinerConfig {
    /// Checks every field and returns every problem found.
    ///
    /// # Errors
    /// [`ConfigErrors`] listing each invalid field.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        if !(0.0..=1.0).contains(&self.similarity_threshold) {
            errors.push(ConfigError::Threshold(self.similarity_threshold));
        }
        if self.depth < 3 {
            errors.push(ConfigError::Depth(self.depth));
        }
        if self.max_children < 2 {
            errors.push(ConfigError::MaxChildren(self.max_children));
        }
        if self.min_variable_values == 1 {
            errors.push(ConfigError::MinVariableValues(self.min_variable_values));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

/// One template token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    /// A constant. `shape` is set when the token looks variable (it contains
    /// a digit or a mask's `<*>`).
    Const {
        text: Box<str>,
        shape: Option<Box<str>>,
    },
    /// A variable of a known shape such as `user=\u{1}` (`user=<*>`).
    Var(Box<str>),
    /// Any variable-looking token (the position held variables of several
    /// shapes, e.g. paths of different depths).
    AnyVar,
    /// Anything (the position held different words).
    Wild,
    /// Anything, established: the merge pass saw the position take many
    /// values (see `Miner::merge_by_position`). Unlike [`Tok::Wild`] it does
    /// not count against the similarity of a new message.
    Slot,
    /// A bracketed variable that may be empty: the position held `()` and
    /// `(something)` (see `token::empty_vs_filled`); renders `(<*>)`.
    Pair(u8, u8),
}

impl Tok {
    fn from_token(tok: &str, digits: bool) -> Self {
        if tok == WILDCARD {
            return Tok::Var(MARK.to_string().into());
        }
        Tok::Const {
            text: tok.into(),
            shape: shape(tok, digits).map(Into::into),
        }
    }

    fn render(&self, out: &mut String) {
        match self {
            Tok::Const { text, .. } => out.push_str(text),
            Tok::Var(shape) => {
                for c in shape.chars() {
                    if c == MARK {
                        out.push_str(WILDCARD);
                    } else {
                        out.push(c);
                    }
                }
            }
            Tok::AnyVar | Tok::Wild | Tok::Slot => out.push_str(WILDCARD),
            Tok::Pair(open, close) => {
                out.push(char::from(*open));
                out.push_str(WILDCARD);
                out.push(char::from(*close));
            }
        }
    }
}

/// A group of messages sharing a template.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub(crate) id: ClusterId,
    pub(crate) tokens: Vec<Tok>,
    pub(crate) size: u64,
    pub(crate) variants: Variants,
    /// Replaced by the clusters the split pass made of it (see `split.rs`):
    /// not live, but ids that resolve to it keep its general template.
    pub(crate) retired: bool,
}

impl Cluster {
    /// The cluster's id.
    pub fn id(&self) -> ClusterId {
        self.id
    }

    /// Number of messages the cluster absorbed (including merged clusters').
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Number of tokens in the template.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True for the template of an empty message.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The template, tokens joined by one space, variables as `<*>`
    /// (`user=<*>` when only part of a token varies).
    pub fn template(&self) -> String {
        let mut out = String::new();
        for (i, t) in self.tokens.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            t.render(&mut out);
        }
        out
    }

    /// Template tokens as rendered in [`Cluster::template`].
    pub fn tokens(&self) -> Vec<String> {
        self.tokens
            .iter()
            .map(|t| {
                let mut s = String::new();
                t.render(&mut s);
                s
            })
            .collect()
    }

    /// The constant words of the template: tokens that are not variables and
    /// contain no digit and no `<*>` (so `ssh2` and `uid=<*>` are left out).
    /// These are the words to look for in code diffs.
    pub fn constant_tokens(&self) -> Vec<&str> {
        self.tokens
            .iter()
            .filter_map(|t| match t {
                Tok::Const { text, shape: None } => Some(&**text),
                _ => None,
            })
            .collect()
    }

    /// Merge-pass key: the template without tokens that are pure variables
    /// (no letter outside their variable parts). Two templates with the same
    /// key differ only in how many variable tokens they have.
    pub(crate) fn merge_key(&self) -> Option<String> {
        let mut key = String::new();
        let mut words = 0;
        for t in &self.tokens {
            let part: &str = match t {
                Tok::Const { text, shape: None } => text,
                Tok::Const {
                    shape: Some(shape), ..
                }
                | Tok::Var(shape) => {
                    if !shape.chars().any(char::is_alphabetic) {
                        continue;
                    }
                    shape
                }
                Tok::AnyVar | Tok::Pair(..) => continue,
                Tok::Wild | Tok::Slot => "\u{2}",
            };
            words += 1;
            key.push_str(part);
            key.push('\u{3}');
        }
        // A template of variables only says nothing about its event.
        (words > 0).then_some(key)
    }
}

/// A small, fast, non-cryptographic hasher (FxHash) for the tree's token maps
/// (and other maps of our own log data hashed once per line, such as the
/// investigator's line groups); keys are log tokens, not attacker-chosen in a
/// way that matters here.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let v = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u32(&mut self, i: u32) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, i: usize) {
        self.0 = (self.0.rotate_left(5) ^ i as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` with [`FxHasher`].
pub type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

#[derive(Debug, Default)]
struct Node {
    children: FxMap<Box<str>, Node>,
    wild: Option<Box<Node>>,
    clusters: Vec<u32>,
}

/// The online miner. See the module docs for the algorithm.
#[derive(Debug)]
pub struct Miner {
    pub(crate) config: MinerConfig,
    pub(crate) clusters: Vec<Cluster>,
    /// `alias[i]` is the cluster that absorbed cluster `i` (itself if alive).
    pub(crate) alias: Vec<u32>,
    roots: FxMap<usize, Node>,
}

/// The most tokens of one message the miner looks at (see [`Miner::add`]).
/// Far above real log messages (the longest Loghub-2k message has 105), low
/// enough that a pathological line costs a bounded amount of work.
pub const MAX_TOKENS: usize = 256;

/// Calls `f` on each whitespace-separated token of `content` in order until
/// it returns `false`; returns whether every token was passed.
fn tokenize<'a>(content: &'a str, mut f: impl FnMut(&'a str) -> bool) -> bool {
    if !content.is_ascii() {
        return content.split_whitespace().all(f);
    }
    let b = content.as_bytes();
    let is_ws = |c: u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let mut i = 0;
    loop {
        while i < b.len() && is_ws(b[i]) {
            i += 1;
        }
        if i == b.len() {
            return true;
        }
        let start = i;
        while i < b.len() && !is_ws(b[i]) {
            i += 1;
        }
        if !f(&content[start..i]) {
            return false;
        }
    }
}

impl Miner {
    /// A miner with `config`.
    ///
    /// # Errors
    /// [`ConfigErrors`] if the configuration is invalid.
    pub fn new(config: MinerConfig) -> Result<Self, ConfigErrors> {
        config.validate()?;
        Ok(Self {
            config,
            clusters: Vec::new(),
            alias: Vec::new(),
            roots: FxMap::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &MinerConfig {
        &self.config
    }

    /// Adds one (already masked) message and returns its cluster.
    ///
    /// At most [`MAX_TOKENS`] tokens are considered: a longer message keeps
    /// its first `MAX_TOKENS - 1` tokens and one `<*>` for the rest, so the
    /// work and the template memory per message are bounded whatever its
    /// length.
    pub fn add(&mut self, content: &str) -> ClusterId {
        let (cid, _) = self.add_raw(content);
        self.resolve(ClusterId(cid))
    }

    /// [`Miner::add`] returning the cluster as created online (not resolved)
    /// and the message's variant in it (see `split.rs`).
    pub(crate) fn add_raw(&mut self, content: &str) -> (u32, u16) {
        // Most messages are short: tokenise onto the stack.
        const STACK: usize = 48;
        let mut stack = [""; STACK];
        let mut n = 0;
        let complete = tokenize(content, |t| {
            if n == STACK {
                return false;
            }
            stack[n] = t;
            n += 1;
            true
        });
        if complete {
            return self.add_tokens(&stack[..n]);
        }
        let mut tokens: Vec<&str> = Vec::with_capacity(MAX_TOKENS);
        let complete = tokenize(content, |t| {
            if tokens.len() == MAX_TOKENS {
                return false;
            }
            tokens.push(t);
            true
        });
        if !complete {
            tokens[MAX_TOKENS - 1] = WILDCARD;
        }
        self.add_tokens(&tokens)
    }

    fn is_var(&self, tok: &str) -> bool {
        has_wildcard(tok) || (self.config.digits_are_variables && has_var_part(tok))
    }

    fn add_tokens(&mut self, tokens: &[&str]) -> (u32, u16) {
        let depth = self.config.depth - 2;
        let st = self.config.similarity_threshold;
        let digits = self.config.digits_are_variables;
        // Search: descend the tree, then score the leaf's clusters.
        let mut best: Option<(u32, f64, usize)> = None;
        if let Some(mut node) = self.roots.get(&tokens.len()) {
            let mut found = true;
            for tok in tokens.iter().take(depth) {
                if let Some(n) = node.children.get(*tok) {
                    node = n;
                } else if let Some(w) = &node.wild {
                    node = w;
                } else {
                    found = false;
                    break;
                }
            }
            if found {
                for &cid in &node.clusters {
                    let c = &self.clusters[cid as usize];
                    let Some((sim, vars)) = similarity(&c.tokens, tokens, digits, st) else {
                        continue;
                    };
                    let better = match best {
                        None => true,
                        Some((_, bs, bv)) => sim > bs || (sim == bs && vars > bv),
                    };
                    if better {
                        best = Some((cid, sim, vars));
                    }
                }
            }
        }
        let key = word_key(tokens, digits);
        if let Some((cid, _, _)) = best {
            let c = &mut self.clusters[cid as usize];
            for (t, s) in c.tokens.iter_mut().zip(tokens) {
                generalise(t, s, digits);
            }
            c.size += 1;
            let variant = c.variants.record(key, tokens);
            let id = self.resolve(ClusterId(cid));
            if id.0 != cid {
                self.clusters[id.index()].size += 1;
            }
            return (cid, variant);
        }
        let template = tokens.iter().map(|t| Tok::from_token(t, digits)).collect();
        let cid = self.push_cluster(template, 1, tokens);
        let variant = self.clusters[cid as usize].variants.record(key, tokens);
        (cid, variant)
    }

    /// Creates a cluster with `template` and `size`, routed in the tree by
    /// `example` (a message of it).
    pub(crate) fn push_cluster(&mut self, template: Vec<Tok>, size: u64, example: &[&str]) -> u32 {
        let cid = u32::try_from(self.clusters.len()).expect("fewer than 2^32 clusters");
        self.clusters.push(Cluster {
            id: ClusterId(cid),
            tokens: template,
            size,
            variants: Variants::default(),
            retired: false,
        });
        self.alias.push(cid);
        self.insert(cid, example);
        cid
    }

    /// Drain's `addSeqToPrefixTree`.
    fn insert(&mut self, cid: u32, tokens: &[&str]) {
        let depth = self.config.depth - 2;
        let max_children = self.config.max_children;
        let var: Vec<bool> = tokens.iter().take(depth).map(|t| self.is_var(t)).collect();
        let mut node = self.roots.entry(tokens.len()).or_default();
        for (tok, &is_var) in tokens.iter().take(depth).zip(&var) {
            if node.children.contains_key(*tok) {
                node = node.children.get_mut(*tok).expect("present");
                continue;
            }
            let n_children = node.children.len() + usize::from(node.wild.is_some());
            if is_var || n_children + 1 >= max_children {
                node = node.wild.get_or_insert_with(Box::default);
            } else {
                node = node.children.entry((*tok).into()).or_default();
            }
        }
        node.clusters.push(cid);
    }

    /// Every cluster ever created, indexed by [`ClusterId::index`]. Clusters
    /// absorbed by the merge pass stay (with their last template) so old ids
    /// keep resolving; use [`Miner::live_clusters`] to skip them.
    pub fn clusters(&self) -> &[Cluster] {
        &self.clusters
    }

    /// Clusters that were not merged into another one.
    pub fn live_clusters(&self) -> impl Iterator<Item = &Cluster> + '_ {
        self.clusters
            .iter()
            .filter(|c| self.alias[c.id.index()] == c.id.0 && !c.retired)
    }

    /// The cluster `id` belongs to now (follows merges).
    pub fn resolve(&self, id: ClusterId) -> ClusterId {
        let mut i = id.0;
        while self.alias[i as usize] != i {
            i = self.alias[i as usize];
        }
        ClusterId(i)
    }

    /// The current cluster of `id` (follows merges).
    pub fn cluster(&self, id: ClusterId) -> &Cluster {
        &self.clusters[self.resolve(id).index()]
    }

    /// Number of live clusters.
    pub fn len(&self) -> usize {
        self.live_clusters().count()
    }

    /// True before the first message.
    pub fn is_empty(&self) -> bool {
        self.clusters.is_empty()
    }
}

/// Folds message token `s` into template token `t`: equal stays; same
/// shape becomes that variable; two variable-looking tokens become any
/// variable; anything else becomes `<*>` for anything.
fn generalise(t: &mut Tok, s: &str, digits: bool) {
    let new = match t {
        Tok::Wild | Tok::Slot => return,
        Tok::Const { text, .. } if &**text == s => return,
        Tok::Const { text, .. } if empty_vs_filled(text, s) => {
            let b = s.as_bytes();
            Tok::Pair(b[0], b[b.len() - 1])
        }
        Tok::Pair(open, close) => {
            if same_pair(*open, *close, s) {
                return;
            }
            Tok::Wild
        }
        Tok::Const { shape: None, .. } => Tok::Wild,
        Tok::Var(v) => match shape_eq(v, s, digits) {
            Some(true) => return,
            Some(false) => Tok::AnyVar,
            None => Tok::Wild,
        },
        Tok::Const { shape: Some(v), .. } => match shape_eq(v, s, digits) {
            Some(true) => Tok::Var(v.clone()),
            Some(false) => Tok::AnyVar,
            None => Tok::Wild,
        },
        Tok::AnyVar => {
            if looks_variable(s, digits) {
                return;
            }
            Tok::Wild
        }
    };
    *t = new;
}

/// Folds template token `o` into template token `t` (merge pass).
pub(crate) fn generalise_tok(t: &mut Tok, o: &Tok) {
    if t == o || matches!(t, Tok::Slot) {
        return;
    }
    if matches!(o, Tok::Slot) {
        *t = Tok::Slot;
        return;
    }
    let shape_of = |x: &Tok| -> Option<Option<Box<str>>> {
        match x {
            Tok::Const { shape, .. } => Some(shape.clone()),
            Tok::Var(s) => Some(Some(s.clone())),
            Tok::AnyVar | Tok::Pair(..) => None,
            Tok::Wild | Tok::Slot => Some(None),
        }
    };
    *t = match (shape_of(t), shape_of(o)) {
        (Some(Some(a)), Some(Some(b))) if a == b => Tok::Var(a),
        (Some(Some(_)) | None, Some(Some(_)) | None) => Tok::AnyVar,
        _ => Tok::Wild,
    };
}

/// `(similarity, variables)` of a template against a message of the same
/// length. Each position scores as
/// * a match: equal constants;
/// * neutral (left out): both sides are variables of the same shape
///   (`id=12` vs `id=7`, or a template variable whose shape the token has);
/// * half a mismatch: both sides contain digits but their shapes differ
///   (`/data/subdir3/blk_1` vs `/data/blk_2`: probably one variable, weaker
///   evidence);
/// * a mismatch: anything else, including `<*>` positions that held
///   different words (as in Drain, so a template that has absorbed very
///   different messages attracts fewer new ones).
///
/// Similarity is matches / (matches + mismatches), 1.0 when every position
/// is neutral.
///
/// Returns `None` as soon as the similarity cannot reach `st` any more (the
/// caller only cares about clusters at or above the threshold).
fn similarity(template: &[Tok], tokens: &[&str], digits: bool, st: f64) -> Option<(f64, usize)> {
    // Counted in halves.
    let mut equal = 0usize;
    let mut unequal = 0usize;
    let mut vars = 0usize;
    let n = tokens.len();
    for (i, (t, s)) in template.iter().zip(tokens).enumerate() {
        if unequal > 0 {
            // Best case: every remaining position matches. Same arithmetic
            // as the final score so that ties at the threshold agree.
            let best = equal + 2 * (n - i);
            if (best as f64 / (best + unequal) as f64) < st {
                return None;
            }
        }
        match t {
            Tok::Wild => {
                vars += 1;
                unequal += 2;
            }
            Tok::Slot => vars += 1,
            Tok::Pair(open, close) => {
                vars += 1;
                if !same_pair(*open, *close, s) {
                    unequal += 2;
                }
            }
            Tok::Var(v) => {
                vars += 1;
                unequal += shape_penalty(v, s, digits);
            }
            Tok::AnyVar => {
                vars += 1;
                if !looks_variable(s, digits) {
                    unequal += 2;
                }
            }
            Tok::Const { text, shape } => {
                if &**text == *s {
                    equal += 2;
                } else if empty_vs_filled(text, s) {
                    vars += 1;
                } else {
                    unequal += shape.as_deref().map_or(2, |v| shape_penalty(v, s, digits));
                }
            }
        }
    }
    let considered = equal + unequal;
    let sim = if considered == 0 {
        1.0
    } else {
        equal as f64 / considered as f64
    };
    (sim >= st).then_some((sim, vars))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn miner() -> Miner {
        Miner::new(MinerConfig::default()).unwrap()
    }

    #[test]
    fn identical_messages_share_a_cluster_and_count() {
        let mut m = miner();
        let a = m.add("cache warmed up");
        let b = m.add("cache warmed up");
        assert_eq!(a, b);
        assert_eq!(m.cluster(a).size(), 2);
        assert_eq!(m.cluster(a).template(), "cache warmed up");
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn numbers_are_variables_and_ids_are_dense() {
        let mut m = miner();
        let a = m.add("retry 1 of 5 for job 77");
        let b = m.add("retry 3 of 5 for job 78");
        let c = m.add("worker started");
        assert_eq!(a, b);
        assert_eq!((a, c), (ClusterId(0), ClusterId(1)));
        assert_eq!(a.to_string(), "E1");
        assert_eq!(m.cluster(a).template(), "retry <*> of 5 for job <*>");
    }

    #[test]
    fn partly_variable_tokens_keep_their_constant_part() {
        let mut m = miner();
        let a = m.add("login uid=0 tty=ssh");
        assert_eq!(m.add("login uid=1000 tty=ssh"), a);
        assert_eq!(m.cluster(a).template(), "login uid=<*> tty=ssh");
        // A different key is a different token, not the same variable.
        let b = m.add("setSteps=12");
        assert_eq!(m.add("setSteps=9001"), b);
        assert_ne!(m.add("setGoal=12"), b);
    }

    #[test]
    fn different_words_in_short_messages_split() {
        let mut m = miner();
        let ok = m.add("user login succeeded");
        let bad = m.add("user login failed");
        assert_ne!(ok, bad);
        let declined = m.add("payment failed for order 8812: card declined");
        let timeout = m.add("payment failed for order 8813: gateway timeout");
        assert_ne!(declined, timeout);
    }

    #[test]
    fn threshold_is_the_share_of_constant_positions_that_agree() {
        // 4 of 5 constant words agree: 0.8 >= 0.8 joins.
        let mut m = miner();
        let a = m.add("login for alice from 10.1.2.3 succeeded");
        assert_eq!(m.add("login for bob from 10.1.2.4 succeeded"), a);
        assert_eq!(
            m.cluster(a).template(),
            "login for <*> from <*>.<*>.<*>.<*> succeeded"
        );
        // The first depth - 2 tokens route through the tree: a different
        // second word is never compared.
        let c = m.add("user alice logged in");
        assert_ne!(m.add("user bob logged in"), c);
        // 3 of 4 agree: 0.75 splits.
        let b = m.add("open through proxy HTTPS");
        assert_ne!(m.add("open through proxy SOCKS"), b);
        // A lower threshold joins them.
        let mut loose = Miner::new(MinerConfig {
            similarity_threshold: 0.7,
            ..MinerConfig::default()
        })
        .unwrap();
        let b = loose.add("open through proxy HTTPS");
        assert_eq!(loose.add("open through proxy SOCKS"), b);
    }

    #[test]
    fn a_generalised_template_does_not_swallow_everything() {
        let mut m = miner();
        let a = m.add("onExtend:1514038548000 1 0 4");
        assert_eq!(m.add("onExtend:1514038549000 2 1 3"), a);
        assert_ne!(m.add("needAutoSync autoSyncSwitch is open"), a);
        assert_ne!(m.add("stepSyncOrNot appSynTimes is 0"), a);
        assert_eq!(m.cluster(a).template(), "onExtend:<*> <*> <*> <*>");
    }

    #[test]
    fn merge_pass_joins_variables_spanning_several_tokens() {
        let mut m = miner();
        let short = m.add("<*> close, <*> bytes sent, lifetime <*>");
        let long = m.add("<*> close, <*> bytes (<*> <*>) sent, lifetime <*>");
        let other = m.add("<*> open through proxy <*>");
        assert_ne!(short, long);
        assert_eq!(m.finish(), 1);
        assert_eq!(m.resolve(long), short);
        assert_eq!(m.resolve(other), other);
        assert_eq!(m.cluster(long).size(), 2);
        assert_eq!(m.len(), 2);
        // Online use continues with surviving ids.
        assert_eq!(
            m.add("<*> close, <*> bytes (<*> <*>) sent, lifetime <*>"),
            short
        );
    }

    #[test]
    fn merge_pass_keeps_templates_that_differ_in_a_keyed_token() {
        let mut m = miner();
        let a = m.add("failure; rhost=<*>");
        let b = m.add("failure; rhost=<*> user=<*>");
        assert_eq!(m.finish(), 0);
        assert_ne!(m.resolve(a), m.resolve(b));
        let mut off = Miner::new(MinerConfig {
            merge_pass: false,
            ..MinerConfig::default()
        })
        .unwrap();
        off.add("sent <*> bytes");
        off.add("sent <*> <*> bytes");
        assert_eq!(off.finish(), 0);
    }

    #[test]
    fn constant_tokens_are_the_meaningful_words() {
        let mut m = miner();
        let id = m.add("Accepted password for root from <*> port 22 ssh2 uid=<*>");
        m.add("Accepted password for admin from <*> port 2222 ssh2 uid=<*>");
        let c = m.cluster(id);
        assert_eq!(
            c.constant_tokens(),
            ["Accepted", "password", "for", "from", "port"]
        );
        assert_eq!(c.len(), 10);
        assert_eq!(c.tokens()[3], "<*>");
    }

    #[test]
    fn small_fan_out_still_finds_clusters() {
        let mut m = Miner::new(MinerConfig {
            max_children: 2,
            depth: 5,
            ..MinerConfig::default()
        })
        .unwrap();
        let words = ["alpha", "beta", "gamma", "delta"];
        let ids: Vec<_> = words
            .iter()
            .map(|w| m.add(&format!("{w} task done now")))
            .collect();
        let again: Vec<_> = words
            .iter()
            .map(|w| m.add(&format!("{w} task done now")))
            .collect();
        assert_eq!(ids, again);
    }

    #[test]
    fn digits_as_variables_can_be_turned_off() {
        let mut m = Miner::new(MinerConfig {
            digits_are_variables: false,
            ..MinerConfig::default()
        })
        .unwrap();
        let a = m.add("shard 1 ready");
        assert_ne!(m.add("shard 2 ready"), a);
    }

    #[test]
    fn empty_and_whitespace_messages() {
        let mut m = miner();
        let a = m.add("");
        assert_eq!(m.add("   \t "), a);
        assert_eq!(m.cluster(a).template(), "");
        let b = m.add("a\u{2003}b");
        assert_eq!(m.cluster(b).len(), 2, "Unicode whitespace splits tokens");
    }

    #[test]
    fn validate_reports_every_problem() {
        let cfg = MinerConfig {
            similarity_threshold: 1.5,
            depth: 2,
            max_children: 1,
            ..MinerConfig::default()
        };
        let errs = cfg.validate().unwrap_err();
        assert_eq!(
            errs.0,
            [
                ConfigError::Threshold(1.5),
                ConfigError::Depth(2),
                ConfigError::MaxChildren(1)
            ]
        );
        let msg = errs.to_string();
        assert!(
            msg.contains("similarity_threshold")
                && msg.contains("depth")
                && msg.contains("max_children"),
            "{msg}"
        );
        assert!(
            MinerConfig {
                similarity_threshold: f64::NAN,
                ..MinerConfig::default()
            }
            .validate()
            .is_err()
        );
        assert!(Miner::new(cfg).is_err());
        assert!(MinerConfig::default().validate().is_ok());
    }
}
