//! The hash of the state digest ([`crate::state`]) and of the sweep identifier: FNV-1a (Fowler,
//! Noll and Vo; draft-eastlake-fnv), from the `fnv_rs` crate. It is fixed and portable, so a digest
//! is the same on every machine and in every release that keeps this hash.

use fnv_rs::FnvHasher;

/// FNV-1a, 128 bits: the state digest.
#[derive(Debug, Default)]
pub struct Digest128(fnv_rs::Fnv128);

impl Digest128 {
    /// Feed bytes.
    pub fn bytes(&mut self, data: &[u8]) {
        self.0.update(data);
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

    /// The digest as 32 lower-case hex digits.
    pub fn hex(&self) -> String {
        format!("{:x}", self.0.finalize())
    }
}

/// FNV-1a, 64 bits: a short stable fingerprint (the sweep identifier; not a security property).
#[derive(Debug, Default)]
pub struct Digest64(fnv_rs::Fnv64);

impl Digest64 {
    /// Feed bytes.
    pub fn bytes(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The fingerprint as 16 lower-case hex digits.
    pub fn hex(&self) -> String {
        format!("{:x}", self.0.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_known_answers() {
        // Published FNV-1a test vectors (draft-eastlake-fnv): the offset bases, then "a".
        assert_eq!(Digest128::default().hex(), "6c62272e07bb014262b821756295c58d");
        let mut h = Digest128::default();
        h.bytes(b"a");
        assert_eq!(h.hex(), "d228cb696f1a8caf78912b704e4a8964");
        assert_eq!(Digest64::default().hex(), "cbf29ce484222325");
        let mut g = Digest64::default();
        g.bytes(b"a");
        assert_eq!(g.hex(), "af63dc4c8601ec8c");
    }
}
