//! `/metrics` (Prometheus text format) on `--metrics`, plain HTTP: the bytes counted per
//! node, instance, deployment and direction, links up, tunnels open and opened, receipts
//! issued, acknowledged and pending, and whatever the public side registers (requests by
//! status, connections). Figures owned elsewhere are read at each scrape, not copied.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::receipts::Receipts;
use crate::tunnel::Links;

/// Labels of `hearth_gateway_bytes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BytesLabels {
    direction: &'static str,
    node: String,
    instance: String,
    deployment: String,
}

/// The gateway's registry (prefix `hearth_gateway`).
#[derive(Debug)]
pub struct GatewayMetrics {
    registry: Registry,
}

impl GatewayMetrics {
    /// The registry, with the tunnel side's figures from `links` and `receipts`.
    pub fn new(links: Links, receipts: Option<Arc<Receipts>>) -> Self {
        let mut registry = Registry::with_prefix("hearth_gateway");
        registry.register_collector(Box::new(TunnelCollector { links, receipts }));
        Self { registry }
    }

    /// The registry, for other parts of the gateway to register their metrics in.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Serves `GET /metrics` on `listener` for ever.
pub async fn serve(metrics: Arc<GatewayMetrics>, listener: TcpListener) {
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("metrics accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = Arc::clone(&metrics);
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let metrics = Arc::clone(&metrics);
            async move { Ok::<_, Infallible>(answer(&req, &metrics)) }
        });
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
            if let Err(e) = conn.await {
                tracing::debug!("metrics connection: {e}");
            }
        });
    }
}

fn answer(req: &Request<hyper::body::Incoming>, metrics: &GatewayMetrics) -> Response<Full<Bytes>> {
    let mut response = if req.method() == Method::GET && req.uri().path() == "/metrics" {
        let mut r = Response::new(Full::from(metrics.render()));
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
        );
        r
    } else {
        let mut r = Response::new(Full::from("not found: the metrics are at GET /metrics\n"));
        *r.status_mut() = StatusCode::NOT_FOUND;
        r
    };
    response.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    response
}

/// Reads the meter, the links and the receipts at each scrape.
#[derive(Debug)]
struct TunnelCollector {
    links: Links,
    receipts: Option<Arc<Receipts>>,
}

impl Collector for TunnelCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let totals = self.links.meter().totals();
        let mut family = encoder.encode_descriptor(
            "bytes",
            "Bytes carried through tunnels, by direction, node, instance and deployment",
            None,
            MetricType::Counter,
        )?;
        for (key, t) in &totals {
            for (direction, value) in [("to_node", t.to_node), ("from_node", t.from_node)] {
                let labels = BytesLabels {
                    direction,
                    node: key.node.to_string(),
                    instance: key.instance.to_string(),
                    deployment: key.deployment.to_string(),
                };
                ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        let stats = self.links.stats();
        gauge(
            &mut encoder,
            "links_up",
            "Nodes with a gateway link up",
            stats.links_up,
        )?;
        gauge(
            &mut encoder,
            "tunnels_open",
            "Tunnels open now",
            stats.tunnels_open,
        )?;
        counter(
            &mut encoder,
            "tunnels",
            "Tunnels opened",
            stats.tunnels_total,
        )?;
        if let Some(receipts) = &self.receipts {
            let r = receipts.stats();
            counter(
                &mut encoder,
                "receipts_issued",
                "Bandwidth receipts issued",
                r.issued,
            )?;
            counter(
                &mut encoder,
                "receipts_acked",
                "Bandwidth receipts acknowledged by their node",
                r.acked,
            )?;
            gauge(
                &mut encoder,
                "receipts_pending",
                "Bandwidth receipts awaiting their node's ack",
                r.pending,
            )?;
        }
        Ok(())
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}
