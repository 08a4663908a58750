//! The event seam: a sink that is no trace sees every event the engine emits, in step brackets,
//! with every exit closed, and the run's final state to digest.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use snpsim_defs::{NpfErrorCode, PfErrorCode, Pfn, ReturnCode, RmpAdjustOperand, RmpArchEntry};
use snpsim_engine::events::{Actor, Counters, EventSink, ExitId, ExitResult, PscEntry, RunEnd};
use snpsim_engine::outcome::Ending;
use snpsim_engine::prelude::*;
use snpsim_host::HostWriteOutcome;
use snpsim_hw::{GuestOutcome, PvalidateStatus};

/// What the counting sink saw.
#[derive(Debug, Default)]
struct Seen {
    begun: u64,
    ended: u64,
    /// Events outside a step bracket.
    outside: u64,
    rmpupdates: u64,
    npfs: u64,
    exits_opened: u64,
    exits_closed: u64,
    psc_entries: u64,
    host_writes: u64,
    /// `finish`: the end time and the digest.
    finished: Option<(u64, String)>,
}

/// Counts events into a shared [`Seen`] (the engine owns the sink; the test keeps a handle).
#[derive(Clone, Debug, Default)]
struct Counting(Arc<Mutex<Seen>>);

impl Counting {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.0.lock().unwrap()
    }

    /// An event: counted as outside a step bracket if it is.
    fn event(&self) {
        drop(self.event_mut());
    }

    /// An event, and the counts to update.
    fn event_mut(&self) -> std::sync::MutexGuard<'_, Seen> {
        let mut s = self.seen();
        if s.begun == s.ended {
            s.outside += 1;
        }
        s
    }
}

impl EventSink for Counting {
    fn clone_box(&self) -> Box<dyn EventSink> {
        Box::new(self.clone())
    }
    fn take(&mut self) -> Vec<u8> {
        b"counted".to_vec()
    }
    fn begin_step(&mut self, _: &Action) {
        self.seen().begun += 1;
    }
    fn end_step(&mut self, _: &str, _: Option<&Ending>, _: &[String], _: u64) {
        self.seen().ended += 1;
    }
    fn finish(&mut self, end: &RunEnd<'_>) {
        let hash = end.state.state_hash(b"header", &BTreeSet::new());
        self.seen().finished = Some((end.sim_time_ns, hash));
    }
    fn enter(&mut self, _: Option<u32>, _: Actor) {}
    fn leave(&mut self) {}
    fn set_actor(&mut self, _: Option<u32>, _: Actor) {}
    fn rmpupdate(&mut self, _: Pfn, _: RmpArchEntry, _: ReturnCode) {
        self.event_mut().rmpupdates += 1;
    }
    fn psmash(&mut self, _: Pfn, _: ReturnCode) {
        self.event();
    }
    fn pvalidate(&mut self, _: Gpa, _: Pfn, _: RmpPageSize, _: bool, _: &GuestOutcome<PvalidateStatus>) {
        self.event();
    }
    fn rmpadjust(&mut self, _: Gpa, _: Pfn, _: RmpPageSize, _: RmpAdjustOperand, _: &GuestOutcome<()>) {
        self.event();
    }
    fn npf(&mut self, _: Gpa, _: NpfErrorCode, _: Option<PageSize>) -> ExitId {
        let mut s = self.event_mut();
        s.npfs += 1;
        s.exits_opened += 1;
        ExitId(0)
    }
    fn exit(&mut self, _: &'static str) -> ExitId {
        self.event_mut().exits_opened += 1;
        ExitId(0)
    }
    fn exit_result(&mut self, _: ExitId, _: ExitResult) {}
    fn close(&mut self, _: ExitId) {
        self.seen().exits_closed += 1;
    }
    fn psc_entry(&mut self, _: &PscEntry) {
        self.event_mut().psc_entries += 1;
    }
    fn access(&mut self, _: Gpa, _: AccessKind, _: bool, _: Pfn, _: PageSize, _: &GuestOutcome<()>) {
        self.event();
    }
    fn host_write(&mut self, _: Gpa, _: HostVia, _: Option<(Pfn, PageSize)>, _: HostWriteOutcome) {
        self.event_mut().host_writes += 1;
    }
    fn host_pf(&mut self, _: Gpa, _: Pfn, _: PageSize, _: PfErrorCode) {
        self.event();
    }
    fn host_collapse(&mut self, _: u64, _: u64) {
        self.event();
    }
    fn demotion_needed(&mut self, _: Gpa) {
        self.event();
    }
    fn derived(&mut self, _: &Counters, _: &Counters) {}
}

