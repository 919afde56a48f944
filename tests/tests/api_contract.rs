//! The operator API does what `api/openapi.json` says, on the points where the two disagreed
//! (found by schemathesis, which `scripts/schemathesis` runs in CI): integers written `7926.0`
//! are integers and fractions are refused naming the field; bodies are JSON objects; a
//! 52-character id that is no key is told so; deployment names have the length the schema
//! gives; repository metadata is refused unless shaped as the schema says.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use hearth_tests::master::MasterProc;
use reqwest::Method;
use serde_json::Value;

async fn post(m: &MasterProc, path: &str, body: &str) -> (u16, Value) {
    m.call(Method::POST, path, Some(body), Some(&m.token)).await
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn the_api_agrees_with_its_openapi_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), &[]);

    // JSON Schema integers: 523.0 and 5.23e2 are the integer 523; 523.5 is refused.
    for body in [
        r#"{"expires_in_secs":523.0}"#,
        r#"{"expires_in_secs":5.23e2}"#,
    ] {
        let (status, v) = post(&m, "/v1/tokens", body).await;
        assert_eq!(status, 201, "{body}: {v}");
    }
    let (status, v) = post(&m, "/v1/tokens", r#"{"expires_in_secs":523.5}"#).await;
    assert_eq!(status, 400, "{v}");
    assert!(message(&v).contains("expires_in_secs"), "{v}");

    // A body is an object: `[]` used to create a token with every field defaulted.
    let (status, v) = post(&m, "/v1/tokens", "[]").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{v}"
    );

    // 52 characters of base32hex that are no key: told so, not "not 52 characters".
    let id = format!("hn-{}8", "f".repeat(51));
    let (status, v) = m.get(&format!("/v1/nodes/{id}")).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        message(&v).contains("is not a valid Ed25519 public key"),
        "{v}"
    );
    assert!(!message(&v).contains("not 52 characters"), "{v}");

    // Deployment names: the schema's limit is the server's.
    let spec: Value = serde_json::from_str(include_str!("../../api/openapi.json")).unwrap();
    assert_eq!(
        spec["components"]["schemas"]["DeploymentName"]["maxLength"], 56,
        "api/openapi.json's DeploymentName must say maxLength: 56"
    );
    let deployment = |name: &str| {
        format!(
            r#"{{"name":"{name}","replicas":1,"recipe":{{"name":"static-site","version":"1.0.0","sha256":"{}"}}}}"#,
            "0".repeat(64)
        )
    };
    let (status, v) = post(&m, "/v1/deployments", &deployment(&"a".repeat(56))).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("recipe_missing")),
        "{v}"
    );
    let (status, v) = post(&m, "/v1/deployments", &deployment(&"a".repeat(57))).await;
    assert_eq!(status, 400, "{v}");
    assert!(message(&v).contains("at most 56"), "{v}");

    // Repository metadata: a JSON object with a `signed` object and a `signatures` array.
    let put = |body: &'static str| {
        m.call(
            Method::PUT,
            "/v1/repository/timestamp.json",
            Some(body),
            Some(&m.token),
        )
    };
    let (status, v) = put(r#"{"signed":1,"signatures":[]}"#).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("bad_metadata")),
        "{v}"
    );
    let (status, v) = put(r#"{"signed":{},"signatures":{}}"#).await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = put(r#"{"signed":{},"signatures":[]}"#).await;
    assert_eq!(status, 200, "{v}");
}
