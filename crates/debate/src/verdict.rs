//! The verdict on each claim of the 2021 debate, computed from the default suite's runs.
//!
//! A verdict reads run metrics and outcomes only. Each states the result that would have
//! contradicted it, and the part of it (if any) that restates a policy's definition and so holds
//! by construction. A claim is judged in parts: all hold ⇒ supported, none ⇒ not supported,
//! otherwise mixed.

use crate::debate::{CLAIM_SCENARIOS, Debate};
use snpsim_engine::outcome::Reason;
use snpsim_kvm::policy as k;
use snpsim_scenario::run::{ScenarioRun, metric_value};
use snpsim_scenario::{Backing, Granularity, Named, Policy, Preset};

/// What the runs say about a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Every part of the claim holds in the runs that bear on it.
    Supported,
    /// Some parts hold and some do not.
    Mixed,
    /// No part holds.
    NotSupported,
}

impl Status {
    /// Supported when every part holds, not supported when none does, mixed otherwise (a claim
    /// with no parts is not supported: nothing bears it out).
    pub fn of(parts: &[bool]) -> Status {
        let held = parts.iter().filter(|&&p| p).count();
        if held == parts.len() && held > 0 {
            Status::Supported
        } else if held == 0 {
            Status::NotSupported
        } else {
            Status::Mixed
        }
    }

    /// The contract name: `supported`, `mixed`, `not supported`.
    pub const fn name(self) -> &'static str {
        match self {
            Status::Supported => "supported",
            Status::Mixed => "mixed",
            Status::NotSupported => "not supported",
        }
    }
}

/// A claim of the seed and whether the runs support it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The claim in a line of at most 100 characters, for the first screen.
    pub headline: &'static str,
    /// The claim.
    pub claim: &'static str,
    /// The settings it was judged under (which policies' rows, which `npt_level_follows_rmp`).
    pub settings: String,
    /// What the runs say, computed from their metrics and outcomes alone.
    pub status: Status,
    /// The result that would have contradicted the claim.
    pub falsifier: &'static str,
    /// The part of the claim that restates a policy's definition and so cannot come out otherwise,
    /// if any.
    pub by_construction: Option<&'static str>,
    /// The numbers that show it.
    pub evidence: String,
}

impl Verdict {
    /// Whether the claim is supported.
    pub fn supported(&self) -> bool {
        self.status == Status::Supported
    }
}

fn m(r: Option<&ScenarioRun>, key: &str) -> f64 {
    r.and_then(|r| metric_value(&r.result.metrics, key)).unwrap_or(f64::NAN)
}

/// A run's outcome as the verdicts compare it: a `vm_error` whose RMP instruction failed is a bug,
/// not the policy failing to resolve a fault, so it never counts as the `vm_error` a claim
/// predicts.
fn o(r: Option<&ScenarioRun>) -> &'static str {
    r.map_or("missing", |r| match r.result.cause() {
        Some(snpsim_engine::outcome::Cause::InstructionFailed) => "vm_error (instruction_failed)",
        _ => r.result.outcome.name(),
    })
}

/// Whether a run stopped for `reason` (a claim about one failure is not borne out by another:
/// a livelock or an unbacked GFN is a `vm_error` too, but not a host page that cannot split).
fn stopped_for(r: Option<&ScenarioRun>, reason: snpsim_engine::outcome::Reason) -> bool {
    r.is_some_and(|r| r.result.reason == Some(reason))
}

/// Whether a count metric equals `n` (counts are small integers, exact in an `f64`).
fn is(r: Option<&ScenarioRun>, key: &str, n: u32) -> bool {
    m(r, key).to_bits() == f64::from(n).to_bits()
}

/// `npt_level_follows_rmp = X` for evidence lines.
fn setting(follows: bool) -> &'static str {
    if follows { "npt_level_follows_rmp = true" } else { "npt_level_follows_rmp = false" }
}

impl Debate {
    /// The matrix run of `policy` on `backing` for a `g` guest with `npt_level_follows_rmp` =
    /// `follows` (gmem runs only with `true`).
    fn row(&self, policy: Policy, backing: Backing, g: Granularity, follows: bool) -> Option<&ScenarioRun> {
        self.matrix.iter().find(|r| {
            r.policy == policy.name()
                && r.backing == backing.name()
                && r.granularity == g.name()
                && r.npt_level_follows_rmp == follows
        })
    }

