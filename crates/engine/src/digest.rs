//! The hash of the state digest ([`crate::state`]): FNV-1a, 128 bits (Fowler, Noll and Vo;
//! draft-eastlake-fnv), fixed and portable, so a digest is the same on every machine.

/// FNV-1a, 128 bits: a fixed, portable hash for the state digest.
#[derive(Clone, Copy, Debug)]
pub struct Fnv128(u128);

impl Default for Fnv128 {
    fn default() -> Self {
        Fnv128(0x6c62_272e_07bb_0142_62b8_2175_6295_c58d)
    }
}

impl Fnv128 {
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;

    /// Feed bytes.
    pub fn bytes(&mut self, data: &[u8]) {
        for &b in data {
            self.0 ^= u128::from(b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    /// Feed a tagged, length-prefixed piece (so concatenations cannot collide).
    pub fn piece(&mut self, tag: &str, data: &[u8]) {
        self.bytes(tag.as_bytes());
        self.bytes(&(data.len() as u64).to_le_bytes());
        self.bytes(data);
    }

    /// Feed one integer.
    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    /// The digest as 32 hex digits.
    pub fn hex(self) -> String {
        format!("{:032x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv128_known_answers() {
        // Published FNV-1a 128 test vectors.
        assert_eq!(Fnv128::default().hex(), "6c62272e07bb014262b821756295c58d");
        let mut h = Fnv128::default();
        h.bytes(b"a");
        assert_eq!(h.hex(), "d228cb696f1a8caf78912b704e4a8964");
    }
}
