//! The storage every per-region (and per-page) table of the model is built on: a vector indexed by
//! region number whose stretches of values forming an arithmetic progression cost one entry.
//!
//! Memory a guest converts or accepts region by region leaves long stretches whose entries differ
//! only by an address that rises with the index (a 2M RMP entry's GPA, a 2M folio's frame, an
//! RMPUPDATE stamp). [`RunVec`] keeps the vector in chunks of `C` indices ([`CHUNK`] for a
//! region's pages, [`REGION_CHUNK`] for the regions of a guest or host); a chunk whose values are
//! `head, first, first+step, first+2·step, …` is stored as `(head, first, step)` (the first value
//! may differ: a region's aligned RMP entry carries its sub-page count), a chunk of at most 64
//! values that is such a progression with some values default as the progression and a bit mask,
//! a chunk whose odd and even values after the first are two progressions (every other page of a
//! region converted: the pages kept and the pages converted each rise by their own step) as the
//! two, any other as its values. A vector of at most 512 indices (a region's pages) whose values
//! all follow one run or one such alternation is stored as that one pattern, not a chunk per 64
//! indices, until a write breaks it. Lookups stay an index (chunk, then element) so the model's cost per
//! operation does not change with the size of the guest; a 1 TiB guest accepted at 2M costs about
//! 1,000 chunk headers per table instead of 500,000 slots.
//!
//! A chunk stored as values keeps them only up to the highest index written (its length grows by
//! doubling): the values past it are the default, so a small machine (the model checker's, 4
//! pages per region and a few regions) does not carry 512 slots per table.
//!
//! A chunk that a write leaves as a progression is not recompressed at once (that costs a scan of
//! the chunk): when writes move on to another chunk, the chunk is scanned if it took at least
//! `C / 4` writes since its last scan, and [`RunVec::set`] of a chunk's last index scans it; a
//! sweep thus pays about two comparisons per write. The stored form is therefore not canonical:
//! equality and `Debug` compare and print the values, never the form.
//!
//! Why one long file: `RunVec` and its chunk forms (plain, progression, masked progression,
//! interleaved progressions, one-pattern region) are one data structure whose invariants every
//! method keeps together; about 200 of its lines are unit tests.

use std::borrow::Cow;
use std::fmt;

/// Indices per chunk.
pub const CHUNK: usize = 64;

/// Indices per chunk of a vector over regions ([`RegionVec`]): a 1 TiB guest is 1,024 chunk
/// headers, and expanding one chunk for writing costs 512 values.
pub const REGION_CHUNK: usize = 512;

/// A [`RunVec`] over the 2M regions of a guest or host.
pub type RegionVec<T> = RunVec<T, REGION_CHUNK>;

/// Indices a vector must span to keep a compressed chunk's storage for reuse (more than the 512
/// pages of an x86 2M region).
const SPARE_MIN_INDICES: usize = 512;

/// A value that can be stored as part of an arithmetic progression.
///
/// Laws (checked by the tests of each implementation): `v.nth(Step::default(), k) == v`;
/// when `a.step_to(&b) == Some(s)`, `a.nth(s, 1) == b`; and `a.nth(s, j).nth(s, k) ==
/// a.nth(s, j + k)` for every step `a.step_to` can return. `T::default()` is the value of every
/// index never written.
pub trait Progression: Clone + PartialEq + Default {
    /// The difference between consecutive values of a progression; `Default` is no difference.
    type Step: Copy + PartialEq + Default + fmt::Debug;
    /// The step from `self` to `next`, if `next` can follow `self` in a stored progression.
    fn step_to(&self, next: &Self) -> Option<Self::Step>;
    /// The value `k` steps of `step` after `self`.
    #[must_use]
    fn nth(&self, step: Self::Step, k: u64) -> Self;
    /// The step `s` with `self.nth(s, k) == *next`, if there is one (`k ≥ 1`): two values of a
    /// progression with a gap between them. By default only for `k == 1`.
    fn step_over(&self, next: &Self, k: u64) -> Option<Self::Step> {
        if k == 1 { self.step_to(next) } else { None }
    }
}

impl Progression for u64 {
    type Step = u64;
    #[inline]
    fn step_to(&self, next: &Self) -> Option<u64> {
        Some(next.wrapping_sub(*self))
    }
    #[inline]
    fn nth(&self, step: u64, k: u64) -> u64 {
        self.wrapping_add(step.wrapping_mul(k))
    }
    #[inline]
    fn step_over(&self, next: &Self, k: u64) -> Option<u64> {
        let diff = next.checked_sub(*self)?;
        diff.is_multiple_of(k).then(|| diff / k)
    }
}

impl Progression for u32 {
    type Step = u32;
    #[inline]
    fn step_to(&self, next: &Self) -> Option<u32> {
        Some(next.wrapping_sub(*self))
    }
    #[inline]
    fn nth(&self, step: u32, k: u64) -> u32 {
        // Truncation is the modular arithmetic of the type: k·step mod 2³².
        self.wrapping_add(step.wrapping_mul(k as u32))
    }
}

