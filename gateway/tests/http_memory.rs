//! Idle public connections are cheap: the design budgets 10,000 idle client connections in
//! 200 MB, 20 KB each, for the release binary. This opens 2,000 keep-alive connections that
//! each made one request and measures the process's resident memory before and after. Test
//! builds are unoptimised (larger futures), so the bound checked here is 32 KiB; the figure is
//! printed (`--nocapture`).

mod http_support;

use std::time::Duration;

use hearth_gateway::http::HttpConfig;
use hearth_gateway::limits::LimitsConfig;
use http_support::{generous, routing, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONNECTIONS: usize = 2000;

fn rss_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS"))
}

#[tokio::test]
async fn idle_connections_fit_the_memory_budget() -> anyhow::Result<()> {
    let config = HttpConfig {
        header_timeout: Duration::from_secs(60),
        ..HttpConfig::default()
    };
    let limits = LimitsConfig {
        per_ip_connections: 100_000,
        max_connections: 100_000,
        ..generous()
    };
    let gw = start(routing(&[("app.example.org", true)]), limits, config, None).await?;
    let mut streams = Vec::with_capacity(CONNECTIONS + 10);
    let mut buf = vec![0u8; 4096];
    // Warm up the runtime and the allocator with a few connections, then measure.
    open(&gw, 10, &mut streams, &mut buf).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_kib()?;
    open(&gw, CONNECTIONS, &mut streams, &mut buf).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = rss_kib()?;
    let per_connection = (after.saturating_sub(before)) * 1024 / CONNECTIONS as u64;
    eprintln!(
        "{CONNECTIONS} idle keep-alive connections: RSS {before} KiB -> {after} KiB, {per_connection} bytes each"
    );
    assert_eq!(gw.proxy.limits().connections(), CONNECTIONS + 10);
    assert!(
        per_connection < 32 * 1024,
        "{per_connection} bytes per idle connection"
    );
    Ok(())
}

/// Opens `n` connections that each get one answer and stay open.
async fn open(
    gw: &http_support::Gateway,
    n: usize,
    streams: &mut Vec<TcpStream>,
    buf: &mut [u8],
) -> anyhow::Result<()> {
    let request = b"GET / HTTP/1.1\r\nHost: app.example.org\r\n\r\n";
    for i in 0..n {
        let mut s = TcpStream::connect(gw.addr).await?;
        s.write_all(request).await?;
        let got = tokio::time::timeout(Duration::from_secs(5), s.read(buf)).await??;
        anyhow::ensure!(
            buf.get(..12) == Some(&b"HTTP/1.1 503"[..]),
            "connection {i}: {got} bytes"
        );
        streams.push(s);
    }
    Ok(())
}
