//! Naming and sealing objects: a keyed hash of the plaintext names it; zstd, then
//! XChaCha20-Poly1305 with the name as associated data, seals it.
//!
//! Sealed form (format 1): `0x01 ‖ nonce (24 bytes) ‖ ciphertext ‖ tag (16 bytes)`, where the
//! ciphertext is of the zstd-compressed plaintext and the associated data is
//! `"hearth-backup/<kind>/v1" ‖ id`.

use chacha20poly1305::aead::{Aead as _, AeadCore as _, KeyInit as _, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::BackupError;
use crate::key::Keys;

/// The format byte of sealed objects.
const FORMAT: u8 = 1;
/// Nonce length of XChaCha20-Poly1305.
const NONCE: usize = 24;
/// zstd level: fast, and most of the gain.
const LEVEL: i32 = 3;

/// A chunk's name: HMAC-SHA-256 of its plaintext under the deployment's id key. Equal chunks of
/// one deployment have equal names (that is the deduplication); without the key a name says
/// nothing about the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 32]);

impl std::fmt::Display for ChunkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::str::FromStr for ChunkId {
    type Err = BackupError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = hex::decode(s).map_err(|_| BackupError::BadManifest {
            id: String::new(),
            reason: format!("{s:?} is not an object id"),
        })?;
        let id: [u8; 32] = bytes.try_into().map_err(|_| BackupError::BadManifest {
            id: String::new(),
            reason: format!("{s:?} is not 32 bytes"),
        })?;
        Ok(Self(id))
    }
}

impl serde::Serialize for ChunkId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for ChunkId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The id of `plain` under `keys`.
pub(crate) fn id_of(keys: &Keys, plain: &[u8]) -> ChunkId {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as hmac::Mac>::new_from_slice(&keys.id)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(plain);
    ChunkId(mac.finalize().into_bytes().into())
}

thread_local! {
    /// One zstd context per thread: setting one up costs more than compressing a 64 KiB chunk.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn compress(plain: &[u8]) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = Some(zstd::bulk::Compressor::new(LEVEL)?);
        }
        match c.as_mut() {
            Some(z) => z.compress(plain),
            None => Err(std::io::Error::other("no zstd context")),
        }
    })
}

fn decompress(packed: &[u8], max_len: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        match d.as_mut() {
            Some(z) => z.decompress(packed, max_len),
            None => Err(std::io::Error::other("no zstd context")),
        }
    })
}

fn aad(kind: &str, id: &ChunkId) -> Vec<u8> {
    let mut a = format!("hearth-backup/{kind}/v1").into_bytes();
    a.extend_from_slice(&id.0);
    a
}

/// Compresses and seals `plain`, named `id`, as an object of `kind`.
pub(crate) fn seal(
    keys: &Keys,
    kind: &'static str,
    id: &ChunkId,
    plain: &[u8],
) -> Result<Vec<u8>, BackupError> {
    let packed = compress(plain).map_err(|_| BackupError::Seal(*id))?;
    let cipher = XChaCha20Poly1305::new((&keys.seal).into());
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let aad = aad(kind, id);
    let sealed = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: &packed,
                aad: &aad,
            },
        )
        .map_err(|_| BackupError::Seal(*id))?;
    let mut out = Vec::with_capacity(1 + NONCE + sealed.len());
    out.push(FORMAT);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens a sealed object of `kind` named `id`: authenticates, decompresses (at most
/// `max_len` bytes) and checks that the plaintext's keyed hash is `id`.
pub(crate) fn open(
    keys: &Keys,
    kind: &'static str,
    id: &ChunkId,
    sealed: &[u8],
    max_len: usize,
) -> Result<Vec<u8>, BackupError> {
    let tampered = || BackupError::Tampered {
        kind,
        id: id.to_string(),
    };
    let (&format, rest) = sealed.split_first().ok_or_else(tampered)?;
    if format != FORMAT {
        return Err(BackupError::Format {
            kind,
            id: id.to_string(),
            format,
        });
    }
    if rest.len() < NONCE {
        return Err(tampered());
    }
    let (nonce, body) = rest.split_at(NONCE);
    let cipher = XChaCha20Poly1305::new((&keys.seal).into());
    let aad = aad(kind, id);
    let packed = cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: body,
                aad: &aad,
            },
        )
        .map_err(|_| tampered())?;
    let plain = decompress(&packed, max_len).map_err(|_| tampered())?;
    if id_of(keys, &plain) != *id {
        return Err(tampered());
    }
    Ok(plain)
}

/// The id of `plain` as an object of the deployment with `key` (SPEC §17.2).
pub fn object_id(key: &crate::BackupKey, plain: &[u8]) -> ChunkId {
    id_of(&key.derive(), plain)
}

/// Seals `plain` as an object of `kind` (its id is [`object_id`]); returns the id and the
/// sealed bytes.
pub fn seal_object(
    key: &crate::BackupKey,
    kind: crate::ObjectKind,
    plain: &[u8],
) -> Result<(ChunkId, Vec<u8>), BackupError> {
    let keys = key.derive();
    let id = id_of(&keys, plain);
    let sealed = seal(&keys, kind.as_str(), &id, plain)?;
    Ok((id, sealed))
}

/// Opens one sealed object of `kind` named `id` (at most `max_len` bytes of plaintext),
/// checking its tag and its id.
pub fn open_object(
    key: &crate::BackupKey,
    kind: crate::ObjectKind,
    id: &ChunkId,
    sealed: &[u8],
    max_len: usize,
) -> Result<Vec<u8>, BackupError> {
    open(&key.derive(), kind.as_str(), id, sealed, max_len)
}
