//! What the engine does with each action: the guest task of a guest action, interleaved runs on
//! several vCPUs, and the host, KVM and hypervisor actions.

use snpsim_defs::RmpAdjustOperand;
use snpsim_guest::{Guest, GuestError, GuestTask, Recoalesce, TaskResult, TaskStep};
use snpsim_host::HostWriteOutcome;

use crate::action::Action;
use crate::events::Actor;
use crate::machine::Machine;
use crate::vcpu::Exec;

/// A guest operation in progress on one vCPU of an interleaved run.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Running {
    /// The action it started from.
    pub action: Action,
    /// The guest's side.
    pub task: GuestTask,
    /// The platform request in progress, if any.
    pub exec: Option<Exec>,
}

/// The guest task of a guest action.
pub(crate) fn guest_task(guest: &mut Guest, action: &Action, lossy: &mut bool) -> GuestTask {
    match *action {
        Action::Psc { gpa, pages, private, granularity, .. } => {
            GuestTask::psc(guest, gpa.gfn(), pages, private, granularity)
        }
        Action::Accept { gpa, pages, granularity, .. } => {
            GuestTask::psc(guest, gpa.gfn(), pages, true, granularity)
        }
        Action::Pvalidate { gpa, size, validate, .. } => GuestTask::pvalidate(gpa.gfn(), size, validate),
        Action::PscRequest { gpa, size, private, cur_page, .. } => {
            GuestTask::psc_request(gpa.gfn(), size, private, cur_page)
        }
        Action::Rmpadjust { gpa, size, vmpl, perms, vmsa, .. } => {
            let op = RmpAdjustOperand::new().with_target_vmpl(vmpl).with_perms(perms).with_vmsa(vmsa);
            GuestTask::rmpadjust(gpa.gfn(), size, op)
        }
        Action::Access { gpa, kind, private, .. } => GuestTask::access(gpa, kind, private),
        Action::Recoalesce { gpa, mode, .. } => {
            if mode == Recoalesce::Naive {
                *lossy = true;
            }
            GuestTask::recoalesce(guest, gpa.gfn(), mode)
        }
        _ => unreachable!("{action:?} is not a guest action"),
    }
}

/// A guest action or a tick in an interleaved run: start the action on its idle vCPU and run its
/// first request's first tick, or advance the running one. `Ok(None)` while it goes on.
pub(crate) fn interleaved(
    m: &mut Machine,
    guest: &mut Guest,
    running: &mut [Option<Running>],
    action: &Action,
    lossy: &mut bool,
) -> Result<Option<String>, GuestError> {
    let vcpu = action.vcpu().unwrap_or(0);
    let slot = &mut running[vcpu as usize];
    let mut reply = None;
    match (action, slot.as_mut()) {
        (Action::Tick { .. }, None) => return Ok(Some("idle".into())),
        (Action::Tick { .. }, Some(run)) => {
            if let Some(exec) = &mut run.exec {
                match m.tick(vcpu, exec)? {
                    None => return Ok(None),
                    Some(r) => {
                        run.exec = None;
                        reply = Some(r);
                    }
                }
            }
        }
        (_, Some(_)) => return Ok(Some(format!("vcpu {vcpu} is busy"))),
        (_, None) => {
            *slot = Some(Running { action: *action, task: guest_task(guest, action, lossy), exec: None });
        }
    }
    // Resume the guest with the reply; the request it issues on starting runs its first tick now.
    let mut first = reply.is_none();
    loop {
        let Some(run) = slot.as_mut() else { return Ok(None) };
        match run.task.resume(guest, reply.take()) {
            Ok(TaskStep::Issue(req)) => {
                let mut exec = Exec::new(req);
                if std::mem::take(&mut first)
                    && let Some(r) = m.tick(vcpu, &mut exec)?
                {
                    reply = Some(r);
                    continue;
                }
                run.exec = Some(exec);
                return Ok(None);
            }
            Ok(TaskStep::Done(r)) => {
                *slot = None;
                return Ok(Some(r.describe()));
            }
            Err(e) => {
                *slot = None;
                return Err(e);
            }
        }
    }
}

pub(crate) fn collapse_all(m: &mut Machine) {
    // Only split regions can collapse: visiting them alone keeps a step O(split regions).
    for offset in m.host.vma.split_offsets() {
        if let Ok(Some(inv)) = m.host.collapse_vma(offset) {
            if let Some(r) = &mut m.rmp.sink {
                r.set_actor(None, Actor::Khugepaged);
                r.host_collapse(inv.offset, inv.pages);
            }
            m.kvm.mmu_invalidate(inv);
        }
    }
}

