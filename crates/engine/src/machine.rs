//! The machine a guest runs on: RMP, host and KVM wired together, resolving #NPFs the way the CPU
//! and KVM do, and checking every completed access independently of the hardware model.

use snpsim_defs::ghcb::{GhcbMsrPscRequest, GhcbMsrPscResponse, PscBuffer};
use snpsim_defs::{Gfn, Gpa, NpfErrorCode, PageSize, Pfn, RmpAdjustOperand, RmpPageSize};
use snpsim_guest::{Platform, Stop};
use snpsim_host::{Host, HostVia, HostWriteOutcome};
use snpsim_hw::rmp::Rmp;
use snpsim_hw::{AccessKind, GuestAccess, GuestContext, GuestOutcome, PvalidateStatus, RmpModel};
use snpsim_kvm::{Kvm, KvmError};
use snpsim_stores::PageMap;

use crate::digest::Digest128;
use crate::events::{Actor, Counters, ExitId, ExitResult, PscEntry, PscProtocol};
use crate::observed::Observed;
use crate::outcome::{Ending, Reason};

mod range;

/// How many #NPFs one guest instruction may take before the run is declared livelocked.
pub const MAX_FAULTS_PER_ACCESS: u32 = 64;

/// What the independent checker found (`docs/semantics.md` E2, E8).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Findings {
    /// Accesses that completed but should have faulted.
    pub false_negatives: u64,
    /// Invariant violations, each described.
    pub violations: Vec<String>,
}

/// An in-flight window some vCPU holds open: the 2M region of frames in flight and the 1G-aligned
/// GFN range of the pages it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    /// The vCPU that opened it.
    pub vcpu: u32,
    /// The first GFN of the 1G-aligned GFN range.
    pub gfn_1g: Gfn,
    /// The 2M region in flight.
    pub region: Pfn,
}

/// RMP, host and KVM of one VM.
#[derive(Clone, Debug)]
pub struct Machine {
    /// The RMP, observed for owner changes.
    pub rmp: Observed<Rmp>,
    /// The host.
    pub host: Host,
    /// KVM.
    pub kvm: Kvm,
    /// The guest's ASID.
    pub asid: u16,
    /// Contents of host pages (`docs/semantics.md` G4): frame → (version, 1 + the RMP sequence number when
    /// written); (0, 0) = never written. Stored per 2M region: untouched memory costs O(regions).
    contents: PageMap<(u64, u64)>,
    /// PVALIDATE(validate) successes per frame since its last RMPUPDATE: frame → (count, seq);
    /// (0, 0) = none. A 2M PVALIDATE of a region with one change stamp is one O(1) update.
    validations: PageMap<(u32, u64)>,
    /// Why the VM stopped, if it did.
    pub fatal: Option<Ending>,
    /// The checker's findings.
    pub findings: Findings,
    /// Completed guest accesses by the size of the NPT leaf they went through (`[4K, 2M, 1G]`),
    /// for the cost model.
    pub accesses: [u64; 3],
    /// Host writes to guest pages (completed or not), for the cost model.
    pub host_writes: u64,
    /// In-flight windows vCPUs hold open (interleaved runs).
    pub(crate) windows: Vec<Window>,
    /// Whether runs of 4K PVALIDATEs execute as range operations (`range.rs`); off, every page
    /// goes through the one-page path (the oracle).
    pub(crate) ranges: bool,
    /// Pages PVALIDATEd by runs (range operations), to show where they were used.
    pub(crate) range_pages: u64,
}

impl Machine {
    /// Bytes of memory the machine's state takes: RMP, host, NPT, memory attributes, page
    /// contents and validation counts (B-tree entries estimated). Traces and metrics are not state.
    pub fn state_bytes(&self) -> usize {
        self.rmp.state_bytes()
            + self.host.state_bytes()
            + self.kvm.npt.state_bytes()
            + self.kvm.attrs.state_bytes()
            + self.contents.state_bytes()
            + self.validations.state_bytes()
    }

    /// Wire up a machine.
    pub fn new(rmp: Rmp, host: Host, kvm: Kvm, asid: u16) -> Self {
        let region = rmp.config().geometry.pages_per_2m();
        Machine {
            rmp: Observed::new(rmp),
            host,
            kvm,
            asid,
            contents: PageMap::new_flat(region),
            validations: PageMap::new(region),
            fatal: None,
            findings: Findings::default(),
            accesses: [0; 3],
            host_writes: 0,
            windows: Vec::new(),
            ranges: false,
            range_pages: 0,
        }
    }

