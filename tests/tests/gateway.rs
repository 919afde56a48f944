//! The ingress gateway end to end: a catalogue service with 3 replicas on 3 real agents,
//! fetched by the public through a real `hearth-gateway` by host name over TLS; one replica's
//! home goes dark mid-load and requests keep succeeding (failures counted and bounded); the
//! gateway's byte counters equal what a TCP client sent and received; every node that served
//! holds a receipt signed by the gateway, and is credited by the master exactly what the
//! gateway counted for it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::net::SocketAddr;
use std::time::Duration;

use hearth_protocol::messages::usage::BandwidthReceipt;
use hearth_tests::deploy::{THREE_HOMES, cli_ok, homes, upload_static_site};
use hearth_tests::eventually;
use hearth_tests::gateway::GatewayProc;
use hearth_tests::load_http::{Load, LoadReport};
use hearth_tests::master::{FAST, MasterProc};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(90);
const HOST: &str = "www.example.coop";

async fn serving(m: &MasterProc, name: &str) -> Vec<(String, String)> {
    let (_, v) = m.get(&format!("/v1/deployments/{name}")).await;
    v["replicas"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter(|r| r["serving"] == true)
                .map(|r| {
                    (
                        r["instance"].as_str().unwrap().to_owned(),
                        r["node"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn https_client(gw: &GatewayProc, cert_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .resolve(HOST, gw.https)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One raw HTTP/1.1 exchange over TCP: returns (bytes sent, bytes received).
async fn raw_exchange(addr: SocketAddr) -> (u64, u64, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = b"GET / HTTP/1.1\r\nHost: tcp.example.coop\r\nConnection: close\r\n\r\n";
    s.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer))
        .await
        .expect("answer within 10 s")
        .unwrap();
    (
        request.len() as u64,
        answer.len() as u64,
        String::from_utf8_lossy(&answer).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_public_reaches_three_replicas_through_the_gateway_and_survives_a_dark_home() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), FAST);
    let gw = GatewayProc::start(
        dir.path(),
        "gw1",
        &m,
        &[
            "--receipt-window",
            "2s",
            "--per-ip-rate",
            "100000",
            "--per-ip-burst",
            "100000",
        ],
    );
    let cert = gw.add_certificate(HOST);
    let (mut nodes, ids) = homes(&m, dir.path(), &THREE_HOMES, WAIT).await;
    let recipe = upload_static_site(&m, dir.path(), |t| t);
    let tcp_port = free_port();
    cli_ok(
        &m,
        &[
            "deploy",
            "web",
            "--recipe",
            &recipe,
            "--replicas",
            "3",
            "--host",
            HOST,
            "--tcp",
            &format!("http={tcp_port}"),
        ],
    );
    let all = eventually(WAIT, async || {
        let s = serving(&m, "web").await;
        (s.len() == 3).then_some(s)
    })
    .await
    .expect("3 replicas serving");

    // Through the gateway, by host name, over TLS (HTTP/2 when the client offers it).
    let client = https_client(&gw, &cert);
    let url = format!("https://{HOST}/");
    let first = eventually(WAIT, async || {
        let r = client.get(&url).send().await.ok()?;
        (r.status() == 200).then_some(r)
    })
    .await
    .unwrap_or_else(|| panic!("no 200 through the gateway; gateway log:\n{}", gw.log()));
    let body = first.text().await.unwrap();
    assert!(body.contains("Hello co-op"), "{body}");
    // Plain HTTP: an unknown host name gets 404, a host without plain HTTP a redirect.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let plain_get = async |host: &str| {
        plain
            .get(format!("http://{}/", gw.http))
            .header("host", host)
            .send()
            .await
            .unwrap()
    };
    assert_eq!(plain_get("nobody.example.coop").await.status(), 404);
    let redirect = plain_get(HOST).await;
    assert_eq!(redirect.status(), 308);
    assert_eq!(
        redirect.headers()["location"],
        format!("https://{HOST}/").as_str()
    );

    // Load from 8 clients; one replica's home goes dark (agent and instance killed) after 2 s.
    let load = Load::start(&client, &url, None, 8, Duration::from_secs(10));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let victim = &all[0].1;
    let at = ids.iter().position(|id| id == victim).unwrap();
    let killed = load.elapsed();
    nodes[at].kill9();
    nodes[at].kill_instances();
    let LoadReport {
        ok,
        failed,
        last_failure,
    } = load.finish(false).await;
    eprintln!("load: {ok} ok, {failed} failed, last at {last_failure:?} (home dark at {killed:?})");
    assert!(ok > 100, "too few requests succeeded: {ok}");
    assert!(
        failed * 100 <= ok + failed,
        "more than 1% failed: {failed} of {}",
        ok + failed
    );
    if let Some(last) = last_failure {
        assert!(
            last <= killed + Duration::from_secs(3),
            "a request failed {:?} after the home went dark",
            last.saturating_sub(killed)
        );
    }

    // Raw TCP through the public port: the gateway counts exactly the bytes of the exchange.
    let before_to = gw
        .metric_sum("hearth_gateway_bytes_total", &[("direction", "to_node")])
        .await;
    let before_from = gw
        .metric_sum("hearth_gateway_bytes_total", &[("direction", "from_node")])
        .await;
    let (sent, received, answer) =
        raw_exchange(format!("127.0.0.1:{tcp_port}").parse().unwrap()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let counted = eventually(Duration::from_secs(5), async || {
        let to = gw
            .metric_sum("hearth_gateway_bytes_total", &[("direction", "to_node")])
            .await;
        let from = gw
            .metric_sum("hearth_gateway_bytes_total", &[("direction", "from_node")])
            .await;
        (to - before_to == sent as f64 && from - before_from == received as f64).then_some(())
    })
    .await;
    assert!(
        counted.is_some(),
        "gateway counters differ from the {sent} bytes sent and {received} received:\n{}",
        gw.metrics().await
    );

    // Every node that served holds receipts signed by this gateway, equal to the counters.
    let served: Vec<&String> = ids.iter().filter(|id| *id != victim).collect();
    let receipts = eventually(Duration::from_secs(20), async || {
        let issued: Vec<BandwidthReceipt> = gw
            .issued_receipts()
            .into_iter()
            .filter_map(|v: Value| serde_json::from_value(v).ok())
            .collect();
        served
            .iter()
            .all(|id| issued.iter().any(|r| r.node.to_string() == **id))
            .then_some(issued)
    })
    .await
    .expect("a receipt for every node that served");
    for r in &receipts {
        r.verify().expect("receipt signed by the gateway");
        assert_eq!(r.gateway.to_string(), gw.id);
    }
    for (i, id) in ids.iter().enumerate() {
        if id == victim {
            continue;
        }
        let stored = eventually(Duration::from_secs(20), async || {
            let n = nodes[i].status()["gateways"]["receipts"]
                .as_u64()
                .unwrap_or(0);
            (n > 0).then_some(n)
        })
        .await;
        assert!(
            stored.is_some(),
            "node {id} stored no receipt: {}",
            nodes[i].status()
        );
        // The agent settles them with the master: what it was credited is what the gateway
        // counted for it (SPEC §9.16).
        let settled = eventually(Duration::from_secs(30), async || {
            let issued: u64 = gw
                .issued_receipts()
                .into_iter()
                .filter_map(|v: Value| serde_json::from_value::<BandwidthReceipt>(v).ok())
                .filter(|r| r.node.to_string() == *id)
                .map(|r| r.bytes_from_node + r.bytes_to_node)
                .sum();
            let s = nodes[i].status()["settlement"].clone();
            (s["pending"] == 0 && s["credited_bytes"] == issued && issued > 0).then_some(())
        })
        .await;
        assert!(
            settled.is_some(),
            "node {id} was not credited what the gateway counted: {}",
            nodes[i].status()
        );
    }
}

/// A rolling update under load: each replica is drained (no new tunnels, open ones finish)
/// before it stops, so no request fails while every replica is replaced in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_update_under_load_drains_each_replica_and_fails_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), FAST);
    let gw = GatewayProc::start(
        dir.path(),
        "gw1",
        &m,
        &["--per-ip-rate", "100000", "--per-ip-burst", "100000"],
    );
    let (nodes, _ids) = homes(&m, dir.path(), &THREE_HOMES, WAIT).await;
    let v1 = upload_static_site(&m, dir.path(), |t| t);
    let v2 = upload_static_site(&m, dir.path(), |r| {
        r.replace("version = \"1.0.0\"", "version = \"1.1.0\"")
    });
    cli_ok(
        &m,
        &[
            "deploy",
            "web",
            "--recipe",
            &v1,
            "--replicas",
            "2",
            "--host",
            HOST,
            "--plain-http",
        ],
    );
    eventually(WAIT, async || {
        (serving(&m, "web").await.len() == 2).then_some(())
    })
    .await
    .expect("2 replicas serving");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = format!("http://{}/", gw.http);
    eventually(WAIT, async || {
        let r = client.get(&url).header("host", HOST).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await
    .expect("served through the gateway");

    let load = Load::start(&client, &url, Some(HOST), 8, Duration::from_secs(300));
    let out = m.cli(&["update", "web", "--recipe", &v2, "--wait", "90s"]);
    let LoadReport { ok, failed, .. } = load.finish(true).await;
    assert!(
        out.status.success(),
        "update failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("rolling update under load: {ok} ok, {failed} failed");
    assert!(ok > 100, "too few requests: {ok}");
    assert_eq!(failed, 0, "requests failed during the rolling update");
    let drained = nodes
        .iter()
        .filter(|n| n.log().contains("draining before stop"))
        .count();
    assert_eq!(drained, 2, "each updated replica's node drained it first");
}
