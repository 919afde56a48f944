//! Checkpoints (C2SP tlog-checkpoint) in signed notes (C2SP signed-note): the master's signed
//! tree heads and the witnesses' co-signatures (SPEC.md §15.3, §15.5).
//!
//! The note text is `<origin>\n<size>\n<base64 root>\n` with origin and key name
//! `hearth-ledger/<master id>`. Every signature, the master's and each witness's, is the standard
//! Ed25519 note signature (algorithm byte 0x01, key id = first 4 bytes of
//! SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key), signature over the note text). The master's
//! verifier key follows from its id alone, so anyone holding the `hm-…` id can check a note.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hearth_protocol::{Hex, MasterId, SecretKey};
use signed_note::{
    Note, Signature as NoteSignature, Signer, StandardSigner, StandardVerifier, Verifier,
};

use crate::entry::Hash;

/// The key name and checkpoint origin of a master's ledger.
pub fn origin_for(master: &MasterId) -> String {
    format!("hearth-ledger/{master}")
}

/// The C2SP verifier key (`name+keyid+base64(0x01‖key)`) of a master's checkpoints.
pub fn master_vkey(master: &MasterId) -> String {
    let name = origin_for(master);
    let pubkey = ed25519_pub(master.as_bytes());
    format!(
        "{name}+{:08x}+{}",
        signed_note::key_id(&name, &pubkey),
        BASE64.encode(&pubkey)
    )
}

/// Why a checkpoint, note, key or co-signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Not a signed note, or its text is not a checkpoint.
    #[error("malformed checkpoint note: {0}")]
    Malformed(String),
    /// A checkpoint of another log.
    #[error("checkpoint origin is `{got}`, expected `{expected}`")]
    Origin {
        /// This master's origin.
        expected: String,
        /// The note's.
        got: String,
    },
    /// No signature line from the master's key.
    #[error("the note carries no signature by {0}")]
    NoMasterSignature(String),
    /// The master's signature line does not verify.
    #[error("the master's signature on the checkpoint of size {0} does not verify")]
    BadMasterSignature(u64),
    /// A key text that is not a C2SP key.
    #[error("malformed key: {0}")]
    Key(String),
}

/// A tree head: the log `origin` had `size` entries with Merkle root `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// `hearth-ledger/<master id>`.
    pub origin: String,
    /// Number of entries.
    pub size: u64,
    /// The RFC 6962 root at that size.
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: `origin\nsize\nbase64(root)\n`.
    pub fn to_text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root.0)
        )
    }

    /// Reads a note text (no extension lines: Hearth's checkpoints carry none).
    pub fn from_text(text: &[u8]) -> Result<Self, CheckpointError> {
        let c = tlog_tiles::Checkpoint::from_bytes(text)
            .map_err(|_| CheckpointError::Malformed("not origin, size and root lines".into()))?;
        if !c.extension().is_empty() {
            return Err(CheckpointError::Malformed(
                "unexpected extension lines".into(),
            ));
        }
        Ok(Self {
            origin: c.origin().to_owned(),
            size: c.size(),
            root: Hex(c.hash().0),
        })
    }

    /// Signs with the master's key; returns the whole note (text, blank line, signature line).
    pub fn sign(&self, key: &SecretKey) -> Result<String, CheckpointError> {
        let signer = MasterSigner::new(key);
        if signer.name != self.origin {
            return Err(CheckpointError::Origin {
                expected: signer.name,
                got: self.origin.clone(),
            });
        }
        let mut note = Note::new(self.to_text().as_bytes(), &[]).map_err(malformed)?;
        note.add_sigs(&[&signer]).map_err(malformed)?;
        String::from_utf8(note.to_bytes()).map_err(|e| CheckpointError::Malformed(e.to_string()))
    }
}

/// A checkpoint whose master signature was checked, with any co-signature lines it carried
/// (not checked: see [`Self::check_cosignatures`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SignedCheckpoint {
    /// The tree head.
    pub checkpoint: Checkpoint,
    text: String,
    master: NoteSignature,
    cosignatures: Vec<NoteSignature>,
}

/// The co-signatures of a checkpoint, sorted by witness name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cosignatures {
    /// Witnesses whose signature verified.
    pub valid: Vec<String>,
    /// Signatures by a known witness name that do not verify (a forged or altered line).
    pub invalid: Vec<String>,
    /// Signers not among the witness keys given.
    pub unknown: Vec<String>,
}

