//! The one-time enrolment token a volunteer pastes, in one of two forms:
//!
//! - `ht2:<id>:<secret>:<master id>:<root version>:<root sha256>`: also pins the cooperative's
//!   signed root metadata (`<root version>.root.json`) by its SHA-256, so a node gets its first
//!   TUF root from the master it pinned and accepts it only if the hash matches;
//! - `ht1:<id>:<secret>:<master id>`: issued while no root is published; the node then needs
//!   its root out of band (`--trust-root`) or trusts the master's on first use.
//!
//! `id` is 8 lowercase hex characters (public, names the token), `secret` 32 lowercase hex
//! characters (16 random bytes; the master keeps only its SHA-256), and the master id pins the
//! master's certificate key, as kubeadm's discovery hash does.

use std::fmt;
use std::str::FromStr;

use crate::codec::{Hex, Sha256};
use crate::identity::MasterId;

/// Why a token text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Neither four `:`-separated parts starting with `ht1` nor six starting with `ht2`.
    #[error(
        "not a Hearth enrolment token: expected `ht2:<id>:<secret>:<master id>:<root version>:<root sha256>` or `ht1:<id>:<secret>:<master id>`"
    )]
    Shape,
    /// A part is not of its format (lowercase hex of the right length, a version from 1).
    #[error("enrolment token {0} is malformed (was it copied whole?)")]
    Part(&'static str),
    /// The master id does not parse.
    #[error("enrolment token carries an invalid master id: {0}")]
    Master(String),
}

/// The root metadata an `ht2` token pins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootPin {
    /// Root version (`<version>.root.json`), from 1.
    pub version: u64,
    /// SHA-256 of the file's exact bytes.
    pub sha256: Sha256,
}

impl RootPin {
    /// The metadata file this pin names, `<version>.root.json`.
    pub fn file(&self) -> String {
        format!("{}.root.json", self.version)
    }
}

/// A parsed enrolment token.
#[derive(Clone, PartialEq, Eq)]
pub struct EnrolToken {
    /// Public token id.
    pub id: Hex<4>,
    /// The secret.
    pub secret: Hex<16>,
    /// The pinned master.
    pub master: MasterId,
    /// The pinned root metadata: `Some` for `ht2`, `None` for `ht1`.
    pub root: Option<RootPin>,
}

impl EnrolToken {
    /// SHA-256 of the secret's text form: what the master stores.
    pub fn secret_hash(secret: &str) -> Sha256 {
        Sha256::digest(secret.as_bytes())
    }
}

impl FromStr for EnrolToken {
    type Err = TokenError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.trim().splitn(7, ':').collect();
        let (id, secret, master, root) = match parts.as_slice() {
            ["ht1", id, secret, master] => (*id, *secret, *master, None),
            ["ht2", id, secret, master, version, sha256] => {
                (*id, *secret, *master, Some((*version, *sha256)))
            }
            _ => return Err(TokenError::Shape),
        };
        Ok(Self {
            id: id.parse().map_err(|_| TokenError::Part("id"))?,
            secret: secret.parse().map_err(|_| TokenError::Part("secret"))?,
            master: master
                .parse()
                .map_err(|e: crate::IdentityError| TokenError::Master(e.to_string()))?,
            root: root.map(parse_root).transpose()?,
        })
    }
}

/// A root version is decimal digits without a leading zero, from 1 (the text `u64` prints).
fn parse_root((version, sha256): (&str, &str)) -> Result<RootPin, TokenError> {
    let bad_version = TokenError::Part("root version");
    if version.starts_with('0') || !version.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_version);
    }
    Ok(RootPin {
        version: version.parse().map_err(|_| bad_version)?,
        sha256: sha256
            .parse()
            .map_err(|_| TokenError::Part("root sha256"))?,
    })
}

impl fmt::Display for EnrolToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.root {
            Some(root) => write!(
                f,
                "ht2:{}:{}:{}:{}:{}",
                self.id, self.secret, self.master, root.version, root.sha256
            ),
            None => write!(f, "ht1:{}:{}:{}", self.id, self.secret, self.master),
        }
    }
}

impl fmt::Debug for EnrolToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EnrolToken(id={}, master={}, root={:?}, secret=…)",
            self.id, self.master, self.root
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretKey;

    fn token(root: Option<RootPin>) -> EnrolToken {
        EnrolToken {
            id: Hex([1, 2, 3, 4]),
            secret: Hex([9; 16]),
            master: MasterId::from_key(SecretKey::from_seed(&[3; 32]).public()),
            root,
        }
    }

    fn pin() -> RootPin {
        RootPin {
            version: 12,
            sha256: Sha256::digest(b"root"),
        }
    }

    #[test]
    fn token_text_round_trips_and_rejects_damage() {
        let t = token(None);
        let text = t.to_string();
        assert!(text.starts_with("ht1:"));
        assert_eq!(text.parse::<EnrolToken>(), Ok(t));
        assert_eq!(
            text[..text.len() - 2]
                .parse::<EnrolToken>()
                .map(|_| ())
                .map_err(|e| matches!(e, TokenError::Master(_))),
            Err(true)
        );
        assert_eq!("ht2:a:b:c".parse::<EnrolToken>(), Err(TokenError::Shape));
        assert_eq!(
            text.replacen("01020304", "0102030", 1)
                .parse::<EnrolToken>(),
            Err(TokenError::Part("id"))
        );
    }

    #[test]
    fn ht2_carries_the_root_pin_and_round_trips() {
        let t = token(Some(pin()));
        let text = t.to_string();
        let sha = Sha256::digest(b"root").to_string();
        assert!(text.starts_with("ht2:01020304:"), "{text}");
        assert!(text.ends_with(&format!(":12:{sha}")), "{text}");
        assert_eq!(text.parse::<EnrolToken>(), Ok(t.clone()));
        assert_eq!(format!("  {text}\n").parse::<EnrolToken>(), Ok(t));
        assert_eq!(pin().file(), "12.root.json");
    }

    #[test]
    fn bad_ht2_forms_are_refused_naming_the_part() {
        let good = token(Some(pin())).to_string();
        let (head, sha) = good.rsplit_once(':').unwrap();
        let (prefix, _version) = head.rsplit_once(':').unwrap();
        let ht1 = token(None).to_string();
        let cases = [
            (
                format!("{prefix}:0:{sha}"),
                TokenError::Part("root version"),
            ),
            (
                format!("{prefix}:012:{sha}"),
                TokenError::Part("root version"),
            ),
            (
                format!("{prefix}:+1:{sha}"),
                TokenError::Part("root version"),
            ),
            (format!("{prefix}::{sha}"), TokenError::Part("root version")),
            (
                format!("{prefix}:99999999999999999999:{sha}"),
                TokenError::Part("root version"),
            ),
            (
                format!("{prefix}:1:{}", &sha[1..]),
                TokenError::Part("root sha256"),
            ),
            (
                format!("{prefix}:1:{}", sha.to_uppercase()),
                TokenError::Part("root sha256"),
            ),
            (format!("{prefix}:1:{sha}:extra"), TokenError::Shape),
            (format!("{prefix}:1"), TokenError::Shape),
            // The forms do not mix: ht1 with a pin, ht2 without one, an unknown format.
            (good.replacen("ht2", "ht1", 1), TokenError::Shape),
            (ht1.replacen("ht1", "ht2", 1), TokenError::Shape),
            (good.replacen("ht2", "ht3", 1), TokenError::Shape),
            (good.replacen("ht2", "HT2", 1), TokenError::Shape),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<EnrolToken>(), Err(want), "{text}");
        }
    }
}
