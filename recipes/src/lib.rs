//! Recipes: the cooperative's definition of a service, and the check a node makes before it runs
//! one. A [`verify::VerifiedRecipe`] can only be made by [`verify::verify_recipe`].
//!
//! Until the signed repository lands (TUF metadata, issue 5), verification checks the recipe
//! document against the SHA-256 the master named and parses it strictly; artifacts are checked
//! against the SHA-256 and size the recipe lists.

pub mod recipe;
pub mod template;
pub mod verify;

pub use recipe::{Artifact, HealthCheck, Offline, Param, Port, Recipe, RecipeError, Run};
pub use verify::{VerifiedRecipe, VerifyError, verify_recipe};
