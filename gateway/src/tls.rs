//! TLS for the public HTTPS listener: a certificate store read from a directory of
//! `<host>.crt` + `<host>.key` PEM pairs, chosen by SNI, and reloaded in place when the
//! directory's files change (no restart; handshakes in progress keep the certificate they got).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why the certificate directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The directory or a file in it could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A `.crt` file holds no PEM certificate.
    #[error("{0}: no PEM certificate in it")]
    NoCertificate(PathBuf),
    /// A `.key` file holds no PEM private key, or is missing.
    #[error("{0}: no PEM private key (each <host>.crt needs a <host>.key beside it)")]
    NoKey(PathBuf),
    /// The key is of a kind rustls cannot sign with.
    #[error("{path}: unusable private key: {source}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// The cause.
        source: rustls::Error,
    },
}

/// The certificates, by host name.
#[derive(Debug)]
pub struct CertStore {
    dir: PathBuf,
    current: RwLock<Loaded>,
}

impl CertStore {
    /// Reads every `<host>.crt`/`<host>.key` pair in `dir` (other files are ignored).
    pub fn load(dir: &Path) -> Result<Arc<Self>, TlsError> {
        let loaded = read_dir(dir)?;
        Ok(Arc::new(Self {
            dir: dir.to_path_buf(),
            current: RwLock::new(loaded),
        }))
    }

    /// The server configuration: certificates by SNI from this store, ALPN `h2` and
    /// `http/1.1`, TLS 1.2 and 1.3.
    pub fn server_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        #[allow(clippy::expect_used)]
        let builder = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            // ring's default provider supports both default protocol versions: cannot fail.
            .expect("ring supports TLS 1.2 and 1.3");
        let mut config = builder
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// Checks the directory every `every` and reloads it when a file changed (name, size or
    /// modification time). A directory that fails to load keeps the previous certificates
    /// (logged) and is tried again at the next change. The task ends with the store.
    pub fn spawn_reload(self: &Arc<Self>, every: Duration) {
        let store = Arc::downgrade(self);
        let dir = self.dir.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failed_stamp: Option<Vec<FileStamp>> = None;
            loop {
                tick.tick().await;
                let Some(live) = Weak::upgrade(&store) else {
                    return;
                };
                let dir = dir.clone();
                let seen = live.stamp();
                let result = tokio::task::spawn_blocking(move || {
                    let stamp = stamp(&dir)?;
                    if stamp == seen {
                        return Ok(None);
                    }
                    read_dir(&dir).map(Some)
                })
                .await;
                match result {
                    Ok(Ok(Some(loaded))) => {
                        tracing::info!(hosts = loaded.by_host.len(), "certificates reloaded");
                        failed_stamp = None;
                        live.replace(loaded);
                    }
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => {
                        // Log once per distinct broken state, not every tick.
                        let now = stamp(&live.dir).ok();
                        if now != failed_stamp {
                            tracing::warn!(error = %e, "certificate reload failed; keeping the previous certificates");
                            failed_stamp = now;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "certificate reload task failed"),
                }
            }
        });
    }

    /// The host names with a certificate, sorted.
    pub fn hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self.read().by_host.keys().cloned().collect();
        hosts.sort();
        hosts
    }

    fn stamp(&self) -> Vec<FileStamp> {
        self.read().stamp.clone()
    }

    fn replace(&self, loaded: Loaded) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = loaded;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Loaded> {
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?;
        let loaded = self.read();
        if let Some(key) = loaded.by_host.get(name) {
            return Some(Arc::clone(key));
        }
        let lower = name.to_ascii_lowercase();
        loaded.by_host.get(&lower).map(Arc::clone)
    }
}

/// One file's identity for change detection: name, length, modification time.
type FileStamp = (String, u64, Option<SystemTime>);

#[derive(Debug)]
struct Loaded {
    stamp: Vec<FileStamp>,
    by_host: HashMap<String, Arc<CertifiedKey>>,
}

fn stamp(dir: &Path) -> Result<Vec<FileStamp>, TlsError> {
    let read_err = |source| TlsError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.ends_with(".crt") || name.ends_with(".key")) {
            continue;
        }
        let meta = entry.metadata().map_err(read_err)?;
        files.push((name, meta.len(), meta.modified().ok()));
    }
    files.sort();
    Ok(files)
}

fn read_dir(dir: &Path) -> Result<Loaded, TlsError> {
    let stamp = stamp(dir)?;
    let mut by_host = HashMap::new();
    for (name, _, _) in &stamp {
        let Some(host) = name.strip_suffix(".crt") else {
            continue;
        };
        let crt_path = dir.join(name);
        let key_path = dir.join(format!("{host}.key"));
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        let crt_pem = read(&crt_path)?;
        let certs: Vec<_> = rustls_pemfile::certs(&mut crt_pem.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|source| TlsError::Read {
                path: crt_path.clone(),
                source,
            })?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate(crt_path));
        }
        let key_pem = read(&key_path).map_err(|_| TlsError::NoKey(key_path.clone()))?;
        let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
            .map_err(|source| TlsError::Read {
                path: key_path.clone(),
                source,
            })?
            .ok_or_else(|| TlsError::NoKey(key_path.clone()))?;
        let signer = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|source| {
            TlsError::Key {
                path: key_path.clone(),
                source,
            }
        })?;
        by_host.insert(
            host.to_ascii_lowercase(),
            Arc::new(CertifiedKey::new(certs, signer)),
        );
    }
    Ok(Loaded { stamp, by_host })
}