/// npt-demote on THP with a 4K-converting guest (the engine's own example): a page-state change,
/// a private write that takes an RMP|SIZEM #NPF, and a VMM write to the shared page beside it.
#[test]
fn a_sink_that_is_no_trace_sees_every_event() {
    let mut config =
        SimConfig::new(policy("npt-demote").unwrap(), MemoryBacking::Vma(VmaBacking::Thp), 4096, 16384);
    config.guest.granularity = Granularity::K4;
    let mut sim = Simulation::new(config).unwrap();
    let sink = Counting::default();
    sim.set_sink(Box::new(sink.clone()));
    assert!(sim.is_traced());
    let steps = [
        Action::Psc { vcpu: 0, gpa: Gpa(0x20_0000), pages: 1, private: true, granularity: None },
        Action::Access { vcpu: 0, gpa: Gpa(0x20_0000), kind: AccessKind::Write, private: true },
        Action::HostWrite { gpa: Gpa(0x20_1000), via: HostVia::Vmm },
    ];
    for a in &steps {
        sim.step(a);
    }
    let result = sim.finish();
    assert_eq!(result.trace.as_deref(), Some(&b"counted"[..]), "the run's output is the sink's");
    let seen = sink.seen();
    assert_eq!((seen.begun, seen.ended), (3, 3), "one bracket per step");
    assert_eq!(seen.outside, 0, "every event of a step arrives inside its bracket");
    // Every RMPUPDATE passes the machine's RMP wrapper, which reports it.
    assert_eq!(seen.rmpupdates, result.metrics.rmpupdate);
    assert_eq!(seen.npfs, result.metrics.exits["npf"]);
    assert_eq!(seen.exits_opened, seen.exits_closed, "every exit is closed when KVM returns");
    // One 4K page converted over the GHCB protocol (the guest's default): one PSC entry.
    assert_eq!(seen.psc_entries, 1);
    assert_eq!(seen.host_writes, 1);
    let (t, hash) = seen.finished.clone().expect("finish is called once the run ends");
    assert_eq!(t, result.metrics.sim_time_ns);
    assert_eq!(hash.len(), 32, "the digest is 128 bits in hex");
}

/// Without a sink the run is the same: the sink observes and never steers.
#[test]
fn a_sink_changes_nothing_about_the_run() {
    let run = |with_sink: bool| {
        let mut config =
            SimConfig::new(policy("npt-demote").unwrap(), MemoryBacking::Vma(VmaBacking::Thp), 4096, 16384);
        config.guest.granularity = Granularity::K4;
        let mut sim = Simulation::new(config).unwrap();
        if with_sink {
            sim.set_sink(Box::new(Counting::default()));
        }
        sim.step(&Action::Psc { vcpu: 0, gpa: Gpa(0x20_0000), pages: 1, private: true, granularity: None });
        sim.step(&Action::Access { vcpu: 0, gpa: Gpa(0x20_0000), kind: AccessKind::Write, private: true });
        let r = sim.finish();
        (r.outcome, serde_json::to_string(&r.metrics).unwrap(), r.trace.is_some())
    };
    let (plain, traced) = (run(false), run(true));
    assert_eq!((plain.0, &plain.1), (traced.0, &traced.1));
    assert!(!plain.2 && traced.2);
}
