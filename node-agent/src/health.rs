//! Health checks: HTTP GET (2xx), TCP connect, or a command exiting 0. Each bounded by a timeout.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A resolved health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// `GET path` on `addr`.
    Http { addr: SocketAddr, path: String },
    /// Connect to `addr`.
    Tcp { addr: SocketAddr },
    /// Run `argv` in `dir`, as the instance's user when it has one.
    Command {
        argv: Vec<String>,
        dir: PathBuf,
        run_as: Option<crate::users::RunAs>,
    },
}

/// Time a check may take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Runs the check; true when healthy.
pub async fn run(check: &Check) -> bool {
    tokio::time::timeout(TIMEOUT, run_inner(check))
        .await
        .unwrap_or(false)
}

async fn run_inner(check: &Check) -> bool {
    match check {
        Check::Tcp { addr } => tokio::net::TcpStream::connect(addr).await.is_ok(),
        Check::Http { addr, path } => http_get(*addr, path)
            .await
            .is_some_and(|s| (200..300).contains(&s)),
        Check::Command { argv, dir, run_as } => {
            let Some((program, args)) = argv.split_first() else {
                return false;
            };
            let mut command = tokio::process::Command::new(program);
            if let Some(r) = run_as {
                command.uid(r.uid).gid(r.gid);
            }
            command
                .args(args)
                .current_dir(dir)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .status()
                .await
                .is_ok_and(|s| s.success())
        }
    }
}

/// Minimal HTTP/1.0 GET returning the status code.
async fn http_get(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: hearth-node\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = vec![0u8; 64];
    let n = stream.read(&mut head).await.ok()?;
    let line = std::str::from_utf8(head.get(..n)?).ok()?;
    line.strip_prefix("HTTP/1.")?
        .get(2..)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
