//! The service's own tests: concurrent durable appends, replay after reopen, checkpoints
//! checked at open, co-signatures from registered witnesses only.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use hearth_ledger::{Body, Policy};
use hearth_protocol::SecretKey;

use super::*;

fn policy(n: u64) -> Body {
    Body::Policy(Policy {
        fibre_credit_cents: n,
        ..Policy::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_all_land_in_one_chain_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate();
    let ledger = Arc::new(Ledger::open(dir.path(), &key).unwrap());
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let l = ledger.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..25u64 {
                seqs.extend(
                    l.append(vec![policy(t * 100 + i), policy(1)])
                        .await
                        .unwrap(),
                );
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let seqs = t.await.unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one caller's entries keep their order"
        );
        all.extend(seqs);
    }
    all.sort_unstable();
    assert_eq!(all, (0..800).collect::<Vec<_>>());
    assert_eq!(ledger.size(), 800);
    let text = ledger.entries(0, 10_000).unwrap();
    assert_eq!(text.iter().filter(|b| **b == b'\n').count(), 800);
    assert_eq!(
        ledger
            .entries(798, 10)
            .unwrap()
            .split(|b| *b == b'\n')
            .count(),
        3
    );
    assert_eq!(ledger.sign_checkpoint().unwrap(), Some(800));
    assert_eq!(
        ledger.sign_checkpoint().unwrap(),
        None,
        "no growth, no checkpoint"
    );
    let root = ledger.root(800).unwrap();
    let line = ledger.line(5).unwrap();
    ledger.close();
    drop(ledger);

    let ledger = Ledger::open(dir.path(), &key).unwrap();
    assert_eq!(ledger.size(), 800);
    assert_eq!(ledger.root(800).unwrap(), root);
    assert_eq!(ledger.line(5).unwrap(), line);
    assert_eq!(ledger.append(vec![policy(7)]).await.unwrap(), vec![800]);
    let proof = ledger.inclusion(5, 801).unwrap();
    assert_eq!(proof.leaf_hash, hearth_ledger::leaf_hash(&line));
    assert!(ledger.entries(802, 1).is_err());
    assert!(ledger.consistency(800, 802).is_err());
    let cp = ledger.checkpoint().unwrap();
    assert_eq!(cp.size, 800);
    assert!(
        cp.note
            .starts_with(&format!("{}\n800\n", ledger.shared.key.origin()))
    );
}

#[tokio::test]
async fn a_log_rewritten_below_a_checkpoint_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate();
    {
        let ledger = Ledger::open(dir.path(), &key).unwrap();
        for i in 0..5 {
            ledger.append(vec![policy(i)]).await.unwrap();
        }
        ledger.close();
    }
    // A consistent rewrite: entry 1 changed and every later line re-chained.
    let path = dir.path().join("entries.log");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut prev = hearth_protocol::Hex([0u8; 32]);
    let mut out = String::new();
    for line in text.lines() {
        let mut e = hearth_ledger::Entry::parse(line.as_bytes()).unwrap();
        if e.seq == 1 {
            e.body = policy(999);
        }
        e.prev = prev;
        let l = e.to_line();
        prev = hearth_ledger::leaf_hash(&l);
        out.push_str(std::str::from_utf8(&l).unwrap());
        out.push('\n');
    }
    std::fs::write(&path, out).unwrap();
    let e = Ledger::open(dir.path(), &key).unwrap_err().to_string();
    assert!(e.contains("does not match the checkpoint of size 5"), "{e}");
    // A torn tail alone is cut, not refused.
    std::fs::write(&path, &text).unwrap();
    let mut torn = text.clone().into_bytes();
    torn.extend_from_slice(b"{\"v\":1,\"seq\":5");
    std::fs::write(&path, &torn).unwrap();
    let ledger = Ledger::open(dir.path(), &key).unwrap();
    assert_eq!(ledger.size(), 5);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}

#[tokio::test]
async fn only_registered_witnesses_cosign_checkpoints_the_master_signed() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), &SecretKey::generate()).unwrap();
    ledger.append(vec![policy(1)]).await.unwrap();
    ledger.sign_checkpoint().unwrap();
    let cp = ledger.checkpoint().unwrap();
    let signed = ledger.shared.key.open(&cp.note).unwrap();
    let wkey = hearth_ledger::checkpoint::WitnessKey::generate("w1").unwrap();
    let cosign = |k: &hearth_ledger::checkpoint::WitnessKey| {
        format!(
            "{}\n{}\n",
            signed.text(),
            k.cosign(&signed).unwrap().trim_end()
        )
    };
    let cosigned = cosign(&wkey);
    let e = ledger.add_cosignature(&cosigned).unwrap_err();
    assert!(matches!(e, LedgerError::UnknownWitness(_)), "{e}");
    ledger
        .add_witness(Witness {
            name: "w1".into(),
            vkey: wkey.vkey().to_owned(),
        })
        .unwrap();
    assert!(ledger.add_cosignature(&cosigned).unwrap());
    assert!(
        !ledger.add_cosignature(&cosigned).unwrap(),
        "the same one again"
    );
    assert!(
        ledger
            .checkpoint()
            .unwrap()
            .note
            .ends_with(&format!("{}\n", cosigned.lines().last().unwrap()))
    );
    let forged = cosigned.replace("\n1\n", "\n2\n");
    let e = ledger.add_cosignature(&forged).unwrap_err();
    assert!(matches!(e, LedgerError::NoSuchCheckpoint(_)), "{e}");
    let other = cosign(&hearth_ledger::checkpoint::WitnessKey::generate("w1").unwrap());
    let e = ledger.add_cosignature(&other).unwrap_err();
    assert!(matches!(e, LedgerError::BadCosignature(_)), "{e}");
}
