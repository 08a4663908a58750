//! `[expect]`: expected metric values and outcome.

use core::fmt;
use std::collections::BTreeMap;

use super::names::{Cause, Named, Outcome, Reason};

/// The metric names that `[expect]` may name (the JSON keys of a result's
/// `metrics`), plus `outcome` and the `cause` and `reason` of a run that did not complete.
///
/// The families in [`METRIC_FAMILIES`] may also be expected per member with an inline table or a
/// dotted key: `exits = { npf = ">=1024" }` is the metric `exits.npf`.
pub const METRICS: &[&str] = &[
    "outcome",
    "cause",
    "reason",
    "rmp_npf",
    "rmp_npf_sizem",
    "npf",
    "npt_demotions",
    "npt_demotions_needless",
    "host_splits",
    "host_splits_needed",
    "host_splits_needless",
    "direct_map_splits",
    "psmash",
    "rmpupdate",
    "pvalidate",
    "rmpadjust",
    "psc_requests",
    "psc_pages",
    "psc_failed",
    "implicit_conversions",
    "exits",
    "races",
    "sigbus",
    "efault",
    "kernel_oops",
    "host_fault_loops",
    "kvm_warnings",
    "data_loss_pages",
    "false_negatives",
    "invariant_violations",
    "recoalesced",
    "npt_coverage",
    "huge_capable",
    "folio_splits",
    "folio_merges",
    "conversions_refused",
    "rmpopt_coverage",
    "sim_time_ns",
];

/// Metrics with members, expected as `FAMILY.MEMBER`: `npt_demotions` by from/to level, `exits` by
/// reason, `races` by kind, `npt_coverage` by level (`4k`, `2m`, `1g`, `unmapped`: shares of guest
/// memory between 0 and 1, summing to 1), `sim_time_ns` by cost item. The family name alone is the
/// total (except `npt_coverage`, whose total is always 1).
pub const METRIC_FAMILIES: &[&str] = &["npt_demotions", "exits", "races", "npt_coverage", "sim_time_ns"];

/// The members of `npt_coverage`.
pub const NPT_COVERAGE_LEVELS: &[&str] = &snpsim_engine::metrics::Coverage::LEVELS;

/// Why an expectation is refused: a name outside its closed set, a malformed comparison, or a
/// bound that makes the expectation unable to fail (or to hold).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ExpectError {
    /// A metric name that is neither a metric nor `FAMILY.MEMBER` of a family.
    #[error("unknown metric {name:?}; accepted: {accepted}; and FAMILY.MEMBER for the families {families}")]
    UnknownMetric {
        /// The name given.
        name: String,
        /// The metric names, comma-separated.
        accepted: String,
        /// The families, comma-separated.
        families: String,
    },
    /// A member that is not one of its family's.
    #[error("unknown {what} {member:?} of `{family}`; accepted: {accepted}")]
    UnknownMember {
        /// The family (`exits`, `races`, ...).
        family: &'static str,
        /// What its members are (`exit reason`, `race kind`, ...).
        what: &'static str,
        /// The member given.
        member: String,
        /// The family's members, comma-separated.
        accepted: String,
    },
    /// `npt_coverage` named without a level (its members always sum to 1).
    #[error(
        "`npt_coverage` has no total (its members sum to 1); name a level: \
         npt_coverage = {{ \"2m\" = \">=0.99\" }}; accepted levels: {accepted}"
    )]
    CoverageTotal {
        /// The levels, comma-separated.
        accepted: String,
    },
    /// A string that is neither a comparison nor a range.
    #[error(
        "{text:?} is not a comparison; write an operator (==, !=, <, <=, >, >=) and a number, \
         e.g. \">0\", \">=1024\", \"<=4\", \">=0.99\", or a range \"2.6e9..2.7e9\""
    )]
    NotComparison {
        /// The text given.
        text: String,
    },
    /// A `LO..HI` string whose bounds are not two numbers, the lower first.
    #[error("{text:?} is not a range; write two numbers, the lower first, e.g. \"2.6e9..2.7e9\"")]
    NotRange {
        /// The text given.
        text: String,
    },
    /// A negative number: every metric is a count, a time or a share, never below 0.
    #[error("{value} is negative; `{metric}` is never below 0, so the expectation could not be met")]
    Negative {
        /// The metric.
        metric: String,
        /// The number given.
        value: f64,
    },
    /// An expectation every value of the metric satisfies (`>=0`; `<=1` of a share), or none does
    /// (`<0`; `>1` of a share; a fraction of a count).
    #[error(
        "`{metric}` {expect} {}; accepted: a bound within the metric's values ({domain})",
        if *.always { "holds for every value, so it could never fail" } else { "holds for no value, so it could never pass" }
    )]
    Vacuous {
        /// The metric.
        metric: String,
        /// The expectation as written canonically.
        expect: String,
        /// True when it always holds, false when it never does.
        always: bool,
        /// The metric's values (`a whole number >= 0`, `a share between 0 and 1`).
        domain: &'static str,
    },
}