    /// Record that `pfn` now holds `version` (0 for a host write), written at the current RMP
    /// sequence number.
    fn store(&mut self, pfn: Pfn, version: u64) {
        self.contents.set(pfn.raw(), (version, self.rmp.seq() + 1));
    }

    pub(crate) fn ctx(&self) -> GuestContext {
        GuestContext { asid: self.asid, vmpl: 0 }
    }

    /// Record a KVM failure as the end of the VM.
    pub fn stop(&mut self, e: &KvmError) -> Stop {
        if self.fatal.is_none() {
            self.fatal = Some(Ending::of_kvm(e));
        }
        Stop
    }

    /// Run a guest instruction or access at `gpa` through the NPT: a missing leaf or an RMP
    /// violation exits to KVM (#NPF), which fixes things up, and the instruction is retried.
    fn through_npt<T>(
        &mut self,
        gpa: Gpa,
        private: bool,
        write: bool,
        mut exec: impl FnMut(&mut Observed<Rmp>, Pfn, PageSize) -> GuestOutcome<T>,
    ) -> Result<(GuestOutcome<T>, Pfn, PageSize), Stop> {
        let gfn = gpa.gfn();
        for _ in 0..MAX_FAULTS_PER_ACCESS {
            let leaf = self.kvm.npt.translate(gfn);
            let code = match leaf {
                None => NpfErrorCode::new().with_guest_final(true).with_enc(private).with_write(write),
                Some((pfn, size)) => match exec(&mut self.rmp, pfn, size) {
                    GuestOutcome::Npf(code) => code,
                    other => return Ok((other, pfn, size)),
                },
            };
            let exit = self.rmp.sink.as_mut().map(|r| r.npf(gpa, code, leaf.map(|(_, s)| s)));
            let handled = self.traced(exit, |m| m.kvm.handle_npf(&mut m.host, &mut m.rmp, gpa, code));
            if let Err(e) = handled {
                return Err(self.stop(&e));
            }
        }
        self.fatal.get_or_insert(livelock(gpa));
        Err(Stop)
    }

    /// [`Machine::traced`] for work that `actor` executes on `vcpu` without an exit of this step
    /// opening it (trace: every event's actor is the one who executed it).
    pub(crate) fn traced_as<R>(
        &mut self,
        vcpu: Option<u32>,
        actor: Actor,
        f: impl FnOnce(&mut Self) -> R,
    ) -> R {
        if let Some(rec) = &mut self.rmp.sink {
            rec.enter(vcpu, actor);
        }
        let r = self.traced(None, f);
        if let Some(rec) = &mut self.rmp.sink {
            rec.leave();
        }
        r
    }

    /// Run `f` (a KVM or host call); when tracing, record the effects its counters show (exits to
    /// the VMM, NPT demotions, host and direct-map splits, implicit conversions) and end the slice
    /// of the exit at `exit`, if any, after them. Without a trace it is just `f(self)`.
    pub(crate) fn traced<R>(&mut self, exit: Option<ExitId>, f: impl FnOnce(&mut Self) -> R) -> R {
        if self.rmp.sink.is_none() {
            return f(self);
        }
        let before = self.counters();
        let r = f(self);
        let after = self.counters();
        if let Some(rec) = &mut self.rmp.sink {
            rec.derived(&before, &after);
            if let Some(i) = exit {
                rec.close(i);
            }
        }
        r
    }

    /// The counters whose differences around a KVM or host call become derived events.
    pub fn counters(&self) -> Counters {
        let k = &self.kvm.stats;
        let h = &self.host.stats;
        let exits = |r: &str| k.exits.get(r).copied().unwrap_or(0);
        Counters {
            hypercall: exits(snpsim_kvm::stats::exit::HYPERCALL),
            memory_fault: exits(snpsim_kvm::stats::exit::MEMORY_FAULT),
            demotions: k.npt_demotions.clone(),
            demotions_needless: k.npt_demotions_needless,
            host_splits: h.host_splits,
            host_splits_needed: h.host_splits_needed,
            direct_map_splits: h.direct_map_splits,
            implicit_conversions: k.implicit_conversions,
        }
    }

