//! The sweep's grid: its points in expansion order, each point's overrides and parameters, and
//! the shards that split it.

use anyhow::Result;
use serde_json::Value as Json;

use super::file::{MAX_AXES, SweepDef};
use super::values::Loc;

/// One point of the grid: its index in expansion order, the value index on each axis, the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Point {
    /// Index in expansion order.
    pub index: usize,
    /// Value index per axis (`value[a]` for axis `a`); at most 16 axes.
    pub value: [u32; MAX_AXES],
    /// The seed index (into [`SweepDef::seeds`], 0 when there are none).
    pub seed: u32,
}

impl SweepDef {
    /// Runs in the full grid (before any is skipped).
    pub fn size(&self) -> u128 {
        let seeds = self.seeds.len().max(1) as u128;
        self.axes.iter().map(|a| a.values.len() as u128).product::<u128>() * seeds
    }

    /// Every point of the grid in expansion order (first axis slowest, seeds fastest).
    pub fn expand(&self) -> Vec<Point> {
        let seeds = self.seeds.len().max(1);
        let total = usize::try_from(self.size()).unwrap_or(usize::MAX);
        let mut out = Vec::with_capacity(total);
        for index in 0..total {
            let mut rest = index;
            let seed = (rest % seeds) as u32;
            rest /= seeds;
            let mut value = [0u32; MAX_AXES];
            for (a, axis) in self.axes.iter().enumerate().rev() {
                value[a] = (rest % axis.values.len()) as u32;
                rest /= axis.values.len();
            }
            out.push(Point { index, value, seed });
        }
        out
    }

    /// The overrides of a point, in the order given to the scenario parser: `[set]`, each axis's
    /// keys, then `seed`. The third element of each is where the value is written.
    pub fn overrides(&self, p: &Point) -> Vec<(String, String, Loc)> {
        let mut out: Vec<(String, String, Loc)> =
            self.fixed.iter().map(|o| (o.key.clone(), o.value.clone(), o.loc)).collect();
        for (a, axis) in self.axes.iter().enumerate() {
            let v = &axis.values[p.value[a] as usize];
            for (k, t) in axis.keys.iter().zip(&v.texts) {
                out.push((k.clone(), t.clone(), v.loc));
            }
        }
        if let Some(seed) = self.seeds.get(p.seed as usize) {
            out.push(("seed".into(), seed.to_string(), self.seeds_loc));
        }
        out
    }

    /// The point's parameters: axis name → value.
    pub fn params(&self, p: &Point) -> serde_json::Map<String, Json> {
        self.axes
            .iter()
            .enumerate()
            .map(|(a, axis)| (axis.name.clone(), axis.values[p.value[a] as usize].json.clone()))
            .collect()
    }
}

/// `--shard I/N`: `(I, N)` with `0 <= I < N`.
pub fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let bad = || {
        anyhow::anyhow!(
            "--shard {s:?}: expected I/Node with 0 <= I < Node (for example 0/8; array task ids count from 0)"
        )
    };
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

/// Whether the run with `index` belongs to shard `i` of `n`.
pub fn in_shard(index: usize, i: usize, n: usize) -> bool {
    index % n == i
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use proptest::prelude::*;

    use super::*;
    use crate::sweep::file::parse;

    #[test]
    fn shard_argument() {
        assert_eq!(parse_shard("0/1").unwrap(), (0, 1));
        assert_eq!(parse_shard("7/8").unwrap(), (7, 8));
        for bad in ["8/8", "1/0", "x/2", "3", "-1/2"] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
    }

    fn def_with(sizes: &[usize], seeds: usize) -> SweepDef {
        let mut text = String::from("name = 'p'\nscenario = 'b.toml'\n");
        if seeds > 0 {
            let _ = writeln!(text, "seeds = {{ from = 0, to = {} }}", seeds - 1);
        }
        for (a, n) in sizes.iter().enumerate() {
            let _ =
                writeln!(text, "[[axis]]\nkey = 'k{a}'\nrange = {{ from = 0, to = {}, step = 1 }}", n - 1);
        }
        parse("p.toml", &text).unwrap()
    }

    proptest! {
        /// The shards of any N are disjoint, their union is the whole sweep, and every run is the
        /// same point (index, values, seed) whatever N is.
        #[test]
        fn shards_partition_the_sweep(sizes in prop::collection::vec(1usize..5, 0..4), seeds in 0usize..4, n in 1usize..12) {
            let d = def_with(&sizes, seeds);
            let all = d.expand();
            prop_assert_eq!(all.len() as u128, d.size());
            // Expansion is a bijection onto the grid: every combination once.
            let distinct: std::collections::BTreeSet<_> = all.iter().map(|p| (p.value, p.seed)).collect();
            prop_assert_eq!(distinct.len(), all.len());
            for (i, p) in all.iter().enumerate() {
                prop_assert_eq!(p.index, i);
            }
            let mut seen = vec![0u32; all.len()];
            for shard in 0..n {
                for p in all.iter().filter(|p| in_shard(p.index, shard, n)) {
                    seen[p.index] += 1;
                }
            }
            prop_assert!(seen.iter().all(|&c| c == 1), "every run in exactly one shard");
            // Independent of N: a second expansion (another machine, another N) is identical.
            prop_assert_eq!(d.expand(), all);
        }
    }
}
