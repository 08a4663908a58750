//! The embedded debate suite with full invariant checking: every verdict is supported, and the
//! numbers the verdicts rest on are pinned so that a change of the model is noticed.

use snpsim_debate::debate::{
    CLAIM_SCENARIOS, Debate, matrix, matrix_scenario, matrix_source, run_debate_with, workload_matrix,
    workload_scenario,
};
use snpsim_debate::{Status, Verdict};
use snpsim_engine::engine::CheckMode;
use snpsim_engine::outcome::Reason;
use snpsim_scenario::run::{ScenarioRun, metric_value, run_scenario};
use snpsim_scenario::{Backing, Granularity, Policy, Preset, parse_scenario};

/// The matrix row with the policy's own `npt_level_follows_rmp` default (false for the policies
/// that model a description, true for rfc-v4 and gmem).
fn row<'a>(d: &'a Debate, policy: &str, backing: &str, gran: &str) -> &'a ScenarioRun {
    let follows = matches!(policy, "rfc-v4" | "gmem");
    row_at(d, policy, backing, gran, follows)
}

fn row_at<'a>(d: &'a Debate, policy: &str, backing: &str, gran: &str, follows: bool) -> &'a ScenarioRun {
    d.matrix
        .iter()
        .find(|r| {
            r.policy == policy
                && r.backing == backing
                && r.granularity == gran
                && r.npt_level_follows_rmp == follows
        })
        .unwrap_or_else(|| panic!("no matrix row {policy}/{backing}/{gran}/follows={follows}"))
}

fn claim<'a>(d: &'a Debate, file_part: &str) -> &'a ScenarioRun {
    let i = CLAIM_SCENARIOS.iter().position(|(f, _)| f.contains(file_part)).unwrap();
    &d.claims[i]
}

fn metric(r: &ScenarioRun, key: &str) -> f64 {
    metric_value(&r.result.metrics, key).unwrap_or_else(|| panic!("{key} not reported"))
}

/// Assert exact metric values of one run (all small integers, exact in an `f64`).
fn pin(r: &ScenarioRun, expected: &[(&str, u32)]) {
    for &(key, n) in expected {
        assert_eq!(
            metric(r, key).to_bits(),
            f64::from(n).to_bits(),
            "{} [{}/{}/{}]: {key} = {}, pinned {n}",
            r.name,
            r.policy,
            r.backing,
            r.granularity,
            metric(r, key)
        );
    }
}

#[test]
fn the_debate_suite_supports_every_claim_and_keeps_its_numbers() {
    // The scripted runs with the whole-state check; the 53 generated workloads (tens of thousands
    // of steps each) incrementally: a whole-state check after every step takes minutes per
    // workload, and crates/check/tests/it/incremental.rs shows both checks find the same invariants.
    let d = run_debate_with(CheckMode::Full, CheckMode::Incremental).unwrap();
    let verdicts = d.verdicts();
    // One verdict per claim `Debate::verdicts` lists.
    assert_eq!(verdicts.len(), 14);
    for v in &verdicts {
        assert!(v.supported(), "{}: {}\n  {}", v.status.name(), v.claim, v.evidence);
    }
    // 5 legacy policies × 4 backings × 2 NPT-level settings × 2 granularities, gmem × 3 folio
    // sizes × 2 granularities, and gmem-inplace × 5 backings (the 3 folio sizes and the 2 HugeTLB
    // ones) × 2 granularities.
    assert_eq!(d.matrix.len(), 5 * 4 * 2 * 2 + 3 * 2 + 5 * 2);
    assert_eq!(d.matrix.len(), matrix().len());
    assert_eq!(d.claims.len(), CLAIM_SCENARIOS.len());
    for r in d.matrix.iter().chain(&d.claims) {
        assert!(r.passed(), "{} [{}/{}/{}]: {:?}", r.name, r.policy, r.backing, r.granularity, r.failures);
        assert_eq!(r.result.violations, Vec::<String>::new());
        pin(r, &[("false_negatives", 0), ("invariant_violations", 0)]);
    }
    pin_rfc_host_split(&d);
    pin_rfc_v4(&d);
    pin_npt_level_follows_rmp(&d);
    pin_refusals(&d);
    pin_npt_demote(&d);
    pin_gmem(&d);
    pin_claims(&d);
}

