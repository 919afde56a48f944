//! The signed recipe repository against the node's real verification path
//! (`TrustStore::refresh` then `verify_recipe`, exactly what the agent runs): a correctly signed
//! recipe verifies; rollback, freeze, mix-and-match, unlisted and oversized targets, tampered
//! metadata and signatures below threshold are each refused with a clear error; root rotation
//! works.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{Duration, Utc};
use hearth_protocol::Sha256;
use hearth_protocol::messages::state::RecipeRef;
use hearth_recipes::repo::build::build;
use hearth_recipes::repo::keys;
use hearth_recipes::repo::sign::{Expiry, sign};
use hearth_recipes::repo::trust::{DirTransport, TrustError, TrustStore, TrustedTargets};
use hearth_recipes::{VerifyError, verify_recipe};

const RECIPE: &str = r#"name = "hello"
version = "VERSION"
[[artifacts]]
name = "server"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
size = 0
executable = true
[run]
command = "{artifact:server}"
"#;

struct Repo {
    _tmp: tempfile::TempDir,
    keys: PathBuf,
    work: PathBuf,
    node: PathBuf,
}

impl Repo {
    async fn new(root_keys: usize, threshold: u64) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let keys = tmp.path().join("keys");
        keys::init(
            &keys,
            root_keys,
            threshold,
            Utc::now() + Duration::days(365),
        )
        .await
        .unwrap();
        let (work, node) = (tmp.path().join("work"), tmp.path().join("node"));
        Self {
            keys,
            work,
            node,
            _tmp: tmp,
        }
    }

    /// Stages recipe `hello` at `version` with an artifact of `content`; returns its reference.
    fn stage(&self, version: &str, content: &[u8]) -> RecipeRef {
        let dir = self.work.join("src").join(version);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("recipe.toml"), RECIPE.replace("VERSION", version)).unwrap();
        std::fs::write(dir.join("server"), content).unwrap();
        let built = build(&dir, &self.work, &BTreeMap::new()).unwrap();
        RecipeRef {
            name: built.name.parse().unwrap(),
            version: built.version,
            sha256: built.sha256,
        }
    }

    async fn sign(&self, timestamp_expires: chrono::DateTime<Utc>) {
        let later = Utc::now() + Duration::days(30);
        sign(
            &self.work,
            &self.keys,
            Expiry {
                targets: later,
                snapshot: later,
                timestamp: timestamp_expires,
            },
        )
        .await
        .unwrap();
    }

    fn metadata(&self) -> PathBuf {
        self.work.join("metadata")
    }

    fn store(&self) -> TrustStore {
        let store = TrustStore::open(&self.node).unwrap();
        if !store.has_root() {
            store
                .pin_root(&std::fs::read(self.keys.join("1.root.json")).unwrap())
                .unwrap();
        }
        store
    }

    async fn refresh(&self) -> Result<TrustedTargets, TrustError> {
        self.store().refresh(DirTransport(self.metadata())).await
    }

    fn recipe_bytes(&self, r: &RecipeRef) -> Vec<u8> {
        std::fs::read(
            self.work
                .join("targets/recipes")
                .join(r.name.as_str())
                .join(format!("{}.toml", r.version)),
        )
        .unwrap()
    }
}

/// The refusal of a `targets.json` that does not hash to what the snapshot lists.
fn assert_targets_hash_mismatch(e: &TrustError) {
    assert!(
        matches!(e, TrustError::HashMismatch { file, .. } if file == "hearth:/metadata/targets.json"),
        "{e}"
    );
}

