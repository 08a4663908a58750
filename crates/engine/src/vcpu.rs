//! One vCPU's platform request in progress, advanced one architectural operation per tick, so that
//! the engine can interleave vCPUs (`docs/semantics.md` E-multi).
//!
//! A tick is one of: one attempt of a guest instruction (PVALIDATE, RMPADJUST or an access)
//! including the handling of the #NPF it takes; KVM's PSMASH after its RMP lookup (a separate
//! tick, so that two vCPUs faulting in one 2M region can both look up a 2M entry); the start
//! and the end of an in-flight window (a PSMASH, or the first RMPUPDATE of a page-state-change
//! range); one range of an NAE page-state change; one MSR page-state change. Between ticks other
//! vCPUs run: a PSMASH or RMPUPDATE that meets another CPU's in-flight instruction gets
//! FAIL_INUSE and is retried on the vCPU's next tick, as Linux's loops retry it; an instruction
//! that faults inside another CPU's window is retried likewise (docs/semantics.md, E-multi).

use snpsim_defs::ghcb::PscBuffer;
use snpsim_defs::{Gfn, NpfErrorCode, PageSize, Pfn, ReturnCode};
use snpsim_guest::{Reply, Request, Stop};
use snpsim_hw::{GuestAccess, GuestOutcome, RmpModel};
use snpsim_kvm::{NpfStep, PsmashPlan};

use crate::machine::{MAX_FAULTS_PER_ACCESS, Machine, Window};

/// A platform request in progress on one vCPU.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Exec {
    req: Request,
    faults: u32,
    stage: Stage,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Stage {
    /// The instruction runs (again) on the next tick.
    Run,
    /// KVM looked up a 2M entry and will PSMASH it.
    Psmash(PsmashPlan),
    /// KVM's PSMASH is in flight.
    PsmashInFlight(PsmashPlan),
    /// An NAE page-state change: the buffer as KVM has processed it so far, whether the exit was
    /// counted, and the window of the range whose first RMPUPDATE is in flight.
    Psc { buf: PscBuffer, started: bool, window: Option<Pfn> },
    /// An in-place conversion to shared between its two steps (`gmem-inplace`): KVM has unmapped
    /// the range's folios and the file has yet to split them. KVM's invalidation is in progress
    /// (`mmu_invalidate_in_progress`): other vCPUs' faults in the 1G GFN range wait, modelled as
    /// the vCPU's window over the range. `info2` is the page-state change's reply, if the range
    /// was its last.
    InPlace {
        buf: PscBuffer,
        conversion: snpsim_kvm::InPlaceConversion,
        info2: Option<u64>,
        window: Option<Pfn>,
    },
}

impl Exec {
    /// A request about to run.
    pub fn new(req: Request) -> Self {
        let stage = match &req {
            Request::PscGhcb(buf) => Stage::Psc { buf: buf.clone(), started: false, window: None },
            _ => Stage::Run,
        };
        Exec { req, faults: 0, stage }
    }

    /// The in-place conversion this request's page-state change holds between its unmap and its
    /// split, if it is there (between the two ticks of an in-place conversion to shared).
    pub fn in_place(&self) -> Option<snpsim_kvm::InPlaceConversion> {
        match &self.stage {
            Stage::InPlace { conversion, .. } => Some(*conversion),
            _ => None,
        }
    }
}

/// What one attempt of a guest instruction did.
enum Tried {
    Done(Reply),
    Npf(NpfErrorCode, Option<(Pfn, PageSize)>),
}

impl Machine {
    /// Whether another vCPU than `vcpu` holds a window over GFNs in the 1G range holding `gfn`.
    fn blocked(&self, vcpu: u32, gfn: Gfn) -> bool {
        let g1 = self.gfn_range_1g(gfn);
        self.windows.iter().any(|w| w.vcpu != vcpu && w.gfn_1g == g1)
    }

    /// The first GFN of the 1G-aligned GFN range holding `gfn`.
    fn gfn_range_1g(&self, gfn: Gfn) -> Gfn {
        self.rmp.config().geometry.gfn_align_down(gfn, PageSize::Size1G)
    }

    /// Start an in-flight instruction of `vcpu` on `region` for `gfn`; `false` (FAIL_INUSE) when
    /// another CPU's is in flight there.
    fn open_window(&mut self, vcpu: u32, gfn: Gfn, region: Pfn) -> bool {
        if self.rmp.begin_in_flight(region) != ReturnCode::Success {
            return false;
        }
        let gfn_1g = self.gfn_range_1g(gfn);
        self.windows.push(Window { vcpu, gfn_1g, region });
        true
    }

    /// The in-flight instruction on `region` retires.
    fn close_window(&mut self, region: Pfn) {
        self.rmp.end_in_flight(region);
        self.windows.retain(|w| w.region != region);
    }

