//! `[expect]`: expected metric values and outcome.

use core::fmt;
use std::collections::BTreeMap;

use super::names::{Cause, Outcome, Reason};

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
    "sim_time_ns",
];

/// Metrics with members, expected as `FAMILY.MEMBER`: `npt_demotions` by from/to level, `exits` by
/// reason, `races` by kind, `npt_coverage` by level (`4k`, `2m`, `1g`, `unmapped`: shares of guest
/// memory between 0 and 1, summing to 1), `sim_time_ns` by cost item. The family name alone is the
/// total (except `npt_coverage`, whose total is always 1).
pub const METRIC_FAMILIES: &[&str] = &["npt_demotions", "exits", "races", "npt_coverage", "sim_time_ns"];

/// The members of `npt_coverage`.
pub const NPT_COVERAGE_LEVELS: &[&str] = &["4k", "2m", "1g", "unmapped"];

/// Why a metric name is refused, or `None` if `[expect]` may name it.
///
/// Family members other than `npt_coverage`'s are named by the engine (exit reasons, cost items,
/// level pairs), so any name of lower-case letters, digits, `_` and `-` is accepted there.
pub fn check_metric_name(name: &str) -> Option<String> {
    if name == "npt_coverage" {
        return Some(format!(
            "`npt_coverage` has no total (its members sum to 1); name a level: \
             npt_coverage = {{ \"2m\" = \">=0.99\" }}; accepted levels: {}",
            NPT_COVERAGE_LEVELS.join(", ")
        ));
    }
    if METRICS.contains(&name) {
        return None;
    }
    if let Some((family, member)) = name.split_once('.')
        && METRIC_FAMILIES.contains(&family)
    {
        if family == "npt_coverage" {
            return (!NPT_COVERAGE_LEVELS.contains(&member)).then(|| {
                format!(
                    "unknown level {member:?} of npt_coverage; accepted: {}",
                    NPT_COVERAGE_LEVELS.join(", ")
                )
            });
        }
        if family == "sim_time_ns" {
            let priced = &crate::cost::ALL[..crate::cost::PRICED];
            return (!priced.iter().any(|c| c.name == member)).then(|| {
                format!(
                    "unknown cost item {member:?} of sim_time_ns; accepted: {}",
                    priced.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
                )
            });
        }
        let ok = !member.is_empty()
            && member.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        return (!ok).then(|| {
            format!("{member:?} is not a member name of `{family}` (lower-case letters, digits, _ and -)")
        });
    }
    Some(format!(
        "unknown metric {name:?}; accepted: {}; and FAMILY.MEMBER for the families {}",
        METRICS.join(", "),
        METRIC_FAMILIES.join(", ")
    ))
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
    pub fn parse_comparison(text: &str) -> Result<Expect, String> {
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
                _ => Err(format!(
                    "{text:?} is not a range; write two numbers, the lower first, e.g. \"2.6e9..2.7e9\""
                )),
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
            _ => Err(format!(
                "{text:?} is not a comparison; write an operator (==, !=, <, <=, >, >=) and a \
                 number, e.g. \">0\", \">=1024\", \"<=4\", \">=0.99\", or a range \"2.6e9..2.7e9\""
            )),
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
            assert_eq!(check_metric_name(m), None, "{m}");
        }
        assert_eq!(check_metric_name("npt_coverage.2m"), None);
        assert_eq!(check_metric_name("exits.npf"), None);
        assert_eq!(check_metric_name("npt_demotions.1g_2m"), None);
        assert!(check_metric_name("npt_coverage").is_some());
        assert!(check_metric_name("npt_coverage.3m").is_some());
        assert!(check_metric_name("sigbus.x").is_some());
        assert!(check_metric_name("exits.").is_some());
        let msg = check_metric_name("sigbuss").unwrap();
        assert!(
            msg.contains("unknown metric \"sigbuss\"; accepted: outcome, cause, reason, rmp_npf"),
            "{msg}"
        );
    }
}
