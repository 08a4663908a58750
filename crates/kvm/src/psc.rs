//! Page-state-change request decoding: the GHCB MSR protocol and the NAE event, processed the way
//! KVM's `snp_begin_psc_msr` / `snp_begin_psc` / `snp_complete_psc` do (`arch/x86/kvm/svm/sev.c`).

use snpsim_defs::Gfn;
use snpsim_defs::ghcb::{
    GHCB_MSR_PSC_REQ, GHCB_MSR_PSC_RESP, GhcbMsrPscRequest, GhcbMsrPscResponse, PscBuffer, PscEntry, PscOp,
    VMGEXIT_PSC_ERROR_GENERIC, VMGEXIT_PSC_ERROR_INVALID_ENTRY, VMGEXIT_PSC_ERROR_INVALID_HDR,
    VMGEXIT_PSC_MAX_COUNT,
};
use snpsim_hw::Mutant;

/// A run of pages to convert, as KVM forwards it to userspace (KVM_HC_MAP_GPA_RANGE) or, in the
/// legacy era, converts itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PscRange {
    /// First GFN.
    pub gfn: Gfn,
    /// Number of 4 KiB pages.
    pub pages: u64,
    /// `true` = to private, `false` = to shared.
    pub private: bool,
    /// The guest asked for 2M entries (KVM_MAP_GPA_RANGE_PAGE_SZ_2M).
    pub size_2m: bool,
}

/// The MSR-protocol response to `req`, after `apply` converted the page (or failed).
///
/// KVM answers an operation other than private/shared with `GHCB_MSR_PSC_RESP_ERROR` (all ones in
/// the error field) and a failed conversion with the same.
pub fn process_msr(req: GhcbMsrPscRequest, apply: impl FnOnce(PscRange) -> bool) -> GhcbMsrPscResponse {
    let error = GhcbMsrPscResponse::new().with_info(GHCB_MSR_PSC_RESP).with_error(u32::MAX);
    if req.info() != GHCB_MSR_PSC_REQ {
        return error;
    }
    let private = match PscOp::from_raw(req.op()) {
        Some(PscOp::Private) => true,
        Some(PscOp::Shared) => false,
        _ => return error,
    };
    if apply(PscRange { gfn: req.gfn(), pages: 1, private, size_2m: false }) {
        GhcbMsrPscResponse::new().with_info(GHCB_MSR_PSC_RESP)
    } else {
        error
    }
}

/// Process an NAE page-state-change buffer in place and return SW_EXITINFO2.
///
/// As `snp_begin_psc`: `end_entry` must be below [`VMGEXIT_PSC_MAX_COUNT`] (and inside the buffer)
/// ⇒ else INVALID_HDR; entries from `cur_entry` on: `cur_page` above the entry's page count or a
/// GFN not aligned to it ⇒ INVALID_ENTRY; a finished entry is skipped; a partly done entry
/// (`cur_page` ≠ 0) is continued as 4K pages from `gfn + cur_page`; following entries with the
/// same operation, contiguous GFNs, `cur_page` 0 and the same size are coalesced into one range;
/// every operation but private and shared (PSMASH, UNSMASH, undefined values) is marked done
/// without action, as `snp_begin_psc`'s default branch does; a
/// range `apply` fails ⇒ GENERIC. Finished entries get `cur_page` = their page count and
/// `cur_entry` advances past them, so a re-issued buffer resumes where this one stopped.
pub fn process_ghcb(buf: &mut PscBuffer, pages_per_2m: u64, apply: impl FnMut(PscRange) -> bool) -> u64 {
    process_ghcb_mutated(buf, pages_per_2m, None, apply)
}

