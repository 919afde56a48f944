//! A root document that is wrong in a way tough reports with internals is told in a sentence.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use hearth_recipes::repo::keys;
use hearth_recipes::repo::trust::check_root;

#[tokio::test]
async fn a_root_signed_twice_by_one_key_is_refused_with_a_sentence() {
    let tmp = tempfile::tempdir().unwrap();
    let expires = chrono::Utc::now() + chrono::Duration::days(365);
    let root = keys::init(tmp.path(), 1, 1, expires).await.unwrap();
    let bytes = std::fs::read(&root).unwrap();
    assert!(check_root(&bytes).is_ok());
    let mut doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let first = doc["signatures"][0].clone();
    doc["signatures"].as_array_mut().unwrap().push(first);
    let e = check_root(&serde_json::to_vec(&doc).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("two signatures by the same key"), "{e}");
    assert!(!e.contains("Decoded"), "{e}");
    assert!(!e.contains("  "), "one sentence, no runs of spaces: {e}");
}