fn pin_rfc_host_split(d: &Debate) {
    // The 4K accept makes every page of the first 64 MiB a 4K private entry while the NPT, which
    // follows the THP level here, maps it with 2M leaves. The two private writes through such a
    // leaf (0x200000, then 0x401000 next to the shared buffer) each take a SIZEM #NPF (2), each
    // zapping one 2M leaf for 4K (npt_demotions 2) and splitting one THP (host_splits 2). No host
    // access ever touches the first 2M region: needless. The VMM's write to the shared buffer at
    // 0x400000 finds its region split already; through the old 2M mapping, whose 2M part holds
    // the private 0x401000, it would have faulted: the second split was needed (1 + 1).
    let thp = row(d, "rfc-host-split", "thp", "4k");
    assert_eq!(thp.result.outcome.name(), "completed");
    pin(
        thp,
        &[
            ("rmp_npf_sizem", 2),
            ("host_splits", 2),
            ("host_splits_needed", 1),
            ("host_splits_needless", 1),
            ("npt_demotions", 2),
        ],
    );
    pin(thp, &[("sigbus", 0), ("efault", 0), ("psmash", 0)]);
    for b in ["hugetlbfs-2m", "hugetlbfs-1g"] {
        let r = row(d, "rfc-host-split", b, "4k");
        assert_eq!(r.result.outcome.name(), "vm_error", "{b}");
        // The first private write through the huge leaf (0x200000) is the one SIZEM fault: its
        // hugetlbfs page cannot split, and the run ends there.
        pin(r, &[("rmp_npf_sizem", 1), ("host_splits", 0)]);
        // A guest changing state in 2M chunks never faults.
        let r = row(d, "rfc-host-split", b, "2m");
        assert_eq!(r.result.outcome.name(), "completed", "{b}");
        pin(r, &[("rmp_npf", 0), ("host_splits", 0)]);
    }
    // A 4K host mapping has no size mismatch, at the price of one #NPF per page: the accept's
    // PVALIDATEs fault in 64 MiB / 4 KiB = 16,384 4K leaves, and every later access finds its leaf
    // (the legacy conversion to shared does not zap, and no host split zaps).
    pin(row(d, "rfc-host-split", "anon-4k", "4k"), &[("rmp_npf", 0), ("exits.npf", 16384)]);
}

fn pin_rfc_v4(d: &Debate) {
    // The 16,384 4K PSCs map their pages in the NPT at 4K (the PSC handler builds the NPT, capped
    // at the 4K entry it converts), so no access ever meets a larger leaf: no RMP #NPF at all.
    // The VMM's write to the shared buffer meets its 2M THP mapping over private 4K pages: the
    // host handler splits it (needed), the MMU notifier zaps the NPT over that 2M range, and the
    // guest's final shared write refaults there: one #NPF exit.
    let thp = row(d, "rfc-v4", "thp", "4k");
    assert_eq!(thp.result.outcome.name(), "completed");
    pin(thp, &[("rmp_npf", 0), ("host_splits", 1), ("host_splits_needless", 0), ("exits.npf", 1)]);
    // On hugetlbfs the same write re-faults forever (one fault loop, no split, no SIGBUS since
    // 10/40's handler only retries): the run ends there, hung.
    for b in ["hugetlbfs-2m", "hugetlbfs-1g"] {
        let r = row(d, "rfc-v4", b, "4k");
        assert_eq!(r.result.outcome.name(), "host_hang", "{b}");
        pin(r, &[("host_fault_loops", 1), ("rmp_npf", 0), ("host_splits", 0), ("sigbus", 0)]);
        assert_eq!(r.result.reason, Some(Reason::HostFaultLoop), "{}", r.result.detail);
        // A 2M guest's PSCs build 2M leaves over 2M entries: nothing faults.
        let r = row(d, "rfc-v4", b, "2m");
        assert_eq!(r.result.outcome.name(), "completed", "{b}");
        pin(r, &[("rmp_npf", 0), ("host_splits", 0), ("exits.npf", 0)]);
    }
}

