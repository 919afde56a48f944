//! The node's side of the signed repository: it downloads TUF metadata through a transport (over
//! its QUIC session in the agent, from a directory in tests), checks it with `tough` — root
//! chain and thresholds, expiry (freeze), version rollback against what it trusted before,
//! snapshot consistency (mix-and-match), metadata size limits — and keeps what it trusted in
//! its own directory. [`TrustedTargets`] then says which recipe and artifact bytes may run.
//!
//! ```text
//! DIR/anchor.json        the root this node was enrolled with (or trusted on first use)
//! DIR/datastore/         tough's trusted copies: root.json (latest), timestamp, snapshot, targets
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hearth_protocol::Sha256;
use hearth_protocol::messages::state::RecipeRef;
use tough::schema::{Root, Signed};
use tough::{
    ExpirationEnforcement, Limits, RepositoryLoader, Transport, TransportError, TransportErrorKind,
    TransportStream,
};
use url::Url;

use super::chunks::{self, ChunkManifest};
use super::{MAX_METADATA, artifact_target, recipe_target};

mod error;

pub use error::TrustError;
use error::{plain, refused};

/// A target as the signed metadata lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Length in bytes.
    pub length: u64,
    /// SHA-256.
    pub sha256: Sha256,
    /// The artifact's signed chunk manifest (`custom.hearth_chunks`); `None` for recipes, for
    /// artifacts signed before manifests existed, and for a manifest that does not parse (then
    /// the artifact comes from the master only, whole-file checked).
    pub chunks: Option<ChunkManifest>,
}

/// What a verified load of the repository says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedTargets {
    targets: BTreeMap<String, Listed>,
    /// Versions trusted: root, targets, snapshot, timestamp.
    pub versions: [u64; 4],
}

impl TrustedTargets {
    /// The listing of the recipe the master named; refuses an unlisted recipe and one whose
    /// hash differs from the signed listing.
    pub fn recipe(&self, r: &RecipeRef) -> Result<Listed, TrustError> {
        let name = recipe_target(r.name.as_str(), &r.version);
        let listed = self
            .targets
            .get(&name)
            .cloned()
            .ok_or_else(|| TrustError::Unlisted(format!("recipe {} {}", r.name, r.version)))?;
        if listed.sha256 != r.sha256 {
            return Err(TrustError::Mismatch {
                target: name,
                named: r.sha256,
                listed: listed.sha256,
            });
        }
        Ok(listed)
    }

    /// Checks that an artifact of the given hash and size is listed.
    pub fn artifact(&self, sha256: &Sha256, size: u64) -> Result<(), TrustError> {
        let name = artifact_target(sha256);
        match self.targets.get(&name) {
            Some(l) if l.length == size => Ok(()),
            Some(l) => Err(TrustError::ArtifactSize {
                target: name,
                listed: l.length,
                recipe: size,
            }),
            None => Err(TrustError::Unlisted(name)),
        }
    }

    /// The signed chunk manifest of an artifact, if it has one.
    pub fn chunks(&self, sha256: &Sha256) -> Option<&ChunkManifest> {
        self.targets
            .get(&artifact_target(sha256))
            .and_then(|l| l.chunks.as_ref())
    }

    /// Every listed target.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Listed)> {
        self.targets.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// The node's trust directory.
#[derive(Debug)]
pub struct TrustStore {
    dir: PathBuf,
    lock: futures::lock::Mutex<()>,
}

impl TrustStore {
    /// Opens (creating) the trust directory.
    pub fn open(dir: &Path) -> Result<Self, TrustError> {
        let datastore = dir.join("datastore");
        std::fs::create_dir_all(&datastore).map_err(io(&datastore))?;
        Ok(Self {
            dir: dir.to_owned(),
            lock: futures::lock::Mutex::new(()),
        })
    }

    /// Whether a root anchor is pinned.
    pub fn has_root(&self) -> bool {
        self.dir.join("anchor.json").exists()
    }

    /// Pins `bytes` as the root anchor after checking that it is a root signed by a threshold
    /// of its own root keys. Refuses to replace an existing anchor.
    pub fn pin_root(&self, bytes: &[u8]) -> Result<u64, TrustError> {
        let version = check_root(bytes)?;
        let path = self.dir.join("anchor.json");
        if path.exists() {
            return Err(TrustError::RootPinned);
        }
        let tmp = self.dir.join("anchor.json.tmp");
        std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        Ok(version)
    }

