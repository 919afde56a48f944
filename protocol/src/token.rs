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
//!
//! Either form may end in `@<addr>[,<addr>…]`: the UDP addresses of the cooperative's masters
//! (all of them share the pinned key), at most [`MAX_MASTER_ADDRS`], so that the node needs no
//! `--master`. The text is split once, at the first `@` (IPv6 addresses hold `:`, never `@`). A
//! token without addresses prints exactly as before the suffix existed.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
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
    /// An entry of the `@` suffix is not an IP socket address.
    #[error(
        "enrolment token lists master address `{0}`, which is not an IP socket address (`192.0.2.1:7000` or `[2001:db8::1]:7000`)"
    )]
    Address(String),
    /// The `@` suffix names an address twice.
    #[error("enrolment token lists master address {0} twice")]
    DuplicateAddress(SocketAddr),
    /// The `@` suffix names more than [`MAX_MASTER_ADDRS`] addresses.
    #[error("enrolment token lists {0} master addresses; at most {MAX_MASTER_ADDRS} are allowed")]
    TooManyAddresses(usize),
}

/// At most this many master addresses in a token's `@` suffix (and in `DesiredState.masters`).
pub const MAX_MASTER_ADDRS: usize = 16;

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
    /// The masters' addresses from the `@` suffix, in order; empty without one.
    pub masters: Vec<SocketAddr>,
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
        let (s, masters) = match s.trim().split_once('@') {
            Some((token, addrs)) => (token, parse_addrs(addrs)?),
            None => (s.trim(), Vec::new()),
        };
        let parts: Vec<&str> = s.splitn(7, ':').collect();
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
            masters,
        })
    }
}

/// The `@` suffix: comma-separated socket addresses, none twice, at most [`MAX_MASTER_ADDRS`].
fn parse_addrs(text: &str) -> Result<Vec<SocketAddr>, TokenError> {
    let count = text.split(',').count();
    if count > MAX_MASTER_ADDRS {
        return Err(TokenError::TooManyAddresses(count));
    }
    let mut seen = BTreeSet::new();
    text.split(',')
        .map(|part| {
            let addr: SocketAddr = part
                .parse()
                .map_err(|_| TokenError::Address(part.to_owned()))?;
            if !seen.insert(addr) {
                return Err(TokenError::DuplicateAddress(addr));
            }
            Ok(addr)
        })
        .collect()
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
        }?;
        for (i, addr) in self.masters.iter().enumerate() {
            f.write_str(if i == 0 { "@" } else { "," })?;
            write!(f, "{addr}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for EnrolToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EnrolToken(id={}, master={}, root={:?}, masters={:?}, secret=…)",
            self.id, self.master, self.root, self.masters
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
            masters: Vec::new(),
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

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn master_addresses_round_trip_in_both_forms() {
        for root in [None, Some(pin())] {
            let bare = token(root);
            let mut t = bare.clone();
            t.masters = vec![addr("192.0.2.1:7000"), addr("[2001:db8::1]:7000")];
            let text = t.to_string();
            assert_eq!(text, format!("{bare}@192.0.2.1:7000,[2001:db8::1]:7000"));
            assert_eq!(text.parse::<EnrolToken>(), Ok(t.clone()));
            assert_eq!(format!(" {text}\n").parse::<EnrolToken>(), Ok(t));
            // One address, IPv6 only: the token's own `:`s are not confused with the address's.
            let mut one = bare.clone();
            one.masters = vec![addr("[::1]:7443")];
            assert_eq!(one.to_string(), format!("{bare}@[::1]:7443"));
            assert_eq!(one.to_string().parse::<EnrolToken>(), Ok(one));
        }
    }

    #[test]
    fn a_token_without_addresses_prints_as_before() {
        let ht1 = token(None);
        let text = ht1.to_string();
        assert!(!text.contains('@'), "{text}");
        assert_eq!(text.split(':').count(), 4);
        assert_eq!(text.parse::<EnrolToken>().unwrap().masters, vec![]);
        let ht2 = token(Some(pin())).to_string();
        assert!(!ht2.contains('@') && ht2.split(':').count() == 6, "{ht2}");
    }

    #[test]
    fn bad_master_addresses_are_refused_naming_the_address() {
        let base = token(Some(pin())).to_string();
        let cases = [
            ("@", TokenError::Address(String::new())),
            ("@192.0.2.1", TokenError::Address("192.0.2.1".into())),
            (
                "@192.0.2.1:7000,master.example:7000",
                TokenError::Address("master.example:7000".into()),
            ),
            ("@::1:7000", TokenError::Address("::1:7000".into())),
            (
                "@192.0.2.1:70000",
                TokenError::Address("192.0.2.1:70000".into()),
            ),
            ("@192.0.2.1:7000,", TokenError::Address(String::new())),
            (
                "@192.0.2.1:7000@[::1]:7000",
                TokenError::Address("192.0.2.1:7000@[::1]:7000".into()),
            ),
            (
                "@192.0.2.1:7000,192.0.2.2:7000,192.0.2.1:7000",
                TokenError::DuplicateAddress(addr("192.0.2.1:7000")),
            ),
        ];
        for (suffix, want) in cases {
            let text = format!("{base}{suffix}");
            assert_eq!(text.parse::<EnrolToken>(), Err(want), "{text}");
        }
        let many: Vec<String> = (1..=17).map(|i| format!("192.0.2.{i}:7000")).collect();
        assert_eq!(
            format!("{base}@{}", many.join(",")).parse::<EnrolToken>(),
            Err(TokenError::TooManyAddresses(17))
        );
        let sixteen = format!("{base}@{}", many[..16].join(","));
        assert_eq!(
            sixteen.parse::<EnrolToken>().map(|t| t.masters.len()),
            Ok(16)
        );
        // The token before the `@` is checked as before.
        assert_eq!(
            "ht2:a:b:c@192.0.2.1:7000".parse::<EnrolToken>(),
            Err(TokenError::Shape)
        );
        let message = format!("{base}@192.0.2.1")
            .parse::<EnrolToken>()
            .unwrap_err()
            .to_string();
        assert!(message.contains("`192.0.2.1`"), "{message}");
    }
}
