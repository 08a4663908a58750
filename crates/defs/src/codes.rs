//! Instruction return codes and fault/exit codes.

use bitfield_struct::bitfield;

/// The status an RMP instruction returns in EAX.
///
/// One numbering serves RMPUPDATE, PSMASH, PVALIDATE and RMPADJUST. Sources: Linux
/// `arch/x86/include/asm/sev.h` (`RMPUPDATE_FAIL_OVERLAP` 4, `PSMASH_FAIL_INUSE` 3,
/// `PVALIDATE_FAIL_SIZEMISMATCH` 6); VeriSMo `arch/rmp/def_s.rs` (1, 2, 3, 4, 6); MSVC intrinsic
/// documentation (`__rmpupdate`, `__pvalidate`, `__rmpadjust`, `__psmash`: 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u32)]
pub enum ReturnCode {
    /// The instruction completed.
    Success = 0,
    /// Invalid input: a misaligned address, an address outside the RMP, a malformed operand.
    FailInput = 1,
    /// The caller may not do this: immutable entry, guest caller of a host instruction, a VMPL
    /// that is not allowed to grant the permissions.
    FailPermission = 2,
    /// Another processor is updating the same RMP entry or 2 MiB region.
    FailInuse = 3,
    /// 4 KiB and 2 MiB RMP entries overlap.
    FailOverlap = 4,
    /// The operand size does not match the RMP entry size (PVALIDATE, RMPADJUST).
    FailSizeMismatch = 6,
    /// PSMASH: "the page doesn't meet the requirements for expansion" (MSVC `__psmash`, value 7):
    /// the aligned entry is not an assigned, mutable 2M entry. The name is the APM's mnemonic as
    /// far as it is known (**UNVERIFIED**); the number and the wording are the intrinsic's.
    FailUnsupported = 7,
}

impl ReturnCode {
    /// The architectural value.
    pub const fn raw(self) -> u32 {
        self as u32
    }

    /// Decode an architectural value.
    pub const fn from_raw(v: u32) -> Option<Self> {
        Some(match v {
            0 => ReturnCode::Success,
            1 => ReturnCode::FailInput,
            2 => ReturnCode::FailPermission,
            3 => ReturnCode::FailInuse,
            4 => ReturnCode::FailOverlap,
            6 => ReturnCode::FailSizeMismatch,
            7 => ReturnCode::FailUnsupported,
            _ => return None,
        })
    }

    /// The name used in the APM, Linux and traces (`FAIL_INPUT`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            ReturnCode::Success => "SUCCESS",
            ReturnCode::FailInput => "FAIL_INPUT",
            ReturnCode::FailPermission => "FAIL_PERMISSION",
            ReturnCode::FailInuse => "FAIL_INUSE",
            ReturnCode::FailOverlap => "FAIL_OVERLAP",
            ReturnCode::FailSizeMismatch => "FAIL_SIZEMISMATCH",
            ReturnCode::FailUnsupported => "FAIL_UNSUPPORTED",
        }
    }
}

/// Linux's software code for "PVALIDATE succeeded with CF=1: the entry was already in the requested
/// state" (`PVALIDATE_FAIL_NOUPDATE`, `arch/x86/include/asm/sev.h`). The hardware returns
/// [`ReturnCode::Success`] in EAX and sets CF; this value never appears in EAX.
pub const PVALIDATE_FAIL_NOUPDATE: u32 = 255;

/// The #NPF error code (EXITINFO1 of a nested page fault).
///
/// Source: Linux `arch/x86/include/asm/kvm_host.h` (`PFERR_GUEST_RMP_MASK` bit 31,
/// `PFERR_GUEST_FINAL` 32, `PFERR_GUEST_PAGE` 33, `PFERR_GUEST_ENC` 34, `PFERR_GUEST_SIZEM` 35,
/// `PFERR_GUEST_VMPL` 36), citing APM vol. 2 §15.36.10; openvmm `SevNpfInfo` (bits 6, 37, 63).
#[bitfield(u64)]
#[derive(PartialEq, Eq, Hash)]
pub struct NpfErrorCode {
    /// The NPT entry was present.
    pub present: bool,
    /// The access was a write.
    pub write: bool,
    /// The access was a user access.
    pub user: bool,
    /// A reserved bit was set in an NPT entry.
    pub reserved_bit: bool,
    /// The access was an instruction fetch.
    pub fetch: bool,
    /// Bit 5: protection key (unused by NPT).
    pub protection_key: bool,
    /// Bit 6: shadow-stack access.
    pub shadow_stack: bool,
    #[bits(24)]
    _rsvd0: u32,
    /// Bit 31: the fault is an RMP check violation.
    pub rmp: bool,
    /// Bit 32: fault on the final GPA translation (not a guest page-table walk).
    pub guest_final: bool,
    /// Bit 33: fault during the guest page-table walk.
    pub guest_page: bool,
    /// Bit 34: the access was encrypted (C-bit set, a private access).
    pub enc: bool,
    /// Bit 35: RMP page-size mismatch.
    pub sizem: bool,
    /// Bit 36: VMPL permission violation.
    pub vmpl: bool,
    /// Bit 37: supervisor shadow-stack violation.
    pub supervisor_shadow_stack: bool,
    #[bits(25)]
    _rsvd1: u32,
    /// Bit 63: the access cannot be restarted.
    pub not_restartable: bool,
}

