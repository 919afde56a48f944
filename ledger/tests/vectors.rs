//! The ledger's golden vectors (`ledger/vectors/ledger-v1.json`, SPEC.md §15): every value is
//! recomputed from the file's inputs (entry lines, seeds) with this crate and must match; the
//! committed file must not change (regenerate with `cargo run -p hearth-ledger --example
//! gen_ledger_vectors -- ledger/vectors` only for a new vector, never to change one).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use hearth_ledger::checkpoint::{
    Checkpoint, SignedCheckpoint, WitnessKey, master_vkey, origin_for,
};
use hearth_ledger::{
    ConsistencyProof, Entry, InclusionProof, Tree, VerifyOptions, WitnessVkey, leaf_hash, verify,
    verify_consistency, verify_inclusion,
};
use hearth_protocol::{MasterId, SecretKey};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/vectors/ledger-v1.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn seed(v: &Value) -> [u8; 32] {
    let s = v.as_str().unwrap();
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

#[test]
fn entries_tree_and_proofs() {
    let v = vectors();
    let mut tree = Tree::new();
    for e in v["entries"].as_array().unwrap() {
        let line = e["line"].as_str().unwrap().as_bytes();
        assert_eq!(
            leaf_hash(line).to_string(),
            e["leaf_hash"].as_str().unwrap()
        );
        let entry = Entry::parse(line).unwrap();
        assert_eq!(entry.seq, tree.size());
        assert_eq!(
            entry.to_line(),
            line,
            "entry lines are serde_json's compact output"
        );
        tree.append(leaf_hash(line));
    }
    assert_eq!(tree.size(), 7);
    let roots: Vec<String> = (0..=7).map(|s| tree.root(s).unwrap().to_string()).collect();
    assert_eq!(
        roots,
        serde_json::from_value::<Vec<String>>(v["tree"]["roots"].clone()).unwrap()
    );
    let frontier: Vec<String> = tree
        .frontier(7)
        .unwrap()
        .hashes()
        .iter()
        .map(|h| h.to_string())
        .collect();
    assert_eq!(
        frontier,
        serde_json::from_value::<Vec<String>>(v["tree"]["frontier_at_7"].clone()).unwrap()
    );
    for p in v["inclusion"].as_array().unwrap() {
        let want: InclusionProof = serde_json::from_value(p.clone()).unwrap();
        let got = tree.inclusion(want.seq, want.size).unwrap();
        assert_eq!(serde_json::to_value(&got).unwrap(), *p);
        verify_inclusion(&want, &want.leaf_hash, &tree.root(want.size).unwrap()).unwrap();
    }
    for p in v["consistency"].as_array().unwrap() {
        let want: ConsistencyProof = serde_json::from_value(p.clone()).unwrap();
        let got = tree.consistency(want.from, want.to).unwrap();
        assert_eq!(serde_json::to_value(&got).unwrap(), *p);
        verify_consistency(
            &want,
            &tree.root(want.from).unwrap(),
            &tree.root(want.to).unwrap(),
        )
        .unwrap();
    }
}

#[test]
fn checkpoint_cosignature_and_export() {
    let v = vectors();
    let c = &v["checkpoint"];
    let key = SecretKey::from_seed(&seed(&c["master_seed"]));
    let master = MasterId::from_key(key.public());
    assert_eq!(master.to_string(), c["master"].as_str().unwrap());
    assert_eq!(master_vkey(&master), c["vkey"].as_str().unwrap());
    let mut tree = Tree::new();
    for e in v["entries"].as_array().unwrap() {
        tree.append(leaf_hash(e["line"].as_str().unwrap().as_bytes()));
    }
    let cp = Checkpoint {
        origin: origin_for(&master),
        size: 7,
        root: tree.root(7).unwrap(),
    };
    let note = cp.sign(&key).unwrap();
    assert_eq!(
        note,
        c["note"].as_str().unwrap(),
        "Ed25519 signatures are deterministic"
    );
    let mut signed = SignedCheckpoint::open(&note, &master).unwrap();

    let w = &v["cosignature"];
    let witness =
        WitnessKey::from_seed(w["name"].as_str().unwrap(), &seed(&w["witness_seed"])).unwrap();
    assert_eq!(witness.to_text(), w["skey"].as_str().unwrap());
    assert_eq!(witness.vkey(), w["vkey"].as_str().unwrap());
    let line = witness.cosign(&signed).unwrap();
    assert_eq!(line, w["line"].as_str().unwrap());
    signed.add_cosignature(&line).unwrap();
    assert_eq!(signed.note(), w["note"].as_str().unwrap());

    let opts = VerifyOptions {
        master: Some(master),
        witnesses: vec![WitnessVkey::parse(witness.vkey()).unwrap()],
        signatures: true,
    };
    let mut books = hearth_ledger::books::Books::new();
    let r = verify(
        v["export"].as_str().unwrap().as_bytes(),
        &opts,
        Some(&mut books),
    );
    assert!(r.ok(), "{:?} {:?}", r.failure, r.problems);
    assert_eq!(
        (
            r.entries,
            r.checkpoints,
            r.cosignatures.get("witness.example")
        ),
        (7, 1, Some(&1))
    );
}
