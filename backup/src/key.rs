//! The deployment's backup key and the keys derived from it.

use chacha20poly1305::aead::OsRng;
use chacha20poly1305::aead::rand_core::RngCore as _;
use hkdf::Hkdf;
use sha2::Sha256;

use crate::BackupError;

/// The secret of one deployment's backups: 32 random bytes. The master keeps it and gives it
/// only to the nodes that run the deployment's replicas, never to the homes that store the
/// copies. Its `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct BackupKey([u8; 32]);

impl std::fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackupKey(…)")
    }
}

impl BackupKey {
    /// A new random key.
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        OsRng.fill_bytes(&mut k);
        Self(k)
    }

    /// A key from its 64 hexadecimal digits.
    pub fn from_hex(text: &str) -> Result<Self, BackupError> {
        let bytes = hex::decode(text.trim()).map_err(|_| BackupError::BadKey)?;
        let k: [u8; 32] = bytes.try_into().map_err(|_| BackupError::BadKey)?;
        Ok(Self(k))
    }

    /// The key as 64 hexadecimal digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The sub-keys (HKDF-SHA-256, one label each).
    pub(crate) fn derive(&self) -> Keys {
        let hk = Hkdf::<Sha256>::new(Some(b"hearth-backup v1"), &self.0);
        let mut id = [0u8; 32];
        let mut seal = [0u8; 32];
        // 32 bytes are always a valid HKDF-SHA-256 output length.
        let _ = hk.expand(b"chunk id", &mut id);
        let _ = hk.expand(b"seal", &mut seal);
        Keys { id, seal }
    }
}

/// Keys derived from a [`BackupKey`].
pub(crate) struct Keys {
    /// Names objects (HMAC-SHA-256 of the plaintext).
    pub id: [u8; 32],
    /// Seals objects (XChaCha20-Poly1305).
    pub seal: [u8; 32],
}
