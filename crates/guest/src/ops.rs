//! The guest operations of a scenario's steps (`docs/semantics.md` G1–G7), each one task run to
//! completion against a [`Platform`]: the sequential guest.

use snpsim_defs::{Gfn, Gpa, RmpAdjustOperand, RmpPageSize};
use snpsim_hw::{AccessKind, GuestOutcome, PvalidateStatus};

use crate::config::{Granularity, Recoalesce};
use crate::error::GuestError;
use crate::guest::Guest;
use crate::platform::Platform;
use crate::task::{GuestTask, TaskResult, TaskStep};

impl Guest {
    /// Run `task` to completion against `p` on `vcpu`: the sequential guest.
    pub fn run(
        &mut self,
        p: &mut dyn Platform,
        vcpu: u32,
        mut task: GuestTask,
    ) -> Result<TaskResult, GuestError> {
        let mut reply = None;
        loop {
            match task.resume_with(self, reply.take(), p.runs())? {
                TaskStep::Issue(req) => reply = Some(p.serve(vcpu, req)?),
                TaskStep::Done(r) => return Ok(r),
            }
        }
    }

    /// The guest's whole page-state change of a range (the `psc` step); see [`GuestTask::psc`].
    pub fn psc(
        &mut self,
        p: &mut dyn Platform,
        vcpu: u32,
        start: Gfn,
        pages: u64,
        private: bool,
        gran: Option<Granularity>,
    ) -> Result<(), GuestError> {
        let task = GuestTask::psc(self, start, pages, private, gran);
        self.run(p, vcpu, task).map(|_| ())
    }

    /// Acceptance of a range (the `accept` step): PSC to private and validation in the guest's
    /// granularity (Linux `snp_accept_memory` → `set_pages_state(SNP_PAGE_STATE_PRIVATE)`).
    pub fn accept(
        &mut self,
        p: &mut dyn Platform,
        vcpu: u32,
        start: Gfn,
        pages: u64,
        gran: Option<Granularity>,
    ) -> Result<(), GuestError> {
        self.psc(p, vcpu, start, pages, true, gran)
    }

    /// The bare PVALIDATE instruction; see [`GuestTask::pvalidate`].
    pub fn pvalidate(
        &mut self,
        p: &mut dyn Platform,
        vcpu: u32,
        gfn: Gfn,
        size: RmpPageSize,
        validate: bool,
    ) -> Result<GuestOutcome<PvalidateStatus>, GuestError> {
        match self.run(p, vcpu, GuestTask::pvalidate(gfn, size, validate))? {
            TaskResult::Pvalidate(r) => Ok(r),
            other => unreachable!("PVALIDATE ended with {other:?}"),
        }
    }

    /// One bare page-state-change request; see [`GuestTask::psc_request`]. Returns SW_EXITINFO2.
    pub fn psc_request(
        &mut self,
        p: &mut dyn Platform,
        vcpu: u32,
        gfn: Gfn,
        size: RmpPageSize,
        private: bool,
        cur_page: u16,
    ) -> Result<u64, GuestError> {
        match self.run(p, vcpu, GuestTask::psc_request(gfn, size, private, cur_page))? {
            TaskResult::PscRequest(info2) => Ok(info2),
            other => unreachable!("a PSC request ended with {other:?}"),
        }
    }

    /// The bare RMPADJUST instruction; see [`GuestTask::rmpadjust`].
    pub fn rmpadjust(
        &mut self,
        p: &mut dyn Platform,
        vcpu: u32,
        gfn: Gfn,
        size: RmpPageSize,
        op: RmpAdjustOperand,
    ) -> Result<GuestOutcome<()>, GuestError> {
        match self.run(p, vcpu, GuestTask::rmpadjust(gfn, size, op))? {
            TaskResult::Plain(r) => Ok(r),
            other => unreachable!("RMPADJUST ended with {other:?}"),
        }
    }

    /// A memory access; see [`GuestTask::access`].
    pub fn access(
        &mut self,
        p: &mut dyn Platform,
        vcpu: u32,
        gpa: Gpa,
        kind: AccessKind,
        private: bool,
    ) -> Result<GuestOutcome<()>, GuestError> {
        let task = GuestTask::access(gpa, kind, private);
        match self.run(p, vcpu, task)? {
            TaskResult::Plain(r) => Ok(r),
            other => unreachable!("an access ended with {other:?}"),
        }
    }

    /// A #VC 0x404 that the guest did not cause; see [`GuestTask::inject_vc`].
    pub fn inject_vc(&mut self, p: &mut dyn Platform, vcpu: u32, gfn: Gfn) -> Result<(), GuestError> {
        self.run(p, vcpu, GuestTask::inject_vc(gfn)).map(|_| ())
    }

    /// Regain a 2M RMP entry for the region at `start`; see [`GuestTask::recoalesce`].
    pub fn recoalesce(
        &mut self,
        p: &mut dyn Platform,
        vcpu: u32,
        start: Gfn,
        mode: Recoalesce,
    ) -> Result<(), GuestError> {
        let task = GuestTask::recoalesce(self, start, mode);
        self.run(p, vcpu, task).map(|_| ())
    }
}
