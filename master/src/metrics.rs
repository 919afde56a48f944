//! Prometheus metrics: nodes by state, sessions, heartbeats, frame errors, enrolments.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::fleet::Fleet;

/// Label of a per-state gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// Display state.
    pub state: String,
}

/// Label of a per-code counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// Error code or result.
    pub code: String,
}

/// The master's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    nodes: Family<StateLabel, Gauge>,
    sessions: Gauge,
    /// Heartbeats received (rate() gives heartbeats/s).
    pub heartbeats: Counter,
    /// Frames refused, by protocol error code.
    pub frame_errors: Family<CodeLabel, Counter>,
    /// Enrolment attempts, by result.
    pub enrolments: Family<CodeLabel, Counter>,
    /// TLS handshakes refused (unknown, revoked, bad certificates).
    pub handshakes_refused: Counter,
    /// Audit probes, by outcome (`passed`, `failed`).
    pub probes: Family<CodeLabel, Counter>,
    /// Blob (artifact and recipe) bytes sent in `blob_chunk`s on fetch streams.
    pub blob_bytes_sent: Counter,
    /// Chunk requests answered `busy` because a peer can serve them (SPEC §16.4).
    pub chunks_rationed: Counter,
    /// 1 while this master holds the scheduler lease (several masters on one store).
    pub scheduling: Gauge,
    /// Masters registered in the store and alive, this one included.
    pub masters: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("hearth_master");
        let nodes = Family::<StateLabel, Gauge>::default();
        let sessions = Gauge::default();
        let heartbeats = Counter::default();
        let frame_errors = Family::<CodeLabel, Counter>::default();
        let enrolments = Family::<CodeLabel, Counter>::default();
        let handshakes_refused = Counter::default();
        let probes = Family::<CodeLabel, Counter>::default();
        let blob_bytes_sent = Counter::default();
        let chunks_rationed = Counter::default();
        let scheduling = Gauge::default();
        let masters = Gauge::default();
        registry.register(
            "scheduling",
            "1 while this master holds the scheduler lease",
            scheduling.clone(),
        );
        registry.register(
            "masters",
            "Live masters sharing the store, this one included",
            masters.clone(),
        );
        registry.register("nodes", "Enrolled nodes by state", nodes.clone());
        registry.register("sessions", "Open node sessions", sessions.clone());
        registry.register("heartbeats", "Heartbeats received", heartbeats.clone());
        registry.register(
            "frame_errors",
            "Frames refused, by error code",
            frame_errors.clone(),
        );
        registry.register(
            "enrolments",
            "Enrolment attempts, by result",
            enrolments.clone(),
        );
        registry.register(
            "handshakes_refused",
            "QUIC/TLS handshakes refused",
            handshakes_refused.clone(),
        );
        registry.register("probes", "Audit probes, by outcome", probes.clone());
        registry.register(
            "blob_bytes_sent",
            "Blob (artifact and recipe) bytes sent on fetch streams",
            blob_bytes_sent.clone(),
        );
        registry.register(
            "chunks_rationed",
            "Chunk requests from overlay nodes answered busy because a peer can serve them",
            chunks_rationed.clone(),
        );
        Self {
            registry,
            nodes,
            sessions,
            heartbeats,
            frame_errors,
            enrolments,
            handshakes_refused,
            probes,
            blob_bytes_sent,
            chunks_rationed,
            scheduling,
            masters,
        }
    }
}

/// Adds one to `family`'s counter for `code`.
fn count(family: &Family<CodeLabel, Counter>, code: &str) {
    family
        .get_or_create(&CodeLabel {
            code: code.to_owned(),
        })
        .inc();
}

impl Metrics {
    /// Counts a refused frame.
    pub fn frame_error(&self, code: &str) {
        count(&self.frame_errors, code);
    }

    /// Counts an audit probe's outcome.
    pub fn probe(&self, outcome: &str) {
        count(&self.probes, outcome);
    }

    /// Counts an enrolment result.
    pub fn enrolment(&self, code: &str) {
        count(&self.enrolments, code);
    }

    /// The text exposition, with fleet gauges refreshed.
    pub fn render(&self, fleet: &Fleet) -> String {
        let (by_state, sessions) = fleet.census();
        self.nodes.clear();
        for (state, n) in by_state {
            self.nodes
                .get_or_create(&StateLabel {
                    state: state.to_owned(),
                })
                .set(n as i64);
        }
        self.sessions.set(sessions as i64);
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
