//! The master's QUIC connection ids: a random nonce and a keyed tag, the key derived from the
//! master's identity so that a restarted master recognises the ids of its previous run.
//!
//! A restarted master answers a packet of an old connection with a stateless reset only when the
//! packet's connection id is unknown to it *and* carries a valid tag. quinn's own keyed generator
//! has a 3-byte nonce: with 10,000 connections (some 50,000 live ids) a node's old id then
//! matches one of the new run's ids about once in 300, and such a packet is routed to the new
//! connection, fails to decrypt and is dropped without a reset. That node waits out its silence
//! timeout. A 64-bit nonce makes such a collision negligible.

use quinn_proto::{ConnectionId, ConnectionIdGenerator, InvalidCid};

/// Random bytes in each id.
const NONCE_LEN: usize = 8;
/// Bytes of the truncated HMAC-SHA256 tag after the nonce.
const TAG_LEN: usize = 4;

/// Generates and recognises connection ids `nonce ‖ HMAC(key, nonce)[..4]`.
#[derive(Debug, Clone)]
pub struct KeyedCidGenerator {
    key: ring::hmac::Key,
}

impl KeyedCidGenerator {
    /// A generator keyed by `secret`.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
        }
    }

    fn tag(&self, nonce: &[u8]) -> [u8; TAG_LEN] {
        let tag = ring::hmac::sign(&self.key, nonce);
        // SHA-256 tags are 32 bytes: the first TAG_LEN always exist.
        tag.as_ref()
            .first_chunk::<TAG_LEN>()
            .copied()
            .unwrap_or_default()
    }
}

impl ConnectionIdGenerator for KeyedCidGenerator {
    fn generate_cid(&mut self) -> ConnectionId {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut id = [0; NONCE_LEN + TAG_LEN];
        let (n, t) = id.split_at_mut(NONCE_LEN);
        n.copy_from_slice(&nonce);
        t.copy_from_slice(&self.tag(&nonce));
        ConnectionId::new(&id)
    }

    fn validate(&self, cid: &ConnectionId) -> Result<(), InvalidCid> {
        match cid.split_at_checked(NONCE_LEN) {
            Some((nonce, tag)) if tag == self.tag(nonce) => Ok(()),
            _ => Err(InvalidCid),
        }
    }

    fn cid_len(&self) -> usize {
        NONCE_LEN + TAG_LEN
    }

    fn cid_lifetime(&self) -> Option<std::time::Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_recognised_by_a_generator_with_the_same_key_only() {
        let mut a = KeyedCidGenerator::new(b"first run");
        let restarted = KeyedCidGenerator::new(b"first run");
        let other = KeyedCidGenerator::new(b"another master");
        let ids: Vec<_> = (0..100).map(|_| a.generate_cid()).collect();
        for id in &ids {
            assert_eq!(id.len(), a.cid_len());
            assert!(restarted.validate(id).is_ok());
        }
        let refused = ids.iter().filter(|id| other.validate(id).is_err()).count();
        assert!(refused >= 99, "only {refused} of 100 foreign ids refused");
        assert!(a.validate(&ConnectionId::new(&[0; 4])).is_err());
        let mut distinct = ids.clone();
        distinct.sort_by_key(|id| id.to_vec());
        distinct.dedup();
        assert_eq!(distinct.len(), ids.len());
    }
}
