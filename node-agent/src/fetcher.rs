//! Fetching content-addressed blobs from the master over the session's QUIC connection, into a
//! local cache that is resumable, size-bounded and verified before use. Artifacts with a signed
//! chunk manifest can instead come by chunks from peers ([`Cache::get_chunked`]).

use std::collections::HashSet;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use hearth_protocol::messages::fetch::{FetchBlob, FetchMetadata};
use hearth_protocol::{DEFAULT_MAX_FRAME, ErrorCode, Message, Sha256};
use hearth_transport::MessageStream;
use tokio::sync::watch;

/// Why a blob could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No session to the master right now.
    #[error("no session to the master")]
    NoLink,
    /// The transfer failed; it resumes from where it stopped next time.
    #[error("transfer of {sha256} interrupted: {reason}")]
    Transfer { sha256: Sha256, reason: String },
    /// The master has no such blob.
    #[error("the master has no blob {0}")]
    NotFound(Sha256),
    /// The blob is larger than allowed.
    #[error("blob {sha256} is {size} bytes, more than the {limit} allowed")]
    TooLarge {
        sha256: Sha256,
        size: u64,
        limit: u64,
    },
    /// The bytes do not hash to the requested digest (tampered or corrupted): discarded.
    #[error("blob {expected} was refused: its content hashes to {got}")]
    HashMismatch { expected: Sha256, got: Sha256 },
    /// A chunk the master sent does not match the signed chunk manifest (tampered or corrupted
    /// at the master): retrying would get the same bytes.
    #[error(
        "artifact {sha256}: chunk {index} from the master was refused: it does not match the \
         signed chunk manifest (the master's copy is tampered or corrupted)"
    )]
    ChunkMismatch { sha256: Sha256, index: usize },
    /// The master answered `busy`: a peer can serve this chunk (SPEC §16.4); ask it, or the
    /// master again later.
    #[error("blob {sha256}: the master is busy: {reason}")]
    Busy { sha256: Sha256, reason: String },
    /// A request (`fetch_metadata`, `providers_request`) did not complete: the connection or
    /// stream failed, or the answer was not the one asked for.
    #[error("{what}: {reason}")]
    Request { what: String, reason: String },
    /// The master answered a request with an error.
    #[error("{what}: the master answered {code}: {message}")]
    Answered {
        what: String,
        code: hearth_protocol::ErrorCode,
        message: String,
    },
    /// A metadata file is larger than allowed.
    #[error("metadata {file} is {size} bytes, more than the {limit} allowed")]
    MetadataTooLarge { file: String, size: u64, limit: u64 },
    /// Local filesystem problem.
    #[error("cache: {0}")]
    Io(#[from] std::io::Error),
}

impl FetchError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::NoLink
            | Self::Transfer { .. }
            | Self::NotFound(_)
            | Self::Busy { .. }
            | Self::Request { .. }
            | Self::Io(_) => true,
            // What the master refuses on principle stays refused; the rest (internal, busy,
            // rate limited…) may pass.
            Self::Answered { code, .. } => !matches!(
                code,
                ErrorCode::InvalidMessage
                    | ErrorCode::UnexpectedMessage
                    | ErrorCode::UnknownMessageType
                    | ErrorCode::UnsupportedVersion
                    | ErrorCode::NodeRevoked
                    | ErrorCode::UnknownNode
            ),
            Self::TooLarge { .. }
            | Self::HashMismatch { .. }
            | Self::ChunkMismatch { .. }
            | Self::MetadataTooLarge { .. } => false,
        }
    }
}

/// The current connection, published by the link.
#[derive(Debug, Clone)]
pub struct Fetcher {
    conn: watch::Receiver<Option<quinn::Connection>>,
}

impl Fetcher {
    /// A fetcher following the link's connection.
    pub fn new(conn: watch::Receiver<Option<quinn::Connection>>) -> Self {
        Self { conn }
    }

    /// Whether a session is up.
    pub fn connected(&self) -> bool {
        self.conn.borrow().is_some()
    }

