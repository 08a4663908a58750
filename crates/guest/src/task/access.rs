//! A guest memory access in resumable steps, and the guest's answer to a #VC 0x404: a naive guest
//! (no validation tracking) validates the page and retries once.

use snpsim_defs::{Gpa, RmpPageSize, SvmExitCode};
use snpsim_hw::{AccessKind, GuestOutcome};

use super::{Reply, Request, TaskResult, TaskStep};
use crate::error::GuestError;
use crate::guest::Guest;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum AccessStage {
    Start,
    First,
    Validating,
    Retry,
}

/// The access task: issue the access; a naive guest answers a #VC 0x404 by validating the page
/// and retrying once; the guest's bookkeeping follows the final result.
pub(super) fn access_next(
    g: &mut Guest,
    (gpa, kind, private): (Gpa, AccessKind, bool),
    version: &mut u64,
    stage: &mut AccessStage,
    reply: Option<Reply>,
) -> Result<TaskStep, GuestError> {
    let access = Request::Access { gpa, kind, private, version: *version };
    let gfn = gpa.gfn();
    let (outcome, read) = match (*stage, reply) {
        (AccessStage::Start, _) => {
            // The version is taken when the write is issued, so that concurrent
            // writers on other vCPUs never store the same one.
            *version = g.next_version;
            if private && kind == AccessKind::Write {
                g.next_version += 1;
            }
            *stage = AccessStage::First;
            return Ok(TaskStep::Issue(Request::Access { gpa, kind, private, version: *version }));
        }
        (AccessStage::Validating, Some(Reply::Pvalidate(r))) => {
            if r.is_done() {
                g.validated.insert(gfn.raw(), gfn.raw() + 1);
                *stage = AccessStage::Retry;
                return Ok(TaskStep::Issue(access));
            }
            (GuestOutcome::Vc(SvmExitCode::PageNotValidated), None)
        }
        (AccessStage::First, Some(Reply::Access { outcome, .. }))
            if outcome == GuestOutcome::Vc(SvmExitCode::PageNotValidated)
                && !g.config().validation_tracking =>
        {
            // A naive guest validates the page it took the #VC for and retries:
            // exactly what a hypervisor that swapped the frame behind a validated GPA
            // needs (docs/attacks.md).
            g.stats.pvalidate += 1;
            *stage = AccessStage::Validating;
            return Ok(TaskStep::Issue(Request::Pvalidate {
                gpa: gfn.gpa(),
                size: RmpPageSize::Size4K,
                validate: true,
            }));
        }
        (AccessStage::First | AccessStage::Retry, Some(Reply::Access { outcome, read })) => (outcome, read),
        _ => unreachable!("an access awaits an access or PVALIDATE reply"),
    };
    g.complete_access(gfn, kind, private, *version, outcome, read)?;
    Ok(TaskStep::Done(TaskResult::Plain(outcome)))
}
