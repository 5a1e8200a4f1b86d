//! The split half of [`Miner::finish`]: templates that differ in one
//! constant word.
//!
//! Online, Drain joins a message to a cluster when most constant words agree,
//! so in a long message one differing word (`stored as bytes in memory` vs
//! `stored as values in memory`) becomes `<*>`. Whether that word was a
//! variable or a second event type is only visible over the whole input: a
//! variable takes many values, a constant that tells two events apart takes
//! few. The mirror image of `merge::merge_by_position`, with the same
//! statistic.
//!
//! To split after the fact the miner must know which lines carried which
//! word, so every cluster records its *variants*: the distinct combinations
//! of plain words (tokens with no variable part) of its messages, each with
//! its count and a first example, up to [`MAX_VARIANTS`]; past that the
//! cluster's words vary too much to be a few constants and it is never split.
//! [`Miner::add_line`] returns the variant with the cluster, and
//! [`Miner::resolve_line`] maps both to the final cluster.

use std::hash::Hasher;

use crate::miner::{ClusterId, FxHasher, Miner, Tok};
use crate::token::looks_variable;

/// Variants tracked per cluster (see the module docs).
pub const MAX_VARIANTS: usize = 16;

/// Variant number of a message that arrived after its cluster's variants
/// overflowed.
const OVERFLOW: u16 = u16::MAX;

/// Where one message went: its cluster as created online and its variant.
/// Resolve with [`Miner::resolve_line`] once the input is mined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineCluster {
    cluster: u32,
    variant: u16,
}

#[derive(Debug, Clone)]
struct Variant {
    key: u64,
    example: Box<[Box<str>]>,
    count: u64,
    /// The cluster this variant went to when its cluster was split.
    target: Option<u32>,
}

/// A cluster's variants.
#[derive(Debug, Clone, Default)]
pub(crate) struct Variants {
    list: Vec<Variant>,
    overflow: bool,
    /// The split pass has looked at this cluster.
    decided: bool,
}

impl Variants {
    /// Records one message (`key` from [`word_key`]) and returns its variant.
    pub(crate) fn record(&mut self, key: u64, tokens: &[&str]) -> u16 {
        if let Some(i) = self.list.iter().position(|v| v.key == key) {
            self.list[i].count += 1;
            return i as u16;
        }
        if self.overflow || self.decided || self.list.len() == MAX_VARIANTS {
            self.overflow = true;
            return OVERFLOW;
        }
        self.list.push(Variant {
            key,
            example: tokens.iter().map(|&t| t.into()).collect(),
            count: 1,
            target: None,
        });
        (self.list.len() - 1) as u16
    }
}

/// Hash of a message's plain words with their positions: messages with the
/// same key differ only in variable-looking tokens.
pub(crate) fn word_key(tokens: &[&str], digits: bool) -> u64 {
    let mut h = FxHasher::default();
    h.write_usize(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        if !looks_variable(t, digits) {
            h.write_usize(i);
            h.write(t.as_bytes());
        }
    }
    h.finish()
}

impl Miner {
    /// Adds one (already masked) message like [`Miner::add`] and returns
    /// where it went in a form that survives the split pass of
    /// [`Miner::finish`]: batch users keep it per line and call
    /// [`Miner::resolve_line`] after `finish`.
    pub fn add_line(&mut self, content: &str) -> LineCluster {
        let (cluster, variant) = self.add_raw(content);
        LineCluster { cluster, variant }
    }

    /// The final cluster of a line recorded with [`Miner::add_line`]
    /// (follows splits and merges).
    pub fn resolve_line(&self, line: LineCluster) -> ClusterId {
        let target = self.clusters[line.cluster as usize]
            .variants
            .list
            .get(usize::from(line.variant))
            .and_then(|v| v.target)
            .unwrap_or(line.cluster);
        self.resolve(ClusterId(target))
    }