impl Progression for u8 {
    type Step = u8;
    #[inline]
    fn step_to(&self, next: &Self) -> Option<u8> {
        Some(next.wrapping_sub(*self))
    }
    #[inline]
    fn nth(&self, step: u8, k: u64) -> u8 {
        self.wrapping_add(step.wrapping_mul(k as u8))
    }
}

impl Progression for bool {
    type Step = ();
    #[inline]
    fn step_to(&self, next: &Self) -> Option<()> {
        (self == next).then_some(())
    }
    #[inline]
    fn nth(&self, (): (), _: u64) -> bool {
        *self
    }
}

impl<A: Progression, B: Progression> Progression for (A, B) {
    type Step = (A::Step, B::Step);
    #[inline]
    fn step_to(&self, next: &Self) -> Option<Self::Step> {
        Some((self.0.step_to(&next.0)?, self.1.step_to(&next.1)?))
    }
    #[inline]
    fn nth(&self, step: Self::Step, k: u64) -> Self {
        (self.0.nth(step.0, k), self.1.nth(step.1, k))
    }
    #[inline]
    fn step_over(&self, next: &Self, k: u64) -> Option<Self::Step> {
        Some((self.0.step_over(&next.0, k)?, self.1.step_over(&next.1, k)?))
    }
}

/// One chunk: a progression after a first value that may differ (a 2M region's aligned RMP entry
/// carries the sub-page count its other entries do not), the same with some values default (a
/// smashed region with every other page shared), or its values.
#[derive(Clone)]
enum Chunk<T: Progression> {
    /// Value 0 is `head`; value `k ≥ 1` is `first` advanced `k - 1` steps.
    Run { head: T, first: T, step: T::Step },
    /// Chunks of at most 64 values only. Value 0 is `head`; value `k ≥ 1` is `anchor` advanced
    /// `k - at` steps if bit `k` of `mask` is set (only bits `≥ at` are), else the default.
    Masked { head: T, anchor: T, at: u32, step: T::Step, mask: u64 },
    /// Value 0 is `head`; odd value `2m + 1` is `odd` advanced `m` steps of `odd_step`, even value
    /// `2m + 2` is `even` advanced `m` steps of `even_step`: two progressions interleaved (a
    /// region with every other page converted: the pages kept and the pages converted each rise
    /// by their own step).
    Alternating { head: T, odd: T, odd_step: T::Step, even: T, even_step: T::Step },
    /// Values `0..vals.len()` (at least one, at most the chunk's width); the rest are default.
    Dense { vals: Box<[T]>, writes: u32 },
}

impl<T: Progression> Default for Chunk<T> {
    fn default() -> Self {
        Chunk::Run { head: T::default(), first: T::default(), step: T::Step::default() }
    }
}

impl<T: Progression> Chunk<T> {
    /// A chunk holding the progression `first, first+step, …` from its index 0.
    fn progression(first: &T, step: T::Step) -> Self {
        Chunk::Run { head: first.clone(), first: first.nth(step, 1), step }
    }

