//! The attack table of the report (issue 10, `docs/attacks.md`): one row per adversary run — the
//! attack and the guest kind (tracking or naive), what the hardware blocked, what the guest
//! detected, what it silently accepted, the honest-hypervisor invariants the attack broke, the
//! outcome, data loss and false negatives (which must be 0).
//!
//! Each cell is read from the run's results alone: the outcome and its reason, the metrics, the
//! violations (in an adversary run, the attack's effects) and the adversary's log.

use std::fmt::Write as _;

use super::Run;
use super::charts::{esc, fmt_num};

/// What one adversary run shows, as the table's cells say it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The attack names, comma-separated.
    pub attack: String,
    /// `tracking`, `naive`, or `?` when the results do not say.
    pub guest: String,
    /// What the host did (the adversary's log, without the attack names).
    pub host_did: String,
    /// What the hardware blocked, or empty.
    pub hardware_blocked: String,
    /// What the guest detected, or empty.
    pub guest_detected: String,
    /// What the guest silently accepted, or empty.
    pub silently_accepted: String,
    /// The honest-hypervisor invariants broken (`invariant 4`, ...), comma-separated, or empty.
    pub broken: String,
    /// The outcome.
    pub outcome: String,
    /// `data_loss_pages`.
    pub data_loss: f64,
    /// `false_negatives`.
    pub false_negatives: f64,
}

/// The guest's termination in words, by its reason (`page-not-validated`, `pvalidate-failed`,
/// `psc-failed`); the GPA is read from the detail (`guest terminated (REASON) at GPA G`) only to
/// show it.
fn termination(reason: &str, detail: &str) -> String {
    let at = detail.split_once(" at GPA ").map(|(_, g)| format!(" at GPA {g}")).unwrap_or_default();
    match reason {
        "page-not-validated" => format!("#VC 0x404 on a page it validated{at}: terminated"),
        "pvalidate-failed" => format!("PVALIDATE failed{at}: terminated"),
        "psc-failed" => format!("a page-state change failed{at}: terminated"),
        _ => detail.to_string(),
    }
}

/// The row of an adversary run.
pub fn row(run: &Run) -> Row {
    let m = |k: &str| run.m(k);
    let mut blocked = Vec::new();
    if m("kernel_oops") > 0.0 {
        blocked.push(format!("host write: RMP #PF ({} kernel oops)", fmt_num(m("kernel_oops"))));
    }
    if m("sigbus") + m("efault") > 0.0 {
        blocked.push(format!(
            "host write: RMP #PF ({} SIGBUS, {} -EFAULT)",
            fmt_num(m("sigbus")),
            fmt_num(m("efault"))
        ));
    }
    if run.outcome == "vm_error" {
        // The detail of an unresolvable #NPF reads "unresolvable #NPF at GFN G: ..."; the GFN is
        // taken from it only to show it.
        let at = run
            .detail
            .strip_prefix("unresolvable #NPF at ")
            .and_then(|r| r.split_once(':'))
            .map(|(gfn, _)| format!(" at {gfn}"))
            .unwrap_or_default();
        blocked.push(if run.cause == "unresolvable" {
            format!("guest access: #NPF RMP{at} that KVM cannot resolve ({}): the VM stops", run.reason)
        } else {
            run.detail.clone()
        });
    }
    let guest_detected =
        if run.outcome == "guest_terminated" { termination(&run.reason, &run.detail) } else { String::new() };
    let lost = m("data_loss_pages");
    let silently_accepted = if run.outcome == "completed" && lost > 0.0 {
        let how = if run.validation_tracking == Some(false) {
            "validated what the host handed it and "
        } else {
            ""
        };
        format!("{how}ran on: {} page(s) of its data lost", fmt_num(lost))
    } else {
        String::new()
    };
    let mut broken: Vec<String> = Vec::new();
    for v in &run.violations {
        if let Some(n) = v.strip_prefix("invariant ").and_then(|r| r.split(':').next()) {
            let name = format!("invariant {n}");
            if !broken.contains(&name) {
                broken.push(name);
            }
        }
    }
    // The log without attack names, a line repeated (vc-storm) counted once.
    let mut host_did: Vec<(&str, usize)> = Vec::new();
    for line in run.attacks.iter().map(|a| a.split_once(": ").map_or(a.as_str(), |(_, d)| d)) {
        match host_did.iter_mut().find(|(l, _)| *l == line) {
            Some((_, n)) => *n += 1,
            None => host_did.push((line, 1)),
        }
    }
    if host_did.iter().any(|(l, _)| l.contains("Validated cleared") || l.contains("not validated")) {
        // APM: only PVALIDATE sets Validated; RMPUPDATE clears it on every change of owner.
        blocked.insert(0, "silent use: the new RMP entry is not Validated (#VC 0x404 on access)".into());
    }
    let host_did: Vec<String> = host_did
        .into_iter()
        .map(|(l, n)| if n == 1 { l.to_string() } else { format!("{l} (x{n})") })
        .collect();
    Row {
        attack: run.adversary.join(", "),
        guest: match run.validation_tracking {
            Some(true) => "tracking".into(),
            Some(false) => "naive".into(),
            None => "?".into(),
        },
        host_did: if host_did.is_empty() { "nothing (no target)".into() } else { host_did.join("; ") },
        hardware_blocked: blocked.join("; "),
        guest_detected,
        silently_accepted,
        broken: broken.join(", "),
        outcome: run.outcome.clone(),
        data_loss: lost,
        false_negatives: m("false_negatives"),
    }
}