    /// The realistic workload run of `policy` on `backing` with the Linux guest.
    fn linux_workload(&self, policy: Policy, backing: Backing) -> Option<&ScenarioRun> {
        self.workloads.iter().find(|r| {
            r.policy == policy.name() && r.backing == backing.name() && r.preset == Preset::Linux.name()
        })
    }

    fn claim_run(&self, file_part: &str) -> Option<&ScenarioRun> {
        CLAIM_SCENARIOS.iter().position(|(f, _)| f.contains(file_part)).and_then(|i| self.claims.get(i))
    }

    /// The verdict on each claim of the seed mail (the 2021 thread on RFC v4 10/40), and on the
    /// difference between the two readings of the RFC.
    pub fn verdicts(&self) -> Vec<Verdict> {
        vec![
            self.needless_splits(),
            self.hugetlbfs_breaks(),
            self.two_readings(),
            self.refusals(),
            self.npt_demote(),
            self.host_writes(),
            self.two_meg_guest(),
            self.recoalescing(),
            self.gmem(),
            self.in_place(),
            self.in_place_huge_capable(),
            self.in_place_folio_cost(),
            self.rmpopt(),
            self.soundness(),
        ]
    }

    /// The seed's false positives: the RFC's host walk splits THP pages that no access needed.
    /// Needless is measured by counterfactual (`snpsim_host::SplitLedger`), so a workload whose
    /// host writes need every split turns this claim down.
    fn needless_splits(&self) -> Verdict {
        let thp = self.row(&k::RfcHostSplit, Backing::Thp, Granularity::K4, false);
        Verdict {
            headline: "THP: the RFC's host walk makes host splits that no access needed",
            claim: "the RFC's host walk splits THP host pages that no access needed",
            settings: "rfc-host-split (the seed's reading), thp, 4K guest, npt_level_follows_rmp = false"
                .into(),
            status: Status::of(&[m(thp, "host_splits_needless") > 0.0]),
            falsifier: "host_splits_needless = 0: every split was needed, because a host write through the \
                        old 2M mapping would have taken an RMP #PF",
            by_construction: None,
            evidence: format!(
                "THP: {} host splits, {} needed by a later host write, {} needless",
                m(thp, "host_splits"),
                m(thp, "host_splits_needed"),
                m(thp, "host_splits_needless")
            ),
        }
    }

    /// The seed's hugetlbfs failure, which holds only while the NPT follows the host level: with
    /// the NPT capped at the RMP level no size mismatch reaches KVM's host walk.
    fn hugetlbfs_breaks(&self) -> Verdict {
        let at = |b, f| self.row(&k::RfcHostSplit, b, Granularity::K4, f);
        let (h2, h1) = (at(Backing::Hugetlbfs2m, false), at(Backing::Hugetlbfs1g, false));
        let capped = [at(Backing::Thp, true), at(Backing::Hugetlbfs2m, true), at(Backing::Hugetlbfs1g, true)];
        Verdict {
            headline: "hugetlbfs: the RFC's host walk cannot resolve the fault (not once the NPT follows the RMP)",
            claim: "the RFC's host walk cannot resolve the fault on hugetlbfs, which cannot split, a failure that \
                    vanishes once the NPT is capped at the RMP level",
            settings:
                "rfc-host-split (the seed's reading), 4K guest, hugetlbfs 2M/1G at npt_level_follows_rmp = \
                       false; thp and hugetlbfs at true"
                    .into(),
            status: Status::of(&[
                stopped_for(h2, Reason::HostSplitImpossible),
                stopped_for(h1, Reason::HostSplitImpossible),
                capped.iter().all(|r| is(*r, "rmp_npf_sizem", 0) && o(*r) == "completed"),
            ]),
            falsifier: "a hugetlbfs row completing at false, or a SIZEM #NPF or a failure at true",
            by_construction: None,
            evidence: format!(
                "{}: hugetlbfs-2m {}, hugetlbfs-1g {}. {}: {} SIZEM faults; thp {}, hugetlbfs-2m {}, hugetlbfs-1g {}",
                setting(false),
                o(h2),
                o(h1),
                setting(true),
                capped.iter().map(|r| m(*r, "rmp_npf_sizem")).sum::<f64>(),
                o(capped[0]),
                o(capped[1]),
                o(capped[2])
            ),
        }
    }

