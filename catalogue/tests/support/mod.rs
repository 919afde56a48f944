//! Test harness for the catalogue's services: starts a built binary on 127.0.0.1 port 0, reads
//! the address it prints on stdout once it listens, and stops it (SIGKILL or SIGTERM).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    dead_code,
    unreachable_pub
)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// A running service; killed when dropped.
pub struct Service {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Service {
    /// Starts `bin --port 0 --data DATA ARGS…` with `env` (the token variables cleared first).
    pub fn start(bin: &str, data: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(bin)
            .args(["--port", "0", "--bind", "127.0.0.1", "--data"])
            .arg(data)
            .args(args)
            .env_remove("HEARTH_KV_TOKEN")
            .env_remove("HEARTH_NOTES_TOKEN")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start service");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        // The service prints this line only after it is listening (or exits, giving EOF).
        stdout.read_line(&mut line).expect("read stdout");
        let addr = line
            .split_whitespace()
            .skip_while(|w| *w != "on")
            .nth(1)
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                println!("[service] {line}");
            }
        });
        Self {
            child,
            base: format!("http://{addr}"),
            addr,
        }
    }

    /// SIGKILL, as a power cut would: nothing gets to flush.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("wait");
    }

    /// SIGTERM, then waits (bounded) for the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the service did not exit within 10 s of SIGTERM");
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `request` verbatim over a new connection and returns the status code and the body
/// (the server closes the connection: requests send `Connection: close`). For what an HTTP
/// client would refuse or rewrite (`..` segments, lying chunked bodies).
pub fn raw(addr: &str, request: &[u8]) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // The server may answer before it has read everything; a failed write still leaves a reply.
    let _ = stream.write_all(request);
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let status = reply
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {reply:?}"));
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Files directly in `dir` (0 if it does not exist).
pub fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// The `error` text of a service's JSON error answer.
pub async fn error_of(resp: reqwest::Response) -> String {
    let v: serde_json::Value = resp.json().await.unwrap();
    v["error"].as_str().unwrap().to_owned()
}