impl ExpectError {
    /// Whether the error is in the name of the metric (rather than in the expected value).
    pub const fn is_name(&self) -> bool {
        matches!(
            self,
            ExpectError::UnknownMetric { .. }
                | ExpectError::UnknownMember { .. }
                | ExpectError::CoverageTotal { .. }
        )
    }
}

/// The members of family `family` and what they are, from the crate that counts them: exit
/// reasons from `snpsim_kvm::stats::exit`, race kinds from `snpsim_kvm::Races`, level pairs from
/// `snpsim_kvm::stats::demotion_names`, coverage levels from `snpsim_engine::metrics::Coverage`, cost items
/// from `snpsim_engine::cost` (the ones priced into `sim_time_ns`). `None` for a name that is no family.
pub fn family_members(family: &str) -> Option<(&'static str, Vec<String>)> {
    let own = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect();
    Some(match family {
        "exits" => ("exit reason", own(&snpsim_kvm::stats::exit::ALL)),
        "races" => ("race kind", own(&snpsim_kvm::Races::NAMES)),
        "npt_demotions" => ("level pair", snpsim_kvm::stats::demotion_names().collect()),
        "npt_coverage" => ("level", own(NPT_COVERAGE_LEVELS)),
        "sim_time_ns" => (
            "cost item",
            snpsim_engine::cost::ALL[..snpsim_engine::cost::PRICED]
                .iter()
                .map(|c| c.name.to_owned())
                .collect(),
        ),
        _ => return None,
    })
}

/// Whether `[expect]` may name the metric `name`: one of [`METRICS`], or `FAMILY.MEMBER` with a
/// member of the family's closed set ([`family_members`]).
pub fn check_metric_name(name: &str) -> Result<(), ExpectError> {
    if name == "npt_coverage" {
        return Err(ExpectError::CoverageTotal { accepted: NPT_COVERAGE_LEVELS.join(", ") });
    }
    if METRICS.contains(&name) {
        return Ok(());
    }
    if let Some((family, member)) = name.split_once('.')
        && let Some(family) = METRIC_FAMILIES.iter().copied().find(|f| *f == family)
        && let Some((what, members)) = family_members(family)
    {
        if members.iter().any(|m| m == member) {
            return Ok(());
        }
        return Err(ExpectError::UnknownMember {
            family,
            what,
            member: member.to_owned(),
            accepted: members.join(", "),
        });
    }
    Err(ExpectError::UnknownMetric {
        name: name.to_owned(),
        accepted: METRICS.join(", "),
        families: METRIC_FAMILIES.join(", "),
    })
}

/// Whether a metric is a share (of guest memory, or of host memory for `rmpopt_coverage`: between
/// 0 and 1) rather than a whole count.
fn is_share(metric: &str) -> bool {
    metric == "huge_capable" || metric == "rmpopt_coverage" || metric.starts_with("npt_coverage.")
}

