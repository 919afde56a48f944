//! The one canonical byte encoding of everything that is signed.
//!
//! `domain || 0x00 || field*`, where the domain is an ASCII tag naming the payload and version
//! (`hearth/v1/audit-answer`), and each field is one of:
//! - unsigned integer: 8 bytes, big-endian;
//! - key, nonce or digest: its 32 raw bytes;
//! - text: 4-byte big-endian byte length, then the UTF-8 bytes.
//!
//! Fields appear in the order each payload's `signing_bytes` lists (and SPEC.md repeats).

/// Builder of canonical signing bytes.
#[derive(Debug)]
pub struct Canonical(Vec<u8>);

impl Canonical {
    /// Starts with the domain separation tag and its terminating zero byte.
    pub fn new(domain: &str) -> Self {
        let mut out = Vec::with_capacity(domain.len() + 128);
        out.extend_from_slice(domain.as_bytes());
        out.push(0);
        Self(out)
    }

    /// Appends an unsigned integer.
    pub fn u64(mut self, value: u64) -> Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    /// Appends a 32-byte key, nonce or digest.
    pub fn key(mut self, bytes: &[u8; 32]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }

    /// Appends length-prefixed text. Text longer than `u32::MAX` bytes cannot occur in a frame.
    pub fn text(mut self, text: &str) -> Self {
        let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(text.as_bytes());
        self
    }

    /// The bytes to sign.
    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_fields_in_order_with_fixed_widths() {
        let bytes = Canonical::new("t")
            .u64(258)
            .text("ab")
            .key(&[9; 32])
            .finish();
        let mut want = vec![b't', 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 2, b'a', b'b'];
        want.extend_from_slice(&[9; 32]);
        assert_eq!(bytes, want);
    }
}
