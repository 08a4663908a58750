//! The names traces give the engine's values: page sizes, #NPF error-code bits, instruction
//! results, access kinds, host paths and results, RMPADJUST permissions, and the configuration's
//! enumerations.

use serde_json::Value;
use snpsim_defs::{NpfErrorCode, PageSize, RmpPageSize, VmplPerms};
use snpsim_engine::engine::CheckMode;
use snpsim_guest::{Granularity, Recoalesce};
use snpsim_host::{HostVia, HostWriteOutcome, VmaBacking};
use snpsim_hw::{AccessKind, GuestOutcome};

/// The name of a page size in traces (`4k`, `2m`, `1g`).
pub fn size_name(s: PageSize) -> &'static str {
    s.name()
}

pub(crate) fn hex(v: u64) -> Value {
    Value::String(format!("{v:#x}"))
}

/// The `|`-joined names of the set bits of an #NPF error code (`P|W|RMP|SIZEM|ENC`).
pub fn npf_bits(code: NpfErrorCode) -> String {
    let bits = [
        (code.present(), "P"),
        (code.write(), "W"),
        (code.user(), "U"),
        (code.reserved_bit(), "RSV"),
        (code.fetch(), "ID"),
        (code.shadow_stack(), "SS"),
        (code.rmp(), "RMP"),
        (code.guest_final(), "FINAL"),
        (code.guest_page(), "GPT"),
        (code.enc(), "ENC"),
        (code.sizem(), "SIZEM"),
        (code.vmpl(), "VMPL"),
        (code.supervisor_shadow_stack(), "SSS"),
        (code.not_restartable(), "NR"),
    ];
    bits.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect::<Vec<_>>().join("|")
}

/// A guest instruction's or access's result as traces write it: `done`, `unchanged` (PVALIDATE
/// CF=1), a failure code name, `npf:0x...` or `vc:0x...` ([`GuestOutcome::name_with`]).
pub fn outcome_name<T>(o: &GuestOutcome<T>, done: impl Fn(&T) -> &'static str) -> String {
    o.name_with(done)
}

pub(crate) fn rmp_size_name(s: RmpPageSize) -> &'static str {
    s.page_size().name()
}

pub(crate) fn kind_name(k: AccessKind) -> &'static str {
    match k {
        AccessKind::Read => "read",
        AccessKind::Write => "write",
        AccessKind::Exec => "exec",
    }
}

/// The trace name of a host access path (`vmm`, `uaccess`, `kernel`).
pub fn via_name(v: HostVia) -> &'static str {
    match v {
        HostVia::Vmm => "vmm",
        HostVia::Uaccess => "uaccess",
        HostVia::Kernel => "kernel",
    }
}

/// The trace name of a host write's result.
pub fn host_write_name(o: HostWriteOutcome) -> &'static str {
    match o {
        HostWriteOutcome::Done => "done",
        HostWriteOutcome::Sigbus => "sigbus",
        HostWriteOutcome::Efault => "efault",
        HostWriteOutcome::KernelOops => "kernel_oops",
        HostWriteOutcome::Hang => "hang",
    }
}

pub(crate) fn perms_name(p: VmplPerms) -> String {
    let mut s = String::new();
    for (on, c) in [
        (p.read(), 'r'),
        (p.write(), 'w'),
        (p.exec_user(), 'x'),
        (p.exec_supervisor(), 's'),
        (p.supervisor_shadow_stack(), 'S'),
    ] {
        if on {
            s.push(c);
        }
    }
    s
}

pub(crate) fn parse_perms(s: &str) -> Option<VmplPerms> {
    let mut p = VmplPerms::new();
    for c in s.chars() {
        p = match c {
            'r' if !p.read() => p.with_read(true),
            'w' if !p.write() => p.with_write(true),
            'x' if !p.exec_user() => p.with_exec_user(true),
            's' if !p.exec_supervisor() => p.with_exec_supervisor(true),
            'S' if !p.supervisor_shadow_stack() => p.with_supervisor_shadow_stack(true),
            _ => return None,
        };
    }
    Some(p)
}

pub(crate) fn gran_name(g: Granularity) -> &'static str {
    match g {
        Granularity::K4 => "4k",
        Granularity::M2 => "2m",
    }
}

pub(crate) fn recoalesce_name(r: Recoalesce) -> &'static str {
    match r {
        Recoalesce::None => "none",
        Recoalesce::SaveRestore => "save-restore",
        Recoalesce::Naive => "naive",
    }
}

pub(crate) fn vma_name(b: VmaBacking) -> &'static str {
    match b {
        VmaBacking::Anon4k => "anon-4k",
        VmaBacking::Thp => "thp",
        VmaBacking::Hugetlbfs2m => "hugetlbfs-2m",
        VmaBacking::Hugetlbfs1g => "hugetlbfs-1g",
    }
}

pub(crate) fn check_name(c: CheckMode) -> &'static str {
    match c {
        CheckMode::Full => "full",
        CheckMode::Incremental => "incremental",
        CheckMode::Off => "off",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perms_round_trip() {
        for bits in 0u8..32 {
            let p = VmplPerms::from_bits(bits);
            assert_eq!(parse_perms(&perms_name(p)), Some(p));
        }
        assert_eq!(parse_perms("rr"), None);
        assert_eq!(parse_perms("q"), None);
    }
}
