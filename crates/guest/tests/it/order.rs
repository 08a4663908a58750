//! The order of a guest's platform requests during a page-state change: per request (Linux since
//! upstream 15d9088779b8: `__page_state_change` page by page over MSR, `__set_pages_state` batch
//! by batch over the GHCB), over the whole range (the 2021 series), and the 2021 guest's MSR
//! change before its GHCB is registered. A recording platform that completes everything stands
//! in for the machine.

use snpsim_defs::ghcb::{GHCB_MSR_PSC_RESP, GhcbMsrPscRequest, GhcbMsrPscResponse, PscBuffer, PscOp};
use snpsim_defs::{Gfn, Gpa, RmpAdjustOperand, RmpPageSize};
use snpsim_guest::{
    Granularity, Guest, GuestConfig, GuestTask, Platform, Protocol, PscOrder, Reply, Request, Stop, TaskStep,
};
use snpsim_hw::{AccessKind, Geometry, GuestOutcome, PvalidateStatus};

/// A request as the tests compare it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ev {
    /// MSR PSC of one page.
    Msr { gfn: u64, private: bool },
    /// One NAE PSC exit: its first entry's GFN and its entry count.
    Nae { first: u64, entries: usize },
    /// PVALIDATE.
    Pv { gfn: u64, huge: bool, validate: bool },
}

/// Completes every request; an NAE exit processes at most `per_exit` entries (the hypervisor
/// may return early, `vmgexit_psc` re-issues).
struct Recorder {
    events: Vec<Ev>,
    per_exit: u16,
}

impl Recorder {
    fn new() -> Self {
        Recorder { events: Vec::new(), per_exit: u16::MAX }
    }
}

impl Platform for Recorder {
    fn psc_msr(&mut self, _vcpu: u32, req: GhcbMsrPscRequest) -> Result<GhcbMsrPscResponse, Stop> {
        let private = req.op() == PscOp::Private.raw();
        self.events.push(Ev::Msr { gfn: req.gfn(), private });
        Ok(GhcbMsrPscResponse::new().with_info(GHCB_MSR_PSC_RESP))
    }

    fn psc_ghcb(&mut self, _vcpu: u32, buf: &mut PscBuffer) -> Result<u64, Stop> {
        let h = buf.header;
        let first = buf.entries[usize::from(h.cur_entry())].gfn();
        let left = h.end_entry() + 1 - h.cur_entry();
        self.events.push(Ev::Nae { first, entries: usize::from(left) });
        buf.header = h.with_cur_entry(h.cur_entry() + left.min(self.per_exit));
        Ok(0)
    }

    fn pvalidate(
        &mut self,
        _vcpu: u32,
        gpa: Gpa,
        size: RmpPageSize,
        validate: bool,
    ) -> Result<GuestOutcome<PvalidateStatus>, Stop> {
        let huge = size == RmpPageSize::Size2M;
        self.events.push(Ev::Pv { gfn: gpa.gfn().raw(), huge, validate });
        Ok(GuestOutcome::Done(PvalidateStatus::Changed))
    }

    fn rmpadjust(
        &mut self,
        _vcpu: u32,
        _gpa: Gpa,
        _size: RmpPageSize,
        _op: RmpAdjustOperand,
    ) -> Result<GuestOutcome<()>, Stop> {
        Ok(GuestOutcome::Done(()))
    }

    fn access(
        &mut self,
        _vcpu: u32,
        _gpa: Gpa,
        _kind: AccessKind,
        _private: bool,
        _version: u64,
    ) -> Result<GuestOutcome<()>, Stop> {
        Ok(GuestOutcome::Done(()))
    }

    fn read_version(&self, _gfn: Gfn) -> Option<u64> {
        None
    }
}

/// A current Linux guest: 2M granularity, 64-entry NAE requests, per-request order.
const LINUX: GuestConfig = GuestConfig {
    granularity: Granularity::M2,
    protocol: Protocol::Ghcb,
    ghcb_entries: 64,
    validation_tracking: true,
    order: PscOrder::PerRequest,
    msr_until_ghcb: false,
};

/// 2 MiB in 4K pages on x86.
const PER_2M: u64 = 512;

fn guest(config: GuestConfig) -> Guest {
    Guest::new(config, Geometry::X86, 4 * PER_2M)
}

/// The requests of one conversion.
fn record(g: &mut Guest, start: u64, pages: u64, private: bool, gran: Option<Granularity>) -> Vec<Ev> {
    let mut p = Recorder::new();
    g.psc(&mut p, 0, Gfn(start), pages, private, gran).expect("the recorder completes everything");
    p.events
}

fn pv(gfn: u64, validate: bool) -> Ev {
    Ev::Pv { gfn, huge: false, validate }
}