    /// The RFC v4 code as posted against the seed's reading of it: where they differ is a result.
    fn two_readings(&self) -> Verdict {
        let seed = |b| self.row(&k::RfcHostSplit, b, Granularity::K4, false);
        let code = |b| self.row(&k::RfcV4, b, Granularity::K4, true);
        let (s_thp, s_h2) = (seed(Backing::Thp), seed(Backing::Hugetlbfs2m));
        let (c_thp, c_h2, c_h1) =
            (code(Backing::Thp), code(Backing::Hugetlbfs2m), code(Backing::Hugetlbfs1g));
        Verdict {
            headline: "RFC v4 as posted: no host split for KVM; on hugetlbfs a host write re-faults forever",
            claim: "as posted, RFC v4 never split a host page for KVM's faults; its hugetlbfs failure was a host write that re-faults forever, not an unresolvable #NPF",
            settings:
                "rfc-v4 (code as posted, npt_level_follows_rmp = true) against rfc-host-split (the seed's \
                       reading, false), 4K guest"
                    .into(),
            status: Status::of(&[
                is(c_thp, "rmp_npf_sizem", 0)
                    && is(c_thp, "npt_demotions", 0)
                    && is(c_thp, "host_splits_needless", 0),
                stopped_for(c_h2, Reason::HostFaultLoop)
                    && stopped_for(c_h1, Reason::HostFaultLoop)
                    && m(c_h2, "host_fault_loops") > 0.0,
                m(s_thp, "host_splits_needless") > 0.0 || stopped_for(s_h2, Reason::HostSplitImpossible),
            ]),
            falsifier: "rfc-v4 on THP taking a SIZEM #NPF, demoting its NPT or making a split no host write \
                        needed; rfc-v4 on hugetlbfs not hanging; or the seed's reading behaving the same",
            by_construction: None,
            evidence: format!(
                "THP: rfc-v4 {} host splits ({} needed by host writes, {} needless), {} SIZEM faults; \
                 rfc-host-split {} needless; hugetlbfs-2m: rfc-v4 {} ({} host fault loops), rfc-host-split {}; \
                 hugetlbfs-1g: rfc-v4 {}",
                m(c_thp, "host_splits"),
                m(c_thp, "host_splits_needed"),
                m(c_thp, "host_splits_needless"),
                m(c_thp, "rmp_npf_sizem"),
                m(s_thp, "host_splits_needless"),
                o(c_h2),
                m(c_h2, "host_fault_loops"),
                o(s_h2),
                o(c_h1)
            ),
        }
    }

    fn refusals(&self) -> Verdict {
        let rows: Vec<_> = [Backing::Hugetlbfs2m, Backing::Hugetlbfs1g]
            .into_iter()
            .flat_map(|b| [Granularity::K4, Granularity::M2].map(move |g| (b, g)))
            .flat_map(|(b, g)| [false, true].map(move |f| (b, g, f)))
            .map(|(b, g, f)| {
                (self.row(&k::RefuseHugetlbfs, b, g, f), self.row(&k::FailPscHugetlbfs, b, g, f))
            })
            .collect();
        Verdict {
            headline: "refusing hugetlbfs rejects the VM; failing the PSC kills a Linux guest",
            claim: "refusing hugetlbfs at registration rejects the VM; failing the PSC terminates a Linux guest",
            settings: "hugetlbfs 2M/1G, 4K and 2M guests, both NPT-level settings".into(),
            status: Status::of(&[
                rows.iter().all(|(r, _)| stopped_for(*r, Reason::BackingRefused)),
                rows.iter().all(|(_, f)| stopped_for(*f, Reason::PscFailed)),
            ]),
            falsifier: "a hugetlbfs row where refuse-hugetlbfs runs the guest, or fail-psc-hugetlbfs's guest survives",
            by_construction: Some(
                "both halves: the two policies are defined to refuse hugetlbfs, and a Linux guest terminates on \
                 a failed PSC; the runs show the model does what the policies say, not a property of SNP",
            ),
            evidence: format!(
                "hugetlbfs rows: refuse-hugetlbfs {}; fail-psc-hugetlbfs {}",
                rows.iter().map(|(r, _)| o(*r)).collect::<Vec<_>>().join("/"),
                rows.iter().map(|(_, f)| o(*f)).collect::<Vec<_>>().join("/")
            ),
        }
    }

