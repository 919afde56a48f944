//! Keys and root metadata: `hearth recipe keys init` and `hearth recipe keys rotate-root`.
//!
//! A keys directory holds Ed25519 private keys as PKCS#8 files (mode 0600) — the root keys are
//! meant to be kept offline — and every signed root version:
//!
//! ```text
//! K/root-<version>-<i>.pk8     root keys of that root version
//! K/targets.pk8 K/snapshot.pk8 K/timestamp.pk8
//! K/<N>.root.json              each root version; K/root.json is the latest
//! ```
//!
//! A new root version must be signed by a threshold of the previous root's keys and of its own
//! (TUF 5.3.4); [`rotate_root`] signs with both.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::Ed25519KeyPair;
use chrono::{DateTime, Utc};
use tough::editor::signed::SignedRole;
use tough::key_source::{KeySource, LocalKeySource};
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::key::Key;
use tough::schema::{KeyHolder, RoleKeys, RoleType, Root, Signed};

use super::RepoError;

/// The non-root roles, each with one key of its own.
const ROLES: [(RoleType, &str); 3] = [
    (RoleType::Targets, "targets"),
    (RoleType::Snapshot, "snapshot"),
    (RoleType::Timestamp, "timestamp"),
];

/// Creates a keys directory: `root_keys` root keys with `threshold`, one key per other role, and
/// `1.root.json` signed by all root keys. Refuses a directory that already has a root.
pub async fn init(
    dir: &Path,
    root_keys: usize,
    threshold: u64,
    expires: DateTime<Utc>,
) -> Result<PathBuf, RepoError> {
    if dir.join("root.json").exists() {
        return Err(RepoError::Invalid(format!(
            "{} already holds a root; use `hearth recipe keys rotate-root` to change it",
            dir.display()
        )));
    }
    let threshold = check_threshold(root_keys, threshold)?;
    std::fs::create_dir_all(dir).map_err(RepoError::io(dir))?;
    let root_paths = (1..=root_keys)
        .map(|i| new_key(&dir.join(format!("root-1-{i}.pk8"))))
        .collect::<Result<Vec<_>, _>>()?;
    let mut role_paths = Vec::new();
    for (role, file) in ROLES {
        role_paths.push((role, new_key(&dir.join(format!("{file}.pk8")))?));
    }
    let root = root_document(1, expires, &root_paths, threshold, &role_paths).await?;
    let signed = sign_root(&root, &root, &sources(&root_paths)).await?;
    write_root(dir, &signed)
}

/// Adds root version N+1 with `root_keys` new root keys and `threshold`, signed by the current
/// root keys and the new ones. Returns the new version.
pub async fn rotate_root(
    dir: &Path,
    root_keys: usize,
    threshold: u64,
    expires: DateTime<Utc>,
) -> Result<u64, RepoError> {
    let threshold = check_threshold(root_keys, threshold)?;
    let current = read_root(&dir.join("root.json"))?;
    let version = current.signed.version.get() + 1;
    let old_paths: Vec<PathBuf> = (1..)
        .map(|i| dir.join(format!("root-{}-{i}.pk8", current.signed.version)))
        .take_while(|p| p.exists())
        .collect();
    let new_paths = (1..=root_keys)
        .map(|i| new_key(&dir.join(format!("root-{version}-{i}.pk8"))))
        .collect::<Result<Vec<_>, _>>()?;
    let role_paths: Vec<(RoleType, PathBuf)> = ROLES
        .iter()
        .map(|(role, file)| (*role, dir.join(format!("{file}.pk8"))))
        .collect();
    let root = root_document(version, expires, &new_paths, threshold, &role_paths).await?;
    let signed = sign_root(&root, &root, &sources(&new_paths)).await?;
    let by_old = sign_root(&root, &current.signed, &sources(&old_paths)).await?;
    let signed = signed
        .add_old_signatures(by_old.signed().signatures.clone())
        .map_err(RepoError::tuf)?;
    write_root(dir, &signed)?;
    Ok(version)
}