    // Always inlined: every lookup of the model goes through it, and out of line it costs the
    // fragmented benchmark a fifth of its time (measured).
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn get(&self, j: usize) -> Cow<'_, T> {
        match self {
            Chunk::Run { head, .. } if j == 0 => Cow::Borrowed(head),
            Chunk::Run { first, step, .. } => Cow::Owned(first.nth(*step, j as u64 - 1)),
            Chunk::Masked { head, .. } if j == 0 => Cow::Borrowed(head),
            Chunk::Masked { anchor, at, step, mask, .. } => {
                if mask >> j & 1 == 1 {
                    Cow::Owned(anchor.nth(*step, j as u64 - u64::from(*at)))
                } else {
                    Cow::Owned(T::default())
                }
            }
            Chunk::Alternating { head, .. } if j == 0 => Cow::Borrowed(head),
            Chunk::Alternating { odd, odd_step, even, even_step, .. } => Cow::Owned(if j & 1 == 1 {
                odd.nth(*odd_step, (j >> 1) as u64)
            } else {
                even.nth(*even_step, ((j >> 1) - 1) as u64)
            }),
            Chunk::Dense { vals, .. } => vals.get(j).map_or_else(|| Cow::Owned(T::default()), Cow::Borrowed),
        }
    }

    /// The chunk of `width ≥ 5` values (read through `at`) as two interleaved progressions after
    /// the first value, if they are.
    fn as_alternating(at: impl Fn(usize) -> T, width: usize) -> Option<Self> {
        if width < 5 {
            return None;
        }
        let (odd, even) = (at(1), at(2));
        let (odd_step, even_step) = (odd.step_to(&at(3))?, even.step_to(&at(4))?);
        let chunk = Chunk::Alternating { head: at(0), odd, odd_step, even, even_step };
        // The last value first: a vector filled from its start fails there at once, not after a
        // read of every value written so far (what made filling a region's entries one by one
        // quadratic).
        let last = width - 1;
        ((last < 5 || *chunk.get(last) == at(last)) && (5..last).all(|k| *chunk.get(k) == at(k)))
            .then_some(chunk)
    }

    /// A chunk holding the values `start..` of this one's pattern, for a pattern that holds at
    /// every index (a run or two interleaved progressions) and an even `start`.
    fn slice(&self, start: usize) -> Self {
        debug_assert!(start.is_multiple_of(2));
        match self {
            Chunk::Run { step, .. } => Chunk::Run {
                head: self.get(start).into_owned(),
                first: self.get(start + 1).into_owned(),
                step: *step,
            },
            Chunk::Alternating { odd_step, even_step, .. } => Chunk::Alternating {
                head: self.get(start).into_owned(),
                odd: self.get(start + 1).into_owned(),
                odd_step: *odd_step,
                even: self.get(start + 2).into_owned(),
                even_step: *even_step,
            },
            Chunk::Masked { .. } | Chunk::Dense { .. } => {
                unreachable!("only a run or an alternation spans chunks")
            }
        }
    }

    /// How many values from index 0 a chunk of `width` needs stored to hold every value that is
    /// not the default (at least 1).
    fn stored_len(&self, width: usize) -> usize {
        match self {
            Chunk::Run { first, step, .. } if *first == T::default() && *step == T::Step::default() => 1,
            Chunk::Run { .. } | Chunk::Alternating { .. } => width,
            Chunk::Masked { mask, .. } => (64 - mask.leading_zeros() as usize).max(1),
            Chunk::Dense { vals, .. } => vals.len(),
        }
    }

    /// The chunk of at most 64 values (`width`; those past `vals` are default) as a masked
    /// progression, if its values other than the first and the defaults form one.
    fn as_masked(vals: &[T], width: usize) -> Option<Self> {
        if width > 64 {
            return None;
        }
        let default = T::default();
        let mut set = (1..vals.len()).filter(|&k| vals[k] != default);
        let at = set.next()?;
        let anchor = &vals[at];
        let step = match set.next() {
            Some(second) => anchor.step_over(&vals[second], (second - at) as u64)?,
            None => T::Step::default(),
        };
        let mut mask = 0u64;
        for (k, v) in vals.iter().enumerate().skip(at) {
            if *v == default {
                continue;
            }
            if *v != anchor.nth(step, (k - at) as u64) {
                return None;
            }
            mask |= 1 << k;
        }
        Some(Chunk::Masked { head: vals[0].clone(), anchor: anchor.clone(), at: at as u32, step, mask })
    }

    /// Write `value` at `j ≥ 1` of a chunk stored as a (masked) progression without expanding it,
    /// if the value keeps it one: the default clears a value, the progression's value sets it.
    fn write_in_place(&mut self, j: usize, value: &T, width: usize) -> bool {
        if j == 0 || width > 64 {
            return false;
        }
        // An alternation with one side default (a chunk of a vector that was one pattern) is
        // a masked progression.
        if let Chunk::Alternating { .. } = self {
            let vals: Vec<T> = (0..width).map(|k| self.get(k).into_owned()).collect();
            match Self::as_masked(&vals, width) {
                Some(masked) => *self = masked,
                None => return false,
            }
        }
        if let Chunk::Run { head, first, step } = self
            && *value == T::default()
        {
            let all = if width == 64 { !1 } else { ((1u64 << width) - 1) & !1 };
            let (head, anchor, step) = (std::mem::take(head), std::mem::take(first), *step);
            *self = Chunk::Masked { head, anchor, at: 1, step, mask: all & !(1 << j) };
            return true;
        }
        if let Chunk::Masked { anchor, at, step, mask, .. } = self {
            if *value == T::default() {
                *mask &= !(1 << j);
                return true;
            }
            if j >= *at as usize && *value == anchor.nth(*step, (j - *at as usize) as u64) {
                *mask |= 1 << j;
                return true;
            }
        }
        false
    }

    fn is_default(&self) -> bool {
        matches!(self, Chunk::Run { head, first, step }
            if *head == T::default() && *first == T::default() && *step == T::Step::default())
    }

    /// The chunk of `width` values (those past `vals` are default) as a progression after its
    /// first value, if its values form one.
    fn as_run(vals: &[T], width: usize) -> Option<Self> {
        let default = T::default();
        let at = |k: usize| vals.get(k).unwrap_or(&default);
        let (head, first) = (&vals[0], at(1));
        let step = first.step_to(at(2))?;
        let run = (2..width).all(|k| *at(k) == first.nth(step, k as u64 - 1));
        run.then(|| Chunk::Run { head: head.clone(), first: first.clone(), step })
    }

    /// The values of `chunks` (`width` each, `chunks.len() · width ≥ 3`) as one progression after
    /// their first value, if they form one: what [`Chunk::as_run`] answers for all the values in
    /// a row. A chunk stored as a run of the same step whose first two values continue the
    /// progression holds it without its other values being read: its value `j ≥ 1` is
    /// `f.nth(step, j - 1)` with `f = first.nth(step, base)`, which is `first.nth(step, base + j -
    /// 1)` by [`Progression`]'s law `a.nth(s, j).nth(s, k) == a.nth(s, j + k)`. Any other chunk
    /// is read value by value, so a region filled in order is checked a chunk at a time.
    fn whole_run(chunks: &[Self], width: usize) -> Option<Self> {
        let at = |k: usize| chunks[k / width].get(k % width).into_owned();
        let first = at(1);
        let step = first.step_to(&at(2))?;
        // The last value first, as in [`Chunk::as_alternating`].
        let last = chunks.len() * width - 1;
        if last >= 3 && at(last) != first.nth(step, last as u64 - 1) {
            return None;
        }
        for (c, chunk) in chunks.iter().enumerate() {
            let base = c * width;
            let held = match chunk {
                Chunk::Run { head, first: f, step: s } if *s == step => {
                    // Chunk 0's first value is `first` itself and its head is no part of the
                    // progression.
                    c == 0
                        || (*head == first.nth(step, base as u64 - 1) && *f == first.nth(step, base as u64))
                }
                _ => false,
            };
            if !held && !(base.max(3)..base + width).all(|k| at(k) == first.nth(step, k as u64 - 1)) {
                return None;
            }
        }
        Some(Chunk::Run { head: at(0), first, step })
    }

    /// Store the chunk as a progression if its values form one; returns the values' storage
    /// when it is freed.
    fn compact(&mut self, width: usize) -> Option<Box<[T]>> {
        if let Chunk::Dense { vals, writes } = self {
            *writes = 0;
            let at = |k: usize| vals.get(k).cloned().unwrap_or_default();
            if let Some(run) = Self::as_run(vals, width)
                .or_else(|| Self::as_masked(vals, width))
                .or_else(|| Self::as_alternating(at, width))
                && let Chunk::Dense { vals, .. } = std::mem::replace(self, run)
            {
                return Some(vals);
            }
        }
        None
    }
}

