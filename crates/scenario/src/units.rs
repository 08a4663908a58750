//! Sizes, addresses and durations as scenario files write them.

use core::fmt;

use snpsim_defs::Gpa;

/// Size units, largest first: the spelling and the number of bytes.
const SIZE_UNITS: [(&str, u64); 5] =
    [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("B", 1)];

/// Duration units: the spelling and nanoseconds.
const DURATION_UNITS: [(&str, u64); 5] =
    [("ns", 1), ("us", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000), ("min", 60_000_000_000)];

/// Why a size, address or duration string was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// Not of the form the field takes.
    #[error("{0}")]
    Malformed(String),
    /// Well-formed but does not fit in 64 bits.
    #[error("{0:?} does not fit in 64 bits")]
    Overflow(String),
}

/// Split `text` into a leading decimal integer (`None` if it does not fit in 64 bits) and the
/// rest (spaces between them allowed); `None` if it does not start with a digit.
fn split_number(text: &str) -> Option<(Option<u64>, &str)> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let (num, unit) = text.split_at(digits);
    Some((num.parse::<u64>().ok(), unit.trim_start()))
}

/// Parse a size: an integer and one of the units `B`, `KiB`, `MiB`, `GiB`, `TiB` (binary
/// multiples; a space before the unit is allowed), e.g. `"4KiB"`, `"2MiB"`, `"1TiB"`. A plain
/// number of bytes is written as a TOML integer, or as a string of digits.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let malformed = || {
        UnitError::Malformed(format!(
            "{text:?} is not a size; write an integer and a unit (B, KiB, MiB, GiB, TiB), e.g. \"4KiB\""
        ))
    };
    let (value, unit) = split_number(text).ok_or_else(malformed)?;
    let multiplier = if unit.is_empty() {
        1
    } else {
        SIZE_UNITS.iter().find(|(u, _)| *u == unit).ok_or_else(malformed)?.1
    };
    value.and_then(|v| v.checked_mul(multiplier)).ok_or_else(|| UnitError::Overflow(text.to_owned()))
}

/// Parse a guest-physical address: a hex string with a `0x` prefix (`"0x200000"`; `_` separators
/// allowed).
pub fn parse_gpa(text: &str) -> Result<Gpa, UnitError> {
    let malformed =
        || UnitError::Malformed(format!("{text:?} is not an address; write hex, e.g. \"0x200000\""));
    let hex = text.trim().strip_prefix("0x").ok_or_else(malformed)?;
    let digits: String = hex.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(malformed());
    }
    let significant = digits.trim_start_matches('0');
    if significant.len() > 16 {
        return Err(UnitError::Overflow(text.to_owned()));
    }
    u64::from_str_radix(&digits, 16).map(Gpa).map_err(|_| UnitError::Overflow(text.to_owned()))
}

/// Parse a duration into nanoseconds: an integer and one of `ns`, `us`, `ms`, `s`, `min`
/// (`"10s"`, `"500ms"`).
pub fn parse_duration(text: &str) -> Result<u64, UnitError> {
    let malformed = || {
        UnitError::Malformed(format!(
            "{text:?} is not a duration; write an integer and a unit (ns, us, ms, s, min), e.g. \"10s\""
        ))
    };
    let (value, unit) = split_number(text).ok_or_else(malformed)?;
    let multiplier = DURATION_UNITS.iter().find(|(u, _)| *u == unit).ok_or_else(malformed)?.1;
    value.and_then(|v| v.checked_mul(multiplier)).ok_or_else(|| UnitError::Overflow(text.to_owned()))
}

/// A byte count in the largest unit that divides it exactly (`4KiB`, `2MiB`, `1536B`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, bytes) in SIZE_UNITS {
            if self.0 != 0 && self.0.is_multiple_of(bytes) {
                return write!(f, "{}{unit}", self.0 / bytes);
            }
        }
        write!(f, "{}B", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
        assert_eq!(parse_size("16GiB"), Ok(16 << 30));
        assert_eq!(parse_size("1TiB"), Ok(1 << 40));
        assert_eq!(parse_size("4 KiB"), Ok(4096));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("12B"), Ok(12));
        assert_eq!(parse_size("0KiB"), Ok(0));
        for bad in ["", "KiB", "4kb", "4 K", "4KiBs", "-4KiB", "1.5GiB", "0x10", "4 GiB x"] {
            assert!(matches!(parse_size(bad), Err(UnitError::Malformed(_))), "{bad}");
        }
        assert!(matches!(parse_size("16777216TiB"), Err(UnitError::Overflow(_))));
        assert!(matches!(parse_size("99999999999999999999999"), Err(UnitError::Overflow(_))));
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_gpa("0x200000"), Ok(Gpa(0x20_0000)));
        assert_eq!(parse_gpa("0x20_0000"), Ok(Gpa(0x20_0000)));
        assert_eq!(parse_gpa("0xFFFFFFFFFFFFFFFF"), Ok(Gpa(u64::MAX)));
        assert_eq!(parse_gpa("0x0000000000000000001"), Ok(Gpa(1)));
        for bad in ["200000", "0x", "0xg", "x10", "0X10", ""] {
            assert!(matches!(parse_gpa(bad), Err(UnitError::Malformed(_))), "{bad}");
        }
        assert!(matches!(parse_gpa("0x1_0000_0000_0000_0000"), Err(UnitError::Overflow(_))));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(10_000_000_000));
        assert_eq!(parse_duration("500ms"), Ok(500_000_000));
        assert_eq!(parse_duration("7us"), Ok(7_000));
        assert_eq!(parse_duration("3ns"), Ok(3));
        assert_eq!(parse_duration("2min"), Ok(120_000_000_000));
        for bad in ["10", "s", "10h", "1.5s", ""] {
            assert!(matches!(parse_duration(bad), Err(UnitError::Malformed(_))), "{bad}");
        }
        assert!(matches!(parse_duration("99999999999s"), Err(UnitError::Overflow(_))));
    }

    #[test]
    fn size_display() {
        assert_eq!(Size(4096).to_string(), "4KiB");
        assert_eq!(Size(2 << 20).to_string(), "2MiB");
        assert_eq!(Size(3 << 30).to_string(), "3GiB");
        assert_eq!(Size(1536).to_string(), "1536B");
        assert_eq!(Size(0).to_string(), "0B");
        assert_eq!(Size(1 << 40).to_string(), "1TiB");
    }
}
