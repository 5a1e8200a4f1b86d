//! The batch passes of [`Miner::finish`]: once the input is exhausted, the
//! miner sees every cluster at once and can correct two blind spots of the
//! online, one-message-at-a-time Drain search.
//!
//! * **A variable word among constants** (a user name, a weekday, a state
//!   word) is a mismatch for the similarity, so in a short message each of its
//!   values starts its own cluster, and in the first `depth - 2` tokens it
//!   routes each value to its own tree branch. Online, two values look exactly
//!   like two constant templates (`open … HTTPS` vs `open … SOCKS5`); only the
//!   number of values tells them apart. [`Miner::merge_by_position`] merges
//!   clusters that are identical except at one position when that position
//!   takes at least [`MinerConfig::min_variable_values`](crate::MinerConfig::min_variable_values) distinct values.
//! * **A variable spanning several tokens** changes the token count, which the
//!   tree's first layer separates. [`Miner::merge_by_key`] merges templates
//!   that are equal once their pure-variable tokens are removed.
//!
//! Both only merge (older cluster survives, ids of absorbed clusters resolve
//! to it), so ids handed out online stay valid.

use std::hash::{BuildHasher, BuildHasherDefault};

use crate::miner::{FxHasher, FxMap, Miner, Tok, generalise_tok};

impl Miner {
    /// Split and merge passes, for batch use once the input is exhausted (the
    /// miner stays usable afterwards; [`Miner::add`] then returns surviving
    /// ids): first the split of clusters whose `<*>` held few words (see
    /// `split.rs`; only lines recorded with [`Miner::add_line`] follow it),
    /// then [`MinerConfig::min_variable_values`](crate::MinerConfig::min_variable_values) (if non-zero) and the
    /// multi-token variable merge, repeated while either finds something.
    /// Returns how many clusters were absorbed. No-op when
    /// [`MinerConfig::merge_pass`](crate::MinerConfig::merge_pass) is off.
    pub fn finish(&mut self) -> usize {
        if !self.config.merge_pass {
            return 0;
        }
        self.split_by_values();
        let mut absorbed = 0;
        loop {
            let n = self.merge_by_position() + self.merge_by_key();
            if n == 0 {
                return absorbed;
            }
            absorbed += n;
        }
    }

    /// Two clusters are merged when their templates are the same once tokens
    /// that are pure variables are removed (`bytes <*> sent` and
    /// `bytes (<*> KB) sent` both become `bytes sent`... if `KB` was masked):
    /// a variable can span several tokens, which the token-count layer of the
    /// tree cannot see. The older cluster survives and keeps its template.
    fn merge_by_key(&mut self) -> usize {
        let mut seen: FxMap<String, u32> = FxMap::default();
        let mut absorbed = 0;
        for i in 0..self.clusters.len() {
            if self.alias[i] != i as u32 || self.clusters[i].retired {
                continue;
            }
            let Some(key) = self.clusters[i].merge_key() else {
                continue;
            };
            match seen.get(&key) {
                Some(&keep) => {
                    self.absorb(keep as usize, i);
                    absorbed += 1;
                }
                None => {
                    seen.insert(key, i as u32);
                }
            }
        }
        absorbed
    }

