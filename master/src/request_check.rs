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

/// Checks `params` against the recipe's declared parameters (`None`: the recipe could not be
/// read, so only what no recipe could accept is refused).
pub fn params(
    declared: Option<&BTreeMap<String, ParamKind>>,
    params: &BTreeMap<String, String>,
) -> Result<(), String> {
    for (key, value) in params {
        if key.is_empty() || key.contains('\0') {
            return Err(format!(
                "parameter name {key:?} is empty or holds a NUL byte"
            ));
        }
        if value.contains('\0') {
            return Err(format!(
                "parameter {key} holds a NUL byte, which no program argument or environment variable can carry"
            ));
        }
        if value.len() > MAX_PARAM_VALUE {
            return Err(format!(
                "parameter {key} is {} bytes; at most {MAX_PARAM_VALUE}",
                value.len()
            ));
        }
        if let Some(declared) = declared {
            let Some(kind) = declared.get(key) else {
                let known: Vec<&str> = declared.keys().map(String::as_str).collect();
                return Err(format!(
                    "the recipe declares no parameter {key} (it declares: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ));
            };
            kind.check(value)
                .map_err(|e| format!("parameter {key}: {e}"))?;
        }
    }
    Ok(())
}

/// Checks the labels a deployment requires.
pub fn labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    if labels.len() > MAX_LABELS {
        return Err(format!("{} labels; at most {MAX_LABELS}", labels.len()));
    }
    for (k, v) in labels {
        if k.is_empty() || k.len() > MAX_LABEL_TEXT || v.len() > MAX_LABEL_TEXT {
            return Err(format!(
                "label {k:?}: keys must be 1–{MAX_LABEL_TEXT} bytes and values at most {MAX_LABEL_TEXT}"
            ));
        }
        if k.contains('\0') || v.contains('\0') {
            return Err(format!("label {k:?} holds a NUL byte"));
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
        assert!(params(Some(&declared), &one("title", "x\0y")).is_err_and(|e| e.contains("NUL")));
        assert!(params(None, &one("title", "x\0y")).is_err());
        assert!(
            params(Some(&declared), &one("titel", "x"))
                .is_err_and(|e| e.contains("declares no parameter titel"))
        );
        assert!(
            params(Some(&declared), &one("workers", "many")).is_err_and(|e| e.contains("integer"))
        );
        assert!(params(Some(&declared), &one("title", &"a".repeat(5000))).is_err());
        assert!(params(Some(&declared), &one("workers", "4")).is_ok());
        assert!(labels(&one(&"k".repeat(300), "v")).is_err());
        assert!(labels(&one("disk", "ssd")).is_ok());
    }
}
