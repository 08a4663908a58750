//! The metrics of a run. Field names are the contract: JSON output uses them as keys, and
//! scenario expectations name them (nested ones with a dot: `exits.npf`, `npt_coverage.2m`).

use std::collections::BTreeMap;

use serde::Serialize;

/// The NPT coverage: the share of guest memory (the memslot's pages) mapped by NPT leaves of each
/// size, and the share not mapped; the four sum to 1. Shares of guest memory rather than of mapped
/// memory, so that a policy that zaps leaves (memory left unmapped until the guest touches it
/// again) does not look better than one that splits them in place.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Coverage {
    /// Share mapped by 4K leaves.
    #[serde(rename = "4k")]
    pub k4: f64,
    /// Share mapped by 2M leaves.
    #[serde(rename = "2m")]
    pub m2: f64,
    /// Share mapped by 1G leaves.
    #[serde(rename = "1g")]
    pub g1: f64,
    /// Share not mapped.
    pub unmapped: f64,
}

impl Default for Coverage {
    /// Nothing mapped.
    fn default() -> Self {
        Coverage { k4: 0.0, m2: 0.0, g1: 0.0, unmapped: 1.0 }
    }
}

impl Coverage {
    /// The member names of the `npt_coverage` metric (its serialized field names).
    pub const LEVELS: [&'static str; 4] = ["4k", "2m", "1g", "unmapped"];

    /// Shares of `guest_pages` from the pages mapped at `[4K, 2M, 1G]` (nothing mapped when the
    /// guest has no memory).
    pub fn from_pages(c: [u64; 3], guest_pages: u64) -> Self {
        if guest_pages == 0 {
            return Coverage::default();
        }
        let total = guest_pages as f64;
        let mapped = c[0].saturating_add(c[1]).saturating_add(c[2]);
        Coverage {
            k4: c[0] as f64 / total,
            m2: c[1] as f64 / total,
            g1: c[2] as f64 / total,
            unmapped: guest_pages.saturating_sub(mapped) as f64 / total,
        }
    }
}

/// Every metric of one run; every key is present even when zero.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Metrics {
    /// #NPF exits with the RMP bit.
    pub rmp_npf: u64,
    /// #NPF exits with RMP and SIZEM.
    pub rmp_npf_sizem: u64,
    /// #NPF exits of any kind.
    pub npf: u64,
    /// NPT demotions by `from_to` size.
    pub npt_demotions: BTreeMap<String, u64>,
    /// Demotions deeper than needed.
    pub npt_demotions_needless: u64,
    /// Host huge mappings split.
    pub host_splits: u64,
    /// Host splits an access needed: it would have taken an RMP #PF through the replaced mapping
    /// (measured by counterfactual, `snpsim_host::SplitLedger`).
    pub host_splits_needed: u64,
    /// Host splits no access needed: `host_splits` − `host_splits_needed`.
    pub host_splits_needless: u64,
    /// Direct-map leaves split.
    pub direct_map_splits: u64,
    /// PSMASH executed.
    pub psmash: u64,
    /// RMPUPDATE executed.
    pub rmpupdate: u64,
    /// PVALIDATE executed.
    pub pvalidate: u64,
    /// RMPADJUST executed.
    pub rmpadjust: u64,
    /// PSC requests (VMGEXITs).
    pub psc_requests: u64,
    /// Pages named by PSC requests.
    pub psc_pages: u64,
    /// PSC requests answered with an error.
    pub psc_failed: u64,
    /// Conversions caused by guest accesses in the other state.
    pub implicit_conversions: u64,
    /// Exits by reason.
    pub exits: BTreeMap<String, u64>,
    /// Races between vCPUs that KVM's retry loops absorbed (interleaved runs; all zero in
    /// sequential ones): `psmash_fail_inuse`, `rmpupdate_fail_inuse`, `psmash_already_4k`,
    /// `spurious_npf`.
    pub races: BTreeMap<String, u64>,
    /// VMM writes that got SIGBUS.
    pub sigbus: u64,
    /// Kernel uaccess writes that got -EFAULT.
    pub efault: u64,
    /// Kernel direct-map writes that took an RMP #PF (an oops in Linux).
    pub kernel_oops: u64,
    /// Host writes whose RMP #PF handler retried without progress (`host_hang`).
    pub host_fault_loops: u64,
    /// Conditions upstream KVM only WARNs about and goes on from (a failed PSMASH in
    /// `sev_handle_rmp_fault`, a failed PSMASH or RMPUPDATE in `sev_gmem_invalidate`).
    pub kvm_warnings: u64,
    /// Data pages found scrambled or stale on a guest read.
    pub data_loss_pages: u64,
    /// Accesses that completed but should have faulted.
    pub false_negatives: u64,
    /// Distinct invariant violations.
    pub invariant_violations: u64,
    /// 2M regions the guest re-coalesced.
    pub recoalesced: u64,
    /// NPT coverage at the end of the run (shares of guest memory).
    pub npt_coverage: Coverage,
    /// Share of guest memory that could still be mapped by NPT leaves of 2M or more at the end of
    /// the run: its backing can hold one and its RMP entry allows one
    /// (`snpsim_kvm::Kvm::huge_capable`).
    pub huge_capable: f64,
    /// Simulated time.
    pub sim_time_ns: u64,
    /// Simulated time by cost item.
    pub sim_time_by_item: BTreeMap<String, u64>,
}

