//! The backup format's golden vectors (`backup/vectors/backup-v1.json`, SPEC.md §17): for a
//! fixed key, each plaintext's object id, and sealed objects that must open to their plaintext
//! (one of them tampered, which must not). `HEARTH_BLESS=1` writes the file when it is missing;
//! a committed vector never changes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use hearth_backup::{BackupKey, ObjectKind, object_id, open_object, seal_object};
use serde_json::{Value, json};

const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn path() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors/backup-v1.json")
}

fn kind(s: &str) -> ObjectKind {
    match s {
        "chunk" => ObjectKind::Chunk,
        "snapshot" => ObjectKind::Snapshot,
        other => panic!("kind {other}"),
    }
}

fn generate() -> Value {
    let key = BackupKey::from_hex(KEY).unwrap();
    let manifest = br#"{"v":1,"created_ms":1796400000000,"entries":[{"path":"notes","type":"dir","mode":493},{"path":"notes/a.txt","type":"file","mode":420,"size":5,"chunks":[["<id of hello>",5]]}]}"#;
    let hello_id = object_id(&key, b"hello").to_string();
    let manifest = String::from_utf8(manifest.to_vec())
        .unwrap()
        .replace("<id of hello>", &hello_id);
    let mut objects = Vec::new();
    for (k, plain) in [
        ("chunk", b"hello".to_vec()),
        ("chunk", Vec::new()),
        ("chunk", b"Nubo keeps its data in Europe. ".repeat(64)),
        ("snapshot", manifest.into_bytes()),
    ] {
        let (id, sealed) = seal_object(&key, kind(k), &plain).unwrap();
        objects.push(json!({
            "kind": k,
            "plaintext_hex": hex::encode(&plain),
            "id": id.to_string(),
            "sealed_hex": hex::encode(&sealed),
        }));
    }
    let mut tampered = objects[0].clone();
    let mut sealed = hex::decode(tampered["sealed_hex"].as_str().unwrap()).unwrap();
    let last = sealed.len() - 1;
    sealed[last] ^= 1;
    tampered["sealed_hex"] = json!(hex::encode(sealed));
    json!({
        "description": "hearth-backup format 1 (SPEC.md §17): object ids and sealed objects for a fixed key",
        "key_hex": KEY,
        "objects": objects,
        "tampered": [tampered],
    })
}

#[test]
fn object_ids_and_sealed_objects_match_the_vectors() {
    let p = path();
    if !p.exists() {
        assert!(
            std::env::var_os("HEARTH_BLESS").is_some(),
            "{p:?} is missing: run with HEARTH_BLESS=1 once to write it"
        );
        std::fs::write(
            &p,
            serde_json::to_string_pretty(&generate()).unwrap() + "\n",
        )
        .unwrap();
    }
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    let key = BackupKey::from_hex(v["key_hex"].as_str().unwrap()).unwrap();
    let objects = v["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 4);
    for o in objects {
        let plain = hex::decode(o["plaintext_hex"].as_str().unwrap()).unwrap();
        let id = object_id(&key, &plain);
        assert_eq!(id.to_string(), o["id"].as_str().unwrap(), "{o}");
        let sealed = hex::decode(o["sealed_hex"].as_str().unwrap()).unwrap();
        let opened = open_object(
            &key,
            kind(o["kind"].as_str().unwrap()),
            &id,
            &sealed,
            1 << 20,
        )
        .unwrap();
        assert_eq!(opened, plain);
        // The same bytes under the other kind are refused (the kind is authenticated).
        let other = if o["kind"] == "chunk" {
            ObjectKind::Snapshot
        } else {
            ObjectKind::Chunk
        };
        assert!(open_object(&key, other, &id, &sealed, 1 << 20).is_err());
    }
    for o in v["tampered"].as_array().unwrap() {
        let id = o["id"].as_str().unwrap().parse().unwrap();
        let sealed = hex::decode(o["sealed_hex"].as_str().unwrap()).unwrap();
        assert!(
            open_object(
                &key,
                kind(o["kind"].as_str().unwrap()),
                &id,
                &sealed,
                1 << 20
            )
            .is_err()
        );
    }
    // A fresh seal differs (random nonce) but opens the same.
    let (id, a) = seal_object(&key, ObjectKind::Chunk, b"hello").unwrap();
    let (_, b) = seal_object(&key, ObjectKind::Chunk, b"hello").unwrap();
    assert_ne!(a, b);
    assert_eq!(
        open_object(&key, ObjectKind::Chunk, &id, &b, 16).unwrap(),
        b"hello"
    );
}
