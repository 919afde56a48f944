//! A real `hearth-gateway` process: `init` (its key), `run` on loopback (port 0 everywhere),
//! registered with a master through the real CLI, and TLS certificates for its host names.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::bin;
use crate::deploy::cli_ok;
use crate::master::MasterProc;

/// A running gateway; killed on drop.
#[derive(Debug)]
pub struct GatewayProc {
    /// Its data directory.
    pub dir: PathBuf,
    /// Its id (`hk-…`).
    pub id: String,
    /// The UDP address nodes dial.
    pub tunnel: SocketAddr,
    /// Plain HTTP listener.
    pub http: SocketAddr,
    /// HTTPS listener.
    pub https: SocketAddr,
    /// `/metrics` listener.
    pub metrics: SocketAddr,
    /// Directory of `<host>.crt` / `<host>.key`.
    pub certs: PathBuf,
    /// The overlay relay's UDP address, when started with `--overlay-listen`.
    pub overlay: Option<SocketAddr>,
    child: Child,
}

impl GatewayProc {
    /// `init` under `root/NAME`, `run` it against `master` with `extra` flags, and register it
    /// as `NAME` (`hearth gateway add`).
    pub fn start(root: &Path, name: &str, master: &MasterProc, extra: &[&str]) -> Self {
        let dir = root.join(name);
        let certs = dir.join("certs");
        std::fs::create_dir_all(&certs).expect("certs dir");
        let out = Command::new(bin("hearth-gateway"))
            .args(["init", "--data"])
            .arg(&dir)
            .output()
            .expect("gateway init");
        assert!(
            out.status.success(),
            "gateway init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(id.starts_with("hk-"), "init printed {id:?}");
        let log = std::fs::File::create(dir.join("gateway.log")).expect("log");
        let child = Command::new(bin("hearth-gateway"))
            .args(["run", "--data"])
            .arg(&dir)
            .args(["--master", &format!("http://{}", master.http)])
            .args(["--tunnel", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .args(["--https", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
            .args(["--tcp-bind", "127.0.0.1", "--certs"])
            .arg(&certs)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn gateway");
        let [tunnel, http, https, metrics] = crate::published_addrs(
            &dir,
            ["tunnel.addr", "http.addr", "https.addr", "metrics.addr"],
        );
        let overlay = extra
            .contains(&"--overlay-listen")
            .then(|| crate::published_addrs(&dir, ["overlay.addr"])[0]);
        let tunnel_text = tunnel.to_string();
        let overlay_text = overlay.map(|a| a.to_string());
        let mut add = vec![
            "gateway",
            "add",
            name,
            "--key",
            &id,
            "--tunnel-addr",
            &tunnel_text,
        ];
        if let Some(o) = &overlay_text {
            add.extend(["--overlay-addr", o]);
        }
        cli_ok(master, &add);
        Self {
            dir,
            id,
            tunnel,
            http,
            https,
            metrics,
            certs,
            overlay,
            child,
        }
    }

    /// Writes a self-signed certificate for `host` into the certificate directory and returns
    /// it (PEM), for a client to trust.
    pub fn add_certificate(&self, host: &str) -> String {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec![host.to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("self-signed");
        std::fs::write(self.certs.join(format!("{host}.key")), key.serialize_pem()).expect("key");
        std::fs::write(self.certs.join(format!("{host}.crt")), cert.pem()).expect("cert");
        cert.pem()
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.metrics))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Sum of the samples of `name` whose labels contain every `label="value"` given.
    pub async fn metric_sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .filter(|l| {
                labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Receipts the gateway issued (its `receipts/issued.jsonl`).
    pub fn issued_receipts(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("receipts/issued.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The gateway's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("gateway.log")).unwrap_or_default()
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        self.kill9();
    }
}