    fn npt_demote(&self) -> Verdict {
        let demote: Vec<_> = [Backing::Thp, Backing::Hugetlbfs2m, Backing::Hugetlbfs1g]
            .into_iter()
            .map(|b| (b, self.row(&k::NptDemote, b, Granularity::K4, false)))
            .collect();
        let minimal = self.claim_run("07-");
        let pvalidate = self.claim_run("14-");
        // Each row: the same SIZEM faults arise and are resolved by demotion, with no needless host
        // split.
        let mut parts: Vec<bool> = demote
            .iter()
            .map(|(_, r)| {
                o(*r) == "completed"
                    && is(*r, "host_splits_needless", 0)
                    && m(*r, "rmp_npf_sizem") > 0.0
                    && m(*r, "npt_demotions") > 0.0
            })
            .collect();
        // Minimal: the other 2M parts of the 1G leaf stay mapped at 2M, so (npt_coverage being
        // shares of guest memory) nearly all of the 1 GiB guest is mapped at 2M — 511/512 after
        // the one 2M part the fault needed at 4K. A zap would leave them unmapped instead.
        parts.extend([minimal, pvalidate].into_iter().map(|r| {
            is(r, "npt_demotions.1g_2m", 1)
                && is(r, "npt_demotions_needless", 0)
                && m(r, "npt_coverage.2m") > 0.99
        }));
        let rows = demote.iter().map(|(b, r)| {
            format!(
                "{} {} ({} SIZEM faults, {} demotions, {} needless host splits)",
                b.name(),
                o(*r),
                m(*r, "rmp_npf_sizem"),
                m(*r, "npt_demotions"),
                m(*r, "host_splits_needless")
            )
        });
        Verdict {
            headline: "npt-demote: the same faults resolved, no needless host split, 1G leaves demoted minimally",
            claim: "npt-demote resolves the same faults with no needless host split on THP and hugetlbfs 2M/1G, demoting a 1G leaf minimally whether an access or a 4K PVALIDATE faults",
            settings:
                "npt-demote, 4K guest, npt_level_follows_rmp = false (with true the NPT never outgrows the \
                       RMP at fault time, and only a leaf a page-state change shrank the RMP under is demoted); \
                       examples/debate/07 and 14"
                    .into(),
            status: Status::of(&parts),
            falsifier: "a row failing, taking no SIZEM fault or making a needless host split; or a 1G fault \
                        demoting more than the faulting 2M part",
            by_construction: None,
            evidence: format!(
                "npt-demote, 4K guest: {}; 1G, access fault: 1g_2m {} 2m_4k {}, needless {}, guest memory at 2M {:.3}; \
                 1G, 4K PVALIDATE fault: 1g_2m {} 2m_4k {}, needless {}, guest memory at 2M {:.3}",
                rows.collect::<Vec<_>>().join(", "),
                m(minimal, "npt_demotions.1g_2m"),
                m(minimal, "npt_demotions.2m_4k"),
                m(minimal, "npt_demotions_needless"),
                m(minimal, "npt_coverage.2m"),
                m(pvalidate, "npt_demotions.1g_2m"),
                m(pvalidate, "npt_demotions.2m_4k"),
                m(pvalidate, "npt_demotions_needless"),
                m(pvalidate, "npt_coverage.2m")
            ),
        }
    }

    fn host_writes(&self) -> Verdict {
        let hw = |f| self.row(&k::NptDemote, Backing::Hugetlbfs2m, Granularity::K4, f);
        Verdict {
            headline: "host writes to a hugetlbfs page holding a private 4K page still fail under npt-demote",
            claim: "host writes (VMM and get/put_user) to a hugetlbfs page holding a private 4K page still fail under npt-demote",
            settings: "npt-demote, hugetlbfs-2m, 4K guest, both NPT-level settings (host writes do not depend on the NPT)"
                .into(),
            status: Status::of(&[
                m(hw(false), "sigbus") > 0.0 && m(hw(true), "sigbus") > 0.0,
                m(hw(false), "efault") > 0.0 && m(hw(true), "efault") > 0.0,
            ]),
            falsifier: "the VMM's write (no SIGBUS) or vhost's get/put_user (no -EFAULT) to the shared buffer completing",
            by_construction: None,
            evidence: format!(
                "{}: {} SIGBUS, {} -EFAULT; {}: {} SIGBUS, {} -EFAULT",
                setting(false),
                m(hw(false), "sigbus"),
                m(hw(false), "efault"),
                setting(true),
                m(hw(true), "sigbus"),
                m(hw(true), "efault")
            ),
        }
    }

