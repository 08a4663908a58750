//! RMP entry layouts: the in-memory (raw) entry, the architectural RMPUPDATE/RMPREAD entry, the
//! per-VMPL permission byte and the RMPADJUST operand.

use bitfield_struct::bitfield;

use crate::addr::Gpa;

/// Bytes of CPU bookkeeping at the start of the RMP (per-ASID assigned-page counters) before the
/// entry array. Source: Linux `arch/x86/virt/svm/sev.c` `RMPTABLE_CPU_BOOKKEEPING_SZ`; AMD SEV
/// firmware `sev_rmp.h` (2048 × u64 counters indexed by ASID).
pub const RMP_BOOKKEEPING_BYTES: u64 = 0x4000;
/// Bytes per RMP entry (one entry per 4 KiB system page). Source: Linux `struct rmpentry_raw`.
pub const RMP_ENTRY_BYTES: u64 = 16;
/// ASID field width in the raw entry (bits 51–60).
pub const RMP_ASID_BITS: u32 = 10;
/// The ASID the firmware writes into a 2M-aligned entry to lock its region while it rewrites it.
/// Source: AMD SEV firmware `sev_rmp.c` `rmp_entry_write` ("Appendix A of the SNP hw spec").
pub const RMP_LOCK_ASID: u16 = 0x3ff;
/// Largest GPA an RMP entry can hold: the raw entry keeps GPA bits 50:12.
pub const RMP_GPA_LIMIT: u64 = 1 << 51;

// The `#[inline]` on each field of these layouts goes to the field's generated getter and setters
// (bitfield-struct copies a field's attributes, `#[bits]` aside, onto them): without it the test
// profile (opt-level 1, no LTO) calls `RmpEntryLo::assigned` and the like across crates as
// functions.

/// Permissions one VMPL has on a page: one byte of the raw entry's high quadword per VMPL, and
/// bits 8–15 of the RMPADJUST operand.
///
/// Source: AMD SEV firmware `sev_rmp.h` (`rmp_quadword2_t`); coconut-svsm `RMPFlags`; openvmm
/// `SevRmpAdjust`. Bit 4 (supervisor shadow stack) exists only on CPUs with VmplSSS.
#[bitfield(u8)]
#[derive(PartialEq, Eq, Hash)]
pub struct VmplPerms {
    /// Read.
    #[inline]
    pub read: bool,
    /// Write.
    #[inline]
    pub write: bool,
    /// Execute at CPL 3.
    #[inline]
    pub exec_user: bool,
    /// Execute at CPL 0–2.
    #[inline]
    pub exec_supervisor: bool,
    /// Supervisor shadow-stack access.
    #[inline]
    pub supervisor_shadow_stack: bool,
    /// Reserved, must be zero.
    #[bits(3)]
    #[inline]
    pub reserved: u8,
}

impl VmplPerms {
    /// Every permission: what VMPL0 gets when a page becomes guest-assigned.
    pub const ALL: VmplPerms = VmplPerms::from_bits(0x1f);
    /// No permission: what VMPL1–3 get when a page becomes guest-assigned.
    pub const NONE: VmplPerms = VmplPerms::from_bits(0);
}

/// Low quadword of the raw, in-memory RMP entry.
///
/// Non-architectural layout documented for Fam 19h ("PPR Fam 19h Model 01h rev B1"). Source: Linux
/// `arch/x86/virt/svm/sev.c` `struct rmpentry_raw`; AMD SEV firmware `sev_rmp.h` `rmp_fields_t`.
#[bitfield(u64)]
#[derive(PartialEq, Eq, Hash)]
pub struct RmpEntryLo {
    /// Owned by a guest (ASID ≠ 0) or by firmware (ASID 0).
    #[inline]
    pub assigned: bool,
    /// 0 = 4 KiB, 1 = 2 MiB; meaningful only in a 2M-aligned entry.
    #[inline]
    pub page_size: bool,
    /// RMPUPDATE may not change the entry.
    #[inline]
    pub immutable: bool,
    /// In a 2M-aligned entry: the number of assigned 4 KiB pages of its region other than itself.
    #[bits(9)]
    #[inline]
    pub subpage_count: u16,
    /// GPA bits 50:12 of the page this system page is bound to.
    #[bits(39)]
    #[inline]
    pub gpa_frame: u64,
    /// Owning guest ASID (0 for hypervisor or firmware pages).
    #[bits(10)]
    #[inline]
    pub asid: u16,
    /// The page is a VMSA.
    #[inline]
    pub vmsa: bool,
    /// The guest validated the page (PVALIDATE).
    #[inline]
    pub validated: bool,
    /// Firmware lock.
    #[inline]
    pub lock: bool,
}

