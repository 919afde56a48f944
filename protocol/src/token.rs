//! The one-time enrolment token a volunteer pastes: `ht1:<id>:<secret>:<master id>`.
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
    /// Not four `:`-separated parts starting with `ht1`.
    #[error("not a Hearth enrolment token: expected `ht1:<id>:<secret>:<master id>`")]
    Shape,
    /// The id or secret is not lowercase hex of the right length.
    #[error("enrolment token {0} is malformed (was it copied whole?)")]
    Part(&'static str),
    /// The master id does not parse.
    #[error("enrolment token carries an invalid master id: {0}")]
    Master(String),
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
        let mut parts = s.trim().split(':');
        let (Some("ht1"), Some(id), Some(secret), Some(master), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TokenError::Shape);
        };
        Ok(Self {
            id: id.parse().map_err(|_| TokenError::Part("id"))?,
            secret: secret.parse().map_err(|_| TokenError::Part("secret"))?,
            master: master
                .parse()
                .map_err(|e: crate::IdentityError| TokenError::Master(e.to_string()))?,
        })
    }
}

impl fmt::Display for EnrolToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ht1:{}:{}:{}", self.id, self.secret, self.master)
    }
}

impl fmt::Debug for EnrolToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EnrolToken(id={}, master={}, secret=…)",
            self.id, self.master
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretKey;

    #[test]
    fn token_text_round_trips_and_rejects_damage() {
        let master = MasterId::from_key(SecretKey::from_seed(&[3; 32]).public());
        let t = EnrolToken {
            id: Hex([1, 2, 3, 4]),
            secret: Hex([9; 16]),
            master,
        };
        let text = t.to_string();
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
}
