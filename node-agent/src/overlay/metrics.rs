//! `hearth-node run --metrics-listen ADDR`: the overlay's counters as Prometheus text at
//! `/metrics` (SPEC §16.3).

use std::fmt::Write as _;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use super::{LinkKind, Overlay, OverlayStats};

/// The Prometheus text of the overlay's counters.
pub fn render(overlay: &Overlay) -> String {
    let shared = overlay.shared();
    let s = overlay.stats();
    let get = OverlayStats::get;
    let count = |k: LinkKind| shared.links.values().filter(|(l, _)| *l == k).count();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP hearth_overlay_peers Members this node has a link to, by kind.\n\
         # TYPE hearth_overlay_peers gauge\n\
         hearth_overlay_peers{{link=\"direct\"}} {}\n\
         hearth_overlay_peers{{link=\"relayed\"}} {}",
        count(LinkKind::Direct),
        count(LinkKind::Relayed)
    );
    let _ = writeln!(
        out,
        "# HELP hearth_overlay_bytes_total Overlay payload bytes, by direction and kind.\n\
         # TYPE hearth_overlay_bytes_total counter\n\
         hearth_overlay_bytes_total{{direction=\"up\",kind=\"artifact\"}} {}\n\
         hearth_overlay_bytes_total{{direction=\"down\",kind=\"artifact\"}} {}\n\
         hearth_overlay_bytes_total{{direction=\"up\",kind=\"replica\"}} {}\n\
         hearth_overlay_bytes_total{{direction=\"down\",kind=\"replica\"}} {}",
        get(&s.artifact_up),
        get(&s.artifact_down),
        get(&s.replica_up),
        get(&s.replica_down)
    );
    let _ = writeln!(
        out,
        "# HELP hearth_overlay_budget_bytes_per_second Upload budget for artifact chunks.\n\
         # TYPE hearth_overlay_budget_bytes_per_second gauge\n\
         hearth_overlay_budget_bytes_per_second {}",
        get(&s.budget_mbps).saturating_mul(125_000)
    );
    let _ = writeln!(
        out,
        "# HELP hearth_overlay_chunks_refused_total Chunks from peers refused: they failed their hash against the signed manifest.\n\
         # TYPE hearth_overlay_chunks_refused_total counter\n\
         hearth_overlay_chunks_refused_total {}",
        get(&s.chunks_refused)
    );
    out
}

/// Serves `/metrics` on `listener` (plain HTTP/1.1, one request per connection) forever.
pub async fn serve(listener: TcpListener, overlay: Overlay) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let overlay = overlay.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                let mut n = 0;
                while n < buf.len() {
                    let got = conn.read(buf.get_mut(n..).unwrap_or_default()).await.ok()?;
                    if got == 0 {
                        break;
                    }
                    n += got;
                    if buf
                        .get(..n)
                        .is_some_and(|b| b.windows(4).any(|w| w == b"\r\n\r\n"))
                    {
                        break;
                    }
                }
                Some(n)
            })
            .await;
            let Ok(Some(n)) = read else { return };
            let head = String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).into_owned();
            let path = head.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = if path == "/metrics" {
                ("200 OK", render(&overlay))
            } else {
                ("404 Not Found", "only /metrics here\n".to_owned())
            };
            let reply = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(reply.as_bytes()).await;
            let _ = conn.shutdown().await;
        });
    }
}