    /// Fetches one repository metadata file (`timestamp.json`, `N.root.json`…); `Ok(None)` when
    /// the master has none by that name. At most `limit` bytes.
    pub async fn metadata(&self, file: &str, limit: u64) -> Result<Option<Vec<u8>>, FetchError> {
        let what = || format!("fetching metadata {file}");
        let request = Message::FetchMetadata(FetchMetadata {
            file: file.to_owned(),
        });
        match self.ask(request, &what).await? {
            Message::Metadata(m) if m.file == file => {
                let size = m.data.0.len() as u64;
                if size > limit {
                    return Err(FetchError::MetadataTooLarge {
                        file: file.to_owned(),
                        size,
                        limit,
                    });
                }
                Ok(Some(m.data.0))
            }
            Message::Error(e) if e.code == ErrorCode::NotFound => Ok(None),
            other => Err(unexpected(what(), other)),
        }
    }

    /// Sends `request` on a new stream and returns the first answer.
    async fn ask(
        &self,
        request: Message,
        what: &(dyn Fn() -> String + Sync),
    ) -> Result<Message, FetchError> {
        let conn = self.conn.borrow().clone().ok_or(FetchError::NoLink)?;
        let failed = |reason: String| FetchError::Request {
            what: what(),
            reason,
        };
        let (send, recv) = conn.open_bi().await.map_err(|e| failed(e.to_string()))?;
        let mut stream = MessageStream::new(send, recv, DEFAULT_MAX_FRAME);
        stream
            .send(&request)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let _ = stream.finish();
        stream
            .recv()
            .await
            .map_err(|e| failed(e.to_string()))?
            .ok_or_else(|| failed("the stream ended before an answer".into()))
    }

    /// Watches the session (a new connection is a new session: the master forgets holdings).
    pub fn sessions(&self) -> watch::Receiver<Option<quinn::Connection>> {
        self.conn.clone()
    }

    /// Asks the master which members hold `sha256` (`providers_request`, own stream). A master
    /// that does not know the message answers `unexpected_message`/`unknown_message_type`:
    /// then no peer is known and everything comes from the master.
    pub async fn providers(
        &self,
        sha256: &Sha256,
    ) -> Result<Vec<hearth_protocol::NodeId>, FetchError> {
        let what = || format!("asking for providers of {sha256}");
        let request =
            Message::ProvidersRequest(hearth_protocol::messages::overlay::ProvidersRequest {
                sha256: *sha256,
            });
        match self.ask(request, &what).await? {
            Message::Providers(p) if p.sha256 == *sha256 => Ok(p.peers),
            Message::Error(e)
                if matches!(
                    e.code,
                    ErrorCode::UnexpectedMessage | ErrorCode::UnknownMessageType
                ) =>
            {
                Ok(Vec::new())
            }
            other => Err(unexpected(what(), other)),
        }
    }

