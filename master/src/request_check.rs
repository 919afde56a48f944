//! What the operator API refuses because it could never run: a parameter the recipe does not
//! declare, a value of the wrong type, a NUL byte (no argument or environment variable can hold
//! one), oversized values, label keys and values. Refused with 400 at the API, not discovered
//! later as a replica looping in `restarting`.

use std::collections::BTreeMap;

use hearth_recipes::policy::ParamKind;

/// Longest parameter value, bytes.
pub const MAX_PARAM_VALUE: usize = 4096;
/// Most labels a deployment may require.
pub const MAX_LABELS: usize = 32;
/// Longest label key or value, bytes (as node facts, SPEC §12).
pub const MAX_LABEL_TEXT: usize = 256;

/// Why a request can never run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A parameter name that is empty or holds a NUL byte.
    #[error("parameter name {0:?} is empty or holds a NUL byte")]
    BadParamName(String),
    /// A parameter value with a NUL byte.
    #[error(
        "parameter {0} holds a NUL byte, which no program argument or environment variable can carry"
    )]
    NulInParam(String),
    /// A parameter value over [`MAX_PARAM_VALUE`].
    #[error("parameter {key} is {len} bytes; at most {MAX_PARAM_VALUE}")]
    ParamTooLong { key: String, len: usize },
    /// A parameter the recipe does not declare.
    #[error("the recipe declares no parameter {key} (it declares: {declared})")]
    Undeclared { key: String, declared: String },
    /// A value of the wrong type.
    #[error("parameter {key}: {error}")]
    WrongType {
        key: String,
        error: hearth_recipes::policy::ValueError,
    },
    /// More than [`MAX_LABELS`] labels.
    #[error("{0} labels; at most {MAX_LABELS}")]
    TooManyLabels(usize),
    /// A label key or value of the wrong size.
    #[error(
        "label {0:?}: keys must be 1–{MAX_LABEL_TEXT} bytes and values at most {MAX_LABEL_TEXT}"
    )]
    LabelSize(String),
    /// A label with a NUL byte.
    #[error("label {0:?} holds a NUL byte")]
    NulInLabel(String),
}

/// Checks `params` against the recipe's declared parameters (`None`: the recipe could not be
/// read, so only what no recipe could accept is refused).
pub fn params(
    declared: Option<&BTreeMap<String, ParamKind>>,
    params: &BTreeMap<String, String>,
) -> Result<(), RequestError> {
    for (key, value) in params {
        if key.is_empty() || key.contains('\0') {
            return Err(RequestError::BadParamName(key.clone()));
        }
        if value.contains('\0') {
            return Err(RequestError::NulInParam(key.clone()));
        }
        if value.len() > MAX_PARAM_VALUE {
            return Err(RequestError::ParamTooLong {
                key: key.clone(),
                len: value.len(),
            });
        }
        if let Some(declared) = declared {
            let Some(kind) = declared.get(key) else {
                let known: Vec<&str> = declared.keys().map(String::as_str).collect();
                return Err(RequestError::Undeclared {
                    key: key.clone(),
                    declared: if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    },
                });
            };
            kind.check(value).map_err(|error| RequestError::WrongType {
                key: key.clone(),
                error,
            })?;
        }
    }
    Ok(())
}

/// Checks the labels a deployment requires.
pub fn labels(labels: &BTreeMap<String, String>) -> Result<(), RequestError> {
    if labels.len() > MAX_LABELS {
        return Err(RequestError::TooManyLabels(labels.len()));
    }
    for (k, v) in labels {
        if k.is_empty() || k.len() > MAX_LABEL_TEXT || v.len() > MAX_LABEL_TEXT {
            return Err(RequestError::LabelSize(k.clone()));
        }
        if k.contains('\0') || v.contains('\0') {
            return Err(RequestError::NulInLabel(k.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_can_never_run_is_refused_with_its_reason() {
        let declared: BTreeMap<String, ParamKind> = [
            ("title".to_owned(), ParamKind::String),
            ("workers".to_owned(), ParamKind::Integer),
        ]
        .into();
        let one = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
        assert!(matches!(
            params(Some(&declared), &one("title", "x\0y")),
            Err(RequestError::NulInParam(_))
        ));
        assert!(params(None, &one("title", "x\0y")).is_err());
        assert!(
            params(Some(&declared), &one("titel", "x"))
                .is_err_and(|e| e.to_string().contains("declares no parameter titel"))
        );
        assert!(
            params(Some(&declared), &one("workers", "many"))
                .is_err_and(|e| e.to_string().contains("`many` is not an integer"))
        );
        assert!(params(Some(&declared), &one("title", &"a".repeat(5000))).is_err());
        assert!(params(Some(&declared), &one("workers", "4")).is_ok());
        assert!(labels(&one(&"k".repeat(300), "v")).is_err());
        assert!(labels(&one("disk", "ssd")).is_ok());
    }
}
