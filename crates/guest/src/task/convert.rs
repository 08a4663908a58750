//! A page-state change as the guest performs it, in resumable steps: the range cut into chunks
//! (2M where a whole aligned region fits and the granularity allows, else 4K), each step
//! rescinding then sending (to shared) or sending then validating (to private), with Linux's
//! 2M→4K PVALIDATE fallback, over the MSR protocol or NAE buffers.

use snpsim_defs::ghcb::{
    GHCB_MSR_PSC_REQ, GHCB_MSR_PSC_RESP, GhcbMsrPscRequest, PscBuffer, PscEntry, PscHeader, PscOp,
};
use snpsim_defs::{Gfn, ReturnCode, RmpPageSize};
use snpsim_hw::{GuestOutcome, PvalidateStatus};

use super::{Reply, Request, terminated};
use crate::config::{Granularity, Protocol};
use crate::error::{GuestError, TermReason};
use crate::guest::Guest;

/// A PVALIDATE result as Linux's `pval_pages` treats it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkResult {
    Done,
    SizeMismatch,
}

/// Walks chunks `i..end` for rescinding or validating: a 2M chunk is tried at 2M first (when the
/// tracking allows), then page by page (`page`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct ChunkCursor {
    chunks: Chunks,
    validate: bool,
    i: usize,
    end: usize,
    page: Option<u64>,
    /// The PVALIDATE in flight: (first page, size).
    awaiting: Option<(u64, RmpPageSize)>,
    /// The run of 4K PVALIDATEs in flight: (first page, pages, whether its pages are 4K chunks
    /// rather than pages of one 2M chunk).
    awaiting_run: Option<(u64, u64, bool)>,
    /// The page a run stopped at: executed alone, whatever the tracking says about a run there.
    alone: Option<u64>,
    /// PVALIDATEs issued (re-coalescing succeeds only with exactly one).
    pub(super) issued: u64,
}

/// Sends the page-state change of chunks `i..end`: one MSR request per page, or NAE buffers of
/// `ghcb_entries` entries re-issued until the hypervisor has processed them all.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct SendCursor {
    chunks: Chunks,
    private: bool,
    protocol: Protocol,
    /// MSR: chunk index and page; NAE: first chunk of the current batch.
    i: usize,
    end: usize,
    page: u64,
    /// NAE: `cur_entry` before the request in flight.
    before: Option<u16>,
}

/// One stage of a step of a page-state change.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Stage {
    Rescind(ChunkCursor),
    Send(SendCursor),
    Validate(ChunkCursor),
}

/// A page-state change of `chunks` in steps of `per_step` chunks; each step rescinds its chunks
/// then sends their change (to shared), or sends it then validates them (to private). With one
/// step over the whole range this is [`crate::PscOrder::WholeRange`]; with one page per step
/// over MSR, or `ghcb_entries` chunks per step over the GHCB, it is
/// [`crate::PscOrder::PerRequest`]. The steps are computed as it goes, so a task's size does not
/// grow with the range.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct ConvertCursor {
    chunks: Chunks,
    private: bool,
    protocol: Protocol,
    per_step: usize,
    /// First chunk of the current step.
    start: usize,
    stage: Stage,
}

/// The chunks a page-state change of `start..end` is cut into, computed by index rather than
/// stored: with 2M granularity the 4K pages up to the first 2M boundary, the whole 2M regions,
/// then the 4K pages after the last one; with 4K granularity every page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Chunks {
    start: u64,
    /// 4K pages before the first 2M chunk (all of them with 4K granularity).
    head: u64,
    /// 2M chunks.
    huge: u64,
    /// 4K pages after the last 2M chunk.
    tail: u64,
    per_2m: u64,
}

impl Chunks {
    pub(crate) fn new(start: u64, end: u64, per_2m: u64, huge: bool) -> Self {
        let pages = end.saturating_sub(start);
        if !huge {
            return Chunks { start, head: pages, huge: 0, tail: 0, per_2m };
        }
        let head = (start.next_multiple_of(per_2m) - start).min(pages);
        let huge = (pages - head) / per_2m;
        Chunks { start, head, huge, tail: pages - head - huge * per_2m, per_2m }
    }

