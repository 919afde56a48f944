//! Writes the golden test vectors to `protocol/vectors/` (run from the workspace root):
//! `cargo run -p hearth-protocol --example gen_vectors -- protocol/vectors`.
//!
//! Keys come from fixed seeds so the output is the same on every run. The checked-in files are
//! the reference; `tests/vectors.rs` checks the code against them, never the other way round.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use hearth_protocol::messages::audit::{AuditAnswer, AuditProbe};
use hearth_protocol::messages::backup::{
    BackupCommit, BackupFetch, BackupGet, BackupObject, BackupOffer, BackupPlan, BackupSecret,
    BackupStored, BackupWant, Holding, ObjectKind, Restore, SnapshotReport,
};
use hearth_protocol::messages::enrol::{EnrolAccepted, EnrolRequest};
use hearth_protocol::messages::error::ErrorCode;
use hearth_protocol::messages::fetch::{BlobChunk, FetchBlob, FetchMetadata, Metadata};
use hearth_protocol::messages::overlay::{
    Have, HaveRequest, Holdings, Overlay, OverlayRevision, Providers, ProvidersRequest, RelayRef,
    ReplicaOpen, ReplicaPeer, peer_id_bytes,
};
use hearth_protocol::messages::session::{Counters, Heartbeat, HeartbeatAck, Hello, Welcome};
use hearth_protocol::messages::standing::{Standing, StandingLevel};
use hearth_protocol::messages::state::{
    Assignment, DesiredState, DesiredStateAck, Endpoint, Health, InstanceReport, InstanceState,
    InstanceStatus, RecipeRef,
};
use hearth_protocol::messages::tunnel::{
    Addr, Drain, GatewayRef, GatewayRequest, ReceiptAck, TunnelOpen, TunnelReady,
};
use hearth_protocol::messages::usage::{
    BandwidthReceipt, RejectedReceipt, Settlement, UsageReport,
};
use hearth_protocol::{
    Arch, Blob, DEFAULT_MAX_FRAME, Envelope, Hex, MasterId, Message, NodeFacts, NodeId,
    PROTOCOL_VERSION, Resources, SecretKey, Sha256, SignerId, frame,
};
use serde_json::{Value, json};

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).context("usage: gen_vectors DIR")?);
    std::fs::create_dir_all(&dir)?;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            std::fs::remove_file(path)?;
        }
    }
    let keys = Keys::new();
    let mut n = 0;
    let mut write = |name: &str, value: Value| -> anyhow::Result<()> {
        n += 1;
        write_vector(&dir, n, name, value)
    };
    for (name, message) in sample_messages(&keys) {
        write(&name, valid_frame(&name, message)?)?;
    }
    for (name, description, bytes, code) in invalid_frames(&keys) {
        write(
            name,
            frame_vector(name, description, &bytes, json!({ "error": code.as_str() })),
        )?;
    }
    for (name, description, vector) in signature_vectors(&keys) {
        let mut v = vector;
        v["name"] = name.into();
        v["description"] = description.into();
        write(name, v)?;
    }
    for (name, description, role, text, expect) in identity_vectors(&keys) {
        write(
            name,
            json!({"name": name, "description": description, "kind": "identity", "role": role,
                   "text": text, "expect": expect}),
        )?;
    }
    for (name, description, text, expect) in token_vectors(&keys) {
        write(
            name,
            json!({"name": name, "description": description, "kind": "token", "text": text,
                   "expect": expect}),
        )?;
    }
    // Gateway-link vectors come last, so that adding them renumbered no earlier vector.
    for (name, message) in gateway_messages(&keys) {
        write(&name, valid_frame(&name, message)?)?;
    }
    for (name, description, vector) in gateway_request_vectors(&keys) {
        let mut v = vector;
        v["name"] = name.into();
        v["description"] = description.into();
        write(name, v)?;
    }
    // Uptime-standing vectors (issue 16) after those, for the same reason.
    for (name, message) in standing_messages() {
        write(&name, valid_frame(&name, message)?)?;
    }
    // Credit vectors (issue 16) after them, for the same reason.
    for (name, message) in credit_messages(&keys) {
        write(&name, valid_frame(&name, message)?)?;
    }
    // Overlay vectors (issue 17) after them, for the same reason.
    for (name, message) in overlay_messages(&keys) {
        write(&name, valid_frame(&name, message)?)?;
    }
    for (name, description, vector) in peer_id_vectors(&keys) {
        let mut v = vector;
        v["name"] = name.into();
        v["description"] = description.into();
        write(name, v)?;
    }
    // Backup vectors (SPEC §17) after them, for the same reason.
    for (name, message) in backup_messages(&keys) {
        write(&name, valid_frame(&name, message)?)?;
    }
    for (name, description, bytes) in invalid_backup_frames(&keys) {
        write(
            name,
            frame_vector(
                name,
                description,
                &bytes,
                json!({ "error": ErrorCode::InvalidMessage.as_str() }),
            ),
        )?;
    }
    // Several masters (SPEC §7.1, §8.6) after them, for the same reason.
    for (name, message) in master_list_messages(&keys) {
        write(&name, valid_frame(&name, message)?)?;
    }
    for (name, description, text, expect) in token_master_vectors(&keys) {
        write(
            name,
            json!({"name": name, "description": description, "kind": "token", "text": text,
                   "expect": expect}),
        )?;
    }
    println!("wrote {n} vectors to {}", dir.display());
    Ok(())
}

