//! Group chunking components (packages, the initramfs, the unpackaged rest) into
//! image layers, for the parallel writer (`chunkwriter`).
//!
//! The rules, for a fresh build (no previous image to stay close to):
//! - fewer components than `max_layers`: one layer per component, largest first,
//!   plus one empty layer (the same layout ostree-ext gives in that case, so the two
//!   writers produce the same image);
//! - otherwise: the catch-all components (`change_frequency == u32::MAX`: initramfs,
//!   unpackaged content) share one layer; the largest packages get a layer each, and
//!   the smaller ones are merged into groups of similar change frequency (so that a
//!   package that changes often does not drag stable ones along), with as many
//!   single-package layers as possible while a merged layer stays, on average, no
//!   bigger than the smallest single-package layer.
//!
//! The last layer is always the empty one "reserved for new packages": ostree-ext's
//! `--previous-build-manifest` packer puts packages added since into the last layer.
//! Inside a layer, components are sorted by name, the order ostree-ext reads them back
//! from the `ostree.components` annotation (so rebuilding from this image's manifest
//! gives the same layer names).
//!
//! Not for: following a previous build's layout (ostree-ext's packer does that).

use ostree_ext::chunking::ObjectSourceMetaSized;

/// One layer's worth of components.
pub type Bin<'a> = Vec<&'a ObjectSourceMetaSized>;

/// Pack `components` (sorted by size, largest first, as
/// `ObjectMetaSized::compute_sizes` returns them) into at most `max_layers` bins.
/// `max_layers` must be at least 4.
pub fn pack(components: &[ObjectSourceMetaSized], max_layers: u32) -> Vec<Bin<'_>> {
    let max = max_layers.max(4) as usize;
    if components.is_empty() {
        return Vec::new();
    }
    let mut bins: Vec<Bin<'_>> = if components.len() < max {
        components.iter().map(|c| vec![c]).collect()
    } else {
        pack_merged(components, max)
    };
    for b in &mut bins {
        b.sort_by(|a, b| {
            (&*a.meta.name, &*a.meta.identifier).cmp(&(&*b.meta.name, &*b.meta.identifier))
        });
    }
    bins.push(Vec::new());
    debug_assert!(bins.len() <= max);
    bins
}

fn pack_merged(components: &[ObjectSourceMetaSized], max: usize) -> Vec<Bin<'_>> {
    let (catch_all, pkgs): (Vec<_>, Vec<_>) = components
        .iter()
        .partition(|c| c.meta.change_frequency == u32::MAX);
    // One bin reserved for new packages, one for the catch-alls.
    let budget = max - 1 - usize::from(!catch_all.is_empty());
    let mut bins: Vec<Bin<'_>> = Vec::new();
    if pkgs.len() <= budget {
        bins.extend(pkgs.iter().map(|c| vec![*c]));
    } else {
        let singles = single_count(&pkgs, budget);
        bins.extend(pkgs[..singles].iter().map(|c| vec![*c]));
        bins.extend(merge_groups(&pkgs[singles..], budget - singles));
    }
    if !catch_all.is_empty() {
        bins.push(catch_all);
    }
    bins
}

/// How many of the largest packages get a layer of their own, given `budget` layers
/// for `pkgs.len() > budget` packages: the most that keeps the merged rest, averaged
/// over the layers left, no bigger than the smallest single-package layer.
fn single_count(pkgs: &[&ObjectSourceMetaSized], budget: usize) -> usize {
    let mut rest: u128 = pkgs.iter().map(|c| u128::from(c.size)).sum();
    let mut rest_from = 0;
    let mut best = 0;
    // Try singles = 1, 2, ... and keep the largest that satisfies the rule.
    for singles in 1..budget {
        while rest_from < singles {
            rest -= u128::from(pkgs[rest_from].size);
            rest_from += 1;
        }
        let groups = (budget - singles) as u128;
        let smallest_single = u128::from(pkgs[singles - 1].size);
        if rest <= groups * smallest_single {
            best = singles;
        }
    }
    best
}