/// Signs `root` with those of `keys` that `authority` lists for the root role.
pub async fn sign_root(
    root: &Root,
    authority: &Root,
    keys: &[Box<dyn KeySource>],
) -> Result<SignedRole<Root>, RepoError> {
    SignedRole::new(
        root.clone(),
        &KeyHolder::Root(authority.clone()),
        keys,
        &SystemRandom::new(),
    )
    .await
    .map_err(RepoError::tuf)
}

/// Key sources for key files.
pub fn sources(paths: &[PathBuf]) -> Vec<Box<dyn KeySource>> {
    paths
        .iter()
        .map(|p| Box::new(LocalKeySource { path: p.clone() }) as Box<dyn KeySource>)
        .collect()
}

/// Reads a signed root document.
pub fn read_root(path: &Path) -> Result<Signed<Root>, RepoError> {
    let bytes = std::fs::read(path).map_err(RepoError::io(path))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| RepoError::Invalid(format!("{}: not a root document: {e}", path.display())))
}

fn check_threshold(keys: usize, threshold: u64) -> Result<NonZeroU64, RepoError> {
    match NonZeroU64::new(threshold) {
        Some(t) if keys >= 1 && threshold <= keys as u64 => Ok(t),
        _ => Err(RepoError::Invalid(format!(
            "a threshold of {threshold} with {keys} root keys: it must be between 1 and the number of keys"
        ))),
    }
}

/// Generates an Ed25519 key into `path` (PKCS#8, mode 0600) and returns the path.
fn new_key(path: &Path) -> Result<PathBuf, RepoError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(RepoError::tuf)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(RepoError::io(path))?;
    file.write_all(doc.as_ref())
        .and_then(|()| file.sync_all())
        .map_err(RepoError::io(path))?;
    Ok(path.to_owned())
}

async fn public_key(path: &Path) -> Result<(Decoded<Hex>, Key), RepoError> {
    let source = LocalKeySource {
        path: path.to_owned(),
    };
    let key = source.as_sign().await.map_err(RepoError::tuf)?.tuf_key();
    Ok((key.key_id().map_err(RepoError::tuf)?, key))
}

async fn root_document(
    version: u64,
    expires: DateTime<Utc>,
    root_paths: &[PathBuf],
    threshold: NonZeroU64,
    role_paths: &[(RoleType, PathBuf)],
) -> Result<Root, RepoError> {
    let mut keys = HashMap::new();
    let mut roles = HashMap::new();
    let mut root_ids = Vec::new();
    for p in root_paths {
        let (id, key) = public_key(p).await?;
        root_ids.push(id.clone());
        keys.insert(id, key);
    }
    roles.insert(RoleType::Root, role_keys(root_ids, threshold));
    for (role, p) in role_paths {
        let (id, key) = public_key(p).await?;
        keys.insert(id.clone(), key);
        roles.insert(*role, role_keys(vec![id], NonZeroU64::MIN));
    }
    Ok(Root {
        spec_version: "1.0.0".into(),
        consistent_snapshot: false,
        version: NonZeroU64::new(version)
            .ok_or_else(|| RepoError::Invalid("root version 0".into()))?,
        expires: super::whole_seconds(expires),
        keys,
        roles,
        _extra: HashMap::new(),
    })
}

fn role_keys(keyids: Vec<Decoded<Hex>>, threshold: NonZeroU64) -> RoleKeys {
    RoleKeys {
        keyids,
        threshold,
        _extra: HashMap::new(),
    }
}

fn write_root(dir: &Path, signed: &SignedRole<Root>) -> Result<PathBuf, RepoError> {
    let version = signed.signed().signed.version;
    let versioned = dir.join(format!("{version}.root.json"));
    std::fs::write(&versioned, signed.buffer()).map_err(RepoError::io(&versioned))?;
    let latest = dir.join("root.json");
    let tmp = dir.join("root.json.tmp");
    std::fs::write(&tmp, signed.buffer()).map_err(RepoError::io(&tmp))?;
    std::fs::rename(&tmp, &latest).map_err(RepoError::io(&latest))?;
    Ok(latest)
}