fn pin_npt_level_follows_rmp(d: &Debate) {
    // With the NPT capped at the RMP level the 4K guest's leaves are 4K where its entries are:
    // the seed's size-mismatch faults vanish, and so do the needless splits and the hugetlbfs
    // vm_errors; the host writes to hugetlbfs still fail (SIGBUS and -EFAULT, one each).
    for p in ["rfc-host-split", "npt-demote"] {
        let thp = row_at(d, p, "thp", "4k", true);
        assert_eq!(thp.result.outcome.name(), "completed", "{p}");
        pin(thp, &[("rmp_npf", 0), ("host_splits", 1), ("host_splits_needless", 0), ("npt_demotions", 0)]);
        for b in ["hugetlbfs-2m", "hugetlbfs-1g"] {
            let r = row_at(d, p, b, "4k", true);
            assert_eq!(r.result.outcome.name(), "completed", "{p}/{b}");
            pin(r, &[("rmp_npf", 0), ("sigbus", 1), ("efault", 1)]);
        }
    }
    // (host_splits 1 on THP: the VMM's write to the shared buffer meets its 2M THP mapping over
    // the private 4K pages next to it, and the host's RMP #PF handler splits it: needed. On
    // hugetlbfs that handler cannot split: the VMM's write is the SIGBUS and the uaccess write to
    // the same page the -EFAULT.)
}

fn pin_refusals(d: &Debate) {
    // refuse-hugetlbfs rejects the VM at registration, before the guest runs: no exit, no
    // RMPUPDATE. fail-psc-hugetlbfs fails the guest's first page-state change (the accept's first
    // request), which terminates the guest (psc_failed 1) before KVM converts anything.
    for b in ["hugetlbfs-2m", "hugetlbfs-1g"] {
        for g in ["4k", "2m"] {
            let r = row(d, "refuse-hugetlbfs", b, g);
            assert_eq!(r.result.outcome.name(), "vm_rejected", "{b}/{g}");
            pin(r, &[("exits.npf", 0), ("rmpupdate", 0)]);
            let r = row(d, "fail-psc-hugetlbfs", b, g);
            assert_eq!(r.result.outcome.name(), "guest_terminated", "{b}/{g}");
            pin(r, &[("psc_failed", 1), ("rmpupdate", 0)]);
        }
    }
}

fn pin_npt_demote(d: &Debate) {
    let thp = row(d, "npt-demote", "thp", "4k");
    // The one host split is the RMP #PF handler's, for the VMM's write: needed. The two SIZEM
    // faults (the private writes at 0x200000 and 0x401000 through 2M leaves over the 4K entries of
    // the 4K accept) each demote their 2M leaf to 4K in place: 2m_4k 2, and every demoted part
    // holds the fault that required it (needless 0).
    pin(thp, &[("host_splits", 1), ("host_splits_needless", 0), ("npt_demotions.2m_4k", 2)]);
    pin(thp, &[("npt_demotions_needless", 0), ("sigbus", 0), ("efault", 0)]);
    // hugetlbfs-2m: the same two SIZEM faults and demotions, and no host split (hugetlbfs cannot
    // split): the VMM's and the uaccess writes to 0x400000, whose 2M page holds the private
    // 0x401000, fail with one SIGBUS and one -EFAULT.
    let h2 = row(d, "npt-demote", "hugetlbfs-2m", "4k");
    pin(
        h2,
        &[("rmp_npf_sizem", 2), ("npt_demotions.2m_4k", 2), ("host_splits", 0), ("sigbus", 1), ("efault", 1)],
    );
    // hugetlbfs-1g: the accept's first PVALIDATE faults in one 1G leaf over all 64 MiB (#NPF 1);
    // the write at 0x200000 takes SIZEM (#NPF 2): the 1G leaf is split into 2M parts in place
    // (1g_2m 1) and the part over 0x200000 demoted to 4K (2m_4k 1); the write at 0x401000 takes
    // SIZEM through the 2M part over 0x400000 (#NPF 3, 2m_4k 2). Nothing is unmapped, so nothing
    // refaults: exits.npf 3. The host writes fail as on hugetlbfs-2m.
    let h1 = row(d, "npt-demote", "hugetlbfs-1g", "4k");
    pin(h1, &[("npt_demotions.1g_2m", 1), ("npt_demotions.2m_4k", 2), ("npt_demotions_needless", 0)]);
    pin(h1, &[("exits.npf", 3), ("sigbus", 1), ("efault", 1)]);
}

