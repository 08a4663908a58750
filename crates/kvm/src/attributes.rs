//! KVM memory attributes (gmem era): which GFNs are private.

use snpsim_defs::Gfn;
use snpsim_host::DirtyLog;
use snpsim_stores::PageSet;

/// The private/shared attribute of every GFN, stored as the set of shared GFNs (a fresh SNP VM's
/// memory starts private, `docs/semantics.md` E1), a bit per page in run-compressed words: a range converted
/// page by page (every other page shared) costs no more than one converted whole.
#[derive(Clone, Debug, Default)]
pub struct MemoryAttributes {
    /// Shared GFNs.
    shared: PageSet,
    /// GFN ranges whose attribute changed (for the incremental invariant check).
    pub dirty: DirtyLog,
}

impl MemoryAttributes {
    /// All memory private.
    pub fn new() -> Self {
        MemoryAttributes::default()
    }

    /// Bytes of memory the shared set takes.
    pub fn state_bytes(&self) -> usize {
        self.shared.state_bytes()
    }

    /// Whether `gfn` is private.
    pub fn is_private(&self, gfn: Gfn) -> bool {
        !self.shared.contains(gfn.raw())
    }

    /// `Some(private)` if every GFN of `start..start + pages` has the same attribute, else `None`
    /// (a "mixed" range that KVM maps with smaller leaves).
    pub fn uniform(&self, start: Gfn, pages: u64) -> Option<bool> {
        self.shared.uniform(start.raw(), start.raw() + pages).map(|shared| !shared)
    }

    /// KVM_SET_MEMORY_ATTRIBUTES over `start..start + pages`. Returns the number of GFNs whose
    /// attribute changed.
    pub fn set(&mut self, start: Gfn, pages: u64, private: bool) -> u64 {
        let (s, e) = (start.raw(), start.raw() + pages);
        let changed = if private { self.shared.remove(s, e) } else { self.shared.insert(s, e) };
        if changed > 0 {
            self.dirty.mark(s, e - s);
        }
        changed
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
        // 6 and 7 are shared already: only 8 and 9 change.
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
