//! `hearth-notes` over HTTP: notes are posted, read, listed on the page (escaped), survive
//! `kill -9`, expire and are pruned; bad requests get clear 4xx answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use support::{Service, count_files, error_of};

const BIN: &str = env!("CARGO_BIN_EXE_hearth-notes");

async fn post(c: &reqwest::Client, svc: &Service, query: &str, text: &str) -> reqwest::Response {
    c.post(format!("{}/v1/notes{query}", svc.base))
        .body(text.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn notes_are_posted_listed_and_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let c = reqwest::Client::new();
    let svc = Service::start(BIN, &data, &["--title", "Our <co-op>"], &[]);
    let resp = post(&c, &svc, "", "Meeting minutes\n\n- budget approved\n").await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = resp.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 16);
    assert_eq!(created["url"], location);
    assert_eq!(created["expires"], Value::Null);
    let resp = post(&c, &svc, "?ttl=3600", "<script>alert(1)</script>\nbody").await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let second: Value = resp.json().await.unwrap();
    assert!(second["expires"].as_u64().is_some());

    let resp = c
        .get(format!("{}{location}", svc.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(
        resp.text().await.unwrap(),
        "Meeting minutes\n\n- budget approved\n"
    );
    let page = c
        .get(format!("{}/", svc.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<h1>Our &lt;co-op&gt;</h1>"), "{page}");
    assert!(
        page.contains(&format!("<a href=\"/v1/notes/{id}\">Meeting minutes</a>")),
        "{page}"
    );
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(!page.contains("<script>alert"), "{page}");
    svc.kill9();

    let svc = Service::start(BIN, &data, &[], &[]);
    let recent: Value = c
        .get(format!("{}/v1/notes", svc.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let titles: Vec<&str> = recent["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles.len(), 2, "{recent}");
    assert!(titles.contains(&"Meeting minutes"), "{recent}");
    let text = c
        .get(format!("{}/v1/notes/{id}", svc.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        text.text().await.unwrap(),
        "Meeting minutes\n\n- budget approved\n"
    );
    assert_eq!(count_files(&data.join("tmp")), 0);
    assert!(svc.terminate().success());
}

#[tokio::test]
async fn expired_notes_disappear_and_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let c = reqwest::Client::new();
    let svc = Service::start(BIN, &data, &["--prune-secs", "1"], &[]);
    let keep: Value = post(&c, &svc, "", "stays").await.json().await.unwrap();
    let brief: Value = post(&c, &svc, "?ttl=1", "brief")
        .await
        .json()
        .await
        .unwrap();
    let brief_url = format!("{}{}", svc.base, brief["url"].as_str().unwrap());
    // Expiry is at a whole second; wait for it (bounded), then for the pruner to remove the file.
    let mut gone = false;
    for _ in 0..100 {
        if c.get(&brief_url).send().await.unwrap().status() == StatusCode::NOT_FOUND {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the note with ttl=1 never expired");
    let mut pruned = false;
    for _ in 0..100 {
        if count_files(&data.join("notes")) == 1 {
            pruned = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(pruned, "the expired note's file was never removed");
    let kept = format!("{}{}", svc.base, keep["url"].as_str().unwrap());
    assert_eq!(
        c.get(&kept).send().await.unwrap().text().await.unwrap(),
        "stays"
    );
}

#[tokio::test]
async fn bad_requests_get_clear_4xx_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "tok\n").unwrap();
    let c = reqwest::Client::new();
    let args = [
        "--max-note-bytes",
        "1024",
        "--max-ttl",
        "600",
        "--max-notes",
        "2",
        "--token-file",
        token_file.to_str().unwrap(),
    ];
    let svc = Service::start(BIN, &data, &args, &[]);
    let url = format!("{}/v1/notes", svc.base);
    let send = |query: &str, body: Vec<u8>| {
        c.post(format!("{url}{query}"))
            .bearer_auth("tok")
            .body(body)
            .send()
    };

    let resp = c.post(&url).body("hi").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(error_of(resp).await.contains("Authorization: Bearer"));
    let resp = c
        .post(&url)
        .bearer_auth("nope")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    for ttl in ["?ttl=0", "?ttl=601", "?ttl=soon", "?ttl=-5"] {
        let resp = send(ttl, b"hi".to_vec()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{ttl}");
        assert!(error_of(resp).await.contains("from 1 to 600"), "{ttl}");
    }
    let resp = send("", vec![b'a'; 1025]).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(error_of(resp).await.contains("1024 bytes"));
    let resp = send("", vec![0xff, 0xfe, b'a']).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(error_of(resp).await.contains("UTF-8"));
    let resp = send("", b" \n\t".to_vec()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(error_of(resp).await.contains("empty"));

    for id in ["xyz", "0123456789ABCDEF", "0123456789abcdef0"] {
        let resp = c.get(format!("{url}/{id}")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{id}");
        assert!(error_of(resp).await.contains("16 lowercase hex"), "{id}");
    }
    let resp = c
        .get(format!("{url}/0123456789abcdef"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    assert_eq!(
        send("", vec![b'a'; 1024]).await.unwrap().status(),
        StatusCode::CREATED
    );
    assert_eq!(
        send("", b"two".to_vec()).await.unwrap().status(),
        StatusCode::CREATED
    );
    let resp = send("", b"three".to_vec()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::INSUFFICIENT_STORAGE);
    assert!(error_of(resp).await.contains("maximum of 2 notes"));
}