/// The `standing` message (§9.19).
fn standing_messages() -> Vec<(String, Message)> {
    vec![(
        "valid-standing".into(),
        Message::Standing(Standing {
            standing: StandingLevel::Warned,
            score_ppm: 912_500,
            probes: 288,
            since_ms: 1_790_000_000_000,
            reason: "online score 91.25% is below the warning threshold 95%".into(),
        }),
    )]
}

/// The vector of one valid message: its frame and the envelope it decodes to.
fn valid_frame(name: &str, message: Message) -> anyhow::Result<Value> {
    let bytes = frame::encode(&message, DEFAULT_MAX_FRAME)?;
    let envelope = Envelope {
        v: PROTOCOL_VERSION,
        message,
    };
    Ok(frame_vector(
        name,
        "A valid message.",
        &bytes,
        json!({ "message": envelope }),
    ))
}

struct Keys {
    node: SecretKey,
    master: SecretKey,
    gateway: SecretKey,
}

impl Keys {
    fn new() -> Self {
        Self {
            node: SecretKey::from_seed(&[0x11; 32]),
            master: SecretKey::from_seed(&[0x22; 32]),
            gateway: SecretKey::from_seed(&[0x33; 32]),
        }
    }
    fn node_id(&self) -> NodeId {
        NodeId::from_key(self.node.public())
    }
    fn master_id(&self) -> MasterId {
        MasterId::from_key(self.master.public())
    }
    fn gateway_id(&self) -> SignerId {
        SignerId::from_key(self.gateway.public())
    }
}

fn parse<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse()
        .unwrap_or_else(|e| panic!("sample value {s}: {e:?}"))
}

fn facts() -> NodeFacts {
    NodeFacts {
        agent: "hearth-node/0.1.0".into(),
        arch: Arch::X86_64,
        capacity: Resources {
            cpu_millis: 4000,
            memory_mib: 8192,
            disk_mib: 256_000,
            bandwidth_mbps: 500,
        },
        country: parse("BE"),
        isp: "Proximus".into(),
        asn: Some(5432),
        home: parse("home-ghent-12"),
        uplink_mbps: 500,
        downlink_mbps: 1000,
        cgroups_v2: true,
        labels: BTreeMap::from([("storage".into(), "ssd".into())]),
        power_w: None,
    }
}

fn enrol_request(keys: &Keys) -> EnrolRequest {
    let mut req = EnrolRequest {
        token_id: Hex([0x3f, 0x9a, 0x10, 0x07]),
        token_secret: Hex([0x5e; 16]),
        node: keys.node_id(),
        master: keys.master_id(),
        facts: facts(),
        proof: Hex([0; 64]),
    };
    req.proof = keys.node.sign(&req.signing_bytes());
    req
}

fn audit_answer(keys: &Keys) -> AuditAnswer {
    let mut a = AuditAnswer {
        probe: 77,
        nonce: Hex([0xab; 32]),
        issued_at_ms: 1_790_000_000_000,
        node: keys.node_id(),
        signature: Hex([0; 64]),
    };
    a.signature = keys.node.sign(&a.signing_bytes());
    a
}

fn receipt(keys: &Keys) -> BandwidthReceipt {
    let mut r = BandwidthReceipt {
        receipt: Hex([0x5c; 32]),
        gateway: keys.gateway_id(),
        node: keys.node_id(),
        instance: parse("web-0"),
        window_start_ms: 1_790_000_000_000,
        window_end_ms: 1_790_000_300_000,
        bytes_from_node: 1_234_567,
        bytes_to_node: 89_012,
        signature: Hex([0; 64]),
    };
    r.signature = keys.gateway.sign(&r.signing_bytes());
    r
}

fn report(state: InstanceState, health: Health) -> InstanceReport {
    InstanceReport {
        instance: parse("web-0"),
        generation: 3,
        state,
        health,
    }
}