    /// Feed the machine's own bookkeeping (content stamps and validation counts) to a state digest.
    pub(crate) fn digest_bookkeeping(&self, h: &mut Digest128) {
        h.bytes(b"contents");
        for (frame, (version, stamp)) in self.contents.iter() {
            h.u64(frame);
            h.u64(version);
            h.u64(stamp - 1);
        }
        h.bytes(b"validations");
        for (frame, (count, seq)) in self.validations.iter() {
            h.u64(frame);
            h.u64(u64::from(count));
            h.u64(seq);
        }
        h.piece("findings", format!("{:?}", self.findings).as_bytes());
        h.piece("fatal", format!("{:?}", self.fatal).as_bytes());
    }

    /// Invariants 3 and 5, checked without the hardware model: a completed private access needs an
    /// assigned, validated entry of this guest at this GPA, no larger than the leaf allows; a
    /// completed shared access or host write needs an unassigned target and, through a ≥ 2M
    /// mapping, a 2M part without assigned pages.
    fn check_completed(&mut self, what: &str, gpa: Option<Gpa>, pfn: Pfn, size: PageSize, private: bool) {
        let Ok(own) = self.rmp.rmpread(pfn) else { return };
        let region = self.rmp.config().geometry.region_of(pfn);
        let large = self.rmp.rmpread(region).is_ok_and(|e| e.page_size());
        let bad = if private {
            let gpa_ok = gpa.is_none_or(|g| own.gpa() == g.gfn().gpa());
            let npt_larger = size >= PageSize::Size2M && !large;
            let validated = self.rmp.raw_entry(pfn).is_some_and(|r| r.lo.validated());
            !own.assigned() || own.asid() != u32::from(self.asid) || !gpa_ok || npt_larger || !validated
        } else {
            own.assigned() || (size >= PageSize::Size2M && self.rmp.region_has_assigned(pfn))
        };
        if bad {
            self.findings.false_negatives += 1;
            self.findings.violations.push(format!(
                "false negative: {what} to frame {pfn} through a {} mapping completed",
                size.name()
            ));
        }
    }

    /// Count a successful validation of `pages` frames from `pfn`; two since the frame's last
    /// RMPUPDATE break invariant 6.
    fn note_validation(&mut self, pfn: Pfn, pages: u64) {
        let bump = |(count, seq): (u32, u64), last: u64| {
            if seq == last && count > 0 { (count + 1, last) } else { (1, last) }
        };
        let region = self.rmp.config().geometry.pages_per_2m();
        // A whole region whose pages share one change stamp and one count: one update.
        if pages == region
            && pfn.raw().is_multiple_of(region)
            && let (Some(last), Some(current)) =
                (self.rmp.region_change(pfn), self.validations.uniform(pfn.raw()))
        {
            let next = bump(current, last);
            self.validations.set_range(pfn.raw(), pages, next);
            if next.0 == 2 {
                for p in pfn.raw()..pfn.raw() + pages {
                    self.double_validation(p);
                }
            }
            return;
        }
        for p in pfn.raw()..pfn.raw() + pages {
            let next = bump(self.validations.get(p), self.rmp.last_change(Pfn::new(p)));
            self.validations.set(p, next);
            if next.0 == 2 {
                self.double_validation(p);
            }
        }
    }

    fn double_validation(&mut self, frame: u64) {
        self.findings
            .violations
            .push(format!("invariant 6: frame {frame:#x} validated twice since it was assigned"));
    }

    /// Per frame, the validations since its last RMPUPDATE (frames with none omitted): the part of
    /// invariant 6's bookkeeping that matters for the future, without sequence numbers.
    pub fn validation_counts(&self) -> Vec<(u64, u32)> {
        self.validations
            .iter()
            .filter(|&(p, (n, seq))| n > 0 && seq == self.rmp.last_change(Pfn::new(p)))
            .map(|(p, (n, _))| (p, n))
            .collect()
    }