    /// Fetches `len` bytes of blob `sha256` at `offset` (one chunk) from the master.
    pub async fn range(
        &self,
        sha256: &Sha256,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, FetchError> {
        let conn = self.conn.borrow().clone().ok_or(FetchError::NoLink)?;
        let transfer = |reason: String| FetchError::Transfer {
            sha256: *sha256,
            reason,
        };
        let (send, recv) = conn.open_bi().await.map_err(|e| transfer(e.to_string()))?;
        let mut stream = MessageStream::new(send, recv, DEFAULT_MAX_FRAME);
        let request = FetchBlob {
            sha256: *sha256,
            offset,
            max_len: len,
        };
        stream
            .send(&Message::FetchBlob(request))
            .await
            .map_err(|e| transfer(e.to_string()))?;
        let _ = stream.finish();
        let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        while (out.len() as u64) < len {
            match stream.recv().await.map_err(|e| transfer(e.to_string()))? {
                Some(Message::BlobChunk(c))
                    if c.sha256 == *sha256 && c.offset == offset + out.len() as u64 =>
                {
                    if c.data.0.is_empty() || out.len() as u64 + c.data.0.len() as u64 > len {
                        return Err(transfer("chunk of the wrong length".into()));
                    }
                    out.extend_from_slice(&c.data.0);
                }
                Some(Message::BlobChunk(_)) => return Err(transfer("chunk out of order".into())),
                Some(Message::Error(e)) if e.code == hearth_protocol::ErrorCode::NotFound => {
                    return Err(FetchError::NotFound(*sha256));
                }
                Some(Message::Error(e)) if e.code == hearth_protocol::ErrorCode::Busy => {
                    return Err(FetchError::Busy {
                        sha256: *sha256,
                        reason: e.message,
                    });
                }
                Some(other) => return Err(transfer(format!("unexpected {}", other.type_tag()))),
                None => return Err(transfer("stream ended early".into())),
            }
        }
        Ok(out)
    }

    /// Appends the missing tail of blob `sha256` to `part`, up to `limit` bytes in all.
    async fn download(&self, sha256: &Sha256, part: &Path, limit: u64) -> Result<(), FetchError> {
        let conn = self.conn.borrow().clone().ok_or(FetchError::NoLink)?;
        let transfer = |reason: String| FetchError::Transfer {
            sha256: *sha256,
            reason,
        };
        let mut have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        let (send, recv) = conn.open_bi().await.map_err(|e| transfer(e.to_string()))?;
        let mut stream = MessageStream::new(send, recv, DEFAULT_MAX_FRAME);
        let request = FetchBlob {
            sha256: *sha256,
            offset: have,
            max_len: limit.saturating_sub(have) + 1,
        };
        stream
            .send(&Message::FetchBlob(request))
            .await
            .map_err(|e| transfer(e.to_string()))?;
        let _ = stream.finish();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(part)?;
        loop {
            match stream.recv().await.map_err(|e| transfer(e.to_string()))? {
                Some(Message::BlobChunk(c)) if c.sha256 == *sha256 && c.offset == have => {
                    if c.total_len > limit {
                        return Err(FetchError::TooLarge {
                            sha256: *sha256,
                            size: c.total_len,
                            limit,
                        });
                    }
                    file.write_all(&c.data.0)?;
                    have += c.data.0.len() as u64;
                    if have >= c.total_len {
                        file.sync_all()?;
                        return Ok(());
                    }
                }
                Some(Message::BlobChunk(_)) => return Err(transfer("chunk out of order".into())),
                Some(Message::Error(e)) if e.code == hearth_protocol::ErrorCode::NotFound => {
                    return Err(FetchError::NotFound(*sha256));
                }
                Some(other) => return Err(transfer(format!("unexpected {}", other.type_tag()))),
                None => return Err(transfer("stream ended early".into())),
            }
        }
    }
}

/// Verified blobs in `D/cache/<sha256>`; partial downloads in `<sha256>.part`. One download per
/// blob at a time: concurrent requests for the same blob wait for the first.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    artifacts: Option<crate::artifacts::Artifacts>,
    inflight: std::sync::Arc<
        std::sync::Mutex<std::collections::HashMap<Sha256, std::sync::Arc<tokio::sync::Mutex<()>>>>,
    >,
}

