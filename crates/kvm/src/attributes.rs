//! KVM memory attributes (gmem era): which GFNs are private.

use std::collections::BTreeMap;

use snpsim_defs::Gfn;
use snpsim_host::DirtyLog;

/// The private/shared attribute of every GFN, stored as the disjoint, coalesced runs of shared
/// GFNs (a fresh SNP VM's memory starts private, design §10).
#[derive(Clone, Debug, Default)]
pub struct MemoryAttributes {
    /// Shared runs: start → end (exclusive).
    shared: BTreeMap<u64, u64>,
    /// GFN ranges whose attribute changed (for the incremental invariant check).
    pub dirty: DirtyLog,
}

impl MemoryAttributes {
    /// All memory private.
    pub fn new() -> Self {
        MemoryAttributes::default()
    }

    /// Bytes of memory the shared runs take (B-tree entries estimated).
    pub fn state_bytes(&self) -> usize {
        self.shared.len() * snpsim_hw::BTREE_ENTRY_BYTES
    }

    /// Whether `gfn` is private.
    pub fn is_private(&self, gfn: Gfn) -> bool {
        self.shared.range(..=gfn.raw()).next_back().is_none_or(|(_, &end)| gfn.raw() >= end)
    }

    /// `Some(private)` if every GFN of `start..start + pages` has the same attribute, else `None`
    /// (a "mixed" range that KVM maps with smaller leaves).
    pub fn uniform(&self, start: Gfn, pages: u64) -> Option<bool> {
        let (s, e) = (start.raw(), start.raw() + pages);
        let first = self.is_private(start);
        let boundary = self.shared.range(s + 1..e).next().is_some()
            || self.shared.range(..e).next_back().is_some_and(|(_, &end)| end > s && end < e);
        (!boundary).then_some(first)
    }

    /// KVM_SET_MEMORY_ATTRIBUTES over `start..start + pages`. Returns the number of GFNs whose
    /// attribute changed.
    pub fn set(&mut self, start: Gfn, pages: u64, private: bool) -> u64 {
        let (s, e) = (start.raw(), start.raw() + pages);
        let before = self.shared_in(s, e);
        // Cut the runs overlapping [s, e) down to the parts outside it.
        let overlapping: Vec<(u64, u64)> = self.overlapping(s, e).collect();
        for (a, b) in overlapping {
            self.shared.remove(&a);
            if a < s {
                self.shared.insert(a, s);
            }
            if b > e {
                self.shared.insert(e, b);
            }
        }
        if !private {
            let mut ns = s;
            let mut ne = e;
            if let Some((&a, &b)) = self.shared.range(..s).next_back()
                && b == s
            {
                self.shared.remove(&a);
                ns = a;
            }
            if let Some(b) = self.shared.remove(&e) {
                ne = b;
            }
            self.shared.insert(ns, ne);
        }
        let after = self.shared_in(s, e);
        if after != before {
            self.dirty.mark(s, e - s);
        }
        after.abs_diff(before)
    }

    fn shared_in(&self, s: u64, e: u64) -> u64 {
        self.overlapping(s, e).map(|(a, b)| b.min(e) - a.max(s)).sum()
    }

    /// The shared runs that overlap `s..e`, unclipped, in order: O(log runs + hits).
    fn overlapping(&self, s: u64, e: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let before = self.shared.range(..s).next_back().filter(|&(_, &end)| end > s);
        before.into_iter().chain(self.shared.range(s..e.max(s))).map(|(&a, &b)| (a, b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn set_and_query() {
        let mut a = MemoryAttributes::new();
        assert!(a.is_private(Gfn(5)));
        assert_eq!(a.set(Gfn(4), 4, false), 4);
        assert_eq!(a.set(Gfn(6), 4, false), 2);
        assert!(!a.is_private(Gfn(9)));
        assert!(a.is_private(Gfn(10)));
        assert_eq!(a.uniform(Gfn(4), 4), Some(false));
        assert_eq!(a.uniform(Gfn(0), 4), Some(true));
        assert_eq!(a.uniform(Gfn(8), 4), None);
        assert_eq!(a.set(Gfn(5), 1, true), 1);
        assert_eq!(a.uniform(Gfn(4), 4), None);
    }

    proptest! {
        #[test]
        fn matches_a_dense_bitmap(ops in proptest::collection::vec((0u64..64, 1u64..16, any::<bool>()), 1..40)) {
            let mut a = MemoryAttributes::new();
            let mut dense = [true; 80];
            for (s, n, p) in ops {
                let changed = (s..s + n).filter(|&i| dense[i as usize] != p).count() as u64;
                prop_assert_eq!(a.set(Gfn(s), n, p), changed);
                for i in s..s + n { dense[i as usize] = p; }
                for i in 0..80u64 { prop_assert_eq!(a.is_private(Gfn(i)), dense[i as usize]); }
                for s2 in (0..76u64).step_by(4) {
                    let w = &dense[s2 as usize..s2 as usize + 4];
                    let expect = w.iter().all(|&x| x == w[0]).then_some(w[0]);
                    prop_assert_eq!(a.uniform(Gfn(s2), 4), expect);
                }
            }
        }
    }
}
