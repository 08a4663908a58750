//! The NPT coverage over simulated time of one run (`npt_coverage_series` in results.json).
//!
//! A point is the pages mapped at `[4K, 2M, 1G]` and the simulated time after a step. Coverage is
//! a step function, so a point is kept only where it changed, at most one every `every` steps, and
//! the run's end is always a point: a run of a few steps, or one that ends early, still has its
//! series (generated workloads used to record one point per 4096 steps, and nothing when they ran
//! fewer). Memory stays bounded: at [`CoverageSeries::CAP`] points every other point is dropped and
//! `every` doubles, so a run of millions of steps keeps between `CAP / 2` and `CAP` points spread
//! over all of it.

/// The recorded points.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CoverageSeries {
    pages: Vec<[u64; 3]>,
    t_ns: Vec<u64>,
    /// Fewest steps between two points.
    every: u64,
    /// The first step at which the next point may be taken.
    next_step: u64,
}

impl CoverageSeries {
    /// Most points kept: twice the 512 that results.json keeps (`snpsim` thins the changes to
    /// those), so that thinning here rarely decides which points it shows, and a sweep of a
    /// thousand workload runs holds 32 KiB of series per run at most.
    pub(crate) const CAP: usize = 1024;

    /// No points; one may be taken after every step.
    pub(crate) fn new() -> Self {
        CoverageSeries { every: 1, ..CoverageSeries::default() }
    }

    /// Take at most one point every `every` steps (at least 1).
    pub(crate) fn set_every(&mut self, every: u64) {
        self.every = every.max(1);
    }

    /// After step number `step` (counted from 1), with `pages` mapped: keep a point if the coverage
    /// changed since the last one and the step is due. `t_ns` is asked only when a point is kept.
    pub(crate) fn observe(&mut self, step: u64, pages: [u64; 3], t_ns: impl FnOnce() -> u64) {
        if step < self.next_step || self.pages.last() == Some(&pages) {
            return;
        }
        self.pages.push(pages);
        self.t_ns.push(t_ns());
        self.next_step = step.saturating_add(self.every);
        if self.pages.len() >= Self::CAP {
            // Keep the even points (the first among them), and take half as many from now on.
            keep_even(&mut self.pages);
            keep_even(&mut self.t_ns);
            self.every = self.every.saturating_mul(2);
        }
    }

    /// The run ended with `pages` mapped at `t_ns`: the last point, unless the last point kept
    /// already says so.
    pub(crate) fn finish(&mut self, pages: [u64; 3], t_ns: u64) {
        if self.pages.last() != Some(&pages) || self.t_ns.last() != Some(&t_ns) {
            self.pages.push(pages);
            self.t_ns.push(t_ns);
        }
    }

    /// The points: pages at `[4K, 2M, 1G]` and simulated times.
    pub(crate) fn into_parts(self) -> (Vec<[u64; 3]>, Vec<u64>) {
        (self.pages, self.t_ns)
    }
}

/// Drop the points at odd indices.
fn keep_even<T>(v: &mut Vec<T>) {
    let mut i = 0;
    v.retain(|_| {
        i += 1;
        i % 2 == 1
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_at_changes_at_most_every_k_steps_and_at_the_end() {
        let mut s = CoverageSeries::new();
        s.set_every(3);
        // Coverage after steps 1..=7: changes at 1, 2, 5 and 6.
        let after = [[1, 0, 0], [2, 0, 0], [2, 0, 0], [2, 0, 0], [3, 0, 0], [3, 1, 0], [3, 1, 0]];
        for (i, c) in after.iter().enumerate() {
            let step = i as u64 + 1;
            s.observe(step, *c, || step * 10);
        }
        s.finish([3, 1, 0], 70);
        // Step 1 is the first point (t 10); the next is due at step 4, which holds [2,0,0], a
        // change: a point (t 40; the change at step 2 shows there); the next is due at step 7,
        // whose [3,1,0] is a change again (t 70). The end repeats step 7's point: not added.
        let (pages, t) = s.into_parts();
        assert_eq!(t, vec![10, 40, 70]);
        assert_eq!(pages, vec![[1, 0, 0], [2, 0, 0], [3, 1, 0]]);
    }

    #[test]
    fn a_run_without_changes_still_ends_with_a_point() {
        let mut s = CoverageSeries::new();
        s.finish([0, 0, 0], 5);
        assert_eq!(s.into_parts(), (vec![[0, 0, 0]], vec![5]));
    }

    #[test]
    fn thinning_keeps_memory_bounded_and_spans_the_run() {
        let mut s = CoverageSeries::new();
        // A change after every step: 3 × CAP steps.
        let steps = 3 * CoverageSeries::CAP as u64;
        for step in 1..=steps {
            s.observe(step, [step, 0, 0], || step);
        }
        s.finish([steps, 0, 0], steps);
        let (pages, t) = s.into_parts();
        assert!(pages.len() <= CoverageSeries::CAP, "{}", pages.len());
        // Thinned twice (at CAP points, then at CAP again), so at least CAP / 2 remain.
        assert!(pages.len() >= CoverageSeries::CAP / 2, "{}", pages.len());
        assert_eq!(t.first(), Some(&1));
        assert_eq!(t.last(), Some(&steps));
        assert!(t.windows(2).all(|w| w[0] < w[1]));
    }
}
