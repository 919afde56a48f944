//! HTTP load for the gateway's tests and benchmark: a number of clients sending GETs in a loop,
//! counting answers that are 200 with a whole body, failures, and when the last failure came.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A load under way; [`Load::finish`] stops it and reports.
#[derive(Debug)]
pub struct Load {
    start: Instant,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    last_failure_ms: Arc<AtomicU64>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

/// What a load saw.
#[derive(Debug, Clone, Copy)]
pub struct LoadReport {
    /// 200 answers with their whole body.
    pub ok: u64,
    /// Anything else (error status, transport error, timeout, cut body).
    pub failed: u64,
    /// When the last failure happened, since the load began (`None`: no failure).
    pub last_failure: Option<Duration>,
}

impl Load {
    /// Starts `workers` clients, each sending `GET url` (with `Host: host` when given) one
    /// after the other, for at most `limit`.
    pub fn start(
        client: &reqwest::Client,
        url: &str,
        host: Option<&str>,
        workers: usize,
        limit: Duration,
    ) -> Self {
        let mut load = Self {
            start: Instant::now(),
            stop: Arc::default(),
            ok: Arc::default(),
            failed: Arc::default(),
            last_failure_ms: Arc::default(),
            workers: Vec::new(),
        };
        for _ in 0..workers {
            let (client, url, host) = (client.clone(), url.to_owned(), host.map(str::to_owned));
            let (stop, ok, failed) = (load.stop.clone(), load.ok.clone(), load.failed.clone());
            let (last, start) = (load.last_failure_ms.clone(), load.start);
            load.workers.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) && start.elapsed() < limit {
                    let mut request = client.get(&url);
                    if let Some(h) = &host {
                        request = request.header("host", h);
                    }
                    let good = match request.send().await {
                        Ok(r) if r.status() == 200 => r.bytes().await.is_ok(),
                        Ok(r) => {
                            log_failure(&failed, start, &r.status().to_string());
                            false
                        }
                        Err(e) => {
                            log_failure(&failed, start, &e.to_string());
                            false
                        }
                    };
                    if good {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        let at = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
                        last.fetch_max(at, Ordering::Relaxed);
                    }
                }
            }));
        }
        load
    }

    /// Time since the load began.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Waits for the time limit (or stops now with `now`), then reports.
    pub async fn finish(self, now: bool) -> LoadReport {
        if now {
            self.stop.store(true, Ordering::Relaxed);
        }
        for w in self.workers {
            let _ = w.await;
        }
        let failed = self.failed.load(Ordering::Relaxed);
        LoadReport {
            ok: self.ok.load(Ordering::Relaxed),
            failed,
            last_failure: (failed > 0)
                .then(|| Duration::from_millis(self.last_failure_ms.load(Ordering::Relaxed))),
        }
    }
}

/// The first few failures are printed, for the test's report.
fn log_failure(failed: &AtomicU64, start: Instant, what: &str) {
    if failed.load(Ordering::Relaxed) < 5 {
        eprintln!("load: failure at {:?}: {what}", start.elapsed());
    }
}