    /// When tracing, record an NAE PSC VMGEXIT: the entries it carries from `cur_entry` on, then
    /// the exit (whose slice index is returned).
    pub(crate) fn record_psc_exit(&mut self, buf: &PscBuffer) -> Option<ExitId> {
        self.rmp.sink.as_mut().map(|r| {
            let (cur, end) = (usize::from(buf.header.cur_entry()), usize::from(buf.header.end_entry()));
            for (i, e) in buf.entries.iter().enumerate().take(end.saturating_add(1)).skip(cur) {
                r.psc_entry(&PscEntry {
                    protocol: PscProtocol::Ghcb,
                    entry: Some(i),
                    gpa: e.gfn().gpa(),
                    op: e.op(),
                    size_2m: e.page_size(),
                    cur_page: e.cur_page(),
                });
            }
            r.exit(snpsim_kvm::stats::exit::VMGEXIT_PSC)
        })
    }

    /// The machine's side of a retired PVALIDATE: count a validation (invariant 6).
    pub(crate) fn done_pvalidate(
        &mut self,
        validate: bool,
        size: RmpPageSize,
        r: GuestOutcome<PvalidateStatus>,
        pfn: Pfn,
    ) {
        if validate && r == GuestOutcome::Done(PvalidateStatus::Changed) {
            let pages = self.rmp.config().geometry.pages(size.page_size());
            self.note_validation(pfn, pages);
        }
    }

    /// The machine's side of a finished access: trace it, count it for the cost model, check it
    /// independently (invariants 3 and 5), and store a write's version (`docs/semantics.md` G4).
    pub(crate) fn done_access(
        &mut self,
        gpa: Gpa,
        (kind, private, version): (AccessKind, bool, u64),
        r: GuestOutcome<()>,
        pfn: Pfn,
        size: PageSize,
    ) {
        if let Some(rec) = &mut self.rmp.sink {
            rec.access(gpa, kind, private, pfn, size, &r);
        }
        if r.is_done() {
            self.accesses[usize::from(size.level() - 1)] += 1;
            self.check_completed("guest access", Some(gpa), pfn, size, private);
            let access =
                GuestAccess { guest: self.ctx(), gpa, pfn, npt_size: size, private, kind, user: false };
            let needless = self.kvm.stats.npt_demotions_needless;
            self.kvm.note_guest_access(&self.rmp, &access);
            if self.kvm.stats.npt_demotions_needless < needless
                && let Some(rec) = &mut self.rmp.sink
            {
                rec.demotion_needed(gpa);
            }
            if kind == AccessKind::Write {
                self.store(pfn, version);
            }
        }
    }

    /// The frame a host access to `gfn` by `via` goes through and its mapping size: the direct
    /// map for the kernel, else the VMA — or, with an in-place guest_memfd, the file's mapping
    /// (4K: shared pages are mapped at 4K).
    fn host_target(&self, gfn: Gfn, via: HostVia) -> Option<(Pfn, PageSize)> {
        if via == HostVia::Kernel {
            self.kvm.bound_pfn(&self.host, gfn).map(|p| (p, self.host.direct_map.level(p)))
        } else if self.host.gmem_hugetlb.is_some() {
            self.host.gmem_frame(gfn.raw()).map(|(p, _)| (p, PageSize::Size4K))
        } else {
            self.host.vma.translate(gfn.raw())
        }
    }

    /// A host read of the guest page `gpa` (the `host_read` step): never RMP-checked, so it
    /// completes — except through an in-place guest_memfd's mapping, where a private page is
    /// SIGBUS for the VMM and -EFAULT for a uaccess (`docs/semantics.md` S9), counted and named
    /// like a write's.
    pub fn host_read(&mut self, gpa: Gpa, via: HostVia) -> HostWriteOutcome {
        if via == HostVia::Kernel {
            return HostWriteOutcome::Done;
        }
        let Some(file) = self.host.gmem_hugetlb.as_mut() else { return HostWriteOutcome::Done };
        match file.fault_user(&mut self.host.memory, gpa.gfn().raw(), via) {
            Ok(_) => HostWriteOutcome::Done,
            Err(_) if via == HostVia::Vmm => {
                self.host.stats.sigbus += 1;
                HostWriteOutcome::Sigbus
            }
            Err(_) => {
                self.host.stats.efault += 1;
                HostWriteOutcome::Efault
            }
        }
    }

    /// The `host_pin` / `host_unpin` step: take or drop an extra reference on the in-place
    /// guest_memfd's page at `gpa` (`snpsim_host::GmemHugetlb::get_ref`); an error without an
    /// in-place file.
    pub fn host_pin(&mut self, gpa: Gpa, pin: bool) -> Result<(), snpsim_host::HostError> {
        let offset = gpa.gfn().raw();
        let file = self.host.gmem_hugetlb.as_mut().ok_or(snpsim_host::HostError::OutsideGmem { offset })?;
        if pin { file.get_ref(offset) } else { file.put_ref(offset) }
    }

