//! Snapshots and restores through the public interface, on real files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;

use hearth_backup::{
    BackupError, BackupKey, Chunking, DirStore, EntryKind, ObjectKind, ObjectStore, restore,
    snapshot,
};

/// Incompressible, deterministic bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn tree(root: &Path) {
    std::fs::create_dir_all(root.join("objects/ab")).unwrap();
    std::fs::write(root.join("objects/ab/one"), noise(3 << 20, 1)).unwrap();
    std::fs::write(
        root.join("objects/ab/two"),
        b"SECRET-MARKER the members' notes".repeat(4000),
    )
    .unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    std::os::unix::fs::symlink("objects/ab/one", root.join("latest")).unwrap();
}

fn same(a: &Path, b: &Path) {
    for rel in ["objects/ab/one", "objects/ab/two", "empty"] {
        assert_eq!(
            std::fs::read(a.join(rel)).unwrap(),
            std::fs::read(b.join(rel)).unwrap(),
            "{rel}"
        );
    }
    assert_eq!(
        std::fs::read_link(b.join("latest")).unwrap(),
        Path::new("objects/ab/one")
    );
}

#[test]
fn a_snapshot_restores_byte_for_byte_into_a_new_directory() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    tree(&data);
    let store = DirStore::new(t.path().join("store"));
    let key = BackupKey::generate();
    let (id, manifest, stats) =
        snapshot(&data, &key, &store, None, 1_000, Chunking::default()).unwrap();
    assert_eq!(stats.files, 3);
    assert!(stats.new_chunks >= 2 && stats.new_chunks == stats.chunks - dup(&manifest));
    let target = t.path().join("restored");
    let r = restore(&key, &store, &id, &target).unwrap();
    assert_eq!(r.files, 3);
    same(&data, &target);
    // A second restore into a directory that holds something is refused.
    assert!(matches!(
        restore(&key, &store, &id, &target),
        Err(BackupError::TargetNotEmpty(_))
    ));
}

/// Chunks named twice in a manifest (stored once).
fn dup(m: &hearth_backup::Manifest) -> u64 {
    let all: Vec<_> = m.chunks().map(|(id, _)| *id).collect();
    let set: std::collections::HashSet<_> = all.iter().collect();
    (all.len() - set.len()) as u64
}

#[test]
fn a_snapshot_after_a_small_change_stores_only_the_changed_chunks() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let size = 16 << 20;
    let mut bytes = noise(size, 7);
    std::fs::write(data.join("db"), &bytes).unwrap();
    let store = DirStore::new(t.path().join("store"));
    let key = BackupKey::generate();
    let (first, _, s1) = snapshot(&data, &key, &store, None, 1, Chunking::default()).unwrap();
    assert!(s1.new_bytes as usize > size, "incompressible: {s1:?}");
    // 1% of the bytes rewritten in one place, and 1 KiB inserted elsewhere.
    let at = size / 3;
    bytes[at..at + size / 100].copy_from_slice(&noise(size / 100, 8));
    bytes.splice(size / 2..size / 2, noise(1024, 9));
    std::fs::write(data.join("db"), &bytes).unwrap();
    let (second, m2, s2) =
        snapshot(&data, &key, &store, Some(first), 2, Chunking::default()).unwrap();
    assert_eq!(m2.parent, Some(first));
    let share = s2.new_bytes as f64 / size as f64;
    assert!(share < 0.03, "{:.2}% stored again: {s2:?}", share * 100.0);
    let target = t.path().join("restored");
    restore(&key, &store, &second, &target).unwrap();
    assert_eq!(std::fs::read(target.join("db")).unwrap(), bytes);
}

#[test]
fn the_hosting_home_holds_no_plaintext_and_a_wrong_key_opens_nothing() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    tree(&data);
    let store_dir = t.path().join("store");
    let store = DirStore::new(&store_dir);
    let key = BackupKey::generate();
    let (id, _, _) = snapshot(&data, &key, &store, None, 1, Chunking::default()).unwrap();
    let mut seen = 0;
    for kind in ["chunks", "snapshots"] {
        for f in std::fs::read_dir(store_dir.join(kind)).unwrap() {
            let bytes = std::fs::read(f.unwrap().path()).unwrap();
            seen += 1;
            for needle in [&b"SECRET-MARKER"[..], b"objects/ab", b"latest"] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "plaintext {:?} in the store",
                    String::from_utf8_lossy(needle)
                );
            }
        }
    }
    assert!(seen >= 3);
    let other = BackupKey::generate();
    assert!(matches!(
        restore(&other, &store, &id, &t.path().join("r")),
        Err(BackupError::Tampered {
            kind: "snapshot",
            ..
        })
    ));
    assert!(!t.path().join("r").exists());
}

