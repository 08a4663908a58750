//! A set of page numbers (validated GFNs, shared GFNs, free host blocks) stored as bits, 64 pages
//! per word, in a run-compressed vector ([`RegionVec`]): whole ranges in or out of the set are
//! chunks of equal words stored once, and so is a range where every other page is in the set
//! (equal words again), where a tree of runs would spend a node per alternation.

use std::fmt;

use crate::runs::RegionVec;

const BITS: u64 = 64;

/// Bits `from..to` of a word (`0 ≤ from < to ≤ 64`).
fn bits(from: u64, to: u64) -> u64 {
    let high = if to == BITS { u64::MAX } else { (1 << to) - 1 };
    high & !((1 << from) - 1)
}

/// Call `f(first word, words, mask, value, step)` for the words covering `start..end`, in
/// order: `words` consecutive words from `first` whose values are `value`, `value + step`, …,
/// each to be read under `mask` (the bits of the word inside `start..end`). Words past the
/// stored ones are empty and not visited.
/// `f` returns whether to go on.
fn spans(words: &RegionVec<u64>, start: u64, end: u64, mut f: impl FnMut(u64, u64, u64, u64, u64) -> bool) {
    if start >= end {
        return;
    }
    let (first, last) = (start / BITS, (end - 1) / BITS);
    let mask_of = |w: u64| {
        let from = if w == first { start % BITS } else { 0 };
        let to = if w == last { (end - 1) % BITS + 1 } else { BITS };
        bits(from, to)
    };
    for (at, n, value, step) in words.runs(first, last + 1) {
        let (value, end_word) = (*value, at + n);
        // The boundary words, with partial masks, one by one; the others as one span.
        let mut w = at;
        if w == first {
            if !f(w, 1, mask_of(w), value, 0) {
                return;
            }
            w += 1;
        }
        let inner_end = if end_word > last && last > first { last } else { end_word };
        if w < inner_end {
            if !f(w, inner_end - w, u64::MAX, value.wrapping_add(step.wrapping_mul(w - at)), step) {
                return;
            }
            w = inner_end;
        }
        if w < end_word && w == last && !f(w, 1, mask_of(w), value.wrapping_add(step.wrapping_mul(w - at)), 0)
        {
            return;
        }
    }
}

/// Set (`on`) or clear bits `start..end` of `words`.
fn write_bits(words: &mut RegionVec<u64>, start: u64, end: u64, on: bool) {
    if start >= end {
        return;
    }
    let (first, last) = (start / BITS, (end - 1) / BITS);
    let edit = |words: &mut RegionVec<u64>, w: u64, mask: u64| {
        let v = *words.get(w);
        words.set(w, if on { v | mask } else { v & !mask });
    };
    if first == last {
        edit(words, first, bits(start % BITS, (end - 1) % BITS + 1));
    } else {
        edit(words, first, bits(start % BITS, BITS));
        if first + 1 < last {
            words.set_run(first + 1, last, &if on { u64::MAX } else { 0 }, 0);
        }
        edit(words, last, bits(0, (end - 1) % BITS + 1));
    }
}

/// The first set bit of `words` at or after `from`.
fn first_set(words: &RegionVec<u64>, from: u64) -> Option<u64> {
    let mut found = None;
    spans(words, from, words.extent() * BITS, |w, n, mask, value, step| {
        for k in 0..n {
            let bits = value.wrapping_add(step.wrapping_mul(k)) & mask;
            if bits != 0 {
                found = Some((w + k) * BITS + u64::from(bits.trailing_zeros()));
                return false;
            }
            if step == 0 {
                break;
            }
        }
        true
    });
    found
}

/// A set of `u64` page numbers.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PageSet {
    words: RegionVec<u64>,
    /// Bit `w` is set iff word `w` is not zero: finding the next page in the set skips 4,096
    /// empty pages per summary bit checked.
    summary: RegionVec<u64>,
    len: u64,
}

impl PageSet {
    /// The empty set.
    pub fn new() -> Self {
        PageSet::default()
    }

    /// Bytes of memory the set takes.
    pub fn state_bytes(&self) -> usize {
        self.words.state_bytes() + self.summary.state_bytes()
    }

    /// Whether `x` is in the set.
    #[inline]
    pub fn contains(&self, x: u64) -> bool {
        *self.words.get(x / BITS) >> (x % BITS) & 1 == 1
    }

    /// Pages in the set.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many pages of `start..end` are in the set.
    pub fn count_in(&self, start: u64, end: u64) -> u64 {
        let mut count = 0;
        spans(&self.words, start, end, |_, n, mask, value, step| {
            if step == 0 {
                count += u64::from((value & mask).count_ones()) * n;
            } else {
                count += (0..n)
                    .map(|k| u64::from((value.wrapping_add(step.wrapping_mul(k)) & mask).count_ones()))
                    .sum::<u64>();
            }
            true
        });
        count
    }

    /// Whether every page of `start..end` is in the set.
    pub fn covers(&self, start: u64, end: u64) -> bool {
        self.count_in(start, end) == end.saturating_sub(start)
    }

    /// `Some(in the set)` if all pages of `start..end` (not empty) agree, else `None`.
    pub fn uniform(&self, start: u64, end: u64) -> Option<bool> {
        match self.count_in(start, end) {
            0 => Some(false),
            n if n == end - start => Some(true),
            _ => None,
        }
    }

