//! What the CLI reads from a master's data directory: the API address and the admin token, and
//! a message naming the file when the master is not running.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use hearth_cli::master_dir::MasterDir;

#[test]
fn reads_the_address_and_token_a_running_master_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = MasterDir::new(tmp.path());
    let err = dir.url().unwrap_err().to_string();
    assert!(
        err.contains("http.addr") && err.contains("is the master running?"),
        "{err}"
    );
    std::fs::write(tmp.path().join("http.addr"), "127.0.0.1:7080\n").unwrap();
    std::fs::write(
        tmp.path().join("admin.token"),
        format!("{}\n", "ab".repeat(32)),
    )
    .unwrap();
    assert_eq!(dir.url().unwrap(), "http://127.0.0.1:7080");
    assert_eq!(dir.admin_token().unwrap(), "ab".repeat(32));
}
