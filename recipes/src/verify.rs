//! The one gate between bytes from the master and code that runs on a node.

use hearth_protocol::Sha256;
use hearth_protocol::messages::state::RecipeRef;

use crate::recipe::{Artifact, Recipe, RecipeError};
use crate::repo::trust::{TrustError, TrustedTargets};

/// Why a recipe or artifact was refused. Nothing of a refused recipe runs.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The recipe bytes do not hash to what the master named.
    #[error("recipe {name} {version}: content hash {got} differs from the expected {expected}")]
    RecipeHash {
        name: String,
        version: String,
        expected: Sha256,
        got: Sha256,
    },
    /// The recipe is not what the master named.
    #[error("recipe names itself {got} but {expected} was assigned")]
    Mismatch { expected: String, got: String },
    /// The recipe document is invalid.
    #[error(transparent)]
    Invalid(#[from] RecipeError),
    /// The signed repository does not vouch for it.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// An artifact's bytes do not match the recipe.
    #[error("artifact {name}: {reason}")]
    Artifact { name: String, reason: String },
}

/// A recipe that passed verification. Only [`verify_recipe`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRecipe {
    recipe: Recipe,
    sha256: Sha256,
}

impl VerifiedRecipe {
    /// The recipe.
    pub fn recipe(&self) -> &Recipe {
        &self.recipe
    }

    /// Hash of the verified document.
    pub fn sha256(&self) -> Sha256 {
        self.sha256
    }

    /// Checks an artifact's bytes (size and SHA-256) against this recipe.
    pub fn check_artifact(
        &self,
        artifact: &Artifact,
        size: u64,
        sha256: &Sha256,
    ) -> Result<(), VerifyError> {
        let bad = |reason: String| VerifyError::Artifact {
            name: artifact.name.clone(),
            reason,
        };
        if size != artifact.size {
            return Err(bad(format!(
                "{size} bytes, the recipe says {}",
                artifact.size
            )));
        }
        if *sha256 != artifact.sha256 {
            return Err(bad(format!(
                "SHA-256 {sha256}, the recipe says {}",
                artifact.sha256
            )));
        }
        Ok(())
    }
}

/// Verifies recipe bytes against the reference the master sent and the signed targets the node
/// trusts: the recipe must be listed under its name and version with exactly these bytes
/// (length and SHA-256), be the recipe it says, parse strictly, and list only artifacts that the
/// signed targets list with the same size.
pub fn verify_recipe(
    bytes: &[u8],
    reference: &RecipeRef,
    trusted: &TrustedTargets,
) -> Result<VerifiedRecipe, VerifyError> {
    let listed = trusted.recipe(reference)?;
    if listed.length != bytes.len() as u64 {
        return Err(TrustError::RecipeLength {
            recipe: format!("{} {}", reference.name, reference.version),
            got: bytes.len() as u64,
            listed: listed.length,
        }
        .into());
    }
    let verified = check_document(bytes, reference)?;
    for a in &verified.recipe.artifacts {
        trusted.artifact(&a.sha256, a.size)?;
    }
    Ok(verified)
}

/// Content hash, strict parse, name and version.
fn check_document(bytes: &[u8], reference: &RecipeRef) -> Result<VerifiedRecipe, VerifyError> {
    let got = Sha256::digest(bytes);
    if got != reference.sha256 {
        return Err(VerifyError::RecipeHash {
            name: reference.name.to_string(),
            version: reference.version.clone(),
            expected: reference.sha256,
            got,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| RecipeError::Parse(e.to_string()))?;
    let recipe = Recipe::parse(text)?;
    if recipe.name != reference.name || recipe.version != reference.version {
        return Err(VerifyError::Mismatch {
            expected: format!("{} {}", reference.name, reference.version),
            got: format!("{} {}", recipe.name, recipe.version),
        });
    }
    Ok(VerifiedRecipe {
        recipe,
        sha256: got,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"
name = "static-site"
version = "1.0.0"
[[artifacts]]
name = "server"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
size = 3
executable = true
[run]
command = "{artifact:server}"
args = ["--port", "{port:http}", "--root", "{data}"]
[[ports]]
name = "http"
[health]
kind = "http"
port = "http"
path = "/healthz"
"#;

    fn reference(bytes: &[u8]) -> RecipeRef {
        RecipeRef {
            name: "static-site".parse().unwrap(),
            version: "1.0.0".into(),
            sha256: Sha256::digest(bytes),
        }
    }

    #[test]
    fn a_matching_recipe_verifies_and_a_tampered_one_does_not() {
        let r = reference(DOC.as_bytes());
        let v = check_document(DOC.as_bytes(), &r).unwrap();
        assert_eq!(v.recipe().ports.len(), 1);
        let tampered = DOC.replace("--root", "--rm");
        assert!(matches!(
            check_document(tampered.as_bytes(), &r),
            Err(VerifyError::RecipeHash { .. })
        ));
    }

    #[test]
    fn invalid_recipes_name_the_field() {
        let unknown = DOC.replace("[run]", "colour = \"red\"\n[run]");
        let e = check_document(unknown.as_bytes(), &reference(unknown.as_bytes())).unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        let bad_port = DOC.replace("{port:http}", "{port:ssh}");
        let e = check_document(bad_port.as_bytes(), &reference(bad_port.as_bytes())).unwrap_err();
        assert!(e.to_string().contains("port:ssh"), "{e}");
    }
}
