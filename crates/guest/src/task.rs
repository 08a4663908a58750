//! Guest operations as resumable tasks: each [`GuestTask::resume`] performs the guest's own logic
//! up to its next platform request (one VMGEXIT or one guest-side instruction) and returns it, so
//! that an engine can interleave the operations of several vCPUs between requests
//! (`docs/semantics.md` E-multi). Running a task to completion against a [`Platform`]
//! ([`Guest::run`], in [`crate::ops`]) is the sequential guest; there is no second copy of the guest's rules.

use snpsim_defs::ghcb::{
    GHCB_MSR_PSC_REQ, GHCB_MSR_PSC_RESP, GhcbMsrPscRequest, GhcbMsrPscResponse, PscBuffer, PscEntry,
    PscHeader, PscOp,
};
use snpsim_defs::{Gfn, Gpa, ReturnCode, RmpAdjustOperand, RmpPageSize, SvmExitCode};
use snpsim_hw::{AccessKind, GuestOutcome, PvalidateStatus};

use crate::config::{Granularity, Protocol, PscOrder, Recoalesce};
use crate::error::{GuestError, TermReason};
use crate::guest::Guest;
use crate::platform::{Platform, Stop};

/// One thing a guest asks of its platform.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Request {
    /// VMGEXIT with an MSR-protocol page-state-change request.
    PscMsr(GhcbMsrPscRequest),
    /// VMGEXIT with an NAE page-state-change buffer.
    PscGhcb(PscBuffer),
    /// PVALIDATE.
    Pvalidate {
        /// The page.
        gpa: Gpa,
        /// Operand size.
        size: RmpPageSize,
        /// Validate (else rescind).
        validate: bool,
    },
    /// RMPADJUST.
    Rmpadjust {
        /// The page.
        gpa: Gpa,
        /// Operand size.
        size: RmpPageSize,
        /// The operand.
        op: RmpAdjustOperand,
    },
    /// A memory access; a write stores `version`.
    Access {
        /// The address.
        gpa: Gpa,
        /// Read, write or execute.
        kind: AccessKind,
        /// C-bit.
        private: bool,
        /// The version a write stores.
        version: u64,
    },
}

/// The platform's answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reply {
    /// The MSR-protocol response.
    PscMsr(GhcbMsrPscResponse),
    /// The buffer as the hypervisor left it, and SW_EXITINFO2.
    PscGhcb {
        /// The buffer.
        buf: PscBuffer,
        /// SW_EXITINFO2.
        info2: u64,
    },
    /// PVALIDATE's result.
    Pvalidate(GuestOutcome<PvalidateStatus>),
    /// RMPADJUST's result.
    Rmpadjust(GuestOutcome<()>),
    /// The access's result and, for a completed private read, the version it read (`None` when
    /// the contents were scrambled).
    Access {
        /// The result.
        outcome: GuestOutcome<()>,
        /// What a completed access read.
        read: Option<u64>,
    },
}

impl dyn Platform + '_ {
    /// Serve one request with the platform's methods.
    pub fn serve(&mut self, vcpu: u32, req: Request) -> Result<Reply, Stop> {
        Ok(match req {
            Request::PscMsr(r) => Reply::PscMsr(self.psc_msr(vcpu, r)?),
            Request::PscGhcb(mut buf) => {
                let info2 = self.psc_ghcb(vcpu, &mut buf)?;
                Reply::PscGhcb { buf, info2 }
            }
            Request::Pvalidate { gpa, size, validate } => {
                Reply::Pvalidate(self.pvalidate(vcpu, gpa, size, validate)?)
            }
            Request::Rmpadjust { gpa, size, op } => Reply::Rmpadjust(self.rmpadjust(vcpu, gpa, size, op)?),
            Request::Access { gpa, kind, private, version } => {
                let outcome = self.access(vcpu, gpa, kind, private, version)?;
                let read = self.read_version(gpa.gfn());
                Reply::Access { outcome, read }
            }
        })
    }
}

