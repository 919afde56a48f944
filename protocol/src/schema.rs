//! The JSON Schema of every message, generated from the Rust types.

use schemars::generate::SchemaSettings;

use crate::messages::Envelope;

/// Path of the checked-in schema, relative to the protocol crate.
pub const SCHEMA_PATH: &str = "schema/hearth-protocol-v1.schema.json";

/// The schema of a frame payload (the envelope and every message), as pretty JSON with a
/// trailing newline: exactly the bytes of the checked-in file.
pub fn envelope_schema_json() -> String {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let mut schema = generator.into_root_schema_for::<Envelope>();
    schema.insert(
        "$id".into(),
        "https://hearth.coop/protocol/v1/envelope.schema.json".into(),
    );
    schema.insert("title".into(), "Hearth protocol v1 frame payload".into());
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}