pub(crate) fn run_action(
    m: &mut Machine,
    guest: &mut Guest,
    action: &Action,
    lossy: &mut bool,
) -> Result<String, GuestError> {
    Ok(match *action {
        Action::Psc { vcpu, gpa, pages, private, granularity } => {
            guest.psc(m, vcpu, gpa.gfn(), pages, private, granularity)?;
            "ok".into()
        }
        Action::Accept { vcpu, gpa, pages, granularity } => {
            guest.accept(m, vcpu, gpa.gfn(), pages, granularity)?;
            "ok".into()
        }
        Action::Pvalidate { vcpu, gpa, size, validate } => {
            TaskResult::Pvalidate(guest.pvalidate(m, vcpu, gpa.gfn(), size, validate)?).describe()
        }
        Action::Rmpadjust { vcpu, gpa, size, vmpl, perms, vmsa } => {
            let op = RmpAdjustOperand::new().with_target_vmpl(vmpl).with_perms(perms).with_vmsa(vmsa);
            TaskResult::Plain(guest.rmpadjust(m, vcpu, gpa.gfn(), size, op)?).describe()
        }
        Action::PscRequest { vcpu, gpa, size, private, cur_page } => {
            let info2 = guest.psc_request(m, vcpu, gpa.gfn(), size, private, cur_page)?;
            TaskResult::PscRequest(info2).describe()
        }
        Action::Access { vcpu, gpa, kind, private } => {
            TaskResult::Plain(guest.access(m, vcpu, gpa, kind, private)?).describe()
        }
        Action::Recoalesce { vcpu, gpa, mode } => {
            if mode == Recoalesce::Naive {
                *lossy = true;
            }
            guest.recoalesce(m, vcpu, gpa.gfn(), mode)?;
            "ok".into()
        }
        Action::HostWrite { gpa, via } => match m.host_write(gpa, via) {
            HostWriteOutcome::Done => "ok".into(),
            HostWriteOutcome::Hang => return Err(GuestError::Stopped),
            other => other.name().to_owned(),
        },
        Action::HostRead { gpa, via } => match m.host_read(gpa, via) {
            HostWriteOutcome::Done => "ok".into(),
            other => other.name().to_owned(),
        },
        Action::HostPin { gpa, pin } => match m.host_pin(gpa, pin) {
            Ok(()) => "ok".into(),
            Err(e) => <&str>::from(&e).into(),
        },
        Action::HostSplit { gpa } => match m.traced(None, |m| {
            let split = m.host.split_vma(gpa.gfn().raw());
            if let Ok(Some(inv)) = &split {
                m.kvm.mmu_invalidate(*inv);
            }
            split
        }) {
            Ok(Some(_)) => "split".into(),
            Ok(None) => "already_4k".into(),
            Err(e) => <&str>::from(&e).into(),
        },
        Action::HostCollapse { gpa } => match m.host.collapse_vma(gpa.gfn().raw()) {
            Ok(Some(inv)) => {
                if let Some(r) = &mut m.rmp.sink {
                    r.host_collapse(inv.offset, inv.pages);
                }
                m.kvm.mmu_invalidate(inv);
                "collapsed".into()
            }
            Ok(None) => "nothing_to_collapse".into(),
            Err(e) => <&str>::from(&e).into(),
        },
        Action::Tick { .. } => "idle".into(),
        Action::Teardown => {
            // KVM_DESTROY_VM and the file's release run KVM's code; the hook's scan is the host's.
            let destroyed = m.traced_as(None, Actor::Kvm, |m| {
                let Machine { kvm, host, rmp, .. } = m;
                kvm.destroy(host, rmp)
            });
            if let Err(e) = destroyed {
                m.stop(&e);
                return Err(GuestError::Stopped);
            }
            guest.destroyed();
            m.traced(None, |m| {
                let Machine { host, rmp, .. } = m;
                host.rmpopt_gmem_teardown(rmp)
            });
            "ok".into()
        }
        Action::PunchHole { gpa, pages } => {
            // The VMM's fallocate runs KVM's `sev_gmem_invalidate`: its RMP instructions are KVM's.
            let punched = m.traced_as(None, Actor::Kvm, |m| {
                let Machine { kvm, host, rmp, .. } = m;
                kvm.punch_hole(host, rmp, gpa.gfn(), pages)
            });
            match punched {
                Ok(()) => "ok".into(),
                Err(e) => {
                    m.stop(&e);
                    return Err(GuestError::Stopped);
                }
            }
        }
    })
}
