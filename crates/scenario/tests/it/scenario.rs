//! Scenario files: the design's example, every input-error class with its exact location, and
//! overrides.

use snpsim_defs::{Gpa, RmpPageSize, VmplPerms};
use snpsim_engine::adversary::Attack;
use snpsim_hw::Geometry;
use snpsim_scenario::{
    AcceptMode, AccessKind, Backing, CmpOp, ErrorKind, Expect, Granularity, GuestParams, HostVia, Outcome,
    PageState, Phase, Preset, PscOrder, PscProtocol, Recoalesce, Scenario, ScenarioError, SteadyPhase,
    StepOp, TouchPattern, load_scenario, parse_scenario, parse_scenario_with_overrides,
};

/// A scenario using every table of the format (machine, vm, guest, steps, workload, expect).
const DESIGN_EXAMPLE: &str = r#"name = "hugetlb-2m, 4K guest shares one page"
seed = 7

[machine]
geometry = "x86"            # x86: 4K/2M/1G; "tiny": 4 pages per level, for model checking
host_memory = "16GiB"

[vm]
memory = "4GiB"
vcpus = 2
policy = "npt-demote"       # `snpsim list` names the policies
backing = "hugetlbfs-2m"    # host side; gmem era: backing is the private side,
shared_backing = "thp"      #   shared_backing the VMA

[guest]                     # the guest model (or a preset)
psc_granularity = "4k"
psc_protocol = "ghcb"
accept = "eager"

[[step]]                    # scripted steps, run in order on vcpu 0 unless `vcpu` is given
op = "psc"                  # psc | pvalidate | rmpadjust | access | accept | recoalesce
gpa = "0x200000"            #   guest ops; host ops: host_write | host_read |
size = "2MiB"               #   host_split | host_collapse | punch_hole
to = "private"

[[step]]
op = "host_write"
gpa = "0x201000"            # host ops name the guest page they touch
via = "vmm"                 # vmm (user access) | uaccess (get/put_user) | kernel (direct map)

[workload]                  # or a generated workload instead of steps
phases = [ { kind = "boot" },
           { kind = "steady", duration = "10s", working_set = "3GiB", conversions_per_s = 200,
             host_writes_per_s = 1000 } ]

[expect]                    # optional; any mismatch makes `snpsim run` exit 1 and say why
outcome = "completed"
sigbus = 1                  # an integer is exact; a string compares: ">0", ">=1024", "<=4"
host_splits_needless = 0
"#;

/// A minimal valid scenario of 8 lines; tests append to it.
const BASE: &str = r#"name = "t"
[machine]
host_memory = "16GiB"
[vm]
memory = "4GiB"
vcpus = 2
policy = "npt-demote"
backing = "thp"
"#;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

