//! The checked-in JSON Schema must be exactly what the Rust types generate.
//! Regenerate with `HEARTH_BLESS=1 cargo test -p hearth-protocol --test schema`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::path::PathBuf;

use hearth_protocol::schema::{SCHEMA_PATH, envelope_schema_json};

#[test]
fn checked_in_schema_matches_the_types() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(SCHEMA_PATH);
    let generated = envelope_schema_json();
    if std::env::var_os("HEARTH_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write schema");
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "{} is out of date with the Rust types: run `HEARTH_BLESS=1 cargo test -p hearth-protocol --test schema` and commit the result",
        path.display()
    );
}

#[test]
fn schema_names_every_message_type() {
    let schema = envelope_schema_json();
    for tag in hearth_protocol::Message::TYPES {
        assert!(
            schema.contains(&format!("\"{tag}\"")),
            "schema lacks `{tag}`"
        );
    }
}
