//! How a guest behaves: its granularity, protocol, order of operations and re-coalescing mode
//! (a scenario's `[guest]` table).

/// The size of the entries a guest uses in page-state changes and PVALIDATE.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::Display,
)]
pub enum Granularity {
    /// Every change and PVALIDATE at 4K.
    #[strum(serialize = "4k")]
    K4,
    /// 2M entries and 2M PVALIDATE for 2M-aligned 2M runs (4K fallback on FAIL_SIZEMISMATCH).
    #[strum(serialize = "2m")]
    M2,
}

/// The page-state-change protocol the guest uses.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::Display,
)]
#[strum(serialize_all = "lowercase")]
pub enum Protocol {
    /// GHCB MSR protocol: one 4K page per VMGEXIT.
    Msr,
    /// GHCB NAE event with a buffer of entries.
    Ghcb,
}

/// How the guest orders rescinding, the page-state change and validation over a range.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::Display,
)]
#[strum(serialize_all = "kebab-case")]
pub enum PscOrder {
    /// Request by request, as Linux does since "x86/sev: Use large PSC requests if applicable"
    /// (upstream 15d9088779b8): over MSR, page by page (`__page_state_change`, formerly
    /// `early_set_pages_state`: rescind, PSC, or PSC, PVALIDATE, for each 4K page, always at 4K);
    /// over the GHCB, batch by batch of at most `ghcb_entries` entries (`__set_pages_state`:
    /// rescind the batch then send it, or send it then validate it, `pvalidate_pages` taking the
    /// batch's descriptor).
    PerRequest,
    /// The whole range at once: rescind all of it, send all of it (in as many requests as it
    /// takes), validate all of it. Linux before 15d9088779b8: `snp_set_memory_shared` called
    /// `pvalidate_pages` over the range before `set_pages_state`, `snp_set_memory_private` after
    /// it, and `early_snp_set_memory_{shared,private}` did the same around the MSR loop of
    /// `early_set_pages_state`.
    WholeRange,
}

/// What the guest does to regain a 2M RMP entry after a PSMASH (`docs/semantics.md` G3).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::Display,
)]
#[strum(serialize_all = "kebab-case")]
pub enum Recoalesce {
    /// Never.
    None,
    /// Copy the region's data out and back around the conversion.
    SaveRestore,
    /// Convert without saving: the region's data is lost.
    Naive,
}

/// The guest's behaviour (a scenario's `[guest]` fields and preset, `docs/semantics.md` G7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GuestConfig {
    /// PSC and PVALIDATE granularity.
    pub granularity: Granularity,
    /// PSC protocol.
    pub protocol: Protocol,
    /// Entries per NAE PSC request (Linux: 64; at most 253).
    pub ghcb_entries: u16,
    /// The guest tracks the pages it validated and refuses to validate one twice.
    pub validation_tracking: bool,
    /// The order of rescind, PSC and PVALIDATE over a range.
    pub order: PscOrder,
    /// With `protocol` GHCB: the guest's first page-state change runs before it has registered
    /// a GHCB and uses the MSR protocol (the 2021 series: `early_set_pages_state` "can be called
    /// before the GHCB is established"); it registers its GHCB when that change starts, and
    /// every later one uses the NAE event.
    pub msr_until_ghcb: bool,
}