impl Cache {
    /// The cache under `dir`.
    pub fn open(dir: &Path) -> Result<Self, FetchError> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            artifacts: None,
            inflight: Default::default(),
        })
    }

    /// Fetches artifacts that have a signed chunk manifest by chunks over the overlay.
    pub fn with_artifacts(mut self, artifacts: Option<crate::artifacts::Artifacts>) -> Self {
        self.artifacts = artifacts;
        self
    }

    /// Path of a verified artifact, fetched first if needed: by chunks from peers and the
    /// master when the overlay is on and the signed targets carry its chunk manifest, else
    /// whole from the master.
    pub async fn artifact(
        &self,
        fetcher: &Fetcher,
        sha256: &Sha256,
        size: u64,
        manifest: Option<&hearth_recipes::repo::chunks::ChunkManifest>,
    ) -> Result<PathBuf, FetchError> {
        match (&self.artifacts, manifest) {
            (Some(a), Some(m)) if m.length() == size => {
                self.get_chunked(fetcher, a, sha256, m).await
            }
            _ => self.get(fetcher, sha256, size).await,
        }
    }

    /// Path of a verified blob, fetching it first if needed.
    pub async fn get(
        &self,
        fetcher: &Fetcher,
        sha256: &Sha256,
        limit: u64,
    ) -> Result<PathBuf, FetchError> {
        self.one_at_a_time(sha256, self.get_locked(fetcher, sha256, limit))
            .await
    }

    /// Path of a verified artifact, fetched first if needed by chunks from peers and the
    /// master (`crate::artifacts::fetch`), each chunk checked against its signed manifest.
    pub async fn get_chunked(
        &self,
        fetcher: &Fetcher,
        artifacts: &crate::artifacts::Artifacts,
        sha256: &Sha256,
        manifest: &hearth_recipes::repo::chunks::ChunkManifest,
    ) -> Result<PathBuf, FetchError> {
        self.one_at_a_time(
            sha256,
            crate::artifacts::fetch::fetch(artifacts, fetcher, sha256, manifest),
        )
        .await
    }

    async fn one_at_a_time(
        &self,
        sha256: &Sha256,
        work: impl std::future::Future<Output = Result<PathBuf, FetchError>>,
    ) -> Result<PathBuf, FetchError> {
        let lock = {
            let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(*sha256).or_default().clone()
        };
        let result = {
            let _guard = lock.lock().await;
            work.await
        };
        let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        // The map's own reference and ours: nobody else waits, the entry can go.
        if std::sync::Arc::strong_count(&lock) <= 2 {
            map.remove(sha256);
        }
        result
    }

    async fn get_locked(
        &self,
        fetcher: &Fetcher,
        sha256: &Sha256,
        limit: u64,
    ) -> Result<PathBuf, FetchError> {
        let path = self.dir.join(sha256.to_string());
        if path.exists() {
            return Ok(path);
        }
        let part = self.dir.join(format!("{sha256}.part"));
        if std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0) > limit {
            std::fs::remove_file(&part)?;
        }
        fetcher.download(sha256, &part, limit).await?;
        let to_hash = part.clone();
        let got = tokio::task::spawn_blocking(move || hash_file(&to_hash))
            .await
            .map_err(std::io::Error::other)??;
        if got != *sha256 {
            std::fs::remove_file(&part)?;
            return Err(FetchError::HashMismatch {
                expected: *sha256,
                got,
            });
        }
        std::fs::rename(&part, &path)?;
        Ok(path)
    }

    /// Removes every blob, partial download and chunk sidecar not in `keep`, not being fetched
    /// right now (a large artifact still downloading is not in any prepared plan yet) and not
    /// written in the last [`GC_GRACE`] (a preparation fetches a recipe's blobs one after the
    /// other, and the first ones are in no plan until the last arrives).
    pub fn retain(&self, keep: &HashSet<Sha256>) -> std::io::Result<u64> {
        let fetching: HashSet<Sha256> = self
            .inflight
            .lock()
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default();
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let base = [".part", ".chunks", ".chunks.tmp"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            let sha = base.parse::<Sha256>().ok();
            let recent = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age < GC_GRACE));
            if !recent && sha.is_none_or(|s| !keep.contains(&s) && !fetching.contains(&s)) {
                std::fs::remove_file(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// How long a blob written to the cache is kept whatever the plans say.
pub const GC_GRACE: std::time::Duration = std::time::Duration::from_secs(600);

/// SHA-256 of a file's content.
pub fn hash_file(path: &Path) -> std::io::Result<Sha256> {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    Ok(hearth_protocol::Hex(hasher.finalize().into()))
}

/// The error for an answer that is not the one asked for.
fn unexpected(what: String, answer: Message) -> FetchError {
    match answer {
        Message::Error(e) => FetchError::Answered {
            what,
            code: e.code,
            message: e.message,
        },
        other => FetchError::Request {
            what,
            reason: format!("unexpected {}", other.type_tag()),
        },
    }
}