fn cell(s: &str) -> String {
    if s.is_empty() { "—".to_string() } else { esc(s) }
}

/// The section: a table of every adversary run, in results order.
pub fn html(runs: &[Run]) -> String {
    let rows: Vec<Row> = runs.iter().filter(|r| !r.adversary.is_empty()).map(row).collect();
    let mut s = String::from(
        "<section id=\"attacks\"><h2>Attacks</h2><p class=\"note\">Each adversary run (<code>[vm] adversary</code>, \
         docs/attacks.md) against a guest that tracks the pages it validated or a naive one \
         (<code>validation_tracking = false</code>). The honest-hypervisor invariants an attack breaks are its \
         effects; the hardware guarantees must hold: false negatives are 0 in every run.</p>\
         <div class=\"scroll\"><table id=\"attack-table\"><caption class=\"muted\">One row per adversary run; ! marks \
         a false negative (an access that completed but should have faulted).</caption><thead><tr>",
    );
    for h in [
        "attack",
        "guest",
        "the host did",
        "the hardware blocked",
        "the guest detected",
        "silently accepted",
        "honest invariants broken",
        "outcome",
    ] {
        let _ = write!(s, "<th scope=\"col\">{h}</th>");
    }
    s.push_str("<th scope=\"col\" class=\"num\">data lost (pages)</th><th scope=\"col\" class=\"num\">false neg.</th></tr></thead><tbody>");
    for r in &rows {
        let fn_bad = r.false_negatives > 0.0;
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td class=\"wrap\">{}</td><td class=\"wrap\">{}</td><td class=\"wrap\">{}</td>\
             <td class=\"wrap\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num{}\">{}{}</td></tr>",
            esc(&r.attack),
            esc(&r.guest),
            cell(&r.host_did),
            cell(&r.hardware_blocked),
            cell(&r.guest_detected),
            cell(&r.silently_accepted),
            cell(&r.broken),
            esc(&r.outcome),
            fmt_num(r.data_loss),
            if fn_bad { " failed" } else { "" },
            fmt_num(r.false_negatives),
            if fn_bad { "!" } else { "" },
        );
    }
    s.push_str("</tbody></table></div></section>\n");
    s
}