/// Whether `expect` of `metric` can both hold and fail over the metric's values: no negative
/// number (counts, times and shares are never below 0), and not true of every value (`>=0`) or of
/// none (`<0`, `==0.5` of a count, `>1` of a share).
#[allow(clippy::float_cmp)] // the bounds compared are exact literals (0, 1) or integral tests
pub fn check_expect_value(metric: &str, expect: &Expect) -> Result<(), ExpectError> {
    let share = is_share(metric);
    let negative = |value: f64| ExpectError::Negative { metric: metric.to_owned(), value };
    let vacuous = |always: bool| ExpectError::Vacuous {
        metric: metric.to_owned(),
        expect: expect.to_string(),
        always,
        domain: if share { "a share between 0 and 1" } else { "a whole number >= 0" },
    };
    // The values the metric takes: [0, 1] for a share, 0, 1, 2, ... for a count.
    let max = if share { 1.0 } else { f64::INFINITY };
    let is_value = |v: f64| (0.0..=max).contains(&v) && (share || v.fract() == 0.0);
    match *expect {
        Expect::Outcome(_) | Expect::Cause(_) | Expect::Reason(_) => Ok(()),
        Expect::Compare { value, .. } if value < 0.0 => Err(negative(value)),
        Expect::Range { lo, .. } if lo < 0.0 => Err(negative(lo)),
        Expect::Compare { op, value } => {
            let (never, always) = match op {
                CmpOp::Eq => (!is_value(value), false),
                CmpOp::Ne => (false, !is_value(value)),
                CmpOp::Lt => (value == 0.0, value > max),
                CmpOp::Le => (false, value >= max),
                CmpOp::Gt => (value >= max, false),
                CmpOp::Ge => (value > max, value == 0.0),
            };
            if never || always { Err(vacuous(always)) } else { Ok(()) }
        }
        Expect::Range { lo, hi } => {
            let never = lo > max || (!share && lo.ceil() > hi);
            let always = lo == 0.0 && hi >= max;
            if never || always { Err(vacuous(always)) } else { Ok(()) }
        }
    }
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// `==` (also a bare number, or a TOML integer or float).
    Eq,
    /// `!=`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
}

impl CmpOp {
    /// The operator as written.
    pub const fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// One expectation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Expect {
    /// A metric compared with a number: `sigbus = 1` is `==1`, `">=1024"`, `"<=4"`,
    /// `">=0.99"`.
    Compare {
        /// The operator.
        op: CmpOp,
        /// The number compared with (finite).
        value: f64,
    },
    /// A metric within an inclusive range: `"2.6e9..2.7e9"` (calibration tolerances).
    Range {
        /// The least value accepted.
        lo: f64,
        /// The greatest value accepted.
        hi: f64,
    },
    /// The run's outcome (`outcome = "completed"`).
    Outcome(Outcome),
    /// The cause of the run's `vm_error` (`cause = "unresolvable"`).
    Cause(Cause),
    /// Why the run did not complete (`reason = "host-split-impossible"`).
    Reason(Reason),
}

