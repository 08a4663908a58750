//! What changed since the checker last looked: the input of the incremental invariant check.

/// Page ranges `(first, count)` changed since the last [`DirtyLog::take`]. Bookkeeping for the
/// checker, not state: it prints as `_`, compares equal and hashes to nothing, so fingerprints and
/// state hashes do not see it.
#[derive(Clone, Default)]
pub struct DirtyLog(Vec<(u64, u64)>);

impl DirtyLog {
    /// Record that `count` pages from `first` changed (merged with the previous range when they
    /// touch).
    pub fn mark(&mut self, first: u64, count: u64) {
        if let Some(last) = self.0.last_mut()
            && last.0 + last.1 == first
        {
            last.1 += count;
            return;
        }
        self.0.push((first, count));
    }

    /// The ranges recorded since the last call, in the order they were marked.
    pub fn take(&mut self) -> Vec<(u64, u64)> {
        std::mem::take(&mut self.0)
    }
}

impl core::fmt::Debug for DirtyLog {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("_")
    }
}

impl PartialEq for DirtyLog {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for DirtyLog {}

impl core::hash::Hash for DirtyLog {
    fn hash<H: core::hash::Hasher>(&self, _: &mut H) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjacent_ranges_merge_and_take_empties_the_log() {
        let mut d = DirtyLog::default();
        d.mark(4, 2);
        d.mark(6, 1);
        d.mark(0, 1);
        assert_eq!(d.take(), vec![(4, 3), (0, 1)]);
        assert_eq!(d.take(), vec![]);
        assert_eq!(format!("{d:?}"), "_");
    }
}