    /// Splits each live cluster whose `<*>` positions that held plain words
    /// took between 2 and [`MinerConfig::split_max_values`](crate::MinerConfig::split_max_values)
    /// distinct words, each seen in at least
    /// [`MinerConfig::split_min_count`](crate::MinerConfig::split_min_count)
    /// messages: one new cluster per combination of those words. The
    /// original is retired (no longer live) but keeps its general template,
    /// so an id from [`Miner::add`], which cannot tell the words apart,
    /// still resolves to a template true for all its messages. Each cluster
    /// is considered once. Returns how many clusters were created.
    pub(crate) fn split_by_values(&mut self) -> usize {
        let max = self.config.split_max_values;
        let min_count = self.config.split_min_count;
        let digits = self.config.digits_are_variables;
        let mut created = 0;
        for cid in 0..self.clusters.len() {
            if self.alias[cid] != cid as u32 || self.clusters[cid].variants.decided {
                continue;
            }
            self.clusters[cid].variants.decided = true;
            let c = &self.clusters[cid];
            if max < 2 || c.variants.overflow || c.variants.list.len() < 2 {
                continue;
            }
            let vs = &c.variants.list;
            let positions: Vec<usize> = (0..c.tokens.len())
                .filter(|&p| matches!(c.tokens[p], Tok::Wild))
                .filter(|&p| {
                    let mut values: Vec<(&str, u64)> = Vec::new();
                    for v in vs {
                        let t = &*v.example[p];
                        if looks_variable(t, digits) {
                            return false;
                        }
                        match values.iter_mut().find(|(w, _)| *w == t) {
                            Some((_, n)) => *n += v.count,
                            None => values.push((t, v.count)),
                        }
                    }
                    (2..=max).contains(&values.len()) && values.iter().all(|&(_, n)| n >= min_count)
                })
                .collect();
            if positions.is_empty() {
                continue;
            }
            // Group variants by their words at `positions`, in first-seen order.
            let mut groups: Vec<(Vec<Box<str>>, Vec<usize>)> = Vec::new();
            for (i, v) in vs.iter().enumerate() {
                let words: Vec<Box<str>> =
                    positions.iter().map(|&p| v.example[p].clone()).collect();
                match groups.iter_mut().find(|(w, _)| *w == words) {
                    Some((_, members)) => members.push(i),
                    None => groups.push((words, vec![i])),
                }
            }
            let base = c.tokens.clone();
            for (words, members) in groups {
                let mut tokens = base.clone();
                for (&p, w) in positions.iter().zip(&words) {
                    tokens[p] = Tok::Const {
                        text: w.clone(),
                        shape: None,
                    };
                }
                let variants = &self.clusters[cid].variants.list;
                let size: u64 = members.iter().map(|&i| variants[i].count).sum();
                let example: Vec<Box<str>> = variants[members[0]].example.to_vec();
                let example: Vec<&str> = example.iter().map(|t| &**t).collect();
                let new = self.push_cluster(tokens, size, &example);
                self.clusters[new as usize].variants.decided = true;
                created += 1;
                for &i in &members {
                    self.clusters[cid].variants.list[i].target = Some(new);
                }
            }
            self.clusters[cid].retired = true;
        }
        created
    }
}

#[cfg(test)]
mod tests {
    use crate::{Miner, MinerConfig};

    const BYTES: &str = "Block <*> stored as bytes in memory (estimated size <*>, free <*>)";
    const VALUES: &str = "Block <*> stored as values in memory (estimated size <*>, free <*>)";

    #[test]
    fn a_constant_word_with_few_recurring_values_splits() {
        let mut m = Miner::new(MinerConfig::default()).unwrap();
        let lines: Vec<_> = [BYTES, VALUES, BYTES, VALUES, BYTES]
            .iter()
            .map(|t| m.add_line(t))
            .collect();
        // Online, one word in nine differs: one cluster.
        assert_eq!(m.len(), 1);
        let online = m.add(BYTES);
        m.finish();
        let (b, v) = (m.resolve_line(lines[0]), m.resolve_line(lines[1]));
        assert_ne!(b, v);
        assert_eq!(m.resolve_line(lines[2]), b);
        assert_eq!(m.resolve_line(lines[3]), v);
        assert_eq!(m.cluster(b).template(), BYTES);
        assert_eq!(m.cluster(v).template(), VALUES);
        // Sizes count every message, the one added with `add` included.
        assert_eq!((m.cluster(b).size(), m.cluster(v).size()), (4, 2));
        assert_eq!(m.len(), 2);
        // An id from `add` cannot tell the words apart: it keeps the
        // general template.
        assert_eq!(
            m.cluster(online).template(),
            "Block <*> stored as <*> in memory (estimated size <*>, free <*>)"
        );
    }

    #[test]
    fn rare_values_or_many_values_do_not_split() {
        let cfg = MinerConfig {
            min_variable_values: 0,
            ..MinerConfig::default()
        };
        // Three names, each once: split by default (the Loghub evaluation
        // favours it), kept together when a word must recur to be a constant.
        for (min_count, together) in [(1, false), (2, true)] {
            let mut m = Miner::new(MinerConfig {
                split_min_count: min_count,
                ..cfg.clone()
            })
            .unwrap();
            let lines: Vec<_> = ["alice", "bob", "carol"]
                .iter()
                .map(|u| m.add_line(&format!("session opened for user {u} from <*> port <*>")))
                .collect();
            m.finish();
            let same = lines
                .iter()
                .all(|&l| m.resolve_line(l) == m.resolve_line(lines[0]));
            assert_eq!(same, together, "split_min_count {min_count}");
        }
        // Four recurring names: more than split_max_values (3).
        let mut m = Miner::new(cfg.clone()).unwrap();
        let mut lines = Vec::new();
        for _ in 0..2 {
            for u in ["alice", "bob", "carol", "dave"] {
                lines.push(m.add_line(&format!("session opened for user {u} from <*> port <*>")));
            }
        }
        m.finish();
        assert!(
            lines
                .iter()
                .all(|&l| m.resolve_line(l) == m.resolve_line(lines[0]))
        );
        // Off.
        let mut m = Miner::new(MinerConfig {
            split_max_values: 0,
            ..cfg
        })
        .unwrap();
        let a = m.add_line(BYTES);
        m.add_line(BYTES);
        let b = m.add_line(VALUES);
        m.add_line(VALUES);
        m.finish();
        assert_eq!(m.resolve_line(a), m.resolve_line(b));
    }
}