impl Expect {
    /// Parse a comparison string: an optional operator (`==`, `!=`, `<`, `<=`, `>`, `>=`; none
    /// means `==`) and a finite number (`">0"`, `">=1024"`, `">=0.99"`, `"3"`).
    pub fn parse_comparison(text: &str) -> Result<Expect, ExpectError> {
        let t = text.trim();
        if let Some((lo, hi)) = t.split_once("..") {
            let number = |x: &str| {
                let x = x.trim();
                let ok = !x.is_empty()
                    && x.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'));
                x.parse::<f64>().ok().filter(|v| ok && v.is_finite())
            };
            return match (number(lo), number(hi)) {
                (Some(lo), Some(hi)) if lo <= hi => Ok(Expect::Range { lo, hi }),
                _ => Err(ExpectError::NotRange { text: text.to_owned() }),
            };
        }
        let ops = [
            (">=", CmpOp::Ge),
            ("<=", CmpOp::Le),
            ("==", CmpOp::Eq),
            ("!=", CmpOp::Ne),
            (">", CmpOp::Gt),
            ("<", CmpOp::Lt),
        ];
        let (op, rest) = ops
            .iter()
            .find_map(|(sym, op)| t.strip_prefix(sym).map(|rest| (*op, rest)))
            .unwrap_or((CmpOp::Eq, t));
        let rest = rest.trim();
        let is_number = !rest.is_empty()
            && rest.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'));
        match rest.parse::<f64>() {
            Ok(value) if is_number && value.is_finite() => Ok(Expect::Compare { op, value }),
            _ => Err(ExpectError::NotComparison { text: text.to_owned() }),
        }
    }

    /// Whether a metric's value satisfies the expectation (an `Outcome` expectation matches no
    /// number).
    #[allow(clippy::float_cmp)] // counts are integers, exactly representable; `==` is meant
    pub fn matches(&self, actual: f64) -> bool {
        match *self {
            Expect::Compare { op, value } => match op {
                CmpOp::Eq => actual == value,
                CmpOp::Ne => actual != value,
                CmpOp::Lt => actual < value,
                CmpOp::Le => actual <= value,
                CmpOp::Gt => actual > value,
                CmpOp::Ge => actual >= value,
            },
            Expect::Range { lo, hi } => (lo..=hi).contains(&actual),
            Expect::Outcome(_) | Expect::Cause(_) | Expect::Reason(_) => false,
        }
    }

    /// Whether a run's outcome satisfies the expectation (a comparison matches no outcome).
    pub fn matches_outcome(&self, actual: Outcome) -> bool {
        matches!(*self, Expect::Outcome(o) if o == actual)
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Compare { op, value } => write!(f, "{}{value}", op.symbol()),
            Expect::Range { lo, hi } => write!(f, "in {lo}..{hi}"),
            Expect::Outcome(o) => f.write_str(o.name()),
            Expect::Cause(c) => f.write_str(c.name()),
            Expect::Reason(r) => f.write_str(r.name()),
        }
    }
}

