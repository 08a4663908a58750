//! `snpsim bench`: the dense oracle on the same RMP instruction sequence as a benchmark's
//! simulation, in the same process (issue 20, item 4). A second, untimed run of the scenario
//! records every RMPUPDATE, PSMASH, PVALIDATE and RMPADJUST it issues through an event sink (a run
//! of 4K PVALIDATEs on consecutive pages with one result kept as one record); the records are then
//! executed one instruction at a time on [`DenseRmp`] (16 bytes per 4K page) and timed, and every
//! result is compared with the one the simulation got. A host larger than the oracle's cap is
//! replayed on its first frames only and the oracle's time scaled by the instructions replayed.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use snpsim_defs::{
    Gpa, NpfErrorCode, PageSize, PfErrorCode, Pfn, ReturnCode, RmpAdjustOperand, RmpArchEntry, RmpPageSize,
};
use snpsim_engine::engine::{ASID, Action, CheckMode, Simulation};
use snpsim_engine::events::{Actor, Counters, EventSink, ExitId, ExitResult, PscEntry, RunEnd};
use snpsim_engine::outcome::Ending;
use snpsim_host::{HostVia, HostWriteOutcome};
use snpsim_hw::reference::DenseRmp;
use snpsim_hw::{AccessKind, GuestContext, GuestOutcome, PvalidateStatus, RmpConfig, RmpModel};
use snpsim_scenario::Scenario;
use snpsim_scenario::run::{run_steps_and_workload, sim_config};

/// One recorded RMP instruction (or run of identical 4K PVALIDATEs on consecutive pages).
#[derive(Clone, Copy, Debug)]
enum Insn {
    Update(Pfn, RmpArchEntry, ReturnCode),
    Psmash(Pfn, ReturnCode),
    Pvalidate {
        gpa: Gpa,
        pfn: Pfn,
        size: RmpPageSize,
        validate: bool,
        r: GuestOutcome<PvalidateStatus>,
        count: u64,
    },
    Adjust(Gpa, Pfn, RmpPageSize, RmpAdjustOperand, GuestOutcome<()>),
}

/// The recording sink: the RMP instructions, every other event ignored.
#[derive(Clone, Debug, Default)]
pub struct Recording(Arc<Mutex<Vec<Insn>>>);

impl Recording {
    fn push(&self, insn: Insn) {
        let mut list = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let (
            Some(Insn::Pvalidate { gpa, pfn, size, validate, r, count }),
            Insn::Pvalidate { gpa: g2, pfn: p2, size: s2, validate: v2, r: r2, .. },
        ) = (list.last_mut(), insn)
            && *size == RmpPageSize::Size4K
            && s2 == RmpPageSize::Size4K
            && *validate == v2
            && *r == r2
            && g2.raw() == gpa.raw() + *count * 4096
            && p2.raw() == pfn.raw() + *count
        {
            *count += 1;
            return;
        }
        list.push(insn);
    }
}