/// What a finished task returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskResult {
    /// A composite operation (page-state change, acceptance, re-coalescing, a #VC) completed.
    Done,
    /// The result of a bare PVALIDATE.
    Pvalidate(GuestOutcome<PvalidateStatus>),
    /// The result of a bare RMPADJUST or an access.
    Plain(GuestOutcome<()>),
    /// SW_EXITINFO2 of a bare page-state-change request (0 = success, else the GHCB error).
    PscRequest(u64),
}

impl TaskResult {
    /// The one-line form the engine reports for a step (a trace's `step_end` `result`): `ok` for a
    /// composite operation, the instruction's or access's outcome by name (`done`, `unchanged`,
    /// a failure code, `npf:0x...`, `vc:0x...`), SW_EXITINFO2 of a bare PSC request in hex.
    pub fn describe(&self) -> String {
        match self {
            TaskResult::Done => "ok".into(),
            TaskResult::Pvalidate(r) => r.name_with(|s| s.name()),
            TaskResult::Plain(r) => r.name_with(|()| "done"),
            TaskResult::PscRequest(info2) => format!("{info2:#x}"),
        }
    }
}

/// What a task does next.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TaskStep {
    /// Ask the platform; pass the reply to the next [`GuestTask::resume`].
    Issue(Request),
    /// The operation is over.
    Done(TaskResult),
}

/// The bare PSC request's next step: issue the one-entry buffer, then end the guest's data on the
/// pages it asked to convert if KVM answered 0 ([`GuestTask::psc_request`]).
fn psc_request_next(g: &mut Guest, entry: PscEntry, issued: &mut bool, reply: Option<&Reply>) -> TaskStep {
    if !*issued {
        *issued = true;
        let buf = PscBuffer { header: PscHeader::new().with_end_entry(0), entries: vec![entry] };
        return TaskStep::Issue(Request::PscGhcb(buf));
    }
    let Some(&Reply::PscGhcb { info2, .. }) = reply else { unreachable!("a PSC request awaits its reply") };
    if info2 == 0 {
        let n = if entry.page_size() { g.geometry.pages_per_2m() } else { 1 };
        let done = u64::from(entry.cur_page()).min(n);
        g.drop_data(entry.gfn() + done, n - done);
    }
    TaskStep::Done(TaskResult::PscRequest(info2))
}

/// A PVALIDATE result as Linux's `pval_pages` treats it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkResult {
    Done,
    SizeMismatch,
}

/// Walks chunks `i..end` for rescinding or validating: a 2M chunk is tried at 2M first (when the
/// tracking allows), then page by page (`page`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ChunkCursor {
    chunks: Chunks,
    validate: bool,
    i: usize,
    end: usize,
    page: Option<u64>,
    /// The PVALIDATE in flight: (first page, size).
    awaiting: Option<(u64, RmpPageSize)>,
    /// PVALIDATEs issued (re-coalescing succeeds only with exactly one).
    issued: u64,
}

/// Sends the page-state change of chunks `i..end`: one MSR request per page, or NAE buffers of
/// `ghcb_entries` entries re-issued until the hypervisor has processed them all.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct SendCursor {
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
/// step over the whole range this is [`PscOrder::WholeRange`]; with one page per step over MSR,
/// or `ghcb_entries` chunks per step over the GHCB, it is [`PscOrder::PerRequest`]. The steps are
/// computed as it goes, so a task's size does not grow with the range.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ConvertCursor {
    chunks: Chunks,
    private: bool,
    protocol: Protocol,
    per_step: usize,
    /// First chunk of the current step.
    start: usize,
    stage: Stage,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Phase {
    Convert(ConvertCursor),
    Rescind(ChunkCursor),
    Send(SendCursor),
    Validate(ChunkCursor),
    /// Re-coalescing: count the validation, then write the saved pages back (`i`: next one).
    Restore {
        saved: Vec<(u64, u64)>,
        i: usize,
        counted: bool,
        awaiting: bool,
    },
    /// Forget the guest's data in the range (the end of a page-state change).
    DropData {
        start: u64,
        pages: u64,
    },
}