fn pin_gmem(d: &Debate) {
    // 2M folios and a 4K guest: every 2M region is PSMASHed once (64 MiB = 32 regions). The guest
    // validates each 64-entry batch before it sends the next (`__set_pages_state`): in a region,
    // the first batch's first 4K PVALIDATE takes the SIZEM #NPF, the zap makes that batch's 64
    // pages refault at 4K, and the region's 7 later batches are prefaulted at 4K by their PSC
    // (`prefault_on_psc`), so their PVALIDATEs do not fault: 32 × (1 + 64) = 2080 #NPFs, plus the
    // one of the last step, the guest's shared write at 0x400000 = 2081. (Sending the whole range
    // before validating any of it made every page refault: 16384 + 32 + 1.)
    for b in ["gmem-2m", "gmem-1g"] {
        let r = row(d, "gmem", b, "4k");
        pin(r, &[("psmash", 32), ("rmp_npf_sizem", 32), ("npt_demotions.2m_4k", 32), ("exits.npf", 2081)]);
        // RMPUPDATEs: the prefault prepares each 2M region of the folios with one 2M RMPUPDATE
        // (32; a 1G folio is prepared 2M at a time), and the conversion of 0x400000 to shared
        // punches a hole whose invalidation makes that page shared again (1): 33.
        pin(r, &[("npt_demotions_needless", 0), ("rmpupdate", 33)]);
        // A 2M guest keeps the 2M entries: the same 32 2M prepares, and its 2 MiB conversion to
        // shared is one 2M RMPUPDATE on invalidation: 33.
        pin(row(d, "gmem", b, "2m"), &[("psmash", 0), ("rmp_npf", 0), ("rmpupdate", 33)]);
    }
    for r in d.matrix.iter().filter(|r| r.policy == "gmem") {
        pin(r, &[("sigbus", 0), ("efault", 0), ("host_splits_needless", 0)]);
    }
    // 4K folios: each of the 16,384 accepted pages is prepared by its own 4K RMPUPDATE when the
    // PSC prefaults it, plus the one of the conversion to shared: 16,385. The accept is 16,384 4K
    // entries in GHCB batches of 64 (256 requests) plus the 4 KiB conversion (1): 257. The
    // prefault maps every private page, so the only #NPF is the guest's final shared write at
    // 0x400000, whose private leaf the conversion zapped.
    pin(
        row(d, "gmem", "gmem-4k", "4k"),
        &[("rmpupdate", 16385), ("exits.npf", 1), ("exits.vmgexit_psc", 257)],
    );
}

