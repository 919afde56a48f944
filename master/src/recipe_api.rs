//! Operator API for the signed recipe repository: publish metadata files, list and show the
//! recipes the published targets list.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use crate::api::{ApiError, HttpError};
use crate::context::Context;
use crate::repository::RepositoryError;

fn api_error(e: RepositoryError) -> ApiError {
    match e {
        RepositoryError::BadName(_) | RepositoryError::NotMetadata(_) => {
            ApiError::BadMetadata(e.to_string())
        }
        RepositoryError::TooLarge(_) => ApiError::PayloadTooLarge(e.to_string()),
        RepositoryError::Io(_) => ApiError::InsufficientStorage(e.to_string()),
    }
}

async fn run<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RepositoryError> + Send + 'static,
) -> Result<T, HttpError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| api_error(e).into())
}

/// `PUT /v1/repository/{file}`: stores one metadata file (the node verifies it, not the master).
pub async fn put_metadata(
    State(ctx): State<Arc<Context>>,
    Path(file): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, HttpError> {
    let repo = ctx.repository.clone();
    let name = file.clone();
    let size = body.len();
    let kept = body.clone();
    run(move || repo.put(&name, &body)).await?;
    // Acknowledged only once every master can serve it.
    let (shared, name) = (ctx.clone(), file.clone());
    crate::api::blocking(move || {
        crate::shared_files::publish(&shared, crate::store::FileKind::Metadata, &name, &kept)
    })
    .await?;
    tracing::info!(%file, size, "repository metadata published");
    Ok(Json(json!({ "file": file, "size": size })))
}

/// `GET /v1/repository`: the published metadata files and their versions.
pub async fn repository(State(ctx): State<Arc<Context>>) -> Result<Json<Value>, HttpError> {
    let repo = ctx.repository.clone();
    let versions = run(move || repo.versions()).await?;
    let files: Vec<Value> = versions
        .into_iter()
        .map(|(file, version)| json!({ "file": file, "version": version }))
        .collect();
    Ok(Json(Value::Array(files)))
}

/// `GET /v1/recipes`: every recipe version the published targets list.
pub async fn list_recipes(State(ctx): State<Arc<Context>>) -> Result<Json<Value>, HttpError> {
    let repo = ctx.repository.clone();
    let listed = run(move || repo.recipes()).await?;
    Ok(Json(serde_json::to_value(listed).unwrap_or_default()))
}

/// `GET /v1/recipes/{name}/{version}`: one listed recipe with its document.
pub async fn show_recipe(
    State(ctx): State<Arc<Context>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Value>, HttpError> {
    let repo = ctx.repository.clone();
    let listed = run(move || repo.recipes()).await?;
    let Some(r) = listed
        .into_iter()
        .find(|r| r.name == name && r.version == version)
    else {
        return Err(ApiError::UnknownRecipe(format!(
            "no recipe {name} {version} in the published signed targets"
        ))
        .into());
    };
    let document = std::fs::read(ctx.blobs.path(&r.sha256))
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|t| hearth_recipes::Recipe::parse(&t).ok())
        .and_then(|recipe| serde_json::to_value(recipe).ok());
    Ok(Json(json!({
        "name": r.name, "version": r.version, "sha256": r.sha256, "length": r.length,
        "uploaded": document.is_some(), "recipe": document,
    })))
}