#[test]
fn a_tampered_chunk_is_refused_and_nothing_is_left_in_place() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    tree(&data);
    let store = DirStore::new(t.path().join("store"));
    let key = BackupKey::generate();
    let (id, manifest, _) = snapshot(&data, &key, &store, None, 1, Chunking::default()).unwrap();
    let victim = manifest
        .entries
        .iter()
        .find_map(|e| match &e.kind {
            EntryKind::File { chunks, .. } if !chunks.is_empty() => {
                Some(chunks[chunks.len() / 2].0)
            }
            _ => None,
        })
        .unwrap();
    let path = store.path(ObjectKind::Chunk, &victim);
    let mut sealed = std::fs::read(&path).unwrap();
    let mid = sealed.len() / 2;
    sealed[mid] ^= 0x40;
    std::fs::write(&path, &sealed).unwrap();
    let target = t.path().join("restored");
    match restore(&key, &store, &id, &target) {
        Err(BackupError::Tampered { kind, id }) => {
            assert_eq!(kind, "chunk");
            assert_eq!(id, victim.to_string());
        }
        other => panic!("a tampered chunk was not refused: {other:?}"),
    }
    assert!(!target.exists(), "a failed restore left {target:?}");
    let leftovers: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".restore."))
        .collect();
    assert!(leftovers.is_empty(), "staging left behind");
    // A chunk swapped for another (valid) one of the same deployment is refused too: its
    // associated data names the id it was sealed under.
    let other = manifest
        .chunks()
        .map(|(id, _)| *id)
        .find(|c| *c != victim)
        .unwrap();
    let good = store.get(ObjectKind::Chunk, &other).unwrap().unwrap();
    store.put(ObjectKind::Chunk, &victim, &good).unwrap();
    store.sync().unwrap();
    assert!(matches!(
        restore(&key, &store, &id, &target),
        Err(BackupError::Tampered { kind: "chunk", .. })
    ));
    // A chunk that is missing says which.
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(
        restore(&key, &store, &id, &target),
        Err(BackupError::Missing { kind: "chunk", .. })
    ));
}

#[test]
fn keys_round_trip_as_hex_and_bad_ones_are_refused() {
    let k = BackupKey::generate();
    assert_eq!(BackupKey::from_hex(&k.to_hex()).unwrap(), k);
    assert!(matches!(
        BackupKey::from_hex("00"),
        Err(BackupError::BadKey)
    ));
    assert!(matches!(
        BackupKey::from_hex(&"zz".repeat(32)),
        Err(BackupError::BadKey)
    ));
    assert_eq!(format!("{k:?}"), "BackupKey(…)");
}

#[test]
fn objects_are_visible_only_once_synced_and_a_crash_before_leaves_none() {
    let t = tempfile::tempdir().unwrap();
    let key = BackupKey::generate();
    let (id, sealed) = hearth_backup::seal_object(&key, ObjectKind::Chunk, b"data").unwrap();
    let store = DirStore::new(t.path());
    store.put(ObjectKind::Chunk, &id, &sealed).unwrap();
    assert!(store.has(ObjectKind::Chunk, &id).unwrap());
    assert!(!store.path(ObjectKind::Chunk, &id).exists());
    // The process dies before `sync`: a new store does not trust what it left.
    drop(store);
    let reopened = DirStore::new(t.path());
    assert!(!reopened.has(ObjectKind::Chunk, &id).unwrap());
    reopened.put(ObjectKind::Chunk, &id, &sealed).unwrap();
    reopened.sync().unwrap();
    let again = DirStore::new(t.path());
    assert_eq!(
        again.get(ObjectKind::Chunk, &id).unwrap().as_deref(),
        Some(&sealed[..])
    );
}
