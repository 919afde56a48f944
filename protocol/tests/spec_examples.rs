//! Every example of `SPEC.md` agrees with the codec and the golden vectors, so the document a
//! third-party implementation reads cannot drift from the code: each fenced JSON block decodes
//! as the message it shows and equals that type's `valid` vector; the §4.1 frame, the §6 worked
//! example and the §7.1 token parse; and the receiver rules the spec states for duplicate member
//! names are what the decoder does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::collections::BTreeMap;
use std::path::PathBuf;

use hearth_protocol::frame::{self, FrameError};
use hearth_protocol::{EnrolToken, Envelope, Message, PROTOCOL_VERSION};
use serde_json::Value;

fn spec() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("SPEC.md");
    std::fs::read_to_string(path).expect("SPEC.md")
}

/// The fenced code blocks of the spec: (info string, text, line of the opening fence).
fn blocks(spec: &str) -> Vec<(String, String, usize)> {
    let mut out = Vec::new();
    let mut open: Option<(String, String, usize)> = None;
    for (n, line) in spec.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => open = Some((info.trim().to_owned(), String::new(), n + 1)),
            (Some(_), Some(_)) => out.extend(open.take()),
            (Some((_, text, _)), None) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "SPEC.md ends inside a code block");
    out
}

/// `expect` of every vector named `NNN-<kind>-…`, by vector name.
fn vectors() -> BTreeMap<String, Value> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors");
    std::fs::read_dir(dir)
        .expect("vectors directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (v["name"].as_str().unwrap().to_owned(), v)
        })
        .collect()
}

fn reencoded(message: Message) -> Value {
    serde_json::to_value(Envelope {
        v: PROTOCOL_VERSION,
        message,
    })
    .unwrap()
}

#[test]
fn every_json_example_decodes_as_its_message_and_equals_its_vector() {
    let spec = spec();
    let vectors = vectors();
    let mut shown = Vec::new();
    for (info, text, line) in blocks(&spec).into_iter().filter(|b| b.0 == "json") {
        let payload = text.trim();
        let example: Value = serde_json::from_str(payload)
            .unwrap_or_else(|e| panic!("SPEC.md:{line}: the {info} example is not JSON: {e}"));
        let message = frame::decode_payload(payload.as_bytes())
            .unwrap_or_else(|e| panic!("SPEC.md:{line}: the example does not decode: {e}"));
        let tag = message.type_tag();
        assert_eq!(
            reencoded(message),
            example,
            "SPEC.md:{line}: `{tag}` example is not what the codec writes (abridged?)"
        );
        let vector = vectors
            .get(&format!("valid-{tag}"))
            .unwrap_or_else(|| panic!("SPEC.md:{line}: no vector valid-{tag}"));
        assert_eq!(
            vector["expect"]["message"], example,
            "SPEC.md:{line}: the `{tag}` example differs from vector valid-{tag}"
        );
        shown.push(tag);
    }
    // §13.3: the examples of §9 are those of every message type's vector.
    let mut want: Vec<_> = vectors
        .keys()
        .filter_map(|n| n.strip_prefix("valid-"))
        .collect();
    shown.sort_unstable();
    want.sort_unstable();
    assert_eq!(shown, want, "every message type has exactly one example");
}

#[test]
fn the_frame_of_section_4_1_decodes() {
    let spec = spec();
    let block = blocks(&spec)
        .into_iter()
        .find(|b| b.1.starts_with("00 00 00 "))
        .expect("the §4.1 frame example");
    let (header, payload) = block.1.trim().split_once("  ").unwrap();
    let mut bytes = hex::decode(header.replace(' ', "")).unwrap();
    bytes.extend_from_slice(payload.trim().as_bytes());
    let (message, used) = frame::decode(&bytes, frame::DEFAULT_MAX_FRAME).unwrap();
    assert_eq!(used, bytes.len(), "the header gives the payload's length");
    assert_eq!(
        reencoded(message),
        serde_json::from_str::<Value>(payload).unwrap()
    );
}

#[test]
fn the_worked_signing_example_of_section_6_is_vector_041() {
    let spec = spec();
    let intro = spec
        .find("Worked example (vector `041-sig-enrol-valid`")
        .expect("§6 worked example");
    let block = blocks(&spec[intro..]).into_iter().next().unwrap().1;
    // Each line starts with hex groups; the rest of the line describes them.
    let hex: String = block
        .lines()
        .flat_map(|l| {
            l.split_whitespace()
                .take_while(|t| t.chars().all(|c| c.is_ascii_hexdigit()))
        })
        .collect();
    let vector = &vectors()["sig-enrol-valid"];
    assert_eq!(hex, vector["signing_bytes_hex"].as_str().unwrap());
    let token_id = vector["body"]["token_id"].as_str().unwrap();
    assert!(
        spec[intro..].lines().next().unwrap().contains(token_id),
        "the example names the vector's token_id {token_id}"
    );
}

#[test]
fn the_token_of_section_7_1_parses() {
    let spec = spec();
    let at = spec.find("Example: `ht1:").expect("§7.1 token example") + "Example: `".len();
    let text = spec[at..].split('`').next().unwrap();
    text.parse::<EnrolToken>()
        .unwrap_or_else(|e| panic!("{text} is no valid token: {e}"));
    let at = spec.find("Example: `ht2:").expect("§7.1 ht2 example") + "Example: `".len();
    let text = spec[at..].split('`').next().unwrap();
    let token = text
        .parse::<EnrolToken>()
        .unwrap_or_else(|e| panic!("{text} is no valid token: {e}"));
    assert!(token.root.is_some(), "{text} pins a root");
    let at = spec
        .find("Example with addresses: `ht1:")
        .expect("§7.1 example with master addresses")
        + "Example with addresses: `".len();
    let text = spec[at..].split('`').next().unwrap();
    let token = text
        .parse::<EnrolToken>()
        .unwrap_or_else(|e| panic!("{text} is no valid token: {e}"));
    assert_eq!(token.masters.len(), 2, "{text} lists two masters");
    assert_eq!(
        token.to_string(),
        text,
        "the example is in its printed form"
    );
}

/// §1.3: what a receiver does with duplicate member names.
#[test]
fn duplicate_member_names_are_handled_as_the_spec_says() {
    let envelope = br#"{"v":1,"type":"heartbeat_ack","type":"heartbeat_ack","body":{"seq":1}}"#;
    assert!(matches!(
        frame::decode_payload(envelope),
        Err(FrameError::InvalidJson(_))
    ));
    let field = br#"{"v":1,"type":"heartbeat_ack","body":{"seq":1,"seq":2}}"#;
    assert!(matches!(
        frame::decode_payload(field),
        Err(FrameError::InvalidMessage { .. })
    ));
    let unknown = br#"{"v":1,"type":"heartbeat_ack","body":{"seq":1,"x":1,"x":2}}"#;
    assert!(frame::decode_payload(unknown).is_ok());

    let spec = spec();
    let start = spec.find("```json\n{\"body\":{\"facts\"").unwrap() + "```json\n".len();
    let example = spec[start..].lines().next().unwrap();
    let doubled = example.replace(
        r#""labels":{"storage":"ssd"}"#,
        r#""labels":{"storage":"hdd","storage":"ssd"}"#,
    );
    assert_ne!(doubled, example);
    let Message::EnrolRequest(req) = frame::decode_payload(doubled.as_bytes()).unwrap() else {
        panic!("not an enrol_request");
    };
    assert_eq!(
        req.facts.labels.get("storage").map(String::as_str),
        Some("ssd")
    );
}
