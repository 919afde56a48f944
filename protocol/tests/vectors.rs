//! Runs every golden vector in `vectors/` against this implementation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::path::PathBuf;

use hearth_protocol::messages::audit::AuditAnswer;
use hearth_protocol::messages::enrol::EnrolRequest;
use hearth_protocol::messages::tunnel::GatewayRequest;
use hearth_protocol::messages::usage::BandwidthReceipt;
use hearth_protocol::{
    EnrolToken, Envelope, IdentityError, MasterId, Message, NodeId, PROTOCOL_VERSION, Signature,
    SignerId, TokenError, frame,
};
use serde_json::Value;

fn vectors() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .expect("vectors directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("readable vector");
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                serde_json::from_str(&text).expect("vector is JSON"),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn check_frame(v: &Value) -> Result<(), String> {
    let bytes =
        hex::decode(v["frame_hex"].as_str().ok_or("frame_hex")?).map_err(|e| e.to_string())?;
    let max = v["max_frame"].as_u64().ok_or("max_frame")? as usize;
    let got = frame::decode(&bytes, max);
    match (&v["expect"]["message"], &v["expect"]["error"], got) {
        (want, Value::Null, Ok((message, used))) => {
            let got = serde_json::to_value(Envelope {
                v: PROTOCOL_VERSION,
                message: message.clone(),
            })
            .unwrap();
            if &got != want {
                return Err(format!("decoded {got} but expected {want}"));
            }
            if used != bytes.len() {
                return Err(format!("used {used} of {} bytes", bytes.len()));
            }
            // The incremental decoder agrees, fed one byte at a time.
            let mut dec = frame::FrameDecoder::new(max);
            let mut seen = None;
            for b in &bytes {
                dec.push(std::slice::from_ref(b));
                if let Some(m) = dec.next_message().map_err(|e| e.to_string())? {
                    seen = Some(m);
                }
            }
            (seen == Some(message))
                .then_some(())
                .ok_or("incremental decoder disagrees".into())
        }
        (Value::Null, Value::String(code), Err(e)) if e.code().as_str() == code => Ok(()),
        (_, want, got) => Err(format!("expected {want}, got {got:?}")),
    }
}

fn check_signature(v: &Value) -> Result<(), String> {
    let body = v["body"].clone();
    let (bytes, verified) = match v["signed"].as_str() {
        Some("enrol_request") => {
            let m: EnrolRequest = serde_json::from_value(body).map_err(|e| e.to_string())?;
            (
                m.signing_bytes(),
                m.node.verify(&m.signing_bytes(), &m.proof).is_ok(),
            )
        }
        Some("audit_answer") => {
            let m: AuditAnswer = serde_json::from_value(body).map_err(|e| e.to_string())?;
            (m.signing_bytes(), m.verify().is_ok())
        }
        Some("bandwidth_receipt") => {
            let m: BandwidthReceipt = serde_json::from_value(body).map_err(|e| e.to_string())?;
            (m.signing_bytes(), m.verify().is_ok())
        }
        Some("gateway_request") => {
            let field = |k: &str| body[k].as_str().map(str::to_owned).ok_or(format!("no {k}"));
            let gateway: SignerId = field("gateway")?.parse().map_err(|e| format!("{e}"))?;
            let signature: Signature =
                serde_json::from_value(body["signature"].clone()).map_err(|e| e.to_string())?;
            let (method, path) = (field("method")?, field("path")?);
            let request = GatewayRequest {
                gateway: &gateway,
                unix_ms: body["unix_ms"].as_u64().ok_or("no unix_ms")?,
                method: &method,
                path: &path,
            };
            (request.signing_bytes(), request.verify(&signature).is_ok())
        }
        other => return Err(format!("unknown signed payload {other:?}")),
    };
    if hex::encode(&bytes) != v["signing_bytes_hex"].as_str().unwrap_or_default() {
        return Err("canonical signing bytes differ".into());
    }
    (Some(verified) == v["expect"]["valid"].as_bool())
        .then_some(())
        .ok_or(format!("signature valid = {verified}"))
}

fn check_identity(v: &Value) -> Result<(), String> {
    let text = v["text"].as_str().ok_or("text")?;
    let parsed = match v["role"].as_str() {
        Some("node") => text.parse::<NodeId>().map(|id| *id.as_bytes()),
        Some("master") => text.parse::<MasterId>().map(|id| *id.as_bytes()),
        other => return Err(format!("unknown role {other:?}")),
    };
    let got = match parsed {
        Ok(bytes) => serde_json::json!({ "key_hex": hex::encode(bytes) }),
        Err(IdentityError::WrongPrefix { .. }) => serde_json::json!({ "error": "wrong_prefix" }),
        Err(IdentityError::BadEncoding(_) | IdentityError::NonCanonical(_)) => {
            serde_json::json!({ "error": "bad_encoding" })
        }
        Err(IdentityError::NotAKey(_)) => serde_json::json!({ "error": "not_a_key" }),
        Err(e) => return Err(format!("unexpected error {e}")),
    };
    (got == v["expect"])
        .then_some(())
        .ok_or(format!("got {got}"))
}

fn check_token(v: &Value) -> Result<(), String> {
    let got = match v["text"].as_str().ok_or("text")?.parse::<EnrolToken>() {
        Ok(t) => {
            let mut got = serde_json::json!({
                "token_id": t.id.to_string(),
                "secret": t.secret.to_string(),
                "master": t.master.to_string(),
                "root": t.root.map(|r| serde_json::json!({
                    "version": r.version,
                    "sha256": r.sha256.to_string(),
                })),
            });
            // `masters` is named only by tokens with the `@` suffix.
            if !t.masters.is_empty() {
                got["masters"] = t.masters.iter().map(|a| a.to_string()).collect();
            }
            got
        }
        Err(TokenError::Shape) => serde_json::json!({ "error": "shape" }),
        Err(TokenError::Part(part)) => serde_json::json!({ "error": "malformed", "part": part }),
        Err(TokenError::Master(_)) => serde_json::json!({ "error": "master" }),
        Err(TokenError::Address(text)) => {
            serde_json::json!({ "error": "address", "address": text })
        }
        Err(TokenError::DuplicateAddress(addr)) => {
            serde_json::json!({ "error": "duplicate_address", "address": addr.to_string() })
        }
        Err(TokenError::TooManyAddresses(_)) => {
            serde_json::json!({ "error": "too_many_addresses" })
        }
    };
    (got == v["expect"])
        .then_some(())
        .ok_or(format!("got {got}"))
}

/// A node key's libp2p peer id (§16.1), as bytes and as base58btc text.
fn check_peer_id(v: &Value) -> Result<(), String> {
    let key: [u8; 32] = hex::decode(v["key_hex"].as_str().ok_or("key_hex")?)
        .map_err(|e| e.to_string())?
        .try_into()
        .map_err(|_| "key_hex is not 32 bytes")?;
    let bytes = hearth_protocol::messages::overlay::peer_id_bytes(&key);
    let got = serde_json::json!({
        "peer_id_hex": hex::encode(bytes),
        "peer_id_text": bs58::encode(bytes).into_string(),
    });
    (got == v["expect"])
        .then_some(())
        .ok_or(format!("got {got}"))
}

#[test]
fn every_golden_vector_passes() {
    let all = vectors();
    assert!(all.len() >= 30, "only {} vectors", all.len());
    let mut failures = Vec::new();
    for (file, v) in &all {
        let result = match v["kind"].as_str() {
            Some("frame") => check_frame(v),
            Some("signature") => check_signature(v),
            Some("identity") => check_identity(v),
            Some("token") => check_token(v),
            Some("peer_id") => check_peer_id(v),
            other => Err(format!("unknown kind {other:?}")),
        };
        if let Err(e) = result {
            failures.push(format!("{file}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "failing vectors:\n{}",
        failures.join("\n")
    );
}

#[test]
fn vectors_cover_every_message_type_and_error_class() {
    let all = vectors();
    for tag in Message::TYPES {
        assert!(
            all.iter()
                .any(|(_, v)| v["expect"]["message"]["type"] == *tag),
            "no valid vector for `{tag}`"
        );
    }
    for code in [
        "frame_too_large",
        "truncated_frame",
        "invalid_json",
        "unsupported_version",
        "unknown_message_type",
        "invalid_message",
    ] {
        assert!(
            all.iter().any(|(_, v)| v["expect"]["error"] == code),
            "no vector for {code}"
        );
    }
    for valid in [true, false] {
        assert!(all.iter().any(|(_, v)| v["expect"]["valid"] == valid));
    }
}