/// The error code of a host #PF (what the CPU pushes; Linux `X86_PF_*`).
///
/// Source: Linux `arch/x86/include/asm/trap_pf.h` (`X86_PF_RMP` = bit 31, "fault was due to RMP
/// violation", added by the SNP host series).
#[bitfield(u32)]
#[derive(PartialEq, Eq, Hash)]
pub struct PfErrorCode {
    /// The page was present.
    pub present: bool,
    /// The access was a write.
    pub write: bool,
    /// The access came from user mode.
    pub user: bool,
    /// A reserved bit was set.
    pub reserved_bit: bool,
    /// Instruction fetch.
    pub instr: bool,
    /// Protection key.
    pub pk: bool,
    /// Shadow stack.
    pub shadow_stack: bool,
    #[bits(8)]
    _rsvd0: u8,
    /// Bit 15: SGX.
    pub sgx: bool,
    #[bits(15)]
    _rsvd1: u16,
    /// Bit 31: RMP violation.
    pub rmp: bool,
}

/// SVM exit codes that SNP memory protection produces (VMEXIT code, and the #VC error code a guest
/// sees). Source: openvmm `SevExitCode`; Linux `SVM_EXIT_NPF`, `SVM_VMGEXIT_PSC`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u64)]
pub enum SvmExitCode {
    /// Nested page fault.
    Npf = 0x400,
    /// VMGEXIT: the guest asks the hypervisor for a service through the GHCB.
    Vmgexit = 0x403,
    /// #VC: a private access to a page whose RMP entry is not Validated.
    PageNotValidated = 0x404,
    /// GHCB NAE event "SNP Page State Change" (SW_EXITCODE).
    VmgexitPsc = 0x8000_0010,
}

impl SvmExitCode {
    /// The architectural value.
    pub const fn raw(self) -> u64 {
        self as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn return_codes_have_architectural_numbers() {
        assert_eq!(ReturnCode::FailInput.raw(), 1);
        assert_eq!(ReturnCode::FailPermission.raw(), 2);
        assert_eq!(ReturnCode::FailInuse.raw(), 3);
        assert_eq!(ReturnCode::FailOverlap.raw(), 4);
        assert_eq!(ReturnCode::FailSizeMismatch.raw(), 6);
        assert_eq!(ReturnCode::FailUnsupported.raw(), 7);
        assert_eq!(ReturnCode::from_raw(7), Some(ReturnCode::FailUnsupported));
        assert_eq!(ReturnCode::from_raw(5), None);
        assert_eq!(ReturnCode::from_raw(8), None);
        assert_eq!(ReturnCode::from_raw(PVALIDATE_FAIL_NOUPDATE), None);
        for v in 0..9 {
            if let Some(c) = ReturnCode::from_raw(v) {
                assert_eq!(c.raw(), v);
            }
        }
    }

    #[test]
    fn npf_error_code_known_answers() {
        let e = NpfErrorCode::new()
            .with_present(true)
            .with_rmp(true)
            .with_guest_final(true)
            .with_enc(true)
            .with_sizem(true);
        assert_eq!(e.into_bits(), 1 | (1 << 31) | (1 << 32) | (1 << 34) | (1 << 35));
        assert_eq!(NpfErrorCode::new().with_vmpl(true).into_bits(), 1 << 36);
        assert_eq!(NpfErrorCode::new().with_fetch(true).with_write(true).into_bits(), 0x12);
        assert_eq!(NpfErrorCode::new().with_not_restartable(true).into_bits(), 1 << 63);
        assert_eq!(PfErrorCode::new().with_rmp(true).with_write(true).into_bits(), 0x8000_0002);
        assert_eq!(SvmExitCode::PageNotValidated.raw(), 0x404);
    }

    proptest! {
        #[test]
        fn npf_error_code_round_trips(bits in any::<u64>()) {
            let e = NpfErrorCode::from_bits(bits);
            prop_assert_eq!(e.into_bits(), bits);
            let bit = |n: u32| bits >> n & 1 == 1;
            prop_assert_eq!((e.present(), e.write(), e.user(), e.reserved_bit(), e.fetch()), (bit(0), bit(1), bit(2), bit(3), bit(4)));
            prop_assert_eq!((e.rmp(), e.guest_final(), e.guest_page(), e.enc()), (bit(31), bit(32), bit(33), bit(34)));
            prop_assert_eq!((e.sizem(), e.vmpl(), e.not_restartable()), (bit(35), bit(36), bit(63)));
        }

        #[test]
        fn pf_error_code_round_trips(bits in any::<u32>()) {
            let e = PfErrorCode::from_bits(bits);
            prop_assert_eq!(e.into_bits(), bits);
            prop_assert_eq!((e.present(), e.write(), e.user(), e.rmp()), (bits & 1 == 1, bits >> 1 & 1 == 1, bits >> 2 & 1 == 1, bits >> 31 == 1));
        }
    }
}
