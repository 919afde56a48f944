//! Test replicas: a local HTTP server (echo of what arrived, 1 KiB and 1 MiB files, a slow
//! answer, a WebSocket echo) or one that hangs up, and [`TcpBackend`], a [`Backend`] whose
//! tunnels are plain TCP connections to them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hearth_gateway::backend::{Backend, BoxedTunnel, OpenFuture};
use hearth_gateway::tunnel::{TunnelError, TunnelRequest};
use hearth_protocol::messages::state::InstanceId;
use hearth_protocol::{ErrorCode, NodeId};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::CONNECTION;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How a test replica behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers (see `answer`).
    Echo,
    /// Reads the request and closes without answering.
    Hangs,
    /// Answers one request with `200 ok`, then closes without saying so (as a service whose
    /// keep-alive timeout just passed).
    OneShot,
}

/// Starts a replica named `name` on 127.0.0.1.
pub async fn replica(name: &'static str, behaviour: Behaviour) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if behaviour != Behaviour::Echo {
                    let mut buf = [0u8; 1024];
                    let _ = stream.read(&mut buf).await;
                    if behaviour == Behaviour::OneShot {
                        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        let _ = stream.write_all(answer).await;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    return;
                }
                let service = hyper::service::service_fn(move |req| answer(name, req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Ok(addr)
}

static BIG: [u8; 1 << 20] = [b'z'; 1 << 20];

/// `/ws`: 101 then echo; `/big`: 1 MiB; `/1k`: 1 KiB; `/slow`: answers after 1.2 s; else a text report of what arrived.
async fn answer(
    name: &str,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/ws" {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(io) = upgrade.await {
                let mut io = TokioIo::new(io);
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = io.read(&mut buf).await {
                    if io
                        .write_all(buf.get(..n).unwrap_or_default())
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        });
        let resp = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", "websocket")
            .header(CONNECTION, "upgrade")
            .body(Full::new(Bytes::new()));
        return Ok(resp.unwrap_or_default());
    }
    if req.uri().path() == "/slow" {
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    if req.uri().path() == "/big" {
        return Ok(Response::new(Full::new(Bytes::from_static(&BIG))));
    }
    if req.uri().path() == "/1k" {
        return Ok(Response::new(Full::new(Bytes::from_static(&BIG[..1024]))));
    }
    let (parts, body) = req.into_parts();
    let len = match body.collect().await {
        Ok(b) => b.to_bytes().len().to_string(),
        Err(e) => format!("error {e}"),
    };
    let h = |n: &str| {
        parts
            .headers
            .get_all(n)
            .iter()
            .map(|v| v.to_str().unwrap_or("?").to_owned())
            .collect::<Vec<_>>()
            .join("|")
    };
    let text = format!(
        "replica={name}\nmethod={}\npath={}\nhost={}\nxff={}\nxfp={}\nxfh={}\nsecret={}\nconnection={}\nlen={len}\n",
        parts.method,
        parts.uri,
        h("host"),
        h("x-forwarded-for"),
        h("x-forwarded-proto"),
        h("x-forwarded-host"),
        h("x-secret"),
        h("connection"),
    );
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    resp.headers_mut()
        .insert("x-replica", hyper::header::HeaderValue::from_static("yes"));
    resp.headers_mut().insert(
        "keep-alive",
        hyper::header::HeaderValue::from_static("timeout=5"),
    );
    Ok(resp)
}

/// Tunnels as TCP connections to local replicas, by instance id.
#[derive(Debug)]
pub struct TcpBackend {
    replicas: Mutex<HashMap<String, Target>>,
    opens: AtomicUsize,
    changes: watch::Sender<u64>,
}

#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// `None`: the node refuses (`draining`).
    addr: Option<SocketAddr>,
    available: bool,
}

impl TcpBackend {
    pub fn new(replicas: &[(&str, Option<SocketAddr>)]) -> Arc<Self> {
        let map = replicas
            .iter()
            .map(|(id, addr)| {
                (
                    (*id).to_owned(),
                    Target {
                        addr: *addr,
                        available: true,
                    },
                )
            })
            .collect();
        Arc::new(Self {
            replicas: Mutex::new(map),
            opens: AtomicUsize::new(0),
            changes: watch::channel(0).0,
        })
    }

    pub fn set_available(&self, instance: &str, available: bool) {
        if let Some(t) = self
            .replicas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(instance)
        {
            t.available = available;
        }
        self.changes.send_modify(|v| *v += 1);
    }

    pub fn opens(&self) -> usize {
        self.opens.load(Ordering::SeqCst)
    }
}

impl Backend for TcpBackend {
    fn available(&self, _node: &NodeId, instance: &InstanceId) -> bool {
        self.replicas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(instance.as_str())
            .is_some_and(|t| t.available)
    }

    fn open<'a>(&'a self, request: TunnelRequest<'a>) -> OpenFuture<'a> {
        Box::pin(async move {
            self.opens.fetch_add(1, Ordering::SeqCst);
            let target = self
                .replicas
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(request.replica.instance.as_str())
                .copied();
            match target.and_then(|t| t.addr) {
                Some(addr) => {
                    let stream = TcpStream::connect(addr)
                        .await
                        .map_err(|e| TunnelError::Stream(e.to_string()))?;
                    Ok(Box::pin(stream) as BoxedTunnel)
                }
                None => Err(TunnelError::Refused {
                    code: ErrorCode::Draining,
                    message: "draining".into(),
                }),
            }
        })
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}