    /// For each token count and each position `p`, groups the live clusters
    /// whose templates agree everywhere but at `p`; a group whose tokens at
    /// `p` take at least [`MinerConfig::min_variable_values`](crate::MinerConfig::min_variable_values) distinct values
    /// (a position that is already `<*>` for different words counts as two)
    /// becomes one cluster with a variable at `p`, provided the rest holds a
    /// constant word. No-op when that setting is 0.
    fn merge_by_position(&mut self) -> usize {
        let min_values = self.config.min_variable_values;
        if min_values == 0 {
            return 0;
        }
        let hasher = BuildHasherDefault::<FxHasher>::default();
        // Per live cluster: one hash per (position, rendered token).
        let mut by_len: FxMap<usize, Vec<(u32, Vec<u64>)>> = FxMap::default();
        for (i, c) in self.clusters.iter().enumerate() {
            if self.alias[i] != i as u32 || c.retired || c.tokens.is_empty() {
                continue;
            }
            let hashes = c
                .tokens
                .iter()
                .enumerate()
                .map(|(p, t)| hasher.hash_one((p, TokKey(t))))
                .collect();
            by_len
                .entry(c.tokens.len())
                .or_default()
                .push((i as u32, hashes));
        }
        let mut absorbed = 0;
        let mut lens: Vec<usize> = by_len.keys().copied().collect();
        lens.sort_unstable();
        for len in lens {
            let members = &by_len[&len];
            if members.len() < 2 {
                continue;
            }
            for p in 0..len {
                // Key: the sum of the other positions' hashes (position-salted,
                // so the sum identifies the rest of the template).
                let mut groups: FxMap<u64, Vec<u32>> = FxMap::default();
                for (cid, h) in members {
                    if self.alias[*cid as usize] != *cid {
                        continue;
                    }
                    let key = h
                        .iter()
                        .enumerate()
                        .filter(|&(q, _)| q != p)
                        .fold(0u64, |acc, (_, x)| acc.wrapping_add(*x));
                    groups.entry(key).or_default().push(*cid);
                }
                let mut keys: Vec<u64> = groups.keys().copied().collect();
                keys.sort_unstable();
                for key in keys {
                    let group = &groups[&key];
                    if group.len() < 2 {
                        continue;
                    }
                    // Hash collisions: keep only templates truly equal off `p`.
                    let first = *group.iter().min().expect("non-empty");
                    let same: Vec<u32> = group
                        .iter()
                        .copied()
                        .filter(|&c| self.equal_except(first, c, p))
                        .collect();
                    if self.distinct_values(&same, p) < min_values || !self.anchored(first, p) {
                        continue;
                    }
                    for &c in &same {
                        if c != first {
                            self.absorb(first as usize, c as usize);
                            absorbed += 1;
                        }
                    }
                    self.clusters[first as usize].tokens[p] = Tok::Slot;
                }
            }
        }
        absorbed
    }

    /// Whether the template has a constant word (a token with a letter and
    /// no variable part) outside position `p`: without one, "equal but for
    /// `p`" says nothing (every one-word message would be one template).
    fn anchored(&self, c: u32, p: usize) -> bool {
        self.clusters[c as usize]
            .tokens
            .iter()
            .enumerate()
            .any(|(q, t)| {
                q != p
                    && matches!(t, Tok::Const { text, shape: None } if text.chars().any(char::is_alphabetic))
            })
    }

    fn equal_except(&self, a: u32, b: u32, p: usize) -> bool {
        let (ta, tb) = (
            &self.clusters[a as usize].tokens,
            &self.clusters[b as usize].tokens,
        );
        ta.len() == tb.len()
            && ta
                .iter()
                .zip(tb)
                .enumerate()
                .all(|(q, (x, y))| q == p || x == y)
    }

    /// Distinct tokens at `p` among `group` (a `<*>` that already absorbed
    /// different words counts as two values, one this pass made counts as
    /// enough).
    fn distinct_values(&self, group: &[u32], p: usize) -> usize {
        let mut seen: Vec<&Tok> = Vec::new();
        let mut n = 0;
        for &c in group {
            let t = &self.clusters[c as usize].tokens[p];
            if matches!(t, Tok::Slot) {
                return usize::MAX;
            } else if matches!(t, Tok::Wild) {
                n += 2;
            } else if !seen.contains(&t) {
                seen.push(t);
                n += 1;
            }
        }
        n
    }