/// High quadword of the raw RMP entry: one [`VmplPerms`] byte per VMPL.
///
/// Source: AMD SEV firmware `sev_rmp.h` `rmp_quadword2_t` (bytes 0–3 VMPL0–3; bit 32 implicit key
/// select and the IDE fields above it are not modelled and stay zero).
#[bitfield(u64)]
#[derive(PartialEq, Eq, Hash)]
pub struct RmpEntryHi {
    /// VMPL0 permissions.
    #[bits(8)]
    #[inline]
    pub vmpl0: VmplPerms,
    /// VMPL1 permissions.
    #[bits(8)]
    #[inline]
    pub vmpl1: VmplPerms,
    /// VMPL2 permissions.
    #[bits(8)]
    #[inline]
    pub vmpl2: VmplPerms,
    /// VMPL3 permissions.
    #[bits(8)]
    #[inline]
    pub vmpl3: VmplPerms,
    /// Not modelled (key select, IDE stream, migration state).
    #[inline]
    pub reserved: u32,
}

/// One raw 16-byte RMP entry, as the table holds it in memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct RmpEntryRaw {
    /// Bytes 0–7.
    pub lo: RmpEntryLo,
    /// Bytes 8–15.
    pub hi: RmpEntryHi,
}

const _: () = assert!(core::mem::size_of::<RmpEntryRaw>() as u64 == RMP_ENTRY_BYTES);
const _: () = assert!(core::mem::size_of::<VmplPerms>() == 1);

impl RmpEntryRaw {
    /// The 16 bytes as one little-endian integer (low quadword first).
    pub const fn to_u128(self) -> u128 {
        (self.lo.into_bits() as u128) | ((self.hi.into_bits() as u128) << 64)
    }

    /// Decode 16 bytes given as one little-endian integer.
    pub const fn from_u128(v: u128) -> Self {
        RmpEntryRaw { lo: RmpEntryLo::from_bits(v as u64), hi: RmpEntryHi::from_bits((v >> 64) as u64) }
    }

    /// The permissions of `vmpl` (0–3).
    pub const fn perms(self, vmpl: u8) -> VmplPerms {
        match vmpl {
            0 => self.hi.vmpl0(),
            1 => self.hi.vmpl1(),
            2 => self.hi.vmpl2(),
            _ => self.hi.vmpl3(),
        }
    }

    /// The same entry with the permissions of `vmpl` (0–3) replaced.
    #[must_use]
    pub const fn with_perms(self, vmpl: u8, perms: VmplPerms) -> Self {
        let hi = match vmpl {
            0 => self.hi.with_vmpl0(perms),
            1 => self.hi.with_vmpl1(perms),
            2 => self.hi.with_vmpl2(perms),
            _ => self.hi.with_vmpl3(perms),
        };
        RmpEntryRaw { lo: self.lo, hi }
    }
}

/// The architectural RMP entry: the RMPUPDATE new-state descriptor (RCX points at it) and the
/// RMPREAD output.
///
/// Source: Linux `struct rmp_state` (RMPUPDATE input: `gpa u64; assigned u8; pagesize u8;
/// immutable u8; rsvd u8; asid u32`) and `struct rmpentry` (RMPREAD output, the same bytes with the
/// 2M-region status in bit 1 of byte 9); MSVC `__rmpupdate`/`__rmpread` documentation.
#[bitfield(u128)]
#[derive(PartialEq, Eq, Hash)]
pub struct RmpArchEntry {
    /// The GPA the page is bound to.
    #[bits(64, from = Gpa::new, into = Gpa::raw)]
    #[inline]
    pub gpa: Gpa,
    /// Byte 8 bit 0: assigned.
    #[inline]
    pub assigned: bool,
    #[bits(7)]
    _rsvd0: u8,
    /// Byte 9 bit 0: 0 = 4 KiB, 1 = 2 MiB.
    #[inline]
    pub page_size: bool,
    /// Byte 9 bit 1 (RMPREAD only): some page of the 2 MiB region is assigned.
    #[inline]
    pub hpage_region_status: bool,
    #[bits(6)]
    _rsvd1: u8,
    /// Byte 10 bit 0: immutable.
    #[inline]
    pub immutable: bool,
    #[bits(7)]
    _rsvd2: u8,
    /// Byte 11: reserved.
    _rsvd3: u8,
    /// Bytes 12–15: owning ASID.
    #[inline]
    pub asid: u32,
}

const _: () = assert!(core::mem::size_of::<RmpArchEntry>() == 16);

