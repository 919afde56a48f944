//! Identities: every party is an Ed25519 public key with a canonical text form.
//!
//! The text form is a role prefix (`hn-` node, `hm-` master, `hk-` signing key) followed by
//! the 32 key bytes in RFC 4648 §7 base32hex, lowercase, without padding (52 characters).
//! Parsing checks the prefix, the alphabet, the length and that the bytes are a valid
//! Ed25519 point, so a value of these types is always a usable verifying key.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use data_encoding::BASE32_DNSSEC;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::Hex;

/// Why a key, id or signature could not be parsed or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The text does not start with the prefix of the expected role.
    #[error("expected an id starting with `{expected}`, got `{got}`")]
    WrongPrefix { expected: &'static str, got: String },
    /// The text after the prefix is not 52 characters of lowercase base32hex.
    #[error("id `{0}` is not 52 characters of lowercase base32hex after its prefix")]
    BadEncoding(String),
    /// 52 characters of base32hex whose 4 bits after the key's 256 are not zero (SPEC §2:
    /// `bad_encoding`, like [`Self::BadEncoding`]): no key is written that way.
    #[error(
        "id `{0}` is not a valid Ed25519 public key: its last character must be `0` or `g` \
         (the 52 characters carry the key's 256 bits, then 4 zero bits)"
    )]
    NonCanonical(String),
    /// The 32 bytes are not a valid Ed25519 public key.
    #[error(
        "id `{0}` is not a valid Ed25519 public key: its 32 bytes are not a point of the curve"
    )]
    NotAKey(String),
    /// The signature does not verify under the given key.
    #[error("signature does not verify for {0}")]
    BadSignature(String),
}

macro_rules! key_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(PublicKey);

        impl $name {
            /// The role prefix of the text form.
            pub const PREFIX: &'static str = $prefix;

            /// Wraps a verifying key.
            pub fn from_key(key: PublicKey) -> Self {
                Self(key)
            }

            /// The verifying key.
            pub fn key(&self) -> &PublicKey {
                &self.0
            }

            /// The raw 32 key bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                self.0.as_bytes()
            }

            /// Parses raw key bytes.
            pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, IdentityError> {
                PublicKey::from_bytes(bytes).map(Self)
            }

            /// Verifies `signature` over `message` with this key.
            pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), IdentityError> {
                self.0
                    .verify(message, signature)
                    .map_err(|()| IdentityError::BadSignature(self.to_string()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, BASE32_DNSSEC.encode(self.as_bytes()))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }

        impl FromStr for $name {
            type Err = IdentityError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let rest = s.strip_prefix($prefix).ok_or_else(|| IdentityError::WrongPrefix {
                    expected: $prefix,
                    got: s.chars().take(80).collect(),
                })?;
                let bytes = decode_key_text(rest).map_err(|e| e(truncate(s)))?;
                PublicKey::from_bytes(&bytes)
                    .map(Self)
                    .map_err(|_| IdentityError::NotAKey(truncate(s)))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "pattern": concat!("^", $prefix, "[0-9a-v]{52}$"),
                    "description": concat!("Ed25519 public key: `", $prefix, "` + base32hex (lowercase, no padding) of the 32 key bytes.")
                })
            }
        }

        #[cfg(feature = "arbitrary")]
        impl<'a> arbitrary::Arbitrary<'a> for $name {
            fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
                let seed: [u8; 32] = u.arbitrary()?;
                Ok(Self(SecretKey::from_seed(&seed).public()))
            }
        }
    };
}

key_id!(
    /// A node (a volunteer's home server): the public half of the key it generated at enrolment.
    NodeId,
    "hn-"
);
key_id!(
    /// A master: the public half of the key whose certificate nodes pin at enrolment.
    MasterId,
    "hm-"
);
key_id!(
    /// A signing key (a bandwidth gateway, a recipe role key).
    SignerId,
    "hk-"
);

/// Valid keys [`PublicKey::from_bytes`] remembers (32 bytes each: about 4 MiB in all).
pub const VALID_KEYS_KEPT: usize = 1 << 17;

