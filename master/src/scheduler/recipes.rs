//! What the scheduler reads of a recipe (resources, port names, parameters, whether it has a
//! health check), parsed once per content hash: blobs are content-addressed, so a recipe read
//! once never changes.

use std::collections::BTreeMap;

use hearth_protocol::Sha256;
use hearth_protocol::messages::state::{Name, RecipeRef};

use super::RecipeInfo;
use crate::context::Context;

/// Why a deployment's recipe cannot be read. Permanent for the blob it names: blobs are
/// content-addressed, so only another upload (or another recipe reference) changes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecipeError {
    /// No blob with that hash was uploaded.
    #[error("recipe blob {0} is not uploaded")]
    NotUploaded(Sha256),
    /// The blob is not a recipe.
    #[error("recipe blob {sha256} is not a valid recipe: {reason}")]
    Invalid { sha256: Sha256, reason: String },
    /// The blob is another recipe than the reference names.
    #[error("recipe blob {sha256} is {found}, not {wanted}")]
    Mismatch {
        sha256: Sha256,
        found: String,
        wanted: String,
    },
}

/// Reads resources and port names from the uploaded recipe.
pub fn recipe_info(ctx: &Context, recipe: &RecipeRef) -> Result<RecipeInfo, RecipeError> {
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

/// The recipe's backups (`[data] backup`), if it backs up; an unreadable recipe does not.
pub fn backup_policy(ctx: &Context, recipe: &RecipeRef) -> Option<BackupPolicy> {
    parsed(ctx, recipe).ok().and_then(|p| p.backup)
}

/// What the master reads of a recipe's data policy when it backs up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupPolicy {
    /// Seconds between snapshots.
    pub every_s: u64,
    /// Snapshots each copy keeps.
    pub keep: u32,
    /// Homes that keep a copy.
    pub copies: u32,
}

/// The parameters a recipe declares, with their types.
pub fn recipe_params(
    ctx: &Context,
    recipe: &RecipeRef,
) -> Result<BTreeMap<String, hearth_recipes::policy::ParamKind>, RecipeError> {
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
    backup: Option<BackupPolicy>,
    params: BTreeMap<String, hearth_recipes::policy::ParamKind>,
}

fn parsed(ctx: &Context, recipe: &RecipeRef) -> Result<ParsedRecipe, RecipeError> {
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
            let sha256 = recipe.sha256;
            // Uploaded through another master and not copied yet: copy it (rare).
            crate::shared_files::ensure_blob(ctx, &sha256);
            let bytes = std::fs::read(ctx.blobs.path(&sha256))
                .map_err(|_| RecipeError::NotUploaded(sha256))?;
            let invalid = |reason: String| RecipeError::Invalid { sha256, reason };
            let text = std::str::from_utf8(&bytes).map_err(|e| invalid(e.to_string()))?;
            let r = hearth_recipes::Recipe::parse(text).map_err(|e| invalid(e.to_string()))?;
            let entry = ParsedRecipe {
                info: RecipeInfo {
                    resources: r.resources,
                    ports: r.ports.iter().map(|p| p.name.clone()).collect(),
                },
                health_checked: r.health.is_some(),
                peers: r.peers.is_some(),
                backup: match r.data.backup {
                    hearth_recipes::policy::Backup::None => None,
                    hearth_recipes::policy::Backup::Every(every_s) => Some(BackupPolicy {
                        every_s,
                        keep: r.data.keep,
                        copies: r.data.copies,
                    }),
                },
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
        return Err(RecipeError::Mismatch {
            sha256: recipe.sha256,
            found: format!("{} {}", p.name, p.version),
            wanted: format!("{} {}", recipe.name, recipe.version),
        });
    }
    Ok(p)
}
