//! The names traces give the engine's values that are no closed set of their own: page sizes,
//! #NPF error-code bits, instruction results and RMPADJUST permissions. The closed sets (access
//! kinds, host paths and results, granularities, backings, check modes, ...) are named by their
//! own types ([`snpsim_engine::names::Named`]).

use snpsim_defs::{NpfErrorCode, PageSize, RmpPageSize, VmplPerms};
use snpsim_hw::GuestOutcome;

/// The name of a page size in traces (`4k`, `2m`, `1g`).
pub fn size_name(s: PageSize) -> &'static str {
    s.name()
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