    /// A host write to the guest page `gpa` (the `host_write` step, `docs/semantics.md` S5).
    pub fn host_write(&mut self, gpa: Gpa, via: HostVia) -> HostWriteOutcome {
        self.host_writes += 1;
        if self.rmp.sink.is_some() {
            // The host #PF the write takes first, if any (the handler may split and retry).
            let target = self.host_target(gpa.gfn(), via);
            // Through an in-place guest_memfd's mapping a private page faults in the file's
            // handler (SIGBUS), before any RMP check: no host #PF to record.
            let file_private = via != HostVia::Kernel
                && self.host.gmem_hugetlb.as_ref().is_some_and(|f| !f.is_shared(gpa.gfn().raw()));
            if let Some((pfn, mapping)) = target
                && !file_private
                && let Err(code) = self.rmp.check_host_write(pfn, mapping, via == HostVia::Vmm)
                && let Some(rec) = &mut self.rmp.sink
            {
                rec.host_pf(gpa, pfn, mapping, code);
            }
        }
        let r = self.traced(None, |m| m.host_write_untraced(gpa, via));
        if self.rmp.sink.is_some() {
            let target = self.host_target(gpa.gfn(), via);
            if let Some(rec) = &mut self.rmp.sink {
                rec.host_write(gpa, via, target, r);
            }
        }
        r
    }

    fn host_write_untraced(&mut self, gpa: Gpa, via: HostVia) -> HostWriteOutcome {
        let gfn = gpa.gfn();
        if via == HostVia::Kernel {
            let Some(pfn) = self.kvm.bound_pfn(&self.host, gfn) else { return HostWriteOutcome::Done };
            let level = self.host.direct_map.level(pfn);
            let shared = self.rmp.rmpread(pfn).is_ok_and(|e| !e.assigned());
            let r = self.host.write_via_direct_map(&self.rmp, pfn);
            if r == HostWriteOutcome::KernelOops && shared {
                // 9. Linux splits the direct map to 4K around a page before a 4K RMPUPDATE makes
                // it private (`adjust_direct_map`, called from `rmpupdate`), so a kernel write to a
                // shared page never meets an assigned page through a large direct-map mapping.
                self.findings.violations.push(format!(
                    "invariant 9: a kernel write to shared frame {pfn} took an RMP #PF through its {} direct-map mapping",
                    level.name()
                ));
            }
            if r == HostWriteOutcome::Done {
                self.check_completed("kernel write", None, pfn, level, false);
                self.store(pfn, 0);
            }
            return r;
        }
        if self.host.gmem_hugetlb.is_some() {
            // In-place guest_memfd: the file's mapping (SIGBUS on a private page, no RMP #PF).
            let r = self.host.write_via_gmem(&self.rmp, gfn.raw(), via);
            if r == HostWriteOutcome::Done
                && let Some((pfn, _)) = self.host.gmem_frame(gfn.raw())
            {
                self.check_completed("host write", None, pfn, PageSize::Size4K, false);
                self.store(pfn, 0);
            }
            return r;
        }
        let (r, invalidated) = self.host.write_via_vma(&self.rmp, gfn.raw(), via);
        for inv in invalidated {
            self.kvm.mmu_invalidate(inv);
        }
        if r == HostWriteOutcome::Hang && self.fatal.is_none() {
            let mapping = self.host.vma.translate(gfn.raw());
            let frame = mapping.map_or_else(|| String::from("?"), |(p, _)| p.to_string());
            let who = if via == HostVia::Vmm { "the VMM" } else { "a get/put_user (vhost)" };
            self.fatal = Some(Ending::new(
                Reason::HostFaultLoop,
                format!(
                    "host write by {who} to GPA {gpa} (frame {frame}) re-faults forever: its {} mapping \
                     holds an assigned page, and hugetlb_fault ignores FAULT_FLAG_PAGE_SPLIT (RFC v4 10/40)",
                    self.host.vma.backing().name()
                ),
            ));
        }
        if r == HostWriteOutcome::Done
            && let Some((pfn, level)) = self.host.vma.translate(gfn.raw())
        {
            self.check_completed("host write", None, pfn, level, false);
            self.store(pfn, 0);
        }
        r
    }
}