/// Merge `pkgs` into at most `groups` bins: ordered by change frequency (then name),
/// cut into consecutive runs of about equal total size.
fn merge_groups<'a>(pkgs: &[&'a ObjectSourceMetaSized], groups: usize) -> Vec<Bin<'a>> {
    let mut sorted: Vec<&ObjectSourceMetaSized> = pkgs.to_vec();
    sorted.sort_by(|a, b| {
        (a.meta.change_frequency, &*a.meta.name, &*a.meta.identifier).cmp(&(
            b.meta.change_frequency,
            &*b.meta.name,
            &*b.meta.identifier,
        ))
    });
    let groups = groups.max(1);
    let total: u128 = sorted.iter().map(|c| u128::from(c.size)).sum();
    let mut out: Vec<Bin<'a>> = Vec::new();
    let mut cur: Bin<'a> = Vec::new();
    let mut cur_size: u128 = 0;
    let mut done_size: u128 = 0;
    for (i, c) in sorted.iter().enumerate() {
        cur.push(c);
        cur_size += u128::from(c.size);
        let left_items = sorted.len() - i - 1;
        let closed = out.len() + 1;
        // Close the bin once the running total reaches its share of the whole, or
        // when each remaining item must get a bin of its own to use all bins.
        let share = total * closed as u128 / groups as u128;
        let must_split = left_items > 0 && left_items <= groups - closed;
        if closed < groups && left_items > 0 && (done_size + cur_size >= share || must_split) {
            done_size += cur_size;
            cur_size = 0;
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The layer description ostree-ext gives a bin (it becomes the history `created_by`).
pub fn bin_name(bin: &[&ObjectSourceMetaSized]) -> String {
    match bin.len() {
        0 => "Reserved for new packages".to_string(),
        1..=5 => bin
            .iter()
            .map(|c| &*c.meta.identifier)
            .collect::<Vec<_>>()
            .join(" and "),
        n => format!("{n} components"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ostree_ext::objectsource::ObjectSourceMeta;
    use std::rc::Rc;

    fn comp(name: &str, size: u64, freq: u32) -> ObjectSourceMetaSized {
        ObjectSourceMetaSized {
            meta: ObjectSourceMeta {
                identifier: Rc::from(format!("{name}-1.0-1.x86_64")),
                name: Rc::from(name),
                srcid: Rc::from(name),
                change_time_offset: 0,
                change_frequency: freq,
            },
            size,
        }
    }

    fn sorted(mut v: Vec<ObjectSourceMetaSized>) -> Vec<ObjectSourceMetaSized> {
        v.sort_by_key(|c| std::cmp::Reverse(c.size));
        v
    }

    fn names(bins: &[Bin<'_>]) -> Vec<Vec<String>> {
        bins.iter()
            .map(|b| b.iter().map(|c| c.meta.name.to_string()).collect())
            .collect()
    }

    #[test]
    fn few_components_one_layer_each_plus_reserved() {
        let c = sorted(vec![comp("a", 10, 1), comp("b", 30, 1), comp("c", 20, 1)]);
        let bins = pack(&c, 64);
        assert_eq!(names(&bins), vec![vec!["b"], vec!["c"], vec!["a"], vec![]]);
        assert_eq!(bin_name(&bins[0]), "b-1.0-1.x86_64");
        assert_eq!(bin_name(&bins[3]), "Reserved for new packages");
        assert!(pack(&[], 64).is_empty());
    }

    #[test]
    fn many_components_fit_in_max_layers_and_keep_everything() {
        for max in [4u32, 5, 7, 16, 64] {
            for n in [max as usize, max as usize + 1, 3 * max as usize, 200] {
                let mut v: Vec<_> = (0..n)
                    .map(|i| {
                        comp(
                            &format!("p{i:03}"),
                            (i as u64 * 7919) % 1000,
                            (i % 5) as u32,
                        )
                    })
                    .collect();
                v.push(comp("rpmostree-unpackaged-content", 500, u32::MAX));
                v.push(comp("initramfs", 5000, u32::MAX));
                let v = sorted(v);
                let bins = pack(&v, max);
                assert!(
                    bins.len() <= max as usize,
                    "max {max} n {n}: {}",
                    bins.len()
                );
                assert!(bins.last().unwrap().is_empty());
                let mut all: Vec<String> = names(&bins).into_iter().flatten().collect();
                assert_eq!(all.len(), v.len());
                all.sort();
                all.dedup();
                assert_eq!(all.len(), v.len());
                // The catch-alls share a layer.
                let catch = bins
                    .iter()
                    .find(|b| b.iter().any(|c| &*c.meta.name == "initramfs"))
                    .unwrap();
                assert!(catch
                    .iter()
                    .any(|c| &*c.meta.name == "rpmostree-unpackaged-content"));
                assert!(
                    bins.iter().all(|b| !b.is_empty())
                        || bins.iter().filter(|b| b.is_empty()).count() == 1
                );
            }
        }
    }

    #[test]
    fn largest_alone_small_ones_merged_by_frequency() {
        // 2 big, 6 small: 6 layers -> reserved + 5 for packages (no catch-alls).
        let mut v = vec![comp("big1", 1000, 0), comp("big2", 900, 0)];
        for (i, f) in [3, 0, 3, 0, 3, 0].iter().enumerate() {
            v.push(comp(&format!("s{i}"), 10, *f));
        }
        let v = sorted(v);
        let bins = pack(&v, 6);
        let n = names(&bins);
        assert_eq!(n[0], vec!["big1"]);
        assert_eq!(n[1], vec!["big2"]);
        assert_eq!(n.len(), 6, "{n:?}");
        // Merged groups follow the change frequency: no group has a package that
        // changes more often than one in a later group.
        for w in bins[2..5].windows(2) {
            let max0 = w[0].iter().map(|c| c.meta.change_frequency).max().unwrap();
            let min1 = w[1].iter().map(|c| c.meta.change_frequency).min().unwrap();
            assert!(max0 <= min1, "{n:?}");
        }
        // The rule: merged layers are on average no bigger than the smallest single one.
        let merged: Vec<u64> = bins[2..5]
            .iter()
            .map(|b| b.iter().map(|c| c.size).sum())
            .collect();
        assert!(merged.iter().sum::<u64>() / 3 <= 900, "{merged:?}");
    }

    #[test]
    fn all_zero_sizes() {
        let v: Vec<_> = (0..10).map(|i| comp(&format!("e{i}"), 0, 0)).collect();
        let bins = pack(&v, 4);
        assert!(bins.len() <= 4);
        assert_eq!(names(&bins).concat().len(), 10);
    }
}