    /// Re-verifies what this node last trusted from its own copies (when the master is out of
    /// reach): same checks, expiry included, so stale metadata still stops working in time.
    pub async fn refresh_offline(&self) -> Result<TrustedTargets, TrustError> {
        self.refresh(DirTransport(self.dir.join("datastore"))).await
    }

    /// Downloads and verifies the repository metadata, starting from the latest root this node
    /// trusted, and returns what it lists. One refresh at a time.
    pub async fn refresh<T>(&self, transport: T) -> Result<TrustedTargets, TrustError>
    where
        T: Transport + Send + Sync + 'static,
    {
        let _one = self.lock.lock().await;
        let datastore = self.dir.join("datastore");
        let latest = datastore.join("root.json");
        let root = match std::fs::read(&latest) {
            Ok(bytes) => bytes,
            Err(_) => {
                std::fs::read(self.dir.join("anchor.json")).map_err(|_| TrustError::NoRoot)?
            }
        };
        let limits = Limits {
            max_root_size: MAX_METADATA,
            max_targets_size: MAX_METADATA,
            max_timestamp_size: MAX_METADATA,
            max_snapshot_size: MAX_METADATA,
            max_root_updates: 1024,
        };
        let base = |p: &str| {
            Url::parse(&format!("hearth:/{p}/")).map_err(|e| TrustError::Metadata(e.to_string()))
        };
        let repo = RepositoryLoader::new(&root, base("metadata")?, base("targets")?)
            .transport(transport)
            .datastore(&datastore)
            .limits(limits)
            .expiration_enforcement(ExpirationEnforcement::Safe)
            .load()
            .await
            .map_err(|e| refused(&e))?;
        let mut targets = BTreeMap::new();
        for (name, t) in repo.all_targets() {
            let Ok(sha) = <[u8; 32]>::try_from(t.hashes.sha256.as_ref()) else {
                continue; // not a SHA-256: cannot match anything we fetch
            };
            let chunks = t.custom.get(chunks::FIELD).and_then(|v| {
                ChunkManifest::parse(v, t.length)
                    .inspect_err(|e| {
                        tracing::warn!(target = name.raw(), error = %e, "chunk manifest ignored");
                    })
                    .ok()
            });
            targets.insert(
                name.raw().to_owned(),
                Listed {
                    length: t.length,
                    sha256: hearth_protocol::Hex(sha),
                    chunks,
                },
            );
        }
        Ok(TrustedTargets {
            targets,
            versions: [
                repo.root().signed.version.get(),
                repo.targets().signed.version.get(),
                repo.snapshot().signed.version.get(),
                repo.timestamp().signed.version.get(),
            ],
        })
    }
}

/// Checks that `bytes` are a root document signed by a threshold of its own root keys; returns
/// its version.
pub fn check_root(bytes: &[u8]) -> Result<u64, TrustError> {
    let root: Signed<Root> =
        serde_json::from_slice(bytes).map_err(|e| TrustError::BadRoot(e.to_string()))?;
    root.signed
        .verify_role(&root)
        .map_err(|e| TrustError::BadRoot(plain(&e.to_string())))?;
    Ok(root.signed.version.get())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrustError + '_ {
    move |source| TrustError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The metadata file a transport URL names (`hearth:/metadata/<file>`).
pub fn metadata_file(url: &Url) -> Option<&str> {
    url.path()
        .strip_prefix("/metadata/")
        .filter(|f| super::is_metadata_file(f))
}

/// One buffer as a transport stream.
pub fn stream_of(bytes: Vec<u8>) -> TransportStream {
    Box::pin(futures::stream::iter([Ok(tough::Bytes::from(bytes))]))
}

/// A transport error for `url`.
pub fn transport_error(url: &Url, not_found: bool, cause: String) -> TransportError {
    let kind = if not_found {
        TransportErrorKind::FileNotFound
    } else {
        TransportErrorKind::Other
    };
    TransportError::new_with_cause(kind, url.as_str(), std::io::Error::other(cause))
}

/// Serves metadata from a directory (a repository's `metadata/`, or the master's copy).
#[derive(Debug, Clone)]
pub struct DirTransport(pub PathBuf);

#[tough::async_trait]
impl Transport for DirTransport {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        let Some(file) = metadata_file(&url) else {
            return Err(transport_error(&url, true, "not a metadata file".into()));
        };
        match std::fs::read(self.0.join(file)) {
            Ok(bytes) => Ok(stream_of(bytes)),
            Err(e) => Err(transport_error(
                &url,
                e.kind() == std::io::ErrorKind::NotFound,
                e.to_string(),
            )),
        }
    }
}
