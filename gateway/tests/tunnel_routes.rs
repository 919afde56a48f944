//! The routing poller against a tiny master stand-in on 127.0.0.1 that checks each request's
//! `Hearth-Gateway` signature with `GatewayRequest::verify` and long-polls like the master:
//! 200 with the table and its ETag, or 304 after holding a request whose `If-None-Match` is
//! current.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tunnel_node;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hearth_api::RouteTable;
use hearth_gateway::routes::{Poller, RoutesError};
use hearth_gateway::table::Routing;
use hearth_protocol::messages::tunnel::GatewayRequest;
use hearth_protocol::{SecretKey, Signature, SignerId};
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use tokio::sync::watch;
use tunnel_node::*;

struct Master {
    table: RouteTable,
    registered: Option<SignerId>,
    /// `If-None-Match` of each authorised request.
    seen: Vec<Option<String>>,
}

fn check(req: &Request<hyper::body::Incoming>, registered: Option<SignerId>) -> bool {
    let Some(auth) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let parts: Vec<&str> = auth.split(' ').collect();
    let [scheme, id, ms, sig] = parts.as_slice() else {
        return false;
    };
    let (Ok(id), Ok(ms), Ok(sig)) = (
        id.parse::<SignerId>(),
        ms.parse::<u64>(),
        sig.parse::<Signature>(),
    ) else {
        return false;
    };
    let path = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("");
    let request = GatewayRequest {
        gateway: &id,
        unix_ms: ms,
        method: req.method().as_str(),
        path,
    };
    *scheme == GatewayRequest::SCHEME && Some(id) == registered && request.verify(&sig).is_ok()
}

async fn serve(master: Arc<Mutex<Master>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let master = master.clone();
            let service = hyper::service::service_fn(move |req| {
                let master = master.clone();
                async move { Ok::<_, Infallible>(answer(req, &master).await) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service),
            );
        }
    });
    format!("http://{addr}")
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    master: &Mutex<Master>,
) -> Response<Full<Bytes>> {
    let registered = master.lock().unwrap().registered;
    assert_eq!(req.uri().path(), "/v1/gateway/routes");
    if !check(&req, registered) {
        let mut r = Response::new(Full::from(r#"{"error":"unauthorized"}"#));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return r;
    }
    let held = req
        .headers()
        .get("if-none-match")
        .map(|v| v.to_str().unwrap().to_owned());
    master.lock().unwrap().seen.push(held.clone());
    // Hold a current request up to a second for a change.
    for _ in 0..50 {
        let version = master.lock().unwrap().table.version.clone();
        if held.as_deref() != Some(&format!("\"{version}\"")) {
            let body = serde_json::to_vec(&master.lock().unwrap().table).unwrap();
            let mut r = Response::new(Full::from(body));
            r.headers_mut()
                .insert("etag", format!("\"{version}\"").parse().unwrap());
            return r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut r = Response::new(Full::default());
    *r.status_mut() = StatusCode::NOT_MODIFIED;
    r
}

#[tokio::test]
async fn the_poller_publishes_the_table_then_long_polls_with_its_version_and_sees_changes() {
    let key = SecretKey::generate();
    let node = Node::new();
    let master = Arc::new(Mutex::new(Master {
        table: table(&[("web-1", node.id)], vec![]),
        registered: Some(SignerId::from_key(key.public())),
        seen: vec![],
    }));
    let url = serve(master.clone()).await;
    let (tx, mut rx) = watch::channel(Arc::new(Routing::default()));
    tokio::spawn(Poller::new(&url, key).unwrap().with_wait(1).run(tx));

    tokio::time::timeout(WAIT, rx.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rx.borrow_and_update().version, "v1");
    assert!(rx.borrow().admits(&node.id));
    until("a held request with the version", || {
        master
            .lock()
            .unwrap()
            .seen
            .iter()
            .filter(|s| s.as_deref() == Some("\"v1\""))
            .count()
            >= 2
    })
    .await;
    assert!(!rx.has_changed().unwrap(), "a 304 publishes nothing");

    let other = Node::new();
    master.lock().unwrap().table = table(&[("web-1", node.id), ("web-2", other.id)], vec![]);
    tokio::time::timeout(WAIT, rx.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rx.borrow().version, "v2");
    assert!(rx.borrow().admits(&other.id));
    assert_eq!(master.lock().unwrap().seen.first(), Some(&None));
}

#[tokio::test]
async fn an_unregistered_gateway_is_told_how_to_register_and_keeps_its_last_table() {
    let key = SecretKey::generate();
    let id = SignerId::from_key(key.public());
    let master = Arc::new(Mutex::new(Master {
        table: table(&[], vec![]),
        registered: None,
        seen: vec![],
    }));
    let url = serve(master.clone()).await;
    let poller = Poller::new(&url, key).unwrap().with_wait(1);
    let err = poller.fetch("").await.unwrap_err();
    assert!(matches!(err, RoutesError::Unauthorized(k) if k == id));
    let text = err.to_string();
    assert!(
        text.contains("hearth gateway add") && text.contains(&id.to_string()),
        "{text}"
    );

    // A forged signature (another key claiming this id) is refused too.
    master.lock().unwrap().registered = Some(id);
    let forger = Poller::new(&url, SecretKey::generate()).unwrap();
    let forged = forger.authorization("GET", "/v1/gateway/routes?wait_s=1", 1);
    let mut parts: Vec<String> = forged.split(' ').map(str::to_owned).collect();
    parts[1] = id.to_string();
    let status = reqwest::Client::new()
        .get(format!("{url}/v1/gateway/routes?wait_s=1"))
        .header("authorization", parts.join(" "))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);

    let held = Routing::from_table(&table(&[("web-9", Node::new().id)], vec![]));
    let (tx, rx) = watch::channel(Arc::new(held));
    master.lock().unwrap().registered = None;
    tokio::spawn(poller.run(tx));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        rx.borrow().version,
        "v1",
        "the last table stays while the master refuses"
    );
    assert!(Poller::new("127.0.0.1:1", SecretKey::generate()).is_err());
}