fn pin_claims(d: &Debate) {
    // 07: the 4K private page's PVALIDATE faults in one 1G leaf; the write through it takes SIZEM
    // and npt-demote splits the 1G leaf into 2M parts (1g_2m 1) and demotes the part over
    // 0x200000 to 4K (2m_4k 1), in place.
    let minimal = claim(d, "07-");
    pin(minimal, &[("npt_demotions.1g_2m", 1), ("npt_demotions.2m_4k", 1), ("npt_demotions_needless", 0)]);
    // 1 GiB guest: the 1G leaf is split into 512 2M leaves and the one holding 0x200000 into 512
    // 4K leaves, nothing unmapped: 2m = 511 × 512 / 262144, 4k = 512 / 262144 (shares of guest
    // memory). The other 511 regions keep host pages of 1G and unassigned RMP regions, and region 1
    // holds one assigned 4K entry: huge_capable = 511 / 512 too.
    // Multiples of 1/512, exact in an f64: compared bit for bit.
    let minimal_cover = ["4k", "2m", "1g", "unmapped", "huge_capable"].map(|k| {
        metric(minimal, &if k == "huge_capable" { k.to_string() } else { format!("npt_coverage.{k}") })
    });
    let pinned = [1.0 / 512.0, 511.0 / 512.0, 0.0, 0.0, 511.0 / 512.0];
    assert_eq!(minimal_cover.map(f64::to_bits), pinned.map(f64::to_bits), "{minimal_cover:?}");
    // examples/debate/14 derives these in its header comment (#NPF exits: the first 2M PVALIDATE,
    // the 4K PVALIDATE's SIZEM, the write's SIZEM).
    let pvalidate = claim(d, "14-");
    pin(pvalidate, &[("psmash", 1), ("npt_demotions.1g_2m", 1), ("npt_demotions.2m_4k", 1)]);
    pin(pvalidate, &[("npt_demotions_needless", 0), ("exits.npf", 3)]);
    // 10 and 11: converting 0x210000 to shared, the guest first rescinds it with a 4K PVALIDATE
    // inside the 2M entry, a SIZEM #NPF that KVM resolves by PSMASH (1); the one re-coalesce of
    // the region (1); the naive one loses the 16 KiB written at 0x300000, 4 pages, which the
    // save-restore one writes back (0).
    pin(claim(d, "10-"), &[("psmash", 1), ("recoalesced", 1), ("data_loss_pages", 4)]);
    pin(claim(d, "11-"), &[("psmash", 1), ("recoalesced", 1), ("data_loss_pages", 0)]);
    // 12 and 13: 4 MiB accepted on 4K folios = 1024 pages, each prepared by one 4K RMPUPDATE.
    // Without prefault_on_psc each page's 4K PVALIDATE faults it in (one #NPF each); with it none
    // does. The conversion of 0x800000 (never allocated) and the uaccess write (the VMA) add none.
    pin(claim(d, "12-"), &[("exits.npf", 1024), ("rmpupdate", 1024)]);
    pin(claim(d, "13-"), &[("exits.npf", 0), ("rmpupdate", 1024)]);
}

// Verdicts can fail: each test below changes one input of the runs a verdict reads and shows the
// verdict flip.

fn matrix_run(p: Policy, b: Backing, g: Granularity, follows: bool, extra_steps: &str) -> ScenarioRun {
    let text = format!("{}{extra_steps}", matrix_scenario(p, b, g, follows));
    let s = parse_scenario(&matrix_source(p, b, g, follows), &text).unwrap();
    run_scenario(&s, CheckMode::Full).unwrap()
}

fn claim_runs() -> Vec<ScenarioRun> {
    CLAIM_SCENARIOS
        .iter()
        .map(|(f, t)| run_scenario(&parse_scenario(f, t).unwrap(), CheckMode::Full).unwrap())
        .collect()
}

fn verdict<'a>(vs: &'a [Verdict], claim_part: &str) -> &'a Verdict {
    vs.iter().find(|v| v.claim.contains(claim_part)).unwrap()
}

/// The index in `CLAIM_SCENARIOS` of the claim scenario whose file name contains `part`.
fn at(part: &str) -> usize {
    CLAIM_SCENARIOS.iter().position(|(f, _)| f.contains(part)).unwrap()
}

/// The status of the verdict whose claim contains `claim_part`, over these claim runs alone.
fn claims_status(claims: Vec<ScenarioRun>, claim_part: &str) -> Status {
    let d = Debate { matrix: Vec::new(), claims, workloads: Vec::new() };
    verdict(&d.verdicts(), claim_part).status
}

const NEEDLESS: &str = "THP host pages that no access needed";

#[test]
fn the_needless_split_verdict_turns_down_when_a_host_write_needs_every_split() {
    let thp = |extra| {
        let d = Debate {
            matrix: vec![matrix_run(
                &snpsim_kvm::policy::RfcHostSplit,
                Backing::Thp,
                Granularity::K4,
                false,
                extra,
            )],
            claims: Vec::new(),
            workloads: Vec::new(),
        };
        verdict(&d.verdicts(), NEEDLESS).clone()
    };
    // The matrix workload: two splits, the VMM's write to the buffer needs one (see
    // pin_rfc_host_split).
    let v = thp("");
    assert_eq!(v.status, Status::Supported, "{}", v.evidence);
    // The same run plus a shared page in the first split region (all private since the accept)
    // that the VMM writes: through the old 2M mapping that write would have faulted, so both
    // splits were needed and the claim is not supported.
    let v = thp(
        "\n[[step]]\nop = \"psc\"\ngpa = \"0x3ff000\"\nto = \"shared\"\n\n[[step]]\nop = \"host_write\"\n\
         gpa = \"0x3ff000\"\nvia = \"vmm\"\n",
    );
    assert_eq!(v.status, Status::NotSupported, "{}", v.evidence);
    assert!(v.evidence.contains("2 host splits, 2 needed"), "{}", v.evidence);
}

