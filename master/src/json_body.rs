//! JSON request bodies of the operator API, read the way its schema (`api/openapi.json`, JSON
//! Schema) defines them. There an `integer` is any number without a fractional part, so
//! `7926.0` and `7.926e3` are the integer 7926; serde alone would refuse them as floats. A
//! [`JsonBody`] reads the body as JSON, turns every such number that a 64-bit float holds
//! exactly (at most 2^53 in magnitude) into that integer, then deserializes the typed value;
//! a number with a fraction (`7926.5`) is still refused, with a 400 naming the field. Every
//! request body is a JSON object: another value (`[]`, which serde would take for a struct
//! with every field defaulted) is refused.

use axum::Json;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;
use serde_json::{Number, Value};

use crate::api::{HttpError, bad_request, rejection};

/// Magnitude up to which every integer is exactly a 64-bit float (2^53).
const EXACT: f64 = 9_007_199_254_740_992.0;

/// A request body of type `T`, parsed as described in the module documentation.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, HttpError> {
        let Json(value) = Json::<Value>::from_request(req, state)
            .await
            .map_err(rejection)?;
        parse(value).map(JsonBody)
    }
}

/// Deserializes `value` after turning integral floats into integers.
pub fn parse<T: DeserializeOwned>(mut value: Value) -> Result<T, HttpError> {
    if !value.is_object() {
        return Err(bad_request(
            "the request body must be a JSON object (see api/openapi.json)",
        ));
    }
    integral_floats(&mut value);
    serde_path_to_error::deserialize(value)
        .map_err(|e| bad_request(format!("the request body is not valid: {e}")))
}

/// Replaces, everywhere in `value`, each number with a zero fractional part and a magnitude of
/// at most 2^53 by the same integer.
fn integral_floats(value: &mut Value) {
    match value {
        Value::Number(n) => {
            if let Some(int) = n.as_f64().filter(|_| n.is_f64()).and_then(integer) {
                *n = int;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats),
        Value::Object(members) => members.values_mut().for_each(integral_floats),
        Value::Null | Value::Bool(_) | Value::String(_) => {}
    }
}

/// `f` as an integer, when it is one that a float holds exactly.
fn integer(f: f64) -> Option<Number> {
    if f.fract() != 0.0 || f.abs() > EXACT {
        return None;
    }
    // Exact: `f` is integral and within ±2^53, so the casts neither round nor saturate.
    Some(if f >= 0.0 {
        Number::from(f as u64)
    } else {
        Number::from(f as i64)
    })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Body {
        secs: u64,
        #[serde(default)]
        list: Vec<i32>,
    }

    #[test]
    fn integers_written_with_a_fraction_or_exponent_are_integers() {
        let b: Body = parse(json!({ "secs": 7926.0, "list": [-3.0, 2e1] })).unwrap();
        assert_eq!(
            b,
            Body {
                secs: 7926,
                list: vec![-3, 20]
            }
        );
        let b: Body = parse(serde_json::from_str(r#"{"secs": 7.926e3}"#).unwrap()).unwrap();
        assert_eq!(b.secs, 7926);
    }

    #[test]
    fn numbers_with_a_fraction_are_refused_naming_the_field() {
        let e = parse::<Body>(json!({ "secs": 7926.5 })).unwrap_err();
        assert_eq!(e.0.status(), 400);
        assert!(
            e.0.message().contains("secs") && e.0.message().contains("7926.5"),
            "{}",
            e.0.message()
        );
        let e = parse::<Body>(json!({ "secs": 1e300 })).unwrap_err();
        assert!(e.0.message().contains("secs"), "{}", e.0.message());
        let e = parse::<Body>(json!({ "secs": 1, "other": 2 })).unwrap_err();
        assert!(e.0.message().contains("other"), "{}", e.0.message());
    }

    #[test]
    fn a_body_is_an_object() {
        #[derive(Debug, Deserialize)]
        struct AllDefault {
            #[serde(default)]
            _label: String,
        }
        for not_object in [json!([]), json!(["x"]), json!(1), json!(null)] {
            let e = parse::<AllDefault>(not_object).unwrap_err();
            assert!(e.0.message().contains("JSON object"), "{}", e.0.message());
        }
    }
}