fn sample_messages(keys: &Keys) -> Vec<(String, Message)> {
    let recipe = RecipeRef {
        name: parse("static-site"),
        version: "1.2.0".into(),
        sha256: Sha256::digest(b"recipe"),
    };
    let assignment = Assignment {
        backup: None,
        instance: parse("web-0"),
        deployment: parse("web"),
        generation: 3,
        recipe,
        params: BTreeMap::from([("site_title".into(), "Our co-op".into())]),
        ports: BTreeMap::from([("http".into(), 18080)]),
        resources: Resources {
            cpu_millis: 250,
            memory_mib: 64,
            disk_mib: 100,
            bandwidth_mbps: 10,
        },
        lease_ms: None,
        exposed: Vec::new(),
        peers: Vec::new(),
    };
    let mut singleton = assignment.clone();
    singleton.instance = parse("db-0");
    singleton.deployment = parse("db");
    singleton.lease_ms = Some(60_000);
    let messages = vec![
        Message::EnrolRequest(Box::new(enrol_request(keys))),
        Message::EnrolAccepted(EnrolAccepted {
            node: keys.node_id(),
            master: keys.master_id(),
            heartbeat_interval_ms: 5000,
        }),
        Message::Hello(Hello {
            min_version: 1,
            max_version: 1,
            node: keys.node_id(),
            agent: "hearth-node/0.1.0".into(),
            applied_revision: 41,
            overlay: None,
        }),
        Message::Welcome(Welcome {
            version: 1,
            master: keys.master_id(),
            heartbeat_interval_ms: 5000,
            server_time_ms: 1_790_000_000_000,
        }),
        Message::Heartbeat(Heartbeat {
            seq: 12,
            used: Resources {
                cpu_millis: 310,
                memory_mib: 420,
                disk_mib: 1500,
                bandwidth_mbps: 3,
            },
            applied_revision: 42,
            instances: vec![report(InstanceState::Running, Health::Healthy)],
            counters: Counters {
                bytes_in: 1000,
                bytes_out: 52_000,
                restarts: 1,
                sessions: 2,
            },
            ack: false,
        }),
        Message::HeartbeatAck(HeartbeatAck { seq: 12 }),
        Message::DesiredState(DesiredState {
            holds: Vec::new(),
            masters: Vec::new(),
            gateways: Vec::new(),
            revision: 42,
            instances: vec![assignment, singleton],
        }),
        Message::DesiredStateAck(DesiredStateAck { revision: 42 }),
        Message::InstanceStatus(InstanceStatus {
            report: report(InstanceState::Running, Health::Healthy),
            endpoints: vec![Endpoint {
                name: parse("http"),
                protocol: "tcp".into(),
                host: "127.0.0.1".into(),
                port: 18080,
            }],
            published: BTreeMap::from([("admin_password".into(), "generated-on-node".into())]),
            message: None,
        }),
        Message::AuditProbe(AuditProbe {
            probe: 77,
            nonce: Hex([0xab; 32]),
            issued_at_ms: 1_790_000_000_000,
        }),
        Message::AuditAnswer(audit_answer(keys)),
        Message::FetchMetadata(FetchMetadata {
            file: "timestamp.json".into(),
        }),
        Message::Metadata(Metadata {
            file: "timestamp.json".into(),
            data: Blob(b"{\"signed\":{}}".to_vec()),
        }),
        Message::FetchBlob(FetchBlob {
            sha256: Sha256::digest(b"artifact"),
            offset: 0,
            max_len: 1 << 30,
        }),
        Message::BlobChunk(BlobChunk {
            sha256: Sha256::digest(b"artifact"),
            offset: 0,
            total_len: 8,
            data: Blob(b"artifact".to_vec()),
        }),
        Message::UsageReport(UsageReport {
            report: 5,
            receipts: vec![receipt(keys)],
        }),
        Message::Settlement(Settlement {
            report: 5,
            credited_bytes: 1_323_579,
            rejected: vec![RejectedReceipt {
                receipt: Hex([0x01; 32]),
                code: ErrorCode::Duplicate,
            }],
        }),
        Message::error(
            ErrorCode::UnknownNode,
            "this node is not enrolled: run `hearth-node enrol`",
            true,
        ),
    ];
    messages
        .into_iter()
        .map(|m| (format!("valid-{}", m.type_tag()), m))
        .collect()
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

type Invalid = (&'static str, &'static str, Vec<u8>, ErrorCode);

fn invalid_frames(keys: &Keys) -> Vec<Invalid> {
    let node = keys.node_id().to_string();
    let ack = frame::encode(
        &Message::HeartbeatAck(HeartbeatAck { seq: 1 }),
        DEFAULT_MAX_FRAME,
    )
    .unwrap_or_default();
    let mut too_large = ((DEFAULT_MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
    too_large.extend_from_slice(b"{\"v\":1");
    let hello_bad_node = format!(
        r#"{{"v":1,"type":"hello","body":{{"min_version":1,"max_version":1,"node":"{}","agent":"x","applied_revision":0}}}}"#,
        node.replace("hn-", "hm-")
    );
    vec![
        ("frame-too-large", "Declared length is 1 MiB + 1: refused from the header alone.", too_large, ErrorCode::FrameTooLarge),
        ("frame-length-max-u32", "Declared length 0xFFFFFFFF.", vec![0xff; 8], ErrorCode::FrameTooLarge),
        ("truncated-header", "Only two bytes of the header.", vec![0, 0], ErrorCode::TruncatedFrame),
        ("truncated-payload", "The header promises more bytes than follow.", ack[..ack.len() - 3].to_vec(), ErrorCode::TruncatedFrame),
        ("empty-payload", "A zero-length frame is not an envelope.", framed(b""), ErrorCode::InvalidJson),
        ("not-json", "The payload is not JSON.", framed(b"hello there"), ErrorCode::InvalidJson),
        ("json-array", "JSON, but not an object.", framed(b"[1,2,3]"), ErrorCode::InvalidJson),
        ("missing-body", "An envelope must have a body.", framed(br#"{"v":1,"type":"heartbeat_ack"}"#), ErrorCode::InvalidJson),
        ("missing-version", "An envelope must have a version.", framed(br#"{"type":"heartbeat_ack","body":{"seq":1}}"#), ErrorCode::InvalidJson),
        ("invalid-utf8", "The payload is not UTF-8.", framed(b"{\"v\":1,\"type\":\"\xff\",\"body\":{}}"), ErrorCode::InvalidJson),
        ("trailing-garbage", "Bytes after the JSON object inside the frame.", framed(br#"{"v":1,"type":"heartbeat_ack","body":{"seq":1}} x"#), ErrorCode::InvalidJson),
        ("version-2", "A frame of protocol version 2.", framed(br#"{"v":2,"type":"heartbeat_ack","body":{"seq":1}}"#), ErrorCode::UnsupportedVersion),
        ("version-0", "A frame of protocol version 0.", framed(br#"{"v":0,"type":"heartbeat_ack","body":{"seq":1}}"#), ErrorCode::UnsupportedVersion),
        ("unknown-type", "A message type this version does not have.", framed(br#"{"v":1,"type":"reboot_now","body":{}}"#), ErrorCode::UnknownMessageType),
        ("missing-field", "A heartbeat_ack without its seq.", framed(br#"{"v":1,"type":"heartbeat_ack","body":{}}"#), ErrorCode::InvalidMessage),
        ("negative-seq", "Sequence numbers are unsigned.", framed(br#"{"v":1,"type":"heartbeat_ack","body":{"seq":-1}}"#), ErrorCode::InvalidMessage),
        ("wrong-role-prefix", "A hello whose node id carries the master prefix.", framed(hello_bad_node.as_bytes()), ErrorCode::InvalidMessage),
        ("short-nonce", "An audit probe whose nonce is 31 bytes.", framed(format!(r#"{{"v":1,"type":"audit_probe","body":{{"probe":1,"nonce":"{}","issued_at_ms":1}}}}"#, "ab".repeat(31)).as_bytes()), ErrorCode::InvalidMessage),
        ("uppercase-hex", "Hex must be lowercase.", framed(format!(r#"{{"v":1,"type":"audit_probe","body":{{"probe":1,"nonce":"{}","issued_at_ms":1}}}}"#, "AB".repeat(32)).as_bytes()), ErrorCode::InvalidMessage),
        ("bad-instance-id", "Instance ids are DNS labels.", framed(br#"{"v":1,"type":"instance_status","body":{"instance":"Web_0","generation":1,"state":"running","health":"healthy"}}"#), ErrorCode::InvalidMessage),
        ("unknown-instance-state", "An instance state this version does not have.", framed(br#"{"v":1,"type":"instance_status","body":{"instance":"web-0","generation":1,"state":"dancing","health":"healthy"}}"#), ErrorCode::InvalidMessage),
        ("bad-base64", "Blob data must be base64.", framed(br#"{"v":1,"type":"metadata","body":{"file":"root.json","data":"***"}}"#), ErrorCode::InvalidMessage),
    ]
}

fn frame_vector(name: &str, description: &str, bytes: &[u8], expect: Value) -> Value {
    json!({
        "name": name,
        "description": description,
        "kind": "frame",
        "max_frame": DEFAULT_MAX_FRAME,
        "frame_hex": hex::encode(bytes),
        "expect": expect,
    })
}

fn signature_vector(signed: &str, body: Value, signing_bytes: &[u8], valid: bool) -> Value {
    json!({
        "kind": "signature",
        "signed": signed,
        "body": body,
        "signing_bytes_hex": hex::encode(signing_bytes),
        "expect": { "valid": valid },
    })
}

fn signature_vectors(keys: &Keys) -> Vec<(&'static str, &'static str, Value)> {
    let enrol = enrol_request(keys);
    let answer = audit_answer(keys);
    let good = receipt(keys);
    let mut inflated = good.clone();
    inflated.bytes_from_node += 1_000_000;
    let mut flipped = answer.clone();
    flipped.signature.0[0] ^= 1;
    let mut other_node = enrol.clone();
    other_node.node = NodeId::from_key(SecretKey::from_seed(&[0x44; 32]).public());
    let to_value = |v: &dyn erased::ToValue| v.to_value();
    vec![
        (
            "sig-enrol-valid",
            "Enrolment proof signed by the node key.",
            signature_vector(
                "enrol_request",
                to_value(&enrol),
                &enrol.signing_bytes(),
                true,
            ),
        ),
        (
            "sig-enrol-other-key",
            "The proof of one key presented with another key.",
            signature_vector(
                "enrol_request",
                to_value(&other_node),
                &other_node.signing_bytes(),
                false,
            ),
        ),
        (
            "sig-audit-valid",
            "Audit answer signed by the node.",
            signature_vector(
                "audit_answer",
                to_value(&answer),
                &answer.signing_bytes(),
                true,
            ),
        ),
        (
            "sig-audit-flipped-bit",
            "One bit of the signature flipped.",
            signature_vector(
                "audit_answer",
                to_value(&flipped),
                &flipped.signing_bytes(),
                false,
            ),
        ),
        (
            "sig-receipt-valid",
            "Bandwidth receipt signed by the gateway.",
            signature_vector(
                "bandwidth_receipt",
                to_value(&good),
                &good.signing_bytes(),
                true,
            ),
        ),
        (
            "sig-receipt-inflated",
            "A node raised the byte count of a signed receipt.",
            signature_vector(
                "bandwidth_receipt",
                to_value(&inflated),
                &inflated.signing_bytes(),
                false,
            ),
        ),
    ]
}

/// The messages of the gateway link (§14), and a desired state naming gateways.
fn gateway_messages(keys: &Keys) -> Vec<(String, Message)> {
    let addr = |s: &str| -> Addr { s.parse::<std::net::SocketAddr>().unwrap().into() };
    let mut with_gateways = sample_messages(keys)
        .into_iter()
        .find_map(|(_, m)| match m {
            Message::DesiredState(d) => Some(d),
            _ => None,
        })
        .unwrap();
    with_gateways.revision = 43;
    with_gateways.gateways = vec![GatewayRef {
        gateway: keys.gateway_id(),
        addr: addr("192.0.2.10:7443"),
    }];
    if let Some(a) = with_gateways.instances.first_mut() {
        a.exposed = vec![parse("http")];
    }
    let mut out: Vec<(String, Message)> = [
        Message::TunnelOpen(TunnelOpen {
            instance: parse("web-0"),
            port: parse("http"),
            client: addr("[2001:db8::7]:51234"),
        }),
        Message::TunnelReady(TunnelReady {}),
        Message::Drain(Drain {
            instances: vec![parse("web-0")],
        }),
        Message::Receipt(receipt(keys)),
        Message::ReceiptAck(ReceiptAck {
            receipt: Hex([0x5c; 32]),
        }),
    ]
    .into_iter()
    .map(|m| (format!("valid-{}", m.type_tag()), m))
    .collect();
    out.push((
        "desired-state-with-gateways".into(),
        Message::DesiredState(with_gateways),
    ));
    out
}

fn gateway_request_vectors(keys: &Keys) -> Vec<(&'static str, &'static str, Value)> {
    let gateway = keys.gateway_id();
    let path = "/v1/gateway/routes?wait_s=25";
    let request = GatewayRequest {
        gateway: &gateway,
        unix_ms: 1_790_000_000_000,
        method: "GET",
        path,
    };
    let signature = keys.gateway.sign(&request.signing_bytes());
    let body = |path: &str| {
        json!({"gateway": gateway, "unix_ms": 1_790_000_000_000u64, "method": "GET",
               "path": path, "signature": signature})
    };
    let other = GatewayRequest {
        path: "/v1/gateway/routes",
        ..request.clone()
    };
    vec![
        (
            "sig-gateway-request-valid",
            "A gateway's signed request for the routing table.",
            signature_vector(
                "gateway_request",
                body(path),
                &request.signing_bytes(),
                true,
            ),
        ),
        (
            "sig-gateway-request-other-path",
            "The signature of one path presented with another.",
            signature_vector(
                "gateway_request",
                body("/v1/gateway/routes"),
                &other.signing_bytes(),
                false,
            ),
        ),
    ]
}

mod erased {
    pub(crate) trait ToValue {
        fn to_value(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> ToValue for T {
        fn to_value(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap_or_default()
        }
    }
}

fn identity_vectors(keys: &Keys) -> Vec<(&'static str, &'static str, &'static str, String, Value)> {
    let node = keys.node_id();
    let text = node.to_string();
    let ok = json!({ "key_hex": hex::encode(node.as_bytes()) });
    let mut last_bit = text.clone();
    last_bit.pop();
    last_bit.push('1'); // sets trailing bits that a canonical encoding leaves zero
    // y = 2 (little-endian) is not the y coordinate of any curve point.
    let mut off_curve = [0u8; 32];
    off_curve[0] = 2;
    vec![
        (
            "id-node-valid",
            "A node id and its key bytes.",
            "node",
            text.clone(),
            ok,
        ),
        (
            "id-master-valid",
            "A master id.",
            "master",
            keys.master_id().to_string(),
            json!({ "key_hex": hex::encode(keys.master_id().as_bytes()) }),
        ),
        (
            "id-wrong-prefix",
            "A node id parsed as a master id.",
            "master",
            text.clone(),
            json!({ "error": "wrong_prefix" }),
        ),
        (
            "id-uppercase",
            "Upper-case base32hex is not canonical.",
            "node",
            format!("hn-{}", text[3..].to_uppercase()),
            json!({ "error": "bad_encoding" }),
        ),
        (
            "id-short",
            "One character short.",
            "node",
            text[..text.len() - 1].to_owned(),
            json!({ "error": "bad_encoding" }),
        ),
        (
            "id-noncanonical-bits",
            "Trailing bits set in the last character.",
            "node",
            last_bit,
            json!({ "error": "bad_encoding" }),
        ),
        (
            "id-not-a-point",
            "32 bytes that are not an Ed25519 point.",
            "node",
            format!("hn-{}", data_encoding::BASE32_DNSSEC.encode(&off_curve)),
            json!({ "error": "not_a_key" }),
        ),
    ]
}

/// Enrolment token texts (§7.1), appended after the identity vectors so earlier numbers stay.
fn token_vectors(keys: &Keys) -> Vec<(&'static str, &'static str, String, Value)> {
    let master = keys.master_id().to_string();
    let (id, secret) = ("3f9a01c2", "5e".repeat(16));
    let root = Sha256::digest(b"hearth vector root").to_string();
    let ht2 = format!("ht2:{id}:{secret}:{master}:3:{root}");
    let ht1 = format!("ht1:{id}:{secret}:{master}");
    let malformed = |part: &str| json!({ "error": "malformed", "part": part });
    vec![
        (
            "token-ht2-valid",
            "An ht2 token pinning root version 3 by its SHA-256.",
            ht2.clone(),
            json!({ "token_id": id, "secret": secret, "master": master,
                    "root": { "version": 3, "sha256": root } }),
        ),
        (
            "token-ht1-valid",
            "An ht1 token: no root pinned.",
            ht1.clone(),
            json!({ "token_id": id, "secret": secret, "master": master, "root": null }),
        ),
        (
            "token-ht2-version-zero",
            "Root versions start at 1.",
            ht2.replace(":3:", ":0:"),
            malformed("root version"),
        ),
        (
            "token-ht2-short-hash",
            "The root hash is 63 hex characters.",
            ht2[..ht2.len() - 1].to_owned(),
            malformed("root sha256"),
        ),
        (
            "token-ht2-without-root",
            "ht2 needs six parts.",
            ht1.replacen("ht1", "ht2", 1),
            json!({ "error": "shape" }),
        ),
        (
            "token-unknown-format",
            "An unknown token format.",
            ht2.replacen("ht2", "ht3", 1),
            json!({ "error": "shape" }),
        ),
    ]
}

/// A desired state naming every master the node may connect to (SPEC §8.6).
fn master_list_messages(keys: &Keys) -> Vec<(String, Message)> {
    let addr = |s: &str| -> Addr { s.parse::<std::net::SocketAddr>().unwrap().into() };
    let mut with_masters = sample_messages(keys)
        .into_iter()
        .find_map(|(_, m)| match m {
            Message::DesiredState(d) => Some(d),
            _ => None,
        })
        .unwrap();
    with_masters.revision = 44;
    with_masters.masters = vec![
        addr("192.0.2.20:7000"),
        addr("192.0.2.21:7000"),
        addr("[2001:db8::20]:7000"),
    ];
    vec![(
        "desired-state-with-masters".into(),
        Message::DesiredState(with_masters),
    )]
}

/// Tokens with the `@` suffix of master addresses (§7.1).
fn token_master_vectors(keys: &Keys) -> Vec<(&'static str, &'static str, String, Value)> {
    let master = keys.master_id().to_string();
    let (id, secret) = ("3f9a01c2", "5e".repeat(16));
    let root = Sha256::digest(b"hearth vector root").to_string();
    let ht2 = format!("ht2:{id}:{secret}:{master}:3:{root}");
    let ht1 = format!("ht1:{id}:{secret}:{master}");
    vec![
        (
            "token-ht2-with-masters",
            "An ht2 token listing two master addresses, IPv4 and IPv6.",
            format!("{ht2}@192.0.2.20:7000,[2001:db8::20]:7000"),
            json!({ "token_id": id, "secret": secret, "master": master,
                    "root": { "version": 3, "sha256": root },
                    "masters": ["192.0.2.20:7000", "[2001:db8::20]:7000"] }),
        ),
        (
            "token-ht1-with-master",
            "An ht1 token listing one master address.",
            format!("{ht1}@[::1]:7000"),
            json!({ "token_id": id, "secret": secret, "master": master, "root": null,
                    "masters": ["[::1]:7000"] }),
        ),
        (
            "token-master-without-port",
            "A master address needs its port.",
            format!("{ht2}@192.0.2.20"),
            json!({ "error": "address", "address": "192.0.2.20" }),
        ),
        (
            "token-master-host-name",
            "Master addresses are IP addresses, not host names.",
            format!("{ht1}@192.0.2.20:7000,master.example:7000"),
            json!({ "error": "address", "address": "master.example:7000" }),
        ),
        (
            "token-master-twice",
            "A master address listed twice.",
            format!("{ht2}@192.0.2.20:7000,192.0.2.20:7000"),
            json!({ "error": "duplicate_address", "address": "192.0.2.20:7000" }),
        ),
        (
            "token-too-many-masters",
            "At most 16 master addresses.",
            format!(
                "{ht1}@{}",
                (1..=17)
                    .map(|i| format!("192.0.2.{i}:7000"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            json!({ "error": "too_many_addresses" }),
        ),
    ]
}

fn write_vector(dir: &Path, n: usize, name: &str, value: Value) -> anyhow::Result<()> {
    let path = dir.join(format!("{n:03}-{name}.json"));
    let mut text = serde_json::to_string_pretty(&value)?;
    text.push('\n');
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

/// Messages of the credits work: a settlement refusing a receipt with each code, and an
/// enrolment request declaring the home server's power draw.
fn credit_messages(keys: &Keys) -> Vec<(String, Message)> {
    let codes = [
        ErrorCode::BadSignature,
        ErrorCode::UnknownSigner,
        ErrorCode::NotYours,
        ErrorCode::Duplicate,
        ErrorCode::Overlapping,
        ErrorCode::BadWindow,
    ];
    let rejected = (1u8..)
        .zip(codes)
        .map(|(i, code)| RejectedReceipt {
            receipt: Hex([i; 32]),
            code,
        })
        .collect();
    let mut enrol = enrol_request(keys);
    enrol.facts.power_w = Some(35);
    vec![
        (
            "frame-settlement-every-code".into(),
            Message::Settlement(Settlement {
                report: 6,
                credited_bytes: 0,
                rejected,
            }),
        ),
        (
            "frame-enrol-request-power".into(),
            Message::EnrolRequest(Box::new(enrol)),
        ),
    ]
}

/// The overlay's messages (§16): a full member set and a delta (both with relays), holdings,
/// providers, have, replica_open, a hello naming the set it holds, a desired state whose
/// assignment lists its peers, and the `busy` error.
fn overlay_messages(keys: &Keys) -> Vec<(String, Message)> {
    let other = NodeId::from_key(SecretKey::from_seed(&[0x44; 32]).public());
    let third = NodeId::from_key(SecretKey::from_seed(&[0x55; 32]).public());
    let relays = vec![RelayRef {
        relay: keys.gateway_id(),
        addr: parse("/ip4/192.0.2.10/udp/7443/quic-v1"),
    }];
    let artifact = Sha256::digest(b"artifact");
    let mut with_peers = sample_messages(keys)
        .into_iter()
        .find_map(|(_, m)| match m {
            Message::DesiredState(d) => Some(d),
            _ => None,
        })
        .unwrap();
    with_peers.revision = 44;
    with_peers.instances.truncate(1);
    if let Some(a) = with_peers.instances.first_mut() {
        a.peers = vec![ReplicaPeer {
            instance: parse("web-1"),
            node: other,
        }];
    }
    let hello = sample_messages(keys)
        .into_iter()
        .find_map(|(_, m)| match m {
            Message::Hello(mut h) => {
                h.overlay = Some(OverlayRevision {
                    epoch: 0x5eed_0001,
                    seq: 7,
                });
                Some(h)
            }
            _ => None,
        })
        .unwrap();
    vec![
        (
            "valid-overlay".into(),
            Message::Overlay(Overlay {
                revision: OverlayRevision {
                    epoch: 0x5eed_0001,
                    seq: 7,
                },
                full: true,
                add: vec![keys.node_id(), other],
                remove: Vec::new(),
                relays: relays.clone(),
            }),
        ),
        (
            "overlay-delta".into(),
            Message::Overlay(Overlay {
                revision: OverlayRevision {
                    epoch: 0x5eed_0001,
                    seq: 8,
                },
                full: false,
                add: vec![third],
                remove: vec![other],
                relays,
            }),
        ),
        (
            "valid-holdings".into(),
            Message::Holdings(Holdings {
                complete: vec![artifact],
                partial: vec![Sha256::digest(b"half")],
            }),
        ),
        (
            "valid-providers_request".into(),
            Message::ProvidersRequest(ProvidersRequest { sha256: artifact }),
        ),
        (
            "valid-providers".into(),
            Message::Providers(Providers {
                sha256: artifact,
                peers: vec![other],
            }),
        ),
        (
            "valid-have_request".into(),
            Message::HaveRequest(HaveRequest { sha256: artifact }),
        ),
        (
            "valid-have".into(),
            Message::Have(Have {
                sha256: artifact,
                chunks: Blob(vec![0b1011_0111, 0b0000_0001]),
            }),
        ),
        (
            "valid-replica_open".into(),
            Message::ReplicaOpen(ReplicaOpen {
                instance: parse("web-1"),
                from: parse("web-0"),
            }),
        ),
        ("hello-with-overlay".into(), Message::Hello(hello)),
        (
            "desired-state-with-peers".into(),
            Message::DesiredState(with_peers),
        ),
        (
            "error-busy".into(),
            Message::error(
                ErrorCode::Busy,
                "upload budget spent: try another peer",
                false,
            ),
        ),
    ]
}

/// A node key's libp2p peer id (§16.1): the identity multihash bytes and their base58btc text.
fn peer_id_vectors(keys: &Keys) -> Vec<(&'static str, &'static str, Value)> {
    let key = *keys.node_id().as_bytes();
    let bytes = peer_id_bytes(&key);
    vec![(
        "peer-id-of-node-key",
        "A node key's libp2p peer id: identity multihash of the protobuf Ed25519 key.",
        json!({"kind": "peer_id", "key_hex": hex::encode(key),
               "expect": {"peer_id_hex": hex::encode(bytes),
                          "peer_id_text": bs58::encode(bytes).into_string()}}),
    )]
}

/// A sealed chunk's id: the plaintext `hello` under the key of `backup/vectors/backup-v1.json`
/// (55 bytes sealed).
const CHUNK: &str = "d15747798d1fd88b0757aa6e6bac799a21b0028dcf991c8ad3c52215557d755e";
/// That snapshot's manifest id (215 bytes sealed).
const SNAPSHOT: &str = "51f8bc7195bddaceb063576f26718e65102207e5d13c2e6447a4c2993bdf24f9";
/// An older manifest's id.
const OLDER_SNAPSHOT: &str = "cb33bccbd750b8bd71984188eeb75279699007f29d5a6ae80dcc028087db4902";

/// The key of `backup/vectors/backup-v1.json`: bytes 0, 1, …, 31.
fn backup_key() -> BackupSecret {
    let mut key = [0u8; 32];
    for (i, b) in (0u8..).zip(key.iter_mut()) {
        *b = i;
    }
    BackupSecret(Hex(key))
}

/// A desired state whose assignment carries a backup plan (with a restore), and a deployment
/// whose copies the node keeps.
fn desired_state_with_backup(keys: &Keys) -> DesiredState {
    let other = NodeId::from_key(SecretKey::from_seed(&[0x44; 32]).public());
    let third = NodeId::from_key(SecretKey::from_seed(&[0x55; 32]).public());
    let mut with_backup = sample_messages(keys)
        .into_iter()
        .find_map(|(_, m)| match m {
            Message::DesiredState(d) => Some(d),
            _ => None,
        })
        .unwrap();
    with_backup.revision = 45;
    with_backup.instances.truncate(1);
    if let Some(a) = with_backup.instances.first_mut() {
        a.backup = Some(BackupPlan {
            key: backup_key(),
            every_s: 3600,
            keep: 24,
            now: 0,
            holders: vec![other, third],
            restore: Some(Restore {
                snapshot: parse(SNAPSHOT),
                seq: 0,
                from: vec![other, third],
            }),
        });
    }
    with_backup.holds = vec![Holding {
        deployment: parse("notes"),
        replicas: vec![other],
    }];
    with_backup
}

/// The backup messages (§17): a snapshot report, the push and read streams' messages, a desired
/// state with a backup plan and holdings, an instance restoring, and the `not_yours` error.
fn backup_messages(keys: &Keys) -> Vec<(String, Message)> {
    let other = NodeId::from_key(SecretKey::from_seed(&[0x44; 32]).public());
    let third = NodeId::from_key(SecretKey::from_seed(&[0x55; 32]).public());
    let chunk = parse(CHUNK);
    let snapshot = parse(SNAPSHOT);
    let mut out: Vec<(String, Message)> = [
        Message::SnapshotReport(SnapshotReport {
            instance: parse("web-0"),
            deployment: parse("web"),
            snapshot,
            taken_ms: 1_796_400_000_000,
            bytes: 5,
            stored_bytes: 270,
            sent_bytes: 540,
            held_by: vec![other, third],
        }),
        Message::BackupOffer(BackupOffer {
            deployment: parse("web"),
            snapshot,
            objects: vec![chunk],
        }),
        Message::BackupWant(BackupWant {
            objects: vec![chunk],
        }),
        Message::BackupObject(BackupObject {
            kind: ObjectKind::Chunk,
            id: chunk,
            len: 55,
        }),
        Message::BackupCommit(BackupCommit {
            snapshot,
            keep: vec![snapshot, parse(OLDER_SNAPSHOT)],
        }),
        Message::BackupStored(BackupStored {
            snapshot,
            held_bytes: 391,
        }),
        Message::BackupGet(BackupGet {
            deployment: parse("web"),
            snapshot,
        }),
        Message::BackupFetch(BackupFetch {
            objects: vec![chunk],
        }),
    ]
    .into_iter()
    .map(|m| (format!("valid-{}", m.type_tag()), m))
    .collect();
    out.push((
        "desired-state-with-backup".into(),
        Message::DesiredState(desired_state_with_backup(keys)),
    ));
    out.push((
        "instance-status-restoring".into(),
        Message::InstanceStatus(InstanceStatus {
            report: report(InstanceState::Restoring, Health::Unknown),
            endpoints: Vec::new(),
            published: BTreeMap::new(),
            message: Some("restoring snapshot 51f8bc7195bd from 2 holders".into()),
        }),
    ));
    out.push((
        "error-not-yours".into(),
        Message::error(
            ErrorCode::NotYours,
            "this node keeps no copies of deployment web for you",
            false,
        ),
    ));
    out
}

/// Backup frames a decoder must refuse as `invalid_message`. The types cannot hold a 31-byte
/// key, so that one is the valid desired state's encoding with the key cut short.
fn invalid_backup_frames(keys: &Keys) -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let object = |kind: &str, id: &str| {
        framed(
            format!(
                r#"{{"v":1,"type":"backup_object","body":{{"kind":"{kind}","id":"{id}","len":55}}}}"#
            )
            .as_bytes(),
        )
    };
    let desired = frame::encode(
        &Message::DesiredState(desired_state_with_backup(keys)),
        DEFAULT_MAX_FRAME,
    )
    .unwrap();
    let key = backup_key().0.to_string();
    let short_key = String::from_utf8(desired[4..].to_vec())
        .unwrap()
        .replacen(&key, &key[..62], 1);
    vec![
        (
            "backup-object-bad-id",
            "An object id must be 64 lowercase hex digits.",
            object("chunk", &"zz".repeat(32)),
        ),
        (
            "backup-object-unknown-kind",
            "An object is a chunk or a snapshot, nothing else.",
            object("manifest", CHUNK),
        ),
        (
            "backup-plan-short-key",
            "A backup key of 31 bytes: the key is exactly 32.",
            framed(short_key.as_bytes()),
        ),
    ]
}
