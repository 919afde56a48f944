//! The master's side of the ingress gateway against a real `hearth-master` on 127.0.0.1:
//! registering gateways (`/v1/gateways`, `hearth gateway`), the routing table a gateway reads
//! with a signed request (`GET /v1/gateway/routes`: every way to get the signature wrong is 401,
//! the long poll answers 304 after `wait_s` and returns early on a change), the route checks of
//! deployments (`host_taken`, `port_taken`, undeclared ports), `hearth expose`/`unexpose` through
//! the real CLI, and a node's desired state naming the gateways and its exposed ports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::time::{Duration, Instant};

use hearth_protocol::messages::session::{Counters, Heartbeat};
use hearth_protocol::messages::state::DesiredState;
use hearth_protocol::messages::tunnel::GatewayRequest;
use hearth_protocol::{Message, Resources, SecretKey, SignerId};
use hearth_tests::deploy::{cli_ok, deployment, upload_static_site};
use hearth_tests::master::MasterProc;
use hearth_tests::node::{TestSession, enrol_node};
use serde_json::{Value, json};

const ROUTES: &str = "/v1/gateway/routes";

fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// `Authorization: Hearth-Gateway …` for `GET path`, claiming to be `id`, signed with `key`.
fn authorization(id: &SignerId, key: &SecretKey, unix_ms: u64, path: &str) -> String {
    let request = GatewayRequest {
        gateway: id,
        unix_ms,
        method: "GET",
        path,
    };
    let sig = key.sign(&request.signing_bytes());
    format!("Hearth-Gateway {id} {unix_ms} {sig}")
}

