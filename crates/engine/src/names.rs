//! Closed sets of named values (policies, backings, outcomes, reasons, ...): [`named_enum!`]
//! declares one with `ALL`, `name()` (the spelling in scenario files, traces and reports),
//! `FromStr`, `Display`, `Serialize` (as the name) and [`Named`], so a name is written once.
//!
//! [`named_enum!`]: crate::named_enum

#[doc(hidden)]
pub use serde as __serde;

/// A closed set of names (policies, backings, ...), for generic field parsing.
pub trait Named: Copy + 'static {
    /// Every value.
    fn all() -> &'static [Self];
    /// The name of a value.
    fn name(self) -> &'static str;
}

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

/// Declare a closed set of named values: `named_enum! { /// doc \n "what", pub enum Name { /// doc
/// \n Variant = "name", ... } }` derives the usual traits and gives `ALL`, `name()`, `accepted()`,
/// `FromStr` (failing with [`UnknownName`] for `what`), `Display`, `Serialize` and [`Named`].
#[macro_export]
macro_rules! named_enum {
    (
        $(#[$doc:meta])*
        $what:literal,
        pub enum $name:ident {
            $( $(#[$vdoc:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $( $(#[$vdoc])* $variant, )+
        }

        impl $name {
            /// Every value, in documentation order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name used in scenario files and reports.
            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The accepted names, comma-separated.
            pub fn accepted() -> String {
                $crate::names::accepted_list(Self::ALL, Self::name)
            }
        }

        impl ::core::str::FromStr for $name {
            type Err = $crate::names::UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL.iter().copied().find(|v| v.name() == s).ok_or_else(|| $crate::names::UnknownName {
                    what: $what,
                    value: s.to_owned(),
                    accepted: Self::accepted(),
                })
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl $crate::names::__serde::Serialize for $name {
            fn serialize<S: $crate::names::__serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl $crate::names::Named for $name {
            fn all() -> &'static [Self] {
                Self::ALL
            }
            fn name(self) -> &'static str {
                $name::name(self)
            }
        }
    };
}