fn ok(text: &str) -> Scenario {
    match parse_scenario("t.toml", text) {
        Ok(s) => s,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn err(text: &str) -> ScenarioError {
    match parse_scenario("t.toml", text) {
        Ok(s) => panic!("expected an error, parsed {s:?}"),
        Err(e) => e,
    }
}

/// Assert the location, field, kind, and that the message contains `needle`.
#[track_caller]
fn check(e: &ScenarioError, line: usize, column: usize, field: Option<&str>, kind: ErrorKind, needle: &str) {
    assert_eq!((e.line, e.column), (line, column), "location of: {e}");
    assert_eq!(e.field.as_deref(), field, "field of: {e}");
    assert_eq!(e.kind, kind, "kind of: {e}");
    let shown = e.to_string();
    let prefix = match field {
        Some(f) => format!("{}:{line}:{column}: field `{f}`: ", e.file),
        None => format!("{}:{line}:{column}: ", e.file),
    };
    assert!(shown.starts_with(&prefix), "{shown:?} does not start with {prefix:?}");
    assert!(shown.contains(needle), "{shown:?} does not contain {needle:?}");
}

fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

#[test]
fn design_example_parses_to_the_expected_structs() {
    let s = ok(DESIGN_EXAMPLE);
    assert_eq!(s.name, "hugetlb-2m, 4K guest shares one page");
    assert_eq!(s.seed, 7);
    assert_eq!(s.machine.geometry, Geometry::X86);
    assert_eq!(s.machine.host_memory, 16 * GIB);
    assert_eq!(s.vm.memory, 4 * GIB);
    assert_eq!(s.vm.vcpus, 2);
    assert_eq!(s.vm.policy.name(), "npt-demote");
    assert_eq!(s.vm.backing, Backing::Hugetlbfs2m);
    assert_eq!(s.vm.shared_backing, Some(Backing::Thp));
    assert_eq!(s.vm.vma_backing(), Backing::Hugetlbfs2m);
    assert!(s.vm.prefault_on_psc && s.vm.smaller_npt_faults && !s.vm.khugepaged);
    assert_eq!(s.vm.npt_level_follows_rmp, None);
    assert!(!s.vm.npt_level_follows_rmp());
    assert!(s.vm.adversary.is_empty());
    assert_eq!(s.vm.step_budget, None);

    assert_eq!(s.guest.preset, Preset::Linux);
    assert_eq!(
        s.guest.resolved(),
        GuestParams {
            psc_granularity: Granularity::K4,
            psc_protocol: PscProtocol::Ghcb,
            ghcb_entries: 64,
            accept: AcceptMode::Eager,
            validation_tracking: true,
            recoalesce: Recoalesce::None,
            psc_order: PscOrder::PerRequest,
            msr_until_ghcb: false,
        }
    );

    assert_eq!(s.steps.len(), 2);
    assert_eq!(s.steps[0].line, 20);
    assert_eq!(s.steps[0].vcpu, 0);
    assert_eq!(
        s.steps[0].op,
        StepOp::Psc { gpa: Gpa::new(0x20_0000), size: 2 * MIB, to: PageState::Private, granularity: None }
    );
    assert_eq!(s.steps[1].line, 26);
    assert_eq!(s.steps[1].op, StepOp::HostWrite { gpa: Gpa::new(0x20_1000), via: HostVia::Vmm });

    let w = s.workload.expect("workload");
    assert_eq!(
        w.phases,
        vec![
            Phase::Boot,
            Phase::Steady(SteadyPhase {
                duration_ns: 10_000_000_000,
                working_set: 3 * GIB,
                conversions_per_s: 200,
                host_writes_per_s: 1000,
                touch: TouchPattern::Random,
            })
        ]
    );

    assert_eq!(s.expect.outcome(), Some(Outcome::Completed));
    assert_eq!(s.expect.get("sigbus"), Some(&Expect::Compare { op: CmpOp::Eq, value: 1.0 }));
    assert!(s.expect.get("host_splits_needless").is_some_and(|e| e.matches(0.0)));
    assert_eq!(s.expect.entries.len(), 3);
}

#[test]
fn defaults() {
    let s = ok(BASE);
    assert_eq!(s.seed, 0);
    assert_eq!(s.machine.geometry, Geometry::X86);
    assert_eq!(s.guest.resolved(), Preset::Linux.params());
    assert!(s.steps.is_empty() && s.workload.is_none() && s.expect.is_empty());
    assert_eq!(s.vm.shared_backing, None);

    let s = ok(&BASE.replace("npt-demote", "gmem").replace("\"thp\"", "\"gmem-4k\""));
    assert_eq!(s.vm.shared_backing, Some(Backing::Thp));
    assert!(s.vm.npt_level_follows_rmp());
    assert_eq!(s.vm.vma_backing(), Backing::Thp);

    let s = ok(&with("step_budget = 10\nadversary = \"vc-storm\"\nnpt_level_follows_rmp = true\n"));
    assert_eq!(s.vm.step_budget, Some(10));
    assert_eq!(s.vm.adversary, vec![Attack::VcStorm]);
    assert!(s.vm.npt_level_follows_rmp());
    let s = ok(&with("adversary = [\"reform-2m\", \"foreign-asid\"]\n"));
    assert_eq!(s.vm.adversary, vec![Attack::ReformTwoMeg, Attack::ForeignAsid]);
    let e = err(&with("adversary = \"double-validate\"\n"));
    assert!(
        e.to_string().contains("unknown attack \"double-validate\"; accepted: remap-validated-gpa"),
        "{e}"
    );
}

#[test]
fn guest_presets_and_overrides() {
    let s = ok(&with("[guest]\npreset = \"coconut-svsm\"\nghcb_entries = 16\nrecoalesce = \"naive\"\n"));
    let g = s.guest.resolved();
    assert_eq!(g.ghcb_entries, 16);
    assert_eq!(g.recoalesce, Recoalesce::Naive);
    assert_eq!(g.accept, AcceptMode::Eager);
    assert_eq!(g.psc_granularity, Granularity::M2);
    let s = ok(&with("[guest]\npreset = \"linux-2021\"\n"));
    assert_eq!(s.guest.resolved().psc_protocol, PscProtocol::Ghcb);
    assert_eq!(s.guest.resolved().ghcb_entries, 253);
    // Overriding the protocol keeps the preset's order and early-MSR behaviour (no field).
    let s = ok(&with("[guest]\npreset = \"linux-2021\"\npsc_protocol = \"msr\"\nghcb_entries = 64\n"));
    let g = s.guest.resolved();
    assert_eq!((g.psc_protocol, g.ghcb_entries), (PscProtocol::Msr, 64));
    assert_eq!((g.psc_order, g.msr_until_ghcb), (PscOrder::WholeRange, true));
    let s = ok(&with("[guest]\npreset = \"oak-stage0\"\nvalidation_tracking = true\n"));
    assert!(s.guest.resolved().validation_tracking);
}

#[test]
fn psc_request_steps_keep_their_entry_as_given() {
    let s = ok(&with(&format!(
        "[[step]]\n{a}[[step]]\n{b}",
        a = "op = \"psc_request\"\ngpa = \"0x201000\"\nsize = \"2MiB\"\nto = \"private\"\n",
        b = "op = \"psc_request\"\ngpa = \"0x200000\"\nsize = \"2MiB\"\nto = \"shared\"\ncur_page = 256\n"
    )));
    let ops: Vec<_> = s.steps.iter().map(|s| s.op.clone()).collect();
    assert_eq!(
        ops,
        vec![
            // A 2M entry at an unaligned GPA is sent as it is (KVM must refuse it).
            StepOp::PscRequest {
                gpa: Gpa::new(0x20_1000),
                size: RmpPageSize::Size2M,
                to: PageState::Private,
                cur_page: 0
            },
            StepOp::PscRequest {
                gpa: Gpa::new(0x20_0000),
                size: RmpPageSize::Size2M,
                to: PageState::Shared,
                cur_page: 256
            },
        ]
    );
}

#[test]
fn every_step_op() {
    let s = ok(&with(
        r#"[guest]
recoalesce = "save-restore"
[[step]]
op = "pvalidate"
gpa = "0x200000"
size = "2MiB"
validate = false
[[step]]
op = "rmpadjust"
gpa = 0x3000
vmpl = 1
perms = "rw"
vmsa = true
vcpu = 1
[[step]]
op = "access"
gpa = "0x4000"
size = 8192
kind = "write"
private = false
[[step]]
op = "accept"
gpa = "0x0"
size = "4MiB"
granularity = "2m"
[[step]]
op = "recoalesce"
gpa = "0x400000"
[[step]]
op = "recoalesce"
gpa = "0x400000"
mode = "naive"
[[step]]
op = "host_read"
gpa = "0x5000"
via = "kernel"
[[step]]
op = "host_write"
gpa = "0x5000"
[[step]]
op = "host_split"
gpa = "0x5000"
[[step]]
op = "host_collapse"
gpa = "0x5000"
[[step]]
op = "psc"
gpa = "0xfffff000"
to = "shared"
"#,
    ));
    let ops: Vec<_> = s.steps.iter().map(|s| s.op.clone()).collect();
    let mut rw = VmplPerms::NONE;
    rw.set_read(true);
    rw.set_write(true);
    assert_eq!(
        ops,
        vec![
            StepOp::Pvalidate { gpa: Gpa::new(0x20_0000), size: RmpPageSize::Size2M, validate: false },
            StepOp::Rmpadjust {
                gpa: Gpa::new(0x3000),
                size: RmpPageSize::Size4K,
                vmpl: 1,
                perms: rw,
                vmsa: true
            },
            StepOp::Access { gpa: Gpa::new(0x4000), size: 8192, kind: AccessKind::Write, private: false },
            StepOp::Accept { gpa: Gpa::new(0), size: 4 * MIB, granularity: Some(Granularity::M2) },
            StepOp::Recoalesce { gpa: Gpa::new(0x40_0000), mode: Recoalesce::SaveRestore },
            StepOp::Recoalesce { gpa: Gpa::new(0x40_0000), mode: Recoalesce::Naive },
            StepOp::HostRead { gpa: Gpa::new(0x5000), via: HostVia::Kernel },
            StepOp::HostWrite { gpa: Gpa::new(0x5000), via: HostVia::Vmm },
            StepOp::HostSplit { gpa: Gpa::new(0x5000) },
            StepOp::HostCollapse { gpa: Gpa::new(0x5000) },
            StepOp::Psc { gpa: Gpa::new(0xffff_f000), size: 4096, to: PageState::Shared, granularity: None },
        ]
    );
    assert_eq!(s.steps[1].vcpu, 1);
    assert_eq!(s.steps[0].line, 11);

    let s = ok(&BASE
        .replace("npt-demote", "gmem")
        .replace("\"thp\"", "\"gmem-2m\"")
        .replace("[vm]", "[vm]\nshared_backing = \"anon-4k\"")
        .add("[[step]]\nop = \"punch_hole\"\ngpa = \"0x1000\"\nsize = \"8KiB\"\n"));
    assert_eq!(s.steps[0].op, StepOp::PunchHole { gpa: Gpa::new(0x1000), size: 8192 });
    assert_eq!(s.vm.shared_backing, Some(Backing::Anon4k));
}

trait Add {
    fn add(self, extra: &str) -> String;
}
impl Add for String {
    fn add(mut self, extra: &str) -> String {
        self.push_str(extra);
        self
    }
}

#[test]
fn expectations_flatten_nested_tables() {
    let s = ok(&with(
        "[expect]\nnpt_coverage = { \"2m\" = \">=0.99\" }\nexits = { npf = \">=1024\" }\n\
         npt_demotions.1g_2m = 3\nsim_time_ns = \"<1e9\"\noutcome = \"vm_error\"\nhuge_capable = 0.5\n",
    ));
    let e = &s.expect;
    assert_eq!(e.get("npt_coverage.2m"), Some(&Expect::Compare { op: CmpOp::Ge, value: 0.99 }));
    assert_eq!(e.get("exits.npf"), Some(&Expect::Compare { op: CmpOp::Ge, value: 1024.0 }));
    assert_eq!(e.get("npt_demotions.1g_2m"), Some(&Expect::Compare { op: CmpOp::Eq, value: 3.0 }));
    assert!(e.get("sim_time_ns").is_some_and(|x| x.matches(5e8)));
    assert_eq!(e.outcome(), Some(Outcome::VmError));
    assert_eq!(e.get("npt_coverage.2m").map(ToString::to_string).as_deref(), Some(">=0.99"));
}

// ---- every input-error class, with its exact location ----

#[test]
fn toml_syntax() {
    let e = err("name = \"x\"\n[vm]\nmemory = \n");
    check(&e, 3, 10, Some("vm.memory"), ErrorKind::Syntax, "TOML syntax");
    let e = err("name = \"x\"\nname = \"y\"\n");
    check(&e, 2, 1, Some("name"), ErrorKind::Syntax, "duplicate key");
    let e = err("name = \"x\"\n[[step]]\nop = \"psc\"\n[[step]]\ngpa = 0x1 0x2\n");
    check(&e, 5, 7, Some("step[1].gpa"), ErrorKind::Syntax, "TOML syntax");
}

#[test]
fn unknown_fields() {
    let e = err(&with("polcy = \"gmem\"\n"));
    check(&e, 9, 1, Some("vm.polcy"), ErrorKind::UnknownField, "accepted: memory, vcpus, policy");
    let e = err(&format!("colour = 1\n{BASE}"));
    check(&e, 1, 1, Some("colour"), ErrorKind::UnknownField, "accepted: name, seed, machine");
    let e = err(&with("[[step]]\nop = \"psc\"\ngpa = \"0x0\"\nto = \"private\"\nvia = \"vmm\"\n"));
    check(
        &e,
        13,
        1,
        Some("step[0].via"),
        ErrorKind::UnknownField,
        "accepted: op, vcpu, gpa, size, to, granularity",
    );
    let e = err(&with("[workload]\nphases = [{ kind = \"boot\", duration = \"1s\" }]\n"));
    check(&e, 10, 28, Some("workload.phases[0].duration"), ErrorKind::UnknownField, "accepted: kind");
    let e = err(&with("[expect]\nsigbuss = 1\n"));
    check(
        &e,
        10,
        1,
        Some("expect.sigbuss"),
        ErrorKind::UnknownField,
        "unknown metric \"sigbuss\"; accepted: outcome, cause, reason, rmp_npf",
    );
    let e = err(&with("[expect]\nnpt_coverage = { \"3m\" = \">0\" }\n"));
    check(
        &e,
        10,
        18,
        Some("expect.npt_coverage.3m"),
        ErrorKind::UnknownField,
        "accepted: 4k, 2m, 1g, unmapped",
    );
}

#[test]
fn unknown_values() {
    let e = err(&BASE.replace("\"npt-demote\"", "\"foo\""));
    check(
        &e,
        7,
        10,
        Some("vm.policy"),
        ErrorKind::UnknownValue,
        "unknown value \"foo\"; accepted: rfc-host-split, rfc-v4, refuse-hugetlbfs, fail-psc-hugetlbfs, npt-demote, gmem",
    );
    let e = err(&BASE.replace("\"thp\"", "\"thp-2m\""));
    check(&e, 8, 11, Some("vm.backing"), ErrorKind::UnknownValue, "accepted: anon-4k, thp, hugetlbfs-2m");
    let e = err(&with("[guest]\npreset = \"windows\"\n"));
    check(
        &e,
        10,
        10,
        Some("guest.preset"),
        ErrorKind::UnknownValue,
        "accepted: linux, linux-2021, coconut-svsm, oak-stage0",
    );
    let e = err(&BASE.replace("[machine]", "[machine]\ngeometry = \"arm\""));
    check(&e, 3, 12, Some("machine.geometry"), ErrorKind::UnknownValue, "accepted: x86, tiny");
    let e = err(&with("[[step]]\nop = \"jump\"\n"));
    check(&e, 10, 6, Some("step[0].op"), ErrorKind::UnknownValue, "accepted: psc, pvalidate, rmpadjust");
    let e = err(&BASE.replace("\"4GiB\"", "\"4GB\""));
    check(&e, 5, 10, Some("vm.memory"), ErrorKind::UnknownValue, "is not a size");
    let e = err(&with("[[step]]\nop = \"host_write\"\ngpa = \"200000\"\n"));
    check(&e, 11, 7, Some("step[0].gpa"), ErrorKind::UnknownValue, "is not an address");
    let e = err(&with("[[step]]\nop = \"rmpadjust\"\ngpa = \"0x0\"\nvmpl = 1\nperms = \"rwq\"\n"));
    check(&e, 13, 9, Some("step[0].perms"), ErrorKind::UnknownValue, "subset of \"rwxs\"");
    let e = err(&with("[expect]\nsigbus = \"about 3\"\n"));
    check(&e, 10, 10, Some("expect.sigbus"), ErrorKind::UnknownValue, "is not a comparison");
    let e = err(&with("[expect]\noutcome = \"crashed\"\n"));
    check(
        &e,
        10,
        11,
        Some("expect.outcome"),
        ErrorKind::UnknownValue,
        "accepted: completed, vm_rejected, vm_error",
    );
    let e = err(&with("[workload]\nphases = [{ kind = \"steady\", duration = \"10h\" }]\n"));
    check(&e, 10, 41, Some("workload.phases[0].duration"), ErrorKind::UnknownValue, "is not a duration");
}

/// `[expect]` names members of closed sets (exit reasons, race kinds, level pairs, cost items), each
/// as the crate that counts them defines it: a misspelt member would otherwise be a metric that is
/// always 0, an expectation that can never fail.
#[test]
fn expectation_members_are_closed_sets() {
    // `[expect]` is line 10 of `with(...)` (BASE has 8 lines); `exits = { ` is 10 characters.
    let e = err(&with("[expect]\nexits = { npff = 0 }\n"));
    check(
        &e,
        10,
        11,
        Some("expect.exits.npff"),
        ErrorKind::UnknownField,
        "unknown exit reason \"npff\" of `exits`; accepted: npf, vmgexit_psc_msr, vmgexit_psc, hypercall, \
         memory_fault",
    );
    let e = err(&with("[expect]\nraces.psmash_inuse = 0\n"));
    check(
        &e,
        10,
        7,
        Some("expect.races.psmash_inuse"),
        ErrorKind::UnknownField,
        "unknown race kind \"psmash_inuse\" of `races`; accepted: psmash_fail_inuse, rmpupdate_fail_inuse, \
         psmash_already_4k, spurious_npf",
    );
    // A demotion goes from a larger level to a smaller one: 2m_1g is no member.
    let e = err(&with("[expect]\nnpt_demotions = { \"2m_1g\" = 1 }\n"));
    check(
        &e,
        10,
        19,
        Some("expect.npt_demotions.2m_1g"),
        ErrorKind::UnknownField,
        "unknown level pair \"2m_1g\" of `npt_demotions`; accepted: 2m_4k, 1g_4k, 1g_2m",
    );
    // `boot_fixed` is a time-to-ready parameter, not part of `sim_time_ns`.
    let e = err(&with("[expect]\nsim_time_ns.boot_fixed = \">0\"\n"));
    check(
        &e,
        10,
        13,
        Some("expect.sim_time_ns.boot_fixed"),
        ErrorKind::UnknownField,
        "unknown cost item \"boot_fixed\" of `sim_time_ns`; accepted: vmgexit, npf_exit, userspace_exit",
    );
    let e = parse_scenario_with_overrides("t.toml", BASE, &[("expect.exits.npff", "0")]).unwrap_err();
    assert_eq!(e.file, "--set");
    check(&e, 1, 14, Some("expect.exits.npff"), ErrorKind::UnknownField, "accepted: npf, vmgexit_psc_msr");
    // Every member the engine names is accepted.
    let s = ok(&with(
        "[expect]\nexits = { memory_fault = 0 }\nraces.spurious_npf = 0\nnpt_demotions.1g_4k = 0\n\
         sim_time_ns.host_write = \">0\"\n",
    ));
    assert_eq!(s.expect.iter().count(), 4);
}

/// A negative expectation, or one that holds for every value (or for none), could never fail (or
/// pass): refused where it is written.
#[test]
fn expectations_that_cannot_fail_are_refused() {
    let e = err(&with("[expect]\nrmp_npf = -1\n"));
    check(
        &e,
        10,
        11,
        Some("expect.rmp_npf"),
        ErrorKind::OutOfRange,
        "-1 is negative; `rmp_npf` is never below 0",
    );
    let e = err(&with("[expect]\nexits = { npf = \">=-2\" }\n"));
    check(&e, 10, 17, Some("expect.exits.npf"), ErrorKind::OutOfRange, "-2 is negative");
    let e = err(&with("[expect]\nsim_time_ns = \"-5..10\"\n"));
    check(&e, 10, 15, Some("expect.sim_time_ns"), ErrorKind::OutOfRange, "-5 is negative");
    let e = err(&with("[expect]\nrmp_npf = \">=0\"\n"));
    check(
        &e,
        10,
        11,
        Some("expect.rmp_npf"),
        ErrorKind::OutOfRange,
        "`rmp_npf` >=0 holds for every value, so it could never fail",
    );
    let e = err(&with("[expect]\nnpt_coverage = { \"2m\" = \">1\" }\n"));
    check(
        &e,
        10,
        25,
        Some("expect.npt_coverage.2m"),
        ErrorKind::OutOfRange,
        "holds for no value, so it could never pass; accepted: a bound within the metric's values (a share \
         between 0 and 1)",
    );
    let e = err(&with("[expect]\nsigbus = 0.5\n"));
    check(&e, 10, 10, Some("expect.sigbus"), ErrorKind::OutOfRange, "(a whole number >= 0)");
    let e = parse_scenario_with_overrides("t.toml", BASE, &[("expect.sigbus", "-1")]).unwrap_err();
    check(&e, 1, 15, Some("expect.sigbus"), ErrorKind::OutOfRange, "-1 is negative");
}

#[test]
fn wrong_types() {
    let e = err(&BASE.replace("vcpus = 2", "vcpus = \"2\""));
    check(&e, 6, 9, Some("vm.vcpus"), ErrorKind::WrongType, "expected an integer, found a string");
    let e = err(&with("khugepaged = 1\n"));
    check(&e, 9, 14, Some("vm.khugepaged"), ErrorKind::WrongType, "expected a boolean");
    let e = err(&BASE.replace("policy = \"npt-demote\"", "policy = 3"));
    check(&e, 7, 10, Some("vm.policy"), ErrorKind::WrongType, "expected a string (one of: rfc-host-split");
    let e = err(&with("[step]\nop = \"psc\"\n"));
    check(&e, 9, 1, Some("step"), ErrorKind::WrongType, "expected an array of tables ([[step]])");
    let e = err("vm = 1\nname = \"x\"\n[machine]\nhost_memory = 4096\n");
    check(&e, 1, 6, Some("vm"), ErrorKind::WrongType, "expected a table ([vm]), found an integer");
    let e = err(&with("[expect]\nsigbus = true\n"));
    check(&e, 10, 10, Some("expect.sigbus"), ErrorKind::WrongType, "found a boolean");
}

#[test]
fn numbers_out_of_range() {
    let e = err(&with("[guest]\nghcb_entries = 300\n"));
    check(
        &e,
        10,
        16,
        Some("guest.ghcb_entries"),
        ErrorKind::OutOfRange,
        "300 is out of range; accepted: 1..=253",
    );
    let e = err(&BASE.replace("vcpus = 2", "vcpus = 0"));
    check(&e, 6, 9, Some("vm.vcpus"), ErrorKind::OutOfRange, "accepted: 1..=4096");
    let e = err(&format!("seed = -1\n{BASE}"));
    check(&e, 1, 8, Some("seed"), ErrorKind::OutOfRange, "-1 is out of range");
    let e = err(&with("[[step]]\nop = \"rmpadjust\"\ngpa = \"0x0\"\nvmpl = 0\nperms = \"r\"\n"));
    check(&e, 12, 8, Some("step[0].vmpl"), ErrorKind::OutOfRange, "accepted: 1..=3");
    // `cur_page` is the entry's 12-bit field.
    let e = err(&with("[[step]]\nop = \"psc_request\"\ngpa = \"0x0\"\nto = \"shared\"\ncur_page = 4096\n"));
    check(&e, 13, 12, Some("step[0].cur_page"), ErrorKind::OutOfRange, "accepted: 0..=4095");
    let e = err(&with("step_budget = 0\n"));
    check(&e, 9, 15, Some("vm.step_budget"), ErrorKind::OutOfRange, "out of range");
    let e = err(&BASE.replace("\"16GiB\"", "\"99999999TiB\""));
    check(&e, 3, 15, Some("machine.host_memory"), ErrorKind::OutOfRange, "does not fit in 64 bits");
    let e = err("x = 99999999999999999999\n");
    check(&e, 1, 5, Some("x"), ErrorKind::OutOfRange, "does not fit in 64 bits");
    let e = err(&with("step_budget = 99999999999999999999\n"));
    check(&e, 9, 15, Some("vm.step_budget"), ErrorKind::OutOfRange, "does not fit in 64 bits");
    let e = err(&with(
        "[workload]\nphases = [{ kind = \"steady\", duration = \"1s\", working_set = \"8GiB\" }]\n",
    ));
    check(&e, 10, 61, Some("workload.phases[0].working_set"), ErrorKind::OutOfRange, "accepted: 1B..=4GiB");
}

#[test]
fn vcpu_index_beyond_vcpus() {
    let e = err(&with("[[step]]\nop = \"access\"\ngpa = \"0x0\"\nkind = \"read\"\nvcpu = 2\n"));
    check(&e, 13, 8, Some("step[0].vcpu"), ErrorKind::OutOfRange, "vcpu 2 does not exist; accepted: 0..=1");
}

#[test]
fn unaligned_gpa_and_size() {
    let e = err(&with("[[step]]\nop = \"psc\"\ngpa = \"0x201800\"\nto = \"private\"\n"));
    check(&e, 11, 7, Some("step[0].gpa"), ErrorKind::Unaligned, "0x201800 is not 4KiB-aligned");
    let e = err(&with("[[step]]\nop = \"psc\"\ngpa = \"0x200000\"\nsize = \"6KiB\"\nto = \"private\"\n"));
    check(&e, 12, 8, Some("step[0].size"), ErrorKind::Unaligned, "6KiB is not a multiple of 4KiB");
    let e = err(&with("[[step]]\nop = \"recoalesce\"\ngpa = \"0x201000\"\nmode = \"naive\"\n"));
    check(&e, 11, 7, Some("step[0].gpa"), ErrorKind::Unaligned, "is not 2MiB-aligned");
    let e = err(&with("[[step]]\nop = \"pvalidate\"\ngpa = \"0x200000\"\nsize = \"8KiB\"\n"));
    check(&e, 12, 8, Some("step[0].size"), ErrorKind::UnknownValue, "accepted: \"4KiB\", \"2MiB\"");
    let e = err(&BASE.replace("\"4GiB\"", "\"4097MiB\"").replace("\"thp\"", "\"hugetlbfs-1g\""));
    check(&e, 5, 10, Some("vm.memory"), ErrorKind::Unaligned, "not a multiple of 1GiB");
    let e = err(&BASE.replace("\"4GiB\"", "4095"));
    check(&e, 5, 10, Some("vm.memory"), ErrorKind::Unaligned, "4095B is not a multiple of 4KiB");
    let e = err(&with("[[step]]\nop = \"accept\"\ngpa = \"0x0\"\nsize = 0\n"));
    check(&e, 12, 8, Some("step[0].size"), ErrorKind::OutOfRange, "must not be zero");
}

#[test]
fn ranges_outside_guest_memory() {
    let e = err(&with("[[step]]\nop = \"psc\"\ngpa = \"0xfffff000\"\nsize = \"2MiB\"\nto = \"shared\"\n"));
    check(
        &e,
        11,
        7,
        Some("step[0].gpa"),
        ErrorKind::OutsideMemory,
        "outside guest memory (0x0..0x100000000, 4GiB)",
    );
    let e = err(&with("[[step]]\nop = \"host_write\"\ngpa = \"0x100000000\"\n"));
    check(&e, 11, 7, Some("step[0].gpa"), ErrorKind::OutsideMemory, "outside guest memory");
    let e = err(&with(
        "[[step]]\nop = \"access\"\ngpa = \"0xfffffffffffff000\"\nsize = \"8KiB\"\nkind = \"read\"\n",
    ));
    check(&e, 11, 7, Some("step[0].gpa"), ErrorKind::OutsideMemory, "outside guest memory");
}

#[test]
fn guest_memory_larger_than_host_memory() {
    let e = err(&BASE.replace("\"4GiB\"", "\"32GiB\""));
    check(
        &e,
        5,
        10,
        Some("vm.memory"),
        ErrorKind::Conflict,
        "guest memory 32GiB is larger than host memory 16GiB",
    );
}

#[test]
fn policy_and_backing_eras() {
    let e = err(&BASE.replace("npt-demote", "gmem"));
    check(&e, 8, 11, Some("vm.backing"), ErrorKind::Conflict, "accepted: gmem-4k, gmem-2m, gmem-1g");
    let e = err(&BASE.replace("\"thp\"", "\"gmem-2m\""));
    check(
        &e,
        8,
        11,
        Some("vm.backing"),
        ErrorKind::Conflict,
        "accepted: anon-4k, thp, hugetlbfs-2m, hugetlbfs-1g",
    );
    let e = err(&BASE
        .replace("npt-demote", "gmem")
        .replace("\"thp\"", "\"gmem-4k\"")
        .add("shared_backing = \"gmem-4k\"\n"));
    check(&e, 9, 18, Some("vm.shared_backing"), ErrorKind::Conflict, "accepted: anon-4k, thp");
    let e = err(&with("[[step]]\nop = \"punch_hole\"\ngpa = \"0x0\"\n"));
    check(&e, 10, 6, Some("step[0].op"), ErrorKind::Conflict, "needs policy \"gmem\"");
    let e = err(&with("[[step]]\nop = \"teardown\"\n"));
    check(&e, 10, 6, Some("step[0].op"), ErrorKind::Conflict, "needs policy \"gmem\" or \"gmem-inplace\"");
}

/// `teardown` ends the VM: it parses as the last step of a guest_memfd VM, and nowhere else.
#[test]
fn teardown_is_the_last_step_of_a_guest_memfd_vm() {
    let gmem = BASE.replace("npt-demote", "gmem").replace("\"thp\"", "\"gmem-4k\"");
    let accept = "[[step]]\nop = \"accept\"\ngpa = \"0x0\"\nsize = \"4KiB\"\n";
    let teardown = "[[step]]\nop = \"teardown\"\n";
    let s = ok(&format!("{gmem}{accept}{teardown}"));
    assert_eq!(s.steps.last().map(|st| st.op.clone()), Some(StepOp::Teardown));
    let e = err(&format!("{gmem}{teardown}{accept}"));
    check(&e, 10, 6, Some("step[0].op"), ErrorKind::Conflict, "must be the last step");
    let workload = "[workload]\nphases = [ { kind = \"boot\" } ]\n";
    let e = err(&format!("{gmem}{teardown}{workload}"));
    check(&e, 10, 6, Some("step[0].op"), ErrorKind::Conflict, "no [workload] after it");
}

#[test]
fn missing_required_fields() {
    let e = err(&BASE.replace("policy = \"npt-demote\"\n", ""));
    check(&e, 4, 1, Some("vm.policy"), ErrorKind::Missing, "required field missing in `vm`");
    let e = err("name = \"x\"\n");
    check(&e, 1, 1, Some("machine"), ErrorKind::Missing, "required field missing in the file");
    let e = err(&with("[[step]]\nop = \"psc\"\ngpa = \"0x0\"\n"));
    check(&e, 9, 1, Some("step[0].to"), ErrorKind::Missing, "required field missing");
    let e = err(&with("[[step]]\nop = \"recoalesce\"\ngpa = \"0x0\"\n"));
    check(&e, 9, 1, Some("step[0].mode"), ErrorKind::Missing, "accepted: save-restore, naive");
}

// ---- overrides ----

#[test]
fn overrides_are_validated_like_file_fields() {
    let s = parse_scenario_with_overrides(
        "t.toml",
        BASE,
        &[
            ("vm.backing", "hugetlbfs-2m"),
            ("vm.vcpus", "4"),
            ("guest.preset", "oak-stage0"),
            ("expect.exits.npf", ">0"),
        ],
    )
    .unwrap();
    assert_eq!(s.vm.backing, Backing::Hugetlbfs2m);
    assert_eq!(s.vm.vcpus, 4);
    assert_eq!(s.guest.preset, Preset::OakStage0);
    assert_eq!(s.expect.get("exits.npf"), Some(&Expect::Compare { op: CmpOp::Gt, value: 0.0 }));

    let e = parse_scenario_with_overrides("t.toml", BASE, &[("vm.vcpus", "1"), ("vm.backing", "foo")])
        .unwrap_err();
    assert_eq!(e.file, "--set");
    check(&e, 2, 12, Some("vm.backing"), ErrorKind::UnknownValue, "unknown value \"foo\"; accepted: anon-4k");
    let e = parse_scenario_with_overrides("t.toml", BASE, &[("vm.colour", "red")]).unwrap_err();
    check(&e, 1, 4, Some("vm.colour"), ErrorKind::UnknownField, "accepted: memory");
    let e = parse_scenario_with_overrides("t.toml", BASE, &[("name.x", "1")]).unwrap_err();
    check(&e, 1, 6, Some("name"), ErrorKind::WrongType, "is a string, not a table");

    let steps = with("[[step]]\nop = \"psc\"\ngpa = \"0x0\"\nto = \"private\"\n");
    let s = parse_scenario_with_overrides("t.toml", &steps, &[("step.0.gpa", "0x200000")]).unwrap();
    assert_eq!(s.steps[0].op.gpa(), Gpa::new(0x20_0000));
    let e = parse_scenario_with_overrides("t.toml", &steps, &[("step.0.gpa", "0x200800")]).unwrap_err();
    check(&e, 1, 12, Some("step[0].gpa"), ErrorKind::Unaligned, "not 4KiB-aligned");
    let e = parse_scenario_with_overrides("t.toml", &steps, &[("step.3.gpa", "0")]).unwrap_err();
    check(&e, 1, 6, Some("step"), ErrorKind::OutOfRange, "accepted: 0..1");
}

// ---- files ----

#[test]
fn files_unreadable_or_not_utf8() {
    let dir = std::env::temp_dir().join(format!("snpsim-scenario-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("latin1.toml");
    std::fs::write(&path, b"name = \"x\"\n# caf\xe9\n").unwrap();
    let e = load_scenario(&path).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotUtf8);
    assert_eq!((e.line, e.column), (2, 6));
    assert!(e.to_string().contains("not UTF-8"), "{e}");

    let good = dir.join("good.toml");
    std::fs::write(&good, DESIGN_EXAMPLE).unwrap();
    assert_eq!(load_scenario(&good).unwrap().seed, 7);

    let e = load_scenario(&dir.join("missing.toml")).unwrap_err();
    assert_eq!((e.kind, e.line, e.column), (ErrorKind::Io, 1, 1));
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- no input panics ----

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    /// Errors always carry a location.
    fn located(r: Result<Scenario, ScenarioError>) -> Result<(), TestCaseError> {
        if let Err(e) = r {
            prop_assert!(e.line >= 1 && e.column >= 1, "{e}");
        }
        Ok(())
    }

    /// Keys the generated lines use, so that most land on real fields.
    const KEYS: &[&str] = &[
        "name",
        "seed",
        "memory",
        "vcpus",
        "policy",
        "backing",
        "shared_backing",
        "gpa",
        "size",
        "op",
        "to",
        "vmpl",
        "perms",
        "vcpu",
        "mode",
        "kind",
        "duration",
        "sigbus",
        "outcome",
        "ghcb_entries",
        "preset",
        "geometry",
        "host_memory",
        "working_set",
        "phases",
        "exits",
    ];

    proptest! {
        #[test]
        fn arbitrary_text(text in any::<String>()) {
            located(parse_scenario("p.toml", &text))?;
        }

        #[test]
        fn arbitrary_text_in_every_table(
            lines in proptest::collection::vec(
                (0..6usize, proptest::sample::select(KEYS), "[ -~]{0,24}"),
                0..8,
            )
        ) {
            // Start from the design example and add `key = <raw>` lines to its tables.
            let headers = ["[machine]", "[vm]", "[guest]", "[[step]]", "[workload]", "[expect]"];
            let mut text = DESIGN_EXAMPLE.to_owned();
            for (table, key, raw) in lines {
                text = text.replacen(headers[table], &format!("{}\n{key} = {raw}", headers[table]), 1);
            }
            located(parse_scenario("p.toml", &text))?;
        }

        #[test]
        fn arbitrary_edits_of_the_example(at in 0..DESIGN_EXAMPLE.len(), cut in 0..8usize, insert in "\\PC{0,12}") {
            let mut at = at;
            while !DESIGN_EXAMPLE.is_char_boundary(at) {
                at -= 1;
            }
            let mut end = (at + cut).min(DESIGN_EXAMPLE.len());
            while !DESIGN_EXAMPLE.is_char_boundary(end) {
                end -= 1;
            }
            let text = format!("{}{insert}{}", &DESIGN_EXAMPLE[..at], &DESIGN_EXAMPLE[end..]);
            located(parse_scenario("p.toml", &text))?;
        }

        #[test]
        fn arbitrary_overrides(key in "[a-z_.0-9\\[\\]\"]{0,24}", value in "\\PC{0,24}") {
            located(parse_scenario_with_overrides("p.toml", DESIGN_EXAMPLE, &[(&key, &value)]))?;
        }
    }
}

/// `steps` scripted access steps over a 1 GiB guest, each on its own lines.
fn many_steps(steps: usize) -> String {
    use std::fmt::Write as _;
    let mut text = String::from(
        "name = \"many steps\"\n[machine]\nhost_memory = \"4GiB\"\n[vm]\nmemory = \"1GiB\"\npolicy = \"npt-demote\"\nbacking = \"thp\"\n",
    );
    for i in 0..steps {
        let gpa = (i as u64 % 262_144) * 4096;
        let _ = write!(text, "[[step]]\nop = \"access\"\ngpa = \"{gpa:#x}\"\nkind = \"read\"\n");
    }
    text
}

/// Locating each step's line uses a line index, not a rescan of the file: 60,000 steps parse
/// (they took 90 s when every step's line counted the newlines before it), and an error in the
/// last step still names its line.
#[test]
fn sixty_thousand_steps_parse() {
    let text = many_steps(60_000);
    let s = parse_scenario("many.toml", &text).unwrap();
    assert_eq!(s.steps.len(), 60_000);
    assert_eq!(s.steps[59_999].line, 8 + 4 * 59_999);
    let bad = format!("{text}[[step]]\nop = \"access\"\ngpa = \"0x1\"\nkind = \"read\"\n");
    let e = parse_scenario("many.toml", &bad).unwrap_err();
    assert_eq!((e.line, e.field.as_deref()), (8 + 4 * 60_000 + 2, Some("step[60000].gpa")), "{e}");
}