impl EventSink for Recording {
    fn clone_box(&self) -> Box<dyn EventSink> {
        Box::new(self.clone())
    }
    fn take(&mut self) -> Vec<u8> {
        Vec::new()
    }
    fn begin_step(&mut self, _: &Action) {}
    fn end_step(&mut self, _: &str, _: Option<&Ending>, _: &[String], _: u64) {}
    fn finish(&mut self, _: &RunEnd<'_>) {}
    fn enter(&mut self, _: Option<u32>, _: Actor) {}
    fn leave(&mut self) {}
    fn set_actor(&mut self, _: Option<u32>, _: Actor) {}
    fn rmpupdate(&mut self, pfn: Pfn, new: RmpArchEntry, rc: ReturnCode) {
        self.push(Insn::Update(pfn, new, rc));
    }
    fn psmash(&mut self, pfn: Pfn, rc: ReturnCode) {
        self.push(Insn::Psmash(pfn, rc));
    }
    fn pvalidate(
        &mut self,
        gpa: Gpa,
        pfn: Pfn,
        size: RmpPageSize,
        validate: bool,
        r: &GuestOutcome<PvalidateStatus>,
    ) {
        self.push(Insn::Pvalidate { gpa, pfn, size, validate, r: *r, count: 1 });
    }
    fn rmpadjust(
        &mut self,
        gpa: Gpa,
        pfn: Pfn,
        size: RmpPageSize,
        op: RmpAdjustOperand,
        r: &GuestOutcome<()>,
    ) {
        self.push(Insn::Adjust(gpa, pfn, size, op, *r));
    }
    fn npf(&mut self, _: Gpa, _: NpfErrorCode, _: Option<PageSize>) -> ExitId {
        ExitId(0)
    }
    fn exit(&mut self, _: &'static str) -> ExitId {
        ExitId(0)
    }
    fn exit_result(&mut self, _: ExitId, _: ExitResult) {}
    fn close(&mut self, _: ExitId) {}
    fn psc_entry(&mut self, _: &PscEntry) {}
    fn access(&mut self, _: Gpa, _: AccessKind, _: bool, _: Pfn, _: PageSize, _: &GuestOutcome<()>) {}
    fn host_write(&mut self, _: Gpa, _: HostVia, _: Option<(Pfn, PageSize)>, _: HostWriteOutcome) {}
    fn host_pf(&mut self, _: Gpa, _: Pfn, _: PageSize, _: PfErrorCode) {}
    fn host_collapse(&mut self, _: u64, _: u64) {}
    fn demotion_needed(&mut self, _: Gpa) {}
    fn derived(&mut self, _: &Counters, _: &Counters) {}
}

/// What replaying a recorded sequence on the dense oracle took.
#[derive(Debug)]
pub struct Replay {
    /// RMP instructions the simulation executed (a run of PVALIDATEs counts each page).
    pub instructions: u64,
    /// Those replayed on the oracle (frames below its cap).
    pub replayed: u64,
    /// Seconds the oracle took for them.
    pub seconds: f64,
    /// CPU seconds the oracle took for them.
    pub cpu_seconds: f64,
    /// Instructions whose result on the oracle differed from the simulation's.
    pub mismatches: u64,
    /// The oracle's size, in 4K frames.
    pub frames: u64,
}

/// Run `s` once more, untimed, recording its RMP instruction sequence; then execute it on a dense
/// oracle of at most `cap` frames, timed.
pub fn replay_on_dense(s: &Scenario, check: CheckMode, cap: u64) -> anyhow::Result<Replay> {
    let rec = Recording::default();
    let mut sim = Simulation::new(sim_config(s, check))?;
    sim.set_costs(s.cost);
    sim.set_sink(Box::new(rec.clone()));
    let (result, _) = run_steps_and_workload(sim, s, None);
    anyhow::ensure!(result.outcome == snpsim_engine::Outcome::Completed, "the recorded run did not complete");
    let list = std::mem::take(&mut *rec.0.lock().unwrap_or_else(PoisonError::into_inner));
    let frames = cap.min(s.machine.host_memory / 4096);
    let mut dense = DenseRmp::new(RmpConfig::x86(frames));
    let guest = GuestContext { asid: ASID, vmpl: 0 };
    let (mut instructions, mut replayed, mut mismatches) = (0, 0, 0);
    let (start, cpu0) = (Instant::now(), crate::cputime::cpu_seconds());
    for insn in &list {
        match *insn {
            Insn::Update(pfn, new, rc) => {
                instructions += 1;
                if pfn.raw() < frames {
                    replayed += 1;
                    mismatches += u64::from(dense.rmpupdate(pfn, new) != rc);
                }
            }
            Insn::Psmash(pfn, rc) => {
                instructions += 1;
                if pfn.raw() < frames {
                    replayed += 1;
                    mismatches += u64::from(dense.psmash(pfn) != rc);
                }
            }
            Insn::Pvalidate { gpa, pfn, size, validate, r, count } => {
                instructions += count;
                for k in 0..count.min(frames.saturating_sub(pfn.raw())) {
                    replayed += 1;
                    let got = dense.pvalidate(guest, Gpa::new(gpa.raw() + k * 4096), pfn + k, size, validate);
                    mismatches += u64::from(got != r);
                }
            }
            Insn::Adjust(gpa, pfn, size, op, r) => {
                instructions += 1;
                if pfn.raw() < frames {
                    replayed += 1;
                    mismatches += u64::from(dense.rmpadjust(guest, gpa, pfn, size, op) != r);
                }
            }
        }
    }
    let (seconds, cpu_seconds) = (start.elapsed().as_secs_f64(), crate::cputime::cpu_seconds() - cpu0);
    Ok(Replay { instructions, replayed, seconds, cpu_seconds, mismatches, frames })
}