impl serde::Serialize for Expect {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The `[expect]` table, flattened: metric name (`sigbus`, `exits.npf`, `npt_coverage.2m`,
/// `outcome`) to expectation. Empty when the scenario has no `[expect]`.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
#[serde(transparent)]
pub struct Expectations {
    /// Expectations by metric name, sorted by name.
    pub entries: BTreeMap<String, Expect>,
}

impl Expectations {
    /// The expected outcome, if any.
    pub fn outcome(&self) -> Option<Outcome> {
        match self.entries.get("outcome") {
            Some(Expect::Outcome(o)) => Some(*o),
            _ => None,
        }
    }

    /// The expectation of one metric.
    pub fn get(&self, metric: &str) -> Option<&Expect> {
        self.entries.get(metric)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Expectations in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Expect)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(t: &str) -> Expect {
        Expect::parse_comparison(t).unwrap()
    }

    #[test]
    fn comparisons_parse_and_match() {
        assert_eq!(cmp(">0"), Expect::Compare { op: CmpOp::Gt, value: 0.0 });
        assert!(cmp(">0").matches(1.0) && !cmp(">0").matches(0.0));
        assert!(cmp(">=1024").matches(1024.0) && !cmp(">=1024").matches(1023.0));
        assert!(cmp("<=4").matches(4.0) && !cmp("<=4").matches(5.0));
        assert!(cmp("==3").matches(3.0) && !cmp("==3").matches(2.0));
        assert!(cmp("3").matches(3.0));
        assert!(cmp("<2").matches(1.0) && !cmp("<2").matches(2.0));
        assert!(cmp("!=0").matches(1.0) && !cmp("!=0").matches(0.0));
        assert!(cmp(">=0.99").matches(0.995) && !cmp(">=0.99").matches(0.98));
        assert!(cmp(" >= 1e3 ").matches(1000.0));
        for bad in ["", ">", "=>1", ">=x", "inf", ">nan", "0x10", ">=1_000", "completed"] {
            assert!(Expect::parse_comparison(bad).is_err(), "{bad}");
        }
        assert!(!Expect::Outcome(Outcome::Completed).matches(0.0));
        assert!(Expect::Outcome(Outcome::VmError).matches_outcome(Outcome::VmError));
        assert!(!cmp("1").matches_outcome(Outcome::Completed));
    }

    #[test]
    fn display_is_canonical() {
        assert_eq!(cmp(">=1024").to_string(), ">=1024");
        assert_eq!(cmp("3").to_string(), "==3");
        assert_eq!(cmp(">= 0.99").to_string(), ">=0.99");
        assert_eq!(Expect::Outcome(Outcome::Completed).to_string(), "completed");
    }

    #[test]
    fn metric_names() {
        for m in METRICS.iter().filter(|m| **m != "npt_coverage") {
            assert_eq!(check_metric_name(m), Ok(()), "{m}");
        }
        assert_eq!(check_metric_name("npt_coverage.2m"), Ok(()));
        assert_eq!(check_metric_name("exits.npf"), Ok(()));
        assert_eq!(check_metric_name("npt_demotions.1g_2m"), Ok(()));
        assert_eq!(check_metric_name("races.spurious_npf"), Ok(()));
        assert_eq!(check_metric_name("sim_time_ns.npf_exit"), Ok(()));
        assert!(matches!(check_metric_name("npt_coverage"), Err(ExpectError::CoverageTotal { .. })));
        assert!(check_metric_name("npt_coverage.3m").is_err());
        assert!(check_metric_name("sigbus.x").is_err());
        assert!(check_metric_name("exits.").is_err());
        // The time-to-ready items are not part of `sim_time_ns`.
        assert!(check_metric_name("sim_time_ns.boot_fixed").is_err());
        let msg = check_metric_name("sigbuss").unwrap_err().to_string();
        assert!(
            msg.contains("unknown metric \"sigbuss\"; accepted: outcome, cause, reason, rmp_npf"),
            "{msg}"
        );
    }

    #[test]
    fn family_members_are_closed_sets() {
        let e = check_metric_name("exits.npff").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown exit reason \"npff\" of `exits`; accepted: npf, vmgexit_psc_msr, vmgexit_psc, \
             hypercall, memory_fault"
        );
        assert!(e.is_name());
        let e = check_metric_name("races.psmash_inuse").unwrap_err().to_string();
        assert!(
            e.contains("unknown race kind \"psmash_inuse\" of `races`; accepted: psmash_fail_inuse,"),
            "{e}"
        );
        let e = check_metric_name("npt_demotions.2m_1g").unwrap_err().to_string();
        assert!(
            e.contains("unknown level pair \"2m_1g\" of `npt_demotions`; accepted: 2m_4k, 1g_4k, 1g_2m"),
            "{e}"
        );
        let e = check_metric_name("sim_time_ns.npf").unwrap_err().to_string();
        assert!(
            e.contains("unknown cost item \"npf\" of `sim_time_ns`; accepted: vmgexit, npf_exit,"),
            "{e}"
        );
        // Every family has members, and every member the engine reports is accepted.
        for f in METRIC_FAMILIES {
            let (_, members) = family_members(f).unwrap();
            assert!(!members.is_empty(), "{f}");
            for m in members {
                assert_eq!(check_metric_name(&format!("{f}.{m}")), Ok(()), "{f}.{m}");
            }
        }
        assert_eq!(family_members("sigbus"), None);
    }

    #[test]
    fn metric_names_are_the_metrics_fields() {
        use snpsim_engine::metrics::MetricName;
        use strum::{IntoEnumIterator, VariantNames};
        // `METRICS` is `outcome`, `cause`, `reason` and the engine's metric names, in order; the
        // families are the names with members, in the same order.
        assert_eq!(&METRICS[..3], ["outcome", "cause", "reason"]);
        assert_eq!(&METRICS[3..], MetricName::VARIANTS);
        let families: Vec<&str> =
            MetricName::iter().filter(|m| m.is_family()).map(MetricName::name).collect();
        assert_eq!(METRIC_FAMILIES, families);
        let v = serde_json::to_value(snpsim_engine::metrics::Metrics::default()).unwrap();
        let cov: Vec<String> = v["npt_coverage"].as_object().unwrap().keys().cloned().collect();
        let mut levels: Vec<String> = NPT_COVERAGE_LEVELS.iter().map(|l| (*l).to_owned()).collect();
        levels.sort_unstable();
        assert_eq!(cov, levels);
    }

    /// Every name `snpsim list` prints (`METRICS`, and each family's members as `FAMILY.MEMBER`)
    /// reads a value, but `outcome`, `cause` and `reason`, which are no numbers.
    #[test]
    fn every_listed_name_resolves() {
        let m = snpsim_engine::metrics::Metrics::default();
        let value = |name: &str| crate::run::metric_value(&m, name);
        for name in &METRICS[3..] {
            assert!(value(name).is_some(), "{name}");
            if let Some((_, members)) = family_members(name) {
                for member in members {
                    assert!(value(&format!("{name}.{member}")).is_some(), "{name}.{member}");
                }
            }
        }
        for name in &METRICS[..3] {
            assert_eq!(value(name), None, "{name}");
        }
        assert_eq!(value("sigbuss"), None);
        assert_eq!(value("exits.npff"), None);
    }

    #[test]
    fn values_that_cannot_fail_or_cannot_hold_are_refused() {
        let check = |metric: &str, t: &str| check_expect_value(metric, &cmp(t));
        for (metric, t) in [("sigbus", "1"), ("sigbus", ">0"), ("exits.npf", ">=1024"), ("sigbus", "<1")] {
            assert_eq!(check(metric, t), Ok(()), "{metric} {t}");
        }
        for (metric, t) in
            [("npt_coverage.2m", ">=0.99"), ("huge_capable", "<1"), ("sim_time_ns", "2.6e9..2.7e9")]
        {
            assert_eq!(check(metric, t), Ok(()), "{metric} {t}");
        }
        // Negative numbers, bare or as a bound.
        for t in ["-1", ">=-1", "<-0.5", "-1..3"] {
            assert!(matches!(check("rmp_npf", t), Err(ExpectError::Negative { .. })), "{t}");
        }
        // Always true: nothing is below 0; no share is above 1.
        for (metric, t) in
            [("rmp_npf", ">=0"), ("huge_capable", "<=1"), ("npt_coverage.4k", "0..1"), ("sigbus", "!=0.5")]
        {
            assert!(
                matches!(check(metric, t), Err(ExpectError::Vacuous { always: true, .. })),
                "{metric} {t}"
            );
        }
        // Never true.
        for (metric, t) in
            [("rmp_npf", "<0"), ("huge_capable", ">1"), ("sigbus", "0.5"), ("sigbus", "0.2..0.8")]
        {
            assert!(
                matches!(check(metric, t), Err(ExpectError::Vacuous { always: false, .. })),
                "{metric} {t}"
            );
        }
        let msg = check("rmp_npf", ">=0").unwrap_err().to_string();
        assert_eq!(
            msg,
            "`rmp_npf` >=0 holds for every value, so it could never fail; accepted: a bound within the \
             metric's values (a whole number >= 0)"
        );
        assert_eq!(check_expect_value("outcome", &Expect::Outcome(Outcome::Completed)), Ok(()));
    }
}