fn week() -> chrono::DateTime<Utc> {
    Utc::now() + Duration::days(7)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[tokio::test]
async fn a_signed_recipe_verifies_and_unlisted_mixed_or_oversized_targets_do_not() {
    let repo = Repo::new(1, 1).await;
    let r = repo.stage("1.0.0", b"#!/bin/sh\necho hi\n");
    repo.sign(week()).await;
    let trusted = repo.refresh().await.unwrap();
    assert_eq!(trusted.versions, [1, 1, 1, 1]);
    let bytes = repo.recipe_bytes(&r);
    let v = verify_recipe(&bytes, &r, &trusted).unwrap();
    assert_eq!(v.recipe().artifacts.len(), 1);

    // Unlisted: a version the cooperative never signed.
    let mut unlisted = r.clone();
    unlisted.version = "6.6.6".into();
    let e = verify_recipe(&bytes, &unlisted, &trusted).unwrap_err();
    assert!(
        matches!(&e, VerifyError::Trust(TrustError::Unlisted(what)) if what == "recipe hello 6.6.6"),
        "{e}"
    );
    assert!(e.to_string().contains("not listed"), "{e}");

    // Mix-and-match: the master names other bytes under a signed name and version.
    let other = b"name = \"hello\"\nversion = \"1.0.0\"\n[run]\ncommand = \"/bin/sh\"\n";
    let mut mixed = r.clone();
    mixed.sha256 = Sha256::digest(other);
    let e = verify_recipe(other, &mixed, &trusted).unwrap_err();
    assert!(
        matches!(&e, VerifyError::Trust(TrustError::Mismatch { named, listed, .. })
            if *named == mixed.sha256 && *listed == r.sha256),
        "{e}"
    );

    // Oversized: more bytes than the listing (what a fetch limited to the listed length sees).
    let mut long = bytes.clone();
    long.extend_from_slice(b"\n# padding");
    let e = verify_recipe(&long, &r, &trusted).unwrap_err();
    assert!(
        matches!(&e, VerifyError::Trust(TrustError::RecipeLength { got, listed, .. })
            if *got == long.len() as u64 && *listed == bytes.len() as u64),
        "{e}"
    );
    assert!(
        e.to_string().contains("bytes, the signed targets list"),
        "{e}"
    );

    // An artifact whose recipe gives another size than the listing.
    let artifact = &v.recipe().artifacts[0];
    let e = trusted
        .artifact(&artifact.sha256, artifact.size + 1)
        .unwrap_err();
    assert!(
        matches!(&e, TrustError::ArtifactSize { listed, recipe, .. }
            if *listed == artifact.size && *recipe == artifact.size + 1),
        "{e}"
    );
    assert!(trusted.artifact(&artifact.sha256, artifact.size).is_ok());
}

#[tokio::test]
async fn rollback_freeze_and_tampering_are_refused() {
    let repo = Repo::new(1, 1).await;
    repo.stage("1.0.0", b"one");
    repo.sign(week()).await;
    let old = repo.work.join("old-metadata");
    copy_dir(&repo.metadata(), &old);
    repo.stage("1.1.0", b"two");
    repo.sign(week()).await;
    let trusted = repo.refresh().await.unwrap();
    assert_eq!(trusted.versions, [1, 2, 2, 2]);

    // Rollback: the master serves the older (validly signed) metadata again.
    copy_dir(&old, &repo.metadata());
    let e = repo.refresh().await.unwrap_err();
    eprintln!("refused: {e}");
    assert!(
        matches!(&e, TrustError::Rollback { had: 2, got: 1, .. }),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("when we had previously fetched version 2"),
        "{e}"
    );

    // Freeze: fresh signatures, but a timestamp that has expired.
    repo.sign(week()).await; // back to a good state, version 3
    repo.refresh().await.unwrap();
    repo.sign(Utc::now() - Duration::hours(1)).await;
    let e = repo.refresh().await.unwrap_err();
    eprintln!("refused: {e}");
    assert!(
        matches!(&e, TrustError::Expired { role } if role == "timestamp"),
        "{e}"
    );

    // Tampering: targets.json edited without re-signing.
    repo.sign(week()).await;
    repo.refresh().await.unwrap();
    let path = repo.metadata().join("targets.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let tampered = text.replacen("\"length\": 3", "\"length\": 4", 1);
    assert_ne!(text, tampered);
    std::fs::write(&path, tampered).unwrap();
    let e = repo.refresh().await.unwrap_err();
    eprintln!("refused: {e}");
    assert_targets_hash_mismatch(&e);
}

#[tokio::test]
async fn mix_and_match_of_metadata_versions_is_refused() {
    let repo = Repo::new(1, 1).await;
    repo.stage("1.0.0", b"one");
    repo.sign(week()).await;
    let old_targets = std::fs::read(repo.metadata().join("targets.json")).unwrap();
    repo.stage("1.1.0", b"two");
    repo.sign(week()).await;
    // A current timestamp and snapshot, with the targets file of the previous signing.
    std::fs::write(repo.metadata().join("targets.json"), old_targets).unwrap();
    let e = repo.refresh().await.unwrap_err();
    eprintln!("refused: {e}");
    assert_targets_hash_mismatch(&e);
}

#[tokio::test]
async fn signatures_below_threshold_are_refused_and_root_rotation_works() {
    let repo = Repo::new(3, 2).await;
    repo.stage("1.0.0", b"one");
    repo.sign(week()).await;
    repo.refresh().await.unwrap();

    // Targets metadata whose signatures were stripped: refused (the snapshot pins its hash).
    let path = repo.metadata().join("targets.json");
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    doc["signatures"] = serde_json::json!([]);
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let e = repo.refresh().await.unwrap_err();
    eprintln!("refused: {e}");
    assert_targets_hash_mismatch(&e);
    repo.sign(week()).await;
    repo.refresh().await.unwrap();

    // Root rotation to new keys (threshold 2 of 3 old, 2 of 3 new): the node follows it.
    keys::rotate_root(&repo.keys, 3, 2, Utc::now() + Duration::days(365))
        .await
        .unwrap();
    repo.sign(week()).await;
    let trusted = repo.refresh().await.unwrap();
    assert_eq!(trusted.versions[0], 2);

    // A root version 3 carrying only one signature from the version 2 keys: below threshold.
    keys::rotate_root(&repo.keys, 3, 2, Utc::now() + Duration::days(365))
        .await
        .unwrap();
    let v2: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.keys.join("2.root.json")).unwrap()).unwrap();
    let v2_root_keys: Vec<String> = v2["signed"]["roles"]["root"]["keyids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    let path = repo.keys.join("3.root.json");
    let mut v3: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let mut kept_old = 0;
    v3["signatures"].as_array_mut().unwrap().retain(|s| {
        let old = v2_root_keys.contains(&s["keyid"].as_str().unwrap().to_owned());
        if old {
            kept_old += 1;
        }
        !old || kept_old == 1
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&v3).unwrap()).unwrap();
    repo.sign(week()).await; // copies the weakened 3.root.json into the served metadata
    let e = repo.refresh().await.unwrap_err();
    eprintln!("refused: {e}");
    assert!(
        matches!(&e, TrustError::Threshold { role, threshold: 2, valid: 1 } if role == "root"),
        "{e}"
    );
}

#[tokio::test]
async fn a_node_pins_only_a_valid_root_once_and_needs_one() {
    let repo = Repo::new(1, 1).await;
    let store = TrustStore::open(&repo.node).unwrap();
    let e = store
        .refresh(DirTransport(repo.metadata()))
        .await
        .unwrap_err();
    assert!(matches!(e, TrustError::NoRoot), "{e}");
    let e = store.pin_root(b"{}").unwrap_err();
    assert!(matches!(e, TrustError::BadRoot(_)), "{e}");
    let root = std::fs::read(repo.keys.join("1.root.json")).unwrap();
    let mut forged: serde_json::Value = serde_json::from_slice(&root).unwrap();
    forged["signed"]["version"] = 7.into();
    let e = store
        .pin_root(&serde_json::to_vec(&forged).unwrap())
        .unwrap_err();
    assert!(matches!(e, TrustError::BadRoot(_)), "{e}");
    assert!(e.to_string().contains("not valid"), "{e}");
    assert_eq!(store.pin_root(&root).unwrap(), 1);
    let e = store.pin_root(&root).unwrap_err();
    assert!(
        matches!(e, TrustError::RootPinned),
        "a pinned root is never replaced: {e}"
    );
}