    /// Advance `exec` on `vcpu` by one tick: the reply once the request is finished.
    pub fn tick(&mut self, vcpu: u32, exec: &mut Exec) -> Result<Option<Reply>, Stop> {
        match std::mem::replace(&mut exec.stage, Stage::Run) {
            Stage::Run => self.tick_run(vcpu, exec),
            Stage::Psmash(plan) => {
                let region = self.rmp.config().geometry.region_of(plan.pfn);
                if self.open_window(vcpu, plan.gfn, region) {
                    exec.stage = Stage::PsmashInFlight(plan);
                } else {
                    self.kvm.stats.races.psmash_fail_inuse += 1;
                    if snpsim_hw::Mutant::FailInuseFatal.planted(self.kvm.mutant()) {
                        let e = snpsim_kvm::KvmError::Instruction {
                            instruction: snpsim_kvm::KvmInsn::Psmash,
                            pfn: region,
                            code: ReturnCode::FailInuse,
                        };
                        return Err(self.stop(&e));
                    }
                    exec.stage = Stage::Psmash(plan);
                }
                Ok(None)
            }
            Stage::PsmashInFlight(plan) => {
                self.close_window(self.rmp.config().geometry.region_of(plan.pfn));
                let done = self.traced_as(Some(vcpu), crate::events::Actor::Kvm, |m| {
                    m.kvm.finish_psmash(&mut m.rmp, plan)
                });
                done.map_err(|e| self.stop(&e))?;
                Ok(None)
            }
            Stage::Psc { buf, started, window } => self.tick_psc(vcpu, exec, buf, started, window),
            Stage::InPlace { buf, conversion, info2, window } => {
                if let Some(region) = window {
                    self.close_window(region);
                }
                let done = self.traced_as(Some(vcpu), crate::events::Actor::Kvm, |m| {
                    m.kvm.finish_convert_in_place(&mut m.host, &mut m.rmp, conversion)
                });
                done.map_err(|e| self.stop(&e))?;
                if let Some(info2) = info2 {
                    return Ok(Some(Reply::PscGhcb { buf, info2 }));
                }
                exec.stage = Stage::Psc { buf, started: true, window: None };
                Ok(None)
            }
        }
    }

    fn tick_run(&mut self, vcpu: u32, exec: &mut Exec) -> Result<Option<Reply>, Stop> {
        use snpsim_guest::Platform;
        let (gpa, private, write) = match exec.req {
            Request::PscMsr(req) => {
                if self.blocked(vcpu, req.gfn()) {
                    self.kvm.stats.races.rmpupdate_fail_inuse += 1;
                    return Ok(None);
                }
                return self.psc_msr(vcpu, req).map(|r| Some(Reply::PscMsr(r)));
            }
            Request::PscGhcb(_) => unreachable!("an NAE PSC runs in its own stage"),
            Request::PvalidateRun { .. } => unreachable!("an interleaved guest asks for no runs"),
            Request::Pvalidate { gpa, .. } | Request::Rmpadjust { gpa, .. } => (gpa, true, false),
            Request::Access { gpa, kind, private, .. } => {
                (gpa, private, kind == snpsim_hw::AccessKind::Write)
            }
        };
        let (code, leaf) = match self.try_insn(&exec.req) {
            Tried::Done(reply) => return Ok(Some(reply)),
            Tried::Npf(code, leaf) => (code, leaf),
        };
        let gfn = gpa.gfn();
        let in_window = leaf.is_some_and(|(pfn, _)| self.rmp.in_flight(pfn));
        if in_window || self.blocked(vcpu, gfn) {
            self.kvm.spurious_npf();
            return Ok(None);
        }
        exec.faults += 1;
        if exec.faults > MAX_FAULTS_PER_ACCESS {
            self.fatal.get_or_insert(crate::machine::livelock(gpa));
            return Err(Stop);
        }
        let code = if leaf.is_none() {
            NpfErrorCode::new().with_guest_final(true).with_enc(private).with_write(write)
        } else {
            code
        };
        let exit = self.rmp.sink.as_mut().map(|r| r.npf(gpa, code, leaf.map(|(_, s)| s)));
        let step = self.traced(exit, |m| m.kvm.begin_npf(&mut m.host, &mut m.rmp, gpa, code));
        match step {
            Ok(NpfStep::Handled) => {}
            Ok(NpfStep::Psmash(plan)) => exec.stage = Stage::Psmash(plan),
            Err(e) => return Err(self.stop(&e)),
        }
        Ok(None)
    }

