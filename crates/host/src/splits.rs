//! Which host huge-page splits were needed, decided by counterfactual rather than by who asked.
//!
//! A split replaces one huge host mapping by 4K ones. It is *needed* when the access that
//! triggered it, or a later host access through the VMA while the range is still split, would have
//! taken an RMP #PF through the old, larger mapping but completes through the 4K one (the host
//! write check of RFC v4 10/40 and Linux `adjust_direct_map`: a write through a mapping ≥ 2M faults
//! when its 2M part holds an assigned page). Otherwise it is *needless*: the host could have kept
//! its huge page. Guest accesses never make a host split needed: they are translated by the NPT,
//! whose leaf KVM can demote without touching the host mapping (the `npt-demote` policy does), so
//! the host mapping's size never decides whether a guest access faults. A split range that
//! collapses back to a huge mapping closes its record: later accesses go through the huge mapping
//! again (`docs/semantics.md` E9).

use std::collections::BTreeMap;

use snpsim_defs::PageSize;

/// The splits still needless so far, by first VMA page offset, with the size of the mapping each
/// replaced.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SplitLedger {
    pending: BTreeMap<u64, (u64, PageSize)>,
}

impl SplitLedger {
    /// Record a split of `pages` pages from `offset` that replaced a mapping of size `old`.
    pub fn record(&mut self, offset: u64, pages: u64, old: PageSize) {
        self.pending.insert(offset, (pages, old));
    }

    /// The size of the mapping a still-needless split replaced over `offset`, if any.
    pub fn old_level(&self, offset: u64) -> Option<PageSize> {
        let (&start, &(pages, old)) = self.pending.range(..=offset).next_back()?;
        (offset < start + pages).then_some(old)
    }

    /// The split covering `offset` was needed: forget it. Whether one was pending.
    pub fn take(&mut self, offset: u64) -> bool {
        let Some((&start, &(pages, _))) = self.pending.range(..=offset).next_back() else { return false };
        offset < start + pages && self.pending.remove(&start).is_some()
    }

    /// The range from `offset` is huge again: the splits inside it stay needless for good.
    pub fn close(&mut self, offset: u64, pages: u64) {
        let inside: Vec<u64> = self.pending.range(offset..offset + pages).map(|(&s, _)| s).collect();
        for s in inside {
            self.pending.remove(&s);
        }
    }

    /// Splits still open and needless so far.
    pub fn open(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_is_found_over_its_whole_range_and_taken_once() {
        let mut l = SplitLedger::default();
        l.record(512, 512, PageSize::Size2M);
        assert_eq!(l.old_level(511), None);
        assert_eq!(l.old_level(512), Some(PageSize::Size2M));
        assert_eq!(l.old_level(1023), Some(PageSize::Size2M));
        assert_eq!(l.old_level(1024), None);
        assert!(!l.take(1024));
        assert!(l.take(700));
        assert!(!l.take(700));
        assert_eq!(l.open(), 0);
    }

    #[test]
    fn closing_a_range_forgets_only_the_splits_inside_it() {
        let mut l = SplitLedger::default();
        l.record(0, 512, PageSize::Size2M);
        l.record(512, 512, PageSize::Size2M);
        l.close(512, 512);
        assert_eq!(l.old_level(600), None);
        assert_eq!(l.old_level(10), Some(PageSize::Size2M));
        assert_eq!(l.open(), 1);
    }
}
