//! The adversarial hypervisor (`[vm] adversary`): a catalogue of malicious host actions, each
//! carried out once, after the first step at which it has a target.
//!
//! SNP exists to protect a guest from its host. Each attack shows what the hardware blocks, what a
//! guest that tracks its validated pages detects, and what a naive guest
//! (`validation_tracking = false`, which validates a page when it takes a #VC for it) silently
//! accepts. In an adversary run the honest-hypervisor invariants are expected to break and are
//! reported as the attack's effects; the hardware guarantees (no host write to an assigned page, no
//! false negative) must still hold. `docs/attacks.md` has one section per attack.

use snpsim_defs::{Gfn, PageSize, Pfn, RmpArchEntry, RmpPageSize};
use snpsim_guest::{Guest, GuestError};
use snpsim_host::HostVia;
use snpsim_hw::RmpModel;

use crate::machine::Machine;

macro_rules! attacks {
    ($($variant:ident = $name:literal: $doc:literal,)+) => {
        /// One malicious-hypervisor action.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Attack {
            $(#[doc = $doc] $variant,)+
        }

        impl Attack {
            /// Every attack, in catalogue order.
            pub const ALL: &'static [Attack] = &[$(Attack::$variant,)+];

            /// The name used in `[vm] adversary` and `docs/attacks.md`.
            pub const fn name(self) -> &'static str {
                match self { $(Attack::$variant => $name,)+ }
            }

            /// One line saying what the host does.
            pub const fn summary(self) -> &'static str {
                match self { $(Attack::$variant => $doc,)+ }
            }
        }
    };
}

attacks! {
    RemapValidatedGpa = "remap-validated-gpa": "Map a validated GPA to another host frame, assigned to the guest at that GPA but not validated.",
    RmpupdateBehindBack = "rmpupdate-behind-back": "RMPUPDATE a validated guest page to shared and back to private behind the guest's back.",
    AliasTwoGpas = "alias-two-gpas": "Map a second GPA onto the host frame of a validated private page.",
    ReformTwoMeg = "reform-2m": "PSMASH a validated 2M entry, then re-form it (all shared, 2M private) without the guest's consent.",
    PscAckWithoutAction = "psc-ack-without-action": "Answer page-state changes with success without converting anything.",
    PscLieCurPage = "psc-lie-cur-page": "Mark the second half of each PSC buffer done (cur_page) without converting it.",
    DropPscHalfway = "drop-psc-halfway": "Process half of each PSC buffer and return success with cur_entry half-way.",
    VcStorm = "vc-storm": "Inject #VC 0x404 (page not validated) for a page the guest validated.",
    ForeignAsid = "foreign-asid": "RMPUPDATE a validated guest page to another VM's ASID.",
    HostWritePrivate = "host-write-private": "Write into a validated private page from the kernel's direct map.",
}

impl Attack {
    /// The attack named `name`.
    pub fn from_name(name: &str) -> Option<Attack> {
        Attack::ALL.iter().copied().find(|a| a.name() == name)
    }

    /// Every name, comma-separated (for error messages).
    pub fn accepted() -> String {
        Attack::ALL.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")
    }

