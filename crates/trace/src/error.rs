//! The codec's error: why a trace's configuration, action or cost overrides cannot be read back.

/// Why a trace's configuration, action or cost overrides cannot be read back: each names the
/// field (`config.vcpus`, `action.gpa`, ...) and what it accepts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The value is not a JSON object.
    #[error("`{what}` must be a JSON object")]
    NotObject {
        /// The object's path.
        what: String,
    },
    /// A field is missing.
    #[error("`{what}.{key}` is missing")]
    Missing {
        /// The object's path.
        what: String,
        /// The field.
        key: String,
    },
    /// A field has the wrong JSON type.
    #[error("`{what}.{key}` must be {expected}")]
    WrongType {
        /// The object's path.
        what: String,
        /// The field.
        key: String,
        /// What it must be (`a string`, `true or false`, ...).
        expected: &'static str,
    },
    /// An address field is not a `0x` hex string.
    #[error("`{what}.{key}` must be a hex string like \"0x200000\", not {value:?}")]
    NotHex {
        /// The object's path.
        what: String,
        /// The field.
        key: String,
        /// The string given.
        value: String,
    },
    /// A name outside its closed set.
    #[error("`{what}.{key}` is {value:?}; accepted: {accepted}")]
    Unknown {
        /// The object's path.
        what: String,
        /// The field.
        key: String,
        /// The name given.
        value: String,
        /// The accepted names, comma-separated.
        accepted: String,
    },
    /// An integer too large for its field.
    #[error("`{what}.{key}` is too large")]
    TooLarge {
        /// The object's path.
        what: String,
        /// The field.
        key: String,
    },
    /// A field the format does not have.
    #[error("`{what}` has an unknown field `{key}`")]
    UnknownField {
        /// The object's path.
        what: String,
        /// The field.
        key: String,
    },
    /// An integer outside its field's range.
    #[error("`{field}` is {value}; accepted: {accepted}")]
    OutOfRange {
        /// The field's path.
        field: &'static str,
        /// The value given.
        value: u64,
        /// The accepted range.
        accepted: &'static str,
    },
    /// An action names a vCPU the run does not have.
    #[error("`action.vcpu` is {vcpu}; the run has {vcpus} vCPUs")]
    NoSuchVcpu {
        /// The vCPU named.
        vcpu: u32,
        /// The run's vCPUs.
        vcpus: u32,
    },
    /// A tick of a vCPU the run does not have, or of a run that is not interleaved.
    #[error("`action` is a tick of vCPU {vcpu}, but the run has {vcpus} vCPUs and interleave = {interleave}")]
    BadTick {
        /// The vCPU named.
        vcpu: u32,
        /// The run's vCPUs.
        vcpus: u32,
        /// Whether the run is interleaved.
        interleave: bool,
    },
    /// A range of pages not 4 KiB-aligned inside guest memory.
    #[error(
        "`action` range {gpa:#x} + {pages} pages is not 4 KiB-aligned inside guest memory ({guest_bytes:#x} bytes)"
    )]
    BadRange {
        /// The range's first address.
        gpa: u64,
        /// Its pages.
        pages: u64,
        /// Guest memory, in bytes.
        guest_bytes: u64,
    },
    /// An address outside guest memory.
    #[error("`action.gpa` {gpa:#x} is outside guest memory ({guest_bytes:#x} bytes)")]
    OutsideGuest {
        /// The address.
        gpa: u64,
        /// Guest memory, in bytes.
        guest_bytes: u64,
    },
    /// A recoalesce of an address that is not 2M-aligned.
    #[error("`action.gpa` {gpa:#x} of a recoalesce must be 2M-aligned")]
    Unaligned2m {
        /// The address.
        gpa: u64,
    },
    /// A page-state-change entry that ends outside guest memory.
    #[error("`action` entry at {gpa:#x} ends outside guest memory")]
    EntryOutside {
        /// The entry's address.
        gpa: u64,
    },
    /// RMPADJUST permissions that are no subset of `rwxsS`.
    #[error("`action.perms` is {value:?}; accepted: a subset of \"rwxsS\"")]
    BadPerms {
        /// The string given.
        value: String,
    },
    /// Host and guest memory sizes no scenario could produce.
    #[error(
        "`config.host_pages` ({host_pages}) and `config.guest_pages` ({guest_pages}) must satisfy \
         1 <= guest_pages <= host_pages <= {max}"
    )]
    BadMemory {
        /// Host memory, in 4K pages.
        host_pages: u64,
        /// Guest memory, in 4K pages.
        guest_pages: u64,
        /// The largest host memory accepted, in 4K pages.
        max: u64,
    },
    /// A shared backing given with a legacy (single-VMA) backing.
    #[error("`config.shared_backing` must be null for a legacy backing")]
    SharedBackingOnLegacy,
    /// A step budget of 0.
    #[error("`config.step_budget` must be null or at least 1")]
    ZeroStepBudget,
    /// `adversary` is not an array.
    #[error("`config.adversary` must be an array of attack names")]
    AdversaryNotArray,
    /// An attack name outside the catalogue.
    #[error("`config.adversary` names {name}; accepted: {accepted}")]
    UnknownAttack {
        /// The entry as JSON.
        name: String,
        /// The accepted attack names.
        accepted: String,
    },
    /// `costs` is not an object.
    #[error("field `costs` must be an object")]
    CostsNotObject,
    /// A cost parameter that is not a non-negative integer.
    #[error("field `costs.{name}` must be a non-negative integer")]
    CostNotInteger {
        /// The parameter.
        name: String,
    },
    /// A cost parameter that does not exist.
    #[error("field `costs.{name}`: unknown cost parameter; accepted: {accepted}")]
    UnknownCost {
        /// The parameter.
        name: String,
        /// The accepted parameter names.
        accepted: String,
    },
}
