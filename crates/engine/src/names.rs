//! Closed sets of named values (policies' eras, backings, granularities, outcomes, reasons, ...).
//! Each type is defined once, in the crate that owns the concept, and derives its names with
//! strum (`IntoStaticStr` for the name, `VariantArray` for every value in documentation order);
//! [`Named`] gives every such type the same `name()`, `all()`, `accepted()` and
//! [`Named::from_name`], so scenario files, traces and reports spell a value one way.

/// A closed set of names: every type deriving strum's `IntoStaticStr` and `VariantArray` (and
/// `Copy`) is one.
pub trait Named: Copy + strum::VariantArray + Into<&'static str> + 'static {
    /// Every value, in documentation order.
    fn all() -> &'static [Self] {
        <Self as strum::VariantArray>::VARIANTS
    }

    /// The name of a value (in scenario files, traces and reports).
    fn name(self) -> &'static str {
        self.into()
    }

    /// The accepted names, comma-separated, for messages.
    fn accepted() -> String {
        accepted_list(Self::all(), Self::name)
    }

    /// The value named `name`.
    fn from_name(name: &str) -> Option<Self> {
        Self::all().iter().copied().find(|v| v.name() == name)
    }

    /// The value named `name`, or an [`UnknownName`] error listing the accepted names; `what`
    /// says what the name names (`policy`, `backing`, ...).
    fn parse_named(what: &'static str, name: &str) -> Result<Self, UnknownName> {
        Self::from_name(name).ok_or_else(|| UnknownName {
            what,
            value: name.to_owned(),
            accepted: Self::accepted(),
        })
    }
}

impl<T: Copy + strum::VariantArray + Into<&'static str> + 'static> Named for T {}

/// A name that is not one of a type's accepted names.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}; accepted: {accepted}")]
pub struct UnknownName {
    /// What was being named (`policy`, `backing`, ...).
    pub what: &'static str,
    /// The name given.
    pub value: String,
    /// The accepted names, comma-separated.
    pub accepted: String,
}

/// The accepted names of `all`, comma-separated, for messages.
pub fn accepted_list<T: Copy>(all: &[T], name: impl Fn(T) -> &'static str) -> String {
    all.iter().map(|&v| name(v)).collect::<Vec<_>>().join(", ")
}