    fn two_meg_guest(&self) -> Verdict {
        let ok: Vec<_> = [&k::RfcHostSplit as Policy, &k::RfcV4, &k::NptDemote]
            .into_iter()
            .flat_map(|p| [Backing::Hugetlbfs2m, Backing::Hugetlbfs1g].map(move |b| (p, b)))
            .flat_map(|(p, b)| [false, true].map(move |f| (p, b, f)))
            .map(|(p, b, f)| self.row(p, b, Granularity::M2, f))
            .collect();
        let stopped: Vec<_> = [&k::RefuseHugetlbfs as Policy, &k::FailPscHugetlbfs]
            .into_iter()
            .flat_map(|p| [false, true].map(move |f| (p, f)))
            .map(|(p, f)| self.row(p, Backing::Hugetlbfs2m, Granularity::M2, f))
            .collect();
        Verdict {
            headline: "a 2M-chunk guest never hits an RMP violation on hugetlbfs; refusing hugetlbfs stops it anyway",
            claim: "a guest changing page state in 2M chunks never hits an RMP violation on hugetlbfs, yet refusing hugetlbfs stops it anyway",
            settings: "2M guest on hugetlbfs 2M/1G under rfc-host-split, rfc-v4 and npt-demote, both NPT-level settings"
                .into(),
            status: Status::of(&[
                ok.iter().all(|r| o(*r) == "completed" && is(*r, "rmp_npf", 0)),
                stopped[..2].iter().all(|r| stopped_for(*r, Reason::BackingRefused))
                    && stopped[2..].iter().all(|r| stopped_for(*r, Reason::PscFailed)),
            ]),
            falsifier: "an RMP #NPF or a failure for the 2M guest under a policy that accepts hugetlbfs",
            by_construction: Some(
                "the second half: refuse-hugetlbfs and fail-psc-hugetlbfs stop hugetlbfs VMs by definition",
            ),
            evidence: format!(
                "2M guest on hugetlbfs: rfc-host-split/rfc-v4/npt-demote {} with {} RMP #NPFs; refuse-hugetlbfs {}, fail-psc-hugetlbfs {}",
                ok.iter().map(|r| o(*r)).collect::<Vec<_>>().join("/"),
                ok.iter().map(|r| m(*r, "rmp_npf")).sum::<f64>(),
                stopped[..2].iter().map(|r| o(*r)).collect::<Vec<_>>().join("/"),
                stopped[2..].iter().map(|r| o(*r)).collect::<Vec<_>>().join("/")
            ),
        }
    }

    fn recoalescing(&self) -> Verdict {
        let naive = self.claim_run("10-");
        let saved = self.claim_run("11-");
        Verdict {
            headline: "PSMASH is one-way: re-coalescing needs a whole-2M PVALIDATE and loses data unless saved",
            claim: "PSMASH is one-way: regaining the 2M entry needs a whole-2M PVALIDATE, and re-coalescing without saving loses data",
            settings:
                "examples/debate/10 and 11: npt-demote, hugetlbfs-2m, 2M guest, npt_level_follows_rmp = false"
                    .into(),
            status: Status::of(&[
                m(naive, "psmash") > 0.0 && is(naive, "recoalesced", 1) && m(naive, "data_loss_pages") > 0.0,
                is(saved, "data_loss_pages", 0),
            ]),
            falsifier: "the naive re-coalesce keeping every page's data, or save-restore losing any",
            by_construction: None,
            evidence: format!(
                "naive: {} pages lost; save-restore: {} lost",
                m(naive, "data_loss_pages"),
                m(saved, "data_loss_pages")
            ),
        }
    }