    /// Cluster `keep` (older) absorbs cluster `gone`: sizes add, templates
    /// of the same length fold position by position.
    fn absorb(&mut self, keep: usize, gone: usize) {
        assert!(keep < gone, "survivor is older");
        self.alias[gone] = keep as u32;
        let (lo, hi) = self.clusters.split_at_mut(gone);
        let (keep_c, gone_c) = (&mut lo[keep], &hi[0]);
        keep_c.size += gone_c.size;
        if keep_c.tokens.len() == gone_c.tokens.len() {
            for (t, o) in keep_c.tokens.iter_mut().zip(&gone_c.tokens) {
                generalise_tok(t, o);
            }
        }
    }
}

/// Hashes a template token by what it renders as and its kind.
struct TokKey<'a>(&'a Tok);

impl std::hash::Hash for TokKey<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self.0 {
            Tok::Const { text, .. } => {
                state.write_u8(0);
                state.write(text.as_bytes());
            }
            Tok::Var(shape) => {
                state.write_u8(1);
                state.write(shape.as_bytes());
            }
            Tok::AnyVar => state.write_u8(2),
            Tok::Wild => state.write_u8(3),
            Tok::Slot => state.write_u8(4),
            Tok::Pair(open, close) => {
                state.write_u8(5);
                state.write(&[*open, *close]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{ConfigError, Miner, MinerConfig};

    fn miner(min_values: usize) -> Miner {
        Miner::new(MinerConfig {
            min_variable_values: min_values,
            ..MinerConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn a_word_with_many_values_becomes_a_variable() {
        let mut m = miner(4);
        let users = ["admin", "oracle", "test", "support", "admin"];
        let ids: Vec<_> = users
            .iter()
            .map(|u| m.add(&format!("Invalid user {u} from <*>")))
            .collect();
        // Online, one word in four differs: each name is its own cluster.
        assert_eq!(m.len(), 4);
        assert_eq!(m.finish(), 3);
        let first = m.resolve(ids[0]);
        assert!(ids.iter().all(|&id| m.resolve(id) == first));
        assert_eq!(m.cluster(first).template(), "Invalid user <*> from <*>");
        assert_eq!(m.cluster(first).size(), 5);
        // Later messages with a new name join the merged cluster.
        assert_eq!(m.add("Invalid user guest from <*>"), first);
    }

    #[test]
    fn few_values_stay_distinct_templates() {
        let mut m = miner(4);
        let ids: Vec<_> = ["HTTPS", "SOCKS5", "HTTPS", "HTTP"]
            .iter()
            .map(|p| m.add(&format!("<*> open through proxy <*> {p}")))
            .collect();
        assert_eq!(m.finish(), 0);
        assert_eq!(m.len(), 3);
        assert_ne!(m.resolve(ids[0]), m.resolve(ids[1]));
        // The same input with a lower bar merges.
        let mut loose = miner(3);
        for p in ["HTTPS", "SOCKS5", "HTTP"] {
            loose.add(&format!("<*> open through proxy <*> {p}"));
        }
        assert_eq!(loose.finish(), 2);
        // Off: nothing merges.
        let mut off = miner(0);
        for u in ["a", "b", "c", "d", "e"] {
            off.add(&format!("Invalid user {u} from <*>"));
        }
        assert_eq!(off.finish(), 0);
    }

    #[test]
    fn templates_without_a_constant_word_elsewhere_never_merge() {
        let mut m = miner(2);
        for w in ["initEnvironment", "getStatus", "restartCounter", "clear()"] {
            m.add(w);
        }
        for w in ["alpha", "beta", "gamma"] {
            m.add(&format!("<*> {w}"));
        }
        assert_eq!(m.finish(), 0);
        assert_eq!(m.len(), 7);
    }

    #[test]
    fn one_value_is_not_a_setting() {
        let errs = MinerConfig {
            min_variable_values: 1,
            ..MinerConfig::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(errs.0, [ConfigError::MinVariableValues(1)]);
        assert!(errs.to_string().contains("min_variable_values"), "{errs}");
    }
}
