//! The master's web pages in a real headless Chromium driven over WebDriver
//! (`hearth_tests::browser`). Skipped with a message when Chromium or chromedriver is not
//! installed, except under `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::time::Duration;

use hearth_tests::browser::{Browser, BrowserOptions};
use hearth_tests::master::MasterProc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Limit for the browser part of a test, once the browser and master are up.
const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn browser_reads_the_master_healthz() -> anyhow::Result<()> {
    let Some(browser) = Browser::start("browser_reads_the_master_healthz").await? else {
        return Ok(());
    };
    let tmp = tempfile::tempdir()?;
    let master = MasterProc::start(tmp.path(), &[]);
    tokio::time::timeout(LIMIT, async {
        browser
            .goto(&format!("http://{}/healthz", master.http))
            .await?;
        assert_eq!(
            browser.text_of("body").await?,
            "ok",
            "log:\n{}",
            master.log()
        );
        let shot = browser
            .screenshot("browser_reads_the_master_healthz")
            .await?;
        assert!(std::fs::metadata(&shot)?.len() > 0, "{}", shot.display());
        eprintln!("screenshot: {}", shot.display());
        browser.close().await
    })
    .await?
}

/// The language option reaches the page (`navigator.language`) and the server
/// (`Accept-Language`), as the dashboard's translations will need.
#[tokio::test]
async fn browser_speaks_the_language_it_is_given() -> anyhow::Result<()> {
    let options = BrowserOptions::default().lang("fr");
    let Some(browser) =
        Browser::start_with("browser_speaks_the_language_it_is_given", &options).await?
    else {
        return Ok(());
    };
    let (addr, mut headers) = header_echo().await?;
    tokio::time::timeout(LIMIT, async {
        browser.goto(&format!("http://{addr}/")).await?;
        assert_eq!(browser.text_of("#hello").await?, "bonjour");
        let lang = browser
            .client()
            .execute("return navigator.language", vec![])
            .await?;
        assert_eq!(lang, "fr");
        let request = headers.recv().await.expect("the page was requested");
        let accept = request
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("accept-language")
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_default();
        assert!(
            accept.starts_with("fr"),
            "Accept-Language {accept:?} in\n{request}"
        );
        browser.phone().await?;
        let width = browser
            .client()
            .execute("return window.innerWidth", vec![])
            .await?;
        assert_eq!(width, 390);
        browser.close().await
    })
    .await?
}

/// A tiny HTTP server on 127.0.0.1 that answers every request with a page holding
/// `<p id="hello">bonjour</p>` and sends the head of each request for `/` to the returned channel.
async fn header_echo() -> anyhow::Result<(std::net::SocketAddr, mpsc::UnboundedReceiver<String>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                if head.starts_with("GET / ") {
                    let _ = tx.send(head);
                }
                let body = "<!doctype html><title>t</title><p id=\"hello\">bonjour</p>";
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    Ok((addr, rx))
}
