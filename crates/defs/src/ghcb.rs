//! GHCB page-state-change encodings (MSR protocol and the NAE event) and the Linux/KVM ABI values
//! a page-state change travels through.
//!
//! Sources: Linux `arch/x86/include/asm/sev-common.h` (`GHCB_MSR_PSC_REQ/RESP`, `struct
//! psc_hdr`, `struct psc_entry`, `VMGEXIT_PSC_*`); KVM `arch/x86/kvm/svm/sev.c` (`snp_begin_psc`,
//! `snp_complete_psc`); openvmm `GHCB_DATA_PAGE_STATE_*`; `include/uapi/linux/kvm_para.h`.

use bitfield_struct::bitfield;

use crate::addr::Gfn;

/// Bits 11:0 of GHCBData in an MSR-protocol page-state-change request.
pub const GHCB_MSR_PSC_REQ: u16 = 0x014;
/// Bits 11:0 of GHCBData in an MSR-protocol page-state-change response.
pub const GHCB_MSR_PSC_RESP: u16 = 0x015;
/// Most entries one NAE page-state-change request may hold (8 + 253 × 8 bytes fit the 2 KiB GHCB
/// shared buffer). Linux `VMGEXIT_PSC_MAX_COUNT`.
pub const VMGEXIT_PSC_MAX_COUNT: u16 = 253;
/// Entries a Linux guest puts in one request (`VMGEXIT_PSC_MAX_ENTRY`, a stack-size choice).
pub const LINUX_PSC_MAX_ENTRY: u16 = 64;
/// NAE PSC SW_EXITINFO2: generic error (`VMGEXIT_PSC_ERROR_GENERIC`).
pub const VMGEXIT_PSC_ERROR_GENERIC: u64 = 0x100 << 32;
/// NAE PSC SW_EXITINFO2: invalid header (`VMGEXIT_PSC_ERROR_INVALID_HDR`).
pub const VMGEXIT_PSC_ERROR_INVALID_HDR: u64 = (1 << 32) | 1;
/// NAE PSC SW_EXITINFO2: invalid entry (`VMGEXIT_PSC_ERROR_INVALID_ENTRY`).
pub const VMGEXIT_PSC_ERROR_INVALID_ENTRY: u64 = (1 << 32) | 2;
/// GHCB termination reason set used by Linux guests (`SEV_TERM_SET_LINUX`).
pub const SEV_TERM_SET_LINUX: u8 = 1;
/// Linux guest termination code: a page-state change failed (`GHCB_TERM_PSC`).
pub const GHCB_TERM_PSC: u8 = 1;
/// Linux guest termination code: PVALIDATE failed (`GHCB_TERM_PVALIDATE`).
pub const GHCB_TERM_PVALIDATE: u8 = 2;
/// KVM hypercall number that KVM forwards page-state changes to the VMM with
/// (`KVM_HC_MAP_GPA_RANGE`).
pub const KVM_HC_MAP_GPA_RANGE: u64 = 12;
/// `KVM_MAP_GPA_RANGE_PAGE_SZ_2M` attribute bit.
pub const KVM_MAP_GPA_RANGE_PAGE_SZ_2M: u64 = 1 << 0;
/// `KVM_MAP_GPA_RANGE_PAGE_SZ_1G` attribute bit.
pub const KVM_MAP_GPA_RANGE_PAGE_SZ_1G: u64 = 1 << 1;
/// `KVM_MAP_GPA_RANGE_ENCRYPTED` attribute bit (to private; absent = to shared).
pub const KVM_MAP_GPA_RANGE_ENCRYPTED: u64 = 1 << 4;

/// A page-state-change operation, as both protocols encode it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum PscOp {
    /// Make the page private (assign it to the guest).
    Private = 1,
    /// Make the page shared (return it to the hypervisor).
    Shared = 2,
    /// Ask the hypervisor to PSMASH a 2 MiB entry (KVM acknowledges it and does nothing).
    Psmash = 3,
    /// Ask the hypervisor to re-form a 2 MiB entry (KVM acknowledges it and does nothing).
    Unsmash = 4,
}

impl PscOp {
    /// Decode a 4-bit operation field; unknown values are `None` (KVM rejects them).
    pub const fn from_raw(v: u8) -> Option<Self> {
        Some(match v {
            1 => PscOp::Private,
            2 => PscOp::Shared,
            3 => PscOp::Psmash,
            4 => PscOp::Unsmash,
            _ => return None,
        })
    }

    /// The architectural value.
    pub const fn raw(self) -> u8 {
        self as u8
    }
}

/// MSR-protocol page-state-change request (GHCB MSR value): one 4 KiB page per VMGEXIT.
#[bitfield(u64)]
#[derive(PartialEq, Eq, Hash)]
pub struct GhcbMsrPscRequest {
    /// Bits 11..0: [`GHCB_MSR_PSC_REQ`].
    #[bits(12)]
    pub info: u16,
    /// Bits 51:12: the guest frame number.
    #[bits(40, from = Gfn::new, into = Gfn::raw)]
    pub gfn: Gfn,
    /// Bits 55:52: the [`PscOp`] value (raw, so invalid requests are representable).
    #[bits(4)]
    pub op: u8,
    #[bits(8)]
    _rsvd: u8,
}

/// MSR-protocol page-state-change response.
#[bitfield(u64)]
#[derive(PartialEq, Eq, Hash)]
pub struct GhcbMsrPscResponse {
    /// Bits 11..0: [`GHCB_MSR_PSC_RESP`].
    #[bits(12)]
    pub info: u16,
    #[bits(20)]
    _rsvd: u32,
    /// Bits 63:32: 0 on success, else an error code.
    pub error: u32,
}

