//! Copying a replica link's bytes both ways, with half-close and byte counts, and a gate that
//! keeps a failing link's log to one line a second.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::overlay::OverlayStats;

/// Bytes read at once.
const BUF: usize = 64 * 1024;
/// At most one log line per gate this often.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Copies `local` (the instance's side) and `remote` (the overlay stream) into each other until
/// both directions end. An end of stream on one side is passed on as a half-close of the other
/// (the reverse direction keeps flowing); an error on either ends both. Bytes sent to the peer
/// count as `replica_up`, bytes received as `replica_down`.
pub async fn copy_both<L, R>(local: L, remote: R, stats: &OverlayStats) -> std::io::Result<()>
where
    L: AsyncRead + AsyncWrite + Unpin,
    R: AsyncRead + AsyncWrite + Unpin,
{
    let (mut local_read, mut local_write) = tokio::io::split(local);
    let (mut remote_read, mut remote_write) = tokio::io::split(remote);
    let up = copy_one(&mut local_read, &mut remote_write, &stats.replica_up);
    let down = copy_one(&mut remote_read, &mut local_write, &stats.replica_down);
    tokio::try_join!(up, down).map(|_| ())
}

async fn copy_one<R, W>(from: &mut R, to: &mut W, counter: &AtomicU64) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF];
    let mut total = 0u64;
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            to.shutdown().await?;
            return Ok(total);
        }
        to.write_all(buf.get(..n).unwrap_or_default()).await?;
        to.flush().await?;
        let n = n as u64;
        total += n;
        OverlayStats::add(counter, n);
    }
}

/// Lets a log line through at most once a second.
#[derive(Debug, Default)]
pub struct LogGate {
    last: Mutex<Option<Instant>>,
}

impl LogGate {
    /// Runs `log` unless this gate let one through less than a second ago.
    pub fn warn(&self, log: impl FnOnce()) {
        if self.open() {
            log();
        }
    }

    fn open(&self) -> bool {
        let Ok(mut last) = self.last.lock() else {
            return false;
        };
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_cross_both_ways_with_half_close_and_are_counted() {
        let (app, local) = tokio::io::duplex(1024);
        let (remote, peer) = tokio::io::duplex(1024);
        let stats = OverlayStats::default();
        let copy = copy_both(local, remote, &stats);
        let ends = async {
            let (mut app, mut peer) = (app, peer);
            app.write_all(b"hello peer").await?;
            app.shutdown().await?;
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await?;
            assert_eq!(got, b"hello peer");
            // The other direction still flows after the half-close.
            peer.write_all(b"hi back").await?;
            peer.shutdown().await?;
            let mut back = Vec::new();
            app.read_to_end(&mut back).await?;
            assert_eq!(back, b"hi back");
            Ok::<_, std::io::Error>(())
        };
        let (copied, ended) = tokio::join!(copy, ends);
        assert!(copied.is_ok(), "{copied:?}");
        assert!(ended.is_ok(), "{ended:?}");
        assert_eq!(OverlayStats::get(&stats.replica_up), 10);
        assert_eq!(OverlayStats::get(&stats.replica_down), 7);
    }

    #[test]
    fn the_gate_lets_one_line_a_second_through() {
        let gate = LogGate::default();
        let mut n = 0;
        for _ in 0..100 {
            gate.warn(|| n += 1);
        }
        assert_eq!(n, 1);
    }
}
