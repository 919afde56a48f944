//! The streams a gateway opens on its link: tunnels to an instance's port, and receipt
//! deliveries.
//!
//! The first frame decides what a stream is. It is read exactly (the 4-byte header, then the
//! payload it declares, nothing more), because on a tunnel stream the client's raw bytes may
//! follow it at once and must reach the instance untouched. A refusal is an `error` frame
//! (`fatal: false`) and the end of that stream; the link goes on.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hearth_protocol::frame::{self, HEADER_LEN};
use hearth_protocol::messages::tunnel::{ReceiptAck, TunnelOpen, TunnelReady};
use hearth_protocol::messages::usage::BandwidthReceipt;
use hearth_protocol::{ErrorCode, Message, NodeId, SignerId};
use hearth_transport::MessageStream;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::receipts::{ReceiptStore, Stored};
use super::registry::{Refusal, Registry};
use super::status::StatusBoard;

/// Largest first frame (and receipt frame) taken from a gateway.
pub const MAX_GATEWAY_FRAME: usize = 64 * 1024;
/// Time a gateway has to send a stream's first frame.
const FIRST_FRAME_WITHIN: Duration = Duration::from_secs(10);
/// Most bytes moved per read in a tunnel (tokio's `copy` moves 8 KiB; large responses go
/// faster in bigger steps).
const COPY_CHUNK: usize = 64 * 1024;
/// Time to connect to an instance's port.
const CONNECT_WITHIN: Duration = Duration::from_secs(5);

/// What a stream handler needs of its link.
#[derive(Debug, Clone)]
pub(crate) struct StreamContext {
    /// The gateway at the other end (its key, pinned at the handshake).
    pub gateway: SignerId,
    /// This node.
    pub node: NodeId,
    pub registry: Registry,
    pub receipts: ReceiptStore,
    pub board: StatusBoard,
    /// Warnings this gateway can trigger, at most one a second.
    pub warnings: Arc<Warnings>,
}

