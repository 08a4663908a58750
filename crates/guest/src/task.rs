//! Guest operations as resumable tasks: each [`GuestTask::resume`] performs the guest's own logic
//! up to its next platform request (one VMGEXIT or one guest-side instruction) and returns it, so
//! that an engine can interleave the operations of several vCPUs between requests
//! (`docs/semantics.md` E-multi). Running a task to completion against a [`Platform`]
//! ([`Guest::run`]) is the sequential guest; there is no second copy of the guest's rules.

use snpsim_defs::ghcb::{GhcbMsrPscRequest, GhcbMsrPscResponse, PscBuffer, PscEntry, PscHeader, PscOp};
use snpsim_defs::{Gfn, Gpa, RmpAdjustOperand, RmpPageSize};
use snpsim_hw::{AccessKind, GuestOutcome, PvalidateStatus};

use crate::config::{Granularity, Protocol, PscOrder, Recoalesce};
use crate::error::{GuestError, TermReason};
use crate::guest::Guest;
use crate::platform::{Platform, Stop};

mod access;
mod convert;

use access::{AccessStage, access_next};
use convert::{ChunkCursor, ConvertCursor, SendCursor, ghcb_batch};

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
    /// A run of 4K PVALIDATEs of `pages` consecutive pages from `gpa` (docs/semantics.md,
    /// "Ranges"): the platform executes them in order for as long as each retires `Changed` and its
    /// outcome is the same for the whole run, and answers how many did. Only a platform that
    /// offers runs ([`Platform::runs`]) is asked; the guest then executes the next page alone.
    PvalidateRun {
        /// The first page.
        gpa: Gpa,
        /// How many 4K pages.
        pages: u64,
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
    /// How many PVALIDATEs of a run retired `Changed` (the first ones).
    PvalidateRun(u64),
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
            Request::PvalidateRun { gpa, pages, validate } => {
                Reply::PvalidateRun(self.pvalidate_run(vcpu, gpa, pages, validate)?)
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
        g.drop_data(entry.gfn().raw() + done, n - done);
    }
    TaskStep::Done(TaskResult::PscRequest(info2))
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

fn terminated(reason: TermReason, gfn: u64) -> GuestError {
    GuestError::Terminated { reason, gpa: Gfn::new(gfn).gpa() }
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
            .with_gfn(gfn)
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
    pub fn resume(&mut self, g: &mut Guest, reply: Option<Reply>) -> Result<TaskStep, GuestError> {
        self.resume_with(g, reply, false)
    }

    /// [`GuestTask::resume`] for a platform that offers runs of PVALIDATEs (`runs`,
    /// [`Platform::runs`]): where a page-state change validates or rescinds consecutive 4K pages
    /// whose tracked state is the same, it asks for them as one [`Request::PvalidateRun`], and
    /// executes alone the page after the pages the run did. The guest's state and counters end
    /// as they would page by page.
    pub fn resume_with(
        &mut self,
        g: &mut Guest,
        mut reply: Option<Reply>,
        runs: bool,
    ) -> Result<TaskStep, GuestError> {
        match &mut self.kind {
            TaskKind::Phases { phases, at, validated_2m } => {
                while let Some(phase) = phases.get_mut(*at) {
                    let req = match phase {
                        Phase::Convert(c) => c.next(g, reply.take(), runs)?,
                        Phase::Rescind(c) => c.next(g, reply.take().as_ref(), runs)?,
                        Phase::Validate(c) => {
                            let r = c.next(g, reply.take().as_ref(), runs)?;
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
        Request::Access { gpa: Gfn::new(gfn).gpa(), kind: AccessKind::Write, private: true, version }
    }))
}
