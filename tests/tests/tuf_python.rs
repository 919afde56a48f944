//! The signed repository is standard TUF: a repository built, signed and published by the real
//! tooling (`hearth recipe keys init`, `build`, `sign`, `publish`), then rotated to a second root
//! and signed and published again, is verified by python-tuf, the TUF reference implementation
//! (`tests/python/verify_tuf.py`), from the first root as a node pins it. python-tuf must be
//! installed (`pip install tuf`; `.ci/run` installs it): without it this test fails, it never
//! passes by skipping.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::path::{Path, PathBuf};
use std::process::Command;

use hearth_protocol::Sha256;
use hearth_tests::bin;
use hearth_tests::master::MasterProc;
use hearth_tests::recipes::{rotate_root, sign_and_publish, static_site};

fn verifier() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python/verify_tuf.py")
}

/// Runs the python-tuf verifier; panics with its output unless it accepts the repository.
fn python_tuf_accepts(root: &Path, metadata: &Path, targets: &Path) -> String {
    let out = Command::new("python3")
        .arg(verifier())
        .arg("--root")
        .arg(root)
        .arg("--metadata")
        .arg(metadata)
        .arg("--targets")
        .arg(targets)
        .output()
        .expect("run python3 (python-tuf's verifier needs Python 3 with `pip install tuf`)");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "python-tuf did not accept the published repository ({}):\n{stdout}{stderr}",
        out.status
    );
    stdout.into_owned()
}

#[tokio::test]
async fn python_tuf_accepts_a_published_repository_across_a_root_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), &[]);
    let server = bin("hearth-static");
    let bytes = std::fs::read(&server).unwrap();
    let recipe = static_site(&Sha256::digest(&bytes), bytes.len() as u64);
    sign_and_publish(&m, &recipe, &[("server", &server)]);

    // Where `sign_and_publish` keeps the cooperative's keys and work directory.
    let base = m.dir.with_extension("recipes");
    let (keys, work) = (base.join("keys"), base.join("work"));
    let published = m.dir.join("repository");
    let first_root = keys.join("1.root.json");
    let out = python_tuf_accepts(&first_root, &published, &work.join("targets"));
    assert!(out.contains("ok targets version 1"), "{out}");
    assert!(
        out.contains("ok target recipes/static-site/1.0.0.toml"),
        "{out}"
    );

    // A root rotation, then a second version signed under the new root.
    rotate_root(&m, &keys);
    let next = recipe.replace("version = \"1.0.0\"", "version = \"1.1.0\"");
    sign_and_publish(&m, &next, &[("server", &server)]);
    let out = python_tuf_accepts(&first_root, &published, &work.join("targets"));
    assert!(out.contains("ok root version 2"), "{out}");
    assert!(out.contains("ok targets version 2"), "{out}");
    assert!(
        out.contains("ok target recipes/static-site/1.1.0.toml"),
        "{out}"
    );
}