/// The name of a metric: a field of [`Metrics`] as its JSON key and `[expect]` name it
/// (`sim_time_by_item` is no name of its own: it holds the members of `sim_time_ns`). Families
/// ([`MetricName::is_family`]) also have members, named `FAMILY.MEMBER`.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumIter,
    strum::VariantNames,
)]
#[strum(serialize_all = "snake_case")]
#[allow(missing_docs)] // each is the field of `Metrics` of the same name
pub enum MetricName {
    RmpNpf,
    RmpNpfSizem,
    Npf,
    NptDemotions,
    NptDemotionsNeedless,
    HostSplits,
    HostSplitsNeeded,
    HostSplitsNeedless,
    DirectMapSplits,
    Psmash,
    Rmpupdate,
    Pvalidate,
    Rmpadjust,
    PscRequests,
    PscPages,
    PscFailed,
    ImplicitConversions,
    Exits,
    Races,
    Sigbus,
    Efault,
    KernelOops,
    HostFaultLoops,
    KvmWarnings,
    DataLossPages,
    FalseNegatives,
    InvariantViolations,
    Recoalesced,
    NptCoverage,
    HugeCapable,
    SimTimeNs,
}

impl MetricName {
    /// The name as JSON output and `[expect]` write it.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// Whether the metric has members (`FAMILY.MEMBER`): `npt_demotions` by level pair, `exits`
    /// by reason, `races` by kind, `npt_coverage` by level, `sim_time_ns` by cost item.
    pub const fn is_family(self) -> bool {
        matches!(
            self,
            MetricName::NptDemotions
                | MetricName::Exits
                | MetricName::Races
                | MetricName::NptCoverage
                | MetricName::SimTimeNs
        )
    }
}

/// The counts of a family kept by name (the members that occurred; a member absent is 0).
fn member_count(map: &BTreeMap<String, u64>, member: &str) -> f64 {
    map.get(member).map_or(0.0, |&v| v as f64)
}

/// The total of a family kept by name, summed in key order (`+ 0.0`: an empty `f64` sum is
/// -0.0, and a total of nothing is 0).
fn family_total(map: &BTreeMap<String, u64>) -> f64 {
    map.values().map(|&v| v as f64).sum::<f64>() + 0.0
}

impl Metrics {
    /// The value of metric `name`: a count, a share or a time; a family's total (its members'
    /// sum, except `sim_time_ns`, which is its own field).
    pub fn total(&self, name: MetricName) -> f64 {
        use MetricName as M;
        let c = &self.npt_coverage;
        match name {
            M::RmpNpf => self.rmp_npf as f64,
            M::RmpNpfSizem => self.rmp_npf_sizem as f64,
            M::Npf => self.npf as f64,
            M::NptDemotions => family_total(&self.npt_demotions),
            M::NptDemotionsNeedless => self.npt_demotions_needless as f64,
            M::HostSplits => self.host_splits as f64,
            M::HostSplitsNeeded => self.host_splits_needed as f64,
            M::HostSplitsNeedless => self.host_splits_needless as f64,
            M::DirectMapSplits => self.direct_map_splits as f64,
            M::Psmash => self.psmash as f64,
            M::Rmpupdate => self.rmpupdate as f64,
            M::Pvalidate => self.pvalidate as f64,
            M::Rmpadjust => self.rmpadjust as f64,
            M::PscRequests => self.psc_requests as f64,
            M::PscPages => self.psc_pages as f64,
            M::PscFailed => self.psc_failed as f64,
            M::ImplicitConversions => self.implicit_conversions as f64,
            M::Exits => family_total(&self.exits),
            M::Races => family_total(&self.races),
            M::Sigbus => self.sigbus as f64,
            M::Efault => self.efault as f64,
            M::KernelOops => self.kernel_oops as f64,
            M::HostFaultLoops => self.host_fault_loops as f64,
            M::KvmWarnings => self.kvm_warnings as f64,
            M::DataLossPages => self.data_loss_pages as f64,
            M::FalseNegatives => self.false_negatives as f64,
            M::InvariantViolations => self.invariant_violations as f64,
            M::Recoalesced => self.recoalesced as f64,
            // In the order of the members' names, as every family total is summed.
            M::NptCoverage => [c.g1, c.m2, c.k4, c.unmapped].iter().sum::<f64>() + 0.0,
            M::HugeCapable => self.huge_capable,
            M::SimTimeNs => self.sim_time_ns as f64,
        }
    }