    fn gmem(&self) -> Verdict {
        let rows: Vec<_> = [Backing::Gmem4k, Backing::Gmem2m, Backing::Gmem1g]
            .into_iter()
            .flat_map(|b| [Granularity::K4, Granularity::M2].map(move |g| self.row(&k::Gmem, b, g, true)))
            .collect();
        let host_faults: f64 = rows.iter().map(|r| m(*r, "sigbus") + m(*r, "efault")).sum();
        let (np, p) = (self.claim_run("12-"), self.claim_run("13-"));
        Verdict {
            headline: "gmem never faults the host; 4K folios cost ~1024 #NPF exits per 4 MiB unless pre-faulted",
            claim: "gmem never faults the host; with 4K folios it takes about 1024 #NPF exits per 4 MiB accepted unless the VMM pre-faults",
            settings: "gmem (upstream: npt_level_follows_rmp = true) on gmem-4k/2m/1g, 4K and 2M guests; \
                       examples/debate/12 and 13"
                .into(),
            // 4 MiB is 1024 4K pages, each faulted in by its own #NPF without pre-faulting; with it,
            // the page-state change's exits stay a handful.
            status: Status::of(&[
                host_faults == 0.0,
                m(np, "exits.npf") >= 1024.0 && m(p, "exits.npf") <= 4.0,
            ]),
            falsifier: "a SIGBUS or -EFAULT on a gmem row; fewer than 1024 #NPF exits without pre-faulting, or \
                        more than 4 with it",
            by_construction: None,
            evidence: format!(
                "gmem rows: {host_faults} host faults; 4 MiB accept on gmem-4k: {} #NPF exits without prefault, {} with",
                m(np, "exits.npf"),
                m(p, "exits.npf")
            ),
        }
    }

    /// Upstream's 2026 answer against the 2021 one: the same host write to a private page, SIGBUS
    /// at the in-place guest_memfd's fault handler (no RMP #PF, no split) versus the RFC's RMP #PF
    /// that splits the THP first; and the folio cost of conversions, a split and a merge per folio
    /// (examples/upstream-2026/01–03).
    fn in_place(&self) -> Verdict {
        let (inplace, rfc, conv) = (
            self.claim_run("upstream-2026/01-"),
            self.claim_run("upstream-2026/02-"),
            self.claim_run("upstream-2026/03-"),
        );
        Verdict {
            headline: "gmem-inplace: a host write to private memory is SIGBUS at the file, not a split",
            claim: "under in-place guest_memfd a host write to a private page is SIGBUS at the file with no RMP #PF and no host split, where the 2021 RFC splits the THP first; a folio splits and merges once per folio",
            settings: "gmem-inplace on gmem-hugetlb-2m and rfc-host-split on thp, the same steps \
                       (examples/upstream-2026/01, 02); 4K conversions of four 2M folios (03)"
                .into(),
            // 01: the VMM's write and read of the private page (2 SIGBUS), no host split; 02: the
            // VMM's write splits the THP (1) before its SIGBUS (1). 03: ten 4K conversions to
            // shared over four folios, one folio twice with two pages: 5 splits and 5 merges.
            status: Status::of(&[
                m(inplace, "sigbus") >= 1.0 && m(inplace, "host_splits") == 0.0,
                m(rfc, "sigbus") >= 1.0 && m(rfc, "host_splits") >= 1.0,
                is(conv, "folio_splits", 5) && is(conv, "folio_merges", 5),
            ]),
            falsifier: "a host split (or no SIGBUS) for the in-place write; no host split before the 2021 \
                        SIGBUS; folio splits or merges other than one per folio and share episode",
            by_construction: Some("SIGBUS at the file is the in-place series' rule (K10, S9)"),
            evidence: format!(
                "host write to a private page: in-place {} SIGBUS, {} host splits; 2021 RFC on THP {} SIGBUS, \
                 {} host splits; 4K conversions over four 2M folios: {} folio splits, {} merges",
                m(inplace, "sigbus"),
                m(inplace, "host_splits"),
                m(rfc, "sigbus"),
                m(rfc, "host_splits"),
                m(conv, "folio_splits"),
                m(conv, "folio_merges")
            ),
        }
    }

