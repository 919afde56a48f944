//! The chunk bitmap of `have` and of the agent's `.chunks` sidecar: bit `i % 8` of byte `i / 8`,
//! least significant first, is chunk `i`; `ceil(len / 8)` bytes, the unused high bits zero.

/// Why bitmap bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BitmapError {
    /// Not `ceil(len / 8)` bytes.
    #[error("a bitmap of {chunks} chunks has {expected} bytes, got {got}")]
    Length {
        /// Chunks.
        chunks: usize,
        /// Bytes it must have.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// A bit set past the last chunk.
    #[error("a bitmap of {0} chunks sets a bit past its end")]
    Padding(usize),
}

/// Which of `len` chunks are held.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bitmap {
    len: usize,
    bytes: Vec<u8>,
}

impl Bitmap {
    /// `len` chunks, none held.
    pub fn new(len: usize) -> Self {
        Self {
            len,
            bytes: vec![0; len.div_ceil(8)],
        }
    }

    /// `len` chunks, all held.
    pub fn full(len: usize) -> Self {
        let mut b = Self::new(len);
        for i in 0..len {
            b.set(i);
        }
        b
    }

    /// Checks bytes from the wire or the disk.
    pub fn from_bytes(len: usize, bytes: &[u8]) -> Result<Self, BitmapError> {
        let expected = len.div_ceil(8);
        if bytes.len() != expected {
            return Err(BitmapError::Length {
                chunks: len,
                expected,
                got: bytes.len(),
            });
        }
        let b = Self {
            len,
            bytes: bytes.to_vec(),
        };
        let used = len % 8;
        if used != 0 && bytes.last().is_some_and(|l| l >> used != 0) {
            return Err(BitmapError::Padding(len));
        }
        Ok(b)
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// How many chunks it covers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it covers no chunk.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether chunk `i` is held (false past the end).
    pub fn get(&self, i: usize) -> bool {
        i < self.len
            && self
                .bytes
                .get(i / 8)
                .is_some_and(|b| b & (1 << (i % 8)) != 0)
    }

    /// Marks chunk `i` held (ignored past the end).
    pub fn set(&mut self, i: usize) {
        if i < self.len
            && let Some(b) = self.bytes.get_mut(i / 8)
        {
            *b |= 1 << (i % 8);
        }
    }

    /// Chunks held.
    pub fn count(&self) -> usize {
        self.bytes.iter().map(|b| b.count_ones() as usize).sum()
    }

    /// Whether every chunk is held.
    pub fn is_full(&self) -> bool {
        self.count() == self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_least_significant_first() {
        let mut b = Bitmap::new(10);
        b.set(0);
        b.set(9);
        b.set(10);
        assert_eq!(b.as_bytes(), &[0b0000_0001, 0b0000_0010]);
        assert_eq!(b.count(), 2);
        assert!(b.get(9) && !b.get(10) && !b.get(1));
        assert!(Bitmap::full(10).is_full());
    }

    #[test]
    fn wire_bytes_are_checked() {
        assert_eq!(Bitmap::from_bytes(10, &[1, 2]).map(|b| b.count()), Ok(2));
        assert!(matches!(
            Bitmap::from_bytes(10, &[1]),
            Err(BitmapError::Length { expected: 2, .. })
        ));
        assert_eq!(
            Bitmap::from_bytes(10, &[0, 0b100]),
            Err(BitmapError::Padding(10))
        );
        assert!(Bitmap::from_bytes(0, &[]).is_ok());
    }
}