/// Header of an NAE page-state-change buffer.
#[bitfield(u64)]
#[derive(PartialEq, Eq, Hash)]
pub struct PscHeader {
    /// Index of the next entry to process; the hypervisor advances it.
    pub cur_entry: u16,
    /// Index of the last entry (inclusive); must be below [`VMGEXIT_PSC_MAX_COUNT`].
    pub end_entry: u16,
    /// Reserved; a guest treats a non-zero value as a hypervisor error.
    pub reserved: u32,
}

/// One entry of an NAE page-state-change buffer.
#[bitfield(u64)]
#[derive(PartialEq, Eq, Hash)]
pub struct PscEntry {
    /// Bits 11:0: 4 KiB pages of this entry already processed (resume point).
    #[bits(12)]
    pub cur_page: u16,
    /// Bits 51:12: the first guest frame number.
    #[bits(40, from = Gfn::new, into = Gfn::raw)]
    pub gfn: Gfn,
    /// Bits 55:52: the [`PscOp`] value (raw).
    #[bits(4)]
    pub op: u8,
    /// Bit 56: 0 = 4 KiB, 1 = 2 MiB.
    pub page_size: bool,
    #[bits(7)]
    _rsvd: u8,
}

/// An NAE page-state-change buffer in the GHCB shared buffer: the header and its entry slots.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PscBuffer {
    /// The header.
    pub header: PscHeader,
    /// Entry slots (the hypervisor reads at most [`VMGEXIT_PSC_MAX_COUNT`]).
    pub entries: Vec<PscEntry>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn psc_entry_known_answer() {
        // GFN 0x200, op private, 2 MiB: gfn << 12 | 1 << 52 | 1 << 56.
        let e = PscEntry::new().with_gfn(Gfn::new(0x200)).with_op(PscOp::Private.raw()).with_page_size(true);
        assert_eq!(e.into_bits(), 0x0110_0000_0020_0000);
        let resumed = e.with_cur_page(0x1ff);
        assert_eq!(resumed.into_bits(), 0x0110_0000_0020_01ff);
    }

    #[test]
    fn msr_psc_known_answers() {
        let req = GhcbMsrPscRequest::new()
            .with_info(GHCB_MSR_PSC_REQ)
            .with_gfn(Gfn::new(0x1234))
            .with_op(PscOp::Shared.raw());
        assert_eq!(req.into_bits(), 0x0020_0000_0123_4014);
        let resp = GhcbMsrPscResponse::new().with_info(GHCB_MSR_PSC_RESP).with_error(0);
        assert_eq!(resp.into_bits(), 0x015);
        assert_eq!(
            GhcbMsrPscResponse::new().with_info(GHCB_MSR_PSC_RESP).with_error(1).into_bits(),
            0x1_0000_0015
        );
    }

    #[test]
    fn psc_header_and_limits() {
        let h = PscHeader::new().with_cur_entry(3).with_end_entry(252);
        assert_eq!(h.into_bits(), 3 | (252 << 16));
        assert_eq!(8 + u64::from(VMGEXIT_PSC_MAX_COUNT) * 8, 2032);
        assert_eq!(VMGEXIT_PSC_ERROR_INVALID_HDR, 0x1_0000_0001);
        assert_eq!(VMGEXIT_PSC_ERROR_INVALID_ENTRY, 0x1_0000_0002);
        assert_eq!(VMGEXIT_PSC_ERROR_GENERIC, 0x100_0000_0000);
        assert_eq!(PscOp::from_raw(0), None);
        assert_eq!(PscOp::from_raw(5), None);
    }

    proptest! {
        #[test]
        fn psc_entry_round_trips(cur in 0u16..4096, gfn in 0u64..(1 << 40), op in 0u8..16, big: bool) {
            let e = PscEntry::new().with_cur_page(cur).with_gfn(Gfn::new(gfn)).with_op(op).with_page_size(big);
            let d = PscEntry::from_bits(e.into_bits());
            prop_assert_eq!((d.cur_page(), d.gfn().raw(), d.op(), d.page_size()), (cur, gfn, op, big));
            if let Some(o) = PscOp::from_raw(op) { prop_assert_eq!(o.raw(), op); }
        }

        #[test]
        fn msr_request_round_trips(gfn in 0u64..(1 << 40), op in 0u8..16) {
            let r = GhcbMsrPscRequest::new().with_info(GHCB_MSR_PSC_REQ).with_gfn(Gfn::new(gfn)).with_op(op);
            let d = GhcbMsrPscRequest::from_bits(r.into_bits());
            prop_assert_eq!((d.info(), d.gfn().raw(), d.op()), (GHCB_MSR_PSC_REQ, gfn, op));
        }

        #[test]
        fn msr_response_round_trips(err: u32) {
            let r = GhcbMsrPscResponse::new().with_info(GHCB_MSR_PSC_RESP).with_error(err);
            let d = GhcbMsrPscResponse::from_bits(r.into_bits());
            prop_assert_eq!((d.info(), d.error()), (GHCB_MSR_PSC_RESP, err));
        }

        #[test]
        fn psc_header_round_trips(cur: u16, end: u16, rsvd: u32) {
            let h = PscHeader::new().with_cur_entry(cur).with_end_entry(end).with_reserved(rsvd);
            prop_assert_eq!(PscHeader::from_bits(h.into_bits()), h);
            prop_assert_eq!((h.cur_entry(), h.end_entry(), h.reserved()), (cur, end, rsvd));
        }
    }
}
