//! Recipes: the cooperative's definition of a service, and the check a node makes before it runs
//! one. A [`verify::VerifiedRecipe`] can only be made by [`verify::verify_recipe`].
//!
//! Nodes run only recipes that the cooperative signed: [`repo`] holds the TUF repository
//! tooling (keys, build, sign) and the node's trust store; [`verify::verify_recipe`] checks a
//! recipe's bytes against the signed targets listing and parses it strictly, and artifacts are
//! checked against the SHA-256 and size the recipe and the listing give.

pub mod policy;
pub mod recipe;
pub mod repo;
pub mod template;
pub mod verify;

pub use recipe::{Artifact, HealthCheck, Offline, Param, Peers, Port, Recipe, RecipeError, Run};
pub use verify::{VerifiedRecipe, VerifyError, verify_recipe};
