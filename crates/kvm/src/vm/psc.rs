//! The page-state-change VMGEXITs: the MSR protocol and the NAE buffer (whole, or one range per
//! step in an interleaved run), with the adversarial handlers a malicious hypervisor may use.
//! The protocol decoding is [`crate::psc`]; each range is converted as the policy does it.

use snpsim_defs::ghcb::{GhcbMsrPscRequest, GhcbMsrPscResponse, PscBuffer};
use snpsim_host::{Host, HostError};
use snpsim_hw::RmpModel;

use super::Kvm;
use crate::error::KvmError;
use crate::psc::{self, PscRange};
use crate::stats::exit;

impl Kvm {
    /// Handle an MSR-protocol PSC VMGEXIT.
    pub fn handle_psc_msr(
        &mut self,
        host: &mut Host,
        rmp: &mut dyn RmpModel,
        req: GhcbMsrPscRequest,
    ) -> Result<GhcbMsrPscResponse, KvmError> {
        self.stats.exit(exit::VMGEXIT_PSC_MSR);
        self.stats.psc_requests += 1;
        self.psc_refusal = None;
        let mut fatal = None;
        let resp = psc::process_msr(req, |range| self.apply_psc(host, rmp, range, &mut fatal));
        if resp.error() != 0 {
            self.stats.psc_failed += 1;
        }
        fatal.map_or(Ok(resp), Err)
    }

    /// Handle an NAE PSC VMGEXIT; returns SW_EXITINFO2.
    pub fn handle_psc_ghcb(
        &mut self,
        host: &mut Host,
        rmp: &mut dyn RmpModel,
        buf: &mut PscBuffer,
    ) -> Result<u64, KvmError> {
        self.stats.exit(exit::VMGEXIT_PSC);
        self.stats.psc_requests += 1;
        self.psc_refusal = None;
        let mut fatal = None;
        let per_2m = self.geometry.pages_per_2m();
        let mutant = self.mutant;
        let adv = self.psc_adversary;
        let (cur, end) = (buf.header.cur_entry(), buf.header.end_entry());
        let half = cur + end.saturating_sub(cur).div_ceil(2);
        if adv.lie_cur_page {
            for e in buf.entries.iter_mut().take(usize::from(end) + 1).skip(usize::from(half) + 1) {
                e.set_cur_page(if e.page_size() { per_2m as u16 } else { 1 });
            }
        }
        let real_end = buf.header.end_entry();
        if adv.drop_halfway && half < end {
            buf.header.set_end_entry(half);
        }
        let info2 = psc::process_ghcb_mutated(buf, per_2m, mutant, |range| {
            self.apply_psc(host, rmp, range, &mut fatal)
        });
        buf.header.set_end_entry(real_end);
        if info2 != 0 {
            self.stats.psc_failed += 1;
        }
        fatal.map_or(Ok(info2), Err)
    }

    /// The range the next step of an NAE PSC would convert (`None` when nothing is left to convert
    /// or the buffer is malformed), without converting anything.
    pub fn psc_next_range(&self, buf: &PscBuffer) -> Option<PscRange> {
        let mut probe = buf.clone();
        let mut next = None;
        psc::process_ghcb_mutated(&mut probe, self.geometry.pages_per_2m(), self.mutant, |range| {
            next = Some(range);
            false
        });
        next
    }

    /// One step of an NAE PSC VMGEXIT in an interleaved run: convert at most one range (as KVM
    /// does per KVM_HC_MAP_GPA_RANGE exit before re-entering `snp_begin_psc`), the exit counted on
    /// the `first` step. Returns SW_EXITINFO2 when the request is finished, `None` while ranges
    /// remain. The adversarial PSC behaviours are not available here.
    pub fn handle_psc_ghcb_one(
        &mut self,
        host: &mut Host,
        rmp: &mut dyn RmpModel,
        buf: &mut PscBuffer,
        first: bool,
    ) -> Result<Option<u64>, KvmError> {
        if first {
            self.stats.exit(exit::VMGEXIT_PSC);
            self.stats.psc_requests += 1;
            self.psc_refusal = None;
        }
        let mut fatal = None;
        let mut applied = false;
        let mut more = false;
        let per_2m = self.geometry.pages_per_2m();
        let info2 = psc::process_ghcb_mutated(buf, per_2m, self.mutant, |range| {
            if applied {
                more = true;
                return false;
            }
            applied = true;
            self.apply_psc(host, rmp, range, &mut fatal)
        });
        if let Some(e) = fatal {
            return Err(e);
        }
        if more {
            return Ok(None);
        }
        if info2 != 0 {
            self.stats.psc_failed += 1;
        }
        Ok(Some(info2))
    }

    /// Convert one PSC range; a refusal is reported to the guest, any other failure is fatal.
    fn apply_psc(
        &mut self,
        host: &mut Host,
        rmp: &mut dyn RmpModel,
        range: PscRange,
        fatal: &mut Option<KvmError>,
    ) -> bool {
        if range.gfn.raw().checked_add(range.pages).is_none_or(|end| end > self.pages) {
            return false;
        }
        self.stats.psc_pages += range.pages;
        if self.psc_adversary.ack_without_action {
            return true;
        }
        if let Some(reason) = self.policy.psc_range_exit() {
            self.stats.exit(reason);
        }
        match self.convert(host, rmp, range) {
            Ok(()) => true,
            Err(KvmError::PscRefused(r)) => {
                self.psc_refusal = Some(r);
                false
            }
            // An in-place conversion the guest_memfd refused for an extra reference on a page:
            // the VMM reports it to the guest as a failed page-state change (`gmem-inplace`).
            Err(KvmError::Host(HostError::ExtraReference { .. })) => false,
            Err(e) => {
                *fatal = Some(e);
                false
            }
        }
    }
}