/// The RMPADJUST operand (RDX): target VMPL, the permissions to give it, and the VMSA flag.
///
/// Source: openvmm `x86defs::snp::SevRmpAdjust`; coconut-svsm `RMPFlags`; Linux
/// `RMPADJUST_VMSA_PAGE_BIT = BIT(16)`.
#[bitfield(u64)]
#[derive(PartialEq, Eq, Hash)]
pub struct RmpAdjustOperand {
    /// Bits 7:0: the VMPL whose permissions change.
    #[inline]
    pub target_vmpl: u8,
    /// Bits 15:8: the new permissions (bit 12, supervisor shadow stack, needs VmplSSS).
    #[bits(8)]
    #[inline]
    pub perms: VmplPerms,
    /// Bit 16: mark (or unmark) the page as a VMSA; honoured only at VMPL0.
    #[inline]
    pub vmsa: bool,
    #[bits(47)]
    _rsvd: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn raw_entry_known_answers() {
        // Firmware page value from AMD SEV firmware `RMP_ENTRY_VAL_FIRMWARE`: lock|immutable|assigned.
        let fw = RmpEntryLo::new().with_assigned(true).with_immutable(true).with_lock(true);
        assert_eq!(fw.into_bits(), 0x8000_0000_0000_0005);
        // HV_FIXED = immutable only.
        assert_eq!(RmpEntryLo::new().with_immutable(true).into_bits(), 0x4);
        let e = RmpEntryLo::new().with_asid(0x3ff).with_gpa_frame(0x7f_ffff_ffff).with_validated(true);
        assert_eq!(e.into_bits(), (0x3ff << 51) | (0x7f_ffff_ffff << 12) | (1 << 62));
        assert_eq!(RmpEntryLo::new().with_subpage_count(511).into_bits(), 511 << 3);
        assert_eq!(VmplPerms::ALL.into_bits(), 0x1f);
        let hi = RmpEntryHi::new().with_vmpl2(VmplPerms::new().with_write(true));
        assert_eq!(hi.into_bits(), 0x2 << 16);
    }

    #[test]
    fn arch_entry_known_answers() {
        let e = RmpArchEntry::new()
            .with_gpa(Gpa::new(0x20_0000))
            .with_assigned(true)
            .with_page_size(true)
            .with_asid(5);
        assert_eq!(e.into_bits(), 0x20_0000 | (1 << 64) | (1 << 72) | (5 << 96));
        assert_eq!(RmpArchEntry::new().with_hpage_region_status(true).into_bits(), 1 << 73);
        assert_eq!(RmpArchEntry::new().with_immutable(true).into_bits(), 1 << 80);
    }

    #[test]
    fn rmpadjust_operand_known_answer() {
        // VMPL1 gets read+write, VMSA set: 0x1_0301.
        let op = RmpAdjustOperand::new()
            .with_target_vmpl(1)
            .with_perms(VmplPerms::new().with_read(true).with_write(true))
            .with_vmsa(true);
        assert_eq!(op.into_bits(), 0x1_0301);
    }

    proptest! {
        #[test]
        fn raw_entry_round_trips(v in any::<u128>()) {
            let e = RmpEntryRaw::from_u128(v);
            prop_assert_eq!(e.to_u128(), v);
            prop_assert_eq!(RmpEntryLo::from_bits(e.lo.into_bits()), e.lo);
            for vmpl in 0..4u8 {
                let p = e.perms(vmpl);
                prop_assert_eq!(e.with_perms(vmpl, p), e);
            }
        }

        #[test]
        fn raw_lo_fields_round_trip(
            assigned: bool, size: bool, imm: bool, sub in 0u16..512, gfn in 0u64..(1 << 39),
            asid in 0u16..1024, vmsa: bool, val: bool, lock: bool,
        ) {
            let e = RmpEntryLo::new().with_assigned(assigned).with_page_size(size).with_immutable(imm)
                .with_subpage_count(sub).with_gpa_frame(gfn).with_asid(asid).with_vmsa(vmsa)
                .with_validated(val).with_lock(lock);
            let d = RmpEntryLo::from_bits(e.into_bits());
            prop_assert_eq!((d.assigned(), d.page_size(), d.immutable(), d.subpage_count()), (assigned, size, imm, sub));
            prop_assert_eq!((d.gpa_frame(), d.asid(), d.vmsa(), d.validated(), d.lock()), (gfn, asid, vmsa, val, lock));
        }

        #[test]
        fn arch_entry_round_trips(gpa: u64, assigned: bool, size: bool, status: bool, imm: bool, asid: u32) {
            let e = RmpArchEntry::new().with_gpa(Gpa::new(gpa)).with_assigned(assigned).with_page_size(size)
                .with_hpage_region_status(status).with_immutable(imm).with_asid(asid);
            let d = RmpArchEntry::from_bits(e.into_bits());
            prop_assert_eq!((d.gpa().raw(), d.assigned(), d.page_size()), (gpa, assigned, size));
            prop_assert_eq!((d.hpage_region_status(), d.immutable(), d.asid()), (status, imm, asid));
        }

        #[test]
        fn rmpadjust_operand_round_trips(vmpl: u8, perms in 0u8..32, vmsa: bool) {
            let op = RmpAdjustOperand::new().with_target_vmpl(vmpl).with_perms(VmplPerms::from_bits(perms)).with_vmsa(vmsa);
            let d = RmpAdjustOperand::from_bits(op.into_bits());
            prop_assert_eq!((d.target_vmpl(), d.perms().into_bits(), d.vmsa()), (vmpl, perms, vmsa));
        }
    }
}