    /// The value of member `member` of family `name` (0 for a member that never occurred, and for
    /// an unknown one: the caller checks names against the family's closed set); `None` when
    /// `name` is no family.
    pub fn member(&self, name: MetricName, member: &str) -> Option<f64> {
        let c = &self.npt_coverage;
        Some(match name {
            MetricName::NptDemotions => member_count(&self.npt_demotions, member),
            MetricName::Exits => member_count(&self.exits, member),
            MetricName::Races => member_count(&self.races, member),
            MetricName::SimTimeNs => member_count(&self.sim_time_by_item, member),
            MetricName::NptCoverage => match member {
                "4k" => c.k4,
                "2m" => c.m2,
                "1g" => c.g1,
                "unmapped" => c.unmapped,
                _ => 0.0,
            },
            _ => return None,
        })
    }

    /// The value of the metric named `name` as `[expect]` writes it: a metric, a family's total,
    /// or `FAMILY.MEMBER`. `None` for a name that is no metric or no family's member.
    pub fn get(&self, name: &str) -> Option<f64> {
        match name.split_once('.') {
            Some((family, member)) => self.member(family.parse().ok()?, member),
            None => Some(self.total(name.parse().ok()?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::{IntoEnumIterator, VariantNames};

    /// The metric names are the JSON keys of `Metrics` but for
    /// `sim_time_by_item` (the members of `sim_time_ns`); the typed lookup agrees with the JSON.
    #[test]
    #[allow(clippy::float_cmp)] // exact: both sides add the same small integers and quarters
    fn names_are_the_fields() {
        let mut m = Metrics { rmp_npf: 3, huge_capable: 0.25, sim_time_ns: 7, ..Metrics::default() };
        m.exits.insert("npf".into(), 5);
        m.exits.insert("psc".into(), 2);
        m.sim_time_by_item.insert("npf_exit".into(), 4);
        m.npt_coverage = Coverage::from_pages([1, 2, 0], 4);
        let json = serde_json::to_value(&m).unwrap();
        let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        let mut names: Vec<&str> = MetricName::VARIANTS.to_vec();
        names.push("sim_time_by_item");
        names.sort_unstable();
        assert_eq!(keys, names);
        for n in MetricName::iter() {
            let v = &json[n.name()];
            let want = v.as_f64().unwrap_or_else(|| {
                v.as_object().unwrap().values().filter_map(serde_json::Value::as_f64).sum()
            });
            // Exact: both sides add the same small integers and quarters (an empty sum is -0.0,
            // equal to 0.0 but not bit for bit).
            assert_eq!(m.total(n), want, "{}", n.name());
        }
        // 5 npf exits + 2 psc exits; 1 of 4 pages at 4K.
        assert_eq!(m.get("exits"), Some(7.0));
        assert_eq!(m.get("exits.psc"), Some(2.0));
        assert_eq!(m.get("exits.hlt"), Some(0.0));
        assert_eq!(m.get("npt_coverage.4k"), Some(0.25));
        assert_eq!(m.get("sim_time_ns.npf_exit"), Some(4.0));
        assert_eq!(m.get("sim_time_ns"), Some(7.0));
        assert_eq!(m.get("sigbus.x"), None);
        assert_eq!(m.get("sim_time_by_item"), None);
        assert_eq!(m.get("outcome"), None);
    }
}