    const fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of attacks (what a run's adversary does); empty for an honest host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Attacks(u16);

impl Attacks {
    /// No attack: an honest host.
    pub const NONE: Attacks = Attacks(0);

    /// The set holding `attacks`.
    pub fn of(attacks: &[Attack]) -> Self {
        Attacks(attacks.iter().fold(0, |b, a| b | a.bit()))
    }

    /// Whether `a` is in the set.
    pub const fn contains(self, a: Attack) -> bool {
        self.0 & a.bit() != 0
    }

    /// Whether the host is honest.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The attacks, in catalogue order.
    pub fn iter(self) -> impl Iterator<Item = Attack> {
        Attack::ALL.iter().copied().filter(move |a| self.contains(*a))
    }
}

/// The ASID of the "other VM" of `foreign-asid`.
const OTHER_ASID: u32 = 2;

fn frame(m: &Machine, gfn: Gfn) -> Option<Pfn> {
    m.kvm.npt.translate(gfn).map(|(p, _)| p).or_else(|| m.kvm.bound_pfn(&m.host, gfn))
}

fn validated(m: &Machine, pfn: Pfn) -> bool {
    m.rmp.raw_entry(pfn).is_some_and(|e| e.lo.assigned() && e.lo.validated())
}

/// The lowest page the guest holds data in whose frame is assigned and validated.
fn data_target(m: &Machine, guest: &Guest) -> Option<(Gfn, Pfn)> {
    guest.held_pages().find_map(|(gfn, _)| frame(m, gfn).filter(|&p| validated(m, p)).map(|p| (gfn, p)))
}

fn assign(gfn: Gfn, asid: u32) -> RmpArchEntry {
    RmpArchEntry::new().with_assigned(true).with_asid(asid).with_gpa(gfn.gpa().raw())
}

/// Carry out every attack of `attacks` not yet in `done` that has a target now (`vc-storm` repeats
/// after every step). Returns one line per attack carried out, and the guest's termination if an
/// injected #VC ended it.
pub fn after_step(
    attacks: Attacks,
    done: &mut Attacks,
    m: &mut Machine,
    guest: &mut Guest,
) -> (Vec<String>, Option<GuestError>) {
    let mut log = Vec::new();
    let mut ended = None;
    let g = m.rmp.config().geometry;
    let pending: Vec<Attack> = attacks.iter().filter(|a| !done.contains(*a)).collect();
    for a in pending {
        let asid = u32::from(m.asid);
        // The adversarial hypervisor executes the attack (trace actor `adversary`).
        if let Some(r) = &mut m.rmp.sink {
            r.enter(None, crate::events::Actor::Adversary);
        }
        let did = match a {
            Attack::RemapValidatedGpa => data_target(m, guest).and_then(|(gfn, _)| {
                let new = m.host.memory.alloc(PageSize::Size4K).ok()?;
                (m.rmp.rmpupdate(new, assign(gfn, asid)) == snpsim_defs::ReturnCode::Success).then(|| {
                    m.kvm.rebind(gfn, new);
                    format!("GPA {} now maps frame {new}, assigned but not validated", gfn.gpa())
                })
            }),
            Attack::RmpupdateBehindBack => data_target(m, guest).map(|(gfn, pfn)| {
                if m.rmp.lookup(pfn).is_some_and(|(_, l)| l == RmpPageSize::Size2M) {
                    m.rmp.psmash(g.region_of(pfn));
                }
                m.rmp.rmpupdate(pfn, RmpArchEntry::new());
                m.rmp.rmpupdate(pfn, assign(gfn, asid));
                format!("frame {pfn} of GPA {} made shared and private again (Validated cleared)", gfn.gpa())
            }),
            Attack::AliasTwoGpas => data_target(m, guest).and_then(|(gfn, pfn)| {
                let other = (0..guest.pages()).map(Gfn).find(|&b| b != gfn && guest.is_validated(b))?;
                m.kvm.rebind(other, pfn);
                Some(format!("GPA {} also maps frame {pfn} of GPA {}", other.gpa(), gfn.gpa()))
            }),
            Attack::ReformTwoMeg => data_target(m, guest).and_then(|(gfn, pfn)| {
                let region = g.region_of(pfn);
                let base = g.gfn_align_down(gfn, PageSize::Size2M);
                (m.rmp.lookup(pfn)? == (true, RmpPageSize::Size2M)).then(|| {
                    m.rmp.psmash(region);
                    for i in 0..g.pages_per_2m() {
                        m.rmp.rmpupdate(Pfn(region.raw() + i), RmpArchEntry::new());
                    }
                    m.rmp.rmpupdate(region, assign(base, asid).with_page_size(true));
                    format!("2M region at GPA {} PSMASHed and re-formed (Validated cleared)", base.gpa())
                })
            }),
            Attack::PscAckWithoutAction | Attack::PscLieCurPage | Attack::DropPscHalfway => {
                m.kvm.set_psc_adversary(snpsim_kvm::PscAdversary {
                    ack_without_action: attacks.contains(Attack::PscAckWithoutAction),
                    lie_cur_page: attacks.contains(Attack::PscLieCurPage),
                    drop_halfway: attacks.contains(Attack::DropPscHalfway),
                });
                Some("KVM's page-state-change handler is the adversary's".to_string())
            }
            Attack::VcStorm => data_target(m, guest).map(|(gfn, _)| {
                // The injected #VC is handled by guest code on vCPU 0.
                if let Some(r) = &mut m.rmp.sink {
                    r.enter(Some(0), crate::events::Actor::Guest);
                }
                if let Err(e) = guest.inject_vc(m, 0, gfn) {
                    ended = Some(e);
                }
                if let Some(r) = &mut m.rmp.sink {
                    r.leave();
                }
                format!("#VC 0x404 injected for GPA {}", gfn.gpa())
            }),
            Attack::ForeignAsid => data_target(m, guest).map(|(gfn, pfn)| {
                if m.rmp.lookup(pfn).is_some_and(|(_, l)| l == RmpPageSize::Size2M) {
                    m.rmp.psmash(g.region_of(pfn));
                }
                m.rmp.rmpupdate(pfn, RmpArchEntry::new());
                m.rmp.rmpupdate(pfn, assign(gfn, OTHER_ASID));
                format!("frame {pfn} of GPA {} assigned to ASID {OTHER_ASID}", gfn.gpa())
            }),
            Attack::HostWritePrivate => data_target(m, guest).map(|(gfn, _)| {
                let r = m.host_write(gfn.gpa(), HostVia::Kernel);
                format!("kernel write to private GPA {}: {r:?}", gfn.gpa())
            }),
        };
        if let Some(r) = &mut m.rmp.sink {
            r.leave();
        }
        if let Some(line) = did {
            if a != Attack::VcStorm {
                *done = Attacks(done.0 | a.bit());
            }
            log.push(format!("{}: {line}", a.name()));
        }
        if ended.is_some() {
            break;
        }
    }
    (log, ended)
}