    /// What survives a steady phase of driver conversions under in-place conversion: every folio
    /// holding a shared page is split (guestmem_hugetlb RFC v2), where gmem keeps shared pages in
    /// a separate pool and its private folios whole. Read from the Linux workload rows.
    fn in_place_huge_capable(&self) -> Verdict {
        let (inplace, gmem) = (
            self.linux_workload(&k::GmemInplace, Backing::GmemHugetlb2m),
            self.linux_workload(&k::Gmem, Backing::Gmem2m),
        );
        let one_gig: Vec<_> =
            [Backing::GmemHugetlb1g, Backing::Gmem1g].map(|b| self.linux_workload(&k::GmemInplace, b)).into();
        let completed = |r: Option<&ScenarioRun>| o(r) == "completed";
        let pct = |r: Option<&ScenarioRun>| 100.0 * m(r, "huge_capable");
        Verdict {
            headline: "gmem-inplace: conversions leave less memory huge-capable than gmem's two pools; on 1G none",
            claim: "under in-place conversion every folio holding a shared page is split: after the Linux workload's driver conversions less guest memory stays huge-capable on 2M HugeTLB folios than under gmem with its separate shared pool, and on 1G folios none does",
            settings: "the realistic workload with the Linux guest: gmem-inplace on gmem-hugetlb-2m against gmem on \
                       gmem-2m (256 MiB guests), gmem-inplace on gmem-hugetlb-1g and gmem-1g (1 GiB guests)"
                .into(),
            // A 1 GiB guest on 1G folios has one folio, and its boot shares the SWIOTLB buffer.
            status: Status::of(&[
                completed(inplace) && completed(gmem) && m(inplace, "huge_capable") < m(gmem, "huge_capable"),
                one_gig.iter().all(|&r| completed(r) && m(r, "huge_capable") == 0.0),
            ]),
            falsifier: "the in-place 2M HugeTLB row keeping at least as much memory huge-capable as gmem-2m, or a 1G \
                        row keeping any (or any of them not completing)",
            by_construction: Some(
                "a folio with a shared page is split (the HugeTLB series' rule, S9), so a 1 GiB guest on 1G \
                 folios, whose boot shares its SWIOTLB buffer, keeps nothing huge; how much memory 2M \
                 folios keep is the workload's measurement",
            ),
            evidence: format!(
                "huge-capable at the end: gmem-inplace on gmem-hugetlb-2m {:.1} %, gmem on gmem-2m {:.1} %; \
                 gmem-inplace on gmem-hugetlb-1g {:.1} %, on gmem-1g {:.1} %",
                pct(inplace),
                pct(gmem),
                pct(one_gig[0]),
                pct(one_gig[1])
            ),
        }
    }

    /// The folio cost of the workload's driver buffers under in-place conversion on 2M HugeTLB
    /// folios: a buffer's return merges its folio back once no page of it is shared, whatever the
    /// buffer's size (shareability kept per range, guestmem_hugetlb RFC v2). The boot only shares
    /// (SWIOTLB), so every merge is a buffer's; splits cannot be told apart the same way.
    fn in_place_folio_cost(&self) -> Verdict {
        let r = self.linux_workload(&k::GmemInplace, Backing::GmemHugetlb2m);
        let buffers = r.and_then(|r| r.workload.as_ref()).map_or(0, |w| w.actions.conversions) as f64;
        let (splits, merges) = (m(r, "folio_splits"), m(r, "folio_merges"));
        Verdict {
            headline: "gmem-inplace on 2M HugeTLB: folios merge back as buffers return, at most once a buffer",
            claim: "under in-place conversion on 2M HugeTLB folios the folios that driver buffers split merge back as the buffers return, at most once per buffer whatever its size (not once per page)",
            settings: "the realistic workload with the Linux guest, gmem-inplace on gmem-hugetlb-2m (driver buffers \
                       of 4K, one in eight 64K)"
                .into(),
            status: Status::of(&[o(r) == "completed", merges >= 1.0, merges <= buffers]),
            falsifier: "no merge at all (folios left split after their buffers returned), or more folio merges \
                        than driver buffers (a cost per page)",
            by_construction: Some(
                "a folio merges once its last shared page returns, whatever the request's size (the model's \
                 rule, S9), so the bound of one per buffer follows from it; that buffers' folios do merge, \
                 and how often, is the measurement",
            ),
            evidence: format!(
                "{buffers} driver buffers: {merges} folio merges ({:.0} per 1,000 buffers); {splits} folio splits \
                 over the run, the boot's SWIOTLB share included",
                1000.0 * merges / buffers
            ),
        }
    }