    pub(super) fn len(&self) -> usize {
        usize::try_from(self.head + self.huge + self.tail).unwrap_or(usize::MAX)
    }

    /// How many chunks from `i` (below `end`) are 4K pages in a row: the rest of the head, or of
    /// the tail, or of both when no 2M chunk separates them. Computed, not walked: a walk made each
    /// run of a 4K-granular range cost its length, and a run cut short (a page that differs) walk
    /// it again.
    fn pages_4k_from(&self, i: usize, end: usize) -> u64 {
        let (i, len) = (i as u64, self.head + self.huge + self.tail);
        let end = (end as u64).min(len);
        let segment_end = if i < self.head {
            if self.huge == 0 { len } else { self.head }
        } else if i < self.head + self.huge {
            return 0;
        } else {
            len
        };
        segment_end.min(end).saturating_sub(i)
    }

    /// Chunk `i`: its first page and size.
    fn get(&self, i: usize) -> Option<(u64, RmpPageSize)> {
        let i = i as u64;
        let huge_start = self.start + self.head;
        if i < self.head {
            Some((self.start + i, RmpPageSize::Size4K))
        } else if i < self.head + self.huge {
            Some((huge_start + (i - self.head) * self.per_2m, RmpPageSize::Size2M))
        } else if i < self.head + self.huge + self.tail {
            Some((huge_start + self.huge * self.per_2m + (i - self.head - self.huge), RmpPageSize::Size4K))
        } else {
            None
        }
    }
}

/// Chunks per NAE request: `ghcb_entries`, within what the GHCB shared buffer holds.
pub(super) fn ghcb_batch(g: &Guest) -> usize {
    usize::from(g.config().ghcb_entries.clamp(1, snpsim_defs::ghcb::VMGEXIT_PSC_MAX_COUNT))
}

impl ConvertCursor {
    pub(super) fn new(chunks: Chunks, private: bool, protocol: Protocol, per_step: usize) -> Self {
        let stage = Self::first_stage(chunks, private, protocol, 0, per_step.min(chunks.len()));
        ConvertCursor { chunks, private, protocol, per_step, start: 0, stage }
    }

    /// The end of the current step.
    fn step_end(&self) -> usize {
        self.start.saturating_add(self.per_step).min(self.chunks.len())
    }

    /// The first stage of the step over chunks `start..end`: rescind (to shared) or send (to
    /// private).
    fn first_stage(chunks: Chunks, private: bool, protocol: Protocol, start: usize, end: usize) -> Stage {
        if private {
            Stage::Send(SendCursor::new(chunks, start, end, true, protocol))
        } else {
            Stage::Rescind(ChunkCursor::new(chunks, start, end, false))
        }
    }

    /// The next request of the change: the current stage's, or, when it is over, the next
    /// stage's (rescind → send → next step; send → validate → next step).
    pub(super) fn next(
        &mut self,
        g: &mut Guest,
        mut reply: Option<Reply>,
        runs: bool,
    ) -> Result<Option<Request>, GuestError> {
        loop {
            let req = match &mut self.stage {
                Stage::Rescind(c) | Stage::Validate(c) => c.next(g, reply.take().as_ref(), runs)?,
                Stage::Send(c) => c.next(g, reply.take())?,
            };
            if req.is_some() {
                return Ok(req);
            }
            let (start, end) = (self.start, self.step_end());
            self.stage = match self.stage {
                Stage::Rescind(_) => {
                    Stage::Send(SendCursor::new(self.chunks, start, end, false, self.protocol))
                }
                Stage::Send(_) if self.private => {
                    Stage::Validate(ChunkCursor::new(self.chunks, start, end, true))
                }
                Stage::Send(_) | Stage::Validate(_) => {
                    if end >= self.chunks.len() {
                        return Ok(None);
                    }
                    self.start = end;
                    let end = self.step_end();
                    Self::first_stage(self.chunks, self.private, self.protocol, self.start, end)
                }
            };
        }
    }
}

impl ChunkCursor {
    pub(super) fn new(chunks: Chunks, start: usize, end: usize, validate: bool) -> Self {
        ChunkCursor {
            chunks,
            validate,
            i: start,
            end,
            page: None,
            awaiting: None,
            awaiting_run: None,
            alone: None,
            issued: 0,
        }
    }

