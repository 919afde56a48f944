//! End-to-end test harness: builds and starts the real binaries on loopback (port 0), talks to
//! them through their public interfaces, and kills them when dropped.
//!
//! Every wait is a bounded poll; nothing sleeps to "let things settle".
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

pub mod browser;
pub mod deploy;
pub mod gateway;
pub mod load;
pub mod load_http;
pub mod master;
pub mod netns;
pub mod node;
pub mod pg;
pub mod procstat;
pub mod recipes;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// Path of a workspace binary, built (once per test process) by `cargo build`; or taken from
/// `HEARTH_BIN_DIR` as is (benchmarks point it at release binaries).
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        if let Some(dir) = std::env::var_os("HEARTH_BIN_DIR") {
            return PathBuf::from(dir);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let status = std::process::Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "--bins",
                "-p",
                "hearth-master",
                "-p",
                "hearth-node-agent",
                "-p",
                "hearth-catalogue",
                "-p",
                "hearth-cli",
                "-p",
                "hearth-gateway",
                "--manifest-path",
            ])
            .arg(&manifest)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the binaries failed");
        // target/debug/deps/this-test → target/debug
        let exe = std::env::current_exe().expect("current exe");
        exe.parent()
            .and_then(|p| p.parent())
            .expect("target dir")
            .to_owned()
    });
    dir.join(name)
}

/// Polls `check` every 25 ms until it returns `Some`, for at most `limit`.
pub async fn eventually<T>(
    limit: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits (at most 10 s, polling every 25 ms) until each file `names` in `dir` holds a
/// `HOST:PORT` address, as the daemons publish the ports they bound; returns them in order.
pub fn published_addrs<const N: usize>(
    dir: &std::path::Path,
    names: [&str; N],
) -> [std::net::SocketAddr; N] {
    let read = |name: &str| -> Option<std::net::SocketAddr> {
        std::fs::read_to_string(dir.join(name))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    for _ in 0..400 {
        let addrs: Vec<_> = names.iter().map_while(|n| read(n)).collect();
        if let Ok(addrs) = <[std::net::SocketAddr; N]>::try_from(addrs) {
            return addrs;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{} did not publish {names:?} within 10 s", dir.display());
}

/// A finished command's stdout then stderr, as text (for assertion messages and `contains`).
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