#[test]
fn nae_to_private_sends_then_validates_each_batch_of_64() {
    // 150 4K pages from GFN 0: batches of 64, 64 and 150 - 128 = 22 entries, each sent in one
    // exit and validated page by page before the next batch is sent.
    let mut g = guest(LINUX);
    let got = record(&mut g, 0, 150, true, Some(Granularity::K4));
    let mut want = Vec::new();
    for (first, n) in [(0, 64), (64, 64), (128, 22)] {
        want.push(Ev::Nae { first, entries: n as usize });
        want.extend((first..first + n).map(|p| pv(p, true)));
    }
    assert_eq!(got, want);
    // One PVALIDATE per page: 150.
    assert_eq!(g.stats.pvalidate, 150);
}

#[test]
fn nae_to_shared_rescinds_then_sends_each_batch() {
    // Validate the 150 pages first, then share them: per batch (64, 64, 22), rescind its pages,
    // then send its change.
    let mut g = guest(LINUX);
    record(&mut g, 0, 150, true, Some(Granularity::K4));
    let got = record(&mut g, 0, 150, false, Some(Granularity::K4));
    let mut want = Vec::new();
    for (first, n) in [(0u64, 64u64), (64, 64), (128, 22)] {
        want.extend((first..first + n).map(|p| pv(p, false)));
        want.push(Ev::Nae { first, entries: n as usize });
    }
    assert_eq!(got, want);
    assert_eq!(g.validated_pages(), 0);
}

#[test]
fn nae_batches_count_2m_entries() {
    // Three aligned 2M regions plus two pages with 2M granularity and 2-entry requests: chunks
    // 2M, 2M, 2M, 4K, 4K cut into batches (2M, 2M), (2M, 4K), (4K); each batch is validated at
    // its entries' sizes before the next is sent.
    let mut g = Guest::new(GuestConfig { ghcb_entries: 2, ..LINUX }, Geometry::X86, 4 * PER_2M);
    let got = record(&mut g, 0, 3 * PER_2M + 2, true, None);
    let huge = |gfn| Ev::Pv { gfn, huge: true, validate: true };
    let want = vec![
        Ev::Nae { first: 0, entries: 2 },
        huge(0),
        huge(PER_2M),
        Ev::Nae { first: 2 * PER_2M, entries: 2 },
        huge(2 * PER_2M),
        pv(3 * PER_2M, true),
        Ev::Nae { first: 3 * PER_2M + 1, entries: 1 },
        pv(3 * PER_2M + 1, true),
    ];
    assert_eq!(got, want);
}

#[test]
fn a_batch_the_hypervisor_returns_early_is_finished_before_it_is_validated() {
    // 70 pages, 64-entry batches; the hypervisor processes 30 entries per exit. Batch 1 (64
    // entries) takes exits with 64, 34 and 4 entries left (30 + 30 + 4); only then is it
    // validated; batch 2 (6 entries) takes one exit.
    let mut g = guest(LINUX);
    let mut p = Recorder { events: Vec::new(), per_exit: 30 };
    g.psc(&mut p, 0, Gfn(0), 70, true, Some(Granularity::K4)).expect("completes");
    let mut want = vec![
        Ev::Nae { first: 0, entries: 64 },
        Ev::Nae { first: 30, entries: 34 },
        Ev::Nae { first: 60, entries: 4 },
    ];
    want.extend((0..64).map(|p| pv(p, true)));
    want.push(Ev::Nae { first: 64, entries: 6 });
    want.extend((64..70).map(|p| pv(p, true)));
    assert_eq!(p.events, want);
}

#[test]
fn msr_alternates_psc_and_pvalidate_page_by_page_at_4k() {
    // Over MSR, `__page_state_change` handles one 4K page at a time: to private, PSC then
    // PVALIDATE; to shared, rescind then PSC. The 2M granularity does not apply (the MSR
    // protocol has no size, and the MSR path validates at 4K): a 2M-aligned 2M range is 512
    // alternations, not 512 PSCs and one 2M PVALIDATE.
    let mut g = guest(LINUX_MSR);
    let got = record(&mut g, 0, PER_2M, true, None);
    let want: Vec<Ev> = (0..PER_2M).flat_map(|p| [Ev::Msr { gfn: p, private: true }, pv(p, true)]).collect();
    assert_eq!(got, want);
    let got = record(&mut g, 0, 3, false, None);
    let want: Vec<Ev> = (0..3).flat_map(|p| [pv(p, false), Ev::Msr { gfn: p, private: false }]).collect();
    assert_eq!(got, want);
    // 512 validations and 3 rescissions.
    assert_eq!(g.stats.pvalidate, PER_2M + 3);
}

const LINUX_MSR: GuestConfig = GuestConfig { protocol: Protocol::Msr, ..LINUX };

/// The 2021 guest: 4K entries, 253 per NAE request, whole-range order, MSR before the GHCB.
const LINUX_2021: GuestConfig = GuestConfig {
    granularity: Granularity::K4,
    protocol: Protocol::Ghcb,
    ghcb_entries: 253,
    validation_tracking: true,
    order: PscOrder::WholeRange,
    msr_until_ghcb: true,
};

