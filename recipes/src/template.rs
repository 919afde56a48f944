//! Expansion of `{artifact:NAME}`, `{port:NAME}`, `{param:NAME}`, `{dir}` and `{data}`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::recipe::Recipe;

/// Values available to templates on a node.
#[derive(Debug, Clone, Default)]
pub struct Context<'a> {
    /// Artifact name → path in the cache.
    pub artifacts: BTreeMap<String, String>,
    /// Port name → number.
    pub ports: BTreeMap<String, u16>,
    /// Parameter values.
    pub params: BTreeMap<String, String>,
    /// Instance directory.
    pub dir: Option<&'a Path>,
    /// Persistent data directory.
    pub data: Option<&'a Path>,
}

/// A template that cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A `{` with no `}`.
    #[error("unclosed `{{` in `{text}`")]
    Unclosed {
        /// The template.
        text: String,
    },
    /// A placeholder that names nothing the recipe or node has.
    #[error("unknown placeholder `{{{key}}}` in `{text}`")]
    Unknown {
        /// The placeholder, without braces.
        key: String,
        /// The template.
        text: String,
    },
}

/// Expands placeholders; an unknown placeholder is an error naming it.
pub fn expand(text: &str, ctx: &Context<'_>) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        out.push_str(rest.get(..start).unwrap_or_default());
        let after = rest.get(start + 1..).unwrap_or_default();
        let end = after.find('}').ok_or_else(|| TemplateError::Unclosed {
            text: text.to_owned(),
        })?;
        let key = after.get(..end).unwrap_or_default();
        out.push_str(&lookup(key, ctx).ok_or_else(|| TemplateError::Unknown {
            key: key.to_owned(),
            text: text.to_owned(),
        })?);
        rest = after.get(end + 1..).unwrap_or_default();
    }
    out.push_str(rest);
    Ok(out)
}

fn lookup(key: &str, ctx: &Context<'_>) -> Option<String> {
    match key.split_once(':') {
        Some(("artifact", name)) => ctx.artifacts.get(name).cloned(),
        Some(("port", name)) => ctx.ports.get(name).map(u16::to_string),
        Some(("param", name)) => ctx.params.get(name).cloned(),
        None if key == "dir" => ctx.dir.map(|p| p.display().to_string()),
        None if key == "data" => ctx.data.map(|p| p.display().to_string()),
        _ => None,
    }
}

/// Checks that every placeholder in the recipe's run section names something the recipe has.
pub(crate) fn check(recipe: &Recipe) -> Result<(), TemplateError> {
    let probe = Context {
        artifacts: recipe
            .artifacts
            .iter()
            .map(|a| (a.name.clone(), String::new()))
            .collect(),
        ports: recipe.ports.iter().map(|p| (p.name.clone(), 0)).collect(),
        params: recipe
            .params
            .keys()
            .map(|k| (k.clone(), String::new()))
            .collect(),
        dir: Some(Path::new("")),
        data: Some(Path::new("")),
    };
    let mut texts = vec![&recipe.run.command];
    texts.extend(recipe.run.args.iter());
    texts.extend(recipe.run.env.values());
    if let Some(crate::recipe::HealthCheck::Command { argv }) = &recipe.health {
        texts.extend(argv.iter());
    }
    texts
        .into_iter()
        .try_for_each(|t| expand(t, &probe).map(|_| ()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_known_and_refuses_unknown_placeholders() {
        let ctx = Context {
            ports: [("http".to_owned(), 8080)].into(),
            ..Context::default()
        };
        assert_eq!(expand("--port={port:http}", &ctx).unwrap(), "--port=8080");
        assert!(matches!(
            expand("{port:ssh}", &ctx),
            Err(TemplateError::Unknown { key, .. }) if key == "port:ssh"
        ));
        assert!(matches!(
            expand("{port:http", &ctx),
            Err(TemplateError::Unclosed { .. })
        ));
    }
}