/// Indices up to which a vector whose values all follow one pattern (a run, or two interleaved
/// progressions) is stored as that one pattern rather than a chunk per `C` indices: a region's
/// 512 pages (x86). Checking costs a read per index, so longer vectors are not checked.
const SPAN_MAX_INDICES: usize = 512;

/// A vector of `T` over every `u64` index, `T::default()` where never written, with progressions
/// stored once per chunk.
#[derive(Clone)]
pub struct RunVec<T: Progression, const C: usize = CHUNK> {
    /// The chunks; when `span ≥ 2`, one chunk whose pattern covers `span` chunks' indices.
    chunks: Vec<Chunk<T>>,
    /// Chunks' worth of indices `chunks[0]` covers when it is the whole vector's one pattern (a
    /// smashed region, or one with every other page converted); 0 otherwise.
    span: u32,
    /// The chunk last written while stored as values.
    hot: Option<usize>,
    /// The storage of the chunk last compressed, reused by the next one stored as values (a
    /// sweep compresses one chunk as it expands the next).
    spare: Option<Box<[T]>>,
}

impl<T: Progression, const C: usize> Default for RunVec<T, C> {
    fn default() -> Self {
        RunVec { chunks: Vec::new(), span: 0, hot: None, spare: None }
    }
}

impl<T: Progression, const C: usize> RunVec<T, C> {
    /// Writes to a chunk stored as values after which leaving it triggers a compression scan.
    const RECHECK: u32 = (C / 4) as u32;

    /// The chunk of `i` and `i`'s index in it.
    fn split(i: u64) -> (usize, usize) {
        (usize::try_from(i / C as u64).unwrap_or(usize::MAX), (i % C as u64) as usize)
    }