#[test]
fn the_needless_split_verdict_turns_down_when_the_npt_follows_the_rmp() {
    // Run the seed's THP row with npt_level_follows_rmp = true, filed as the false row: no
    // size-mismatch fault reaches the host walk, the one split is the host handler's own for the
    // VMM's write (needed), and nothing is needless.
    let mut r = matrix_run(&snpsim_kvm::policy::RfcHostSplit, Backing::Thp, Granularity::K4, true, "");
    r.npt_level_follows_rmp = false;
    let d = Debate { matrix: vec![r], claims: Vec::new(), workloads: Vec::new() };
    let v = verdict(&d.verdicts(), NEEDLESS).clone();
    assert_eq!(v.status, Status::NotSupported, "{}", v.evidence);
}

#[test]
fn the_hugetlbfs_verdict_is_mixed_when_one_backing_resolves_the_fault() {
    let rows = |h1_follows: bool| {
        let mut h1 = matrix_run(
            &snpsim_kvm::policy::RfcHostSplit,
            Backing::Hugetlbfs1g,
            Granularity::K4,
            h1_follows,
            "",
        );
        h1.npt_level_follows_rmp = false;
        let mut m = vec![
            h1,
            matrix_run(&snpsim_kvm::policy::RfcHostSplit, Backing::Hugetlbfs2m, Granularity::K4, false, ""),
        ];
        for b in [Backing::Thp, Backing::Hugetlbfs2m, Backing::Hugetlbfs1g] {
            m.push(matrix_run(&snpsim_kvm::policy::RfcHostSplit, b, Granularity::K4, true, ""));
        }
        let d = Debate { matrix: m, claims: Vec::new(), workloads: Vec::new() };
        verdict(&d.verdicts(), "cannot resolve the fault on hugetlbfs").status
    };
    assert_eq!(rows(false), Status::Supported);
    // The 1G row run with the NPT capped at the RMP level completes: one part fails.
    assert_eq!(rows(true), Status::Mixed);
}

#[test]
fn the_recoalescing_and_gmem_verdicts_flip_with_the_guest_and_vmm_settings() {
    let claims = claim_runs();
    let gmem_rows: Vec<ScenarioRun> = [Backing::Gmem4k, Backing::Gmem2m, Backing::Gmem1g]
        .into_iter()
        .flat_map(|b| [Granularity::K4, Granularity::M2].map(move |g| (b, g)))
        .map(|(b, g)| matrix_run(&snpsim_kvm::policy::Gmem, b, g, true, ""))
        .collect();
    let status = |claims: Vec<ScenarioRun>, part: &str| {
        let d = Debate { matrix: gmem_rows.clone(), claims, workloads: Vec::new() };
        verdict(&d.verdicts(), part).status
    };
    assert_eq!(status(claims.clone(), "PSMASH is one-way"), Status::Supported);
    assert_eq!(status(claims.clone(), "gmem never faults the host"), Status::Supported);
    // The naive guest replaced by the save-restore one (the recoalesce mode): nothing is lost.
    let mut saved = claims.clone();
    saved[at("10-")] = claims[at("11-")].clone();
    assert_eq!(status(saved, "PSMASH is one-way"), Status::Mixed);
    // The VMM pre-faulting in the run without it (`prefault_on_psc`): the #NPF exits vanish.
    let mut prefault = claims.clone();
    prefault[at("12-")] = claims[at("13-")].clone();
    assert_eq!(status(prefault, "gmem never faults the host"), Status::Mixed);
}

