//! Browser sessions of the dashboard: a signed cookie, CSRF tokens and the sign-in rate limit.
//!
//! The cookie is `hs1.<payload>.<mac>`: the payload (base64url JSON: user, credential id,
//! expiry, a random nonce) and an HMAC-SHA256 over it. The MAC key is derived with HKDF from an
//! Ed25519 signature by the master's key over a fixed label — Ed25519 signatures are
//! deterministic, so every master sharing the identity derives the same key, and nobody without
//! the key can. The cookie names the credential, and every request looks that credential up
//! again, so removing a user or letting their credential expire ends their sessions at once.
//! A form's CSRF token is the HMAC (under a second derived key) of the session cookie.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::ratelimit::LogLimiter;

/// Cookie name of the session.
pub const COOKIE: &str = "hearth_session";

/// How long a session lasts (capped by the credential's own expiry).
pub const SESSION_MS: u64 = 8 * 3_600_000;

/// Sign-in attempts a client address may make at once, then per minute.
const ATTEMPTS_BURST: u32 = 10;
const ATTEMPTS_PER_MINUTE: u32 = 10;

/// Addresses and names tracked by the limiter before the oldest are forgotten.
const TRACKED: usize = 10_000;

type HmacSha256 = Hmac<Sha256>;

/// What a valid cookie says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaim {
    /// Version of this payload.
    pub v: u32,
    /// The user's name.
    pub user: String,
    /// The store id of the credential they signed in with (`admin` for the admin token).
    pub credential: String,
    /// Expiry, Unix ms.
    pub expires_ms: u64,
    /// Random, so that two sessions never share a cookie.
    pub nonce: String,
}

/// The keys of the sessions and the sign-in limiter.
pub struct Sessions {
    cookie_key: [u8; 32],
    csrf_key: [u8; 32],
    limits: Mutex<HashMap<String, LogLimiter>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sessions { .. }")
    }
}

impl Sessions {
    /// Keys derived from the master's identity key.
    pub fn new(key: &hearth_protocol::SecretKey) -> Self {
        let seed = key.sign(b"hearth ui sessions v1");
        let hk = hkdf::Hkdf::<Sha256>::new(Some(b"hearth-ui"), &seed.0);
        let mut cookie_key = [0; 32];
        let mut csrf_key = [0; 32];
        // 32 bytes is far below HKDF-SHA256's limit of 8160: expansion cannot fail.
        let _ = hk.expand(b"session cookie", &mut cookie_key);
        let _ = hk.expand(b"csrf token", &mut csrf_key);
        Self {
            cookie_key,
            csrf_key,
            limits: Mutex::new(HashMap::new()),
        }
    }

    fn mac(key: &[u8; 32], data: &[u8]) -> HmacSha256 {
        // HMAC takes a key of any length: this cannot fail.
        let mut m = <HmacSha256 as Mac>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts 32-byte keys"));
        m.update(data);
        m
    }

    /// A new cookie value for this claim.
    pub fn issue(&self, claim: &SessionClaim) -> String {
        let payload = B64.encode(serde_json::to_vec(claim).unwrap_or_default());
        let tag = Self::mac(&self.cookie_key, payload.as_bytes())
            .finalize()
            .into_bytes();
        format!("hs1.{payload}.{}", B64.encode(tag))
    }

    /// The claim of a cookie value, if its MAC verifies and it has not expired.
    pub fn verify(&self, cookie: &str, now_ms: u64) -> Option<SessionClaim> {
        let rest = cookie.strip_prefix("hs1.")?;
        let (payload, tag) = rest.split_once('.')?;
        let tag = B64.decode(tag).ok()?;
        Self::mac(&self.cookie_key, payload.as_bytes())
            .verify_slice(&tag)
            .ok()?;
        let claim: SessionClaim = serde_json::from_slice(&B64.decode(payload).ok()?).ok()?;
        (claim.v == 1 && claim.expires_ms > now_ms).then_some(claim)
    }

    /// The CSRF token of forms shown in this session.
    pub fn csrf(&self, cookie: &str) -> String {
        B64.encode(
            Self::mac(&self.csrf_key, cookie.as_bytes())
                .finalize()
                .into_bytes(),
        )
    }

    /// Whether a form's token belongs to this session (compared in constant time).
    pub fn csrf_ok(&self, cookie: &str, token: &str) -> bool {
        B64.decode(token).is_ok_and(|t| {
            Self::mac(&self.csrf_key, cookie.as_bytes())
                .verify_slice(&t)
                .is_ok()
        })
    }

    /// Whether a sign-in attempt from `addr` for `name` may go ahead now: each is limited to
    /// a burst of 10, then 10 a minute.
    pub fn attempt(&self, addr: Option<IpAddr>, name: &str, now_ms: u64) -> bool {
        let mut limits = self
            .limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if limits.len() > TRACKED {
            limits.clear();
        }
        let mut ok = true;
        let keys = [
            addr.map(|a| format!("ip {a}")),
            Some(format!("name {}", name.trim())),
        ];
        for key in keys.into_iter().flatten() {
            let limiter = limits
                .entry(key)
                .or_insert_with(|| LogLimiter::new(ATTEMPTS_BURST, ATTEMPTS_PER_MINUTE));
            ok &= limiter.allow(now_ms).is_some();
        }
        ok
    }
}

/// A fresh random nonce.
pub fn nonce() -> String {
    hearth_protocol::Hex::<16>(rand::random()).to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn claim(expires_ms: u64) -> SessionClaim {
        SessionClaim {
            v: 1,
            user: "ana".into(),
            credential: "u00".into(),
            expires_ms,
            nonce: nonce(),
        }
    }

    #[test]
    fn cookies_verify_only_untampered_unexpired_and_with_the_same_key() {
        let s = Sessions::new(&hearth_protocol::SecretKey::generate());
        let c = s.issue(&claim(2_000));
        assert_eq!(s.verify(&c, 1_000).unwrap().user, "ana");
        assert!(s.verify(&c, 2_000).is_none(), "expired");
        let mut forged = claim(9_999);
        forged.user = "root".into();
        let other = s.issue(&forged);
        let (_, tag) = c.rsplit_once('.').unwrap();
        let (head, _) = other.rsplit_once('.').unwrap();
        assert!(s.verify(&format!("{head}.{tag}"), 1_000).is_none());
        let stranger = Sessions::new(&hearth_protocol::SecretKey::generate());
        assert!(stranger.verify(&c, 1_000).is_none());
        assert!(s.csrf_ok(&c, &s.csrf(&c)));
        assert!(!s.csrf_ok(&other, &s.csrf(&c)));
        assert!(!s.csrf_ok(&c, "nonsense"));
    }

    #[test]
    fn sign_in_attempts_are_limited_per_address_and_per_name() {
        let s = Sessions::new(&hearth_protocol::SecretKey::generate());
        let ip = Some("127.0.0.1".parse().unwrap());
        for i in 0..10 {
            assert!(s.attempt(ip, &format!("n{i}"), 1));
        }
        assert!(!s.attempt(ip, "fresh", 2), "the address is spent");
        assert!(s.attempt(None, "fresh", 2), "another address, another name");
        assert!(s.attempt(ip, "fresh", 60_002), "refilled after a minute");
    }
}