/// A `GET` of the routing table with `auth` (none: no header) and `If-None-Match`: status,
/// unquoted `ETag`, body.
async fn get_routes(
    m: &MasterProc,
    path: &str,
    auth: Option<String>,
    known: Option<&str>,
) -> (u16, Option<String>, Value) {
    let mut req = reqwest::Client::new().get(format!("http://{}{path}", m.http));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    if let Some(v) = known {
        req = req.header("if-none-match", format!("\"{v}\""));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let etag = resp
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().trim_matches('"').to_owned());
    let text = resp.text().await.unwrap();
    (
        status,
        etag,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// A registered gateway's signed read of `path`.
async fn signed(
    m: &MasterProc,
    key: &SecretKey,
    path: &str,
    known: Option<&str>,
) -> (u16, Option<String>, Value) {
    let id = SignerId::from_key(key.public());
    get_routes(
        m,
        path,
        Some(authorization(&id, key, now_ms(), path)),
        known,
    )
    .await
}

async fn post(m: &MasterProc, path: &str, body: &Value) -> (u16, Value) {
    m.call(
        reqwest::Method::POST,
        path,
        Some(&body.to_string()),
        Some(&m.token),
    )
    .await
}

fn gateway_spec(name: &str, key: &SecretKey, addr: &str) -> Value {
    json!({ "name": name, "key": SignerId::from_key(key.public()).to_string(), "tunnel_addr": addr })
}

/// `hearth ARGS`, expected to fail: its stderr.
fn cli_err(m: &MasterProc, args: &[&str]) -> String {
    let out = m.cli(args);
    assert!(!out.status.success(), "hearth {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_register_and_read_a_signed_routing_table_that_long_polls() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), &[]);
    let recipe = upload_static_site(&m, tmp.path(), |r| r);
    let key = SecretKey::generate();
    let id = SignerId::from_key(key.public()).to_string();

    // Registration: 201, the same again 200, another key or address under the name 409, the key
    // under another name 409; listed; removal of an unknown one 404.
    let spec = gateway_spec("edge-1", &key, "127.0.0.1:7443");
    let (s, v) = post(&m, "/v1/gateways", &spec).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        (v["key"].as_str(), v["last_seen_ms"].is_null()),
        (Some(id.as_str()), true)
    );
    assert_eq!(post(&m, "/v1/gateways", &spec).await.0, 200);
    let other = SecretKey::generate();
    for clash in [
        gateway_spec("edge-1", &other, "127.0.0.1:7443"),
        gateway_spec("edge-1", &key, "127.0.0.1:7444"),
        gateway_spec("edge-2", &key, "127.0.0.1:7443"),
    ] {
        let (s, v) = post(&m, "/v1/gateways", &clash).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (409, Some("gateway_exists")),
            "{v}"
        );
    }
    let (s, v) = post(
        &m,
        "/v1/gateways",
        &json!({"name": "edge-3", "key": "hk-nope", "tunnel_addr": "127.0.0.1:1"}),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = m
        .call(
            reqwest::Method::DELETE,
            "/v1/gateways/nowhere",
            None,
            Some(&m.token),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("unknown_gateway")),
        "{v}"
    );
    let err = cli_err(
        &m,
        &[
            "gateway",
            "add",
            "edge-3",
            "--key",
            "hn-nope",
            "--tunnel-addr",
            "127.0.0.1:1",
        ],
    );
    assert!(err.contains("is not a gateway id"), "{err}");
    let err = cli_err(
        &m,
        &[
            "gateway",
            "add",
            "edge-3",
            "--key",
            &id,
            "--tunnel-addr",
            "localhost:1",
        ],
    );
    assert!(err.contains("is not IP:PORT"), "{err}");
    let err = cli_err(
        &m,
        &[
            "gateway",
            "add",
            "edge-1",
            "--key",
            &id,
            "--tunnel-addr",
            "127.0.0.1:1",
        ],
    );
    assert!(err.contains("remove it first"), "{err}");
    let listed = cli_ok(&m, &["gateway", "list"]);
    assert!(
        listed.contains("edge-1") && listed.contains(&id),
        "{listed}"
    );

    // Every way to get the signature wrong is 401; the admin token is not accepted here.
    let stranger = SecretKey::generate();
    let stranger_id = SignerId::from_key(stranger.public());
    let gid: SignerId = id.parse().unwrap();
    let bad = [
        ("unsigned", None, ROUTES),
        ("admin token", Some(format!("Bearer {}", m.token)), ROUTES),
        (
            "signed by another key",
            Some(authorization(&gid, &stranger, now_ms(), ROUTES)),
            ROUTES,
        ),
        (
            "unregistered key",
            Some(authorization(&stranger_id, &stranger, now_ms(), ROUTES)),
            ROUTES,
        ),
        (
            "stale time",
            Some(authorization(&gid, &key, now_ms() - 10 * 60 * 1000, ROUTES)),
            ROUTES,
        ),
        (
            "tampered path",
            Some(authorization(&gid, &key, now_ms(), ROUTES)),
            "/v1/gateway/routes?wait_s=1",
        ),
        ("garbage", Some("Hearth-Gateway x y z".to_owned()), ROUTES),
    ];
    for (what, auth, path) in bad {
        let (s, _, v) = get_routes(&m, path, auth, None).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "{what}: {v}"
        );
    }

    // A signed request gets the table (nothing routed yet), with its version as ETag.
    let (s, etag, table) = signed(&m, &key, ROUTES, None).await;
    assert_eq!(s, 200, "{table}");
    assert_eq!(etag.as_deref(), table["version"].as_str());
    assert_eq!(table["deployments"], json!([]));

    // A deploy with --host shows up, with its replica (none placed: no node).
    cli_ok(
        &m,
        &[
            "deploy",
            "web",
            "--recipe",
            &recipe,
            "--host",
            "WWW.Example.coop",
        ],
    );
    let (_, _, table) = signed(&m, &key, ROUTES, None).await;
    assert_eq!(table["deployments"][0]["deployment"], "web", "{table}");
    assert_eq!(
        table["deployments"][0]["hosts"],
        json!([{"host": "www.example.coop", "port": "http", "plain_http": false}])
    );
    let version = table["version"].as_str().unwrap().to_owned();

    // The long poll: no change → 304 after wait_s.
    let path = "/v1/gateway/routes?wait_s=2";
    let started = Instant::now();
    let (s, etag, _) = signed(&m, &key, path, Some(&version)).await;
    let waited = started.elapsed();
    assert_eq!((s, etag.as_deref()), (304, Some(version.as_str())));
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(10),
        "{waited:?}"
    );

    // A change (hearth expose, through the real CLI) ends a 30 s wait at once.
    let poll = {
        let (http, key) = (m.http, SecretKey::from_seed(&key.seed()));
        let version = version.clone();
        tokio::spawn(async move {
            let path = "/v1/gateway/routes?wait_s=30";
            let id = SignerId::from_key(key.public());
            let started = Instant::now();
            let resp = reqwest::Client::new()
                .get(format!("http://{http}{path}"))
                .header("authorization", authorization(&id, &key, now_ms(), path))
                .header("if-none-match", format!("\"{version}\""))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (
                status,
                resp.json::<Value>().await.unwrap(),
                started.elapsed(),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = cli_ok(
        &m,
        &["expose", "web", "--tcp", "http=8080", "--proxy-protocol"],
    );
    assert!(out.contains("tcp :8080"), "{out}");
    let (s, table, waited) = tokio::time::timeout(Duration::from_secs(20), poll)
        .await
        .expect("the long poll returned")
        .unwrap();
    assert_eq!(s, 200, "{table}");
    assert!(
        waited < Duration::from_secs(15),
        "the change took {waited:?} to reach the gateway"
    );
    assert_eq!(
        table["deployments"][0]["tcp"],
        json!([{"port": "http", "public_port": 8080, "proxy_protocol": true}])
    );
    assert_ne!(table["version"], version.as_str());

    // The gateway's read is recorded.
    let (_, gateways) = m.get("/v1/gateways").await;
    assert!(gateways[0]["last_seen_ms"].as_u64().is_some(), "{gateways}");

    // The view shows the routes; `hearth deployment show` prints them.
    let d = deployment(&m, "web");
    assert_eq!(d["spec"]["tcp"][0]["public_port"], 8080, "{d}");
    let shown = cli_ok(&m, &["deployment", "show", "web"]);
    assert!(
        shown.contains("www.example.coop") && shown.contains("tcp :8080"),
        "{shown}"
    );

    // unexpose removes exactly what it names; naming what is not routed is an error.
    cli_ok(&m, &["unexpose", "web", "--tcp", "8080"]);
    assert!(deployment(&m, "web")["spec"].get("tcp").is_none());
    let err = cli_err(&m, &["unexpose", "web", "--host", "other.example.coop"]);
    assert!(
        err.contains("does not route host other.example.coop"),
        "{err}"
    );
    let err = cli_err(&m, &["expose", "web"]);
    assert!(err.contains("--host"), "{err}");
    let err = cli_err(&m, &["expose", "web", "--tcp", "http"]);
    assert!(err.contains("PORTNAME=PUBLICPORT"), "{err}");
    let err = cli_err(&m, &["deploy", "x", "--recipe", &recipe, "--plain-http"]);
    assert!(err.contains("--host"), "{err}");

    // Removal: 200, then the gateway's requests are 401.
    cli_ok(&m, &["gateway", "remove", "edge-1"]);
    assert_eq!(signed(&m, &key, ROUTES, None).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_are_checked_against_the_recipe_and_other_deployments() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), &[]);
    let recipe = upload_static_site(&m, tmp.path(), |r| r);
    cli_ok(
        &m,
        &[
            "deploy",
            "web",
            "--recipe",
            &recipe,
            "--host",
            "www.example.coop",
            "--tcp",
            "http=9000",
        ],
    );
    let spec: Value = serde_json::from_str(&cli_ok(&m, &["deployment", "show", "web", "--json"]))
        .map(|d: Value| d["spec"].clone())
        .unwrap();
    let with = |name: &str, hosts: Value, tcp: Value| {
        let mut s = spec.clone();
        s["name"] = json!(name);
        s["hosts"] = hosts;
        s["tcp"] = tcp;
        s
    };
    let cases = [
        (
            with("blog", json!([{"host": "www.example.coop"}]), json!([])),
            409,
            "host_taken",
            "www.example.coop",
        ),
        (
            with(
                "blog",
                json!([]),
                json!([{"port": "http", "public_port": 9000}]),
            ),
            409,
            "port_taken",
            "9000",
        ),
        (
            with(
                "blog",
                json!([{"host": "blog.example.coop", "port": "admin"}]),
                json!([]),
            ),
            400,
            "bad_request",
            "`admin`",
        ),
        (
            with(
                "blog",
                json!([]),
                json!([{"port": "db", "public_port": 5432}]),
            ),
            400,
            "bad_request",
            "`db`",
        ),
        (
            with(
                "blog",
                json!([{"host": "blog.example.coop"}, {"host": "BLOG.example.coop"}]),
                json!([]),
            ),
            400,
            "bad_request",
            "twice",
        ),
    ];
    for (body, status, code, names) in cases {
        let (s, v) = post(&m, "/v1/deployments", &body).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {v}"
        );
        assert!(
            v["error"]["message"].as_str().unwrap().contains(names),
            "{v}"
        );
    }
    let (s, _) = m.get("/v1/deployments/blog").await;
    assert_eq!(s, 404, "a refused deployment is not stored");

    // The same through the CLI, and its own routes may be sent again (idempotent).
    let err = cli_err(
        &m,
        &[
            "deploy",
            "blog",
            "--recipe",
            &recipe,
            "--host",
            "www.example.coop",
        ],
    );
    assert!(err.contains("routed to deployment web"), "{err}");
    let err = cli_err(
        &m,
        &[
            "expose",
            "web",
            "--host",
            "api.example.coop",
            "--port",
            "nope",
        ],
    );
    assert!(err.contains("`nope`"), "{err}");
    let (s, v) = post(&m, "/v1/deployments", &spec).await;
    assert_eq!(s, 200, "{v}");

    // Eight deployments racing for one host: exactly one gets it.
    let racers: Vec<_> = (0..8)
        .map(|k| {
            let body = with(
                &format!("race-{k}"),
                json!([{"host": "race.example.coop"}]),
                json!([]),
            );
            let (http, token) = (m.http, m.token.clone());
            tokio::spawn(async move {
                let resp = reqwest::Client::new()
                    .post(format!("http://{http}/v1/deployments"))
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                resp.status().as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for r in racers {
        statuses.push(r.await.unwrap());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409, 409, 409, 409, 409, 409, 409]);
}

/// The next desired state on `session` that `accept` accepts, heartbeating meanwhile (30 s limit).
async fn desired(
    session: &mut TestSession,
    accept: impl Fn(&DesiredState) -> bool,
) -> DesiredState {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut beat = Instant::now();
    let mut seq = 1_000;
    while Instant::now() < deadline {
        if beat.elapsed() > Duration::from_secs(1) {
            // Not `TestSession::heartbeat`, which expects the ack next: a push may come first.
            seq += 1;
            let hb = Heartbeat {
                seq,
                used: Resources::default(),
                applied_revision: 0,
                instances: vec![],
                counters: Counters::default(),
                ack: true,
            };
            session.control.send(&Message::Heartbeat(hb)).await.unwrap();
            beat = Instant::now();
        }
        let msg = tokio::time::timeout(Duration::from_millis(500), session.control.recv()).await;
        if let Ok(Ok(Some(Message::DesiredState(ds)))) = msg
            && accept(&ds)
        {
            return ds;
        }
    }
    panic!("no such desired state within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_holding_a_routed_replica_learns_the_gateways_and_its_exposed_ports() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), &[]);
    let recipe = upload_static_site(&m, tmp.path(), |r| r);
    let (_, node_key) = enrol_node(&tmp.path().join("node"), m.quic, &m.token(&[]))
        .await
        .unwrap();
    let mut session = TestSession::open(m.quic, m.id, &node_key).await;
    session.heartbeat().await;

    let gateway = SecretKey::generate();
    let gid = SignerId::from_key(gateway.public());
    cli_ok(
        &m,
        &[
            "gateway",
            "add",
            "edge-1",
            "--key",
            &gid.to_string(),
            "--tunnel-addr",
            "127.0.0.1:7443",
        ],
    );
    cli_ok(
        &m,
        &[
            "deploy",
            "web",
            "--recipe",
            &recipe,
            "--host",
            "www.example.coop",
        ],
    );
    let ds = desired(&mut session, |ds| !ds.instances.is_empty()).await;
    assert_eq!(
        ds.instances[0]
            .exposed
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>(),
        ["http"]
    );
    assert_eq!(ds.gateways.len(), 1, "{ds:?}");
    assert_eq!(
        (ds.gateways[0].gateway, ds.gateways[0].addr.to_string()),
        (gid, "127.0.0.1:7443".to_owned())
    );

    // A second gateway is pushed at once; removing one too.
    let second = SignerId::from_key(SecretKey::generate().public());
    cli_ok(
        &m,
        &[
            "gateway",
            "add",
            "edge-2",
            "--key",
            &second.to_string(),
            "--tunnel-addr",
            "127.0.0.1:7444",
        ],
    );
    let ds = desired(&mut session, |ds| ds.gateways.len() == 2).await;
    let revision = ds.revision;
    cli_ok(&m, &["gateway", "remove", "edge-1"]);
    let ds = desired(&mut session, |ds| {
        ds.gateways.len() == 1 && ds.revision > revision
    })
    .await;
    assert_eq!(ds.gateways[0].gateway, second);

    // Exposing a TCP route to the same port changes nothing for the node; unexposing the host
    // leaves the TCP route; unexposing everything closes the links.
    cli_ok(&m, &["expose", "web", "--tcp", "http=8080"]);
    cli_ok(&m, &["unexpose", "web", "--host", "www.example.coop"]);
    assert_eq!(deployment(&m, "web")["spec"]["tcp"][0]["public_port"], 8080);
    cli_ok(&m, &["unexpose", "web", "--tcp", "8080"]);
    let ds = desired(&mut session, |ds| {
        ds.gateways.is_empty() && ds.instances.iter().all(|a| a.exposed.is_empty())
    })
    .await;
    assert_eq!(ds.instances.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_256_routing_table_requests_wait_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), &[]);
    let key = SecretKey::generate();
    let (s, v) = post(
        &m,
        "/v1/gateways",
        &gateway_spec("edge-1", &key, "127.0.0.1:7443"),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (_, version, _) = signed(&m, &key, ROUTES, None).await;
    let version = version.unwrap();
    let client = reqwest::Client::new();
    let id = SignerId::from_key(key.public());
    let request = |wait_s: u64| {
        let path = format!("{ROUTES}?wait_s={wait_s}");
        client
            .get(format!("http://{}{path}", m.http))
            .header("authorization", authorization(&id, &key, now_ms(), &path))
            .header("if-none-match", format!("\"{version}\""))
            .send()
    };
    // 257 requests wait for a change: 256 get a place, one is refused at once.
    let waiting: Vec<_> = (0..257).map(|_| tokio::spawn(request(60))).collect();
    let refused = hearth_tests::eventually(Duration::from_secs(40), async || {
        waiting.iter().position(|w| w.is_finished())
    })
    .await
    .expect("one of 257 waiting requests is refused");
    let mut waiting = waiting;
    let resp = waiting.remove(refused).await.unwrap().unwrap();
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "routes_busy", "{v}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        waiting.iter().all(|w| !w.is_finished()),
        "the other 256 still wait"
    );
    // A gateway that hangs up gives its place back: with the 256 gone, a request waits again
    // (its 1 s ends in 304).
    for w in &waiting {
        w.abort();
    }
    let waited = hearth_tests::eventually(Duration::from_secs(20), async || {
        let resp = request(1).await.unwrap();
        (resp.status() == 304).then_some(())
    })
    .await;
    assert!(waited.is_some(), "the permits of closed requests came back");
}