impl SignedCheckpoint {
    /// Reads a note and checks it is a checkpoint of `master`'s log signed by `master`.
    pub fn open(note: &str, master: &MasterId) -> Result<Self, CheckpointError> {
        let (text, sigs) = split_note(note)?;
        let checkpoint = Checkpoint::from_text(text.as_bytes())?;
        let verifier = MasterVerifier::new(master);
        if checkpoint.origin != verifier.name {
            return Err(CheckpointError::Origin {
                expected: verifier.name,
                got: checkpoint.origin,
            });
        }
        let (mine, others): (Vec<_>, Vec<_>) = sigs
            .into_iter()
            .partition(|s| s.name() == verifier.name && s.id() == verifier.id);
        let master_sig = mine
            .into_iter()
            .next()
            .ok_or_else(|| CheckpointError::NoMasterSignature(verifier.name.clone()))?;
        if !verifier.verify(text.as_bytes(), master_sig.signature()) {
            return Err(CheckpointError::BadMasterSignature(checkpoint.size));
        }
        let mut out = Self {
            checkpoint,
            text,
            master: master_sig,
            cosignatures: Vec::new(),
        };
        for s in others {
            out.push_cosignature(s);
        }
        Ok(out)
    }

    /// The note text the signatures sign.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The note: text, blank line, the master's line, then every co-signature line.
    pub fn note(&self) -> String {
        let mut out = format!("{}\n", self.text);
        out.push_str(&String::from_utf8_lossy(&self.master.to_bytes()));
        for s in &self.cosignatures {
            out.push_str(&String::from_utf8_lossy(&s.to_bytes()));
        }
        out
    }

    /// The co-signature lines carried (unchecked).
    pub fn cosignatures(&self) -> &[NoteSignature] {
        &self.cosignatures
    }

    /// Adds a co-signature line (`— name base64`, newline optional); a second line from the
    /// same key replaces the first. Returns the signer's name.
    pub fn add_cosignature(&mut self, line: &str) -> Result<String, CheckpointError> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let sig = NoteSignature::from_bytes(line.as_bytes()).map_err(malformed)?;
        let name = sig.name().to_owned();
        self.push_cosignature(sig);
        Ok(name)
    }

    /// Checks every co-signature against the witness keys given.
    pub fn check_cosignatures(&self, witnesses: &[WitnessVkey]) -> Cosignatures {
        let mut out = Cosignatures::default();
        for s in &self.cosignatures {
            let known = witnesses
                .iter()
                .find(|w| w.0.name() == s.name() && w.0.key_id() == s.id());
            let list = match known {
                Some(w) if w.0.verify(self.text.as_bytes(), s.signature()) => &mut out.valid,
                Some(_) => &mut out.invalid,
                None => &mut out.unknown,
            };
            list.push(s.name().to_owned());
        }
        for list in [&mut out.valid, &mut out.invalid, &mut out.unknown] {
            list.sort();
            list.dedup();
        }
        out
    }

    fn push_cosignature(&mut self, sig: NoteSignature) {
        self.cosignatures
            .retain(|s| !(s.name() == sig.name() && s.id() == sig.id()));
        self.cosignatures.push(sig);
    }
}

/// A witness's verifier key (C2SP vkey text, Ed25519).
#[derive(Clone)]
pub struct WitnessVkey(StandardVerifier);

impl WitnessVkey {
    /// Parses `name+keyid+base64(0x01‖key)`.
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        StandardVerifier::new(text.trim())
            .map(Self)
            .map_err(|e| CheckpointError::Key(format!("`{}`: {e}", text.trim())))
    }

    /// The witness's key name.
    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// Whether `sig` is this witness's signature on `text`.
    pub fn verify(&self, text: &str, sig: &NoteSignature) -> bool {
        sig.name() == self.0.name()
            && sig.id() == self.0.key_id()
            && self.0.verify(text.as_bytes(), sig.signature())
    }
}

impl std::fmt::Debug for WitnessVkey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WitnessVkey({}+{:08x})", self.0.name(), self.0.key_id())
    }
}

/// A witness's signing key (`PRIVATE+KEY+name+keyid+base64(0x01‖seed)`, C2SP signed-note).
pub struct WitnessKey {
    signer: StandardSigner,
    text: String,
    vkey: String,
}

impl WitnessKey {
    /// A fresh key named `name` (a valid key name: no spaces, no `+`).
    pub fn generate(name: &str) -> Result<Self, CheckpointError> {
        Self::from_seed(name, &SecretKey::generate().seed())
    }