#[test]
fn the_2021_guest_uses_msr_before_its_ghcb_then_253_entry_requests_over_the_whole_range() {
    let mut g = guest(LINUX_2021);
    assert_eq!(g.psc_protocol(), Protocol::Msr);
    // The first change (3 pages, before the GHCB is registered): all MSR PSCs, then all
    // PVALIDATEs (`early_set_pages_state`, then `pvalidate_pages`).
    let got = record(&mut g, 0, 3, true, None);
    let mut want: Vec<Ev> = (0..3).map(|p| Ev::Msr { gfn: p, private: true }).collect();
    want.extend((0..3).map(|p| pv(p, true)));
    assert_eq!(got, want);
    assert_eq!(g.psc_protocol(), Protocol::Ghcb);
    // The next, 600 pages from GFN 3: NAE requests of 253, 253 and 600 - 506 = 94 entries,
    // then 600 PVALIDATEs (`set_pages_state`, then `pvalidate_pages` over the range).
    let got = record(&mut g, 3, 600, true, None);
    let mut want = vec![
        Ev::Nae { first: 3, entries: 253 },
        Ev::Nae { first: 256, entries: 253 },
        Ev::Nae { first: 509, entries: 94 },
    ];
    want.extend((3..603).map(|p| pv(p, true)));
    assert_eq!(got, want);
    // To shared: the whole range's rescissions, then its requests.
    let got = record(&mut g, 0, 300, false, None);
    let mut want: Vec<Ev> = (0..300).map(|p| pv(p, false)).collect();
    want.extend([Ev::Nae { first: 0, entries: 253 }, Ev::Nae { first: 253, entries: 47 }]);
    assert_eq!(got, want);
}

#[test]
fn msr_until_ghcb_does_not_change_an_msr_guest() {
    // A guest configured for MSR keeps using it after its first change.
    let mut g = guest(GuestConfig { protocol: Protocol::Msr, ..LINUX_2021 });
    record(&mut g, 0, 1, true, None);
    assert_eq!(g.psc_protocol(), Protocol::Msr);
    assert_eq!(record(&mut g, 1, 1, true, None), vec![Ev::Msr { gfn: 1, private: true }, pv(1, true)]);
}

/// The request a step issues, as an [`Ev`].
fn ev(req: &Request) -> Ev {
    match req {
        Request::PscMsr(r) => Ev::Msr { gfn: r.gfn(), private: r.op() == PscOp::Private.raw() },
        Request::PscGhcb(b) => Ev::Nae {
            first: b.entries[usize::from(b.header.cur_entry())].gfn(),
            entries: usize::from(b.header.end_entry() + 1 - b.header.cur_entry()),
        },
        Request::Pvalidate { gpa, size, validate } => {
            Ev::Pv { gfn: gpa.gfn().raw(), huge: *size == RmpPageSize::Size2M, validate: *validate }
        }
        other => panic!("unexpected request {other:?}"),
    }
}

#[test]
fn two_batched_tasks_interleave_request_by_request() {
    // Two vCPUs convert disjoint ranges (100 pages each, 64-entry batches) and take turns, one
    // request each: every resume yields exactly one request, and each task's own sequence is
    // the one it has alone.
    let solo = |start: u64| {
        let mut g = guest(LINUX);
        record(&mut g, start, 100, true, Some(Granularity::K4))
    };
    let (alone_a, alone_b) = (solo(0), solo(PER_2M));
    let mut g = guest(LINUX);
    let mut tasks = [
        GuestTask::psc(&mut g, Gfn(0), 100, true, Some(Granularity::K4)),
        GuestTask::psc(&mut g, Gfn(PER_2M), 100, true, Some(Granularity::K4)),
    ];
    let mut p = Recorder::new();
    let (mut seen, mut replies): ([Vec<Ev>; 2], [Option<Reply>; 2]) = Default::default();
    let mut done = [false; 2];
    while !done.iter().all(|&d| d) {
        for v in 0..2 {
            if done[v] {
                continue;
            }
            match tasks[v].resume(&mut g, replies[v].take()).expect("completes") {
                TaskStep::Issue(req) => {
                    seen[v].push(ev(&req));
                    let vcpu = v as u32;
                    replies[v] = Some((&mut p as &mut dyn Platform).serve(vcpu, req).expect("completes"));
                }
                TaskStep::Done(_) => done[v] = true,
            }
        }
    }
    assert_eq!(seen[0], alone_a);
    assert_eq!(seen[1], alone_b);
    // Each: two requests (64 + 36 entries) and 100 PVALIDATEs.
    assert_eq!(alone_a.len(), 102);
    // The platform saw them alternate: A's first request, then B's.
    assert_eq!(p.events[..2], [alone_a[0], alone_b[0]]);
}
