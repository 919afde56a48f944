//! Who may join the overlay: the member set and relays the master sends (`overlay`, SPEC
//! §16.2), applied in order and persisted so a restarted agent admits the same peers; and the
//! mapping between node ids and libp2p peer ids (SPEC §16.1).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use hearth_protocol::messages::overlay::{
    MAX_MEMBERS, Overlay as OverlayMessage, OverlayRevision, RelayRef, peer_id_bytes,
};
use hearth_protocol::{NodeId, SignerId};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use super::OverlayError;

/// The file, in the data directory, that holds the member set.
pub const MEMBERS_FILE: &str = "overlay-members.json";
/// Version of [`MEMBERS_FILE`]'s format.
const MEMBERS_VERSION: u32 = 1;

/// The member set held: what the last `overlay` messages said.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// The revision held (`None`: none yet, or forgotten after a gap).
    pub revision: Option<OverlayRevision>,
    /// Members.
    pub members: BTreeSet<NodeId>,
    /// Relays.
    pub relays: Vec<RelayRef>,
    #[serde(skip)]
    dir: Option<PathBuf>,
}

/// [`MEMBERS_FILE`] on disk.
#[derive(Serialize, Deserialize)]
struct OnDisk {
    v: u32,
    revision: Option<OverlayRevision>,
    members: BTreeSet<NodeId>,
    relays: Vec<RelayRef>,
}

impl Membership {
    /// Loads the set persisted in `dir` (empty when there is none). A file of an unknown
    /// version or that does not parse is an error, not silently dropped.
    pub fn load(dir: &Path) -> Result<Self, OverlayError> {
        let path = dir.join(MEMBERS_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => {
                return Err(OverlayError::Persist {
                    path,
                    reason: e.to_string(),
                });
            }
        };
        let disk: OnDisk = serde_json::from_slice(&bytes).map_err(|e| OverlayError::Persist {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if disk.v != MEMBERS_VERSION {
            return Err(OverlayError::Persist {
                path,
                reason: format!("version {} (this agent reads {MEMBERS_VERSION})", disk.v),
            });
        }
        Ok(Self {
            revision: disk.revision,
            members: disk.members,
            relays: disk.relays,
            dir: None,
        })
    }

    /// Where [`save`](Self::save) writes.
    pub fn with_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.dir = dir;
        self
    }

    /// Applies one `overlay` message: a full set replaces the members, a delta must follow
    /// the held revision (`seq + 1` in the same epoch). Relays are always replaced.
    pub fn apply(&mut self, m: &OverlayMessage) -> Result<OverlayRevision, OverlayError> {
        if m.add.len() > MAX_MEMBERS || m.remove.len() > MAX_MEMBERS {
            return Err(OverlayError::Invalid(format!(
                "{} added and {} removed (at most {MAX_MEMBERS} each)",
                m.add.len(),
                m.remove.len()
            )));
        }
        if m.full {
            if !m.remove.is_empty() {
                return Err(OverlayError::Invalid(
                    "a full set removes nothing".to_owned(),
                ));
            }
            self.members = m.add.iter().copied().collect();
        } else {
            let follows = self.revision.is_some_and(|held| {
                held.epoch == m.revision.epoch && held.seq.checked_add(1) == Some(m.revision.seq)
            });
            if !follows {
                return Err(OverlayError::OutOfSequence {
                    held: self.revision,
                    got: m.revision,
                });
            }
            for n in &m.remove {
                self.members.remove(n);
            }
            self.members.extend(m.add.iter().copied());
        }
        self.relays = m.relays.clone();
        self.revision = Some(m.revision);
        Ok(m.revision)
    }

    /// Writes the set durably (temporary file, fsync, rename) when a directory was given.
    pub fn save(&self) -> Result<(), OverlayError> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let path = dir.join(MEMBERS_FILE);
        let disk = OnDisk {
            v: MEMBERS_VERSION,
            revision: self.revision,
            members: self.members.clone(),
            relays: self.relays.clone(),
        };
        let fail = |e: &dyn std::fmt::Display| OverlayError::Persist {
            path: path.clone(),
            reason: e.to_string(),
        };
        let text = serde_json::to_vec_pretty(&disk).map_err(|e| fail(&e))?;
        let tmp = dir.join(format!("{MEMBERS_FILE}.tmp"));
        (|| -> std::io::Result<()> {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        })()
        .map_err(|e| fail(&e))
    }
}

