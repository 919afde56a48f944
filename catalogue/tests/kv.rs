//! `hearth-kv` over HTTP: objects survive `kill -9`, bad requests get clear 4xx answers, the token
//! guards writes, SIGTERM stops it cleanly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use reqwest::StatusCode;
use serde_json::Value;
use support::{Service, count_files, error_of, raw};

const BIN: &str = env!("CARGO_BIN_EXE_hearth-kv");
const TOKEN: &str = "s3cret-token";

fn start(data: &std::path::Path, extra: &[&str]) -> Service {
    let token_file = data.with_extension("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let mut args = vec!["--token-file", token_file.to_str().unwrap()];
    args.extend_from_slice(extra);
    Service::start(BIN, data, &args, &[])
}

async fn put(c: &reqwest::Client, svc: &Service, key: &str, body: Vec<u8>) -> reqwest::Response {
    c.put(format!("{}/v1/objects/{key}", svc.base))
        .bearer_auth(TOKEN)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let c = reqwest::Client::new();
    let svc = start(&data, &[]);
    for i in 0..20u8 {
        let resp = put(
            &c,
            &svc,
            &format!("photos/{i:02}.bin"),
            vec![i; 1000 + usize::from(i)],
        )
        .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let resp = put(&c, &svc, "photos/00.bin", b"replaced".to_vec()).await;
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "an overwrite is not a creation"
    );
    let resp = c
        .delete(format!("{}/v1/objects/photos/19.bin", svc.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    put(&c, &svc, "notes.txt", b"hello".to_vec()).await;
    svc.kill9();

    let svc = start(&data, &[]);
    let get = |key: &str| c.get(format!("{}/v1/objects/{key}", svc.base)).send();
    assert_eq!(
        get("photos/00.bin").await.unwrap().bytes().await.unwrap(),
        "replaced"
    );
    for i in 1..19u8 {
        let body = get(&format!("photos/{i:02}.bin"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(body.to_vec(), vec![i; 1000 + usize::from(i)], "object {i}");
    }
    assert_eq!(
        get("photos/19.bin").await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    let list: Value = c
        .get(format!("{}/v1/objects?prefix=photos/&limit=5", svc.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys: Vec<&str> = list["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "photos/00.bin",
            "photos/01.bin",
            "photos/02.bin",
            "photos/03.bin",
            "photos/04.bin"
        ]
    );
    assert_eq!(list["objects"][0]["size"], 8);
    assert_eq!(list["truncated"], true);
    let next = list["next"].as_str().unwrap();
    let rest: Value = c
        .get(format!(
            "{}/v1/objects?prefix=photos/&after={next}",
            svc.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rest["objects"].as_array().unwrap().len(), 19 - 5);
    assert_eq!(rest["truncated"], false);
    assert_eq!(count_files(&data.join("tmp")), 0, "no temporary files left");
}

#[tokio::test]
async fn bad_requests_get_clear_4xx_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let c = reqwest::Client::new();
    let svc = start(&data, &["--max-object-bytes", "1024"]);

    let long = "k".repeat(201);
    for key in ["a%20b", "a~b", "a//b", "a/", long.as_str(), "%C3%A9"] {
        let resp = put(&c, &svc, key, b"x".to_vec()).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "key {key}");
        assert!(error_of(resp).await.contains("key"), "key {key}");
    }
    // HTTP clients remove `..` segments themselves; send them verbatim.
    for path in ["/v1/objects/a/../b", "/v1/objects/..", "/v1/objects/./a"] {
        let request = format!(
            "PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Length: 1\r\nConnection: close\r\n\r\nx"
        );
        let (status, body) = raw(&svc.addr, request.as_bytes());
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains("`..`"), "{path}: {body}");
    }

    let resp = put(&c, &svc, "big", vec![0; 1025]).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(error_of(resp).await.contains("1024 bytes"));
    assert_eq!(
        put(&c, &svc, "fits", vec![0; 1024]).await.status(),
        StatusCode::CREATED
    );
    // A chunked body declares no length: it is counted while it streams to disk.
    let chunk = "x".repeat(600);
    let request = format!(
        "PUT /v1/objects/chunked HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let (status, body) = raw(&svc.addr, request.as_bytes());
    assert_eq!(status, 413, "{body}");
    assert_eq!(
        count_files(&data.join("tmp")),
        0,
        "the refused upload was removed"
    );

    let url = format!("{}/v1/objects/k", svc.base);
    let resp = c.put(&url).body("x").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    assert!(error_of(resp).await.contains("Authorization: Bearer"));
    let resp = c
        .put(&url)
        .bearer_auth("wrong")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = c
        .delete(format!("{}/v1/objects/fits", svc.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        c.get(&url).send().await.unwrap().status(),
        StatusCode::NOT_FOUND,
        "reads are open"
    );
    let resp = c.delete(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(error_of(resp).await.contains("no object `k`"));

    for query in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "prefix=a%20b",
        "color=red",
    ] {
        let resp = c
            .get(format!("{}/v1/objects?{query}", svc.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{query}");
    }
    let resp = c
        .get(format!("{}/v2/nothing", svc.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn open_without_a_token_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let c = reqwest::Client::new();
    let svc = Service::start(BIN, &data, &[], &[]);
    let health = c.get(format!("{}/healthz", svc.base)).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let resp = c
        .put(format!("{}/v1/objects/a", svc.base))
        .body("1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(svc.terminate().success());

    // The token can also come from the environment, as a recipe passes its secret parameter.
    let svc = Service::start(BIN, &data, &[], &[("HEARTH_KV_TOKEN", TOKEN)]);
    let resp = c
        .put(format!("{}/v1/objects/a", svc.base))
        .body("2")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = c
        .get(format!("{}/v1/objects/a", svc.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "1");
}
