//! Small value types with one text form on the wire: fixed-size hex, base64 blobs, bounded names.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256 as Sha256Hasher};

/// Why a value type could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Not exactly `2 * N` lowercase hex characters.
    #[error("expected {expected} lowercase hex characters, got `{got}`")]
    BadHex { expected: usize, got: String },
    /// Not standard padded base64.
    #[error("invalid base64: {0}")]
    BadBase64(String),
    /// A name outside its alphabet or length.
    #[error(
        "invalid {what} `{got}`: use 1 to {max} characters of a-z, 0-9 and '-', not starting or ending with '-'"
    )]
    BadName {
        what: &'static str,
        got: String,
        max: usize,
    },
    /// A value outside its documented form.
    #[error("invalid {what} `{got}`")]
    Invalid { what: &'static str, got: String },
}

/// `N` bytes written as `2 * N` lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hex<const N: usize>(pub [u8; N]);

/// A SHA-256 digest.
pub type Sha256 = Hex<32>;
/// 32 fresh random bytes chosen by the party that asks for a signature.
pub type Nonce = Hex<32>;

impl Sha256 {
    /// The digest of `data`.
    pub fn digest(data: &[u8]) -> Self {
        Hex(Sha256Hasher::digest(data).into())
    }
}

impl<const N: usize> Hex<N> {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; N] {
        &self.0
    }
}

impl<const N: usize> fmt::Display for Hex<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl<const N: usize> fmt::Debug for Hex<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hex({self})")
    }
}

impl<const N: usize> FromStr for Hex<N> {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ValueError::BadHex {
            expected: 2 * N,
            got: s.chars().take(140).collect(),
        };
        if s.len() != 2 * N || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad());
        }
        let mut out = [0u8; N];
        hex::decode_to_slice(s, &mut out).map_err(|_| bad())?;
        Ok(Self(out))
    }
}

impl<const N: usize> Serialize for Hex<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de, const N: usize> Deserialize<'de> for Hex<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl<const N: usize> JsonSchema for Hex<N> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("Hex{N}").into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": format!("^[0-9a-f]{{{}}}$", 2 * N),
            "description": format!("{N} bytes as lowercase hex")
        })
    }
}

#[cfg(feature = "arbitrary")]
impl<'a, const N: usize> arbitrary::Arbitrary<'a> for Hex<N> {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Self(u.arbitrary()?))
    }
}

/// Opaque bytes written as standard base64 with padding.
#[derive(Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Blob(pub Vec<u8>);

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blob({} bytes)", self.0.len())
    }
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        B64.decode(s.as_bytes())
            .map(Blob)
            .map_err(|e| serde::de::Error::custom(ValueError::BadBase64(e.to_string())))
    }
}

impl JsonSchema for Blob {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Blob".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "contentEncoding": "base64",
            "description": "bytes as standard base64 with padding (RFC 4648 §4)"
        })
    }
}

/// Defines a string newtype restricted to `[a-z0-9-]`, 1..=`max` characters, not starting or
/// ending with `-` (a DNS label), parsed at the boundary.
macro_rules! label_name {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, ::serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::codec::ValueError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $crate::codec::check_label(s, $what, $max).map(|()| Self(s.to_owned()))
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }

        impl ::schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut ::schemars::SchemaGenerator) -> ::schemars::Schema {
                ::schemars::json_schema!({
                    "type": "string",
                    "pattern": "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$",
                    "minLength": 1,
                    "maxLength": $max,
                })
            }
        }

        #[cfg(feature = "arbitrary")]
        impl<'a> arbitrary::Arbitrary<'a> for $name {
            fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
                let len = u.int_in_range(1..=8usize)?;
                let mut s = String::with_capacity(len);
                for _ in 0..len {
                    s.push(*u.choose(b"abcdefghijklmnopqrstuvwxyz0123456789")? as char);
                }
                Ok(Self(s))
            }
        }
    };
}
pub(crate) use label_name;

pub(crate) fn check_label(s: &str, what: &'static str, max: usize) -> Result<(), ValueError> {
    let ok = !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ValueError::BadName {
            what,
            got: s.chars().take(80).collect(),
            max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_strict_lowercase_and_fixed_length() {
        let h: Hex<2> = "0aff".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(h.0, [0x0a, 0xff]);
        for bad in ["0AFF", "0aff00", "0a", "0afg"] {
            let e = bad.parse::<Hex<2>>().unwrap_err();
            assert!(
                matches!(&e, ValueError::BadHex { expected: 4, got } if got == bad),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn sha256_of_empty_input_matches_the_standard() {
        assert_eq!(
            Sha256::digest(b"").to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