/// A valid Ed25519 public key: 32 bytes known to decode to a curve point. Kept compressed
/// (32 bytes) so that ids are cheap to store and hash; decompressed only to verify.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Parses 32 bytes, rejecting values that are not a point on the curve.
    ///
    /// Decompressing a point costs tens of microseconds, and a master reads the same few
    /// thousand node ids back from its database over and over; so the keys already found valid
    /// are remembered (at most [`VALID_KEYS_KEPT`], then forgotten all at once). Only a value
    /// that passed the curve check is ever remembered, so the invariant is the same.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, IdentityError> {
        static VALID: Mutex<Option<HashSet<[u8; 32]>>> = Mutex::new(None);
        // A poisoned lock only means a panic elsewhere; the set holds valid keys all the same.
        let seen = VALID
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|set| set.contains(bytes));
        if seen {
            return Ok(Self(*bytes));
        }
        VerifyingKey::from_bytes(bytes).map_err(|_| IdentityError::NotAKey(hex::encode(bytes)))?;
        let mut set = VALID.lock().unwrap_or_else(|p| p.into_inner());
        let set = set.get_or_insert_with(HashSet::new);
        if set.len() >= VALID_KEYS_KEPT {
            set.clear();
        }
        set.insert(*bytes);
        Ok(Self(*bytes))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Strict Ed25519 verification (RFC 8032, rejecting small-order keys and malleable signatures).
    fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), ()> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| ())?;
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(message, &sig).map_err(|_| ())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.as_bytes()))
    }
}

/// An Ed25519 secret key. Never serialized by this crate; callers store its seed themselves.
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        Self(SigningKey::generate(&mut rand_core::OsRng))
    }

    /// The key whose seed is `seed` (RFC 8032 private key).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// The key of a key file's text: its 32-byte seed in hex (64 characters), surrounding
    /// whitespace ignored. Master, node and gateway store their keys this way.
    pub fn from_seed_hex(text: &str) -> Result<Self, crate::ValueError> {
        let seed: Hex<32> = text.trim().parse()?;
        Ok(Self::from_seed(&seed.0))
    }

    /// The 32-byte seed, for storing the key.
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// Signs `message` (pure Ed25519).
    pub fn sign(&self, message: &[u8]) -> Signature {
        Hex(self.0.sign(message).to_bytes())
    }

    /// The underlying dalek key, for TLS certificate generation.
    pub fn signing_key(&self) -> &SigningKey {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public={:?})", self.public())
    }
}

/// An Ed25519 signature, 64 bytes, written as 128 lowercase hex characters.
pub type Signature = Hex<64>;

/// The 32 key bytes of the text after the prefix, or the variant saying why there are none.
fn decode_key_text(text: &str) -> Result<[u8; 32], fn(String) -> IdentityError> {
    if text.len() != 52 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'v')) {
        return Err(IdentityError::BadEncoding);
    }
    // 52 characters of the alphabet: decoding fails, or re-encodes differently, only when the
    // trailing bits are not zero. The text must be exactly what we would print.
    let bytes = BASE32_DNSSEC
        .decode(text.as_bytes())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .filter(|b| BASE32_DNSSEC.encode(b) == text);
    bytes.ok_or(IdentityError::NonCanonical)
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips_and_is_canonical() {
        let key = SecretKey::from_seed(&[7; 32]);
        let id = NodeId::from_key(key.public());
        let text = id.to_string();
        assert!(text.starts_with("hn-"));
        assert_eq!(text.len(), 55);
        assert_eq!(text.parse::<NodeId>(), Ok(id));
        assert!(matches!(
            text.parse::<MasterId>(),
            Err(IdentityError::WrongPrefix { .. })
        ));
        assert!(matches!(
            text.to_uppercase().replace("HN-", "hn-").parse::<NodeId>(),
            Err(IdentityError::BadEncoding(_))
        ));
    }

    #[test]
    fn a_52_character_id_that_is_no_key_is_told_so() {
        let good = NodeId::from_key(SecretKey::from_seed(&[7; 32]).public()).to_string();
        // Right length and alphabet, non-zero trailing bits (the last character is not 0 or g).
        let trailing = format!("{}8", &good[..good.len() - 1]);
        let e = trailing.parse::<NodeId>().unwrap_err();
        assert!(matches!(e, IdentityError::NonCanonical(_)), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("is not a valid Ed25519 public key"), "{msg}");
        assert!(
            msg.contains("`0` or `g`") && !msg.contains("not 52"),
            "{msg}"
        );
        // Canonical text of 32 bytes that are not a curve point (vector 053).
        let e = "hn-0800000000000000000000000000000000000000000000000000"
            .parse::<NodeId>()
            .unwrap_err();
        assert!(matches!(e, IdentityError::NotAKey(_)), "{e:?}");
        assert!(e.to_string().contains("not a point of the curve"), "{e}");
        let e = "hn-abc".parse::<NodeId>().unwrap_err().to_string();
        assert!(e.contains("not 52 characters"), "{e}");
    }

    #[test]
    fn signatures_verify_only_for_the_signer_and_message() {
        let key = SecretKey::from_seed(&[1; 32]);
        let other = SignerId::from_key(SecretKey::from_seed(&[2; 32]).public());
        let id = SignerId::from_key(key.public());
        let sig = key.sign(b"hello");
        assert!(id.verify(b"hello", &sig).is_ok());
        assert!(id.verify(b"hellO", &sig).is_err());
        assert!(other.verify(b"hello", &sig).is_err());
    }
}
