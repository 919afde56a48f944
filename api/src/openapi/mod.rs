//! The OpenAPI 3.1 document of the operator API, generated.
//!
//! The routes (paths, parameters, shared responses, security, prose) are the hand-written table
//! `routes.json` beside this file; every schema under `components/schemas` is generated from this
//! crate's types with schemars, so a field, pattern or bound changed in a type changes the
//! document. `api/openapi.json` is the result, checked in; `cargo test -p hearth-api --test
//! openapi` fails when it is stale (`HEARTH_BLESS=1` rewrites it).

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value};

use crate::schema::{NodeIdText, Sha256Text, TokenIdText};
use crate::{
    BackupRequested, BackupsView, CheckpointView, ConsistencyProofView, CreateToken, CreatedToken,
    CreditsView, DeploymentSpec, DeploymentView, ErrorBody, GatewaySpec, GatewayView,
    InclusionProofView, InstanceView, ListedRecipe, MemberSet, NodeLedger, NodeView, PlaceInstance,
    PlacedInstance, ProbeOutcome, RemovedInstance, RestoreRequested, RestoreSpec, RevokedToken,
    RouteTable, StoredBlob, TokenView, UpdateRequest, WhereView, WitnessSpec,
};

/// The hand-written part: routes and everything but the schemas.
const ROUTES: &str = include_str!("routes.json");

/// Why the document could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OpenApiError {
    /// `routes.json` is not a JSON object.
    #[error("api/src/openapi/routes.json is not a JSON object: {0}")]
    Routes(String),
    /// A `$ref` names a schema no type generates.
    #[error("{0} is referred to but no type generates it")]
    Dangling(String),
}

/// The whole document, as JSON.
pub fn document() -> Result<Value, OpenApiError> {
    let mut doc: Map<String, Value> =
        serde_json::from_str(ROUTES).map_err(|e| OpenApiError::Routes(e.to_string()))?;
    let schemas = schemas();
    if let Some(Value::Object(info)) = doc.get_mut("info") {
        info.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    }
    let components = doc
        .entry("components")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(components) = components else {
        return Err(OpenApiError::Routes("`components` is not an object".into()));
    };
    components.insert("schemas".into(), Value::Object(schemas));
    let doc = Value::Object(doc);
    check_refs(&doc, &doc)?;
    Ok(doc)
}

/// The document as the checked-in file holds it (pretty JSON, final newline).
pub fn document_text() -> Result<String, OpenApiError> {
    let doc = document()?;
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    Ok(text)
}

/// Every schema the routes use, and the ones those use, by name.
fn schemas() -> Map<String, Value> {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    let mut generator = settings.into_generator();
    add::<ErrorBody>(&mut generator);
    add::<TokenIdText>(&mut generator);
    add::<NodeIdText>(&mut generator);
    add::<Sha256Text>(&mut generator);
    add::<hearth_protocol::messages::state::InstanceId>(&mut generator);
    add::<hearth_protocol::messages::state::RecipeRef>(&mut generator);
    add::<crate::CreateUser>(&mut generator);
    add::<crate::CreatedUser>(&mut generator);
    add::<crate::UserView>(&mut generator);
    add::<crate::RemovedUser>(&mut generator);
    add::<crate::WhoAmI>(&mut generator);
    add::<crate::UserName>(&mut generator);
    add::<CreateToken>(&mut generator);
    add::<CreatedToken>(&mut generator);
    add::<TokenView>(&mut generator);
    add::<RevokedToken>(&mut generator);
    add::<NodeView>(&mut generator);
    add::<ProbeOutcome>(&mut generator);
    add::<StoredBlob>(&mut generator);
    add::<PlaceInstance>(&mut generator);
    add::<PlacedInstance>(&mut generator);
    add::<RemovedInstance>(&mut generator);
    add::<InstanceView>(&mut generator);
    add::<DeploymentSpec>(&mut generator);
    add::<UpdateRequest>(&mut generator);
    add::<DeploymentView>(&mut generator);
    add::<ListedRecipe>(&mut generator);
    add::<GatewaySpec>(&mut generator);
    add::<GatewayView>(&mut generator);
    add::<RouteTable>(&mut generator);
    add::<MemberSet>(&mut generator);
    add::<CheckpointView>(&mut generator);
    add::<InclusionProofView>(&mut generator);
    add::<ConsistencyProofView>(&mut generator);
    add::<WitnessSpec>(&mut generator);
    add::<NodeLedger>(&mut generator);
    add::<CreditsView>(&mut generator);
    add::<BackupsView>(&mut generator);
    add::<BackupRequested>(&mut generator);
    add::<RestoreSpec>(&mut generator);
    add::<RestoreRequested>(&mut generator);
    add::<WhereView>(&mut generator);
    let mut defs = generator.take_definitions(true);
    defs.sort_keys();
    for schema in defs.values_mut() {
        tidy(schema);
    }
    for (name, examples) in examples() {
        if let Some(Value::Object(schema)) = defs.get_mut(name) {
            schema.entry("examples").or_insert(examples);
        }
    }
    defs
}

/// Examples for the protocol's text types, which carry none (clients and fuzzers start from
/// them: schemathesis builds its first requests from examples).
fn examples() -> [(&'static str, Value); 5] {
    [
        ("InstanceId", serde_json::json!(["web-0"])),
        ("Name", serde_json::json!(["web", "static-site"])),
        (
            "Hex32",
            serde_json::json!(["e1d8e552330911f9f779f85b6f2c00a15e790dcc3fbb3b28f5da1d660a30c5b8"]),
        ),
        ("CountryCode", serde_json::json!(["BE"])),
        ("HomeId", serde_json::json!(["alice-home"])),
    ]
}

/// Rewrites what schemars writes its own way into what the document said before, which the
/// tools reading it (schemathesis) understand: an optional value is `oneOf [T, null]` (schemars
/// writes `anyOf`, which schemathesis reads as OpenAPI 3.0's `nullable` and then drops), and
/// Rust's integer widths (`format: uint16`…) are left out, the bounds saying the same.
fn tidy(v: &mut Value) {
    match v {
        Value::Object(map) => {
            let nullable = matches!(map.get("anyOf"), Some(Value::Array(arms))
                if arms.len() == 2 && arms.iter().any(|a| a.get("type") == Some(&Value::from("null"))));
            if nullable && let Some(arms) = map.remove("anyOf") {
                map.insert("oneOf".into(), arms);
            }
            let rust_width = matches!(map.get("format"), Some(Value::String(f))
                if f.starts_with("uint") || f.starts_with("int"));
            if rust_width {
                map.remove("format");
            }
            map.values_mut().for_each(tidy);
        }
        Value::Array(items) => items.iter_mut().for_each(tidy),
        _ => {}
    }
}

fn add<T: JsonSchema>(generator: &mut SchemaGenerator) {
    // Named types land in the definitions; the reference returned is not needed.
    let _ = generator.subschema_for::<T>();
}

fn check_refs(doc: &Value, v: &Value) -> Result<(), OpenApiError> {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                let found = r
                    .strip_prefix('#')
                    .and_then(|pointer| doc.pointer(pointer))
                    .is_some();
                if !found {
                    return Err(OpenApiError::Dangling(r.clone()));
                }
            }
            map.values().try_for_each(|x| check_refs(doc, x))
        }
        Value::Array(items) => items.iter().try_for_each(|x| check_refs(doc, x)),
        _ => Ok(()),
    }
}