    /// The key of `name` with Ed25519 seed `seed` (for tests and vectors).
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, CheckpointError> {
        if !signed_note::is_key_name_valid(name) {
            return Err(CheckpointError::Key(format!(
                "witness name `{name}` must be non-empty with no spaces and no `+`"
            )));
        }
        let key = SecretKey::from_seed(seed);
        let pubkey = ed25519_pub(key.public().as_bytes());
        let mut private = vec![0x01];
        private.extend_from_slice(seed);
        let text = format!(
            "PRIVATE+KEY+{name}+{:08x}+{}",
            signed_note::key_id(name, &pubkey),
            BASE64.encode(private)
        );
        Self::parse(&text)
    }

    /// Parses the private key text.
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let text = text.trim();
        let signer = StandardSigner::new(text)
            .map_err(|e| CheckpointError::Key(format!("witness private key: {e}")))?;
        // PRIVATE+KEY+name+id+key: the key's base64 may itself hold `+`
        let b64 = text.splitn(5, '+').nth(4).unwrap_or_default();
        let raw = BASE64
            .decode(b64)
            .map_err(|e| CheckpointError::Key(e.to_string()))?;
        let seed: [u8; 32] = raw
            .get(1..)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| CheckpointError::Key("witness private key is not 32 bytes".into()))?;
        let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
        let vkey = signed_note::new_ed25519_verifier_key(signer.name(), &public);
        Ok(Self {
            signer,
            text: text.to_owned(),
            vkey,
        })
    }

    /// The private key text (keep secret).
    pub fn to_text(&self) -> &str {
        &self.text
    }

    /// The verifier key to register with the master and give auditors.
    pub fn vkey(&self) -> &str {
        &self.vkey
    }

    /// The witness's name.
    pub fn name(&self) -> &str {
        self.signer.name()
    }

    /// The co-signature line (`— name base64\n`) over the checkpoint's note text.
    pub fn cosign(&self, checkpoint: &SignedCheckpoint) -> Result<String, CheckpointError> {
        let sig = self
            .signer
            .sign(checkpoint.text().as_bytes())
            .map_err(malformed)?;
        let line = NoteSignature::new(self.name().to_owned(), self.signer.key_id(), sig)
            .map_err(malformed)?;
        String::from_utf8(line.to_bytes()).map_err(|e| CheckpointError::Malformed(e.to_string()))
    }
}

impl std::fmt::Debug for WitnessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WitnessKey({})", self.vkey)
    }
}

/// The master's key as a note signer.
struct MasterSigner<'a> {
    name: String,
    id: u32,
    key: &'a SecretKey,
}

impl<'a> MasterSigner<'a> {
    fn new(key: &'a SecretKey) -> Self {
        let master = MasterId::from_key(key.public());
        let name = origin_for(&master);
        let id = signed_note::key_id(&name, &ed25519_pub(master.as_bytes()));
        Self { name, id, key }
    }
}

impl Signer for MasterSigner<'_> {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        Ok(self.key.sign(msg).0.to_vec())
    }
}

/// A master id as a note verifier.
struct MasterVerifier {
    name: String,
    id: u32,
    master: MasterId,
}

impl MasterVerifier {
    fn new(master: &MasterId) -> Self {
        let name = origin_for(master);
        let id = signed_note::key_id(&name, &ed25519_pub(master.as_bytes()));
        Self {
            name,
            id,
            master: *master,
        }
    }
}

impl Verifier for MasterVerifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = <[u8; 64]>::try_from(sig) else {
            return false;
        };
        self.master.verify(msg, &Hex(sig)).is_ok()
    }
}

fn ed25519_pub(key: &[u8; 32]) -> Vec<u8> {
    let mut out = vec![0x01];
    out.extend_from_slice(key);
    out
}

fn malformed(e: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Malformed(e.to_string())
}