/// The in-place verdict turns down when the in-place run's host write splits the host's page,
/// when the 2021 run's write does not, and when the folio counts are not one per folio.
#[test]
fn the_in_place_verdict_flips_with_the_runs_it_reads() {
    let claims = claim_runs();
    let status = |claims: Vec<ScenarioRun>| claims_status(claims, "in-place guest_memfd");
    assert_eq!(status(claims.clone()), Status::Supported);
    // The 2021 run in place of the in-place one: its write split the THP.
    let mut swapped = claims.clone();
    swapped[at("upstream-2026/01-")] = claims[at("upstream-2026/02-")].clone();
    assert_eq!(status(swapped), Status::Mixed);
    // The in-place run in place of the 2021 one: no host split before its SIGBUS.
    let mut no_split = claims.clone();
    no_split[at("upstream-2026/02-")] = claims[at("upstream-2026/01-")].clone();
    assert_eq!(status(no_split), Status::Mixed);
    // The conversion run replaced by 01's (one split, no merge): the counts are no longer one
    // split and one merge per folio and share episode.
    let mut per_page = claims.clone();
    per_page[at("upstream-2026/03-")] = claims[at("upstream-2026/01-")].clone();
    assert_eq!(status(per_page), Status::Mixed);
}

/// The Linux workload rows the two gmem-inplace workload verdicts read, run as the suite runs
/// them: gmem-inplace on each of its backings, and gmem on gmem-2m.
fn in_place_workloads() -> Vec<ScenarioRun> {
    workload_matrix()
        .into_iter()
        .filter(|&(p, b, g)| {
            g == Preset::Linux && (p.name() == "gmem-inplace" || (p.name() == "gmem" && b == Backing::Gmem2m))
        })
        .map(|(p, b, g)| {
            let s = parse_scenario("workload.toml", &workload_scenario(p, b, g)).unwrap();
            run_scenario(&s, CheckMode::Incremental).unwrap()
        })
        .collect()
}

/// `from`'s run under the labels of the row of `policy` on `backing`, for a verdict to read.
fn relabelled(
    workloads: &[ScenarioRun],
    from: (&str, &str),
    to: (&'static str, &'static str),
) -> Vec<ScenarioRun> {
    let source = workloads.iter().find(|r| (r.policy, r.backing) == from).unwrap().clone();
    workloads
        .iter()
        .map(|r| {
            if (r.policy, r.backing) == to {
                ScenarioRun { policy: to.0, backing: to.1, ..source.clone() }
            } else {
                r.clone()
            }
        })
        .collect()
}

/// The huge-capable verdict turns down when the in-place 2M HugeTLB row keeps as much memory
/// huge-capable as gmem-2m (gmem's own row in its place), or either 1G row keeps any (the 2M row
/// in its place); the folio-cost verdict turns down when no folio merges (gmem's row, which has no
/// folios to merge, in the in-place row's place) and when folios merge more often than buffers
/// return (the in-place row with one merge more than its buffers).
#[test]
fn the_in_place_workload_verdicts_flip_with_the_rows_they_read() {
    const HUGE: &str = "less guest memory stays huge-capable";
    const COST: &str = "merge back as the buffers return";
    let workloads = in_place_workloads();
    assert_eq!(workloads.len(), 6);
    let status = |workloads: Vec<ScenarioRun>, part: &str| {
        let d = Debate { matrix: Vec::new(), claims: Vec::new(), workloads };
        verdict(&d.verdicts(), part).status
    };
    assert_eq!(status(workloads.clone(), HUGE), Status::Supported);
    assert_eq!(status(workloads.clone(), COST), Status::Supported);
    let gmem_in_place = relabelled(&workloads, ("gmem", "gmem-2m"), ("gmem-inplace", "gmem-hugetlb-2m"));
    assert_eq!(status(gmem_in_place.clone(), HUGE), Status::Mixed);
    assert_eq!(status(gmem_in_place, COST), Status::Mixed);
    for one_gig in ["gmem-hugetlb-1g", "gmem-1g"] {
        let two_meg_as_1g =
            relabelled(&workloads, ("gmem-inplace", "gmem-hugetlb-2m"), ("gmem-inplace", one_gig));
        assert_eq!(status(two_meg_as_1g, HUGE), Status::Mixed, "{one_gig}");
    }
    // A merge per page rather than per buffer: more merges than buffers.
    let mut per_page = workloads.clone();
    let row =
        per_page.iter_mut().find(|r| (r.policy, r.backing) == ("gmem-inplace", "gmem-hugetlb-2m")).unwrap();
    row.result.metrics.folio_merges = row.workload.as_ref().unwrap().actions.conversions + 1;
    assert_eq!(status(per_page, COST), Status::Mixed);
}

