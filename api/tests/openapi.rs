//! `api/openapi.json` is what the types generate: regenerates the document and fails when the
//! checked-in file differs (`HEARTH_BLESS=1 cargo test -p hearth-api --test openapi` rewrites
//! it; review the diff).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::path::Path;

#[test]
fn the_checked_in_document_is_the_generated_one() {
    let generated = hearth_api::openapi::document_text().expect("the document builds");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    if std::env::var_os("HEARTH_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "api/openapi.json is stale: run `HEARTH_BLESS=1 cargo test -p hearth-api --test openapi` and review the diff"
    );
}

#[test]
fn the_document_keeps_its_bounds() {
    let doc = hearth_api::openapi::document().unwrap();
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["DeploymentName"]["maxLength"], 56);
    assert_eq!(schemas["NodeId"]["pattern"], "^hn-[0-9a-v]{51}[0g]$");
    assert_eq!(schemas["CreateToken"]["additionalProperties"], false);
    assert_eq!(
        schemas["CreateToken"]["properties"]["label"]["maxLength"],
        200
    );
    let token = regex_free_token_check(
        schemas["CreatedToken"]["properties"]["token"]["pattern"]
            .as_str()
            .unwrap(),
    );
    assert!(token, "the token pattern names both ht1 and ht2");
    for path in [
        "/v1/tokens",
        "/v1/nodes/{id}/{action}",
        "/v1/deployments/{name}/update",
        "/v1/recipes/{name}/{version}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
}

fn regex_free_token_check(pattern: &str) -> bool {
    pattern.contains("^ht1:") && pattern.contains("^ht2:")
}
