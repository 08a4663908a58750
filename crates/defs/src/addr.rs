//! Address and frame-number newtypes.
//!
//! Guest-physical, host-physical and host-virtual addresses are different spaces; mixing them is the
//! classic bug of hypervisor code, so each has its own type and no blanket arithmetic. The value
//! is private: a value is made with `new`, read with `raw` (for encodings and indices), moved with
//! `+ n` / `+= n` (units of the type), measured with `a - b`, and aligned with `align_down`;
//! conversions between spaces are named (`gpa.gfn()`, `pfn.hpa()`). `+` and `-` panic on
//! overflow, a bug in the caller since every input range is checked against the machine first;
//! `checked_add` and `checked_offset_from` are for untrusted values (as rust-vmm's `vm-memory`
//! does for `GuestAddress`). Architectural layouts that carry a GFN or GPA (`PscEntry`,
//! `GhcbMsrPscRequest`, `RmpArchEntry`) expose it as these types too.

use core::fmt;

/// Bytes in the base (4 KiB) page; every geometry keeps 4 KiB base pages.
pub const PAGE_SIZE_4K: u64 = 4096;
/// log2 of [`PAGE_SIZE_4K`].
pub const PAGE_SHIFT: u32 = 12;

macro_rules! byte_address {
    ($(#[$doc:meta])* $name:ident, $frame:ident, $frame_fn:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(u64);

        impl $name {
            /// The value `raw`. (Every address and frame number is a `u64`; the type says which space.)
            #[inline]
            pub const fn new(raw: u64) -> Self {
                Self(raw)
            }
            /// The raw address value.
            #[inline]
            pub const fn raw(self) -> u64 {
                self.0
            }
            /// The frame holding this address.
            #[inline]
            pub const fn $frame_fn(self) -> $frame {
                $frame(self.0 >> PAGE_SHIFT)
            }
            /// Offset of the address inside its 4 KiB page.
            #[inline]
            pub const fn page_offset(self) -> u64 {
                self.0 & (PAGE_SIZE_4K - 1)
            }
            /// Whether the address is a multiple of `bytes` (a power of two).
            #[inline]
            pub const fn is_aligned(self, bytes: u64) -> bool {
                self.0 & (bytes - 1) == 0
            }
            /// The address rounded down to a multiple of `bytes` (a power of two).
            #[must_use]
            #[inline]
            pub const fn align_down(self, bytes: u64) -> Self {
                Self(self.0 & !(bytes - 1))
            }
            /// `self + bytes`, or `None` on overflow.
            #[inline]
            pub const fn checked_add(self, bytes: u64) -> Option<Self> {
                match self.0.checked_add(bytes) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
            /// `self - other` in bytes, or `None` if `other > self`.
            #[inline]
            pub const fn checked_offset_from(self, other: Self) -> Option<u64> {
                self.0.checked_sub(other.0)
            }
        }

        /// `self + n`: the address or frame `n` units on. Overflow is a bug in the caller (every
        /// input range is validated against the machine's memory first), so it panics; use
        /// `checked_add` for untrusted values.
        impl core::ops::Add<u64> for $name {
            type Output = Self;
            #[inline]
            fn add(self, n: u64) -> Self {
                match self.checked_add(n) {
                    Some(v) => v,
                    None => panic!(concat!(stringify!($name), " overflow")),
                }
            }
        }
        impl core::ops::AddAssign<u64> for $name {
            #[inline]
            fn add_assign(&mut self, n: u64) {
                *self = *self + n;
            }
        }
        /// `self - other`: how many units `other` lies below `self`. `other > self` is a bug in the
        /// caller, so it panics; use `checked_offset_from` for untrusted values.
        impl core::ops::Sub for $name {
            type Output = u64;
            #[inline]
            fn sub(self, other: Self) -> u64 {
                match self.checked_offset_from(other) {
                    Some(v) => v,
                    None => panic!(concat!(stringify!($name), " subtraction below zero")),
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#x})"), self.0)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }
        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

macro_rules! frame_number {
    ($(#[$doc:meta])* $name:ident, $addr:ident, $addr_fn:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(u64);

        impl $name {
            /// The value `raw`. (Every address and frame number is a `u64`; the type says which space.)
            #[inline]
            pub const fn new(raw: u64) -> Self {
                Self(raw)
            }
            /// The raw frame number.
            #[inline]
            pub const fn raw(self) -> u64 {
                self.0
            }
            /// The address of the first byte of the frame, or `None` if it does not fit in 64 bits.
            #[inline]
            pub const fn checked_addr(self) -> Option<$addr> {
                if self.0 > (u64::MAX >> PAGE_SHIFT) {
                    None
                } else {
                    Some($addr(self.0 << PAGE_SHIFT))
                }
            }
            /// The address of the first byte of the frame (frame numbers above 2^52 wrap; use
            /// [`Self::checked_addr`] for untrusted values).
            #[inline]
            pub const fn $addr_fn(self) -> $addr {
                $addr(self.0 << PAGE_SHIFT)
            }
            /// `self + frames`, or `None` on overflow.
            #[inline]
            pub const fn checked_add(self, frames: u64) -> Option<Self> {
                match self.0.checked_add(frames) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
            /// `self - other` in frames, or `None` if `other > self`.
            #[inline]
            pub const fn checked_offset_from(self, other: Self) -> Option<u64> {
                self.0.checked_sub(other.0)
            }
            /// Whether the frame number is a multiple of `frames` (a power of two).
            #[inline]
            pub const fn is_aligned(self, frames: u64) -> bool {
                self.0 & (frames - 1) == 0
            }
            /// The frame number rounded down to a multiple of `frames` (a power of two).
            #[must_use]
            #[inline]
            pub const fn align_down(self, frames: u64) -> Self {
                Self(self.0 & !(frames - 1))
            }
        }

        /// `self + n`: the address or frame `n` units on. Overflow is a bug in the caller (every
        /// input range is validated against the machine's memory first), so it panics; use
        /// `checked_add` for untrusted values.
        impl core::ops::Add<u64> for $name {
            type Output = Self;
            #[inline]
            fn add(self, n: u64) -> Self {
                match self.checked_add(n) {
                    Some(v) => v,
                    None => panic!(concat!(stringify!($name), " overflow")),
                }
            }
        }
        impl core::ops::AddAssign<u64> for $name {
            #[inline]
            fn add_assign(&mut self, n: u64) {
                *self = *self + n;
            }
        }
        /// `self - other`: how many units `other` lies below `self`. `other > self` is a bug in the
        /// caller, so it panics; use `checked_offset_from` for untrusted values.
        impl core::ops::Sub for $name {
            type Output = u64;
            #[inline]
            fn sub(self, other: Self) -> u64 {
                match self.checked_offset_from(other) {
                    Some(v) => v,
                    None => panic!(concat!(stringify!($name), " subtraction below zero")),
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#x})"), self.0)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }
    };
}

byte_address!(
    /// A guest-physical address (what the guest's page tables produce, what the NPT translates).
    Gpa, Gfn, gfn
);
byte_address!(
    /// A host-physical (system-physical) address: what the NPT and host page tables point at, and
    /// what the RMP is indexed by.
    Hpa, Pfn, pfn
);
byte_address!(
    /// A host-virtual address in the VMM process (memslots map GPAs to HVAs).
    Hva, Vfn, vfn
);
frame_number!(
    /// A guest frame number (`Gpa >> 12`).
    Gfn, Gpa, gpa
);
frame_number!(
    /// A host-physical frame number (`Hpa >> 12`); the RMP holds one entry per `Pfn`.
    Pfn, Hpa, hpa
);
frame_number!(
    /// A host-virtual page number (`Hva >> 12`).
    Vfn, Hva, hva
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frame_and_address_known_answers() {
        assert_eq!(Gpa(0x20_1234).gfn(), Gfn(0x201));
        assert_eq!(Gfn(0x201).gpa(), Gpa(0x20_1000));
        assert_eq!(Pfn(0x200).hpa(), Hpa(0x20_0000));
        assert_eq!(Gpa(0x20_1234).page_offset(), 0x234);
        assert!(Gpa(0x40_0000).is_aligned(0x20_0000));
        assert!(!Gpa(0x40_1000).is_aligned(0x20_0000));
        assert_eq!(Pfn(0x3ff).align_down(512), Pfn(0x200));
        assert_eq!(Gpa(u64::MAX).checked_add(1), None);
        assert_eq!(Pfn(1 << 60).checked_addr(), None);
        assert_eq!(format!("{:?}", Hpa(0x1000)), "Hpa(0x1000)");
        assert_eq!(Pfn::new(0x200) + 3, Pfn(0x203));
        assert_eq!(Pfn(0x203) - Pfn(0x200), 3);
        let mut g = Gpa::new(0x1000);
        g += 0x1000;
        assert_eq!(g, Gpa(0x2000));
    }

    #[test]
    #[should_panic(expected = "Pfn overflow")]
    fn frame_overflow_panics() {
        let _ = Pfn(u64::MAX) + 1;
    }

    #[test]
    #[should_panic(expected = "Gfn subtraction below zero")]
    fn frame_difference_below_zero_panics() {
        let _ = Gfn(1) - Gfn(2);
    }

    proptest! {
        #[test]
        fn gpa_gfn_round_trip(gfn in 0u64..(1 << 52)) {
            prop_assert_eq!(Gfn(gfn).gpa().gfn(), Gfn(gfn));
            prop_assert_eq!(Pfn(gfn).hpa().pfn(), Pfn(gfn));
            prop_assert_eq!(Gfn(gfn).checked_addr(), Some(Gfn(gfn).gpa()));
        }

        #[test]
        fn align_down_is_aligned_and_not_above(a in any::<u64>(), shift in 0u32..40) {
            let bytes = 1u64 << shift;
            let d = Gpa(a).align_down(bytes);
            prop_assert!(d.is_aligned(bytes));
            prop_assert!(d <= Gpa(a));
            prop_assert!(Gpa(a).checked_offset_from(d).unwrap() < bytes);
        }
    }
}