/// The RMPOPT verdict turns down when the scattered 4K guest's run keeps as much memory marked as
/// the 1G one (06's run in 09's place), when the 1G guest's keeps none (09's in 06's place), and
/// when the teardown marks nothing more (06's in 08's place).
#[test]
fn the_rmpopt_verdict_flips_with_the_runs_it_reads() {
    let claims = claim_runs();
    let status = |claims: Vec<ScenarioRun>| claims_status(claims, "RMPOPT's benefit depends on the backing");
    assert_eq!(status(claims.clone()), Status::Supported);
    for (from, to) in [("06-", "09-"), ("09-", "06-"), ("06-", "08-")] {
        let mut swapped = claims.clone();
        swapped[at(&format!("upstream-2026/{to}"))] = claims[at(&format!("upstream-2026/{from}"))].clone();
        assert_eq!(status(swapped), Status::Mixed, "{from} in place of {to}");
    }
}

/// A gmem-2m guest with the 2M region at 0x400000 private and mapped by a 2M leaf, and a 4K guest
/// page made private at 0x3ff000, the last page of the region before it; `extra` steps follow.
fn gmem_spill(extra: &str) -> ScenarioRun {
    let text = format!(
        r#"name = "gmem spill-over zap"
seed = 1
[machine]
host_memory = "64MiB"
[vm]
memory = "16MiB"
policy = "gmem"
backing = "gmem-2m"
[guest]
psc_granularity = "4k"
[[step]]
op = "accept"
gpa = "0x400000"
size = "2MiB"
granularity = "2m"
[[step]]
op = "psc"
gpa = "0x3ff000"
to = "private"
{extra}"#
    );
    run_scenario(&parse_scenario("gmem-spill.toml", &text).unwrap(), CheckMode::Full).unwrap()
}

#[test]
fn an_npt_zap_spilling_into_the_next_leaf_is_needless_and_stays_so_once_the_leaf_is_back() {
    // The 4K PVALIDATE at 0x3ff000 meets the region's 2M RMP entry through a 2M leaf: SIZEM.
    // `sev_handle_rmp_fault` PSMASHes and zaps 512 GFNs from the faulting GFN 0x3ff, so the zap
    // takes the faulting region's leaf (needed: the fault is in it) and the 2M leaf at 0x400
    // (needless: no fault there): 2 demotions to 4K, 1 needless.
    let r = gmem_spill("");
    assert!(r.passed(), "{:?}", r.failures);
    pin(
        &r,
        &[("rmp_npf_sizem", 1), ("psmash", 1), ("npt_demotions.2m_4k", 2), ("npt_demotions_needless", 1)],
    );
    // Then the guest makes 0x401000 shared. It first rescinds the page: that PVALIDATE refaults
    // the second region, which KVM maps with a 2M leaf again (its RMP entry is still 2M), and the
    // spill-over's record closes: the old leaf is back, so nothing later can need the zap. The 4K
    // rescind then takes SIZEM in that new leaf: PSMASH and a zap of it, needed (the fault is in
    // it), 3 demotions in all. The private write at 0x402000 afterwards would fault through the
    // old 2M leaf (the RMP entry is 4K now) but no longer counts: 1 needless still.
    let r = gmem_spill(
        "[[step]]\nop = \"psc\"\ngpa = \"0x401000\"\nto = \"shared\"\n\
         [[step]]\nop = \"access\"\ngpa = \"0x402000\"\nkind = \"write\"\n",
    );
    assert!(r.passed(), "{:?}", r.failures);
    pin(&r, &[("psmash", 2), ("npt_demotions.2m_4k", 3), ("npt_demotions_needless", 1)]);
}
