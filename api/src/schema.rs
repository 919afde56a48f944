//! Schemas of the API's text forms where the document says more than the protocol's types: a
//! node id's last character, a token id, a SHA-256 and a Unix time in milliseconds, each under
//! the name the document's routes refer to. Fields use them with `#[schemars(with = "...")]`.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

/// Schema of a node id (`hn-` + 52 base32hex characters, 256 bits then 4 zero bits).
#[derive(Debug)]
pub struct NodeIdText;

impl JsonSchema for NodeIdText {
    fn schema_name() -> Cow<'static, str> {
        "NodeId".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^hn-[0-9a-v]{51}[0g]$",
            "description": "Node identity: `hn-` followed by the node's Ed25519 public key in RFC 4648 base32hex, lowercase, without padding (52 characters, the last one `0` or `g`: 256 bits then 4 zero bits). The 32 bytes must also be a point of the Ed25519 curve, which no pattern can say: an id that matches the pattern but is no valid key gets 400 `bad_request` (\"… is not a valid Ed25519 public key …\").",
            "examples": ["hn-k9p346n3d25rq4f5r37e3p3e28iq97jb6cn643dvrkttnjfbf5jg"]
        })
    }
}

/// Schema of a gateway id (`hk-` + 52 base32hex characters, 256 bits then 4 zero bits).
#[derive(Debug)]
pub(crate) struct SignerIdText;

impl JsonSchema for SignerIdText {
    fn schema_name() -> Cow<'static, str> {
        "GatewayId".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^hk-[0-9a-v]{51}[0g]$",
            "description": "A gateway's identity (`hearth-gateway init` prints it): `hk-` followed by its Ed25519 public key in RFC 4648 base32hex, lowercase, without padding. The 32 bytes must also be a point of the Ed25519 curve, which no pattern can say: an id that matches the pattern but is no valid key gets 400 `bad_request`.",
            "examples": ["hk-k9p346n3d25rq4f5r37e3p3e28iq97jb6cn643dvrkttnjfbf5jg"]
        })
    }
}

/// Schema of an IP socket address as text.
#[derive(Debug)]
pub(crate) struct SocketAddrText;

impl JsonSchema for SocketAddrText {
    fn schema_name() -> Cow<'static, str> {
        "SocketAddr".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^([0-9]{1,3}(\\.[0-9]{1,3}){3}|\\[[0-9a-fA-F:.]{2,45}\\]):[0-9]{1,5}$",
            "description": "An IP socket address: `192.0.2.1:7443` or `[2001:db8::1]:7443`. Numbers out of range (an octet over 255, a port over 65535), which the pattern cannot rule out, get 400 `bad_request`.",
            "examples": ["192.0.2.1:7443"]
        })
    }
}

/// Schema of an enrolment token id (4 random bytes as lowercase hex).
#[derive(Debug)]
pub struct TokenIdText;

impl JsonSchema for TokenIdText {
    fn schema_name() -> Cow<'static, str> {
        "TokenId".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[0-9a-f]{8}$",
            "description": "Public id of an enrolment token (4 random bytes as lowercase hex).",
            "examples": ["3f9a01c2"]
        })
    }
}

/// Schema of a SHA-256 digest in hex.
#[derive(Debug)]
pub struct Sha256Text;

impl JsonSchema for Sha256Text {
    fn schema_name() -> Cow<'static, str> {
        "Sha256".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[0-9a-f]{64}$",
            "description": "A SHA-256 digest as 64 lowercase hex characters.",
            "examples": ["e1d8e552330911f9f779f85b6f2c00a15e790dcc3fbb3b28f5da1d660a30c5b8"]
        })
    }
}

/// Schema of a snapshot id (its manifest's keyed hash) in hex.
#[derive(Debug)]
pub struct SnapshotIdText;

impl JsonSchema for SnapshotIdText {
    fn schema_name() -> Cow<'static, str> {
        "SnapshotId".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[0-9a-f]{64}$",
            "description": "A backup snapshot's id: 64 lowercase hex characters (`hearth backup list` shows the first 12).",
            "examples": ["5f0c6e1b2a9d4c3e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e"]
        })
    }
}

/// Schema of a Unix time in milliseconds.
#[derive(Debug)]
pub struct UnixMs;

impl JsonSchema for UnixMs {
    fn schema_name() -> Cow<'static, str> {
        "UnixMs".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "integer",
            "minimum": 0,
            "description": "Unix time in milliseconds.",
            "examples": [1_767_225_600_000_u64]
        })
    }
}

/// Schema of a deployment name: its instances are `<name>-<k>` and an instance id has at most
/// 63 characters, so a name has at most [`MAX_DEPLOYMENT_NAME`](crate::MAX_DEPLOYMENT_NAME).
#[derive(Debug)]
pub struct DeploymentName;

impl JsonSchema for DeploymentName {
    fn schema_name() -> Cow<'static, str> {
        "DeploymentName".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": crate::MAX_DEPLOYMENT_NAME,
            "pattern": "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$",
            "description": "A deployment name: a DNS label of at most 56 characters, since its instances are `<name>-<k>` and an instance id has at most 63.",
            "examples": ["web"]
        })
    }
}

/// Schema of a value that is always present and may be `null`: `oneOf [T, null]` (answers
/// write every optional value, as `null` when absent).
#[derive(Debug)]
pub struct Nullable<T>(std::marker::PhantomData<T>);

impl<T: JsonSchema> JsonSchema for Nullable<T> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        format!("Nullable_{}", T::schema_name()).into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let inner = generator.subschema_for::<T>();
        json_schema!({ "oneOf": [inner, { "type": "null" }] })
    }
}