    /// One attempt of a guest instruction through the NPT and the RMP checks.
    fn try_insn(&mut self, req: &Request) -> Tried {
        let ctx = self.ctx();
        let gpa = match *req {
            Request::Pvalidate { gpa, .. } | Request::Rmpadjust { gpa, .. } | Request::Access { gpa, .. } => {
                gpa
            }
            Request::PscMsr(_) | Request::PscGhcb(_) | Request::PvalidateRun { .. } => {
                unreachable!("not one instruction")
            }
        };
        let leaf = self.kvm.npt.translate(gpa.gfn());
        let Some((pfn, npt_size)) = leaf else { return Tried::Npf(NpfErrorCode::new(), None) };
        match *req {
            Request::Pvalidate { size, validate, .. } => {
                match self.rmp.pvalidate(ctx, gpa, pfn, size, validate) {
                    GuestOutcome::Npf(code) => Tried::Npf(code, leaf),
                    r => {
                        self.done_pvalidate(validate, size, r, pfn);
                        Tried::Done(Reply::Pvalidate(r))
                    }
                }
            }
            Request::Rmpadjust { size, op, .. } => match self.rmp.rmpadjust(ctx, gpa, pfn, size, op) {
                GuestOutcome::Npf(code) => Tried::Npf(code, leaf),
                r => Tried::Done(Reply::Rmpadjust(r)),
            },
            Request::Access { kind, private, version, .. } => {
                let access = GuestAccess { guest: ctx, gpa, pfn, npt_size, private, kind, user: false };
                match self.rmp.check_guest_access(&access) {
                    GuestOutcome::Npf(code) => Tried::Npf(code, leaf),
                    r => {
                        self.done_access(gpa, (kind, private, version), r, pfn, npt_size);
                        let read = snpsim_guest::Platform::read_version(self, gpa.gfn());
                        Tried::Done(Reply::Access { outcome: r, read })
                    }
                }
            }
            Request::PscMsr(_) | Request::PscGhcb(_) | Request::PvalidateRun { .. } => {
                unreachable!("not one instruction")
            }
        }
    }

    /// One tick of an NAE page-state change: open the window of the next range's first
    /// RMPUPDATE (or wait while another CPU's window covers the range), then convert the range.
    fn tick_psc(
        &mut self,
        vcpu: u32,
        exec: &mut Exec,
        mut buf: PscBuffer,
        started: bool,
        window: Option<Pfn>,
    ) -> Result<Option<Reply>, Stop> {
        let next = self.kvm.psc_next_range(&buf);
        if let Some(region) = window {
            self.close_window(region);
        }
        if let Some(range) = next {
            // The range's RMPUPDATEs meet any window another CPU holds over its GFNs: FAIL_INUSE,
            // retried on a later tick (checked again after this vCPU's own window closes).
            let end = range.gfn + (range.pages.saturating_sub(1));
            if self.blocked(vcpu, range.gfn) || self.blocked(vcpu, end) {
                self.kvm.stats.races.rmpupdate_fail_inuse += 1;
                exec.stage = Stage::Psc { buf, started, window: None };
                return Ok(None);
            }
            if window.is_none()
                && let Some(pfn) = self.kvm.conversion_pfn(&self.host, range.gfn)
            {
                let region = self.rmp.config().geometry.region_of(pfn);
                let opened = self.open_window(vcpu, range.gfn, region);
                if !opened {
                    self.kvm.stats.races.rmpupdate_fail_inuse += 1;
                }
                exec.stage = Stage::Psc { buf, started, window: opened.then_some(region) };
                return Ok(None);
            }
        }
        let exit = if started { None } else { self.record_psc_exit(&buf) };
        let one = |m: &mut Machine| m.kvm.handle_psc_ghcb_one(&mut m.host, &mut m.rmp, &mut buf, !started);
        // The exit opens KVM's handling; a later range of the same exit is KVM's work on the vCPU.
        // An in-place conversion to shared stops after its unmap ([`Stage::InPlace`]).
        self.kvm.set_split_in_place(true);
        let step = if started {
            self.traced_as(Some(vcpu), crate::events::Actor::Kvm, one)
        } else {
            self.traced(exit, one)
        };
        self.kvm.set_split_in_place(false);
        let pending = self.kvm.take_pending_in_place();
        let step = step.map_err(|e| self.stop(&e))?;
        if let Some(conversion) = pending {
            // The invalidation in progress: a window over the range's first frame, if it has one
            // (another CPU's window there is a conflict the range's own checks ruled out above).
            let first = self.kvm.conversion_pfn(&self.host, conversion.range.gfn);
            let window = first
                .map(|p| self.rmp.config().geometry.region_of(p))
                .filter(|&region| self.open_window(vcpu, conversion.range.gfn, region));
            exec.stage = Stage::InPlace { buf, conversion, info2: step, window };
            return Ok(None);
        }
        if let Some(info2) = step {
            return Ok(Some(Reply::PscGhcb { buf, info2 }));
        }
        exec.stage = Stage::Psc { buf, started: true, window: None };
        Ok(None)
    }
}