/// Splits a note into its text (with final newline) and its signature lines.
fn split_note(note: &str) -> Result<(String, Vec<NoteSignature>), CheckpointError> {
    // Note::from_bytes checks size, characters and the blank line before the signatures.
    Note::from_bytes(note.as_bytes()).map_err(malformed)?;
    let (text, sigs) = note
        .rsplit_once("\n\n")
        .ok_or_else(|| CheckpointError::Malformed("no signature block".into()))?;
    let sigs = sigs
        .strip_suffix('\n')
        .unwrap_or(sigs)
        .split('\n')
        .map(|l| NoteSignature::from_bytes(l.as_bytes()).map_err(malformed))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((format!("{text}\n"), sigs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> (SecretKey, MasterId) {
        let key = SecretKey::from_seed(&[7; 32]);
        let id = MasterId::from_key(key.public());
        (key, id)
    }

    fn checkpoint(id: &MasterId, size: u64) -> Checkpoint {
        Checkpoint {
            origin: origin_for(id),
            size,
            root: crate::leaf_hash(&size.to_be_bytes()),
        }
    }

    #[test]
    fn a_signed_checkpoint_opens_under_its_master_only() {
        let (key, id) = master();
        let note = checkpoint(&id, 42).sign(&key).unwrap();
        assert!(note.starts_with(&format!("hearth-ledger/{id}\n42\n")));
        let opened = SignedCheckpoint::open(&note, &id).unwrap();
        assert_eq!(opened.checkpoint, checkpoint(&id, 42));
        assert_eq!(opened.note(), note);
        // the master's signature verifies with the standard verifier built from its vkey
        let v = StandardVerifier::new(&master_vkey(&id)).unwrap();
        let (text, sigs) = split_note(&note).unwrap();
        assert!(v.verify(text.as_bytes(), sigs[0].signature()));

        let other = MasterId::from_key(SecretKey::from_seed(&[8; 32]).public());
        assert!(matches!(
            SignedCheckpoint::open(&note, &other),
            Err(CheckpointError::Origin { .. })
        ));
        let tampered = note.replacen("\n42\n", "\n43\n", 1);
        assert_eq!(
            SignedCheckpoint::open(&tampered, &id),
            Err(CheckpointError::BadMasterSignature(43))
        );
        assert!(matches!(
            SignedCheckpoint::open("garbage", &id),
            Err(CheckpointError::Malformed(_))
        ));
        // signing a checkpoint of another origin is refused
        assert!(checkpoint(&other, 1).sign(&key).is_err());
    }

    #[test]
    fn cosignatures_are_checked_against_the_witness_keys_given() {
        let (key, id) = master();
        let note = checkpoint(&id, 9).sign(&key).unwrap();
        let mut cp = SignedCheckpoint::open(&note, &id).unwrap();
        let w1 = WitnessKey::from_seed("w1.example", &[1; 32]).unwrap();
        let w2 = WitnessKey::from_seed("w2.example", &[2; 32]).unwrap();
        assert_eq!(
            cp.add_cosignature(&w1.cosign(&cp).unwrap()).unwrap(),
            "w1.example"
        );
        cp.add_cosignature(&w2.cosign(&cp).unwrap()).unwrap();
        // a forged line under w1's name and id: take w2's signature bytes
        let reopened = SignedCheckpoint::open(&cp.note(), &id).unwrap();
        assert_eq!(reopened.cosignatures().len(), 2);
        let vkeys = [WitnessVkey::parse(w1.vkey()).unwrap()];
        let got = reopened.check_cosignatures(&vkeys);
        assert_eq!(got.valid, vec!["w1.example"]);
        assert_eq!(got.unknown, vec!["w2.example"]);
        // w1's line for another checkpoint, pasted under this one: known key, bad signature
        let other = SignedCheckpoint::open(&checkpoint(&id, 10).sign(&key).unwrap(), &id).unwrap();
        let mut bad = SignedCheckpoint::open(&note, &id).unwrap();
        bad.add_cosignature(&w1.cosign(&other).unwrap()).unwrap();
        let got = bad.check_cosignatures(&vkeys);
        assert_eq!(
            (got.valid.len(), got.invalid),
            (0, vec!["w1.example".to_owned()])
        );
    }

    #[test]
    fn witness_keys_round_trip_and_bad_ones_say_why() {
        // seeds whose base64 holds `+` and `/` round-trip too
        for i in 0..64u8 {
            let w = WitnessKey::from_seed("w", &[i.wrapping_mul(37); 32]).unwrap();
            assert_eq!(WitnessKey::parse(w.to_text()).unwrap().vkey(), w.vkey());
        }
        let w = WitnessKey::generate("witness-1").unwrap();
        let again = WitnessKey::parse(w.to_text()).unwrap();
        assert_eq!(again.vkey(), w.vkey());
        assert!(w.vkey().starts_with("witness-1+"));
        assert!(WitnessKey::generate("bad name").is_err());
        assert!(WitnessKey::parse("PRIVATE+KEY+x+00000000+AAAA").is_err());
        assert!(WitnessVkey::parse("nonsense").is_err());
        assert_eq!(WitnessVkey::parse(w.vkey()).unwrap().name(), "witness-1");
    }
}