impl Platform for Machine {
    fn psc_msr(&mut self, _vcpu: u32, req: GhcbMsrPscRequest) -> Result<GhcbMsrPscResponse, Stop> {
        let exit = self.rmp.sink.as_mut().map(|r| {
            r.psc_entry(&PscEntry {
                protocol: PscProtocol::Msr,
                entry: None,
                gpa: req.gfn().gpa(),
                op: req.op(),
                size_2m: false,
                cur_page: 0,
            });
            r.exit(snpsim_kvm::stats::exit::VMGEXIT_PSC_MSR)
        });
        let resp = self.traced(exit, |m| m.kvm.handle_psc_msr(&mut m.host, &mut m.rmp, req));
        if let (Some(rec), Some(i), Ok(resp)) = (&mut self.rmp.sink, exit, &resp) {
            rec.exit_result(i, ExitResult::PscMsr { error: resp.error() });
        }
        resp.map_err(|e| self.stop(&e))
    }

    fn psc_ghcb(&mut self, _vcpu: u32, buf: &mut PscBuffer) -> Result<u64, Stop> {
        let exit = self.record_psc_exit(buf);
        let info2 = self.traced(exit, |m| m.kvm.handle_psc_ghcb(&mut m.host, &mut m.rmp, buf));
        if let (Some(rec), Some(i), Ok(info2)) = (&mut self.rmp.sink, exit, &info2) {
            rec.exit_result(i, ExitResult::PscGhcb { info2: *info2, cur_entry: buf.header.cur_entry() });
        }
        info2.map_err(|e| self.stop(&e))
    }

    fn pvalidate(
        &mut self,
        _vcpu: u32,
        gpa: Gpa,
        size: RmpPageSize,
        validate: bool,
    ) -> Result<GuestOutcome<PvalidateStatus>, Stop> {
        let ctx = self.ctx();
        let (r, pfn, _) =
            self.through_npt(gpa, true, false, |rmp, pfn, _| rmp.pvalidate(ctx, gpa, pfn, size, validate))?;
        self.done_pvalidate(validate, size, r, pfn);
        Ok(r)
    }

    fn runs(&self) -> bool {
        self.runs_now()
    }

    fn pvalidate_run(&mut self, _vcpu: u32, gpa: Gpa, pages: u64, validate: bool) -> Result<u64, Stop> {
        Ok(Machine::pvalidate_run(self, gpa, pages, validate))
    }

    fn rmpadjust(
        &mut self,
        _vcpu: u32,
        gpa: Gpa,
        size: RmpPageSize,
        op: RmpAdjustOperand,
    ) -> Result<GuestOutcome<()>, Stop> {
        let ctx = self.ctx();
        Ok(self.through_npt(gpa, true, false, |rmp, pfn, _| rmp.rmpadjust(ctx, gpa, pfn, size, op))?.0)
    }

    fn access(
        &mut self,
        _vcpu: u32,
        gpa: Gpa,
        kind: AccessKind,
        private: bool,
        version: u64,
    ) -> Result<GuestOutcome<()>, Stop> {
        let guest = self.ctx();
        let write = kind == AccessKind::Write;
        let (r, pfn, size) = self.through_npt(gpa, private, write, |rmp, pfn, npt_size| {
            rmp.check_guest_access(&GuestAccess { guest, gpa, pfn, npt_size, private, kind, user: false })
        })?;
        self.done_access(gpa, (kind, private, version), r, pfn, size);
        Ok(r)
    }

    fn read_version(&self, gfn: Gfn) -> Option<u64> {
        let pfn =
            self.kvm.npt.translate(gfn).map(|(p, _)| p).or_else(|| self.kvm.bound_pfn(&self.host, gfn))?;
        let (version, stamp) = self.contents.get(pfn.raw());
        (stamp > 0 && self.rmp.last_change(pfn) < stamp).then_some(version)
    }
}

/// The ending of a guest instruction at `gpa` that still faults after [`MAX_FAULTS_PER_ACCESS`]
/// #NPFs KVM handled.
pub(crate) fn livelock(gpa: Gpa) -> Ending {
    Ending::new(
        Reason::Livelock,
        format!("GPA {gpa}: still faulting after {MAX_FAULTS_PER_ACCESS} #NPFs (livelock)"),
    )
}