    /// All default.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value at `i`.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub fn get(&self, i: u64) -> Cow<'_, T> {
        let (c, j) = if self.span < 2 {
            Self::split(i)
        } else if i < u64::from(self.span) * C as u64 {
            (0, i as usize)
        } else {
            return Cow::Owned(T::default());
        };
        match self.chunks.get(c) {
            Some(chunk) => chunk.get(j),
            None => Cow::Owned(T::default()),
        }
    }

    /// One past the highest index written (values beyond it are all default).
    pub fn extent(&self) -> u64 {
        let chunks = if self.span >= 2 { self.span as usize } else { self.chunks.len() };
        (chunks * C) as u64
    }

    /// Store a vector of at most [`SPAN_MAX_INDICES`] indices, none of its chunks stored as
    /// values, as one pattern when all its values follow one.
    fn respan(&mut self) {
        let n = self.chunks.len();
        if self.span >= 2 || n < 2 || n * C > SPAN_MAX_INDICES || C < 5 {
            return;
        }
        if self.chunks.iter().any(|c| matches!(c, Chunk::Dense { .. })) {
            return;
        }
        let at = |k: usize| self.chunks[k / C].get(k % C).into_owned();
        let Some(whole) = Chunk::whole_run(&self.chunks, C).or_else(|| Chunk::as_alternating(at, n * C))
        else {
            return;
        };
        self.chunks = vec![whole];
        self.span = n as u32;
        self.hot = None;
    }

    /// Store a vector kept as one pattern as a chunk per `C` indices again, for writing.
    fn unspan(&mut self) {
        if self.span < 2 {
            return;
        }
        let n = self.span as usize;
        self.span = 0;
        let whole = self.chunks.pop().expect("a vector kept as one pattern has one chunk");
        self.chunks = (0..n).map(|c| whole.slice(c * C)).collect();
    }

    fn chunk_mut(&mut self, c: usize) -> &mut Chunk<T> {
        self.unspan();
        if let Some(h) = self.hot
            && h != c
            && matches!(self.chunks.get(h), Some(Chunk::Dense { writes, .. }) if *writes >= Self::RECHECK)
        {
            self.compact_chunk(h);
        }
        self.hot = Some(c);
        if self.chunks.len() <= c {
            self.chunks.resize_with(c + 1, Chunk::default);
        }
        &mut self.chunks[c]
    }

    /// Scan chunk `c` and store it as a progression where it is one, keeping the freed storage
    /// for the next expansion in a vector longer than a region's pages (in a region's own vector
    /// a kept chunk would cost its storage per region).
    fn compact_chunk(&mut self, c: usize) {
        if let Some(vals) = self.chunks[c].compact(C)
            && self.chunks.len() * C > SPARE_MIN_INDICES
        {
            self.spare = Some(vals);
        }
    }

    /// The value at `i`, for writing: its chunk is stored as values until it is compressed again.
    pub fn get_mut(&mut self, i: u64) -> &mut T {
        let (c, j) = Self::split(i);
        self.chunk_mut(c);
        let chunk = &mut self.chunks[c];
        if !matches!(chunk, Chunk::Dense { .. }) {
            let len = chunk.stored_len(C).max(j + 1);
            let mut vals = match self.spare.take_if(|s| s.len() >= len) {
                Some(mut vals) => {
                    for (k, v) in vals.iter_mut().enumerate().skip(1) {
                        *v = chunk.get(k).into_owned();
                    }
                    vals
                }
                None => {
                    (0..len).map(|k| if k == 0 { T::default() } else { chunk.get(k).into_owned() }).collect()
                }
            };
            // The first value moves (it may own storage: a region's per-page vector).
            if let Chunk::Run { head, .. } | Chunk::Masked { head, .. } | Chunk::Alternating { head, .. } =
                chunk
            {
                vals[0] = std::mem::take(head);
            }
            *chunk = Chunk::Dense { vals, writes: 0 };
        }
        match chunk {
            Chunk::Dense { vals, writes } => {
                *writes += 1;
                if j >= vals.len() {
                    let len = (j + 1).max(2 * vals.len()).min(C);
                    let mut grown = std::mem::take(vals).into_vec();
                    grown.reserve_exact(len - grown.len());
                    grown.resize(len, T::default());
                    *vals = grown.into_boxed_slice();
                }
                &mut vals[j]
            }
            Chunk::Run { .. } | Chunk::Masked { .. } | Chunk::Alternating { .. } => {
                unreachable!("the chunk was just stored as values")
            }
        }
    }

    /// Set the value at `i` (a no-op, and no decompression, if it already holds `value`; the
    /// first value of a chunk stored as a progression is replaced in place).
    pub fn set(&mut self, i: u64, value: T) {
        if *self.get(i) == value {
            return;
        }
        if i == 0
            && self.span >= 2
            && let Chunk::Run { head, .. } | Chunk::Alternating { head, .. } = &mut self.chunks[0]
        {
            *head = value;
            return;
        }
        self.unspan();
        let (c, j) = Self::split(i);
        if let Some(chunk) = self.chunks.get_mut(c) {
            if j == 0
                && let Chunk::Run { head, .. } | Chunk::Masked { head, .. } | Chunk::Alternating { head, .. } =
                    chunk
            {
                *head = value;
                return;
            }
            if chunk.write_in_place(j, &value, C) {
                if j == C - 1 {
                    self.respan();
                }
                return;
            }
        }
        *self.get_mut(i) = value;
        // A rising sweep ends a chunk here and may never come back to it: scan it now (a write
        // in 64 or 512 at most, whatever the order), and a short vector as a whole.
        if j == C - 1 {
            self.compact_chunk(c);
            self.respan();
        }
    }

    /// Set `start..end` to the progression `first, first+step, …`; whole chunks are stored as one
    /// progression without being expanded.
    pub fn set_run(&mut self, start: u64, end: u64, first: &T, step: T::Step) {
        let mut i = start;
        while i < end {
            let (c, j) = Self::split(i);
            let chunk_end = i - j as u64 + C as u64;
            let value = first.nth(step, i - start);
            if j == 0 && chunk_end <= end {
                *self.chunk_mut(c) = Chunk::progression(&value, step);
                i = chunk_end;
            } else {
                self.set(i, value);
                i += 1;
            }
        }
        self.respan();
    }

    /// The stored runs overlapping `start..end`, in order: `(first index, count, first value,
    /// step)`, a chunk stored as values giving one run of 1 per index.
    pub fn runs(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, u64, Cow<'_, T>, T::Step)> + '_ {
        let end = end.min(self.extent());
        let mut i = start;
        std::iter::from_fn(move || {
            if i >= end {
                return None;
            }
            let (chunk, j, chunk_end) = if self.span >= 2 {
                (&self.chunks[0], i as usize, end)
            } else {
                let (c, j) = Self::split(i);
                (&self.chunks[c], j, (i - j as u64 + C as u64).min(end))
            };
            let at = i;
            match chunk {
                Chunk::Run { step, .. } if j > 0 => {
                    i = chunk_end;
                    Some((at, chunk_end - at, chunk.get(j), *step))
                }
                Chunk::Dense { vals, .. } if j >= vals.len() => {
                    i = chunk_end;
                    Some((at, chunk_end - at, Cow::Owned(T::default()), T::Step::default()))
                }
                _ => {
                    i += 1;
                    Some((at, 1, chunk.get(j), T::Step::default()))
                }
            }
        })
    }

    /// Every index in `start..end` whose value is not the default, with its value, in order.
    pub fn iter_set(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, Cow<'_, T>)> + '_ {
        let default = T::default();
        self.runs(start, end).flat_map(move |(at, n, first, step)| {
            let skip = n > 1 && *first == default && step == T::Step::default();
            let count = if skip { 0 } else { n };
            (0..count).filter_map(move |k| {
                let v = if k == 0 { first.clone() } else { Cow::Owned(first.nth(step, k)) };
                (*v != T::default()).then_some((at + k, v))
            })
        })
    }

    /// Values stored one by one (not as part of a progression).
    pub fn dense_values(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flat_map(|c| match c {
            Chunk::Dense { vals, .. } => &vals[..],
            Chunk::Run { .. } | Chunk::Masked { .. } | Chunk::Alternating { .. } => &[],
        })
    }

    /// Bytes of memory the vector takes, not counting what its values own on the heap.
    pub fn state_bytes(&self) -> usize {
        let dense: usize = self.dense_values().count();
        self.chunks.capacity() * size_of::<Chunk<T>>() + dense * size_of::<T>()
    }

    /// Chunks stored as values (for tests of the compression).
    pub fn dense_chunks(&self) -> usize {
        self.chunks.iter().filter(|c| matches!(c, Chunk::Dense { .. })).count()
    }

    /// Scan every chunk stored as values and store it as a progression where it is one.
    pub fn compact(&mut self) {
        if self.span >= 2 {
            return;
        }
        self.chunks.iter_mut().for_each(|c| {
            c.compact(C);
        });
        self.spare = None;
        while self.chunks.last().is_some_and(Chunk::is_default) {
            self.chunks.pop();
        }
        self.hot = None;
        self.respan();
    }
}

impl<T: Progression, const C: usize> PartialEq for RunVec<T, C> {
    fn eq(&self, other: &Self) -> bool {
        if self.span >= 2 || other.span >= 2 {
            return (0..self.extent().max(other.extent())).all(|i| self.get(i) == other.get(i));
        }
        let n = self.chunks.len().max(other.chunks.len());
        let default = Chunk::default();
        (0..n).all(|c| {
            let a = self.chunks.get(c).unwrap_or(&default);
            let b = other.chunks.get(c).unwrap_or(&default);
            match (a, b) {
                (Chunk::Run { head: h, first: f, step: s }, Chunk::Run { head: i, first: g, step: t })
                    if s == t =>
                {
                    h == i && f == g
                }
                _ => (0..C).all(|j| a.get(j) == b.get(j)),
            }
        })
    }
}

impl<T: Progression + Eq, const C: usize> Eq for RunVec<T, C> {}

/// The indices that hold a value other than the default, with their values: the same text for
/// equal vectors, whatever their stored form.
impl<T: Progression + fmt::Debug, const C: usize> fmt::Debug for RunVec<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter_set(0, self.extent())).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn laws<T: Progression + fmt::Debug>(a: &T, b: &T) {
        assert!(a.nth(T::Step::default(), 7) == *a, "zero step of {a:?}");
        if let Some(s) = a.step_to(b) {
            assert!(a.nth(s, 1) == *b, "{a:?} to {b:?}");
            assert!(a.nth(s, 3).nth(s, 4) == a.nth(s, 7), "{a:?} by {s:?}");
        }
    }

    proptest! {
        #[test]
        fn progression_laws(a: u64, b: u64, c: u32, d: u32, x: bool, y: bool) {
            laws(&a, &b);
            laws(&c, &d);
            laws(&x, &y);
            laws(&(a, c), &(b, d));
        }

        #[test]
        fn matches_a_dense_vector(ops in proptest::collection::vec((0u64..400, 1u64..150, 0u64..4, 0u64..3, 0u8..3), 1..80)) {
            let mut v = RunVec::<u64>::new();
            let mut dense = vec![0u64; 600];
            for (at, n, first, step, op) in ops {
                match op {
                    0 => {
                        v.set(at, first);
                        dense[at as usize] = first;
                    }
                    1 => {
                        v.set_run(at, at + n, &first, step);
                        for k in 0..n { dense[(at + k) as usize] = first + step * k; }
                    }
                    _ => {
                        *v.get_mut(at) += step;
                        dense[at as usize] += step;
                    }
                }
                for (i, d) in dense.iter().enumerate() {
                    prop_assert_eq!(*v.get(i as u64), *d);
                }
                let set: Vec<(u64, u64)> = v.iter_set(30, 500).map(|(i, x)| (i, *x)).collect();
                let expected: Vec<(u64, u64)> =
                    (30..500u64).filter(|&i| dense[i as usize] != 0).map(|i| (i, dense[i as usize])).collect();
                prop_assert_eq!(set, expected);
                for (at, n, first, step) in v.runs(0, 600) {
                    for k in 0..n {
                        prop_assert_eq!(first.nth(step, k), dense[(at + k) as usize]);
                    }
                }
                let mut w = v.clone();
                w.compact();
                prop_assert!(w == v);
                prop_assert_eq!(format!("{w:?}"), format!("{v:?}"));
                for (i, d) in dense.iter().enumerate() {
                    prop_assert_eq!(*w.get(i as u64), *d);
                }
            }
        }
    }

    proptest! {
        /// Vectors of a region's 512 indices, written with runs, single values and every other
        /// index (the writes that store them as one pattern, and break it again).
        #[test]
        fn a_region_vector_matches_a_dense_vector(ops in proptest::collection::vec((0u64..512, 1u64..600, 0u64..4, 0u64..3, 0u8..4), 1..60)) {
            let mut v = RunVec::<(u64, u32)>::new();
            let mut dense = vec![(0u64, 0u32); 512];
            for (at, n, first, step, op) in ops {
                let end = (at + n).min(512);
                match op {
                    0 => {
                        v.set(at, (first, 1));
                        dense[at as usize] = (first, 1);
                    }
                    1 => {
                        v.set_run(at, end, &(first, 2), (step, 0));
                        for k in at..end { dense[k as usize] = (first + step * (k - at), 2); }
                    }
                    _ => {
                        // Every other index from `at`, rising by `step` per write (op 2) or
                        // cleared (op 3).
                        for (m, k) in (at..end).step_by(2).enumerate() {
                            let x = if op == 2 { (first + step * m as u64, 3) } else { (0, 0) };
                            v.set(k, x);
                            dense[k as usize] = x;
                        }
                    }
                }
                for (i, d) in dense.iter().enumerate() {
                    prop_assert_eq!(*v.get(i as u64), *d);
                }
                for (at, n, first, step) in v.runs(0, 512) {
                    for k in 0..n {
                        prop_assert_eq!(first.nth(step, k), dense[(at + k) as usize]);
                    }
                }
                let mut w = v.clone();
                w.compact();
                prop_assert!(w == v);
                prop_assert_eq!(format!("{w:?}"), format!("{v:?}"));
            }
        }
    }

    #[test]
    fn a_region_with_every_other_value_changed_is_one_pattern() {
        // A smashed region: its 512 entries rise by one (a GPA), then every odd one is cleared
        // (its page converted to shared) in order.
        let mut v = RunVec::<u64>::new();
        v.set_run(1, 512, &1001, 1);
        v.set(0, 7);
        assert_eq!(v.chunks.len(), 1, "a run over the whole region is one chunk");
        for i in (1..512).step_by(2) {
            v.set(i, 0);
        }
        assert_eq!((v.chunks.len(), v.span), (1, 8), "every other value cleared: one pattern");
        // Change stamps: the kept pages keep their region's stamp, the converted ones rise by one.
        let mut stamps = RunVec::<u64>::new();
        stamps.set_run(0, 512, &40, 0);
        for (m, i) in (1..512u64).step_by(2).enumerate() {
            stamps.set(i, 900 + m as u64);
        }
        assert_eq!((stamps.chunks.len(), stamps.dense_chunks()), (1, 0));
        for i in 0..512u64 {
            assert_eq!(
                *v.get(i),
                if i == 0 {
                    7
                } else if i % 2 == 1 {
                    0
                } else {
                    1000 + i
                }
            );
            assert_eq!(*stamps.get(i), if i % 2 == 1 { 900 + i / 2 } else { 40 });
        }
        // One header, not a chunk per 64 indices.
        assert_eq!(stamps.state_bytes(), size_of::<Chunk<u64>>());
        // Writing breaks the pattern into chunks again, and the value reads back.
        stamps.set(300, 5);
        assert_eq!((*stamps.get(300), *stamps.get(301), *stamps.get(302)), (5, 1050, 40));
        assert_eq!(stamps.chunks.len(), 8);
    }

    /// A region vector whose chunks are each stored as a run of the same step is one pattern
    /// exactly when their values continue one progression: a chunk one off, or a chunk whose head
    /// alone breaks it, keeps the chunks apart, and every value reads back either way.
    #[test]
    fn chunks_of_one_step_are_one_pattern_only_when_they_continue_it() {
        // `shift`: chunk `c`'s values after its head `d` higher; `restep`: chunk `c`'s values from
        // its third on rising by 4, not 3; `head`: the value at this index 7.
        let filled = |shift: Option<(u64, u64)>, restep: Option<u64>, head: Option<u64>| {
            let mut v = RunVec::<u64>::new();
            let expected = |i: u64| {
                let (c, j) = (i / 64, i % 64);
                let mut x = 1000 + 3 * i + shift.filter(|&(sc, _)| c == sc && j > 0).map_or(0, |(_, d)| d);
                if restep == Some(c) && j > 1 {
                    x += j - 1;
                }
                if Some(i) == head { 7 } else { x }
            };
            // In order from the start, a value at a time (a 4K fill of a region), so that each
            // chunk is stored as a run before the next is written.
            for i in 0..512 {
                v.set(i, expected(i));
            }
            for i in 0..512 {
                assert_eq!(*v.get(i), expected(i), "{i} with {shift:?} {restep:?} {head:?}");
            }
            v.span
        };
        assert_eq!(filled(None, None, None), 8, "one progression: one pattern");
        assert_eq!(filled(None, None, Some(0)), 8, "the first value is no part of the progression");
        assert_eq!(
            filled(Some((3, 3)), None, None),
            0,
            "chunk 3 after its head a step on: a run of the same step"
        );
        assert_eq!(filled(Some((7, 1)), None, None), 0, "the last chunk one off");
        assert_eq!(filled(None, Some(2), None), 0, "chunk 2 a run of another step from the same two values");
        assert_eq!(filled(None, None, Some(128)), 0, "a chunk's head alone breaks it");
        assert_eq!(filled(None, None, Some(511)), 0, "the last value alone breaks it");
    }

    #[test]
    fn a_progression_with_defaults_between_is_stored_masked() {
        let mut v = RunVec::<u64>::new();
        v.set_run(0, 512, &100, 1);
        v.set(0, 7);
        for i in (1..512).step_by(2) {
            v.set(i, 0);
        }
        assert_eq!(v.dense_chunks(), 0, "clearing values of a progression does not expand it");
        for i in 1..512u64 {
            assert_eq!(*v.get(i), if i % 2 == 1 { 0 } else { 100 + i });
        }
        assert_eq!(*v.get(0), 7);
        v.set(3, 103);
        assert_eq!((*v.get(3), v.dense_chunks()), (103, 0));
        // Written as values, the same pattern is found again by the scan.
        let mut w = RunVec::<u64>::new();
        for i in 0..512u64 {
            w.set(i, if i % 2 == 1 && i != 3 { 0 } else { 100 + i });
        }
        w.set(0, 7);
        w.compact();
        assert_eq!(w.dense_chunks(), 0);
        assert!(w == v);
    }

    #[test]
    fn a_chunk_stores_values_only_up_to_the_highest_written() {
        let mut v = RegionVec::<(u64, u64)>::new();
        for r in [3, 0, 9] {
            v.set(r, (r + 7, 1));
        }
        assert_eq!(v.dense_values().count(), 10, "not the chunk's {REGION_CHUNK} values");
        assert_eq!((*v.get(9), *v.get(10), *v.get(511)), ((16, 1), (0, 0), (0, 0)));
        let runs: Vec<_> = v.runs(8, 600).map(|(at, n, first, _)| (at, n, *first)).collect();
        assert_eq!(runs, vec![(8, 1, (0, 0)), (9, 1, (16, 1)), (10, 502, (0, 0))]);
        assert_eq!(format!("{v:?}"), "{0: (7, 1), 3: (10, 1), 9: (16, 1)}");
    }

    #[test]
    fn a_rising_sweep_is_stored_as_progressions() {
        let mut v = RunVec::<(u64, u64)>::new();
        for r in 0..100_000u64 {
            // Written, then rewritten (an RMPUPDATE, then the PVALIDATE of the same region).
            *v.get_mut(r) = (0x8000 + 512 * r, 2 + r);
            v.set(r, (0x8000 + 512 * r, 3 + r));
        }
        assert!(v.dense_chunks() <= 1, "{} chunks stored as values", v.dense_chunks());
        assert_eq!(*v.get(77_777), (0x8000 + 512 * 77_777, 3 + 77_777));
        // A header per chunk (at most 64 bytes, the vector at most doubled), not 16 bytes per index.
        assert!(v.state_bytes() < 2 * (100_000 / CHUNK + 1) * 64 + CHUNK * 16, "{}", v.state_bytes());
        assert!(v.state_bytes() < 100_000 * 16 / 8);
        // Breaking the progression stores that chunk as values; leaving the last one written
        // (the sweep's partial last chunk) scans it.
        v.set(500, (1, 1));
        assert_eq!(v.dense_chunks(), 1);
        assert_eq!(*v.get(501), (0x8000 + 512 * 501, 3 + 501));
    }
}