/// The libp2p peer id of a node.
pub fn peer_of(node: &NodeId) -> PeerId {
    key_peer(node.as_bytes())
}

/// The libp2p peer id of a relay (a gateway's `hk-` key).
pub fn relay_peer_of(relay: &SignerId) -> PeerId {
    key_peer(relay.as_bytes())
}

fn key_peer(key: &[u8; 32]) -> PeerId {
    // An identity multihash of 38 bytes always parses; the fallback is unreachable.
    PeerId::from_bytes(&peer_id_bytes(key)).unwrap_or_else(|_| PeerId::random())
}

/// The node whose key a peer id carries; `None` for any other kind of peer id (hashed keys,
/// other key types), which can never be a member.
pub fn node_of(peer: &PeerId) -> Option<NodeId> {
    let key = key_of(peer)?;
    NodeId::from_bytes(&key).ok()
}

/// The signer (relay) whose key a peer id carries.
pub fn signer_of(peer: &PeerId) -> Option<SignerId> {
    let key = key_of(peer)?;
    SignerId::from_bytes(&key).ok()
}

fn key_of(peer: &PeerId) -> Option<[u8; 32]> {
    let bytes = peer.to_bytes();
    let zero = [0u8; 32];
    let header = peer_id_bytes(&zero);
    if bytes.len() != header.len() || bytes.get(..6) != header.get(..6) {
        return None;
    }
    bytes.get(6..).and_then(|k| <[u8; 32]>::try_from(k).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_protocol::SecretKey;

    fn node(seed: u8) -> NodeId {
        NodeId::from_key(SecretKey::from_seed(&[seed; 32]).public())
    }

    fn msg(epoch: u64, seq: u64, full: bool, add: &[NodeId], remove: &[NodeId]) -> OverlayMessage {
        OverlayMessage {
            revision: OverlayRevision { epoch, seq },
            full,
            add: add.to_vec(),
            remove: remove.to_vec(),
            relays: Vec::new(),
        }
    }

    #[test]
    fn peer_ids_round_trip_and_match_libp2p() {
        let key = SecretKey::from_seed(&[9; 32]);
        let n = NodeId::from_key(key.public());
        let mut seed = key.seed();
        let kp = libp2p::identity::Keypair::ed25519_from_bytes(&mut seed).expect("key");
        assert_eq!(kp.public().to_peer_id(), peer_of(&n));
        assert_eq!(node_of(&peer_of(&n)), Some(n));
        assert_eq!(node_of(&PeerId::random()), None);
    }

    #[test]
    fn deltas_must_follow_and_full_sets_replace() {
        let (a, b, c) = (node(1), node(2), node(3));
        let mut m = Membership::default();
        assert!(matches!(
            m.apply(&msg(1, 1, false, &[a], &[])),
            Err(OverlayError::OutOfSequence { .. })
        ));
        m.apply(&msg(1, 1, true, &[a, b], &[])).expect("full");
        m.apply(&msg(1, 2, false, &[c], &[a])).expect("delta");
        assert_eq!(m.members, [b, c].into_iter().collect());
        assert!(m.apply(&msg(1, 4, false, &[a], &[])).is_err());
        assert!(m.apply(&msg(2, 3, false, &[a], &[])).is_err());
        m.apply(&msg(2, 1, true, &[a], &[]))
            .expect("new epoch, full");
        assert_eq!(m.members, [a].into_iter().collect());
    }

    #[test]
    fn the_set_survives_a_restart() {
        let dir = tempfile::tempdir().expect("dir");
        let mut m = Membership::default().with_dir(Some(dir.path().to_owned()));
        m.apply(&msg(3, 7, true, &[node(4)], &[])).expect("full");
        m.save().expect("save");
        let back = Membership::load(dir.path()).expect("load");
        assert_eq!(back.members, m.members);
        assert_eq!(back.revision, Some(OverlayRevision { epoch: 3, seq: 7 }));
        std::fs::write(dir.path().join(MEMBERS_FILE), br#"{"v":9}"#).expect("write");
        assert!(Membership::load(dir.path()).is_err());
    }
}