    /// Chunk `i` if it is one of the cursor's.
    fn chunk(&self, i: usize) -> Option<(u64, RmpPageSize)> {
        if i < self.end { self.chunks.get(i) } else { None }
    }

    /// PVALIDATE as Linux's `pval_pages` treats it: success continues, FAIL_SIZEMISMATCH asks for
    /// the 4K fallback, anything else — including "unchanged" (CF = 1, which Linux reports as
    /// `PVALIDATE_FAIL_NOUPDATE`) for a guest that tracks validation — terminates the guest. A
    /// naive guest (`validation_tracking = false`) does not notice "unchanged".
    fn classify(
        g: &Guest,
        gfn: u64,
        size: RmpPageSize,
        reply: Option<&Reply>,
    ) -> Result<ChunkResult, GuestError> {
        let Some(&Reply::Pvalidate(r)) = reply else { unreachable!("PVALIDATE awaits its reply") };
        match r {
            GuestOutcome::Done(PvalidateStatus::Changed) => Ok(ChunkResult::Done),
            GuestOutcome::Done(PvalidateStatus::Unchanged) if !g.config().validation_tracking => {
                Ok(ChunkResult::Done)
            }
            GuestOutcome::Fail(ReturnCode::FailSizeMismatch) if size == RmpPageSize::Size2M => {
                Ok(ChunkResult::SizeMismatch)
            }
            _ => Err(terminated(TermReason::Pvalidate, gfn)),
        }
    }

    fn issue(&mut self, g: &mut Guest, gfn: u64, size: RmpPageSize) -> Request {
        g.stats.pvalidate += 1;
        self.issued += 1;
        self.awaiting = Some((gfn, size));
        Request::Pvalidate { gpa: Gfn::new(gfn).gpa(), size, validate: self.validate }
    }

    /// A run of 4K PVALIDATEs from the cursor's position, if at least two pages in a row would
    /// each be issued as one 4K PVALIDATE by the steps below: consecutive 4K chunks (`start` is
    /// chunk `i`'s page, not yet begun), or the rest of a 2M chunk in its 4K fallback (`page`),
    /// whose tracked state differs from the target (every page for a guest that does not track).
    /// The page a run stopped at goes alone.
    fn run(&mut self, g: &Guest, start: u64, size: RmpPageSize) -> Option<Request> {
        let (first, limit, chunked) = match (self.page, size) {
            (None, RmpPageSize::Size4K) => {
                // Consecutive chunks that are 4K pages in a row (a 4K granularity, or a range's
                // head or tail).
                (start, start + self.chunks.pages_4k_from(self.i, self.end), true)
            }
            (Some(page), RmpPageSize::Size2M) => (page, start + g.span(size), false),
            _ => return None,
        };
        if self.alone == Some(first) || limit - first < 2 {
            return None;
        }
        let end = if !g.config().validation_tracking {
            limit
        } else if self.validate {
            // Pages not validated yet, up to the first validated one (the set's summary skips
            // to it, however far beyond the run it is).
            g.validated.first_from(first).filter(|&p| p < limit).unwrap_or(limit)
        } else {
            // Validated pages, up to the first one that is not.
            g.validated.runs_in(first, limit).first().filter(|r| r.0 == first).map_or(first, |r| r.1)
        };
        if end - first < 2 {
            return None;
        }
        self.awaiting_run = Some((first, end - first, chunked));
        Some(Request::PvalidateRun {
            gpa: Gfn::new(first).gpa(),
            pages: end - first,
            validate: self.validate,
        })
    }

    fn record(&self, g: &mut Guest, start: u64, end: u64) {
        if self.validate {
            g.validated.insert(start, end);
        } else {
            g.untrack(start, end);
        }
    }