    /// How much host memory RMPOPT keeps marked (its host writes skip the RMP check) while a
    /// guest runs: the share of 1 GiB regions holding no assigned page. One 1 GiB HugeTLB folio
    /// clears one region; 4K folios scattered over a fragmented host clear them all; the teardown
    /// hook marks the guest's region again once the VM is gone (examples/upstream-2026/06, 09, 08).
    fn rmpopt(&self) -> Verdict {
        let (one_gig, teardown, scattered) = (
            self.claim_run("upstream-2026/06-"),
            self.claim_run("upstream-2026/08-"),
            self.claim_run("upstream-2026/09-"),
        );
        let cov = |r: Option<&ScenarioRun>| m(r, "rmpopt_coverage");
        Verdict {
            headline: "RMPOPT: a 1G guest_memfd guest leaves 7/8 of host memory marked, scattered 4K folios none",
            claim: "RMPOPT's benefit depends on the backing: with a 1 GiB guest in one 1G HugeTLB folio the host's other regions stay marked and their writes skip the RMP check, with 4K guest_memfd folios scattered over a fragmented host no region does; the teardown hook marks the guest's region again once the VM is gone",
            settings: "an 8 GiB host with RMPOPT, a 1 GiB guest accepting 64 MiB: gmem-inplace on gmem-hugetlb-1g \
                       (examples/upstream-2026/06, and 08 with a teardown), gmem on gmem-4k with allocation = \
                       \"scattered\" (09)"
                .into(),
            // 8 regions: the folio's region cleared leaves 7/8; 16384 scattered folios clear all 8.
            status: Status::of(&[
                cov(one_gig) > cov(scattered),
                cov(scattered) < 0.125,
                cov(teardown) > cov(one_gig),
            ]),
            falsifier: "the scattered 4K guest keeping as much host memory marked as the 1G guest, or a region of \
                        its own; or the teardown marking nothing more",
            by_construction: None,
            evidence: format!(
                "host memory RMPOPT keeps marked: 1G HugeTLB guest {:.1} %, scattered 4K guest {:.1} %, \
                 1G guest after teardown {:.1} %",
                100.0 * cov(one_gig),
                100.0 * cov(scattered),
                100.0 * cov(teardown)
            ),
        }
    }

    fn soundness(&self) -> Verdict {
        let runs = || self.matrix.iter().chain(&self.claims).chain(&self.workloads);
        let fns: f64 = runs().map(|r| m(Some(r), "false_negatives")).sum();
        let bad: usize = runs().map(|r| r.result.violations.len()).sum();
        Verdict {
            headline: "no access was wrongly allowed and no invariant broke, under any policy",
            claim: "no access was wrongly allowed and no invariant broke, under any policy",
            settings:
                "every run of the suite (the matrix at both NPT-level settings, the claim scenarios and \
                       the workloads at their policies' defaults)"
                    .into(),
            status: Status::of(&[fns == 0.0, bad == 0]),
            falsifier: "a false negative (an access that completed but should have faulted) or an invariant \
                        violation in any run",
            by_construction: None,
            evidence: format!(
                "{fns} false negatives, {bad} invariant violations over {} runs",
                self.matrix.len() + self.claims.len() + self.workloads.len()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use snpsim_engine::outcome::{Ending, Reason};
    use snpsim_engine::prelude::*;

    /// A finished run of nothing under `policy("npt-demote")`, ended with `reason` if given.
    fn run_ending(reason: Option<Reason>) -> ScenarioRun {
        let c =
            SimConfig::new(policy("npt-demote").unwrap(), MemoryBacking::Vma(VmaBacking::Thp), 4096, 16384);
        let mut result = Simulation::new(c).unwrap().finish();
        if let Some(r) = reason {
            let e = Ending::new(r, "test");
            (result.outcome, result.reason) = (e.outcome(), Some(e.reason));
        }
        ScenarioRun {
            name: "t".into(),
            policy: "npt-demote",
            backing: "thp",
            granularity: "4k",
            preset: "linux",
            npt_level_follows_rmp: false,
            validation_tracking: true,
            adversary: Vec::new(),
            result,
            failures: Vec::new(),
            workload: None,
            seed: 0,
            source: String::new(),
            run_index: 0,
        }
    }

    #[test]
    fn a_failed_instruction_is_not_the_vm_error_a_claim_predicts() {
        assert_eq!(o(Some(&run_ending(None))), "completed");
        assert_eq!(o(Some(&run_ending(Some(Reason::HostSplitImpossible)))), "vm_error");
        assert_ne!(o(Some(&run_ending(Some(Reason::RmpupdateFailed)))), "vm_error");
        assert_ne!(o(Some(&run_ending(Some(Reason::PsmashFailed)))), "vm_error");
        assert_eq!(o(None), "missing");
    }
}
