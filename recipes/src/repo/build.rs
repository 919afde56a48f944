//! `hearth recipe build`: stages a recipe and its artifacts in a repository work directory,
//! content-addressed, with each artifact's SHA-256 and size filled into the recipe.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use hearth_protocol::Sha256;

use super::{RepoError, artifact_target, recipe_target};
use crate::Recipe;

/// What [`build`] staged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// Recipe name.
    pub name: String,
    /// Recipe version.
    pub version: String,
    /// SHA-256 of the staged recipe document (what deployments name).
    pub sha256: Sha256,
    /// Artifacts staged: name, SHA-256, size.
    pub artifacts: Vec<(String, Sha256, u64)>,
}

/// Stages `DIR/recipe.toml` into `work`. Each artifact's file is `files[name]` if given, else
/// `DIR/<name>`; its `sha256` and `size` in the recipe are replaced by the file's.
pub fn build(
    dir: &Path,
    work: &Path,
    files: &BTreeMap<String, PathBuf>,
) -> Result<Built, RepoError> {
    let path = dir.join("recipe.toml");
    let text = std::fs::read_to_string(&path).map_err(RepoError::io(&path))?;
    let mut doc: toml::Table = text
        .parse()
        .map_err(|e| RepoError::Invalid(format!("{}: {e}", path.display())))?;
    let mut staged = Vec::new();
    if let Some(toml::Value::Array(artifacts)) = doc.get_mut("artifacts") {
        for a in artifacts.iter_mut() {
            let Some(table) = a.as_table_mut() else {
                return Err(RepoError::Invalid("`artifacts` must be tables".into()));
            };
            let name = table
                .get("name")
                .and_then(toml::Value::as_str)
                .ok_or_else(|| RepoError::Invalid("an artifact has no `name`".into()))?
                .to_owned();
            let file = files.get(&name).cloned().unwrap_or_else(|| dir.join(&name));
            let (sha, size) = hash(&file)?;
            table.insert("sha256".into(), toml::Value::String(sha.to_string()));
            let size_value = i64::try_from(size)
                .map_err(|_| RepoError::Invalid(format!("artifact {name} is too large")))?;
            table.insert("size".into(), toml::Value::Integer(size_value));
            let target = work.join("targets").join(artifact_target(&sha));
            copy(&file, &target)?;
            staged.push((name, sha, size));
        }
    }
    let filled = toml::to_string(&doc).map_err(|e| RepoError::Invalid(e.to_string()))?;
    let recipe = Recipe::parse(&filled)?;
    let target = work
        .join("targets")
        .join(recipe_target(recipe.name.as_str(), &recipe.version));
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(RepoError::io(parent))?;
    }
    std::fs::write(&target, filled.as_bytes()).map_err(RepoError::io(&target))?;
    Ok(Built {
        name: recipe.name.to_string(),
        version: recipe.version.clone(),
        sha256: Sha256::digest(filled.as_bytes()),
        artifacts: staged,
    })
}

/// SHA-256 and size of a file, streamed.
pub fn hash(path: &Path) -> Result<(Sha256, u64), RepoError> {
    let mut file = std::fs::File::open(path).map_err(RepoError::io(path))?;
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(RepoError::io(path))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    Ok((hearth_protocol::Hex(hasher.finalize().into()), size))
}

fn copy(from: &Path, to: &Path) -> Result<(), RepoError> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(RepoError::io(parent))?;
    }
    std::fs::copy(from, to).map_err(RepoError::io(from))?;
    Ok(())
}