    /// Rescind (`validate` false) or validate the chunks: per chunk, one 2M PVALIDATE when the
    /// tracking says the whole chunk is in the other state (rescind: all validated; validate: none
    /// validated; a naive guest always tries), else (or on FAIL_SIZEMISMATCH) 4K PVALIDATEs of the
    /// pages whose tracked state differs. A 4K PVALIDATE that fails terminates the guest.
    pub(super) fn next(
        &mut self,
        g: &mut Guest,
        reply: Option<&Reply>,
        runs: bool,
    ) -> Result<Option<Request>, GuestError> {
        let tracking = g.config().validation_tracking;
        if let Some((first, pages, chunked)) = self.awaiting_run.take() {
            let Some(&Reply::PvalidateRun(done)) = reply else {
                unreachable!("a PVALIDATE run awaits its count")
            };
            // As many 4K PVALIDATEs as retired `Changed`, each counted and recorded as one.
            g.stats.pvalidate += done;
            self.issued += done;
            self.record(g, first, first + done);
            if done < pages {
                self.alone = Some(first + done);
            }
            if chunked {
                self.i += usize::try_from(done).unwrap_or(usize::MAX);
                self.page = None;
            } else {
                self.page = Some(first + done);
            }
        }
        if let Some((gfn, size)) = self.awaiting.take() {
            match (Self::classify(g, gfn, size, reply)?, size) {
                (ChunkResult::Done, RmpPageSize::Size2M) => {
                    self.record(g, gfn, gfn + g.span(size));
                    self.i += 1;
                    self.page = None;
                }
                (ChunkResult::SizeMismatch, _) => self.page = Some(gfn),
                (ChunkResult::Done, RmpPageSize::Size4K) => {
                    self.record(g, gfn, gfn + 1);
                    self.page = Some(gfn + 1);
                }
            }
        }
        while let Some((start, size)) = self.chunk(self.i) {
            let n = g.span(size);
            if runs && let Some(req) = self.run(g, start, size) {
                return Ok(Some(req));
            }
            match self.page {
                None => {
                    // Pages of the chunk the guest tracks as validated (a guest that tracks
                    // nothing treats every chunk alike).
                    let tracked = if tracking { g.validated.count_in(start, start + n) } else { 0 };
                    if self.validate {
                        g.stats.refused_validations += tracked;
                        if size == RmpPageSize::Size2M && tracked == 0 {
                            return Ok(Some(self.issue(g, start, size)));
                        }
                    } else {
                        if tracking && tracked == 0 {
                            self.i += 1;
                            continue;
                        }
                        if size == RmpPageSize::Size2M && (tracked == n || !tracking) {
                            return Ok(Some(self.issue(g, start, size)));
                        }
                    }
                    self.page = Some(start);
                }
                Some(page) if page < start + n => {
                    if tracking && g.validated.contains(page) == self.validate {
                        self.page = Some(page + 1);
                        continue;
                    }
                    return Ok(Some(self.issue(g, page, RmpPageSize::Size4K)));
                }
                Some(_) => {
                    self.i += 1;
                    self.page = None;
                }
            }
        }
        Ok(None)
    }
}

impl SendCursor {
    pub(super) fn new(chunks: Chunks, start: usize, end: usize, private: bool, protocol: Protocol) -> Self {
        SendCursor { chunks, private, protocol, i: start, end, page: 0, before: None }
    }

    /// Chunk `i` if it is one of the cursor's.
    fn chunk(&self, i: usize) -> Option<(u64, RmpPageSize)> {
        if i < self.end { self.chunks.get(i) } else { None }
    }

    fn op(&self) -> PscOp {
        if self.private { PscOp::Private } else { PscOp::Shared }
    }

    /// Issue the PSC for the chunks with the cursor's protocol; any error terminates the guest.
    pub(super) fn next(
        &mut self,
        g: &mut Guest,
        reply: Option<Reply>,
    ) -> Result<Option<Request>, GuestError> {
        match self.protocol {
            Protocol::Msr => self.next_msr(g, reply),
            Protocol::Ghcb => self.next_ghcb(g, reply),
        }
    }

    fn next_msr(&mut self, g: &Guest, reply: Option<Reply>) -> Result<Option<Request>, GuestError> {
        if let Some(reply) = reply {
            let Reply::PscMsr(resp) = reply else { unreachable!("an MSR PSC awaits its response") };
            if resp.info() != GHCB_MSR_PSC_RESP || resp.error() != 0 {
                return Err(terminated(TermReason::Psc, self.page));
            }
            self.page += 1;
        }
        while let Some((start, size)) = self.chunk(self.i) {
            if self.page < start {
                self.page = start;
            }
            if self.page < start + g.span(size) {
                let req = GhcbMsrPscRequest::new()
                    .with_info(GHCB_MSR_PSC_REQ)
                    .with_gfn(Gfn::new(self.page))
                    .with_op(self.op().raw());
                return Ok(Some(Request::PscMsr(req)));
            }
            self.i += 1;
        }
        Ok(None)
    }