    /// Put `start..end` in the set (`add`) or take it out; returns how many pages changed.
    fn update(&mut self, start: u64, end: u64, add: bool) -> u64 {
        if start >= end {
            return 0;
        }
        let before = self.count_in(start, end);
        write_bits(&mut self.words, start, end, add);
        let (first, last) = (start / BITS, (end - 1) / BITS);
        write_bits(&mut self.summary, first, last + 1, add);
        if !add {
            // Only the boundary words can still hold pages.
            for w in [first, last] {
                if *self.words.get(w) != 0 {
                    write_bits(&mut self.summary, w, w + 1, true);
                }
            }
        }
        let changed = if add { end - start - before } else { before };
        if add {
            self.len += changed;
        } else {
            self.len -= changed;
        }
        changed
    }

    /// Add `start..end`; returns how many pages were not in the set.
    pub fn insert(&mut self, start: u64, end: u64) -> u64 {
        self.update(start, end, true)
    }

    /// Remove `start..end`; returns how many pages were in the set.
    pub fn remove(&mut self, start: u64, end: u64) -> u64 {
        self.update(start, end, false)
    }

    /// The maximal runs of the set inside `start..end` (clipped), in order.
    pub fn runs_in(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        let mut push = |s: u64, e: u64| match out.last_mut() {
            Some(last) if last.1 == s => last.1 = e,
            _ => out.push((s, e)),
        };
        spans(&self.words, start, end, |w, n, mask, value, step| {
            if step == 0 && value & mask == mask {
                push(
                    w * BITS + u64::from(mask.trailing_zeros()),
                    (w + n - 1) * BITS + (BITS - u64::from(mask.leading_zeros())),
                );
                return true;
            }
            for k in 0..n {
                let mut bits = value.wrapping_add(step.wrapping_mul(k)) & mask;
                let base = (w + k) * BITS;
                while bits != 0 {
                    let lo = u64::from(bits.trailing_zeros());
                    let ones = u64::from((!(bits >> lo)).trailing_zeros());
                    push(base + lo, base + lo + ones);
                    bits &= if lo + ones >= BITS { 0 } else { !0 << (lo + ones) };
                }
            }
            true
        });
        out
    }

    /// The smallest page in the set at or after `from`.
    pub fn first_from(&self, from: u64) -> Option<u64> {
        let w = from / BITS;
        let here = *self.words.get(w) & bits(from % BITS, BITS);
        let (w, word) = if here != 0 {
            (w, here)
        } else {
            let next = first_set(&self.summary, w + 1)?;
            (next, *self.words.get(next))
        };
        Some(w * BITS + u64::from(word.trailing_zeros()))
    }

    /// Every maximal run of the set, in order.
    pub fn runs(&self) -> Vec<(u64, u64)> {
        self.runs_in(0, self.words.extent() * BITS)
    }
}

/// The runs: the same text for equal sets, whatever their storage.
impl fmt::Debug for PageSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.runs()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn matches_a_set_of_pages(ops in proptest::collection::vec((0u64..5000, 1u64..3000, any::<bool>(), 0u8..3), 1..40)) {
            let mut s = PageSet::new();
            let mut plain = vec![false; 9000];
            for (at, n, add, kind) in ops {
                let end = at + n;
                if kind == 2 {
                    // Every other page: a pattern stored as equal words.
                    for p in (at..end).step_by(2) {
                        let changed = if add { s.insert(p, p + 1) } else { s.remove(p, p + 1) };
                        prop_assert_eq!(changed, u64::from(plain[p as usize] != add));
                        plain[p as usize] = add;
                    }
                } else {
                    let expected = (at..end).filter(|&p| plain[p as usize] != add).count() as u64;
                    let changed = if add { s.insert(at, end) } else { s.remove(at, end) };
                    prop_assert_eq!(changed, expected);
                    plain[at as usize..end as usize].fill(add);
                }
                prop_assert_eq!(s.len(), plain.iter().filter(|&&b| b).count() as u64);
                for p in (0..9000u64).step_by(7) {
                    prop_assert_eq!(s.contains(p), plain[p as usize]);
                }
                prop_assert_eq!(s.first_from(at), (at..9000).find(|&p| plain[p as usize]));
                for (a, b) in [(0u64, 9000u64), (3, 70), (64, 128), (100, 4100), (at, end), (at + 1, at + 2)] {
                    let c = plain[a as usize..b as usize].iter().filter(|&&x| x).count() as u64;
                    prop_assert_eq!(s.count_in(a, b), c);
                    let u = if c == 0 { Some(false) } else if c == b - a { Some(true) } else { None };
                    prop_assert_eq!(s.uniform(a, b), u);
                    let mut runs = Vec::new();
                    let mut p = a;
                    while p < b {
                        if plain[p as usize] {
                            let q = (p..b).find(|&q| !plain[q as usize]).unwrap_or(b);
                            runs.push((p, q));
                            p = q;
                        } else {
                            p += 1;
                        }
                    }
                    prop_assert_eq!(s.runs_in(a, b), runs);
                }
            }
        }
    }

    #[test]
    fn alternating_pages_cost_no_more_than_a_range() {
        let mut s = PageSet::new();
        let pages = 1 << 22;
        s.insert(0, pages);
        let range = s.state_bytes();
        for p in (1..pages).step_by(2) {
            s.remove(p, p + 1);
        }
        assert_eq!(s.len(), pages / 2);
        // A chunk header per 32,768 pages either way (5 KiB here), not a tree node per run.
        assert!(s.state_bytes() <= range + 1024, "{} bytes vs {range}", s.state_bytes());
        assert!(s.state_bytes() < 8192, "{} bytes", s.state_bytes());
        assert_eq!(s.runs_in(0, 6), vec![(0, 1), (2, 3), (4, 5)]);
    }
}