/// A guest operation in progress.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GuestTask {
    kind: TaskKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum TaskKind {
    /// Phases run in order (page-state change, acceptance, re-coalescing).
    Phases {
        phases: Vec<Phase>,
        at: usize,
        validated_2m: Option<bool>,
    },
    Pvalidate {
        gfn: Gfn,
        size: RmpPageSize,
        validate: bool,
        issued: bool,
    },
    Rmpadjust {
        gfn: Gfn,
        size: RmpPageSize,
        op: RmpAdjustOperand,
        issued: bool,
    },
    Access {
        gpa: Gpa,
        kind: AccessKind,
        private: bool,
        version: u64,
        stage: AccessStage,
    },
    InjectVc {
        gfn: Gfn,
        issued: bool,
    },
    PscRequest {
        entry: PscEntry,
        issued: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum AccessStage {
    Start,
    First,
    Validating,
    Retry,
}

fn terminated(reason: TermReason, gfn: u64) -> GuestError {
    GuestError::Terminated { reason, gpa: Gfn(gfn).gpa() }
}

impl GuestTask {
    /// The guest's whole page-state change of `pages` pages from `start` (the `psc` step): to
    /// shared, rescind the validation of the pages it validated, then the PSC; to private, the
    /// PSC, then PVALIDATE (2M with the 4K fallback). The guest's [`PscOrder`] says whether that
    /// is done request by request (Linux `__page_state_change` over MSR, one 4K page at a time;
    /// `__set_pages_state` over the GHCB, one batch at a time) or over the whole range at once
    /// (Linux before 15d9088779b8). The protocol is the one the guest has when the change starts
    /// ([`Guest::psc_protocol`]). The guest's own conversion ends any data it held there.
    pub fn psc(g: &mut Guest, start: Gfn, pages: u64, private: bool, gran: Option<Granularity>) -> Self {
        let protocol = g.start_psc();
        let config = g.config();
        let gran = gran.unwrap_or(config.granularity);
        let (chunks, per_step) = match (config.order, protocol) {
            (PscOrder::WholeRange, _) => {
                let chunks = g.chunks(start.raw(), pages, gran);
                (chunks, chunks.len().max(1))
            }
            // `__page_state_change` works on 4K pages and validates them at 4K.
            (PscOrder::PerRequest, Protocol::Msr) => (g.chunks(start.raw(), pages, Granularity::K4), 1),
            (PscOrder::PerRequest, Protocol::Ghcb) => (g.chunks(start.raw(), pages, gran), ghcb_batch(g)),
        };
        let phases = vec![
            Phase::Convert(ConvertCursor::new(chunks, private, protocol, per_step)),
            Phase::DropData { start: start.raw(), pages },
        ];
        GuestTask { kind: TaskKind::Phases { phases, at: 0, validated_2m: None } }
    }

    /// Regain a 2M RMP entry for the region at `start` after a PSMASH (`docs/semantics.md` G3): all its pages
    /// to shared (rescinding what was validated), a 2M PSC to private, PVALIDATE 2M. With
    /// `SaveRestore` the data pages are written back after (their versions kept); with `Naive`
    /// they are not, and the region's data is lost. Re-coalescing does not end the guest's data:
    /// it means to keep it.
    pub fn recoalesce(g: &Guest, start: Gfn, mode: Recoalesce) -> Self {
        let s = start.raw();
        let saved: Vec<(u64, u64)> = if mode == Recoalesce::SaveRestore {
            g.holding.iter_range(s, g.geometry.pages_per_2m()).collect()
        } else {
            Vec::new()
        };
        let chunk = g.chunks(s, g.geometry.pages_per_2m(), Granularity::M2);
        let protocol = g.psc_protocol();
        let phases = vec![
            Phase::Rescind(ChunkCursor::new(chunk, 0, chunk.len(), false)),
            Phase::Send(SendCursor::new(chunk, 0, chunk.len(), false, protocol)),
            Phase::Send(SendCursor::new(chunk, 0, chunk.len(), true, protocol)),
            Phase::Validate(ChunkCursor::new(chunk, 0, chunk.len(), true)),
            Phase::Restore { saved, i: 0, counted: false, awaiting: false },
        ];
        GuestTask { kind: TaskKind::Phases { phases, at: 0, validated_2m: None } }
    }

    /// The bare PVALIDATE instruction (the `pvalidate` step), keeping the tracking in step.
    pub fn pvalidate(gfn: Gfn, size: RmpPageSize, validate: bool) -> Self {
        GuestTask { kind: TaskKind::Pvalidate { gfn, size, validate, issued: false } }
    }

    /// The bare RMPADJUST instruction (the `rmpadjust` step).
    pub fn rmpadjust(gfn: Gfn, size: RmpPageSize, op: RmpAdjustOperand) -> Self {
        GuestTask { kind: TaskKind::Rmpadjust { gfn, size, op, issued: false } }
    }

    /// One bare NAE page-state-change request of one entry (the `psc_request` step): the VMGEXIT
    /// with the entry as given — a 2M entry at an unaligned GFN, a non-zero `cur_page` — and no
    /// PVALIDATE before or after, so that a scenario can put KVM's request decoding to the test
    /// (GHCB spec 4.1.6, Page State Change; KVM `snp_begin_psc`). The guest's view of validation
    /// is not touched (rescind with `pvalidate` steps first, as Linux does before a change to
    /// shared); when KVM reports success the guest ends its data on the pages it asked to convert
    /// (from `cur_page` on), as its own conversions do.
    pub fn psc_request(gfn: Gfn, size: RmpPageSize, private: bool, cur_page: u16) -> Self {
        let op = if private { PscOp::Private } else { PscOp::Shared };
        let entry = PscEntry::new()
            .with_gfn(gfn.raw())
            .with_op(op.raw())
            .with_page_size(size == RmpPageSize::Size2M)
            .with_cur_page(cur_page);
        GuestTask { kind: TaskKind::PscRequest { entry, issued: false } }
    }

    /// A memory access (the `access` step). A private write makes the page hold data; a private
    /// read of a page holding data checks its contents and counts a loss when they are scrambled or
    /// stale (`docs/semantics.md` G4). A #VC for an unvalidated page terminates a Linux guest; a
    /// naive guest validates the page and retries (docs/attacks.md).
    pub fn access(gpa: Gpa, kind: AccessKind, private: bool) -> Self {
        GuestTask { kind: TaskKind::Access { gpa, kind, private, version: 0, stage: AccessStage::Start } }
    }

    /// A #VC 0x404 ("page not validated") for `gfn` that the guest did not cause (a hypervisor
    /// injecting it). A guest that tracks validation knows whether it validated the page; Linux has
    /// no handler for 0x404 and terminates either way. A naive guest validates the page and goes on.
    pub fn inject_vc(gfn: Gfn) -> Self {
        GuestTask { kind: TaskKind::InjectVc { gfn, issued: false } }
    }

    /// Advance the task with the reply to its last request (`None` the first time): it returns
    /// its next request or its result, or the guest's termination.
    pub fn resume(&mut self, g: &mut Guest, mut reply: Option<Reply>) -> Result<TaskStep, GuestError> {
        match &mut self.kind {
            TaskKind::Phases { phases, at, validated_2m } => {
                while let Some(phase) = phases.get_mut(*at) {
                    let req = match phase {
                        Phase::Convert(c) => c.next(g, reply.take())?,
                        Phase::Rescind(c) => c.next(g, reply.take().as_ref())?,
                        Phase::Validate(c) => {
                            let r = c.next(g, reply.take().as_ref())?;
                            if r.is_none() {
                                *validated_2m = Some(c.issued == 1);
                            }
                            r
                        }
                        Phase::Send(c) => c.next(g, reply.take())?,
                        Phase::Restore { saved, i, counted, awaiting } => restore_next(
                            g,
                            saved,
                            i,
                            (counted, awaiting),
                            *validated_2m,
                            reply.take().as_ref(),
                        )?,
                        Phase::DropData { start, pages } => {
                            g.drop_data(*start, *pages);
                            None
                        }
                    };
                    match req {
                        Some(req) => return Ok(TaskStep::Issue(req)),
                        None => *at += 1,
                    }
                }
                Ok(TaskStep::Done(TaskResult::Done))
            }
            TaskKind::Pvalidate { gfn, size, validate, issued } => {
                if !*issued {
                    *issued = true;
                    g.stats.pvalidate += 1;
                    return Ok(TaskStep::Issue(Request::Pvalidate {
                        gpa: gfn.gpa(),
                        size: *size,
                        validate: *validate,
                    }));
                }
                let Some(Reply::Pvalidate(r)) = reply else { unreachable!("PVALIDATE awaits its reply") };
                if r.is_done() {
                    let n = g.span(*size);
                    if *validate {
                        g.validated.insert(gfn.raw(), gfn.raw() + n);
                    } else {
                        g.validated.remove(gfn.raw(), gfn.raw() + n);
                    }
                }
                Ok(TaskStep::Done(TaskResult::Pvalidate(r)))
            }
            TaskKind::Rmpadjust { gfn, size, op, issued } => {
                if !*issued {
                    *issued = true;
                    g.stats.rmpadjust += 1;
                    return Ok(TaskStep::Issue(Request::Rmpadjust { gpa: gfn.gpa(), size: *size, op: *op }));
                }
                let Some(Reply::Rmpadjust(r)) = reply else { unreachable!("RMPADJUST awaits its reply") };
                Ok(TaskStep::Done(TaskResult::Plain(r)))
            }
            TaskKind::Access { gpa, kind, private, version, stage } => {
                access_next(g, (*gpa, *kind, *private), version, stage, reply)
            }
            TaskKind::PscRequest { entry, issued } => Ok(psc_request_next(g, *entry, issued, reply.as_ref())),
            TaskKind::InjectVc { gfn, issued } => {
                if g.config().validation_tracking {
                    return Err(terminated(TermReason::PageNotValidated, gfn.raw()));
                }
                if !*issued {
                    *issued = true;
                    g.stats.pvalidate += 1;
                    return Ok(TaskStep::Issue(Request::Pvalidate {
                        gpa: gfn.gpa(),
                        size: RmpPageSize::Size4K,
                        validate: true,
                    }));
                }
                if let Some(Reply::Pvalidate(r)) = reply
                    && r.is_done()
                {
                    g.validated.insert(gfn.raw(), gfn.raw() + 1);
                }
                Ok(TaskStep::Done(TaskResult::Done))
            }
        }
    }
}

/// Re-coalescing's end: count whether the region was validated with one 2M PVALIDATE, then write
/// the saved pages back, one private write each (a write that does not complete terminates).
fn restore_next(
    g: &mut Guest,
    saved: &[(u64, u64)],
    i: &mut usize,
    (counted, awaiting): (&mut bool, &mut bool),
    validated_2m: Option<bool>,
    reply: Option<&Reply>,
) -> Result<Option<Request>, GuestError> {
    if !*counted {
        *counted = true;
        if validated_2m == Some(true) {
            g.stats.recoalesced += 1;
        } else {
            g.stats.recoalesce_failed += 1;
        }
    }
    if *awaiting {
        *awaiting = false;
        let Some(Reply::Access { outcome, .. }) = reply else {
            unreachable!("a restore write awaits an access reply")
        };
        if !outcome.is_done() {
            return Err(terminated(TermReason::PageNotValidated, saved[*i].0));
        }
        *i += 1;
    }
    Ok(saved.get(*i).map(|&(gfn, version)| {
        g.stats.pages_saved += 1;
        *awaiting = true;
        Request::Access { gpa: Gfn(gfn).gpa(), kind: AccessKind::Write, private: true, version }
    }))
}

/// The access task: issue the access; a naive guest answers a #VC 0x404 by validating the page
/// and retrying once; the guest's bookkeeping follows the final result.
fn access_next(
    g: &mut Guest,
    (gpa, kind, private): (Gpa, AccessKind, bool),
    version: &mut u64,
    stage: &mut AccessStage,
    reply: Option<Reply>,
) -> Result<TaskStep, GuestError> {
    let access = Request::Access { gpa, kind, private, version: *version };
    let gfn = gpa.gfn();
    let (outcome, read) = match (*stage, reply) {
        (AccessStage::Start, _) => {
            // The version is taken when the write is issued, so that concurrent
            // writers on other vCPUs never store the same one.
            *version = g.next_version;
            if private && kind == AccessKind::Write {
                g.next_version += 1;
            }
            *stage = AccessStage::First;
            return Ok(TaskStep::Issue(Request::Access { gpa, kind, private, version: *version }));
        }
        (AccessStage::Validating, Some(Reply::Pvalidate(r))) => {
            if r.is_done() {
                g.validated.insert(gfn.raw(), gfn.raw() + 1);
                *stage = AccessStage::Retry;
                return Ok(TaskStep::Issue(access));
            }
            (GuestOutcome::Vc(SvmExitCode::PageNotValidated), None)
        }
        (AccessStage::First, Some(Reply::Access { outcome, .. }))
            if outcome == GuestOutcome::Vc(SvmExitCode::PageNotValidated)
                && !g.config().validation_tracking =>
        {
            // A naive guest validates the page it took the #VC for and retries:
            // exactly what a hypervisor that swapped the frame behind a validated GPA
            // needs (docs/attacks.md).
            g.stats.pvalidate += 1;
            *stage = AccessStage::Validating;
            return Ok(TaskStep::Issue(Request::Pvalidate {
                gpa: gfn.gpa(),
                size: RmpPageSize::Size4K,
                validate: true,
            }));
        }
        (AccessStage::First | AccessStage::Retry, Some(Reply::Access { outcome, read })) => (outcome, read),
        _ => unreachable!("an access awaits an access or PVALIDATE reply"),
    };
    g.complete_access(gfn, kind, private, *version, outcome, read)?;
    Ok(TaskStep::Done(TaskResult::Plain(outcome)))
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

    fn len(&self) -> usize {
        usize::try_from(self.head + self.huge + self.tail).unwrap_or(usize::MAX)
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
fn ghcb_batch(g: &Guest) -> usize {
    usize::from(g.config().ghcb_entries.clamp(1, snpsim_defs::ghcb::VMGEXIT_PSC_MAX_COUNT))
}

impl ConvertCursor {
    fn new(chunks: Chunks, private: bool, protocol: Protocol, per_step: usize) -> Self {
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
    fn next(&mut self, g: &mut Guest, mut reply: Option<Reply>) -> Result<Option<Request>, GuestError> {
        loop {
            let req = match &mut self.stage {
                Stage::Rescind(c) | Stage::Validate(c) => c.next(g, reply.take().as_ref())?,
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
    fn new(chunks: Chunks, start: usize, end: usize, validate: bool) -> Self {
        ChunkCursor { chunks, validate, i: start, end, page: None, awaiting: None, issued: 0 }
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
        Request::Pvalidate { gpa: Gfn(gfn).gpa(), size, validate: self.validate }
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
    fn next(&mut self, g: &mut Guest, reply: Option<&Reply>) -> Result<Option<Request>, GuestError> {
        let tracking = g.config().validation_tracking;
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
            match self.page {
                None => {
                    let tracked = g.validated.count_in(start, start + n);
                    if self.validate {
                        let tracked = if tracking { tracked } else { 0 };
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
    fn new(chunks: Chunks, start: usize, end: usize, private: bool, protocol: Protocol) -> Self {
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
    fn next(&mut self, g: &mut Guest, reply: Option<Reply>) -> Result<Option<Request>, GuestError> {
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
                    .with_gfn(self.page)
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
                    .map(|(gfn, size)| PscEntry::new().with_gfn(gfn).with_op(op).with_page_size(size.bit()))
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
    }
}