    /// Linux `vmgexit_psc`: batches of `ghcb_entries` entries, each re-issued until `cur_entry`
    /// passes `end_entry`; an error, a non-zero reserved field, or a hypervisor that moves
    /// backwards or not at all terminates the guest.
    fn next_ghcb(&mut self, g: &Guest, reply: Option<Reply>) -> Result<Option<Request>, GuestError> {
        let count = self.end.saturating_sub(self.i).min(ghcb_batch(g));
        let batch = || (self.i..self.i + count).filter_map(|i| self.chunks.get(i));
        let Some((first_gfn, _)) = batch().next() else { return Ok(None) };
        let end = (count - 1) as u16;
        let buf = match (reply, self.before) {
            (Some(Reply::PscGhcb { buf, info2 }), Some(before)) => {
                let h = buf.header;
                if info2 != 0 || h.reserved() != 0 || h.end_entry() != end || h.cur_entry() < before {
                    return Err(terminated(TermReason::Psc, first_gfn));
                }
                if h.cur_entry() > end {
                    self.i += count;
                    self.before = None;
                    return self.next_ghcb(g, None);
                }
                if h.cur_entry() == before {
                    return Err(terminated(TermReason::Psc, first_gfn));
                }
                buf
            }
            (None, None) => {
                let op = self.op().raw();
                let entries: Vec<PscEntry> = batch()
                    .map(|(gfn, size)| {
                        PscEntry::new().with_gfn(Gfn::new(gfn)).with_op(op).with_page_size(size.bit())
                    })
                    .collect();
                PscBuffer { header: PscHeader::new().with_end_entry(end), entries }
            }
            _ => unreachable!("an NAE PSC awaits its buffer"),
        };
        self.before = Some(buf.header.cur_entry());
        Ok(Some(Request::PscGhcb(buf)))
    }
}

impl Guest {
    /// Split `start..start + pages` into PSC/PVALIDATE chunks: 2M for aligned whole 2M runs when
    /// the granularity is 2M (Linux `__set_pages_state`), else 4K.
    pub(crate) fn chunks(&self, start: u64, pages: u64, gran: Granularity) -> Chunks {
        Chunks::new(start, start + pages, self.geometry.pages_per_2m(), gran == Granularity::M2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The computed chunks are the ones a page-by-page cut gives: 2M where a whole aligned
        /// region fits (with 2M granularity), else 4K.
        #[test]
        fn chunks_match_a_page_by_page_cut(start in 0u64..40, pages in 0u64..40, huge: bool) {
            let per_2m = 4;
            let (end, mut expected, mut g) = (start + pages, Vec::new(), start);
            while g < end {
                if huge && g.is_multiple_of(per_2m) && g + per_2m <= end {
                    expected.push((g, RmpPageSize::Size2M));
                    g += per_2m;
                } else {
                    expected.push((g, RmpPageSize::Size4K));
                    g += 1;
                }
            }
            let chunks = Chunks::new(start, end, per_2m, huge);
            let got: Vec<_> = (0..chunks.len()).map_while(|i| chunks.get(i)).collect();
            prop_assert_eq!(chunks.len(), expected.len());
            prop_assert_eq!(chunks.get(expected.len()), None);
            prop_assert_eq!(got, expected);
        }

        /// The computed length of a run of 4K chunks is the one walking the chunks gives.
        #[test]
        fn runs_of_4k_chunks_match_a_walk(start in 0u64..40, pages in 0u64..40, huge: bool, i in 0usize..45, end in 0usize..45) {
            let chunks = Chunks::new(start, start + pages, 4, huge);
            let walked = match chunks.get(i) {
                Some((first, RmpPageSize::Size4K)) if i < end => {
                    let mut k = 1;
                    while i + k < end && chunks.get(i + k) == Some((first + k as u64, RmpPageSize::Size4K)) {
                        k += 1;
                    }
                    k as u64
                }
                _ => 0,
            };
            prop_assert_eq!(chunks.pages_4k_from(i, end), walked);
        }
    }
}