/// [`process_ghcb`] with a planted bug (checker tests only; see [`Mutant`]).
pub fn process_ghcb_mutated(
    buf: &mut PscBuffer,
    pages_per_2m: u64,
    mutant: Option<Mutant>,
    mut apply: impl FnMut(PscRange) -> bool,
) -> u64 {
    let end = buf.header.end_entry();
    if end >= VMGEXIT_PSC_MAX_COUNT || usize::from(end) >= buf.entries.len() {
        return VMGEXIT_PSC_ERROR_INVALID_HDR;
    }
    let npages = |e: &PscEntry| if e.page_size() { pages_per_2m } else { 1 };
    let mut idx = buf.header.cur_entry();
    while idx <= end {
        let e = buf.entries[usize::from(idx)];
        let n = npages(&e);
        let aligned = e.gfn().is_aligned(n) || Mutant::PscAcceptsUnaligned2m.planted(mutant);
        if u64::from(e.cur_page()) > n || !aligned {
            return VMGEXIT_PSC_ERROR_INVALID_ENTRY;
        }
        if u64::from(e.cur_page()) == n {
            idx += 1;
            buf.header.set_cur_entry(idx);
            continue;
        }
        let private = match PscOp::from_raw(e.op()) {
            Some(PscOp::Private) => true,
            Some(PscOp::Shared) => false,
            // `snp_begin_psc`'s default branch: every operation but private/shared (PSMASH,
            // UNSMASH, and values the GHCB spec does not define) is "considered completed".
            Some(PscOp::Psmash | PscOp::Unsmash) | None => {
                buf.entries[usize::from(idx)].set_cur_page(n as u16);
                idx += 1;
                buf.header.set_cur_entry(idx);
                continue;
            }
        };
        let done = if Mutant::PscIgnoresCurPage.planted(mutant) { 0 } else { u64::from(e.cur_page()) };
        let partial = done != 0;
        let mut range =
            PscRange { gfn: e.gfn() + done, pages: n - done, private, size_2m: e.page_size() && !partial };
        let mut last = idx;
        if !partial {
            while last < end {
                let next = buf.entries[usize::from(last + 1)];
                let contiguous = next.gfn() == range.gfn + range.pages;
                if next.op() != e.op()
                    || next.cur_page() != 0
                    || next.page_size() != e.page_size()
                    || !contiguous
                {
                    break;
                }
                if !next.gfn().is_aligned(npages(&next)) {
                    break;
                }
                range.pages += npages(&next);
                last += 1;
            }
        }
        if !apply(range) {
            return VMGEXIT_PSC_ERROR_GENERIC;
        }
        for i in idx..=last {
            let slot = &mut buf.entries[usize::from(i)];
            let n = npages(slot) as u16;
            slot.set_cur_page(n);
        }
        idx = last + 1;
        buf.header.set_cur_entry(idx);
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use snpsim_defs::ghcb::PscHeader;

    fn entry(gfn: u64, op: PscOp, big: bool) -> PscEntry {
        PscEntry::new().with_gfn(Gfn::new(gfn)).with_op(op.raw()).with_page_size(big)
    }

    fn buffer(entries: Vec<PscEntry>) -> PscBuffer {
        let end = entries.len() as u16 - 1;
        PscBuffer { header: PscHeader::new().with_end_entry(end), entries }
    }

    #[test]
    fn contiguous_entries_coalesce_and_complete() {
        let mut b = buffer(vec![
            entry(0x200, PscOp::Private, true),
            entry(0x400, PscOp::Private, true),
            entry(0x600, PscOp::Shared, false),
        ]);
        let mut seen = Vec::new();
        assert_eq!(
            process_ghcb(&mut b, 512, |r| {
                seen.push(r);
                true
            }),
            0
        );
        assert_eq!(
            seen,
            vec![
                PscRange { gfn: Gfn::new(0x200), pages: 1024, private: true, size_2m: true },
                PscRange { gfn: Gfn::new(0x600), pages: 1, private: false, size_2m: false },
            ]
        );
        assert_eq!(b.header.cur_entry(), 3);
        assert!(b.entries.iter().all(|e| e.cur_page() != 0));
    }

    #[test]
    fn partial_entry_resumes_as_4k_pages() {
        let mut b = buffer(vec![entry(0x200, PscOp::Shared, true).with_cur_page(0x100)]);
        let mut seen = Vec::new();
        assert_eq!(
            process_ghcb(&mut b, 512, |r| {
                seen.push(r);
                true
            }),
            0
        );
        assert_eq!(
            seen,
            vec![PscRange { gfn: Gfn::new(0x300), pages: 0x100, private: false, size_2m: false }]
        );
    }

    #[test]
    fn header_and_entry_errors() {
        let mut b = buffer(vec![entry(0x200, PscOp::Private, true)]);
        b.header.set_end_entry(253);
        assert_eq!(process_ghcb(&mut b, 512, |_| true), VMGEXIT_PSC_ERROR_INVALID_HDR);
        let mut b = buffer(vec![entry(0x201, PscOp::Private, true)]);
        assert_eq!(process_ghcb(&mut b, 512, |_| true), VMGEXIT_PSC_ERROR_INVALID_ENTRY);
        let mut b = buffer(vec![entry(0x200, PscOp::Private, false).with_cur_page(2)]);
        assert_eq!(process_ghcb(&mut b, 512, |_| true), VMGEXIT_PSC_ERROR_INVALID_ENTRY);
        // An undefined operation is completed without action (`snp_begin_psc`'s default).
        let mut b = buffer(vec![PscEntry::new().with_gfn(Gfn::new(1)).with_op(7)]);
        assert_eq!(process_ghcb(&mut b, 512, |_| panic!("nothing to convert")), 0);
        assert_eq!((b.header.cur_entry(), b.entries[0].cur_page()), (1, 1));
        let mut b = buffer(vec![entry(1, PscOp::Private, false)]);
        assert_eq!(process_ghcb(&mut b, 512, |_| false), VMGEXIT_PSC_ERROR_GENERIC);
        assert_eq!(b.header.cur_entry(), 0);
    }

    #[test]
    fn psmash_and_unsmash_are_acknowledged_without_action() {
        let mut b = buffer(vec![entry(0x200, PscOp::Psmash, true), entry(0x400, PscOp::Unsmash, true)]);
        assert_eq!(process_ghcb(&mut b, 512, |_| panic!("no conversion expected")), 0);
        assert_eq!(b.entries[0].cur_page(), 512);
        assert_eq!(b.header.cur_entry(), 2);
    }

    #[test]
    fn msr_protocol() {
        let req = GhcbMsrPscRequest::new()
            .with_info(GHCB_MSR_PSC_REQ)
            .with_gfn(Gfn::new(5))
            .with_op(PscOp::Private.raw());
        let mut seen = None;
        let resp = process_msr(req, |r| {
            seen = Some(r);
            true
        });
        assert_eq!(resp.error(), 0);
        assert_eq!(resp.info(), GHCB_MSR_PSC_RESP);
        assert_eq!(seen, Some(PscRange { gfn: Gfn::new(5), pages: 1, private: true, size_2m: false }));
        assert_eq!(process_msr(req.with_op(3), |_| true).error(), u32::MAX);
        assert_eq!(process_msr(req, |_| false).error(), u32::MAX);
    }
}
