//! What the scheduler reads of a recipe (resources, port names, parameters, whether it has a
//! health check), parsed once per content hash: blobs are content-addressed, so a recipe read
//! once never changes.

use std::collections::BTreeMap;

use hearth_protocol::messages::state::{Name, RecipeRef};

use super::RecipeInfo;
use crate::context::Context;

/// Reads resources and port names from the uploaded recipe.
pub fn recipe_info(ctx: &Context, recipe: &RecipeRef) -> Result<RecipeInfo, String> {
    parsed(ctx, recipe).map(|p| p.info)
}

/// Whether the recipe has a health check (unknown recipes count as checked: a replica on one
/// is ready only when it says it is healthy).
pub fn health_checked(ctx: &Context, recipe: &RecipeRef) -> bool {
    parsed(ctx, recipe).map_or(true, |p| p.health_checked)
}

/// Whether the recipe has `[peers]`: its replicas reach each other over the overlay, so each
/// assignment lists the others (`Assignment.peers`). An unreadable recipe has none.
pub fn has_peers(ctx: &Context, recipe: &RecipeRef) -> bool {
    parsed(ctx, recipe).is_ok_and(|p| p.peers)
}

/// The parameters a recipe declares, with their types.
pub fn recipe_params(
    ctx: &Context,
    recipe: &RecipeRef,
) -> Result<BTreeMap<String, hearth_recipes::policy::ParamKind>, String> {
    parsed(ctx, recipe).map(|p| p.params)
}

/// What the scheduler keeps of a parsed recipe.
#[derive(Debug, Clone)]
pub(super) struct ParsedRecipe {
    name: Name,
    version: String,
    info: RecipeInfo,
    health_checked: bool,
    peers: bool,
    params: BTreeMap<String, hearth_recipes::policy::ParamKind>,
}

fn parsed(ctx: &Context, recipe: &RecipeRef) -> Result<ParsedRecipe, String> {
    // Blobs are content-addressed, so a recipe read once never changes: the scheduler's
    // once-a-second passes parse each recipe once, not once per pass.
    let cached = ctx
        .scheduler
        .recipes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&recipe.sha256)
        .cloned();
    let p = match cached {
        Some(hit) => hit,
        None => {
            let bytes = std::fs::read(ctx.blobs.path(&recipe.sha256))
                .map_err(|_| format!("recipe blob {} is not uploaded", recipe.sha256))?;
            let text = std::str::from_utf8(&bytes).map_err(|e| e.to_string())?;
            let r = hearth_recipes::Recipe::parse(text).map_err(|e| e.to_string())?;
            let entry = ParsedRecipe {
                info: RecipeInfo {
                    resources: r.resources,
                    ports: r.ports.iter().map(|p| p.name.clone()).collect(),
                },
                health_checked: r.health.is_some(),
                peers: r.peers.is_some(),
                params: r.params.iter().map(|(k, p)| (k.clone(), p.kind)).collect(),
                name: r.name,
                version: r.version,
            };
            ctx.scheduler
                .recipes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(recipe.sha256, entry.clone());
            entry
        }
    };
    if p.name != recipe.name || p.version != recipe.version {
        return Err(format!(
            "recipe blob {} is {} {}, not {} {}",
            recipe.sha256, p.name, p.version, recipe.name, recipe.version
        ));
    }
    Ok(p)
}
