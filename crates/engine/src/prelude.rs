//! Everything needed to build and drive a [`Simulation`] from Rust code: the engine's types and
//! the few types of the model crates that a configuration or an action names.
//!
//! ```
//! use snpsim_engine::prelude::*;
//!
//! let mut config =
//!     SimConfig::new(policy("rfc-host-split").unwrap(), MemoryBacking::Vma(VmaBacking::Hugetlbfs2m), 4096, 16384);
//! config.guest.granularity = Granularity::K4;
//! let mut sim = Simulation::new(config).unwrap();
//! sim.step(&Action::Psc { vcpu: 0, gpa: Gpa(0x200000), pages: 1, private: true, granularity: None });
//! sim.step(&Action::Access { vcpu: 0, gpa: Gpa(0x200000), kind: AccessKind::Write, private: true });
//! // The RFC's host split cannot split hugetlbfs: the fault is unresolvable.
//! assert_eq!(sim.outcome().map(|(o, _)| o), Some(Outcome::VmError));
//! assert_eq!(sim.finish().metrics.host_splits, 0);
//! ```

pub use snpsim_defs::{Gpa, PageSize, RmpPageSize, VmplPerms};
pub use snpsim_guest::{Granularity, GuestConfig, Protocol, Recoalesce};
pub use snpsim_host::{HostVia, VmaBacking};
pub use snpsim_hw::{AccessKind, Geometry};
pub use snpsim_kvm::policy::by_name as policy;

pub use crate::engine::{Action, CheckMode, MemoryBacking, RunResult, SimConfig, Simulation, StepReport};
pub use crate::metrics::Metrics;
pub use crate::outcome::Outcome;
