//! Data-driven: the miner must reproduce the grouping in
//! `tests/fixtures/groups.tsv` exactly (every expected group is one cluster,
//! and no cluster spans two groups), mined as `logs mine` does (every line
//! recorded with `add_line`, resolved after `finish`).

use std::collections::BTreeMap;

use logmine::{Masker, Miner, MinerConfig};

#[test]
fn fixture_grouping_is_reproduced() {
    let text = include_str!("fixtures/groups.tsv");
    let masker = Masker::with_defaults();
    let mut miner = Miner::new(MinerConfig::default()).unwrap();
    let mut rows = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (group, message) = line.split_once('\t').expect("group<TAB>message");
        rows.push((group, message, miner.add_line(&masker.mask(message))));
    }
    miner.finish();
    let mut by_group: BTreeMap<&str, Vec<_>> = BTreeMap::new();
    let mut by_cluster: BTreeMap<_, Vec<&str>> = BTreeMap::new();
    for &(group, message, id) in &rows {
        let id = miner.resolve_line(id);
        by_group.entry(group).or_default().push((id, message));
        by_cluster.entry(id).or_default().push(group);
    }
    let mut problems = Vec::new();
    for (group, members) in &by_group {
        if members.iter().any(|(id, _)| *id != members[0].0) {
            problems.push(format!("group {group} split: {members:?}"));
        }
    }
    for (id, groups) in &by_cluster {
        if groups.iter().any(|g| g != &groups[0]) {
            let t = miner.cluster(*id).template();
            problems.push(format!("cluster {id} ({t}) mixes {groups:?}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(miner.len(), by_group.len());
}
