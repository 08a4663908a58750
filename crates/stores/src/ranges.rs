//! A set of page numbers stored as disjoint, coalesced runs, so that validating a terabyte guest
//! costs O(runs), not O(pages).

use std::collections::BTreeMap;

/// Disjoint half-open runs `start → end`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeSet {
    runs: BTreeMap<u64, u64>,
}

impl RangeSet {
    /// The empty set.
    pub fn new() -> Self {
        RangeSet::default()
    }

    /// Bytes of memory the runs take (B-tree entries estimated).
    pub fn state_bytes(&self) -> usize {
        self.runs.len() * crate::BTREE_ENTRY_BYTES
    }

    /// Whether `x` is in the set.
    pub fn contains(&self, x: u64) -> bool {
        self.runs.range(..=x).next_back().is_some_and(|(_, &e)| x < e)
    }

    /// The runs that overlap `start..end`, unclipped, in order: O(log runs + hits).
    fn overlapping(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let before = self.runs.range(..start).next_back().filter(|&(_, &e)| e > start);
        before.into_iter().chain(self.runs.range(start..end.max(start))).map(|(&s, &e)| (s, e))
    }

    /// How many of `start..end` are in the set.
    pub fn count_in(&self, start: u64, end: u64) -> u64 {
        self.overlapping(start, end).map(|(s, e)| e.min(end) - s.max(start)).sum()
    }

    /// Whether all of `start..end` is in the set.
    pub fn covers(&self, start: u64, end: u64) -> bool {
        self.count_in(start, end) == end - start
    }

    /// Remove `start..end`.
    pub fn remove(&mut self, start: u64, end: u64) {
        let hit: Vec<(u64, u64)> = self.overlapping(start, end).collect();
        for (s, e) in hit {
            self.runs.remove(&s);
            if s < start {
                self.runs.insert(s, start);
            }
            if e > end {
                self.runs.insert(end, e);
            }
        }
    }

    /// Add `start..end`.
    pub fn insert(&mut self, start: u64, end: u64) {
        self.remove(start, end);
        let (mut s, mut e) = (start, end);
        if let Some((&ps, &pe)) = self.runs.range(..s).next_back()
            && pe == s
        {
            self.runs.remove(&ps);
            s = ps;
        }
        if let Some(ne) = self.runs.remove(&e) {
            e = ne;
        }
        self.runs.insert(s, e);
    }

    /// Total members.
    pub fn len(&self) -> u64 {
        self.runs.iter().map(|(&s, &e)| e - s).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The runs `(start, end)`, in order.
    pub fn runs(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.runs.iter().map(|(&s, &e)| (s, e))
    }

    /// The runs clipped to `start..end`, in order.
    pub fn runs_in(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let first = self.runs.range(..=start).next_back().map_or(start, |(&s, _)| s);
        self.runs
            .range(first..end)
            .filter(move |&(_, &e)| e > start)
            .map(move |(&s, &e)| (s.max(start), e.min(end)))
    }

    /// The `k`-th member in increasing order (0-based), if the set has more than `k` members.
    pub fn nth(&self, mut k: u64) -> Option<u64> {
        for (&s, &e) in &self.runs {
            if k < e - s {
                return Some(s + k);
            }
            k -= e - s;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn matches_a_dense_bitmap(ops in proptest::collection::vec((0u64..60, 1u64..12, any::<bool>()), 1..50)) {
            let mut r = RangeSet::new();
            let mut dense = [false; 80];
            for (s, n, add) in ops {
                if add { r.insert(s, s + n) } else { r.remove(s, s + n) }
                for i in s..s + n { dense[i as usize] = add; }
                for i in 0..80u64 { prop_assert_eq!(r.contains(i), dense[i as usize]); }
                prop_assert_eq!(r.len(), dense.iter().filter(|&&d| d).count() as u64);
                let c = (10..30).filter(|&i| dense[i]).count() as u64;
                prop_assert_eq!(r.count_in(10, 30), c);
                prop_assert_eq!(r.covers(10, 30), c == 20);
                let members: Vec<u64> = (0..80u64).filter(|&i| dense[i as usize]).collect();
                for (k, &m) in members.iter().enumerate() { prop_assert_eq!(r.nth(k as u64), Some(m)); }
                prop_assert_eq!(r.nth(members.len() as u64), None);
                let clipped: u64 = r.runs_in(10, 30).map(|(s, e)| e - s).sum();
                prop_assert_eq!(clipped, c);
                prop_assert!(r.runs_in(10, 30).all(|(s, e)| 10 <= s && s < e && e <= 30));
            }
        }
    }
}