/// Lets one warning a second through; counts the rest.
#[derive(Debug, Default)]
pub(crate) struct Warnings {
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl Warnings {
    /// `Some(suppressed since the last one)` when a warning may be logged now.
    fn allow(&self) -> Option<u64> {
        let now = crate::now_ms();
        let last = self.last_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 1000
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// Serves one stream the gateway opened, to its end.
pub(crate) async fn serve(
    ctx: StreamContext,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let first = match tokio::time::timeout(FIRST_FRAME_WITHIN, read_first(&mut recv)).await {
        Ok(Ok(message)) => message,
        Ok(Err(First::Frame(e))) => {
            if e.is_recoverable() {
                refuse(&mut send, e.code(), e.to_string()).await;
            } else {
                let _ = send.reset(quinn::VarInt::from_u32(1));
            }
            return;
        }
        Ok(Err(First::Read(e))) => {
            tracing::debug!(error = %e, "gateway stream ended before its first frame");
            return;
        }
        Err(_) => {
            let _ = send.reset(quinn::VarInt::from_u32(0));
            return;
        }
    };
    match first {
        Message::TunnelOpen(open) => tunnel(&ctx, open, send, recv).await,
        Message::Receipt(receipt) => receipts(&ctx, receipt, send, recv).await,
        other => {
            let message = format!(
                "a gateway stream starts with tunnel_open or receipt, not {}",
                other.type_tag()
            );
            refuse(&mut send, ErrorCode::UnexpectedMessage, message).await;
        }
    }
}

enum First {
    Frame(frame::FrameError),
    Read(quinn::ReadExactError),
}

/// Reads exactly one frame: its header, then the payload it declares.
async fn read_first(recv: &mut quinn::RecvStream) -> Result<Message, First> {
    let mut header = [0u8; HEADER_LEN];
    recv.read_exact(&mut header).await.map_err(First::Read)?;
    let len = frame::payload_len(header, MAX_GATEWAY_FRAME).map_err(First::Frame)?;
    let mut payload = vec![0u8; len];
    recv.read_exact(&mut payload).await.map_err(First::Read)?;
    frame::decode_payload(&payload).map_err(First::Frame)
}

/// A tunnel: checks, connect, `tunnel_ready`, then raw bytes both ways with half-close.
async fn tunnel(
    ctx: &StreamContext,
    open: TunnelOpen,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let (port, guard) = match ctx.registry.admit(&open) {
        Ok(admitted) => admitted,
        Err(Refusal { code, message }) => {
            tracing::debug!(instance = %open.instance, port = %open.port, %code, "tunnel refused");
            return refuse(&mut send, code, message).await;
        }
    };
    let target = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let tcp =
        match tokio::time::timeout(CONNECT_WITHIN, tokio::net::TcpStream::connect(target)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => {
                drop(guard);
                let message = format!(
                    "cannot connect to {} port {}: {e}",
                    open.instance, open.port
                );
                return refuse(&mut send, ErrorCode::ConnectFailed, message).await;
            }
            Err(_) => {
                drop(guard);
                let message = format!(
                    "no connection to {} port {} within 5 s",
                    open.instance, open.port
                );
                return refuse(&mut send, ErrorCode::ConnectFailed, message).await;
            }
        };
    let _ = tcp.set_nodelay(true);
    if write_frame(&mut send, &Message::TunnelReady(TunnelReady {}))
        .await
        .is_err()
    {
        return;
    }
    let (mut from_instance, mut to_instance) = tcp.into_split();
    let inbound = async {
        // QUIC hands over its received chunks as they are: no copy on the way in.
        while let Some(chunk) = recv
            .read_chunk(COPY_CHUNK, true)
            .await
            .map_err(std::io::Error::other)?
        {
            to_instance.write_all(&chunk.bytes).await?;
        }
        to_instance.shutdown().await
    };
    let outbound = async {
        let mut buf = vec![0u8; COPY_CHUNK];
        loop {
            let n = from_instance.read(&mut buf).await?;
            let Some(bytes) = buf.get(..n).filter(|b| !b.is_empty()) else {
                break;
            };
            send.write_all(bytes).await.map_err(std::io::Error::other)?;
        }
        send.finish().map_err(std::io::Error::other)
    };
    if let Err(e) = tokio::try_join!(inbound, outbound) {
        tracing::debug!(instance = %open.instance, error = %e, "tunnel ended abruptly");
        let _ = send.reset(quinn::VarInt::from_u32(0));
        let _ = recv.stop(quinn::VarInt::from_u32(0));
    }
    drop(guard);
}

/// A receipt stream: each `receipt` is checked, stored and acknowledged in turn.
async fn receipts(
    ctx: &StreamContext,
    first: BandwidthReceipt,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
) {
    let mut stream = MessageStream::new(send, recv, MAX_GATEWAY_FRAME);
    let mut next = Some(first);
    while let Some(receipt) = next.take() {
        let answer = match receipt_answer(ctx, receipt).await {
            Ok(ack) => Message::ReceiptAck(ack),
            Err(Refusal { code, message }) => {
                if let Some(suppressed) = ctx.warnings.allow() {
                    tracing::warn!(%code, suppressed, "receipt refused: {message}");
                }
                Message::error(code, message, false)
            }
        };
        if stream.send(&answer).await.is_err() {
            return;
        }
        next = match stream.recv().await {
            Ok(Some(Message::Receipt(r))) => Some(r),
            Ok(Some(other)) => {
                let message = format!(
                    "a receipt stream carries receipts, not {}",
                    other.type_tag()
                );
                let _ = stream
                    .send(&Message::error(
                        ErrorCode::UnexpectedMessage,
                        message,
                        false,
                    ))
                    .await;
                None
            }
            Ok(None) | Err(_) => None,
        };
    }
    let _ = stream.finish();
}

/// Checks a receipt (SPEC §14.4: the signature under its `gateway`, else `bad_signature`; that
/// gateway is this link's and the node this node, else `not_yours`) and stores it.
async fn receipt_answer(
    ctx: &StreamContext,
    receipt: BandwidthReceipt,
) -> Result<ReceiptAck, Refusal> {
    let refuse = |code, message: String| Err(Refusal { code, message });
    if receipt.verify().is_err() {
        return refuse(
            ErrorCode::BadSignature,
            format!("receipt {} does not verify", receipt.receipt),
        );
    }
    if receipt.gateway != ctx.gateway {
        return refuse(
            ErrorCode::NotYours,
            format!(
                "receipt {} is signed by {}, not by this link's gateway {}",
                receipt.receipt, receipt.gateway, ctx.gateway
            ),
        );
    }
    if receipt.node != ctx.node {
        return refuse(
            ErrorCode::NotYours,
            format!(
                "receipt {} credits node {}, not this node",
                receipt.receipt, receipt.node
            ),
        );
    }
    let id = receipt.receipt;
    let store = ctx.receipts.clone();
    match tokio::task::spawn_blocking(move || store.store(&receipt)).await {
        Ok(Ok(stored)) => {
            match stored {
                Stored::New => ctx.board.touch(),
                Stored::Duplicate => {
                    tracing::debug!(receipt = %id, "duplicate receipt acknowledged again");
                }
            }
            Ok(ReceiptAck { receipt: id })
        }
        Ok(Err(e)) => refuse(
            ErrorCode::Internal,
            format!("cannot store receipt {id}: {e}"),
        ),
        Err(e) => refuse(
            ErrorCode::Internal,
            format!("cannot store receipt {id}: {e}"),
        ),
    }
}

/// Sends an `error` frame (not fatal) and finishes the stream.
async fn refuse(send: &mut quinn::SendStream, code: ErrorCode, message: String) {
    if write_frame(send, &Message::error(code, message, false))
        .await
        .is_ok()
    {
        let _ = send.finish();
    }
}

async fn write_frame(send: &mut quinn::SendStream, message: &Message) -> Result<(), ()> {
    let bytes = frame::encode(message, MAX_GATEWAY_FRAME).map_err(|_| ())?;
    send.write_all(&bytes).await.map_err(|_| ())
}
