//! Roles end to end, against a real master with real enrolled nodes: ARCHITECTURE.md's role
//! table lists exactly the master's `POLICY`; every route is called with every role (an
//! operator, an auditor, a volunteer signed in with their enrolment token, a volunteer with an
//! issued credential, no credential, a wrong one) and answers 403 exactly where the table says;
//! listings are narrowed to a volunteer's nodes; a volunteer drains their own node; a removed
//! user is refused at once; `hearth login` keeps a credential for later commands.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::{Command, Stdio};

use hearth_master::access::POLICY;
use hearth_tests::bin;
use hearth_tests::master::MasterProc;
use hearth_tests::node::enrol_node;
use serde_json::Value;

/// The rows of ARCHITECTURE.md's role table: (method, route, access).
fn documented() -> BTreeSet<(String, String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../ARCHITECTURE.md"))
        .unwrap();
    let (_, table) = text
        .split_once("<!-- roles: method | route | access")
        .expect("ARCHITECTURE.md has the roles table");
    table
        .lines()
        .skip(3)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            (
                cells[0].to_owned(),
                cells[1].trim_matches('`').to_owned(),
                cells[2].to_owned(),
            )
        })
        .collect()
}

#[test]
fn the_documented_role_table_is_the_enforced_one() {
    let enforced: BTreeSet<_> = POLICY
        .iter()
        .map(|(m, p, a)| ((*m).to_owned(), (*p).to_owned(), a.as_str().to_owned()))
        .collect();
    assert_eq!(documented(), enforced);
}

/// Who calls, and what the table allows them, stated independently of the master's code.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Operator,
    Auditor,
    /// A volunteer acting on their own node.
    VolunteerOwn,
    /// A volunteer acting on someone else's node.
    VolunteerOther,
}

fn allowed(who: Who, access: &str) -> bool {
    match (who, access) {
        (Who::Operator, _) => true,
        (Who::Auditor, a) => ["audit", "scoped", "own-node", "signed-in"].contains(&a),
        (Who::VolunteerOwn, a) => ["scoped", "own-node", "node-action", "signed-in"].contains(&a),
        (Who::VolunteerOther, a) => ["scoped", "signed-in"].contains(&a),
    }
}

fn path_for(route: &str, node: &str) -> String {
    route
        .replace("{id}", node)
        .replace("{action}", "drain")
        .replace("{name}", "nosuch")
        .replace("{sha256}", &"0".repeat(64))
        .replace("{file}", "timestamp.json")
        .replace("{version}", "1.0.0")
}

async fn call(m: &MasterProc, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let method: reqwest::Method = method.parse().unwrap();
    let body = matches!(method, reqwest::Method::POST | reqwest::Method::PUT).then_some("{}");
    m.call(method, path, body, token).await
}

fn user_add(m: &MasterProc, args: &[&str]) -> String {
    let mut all = vec!["user", "add"];
    all.extend_from_slice(args);
    let out = m.cli(&all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_answers_each_role_as_the_table_says() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), &[]);
    // Vera's account is made by the token her node enrols with; Vic's by an operator.
    let vera_token = m.token(&["--volunteer", "vera"]);
    let (node_a, _) = enrol_node(&tmp.path().join("a"), m.quic, &vera_token)
        .await
        .unwrap();
    let (node_b, _) = enrol_node(&tmp.path().join("b"), m.quic, &m.token(&[]))
        .await
        .unwrap();
    let (a, b) = (node_a.to_string(), node_b.to_string());
    let vic = user_add(&m, &["vic", "--role", "volunteer", "--node", &b]);
    let audrey = user_add(&m, &["audrey", "--role", "auditor"]);
    let otto = user_add(&m, &["otto", "--role", "operator"]);
    assert!(vic.starts_with("hu1:") && audrey.starts_with("hu1:"));

    let (status, who) = call(&m, "GET", "/v1/whoami", Some(&vera_token)).await;
    assert_eq!(status, 200, "{who}");
    assert_eq!(who["name"], "vera");
    assert_eq!(who["role"], "volunteer");
    assert_eq!(who["nodes"], serde_json::json!([a]));

    // Every route × every role. Operators go last: their calls may change what others see.
    let callers: [(&str, &str, Who, &str); 6] = [
        ("audrey", &audrey, Who::Auditor, &a),
        ("vera on her node", &vera_token, Who::VolunteerOwn, &a),
        ("vera on another's", &vera_token, Who::VolunteerOther, &b),
        ("vic on his node", &vic, Who::VolunteerOwn, &b),
        ("otto", &otto, Who::Operator, &b),
        ("the admin token", &m.token, Who::Operator, &a),
    ];
    let mut checked = 0;
    for (method, route, access) in POLICY {
        for (name, credential, who, node) in callers {
            let path = path_for(route, node);
            let (status, body) = call(&m, method, &path, Some(credential)).await;
            let access = access.as_str();
            if allowed(who, access) {
                assert!(
                    status != 403 && status != 401,
                    "{name}: {method} {path} ({access}) answered {status} {body}"
                );
            } else {
                assert_eq!(status, 403, "{name}: {method} {path} ({access}): {body}");
                assert_eq!(body["error"]["code"], "forbidden");
            }
            checked += 1;
        }
        let path = path_for(route, &a);
        assert_eq!(
            call(&m, method, &path, None).await.0,
            401,
            "{method} {path}"
        );
        let wrong = format!("hu1:{}:{}", "0".repeat(16), "0".repeat(64));
        assert_eq!(
            call(&m, method, &path, Some(&wrong)).await.0,
            401,
            "{method} {path}"
        );
    }
    assert_eq!(checked, POLICY.len() * callers.len());

    // Listings are narrowed to a volunteer's own nodes; an auditor sees them all.
    let ids = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(&call(&m, "GET", "/v1/nodes", Some(&vera_token)).await.1),
        vec![a.clone()]
    );
    assert_eq!(
        ids(&call(&m, "GET", "/v1/nodes", Some(&vic)).await.1),
        vec![b.clone()]
    );
    assert_eq!(
        ids(&call(&m, "GET", "/v1/nodes", Some(&audrey)).await.1).len(),
        2
    );

    // A volunteer activates, then drains, their node; the operator's CLI shows it.
    let (s, _) = call(
        &m,
        "POST",
        &format!("/v1/nodes/{a}/activate"),
        Some(&vera_token),
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = call(
        &m,
        "POST",
        &format!("/v1/nodes/{a}/drain"),
        Some(&vera_token),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let out = m.cli(&["node", "show", &a, "--json"]);
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["admin"], "draining");

    // A token naming an auditor's name is refused; listed users never show secrets.
    let out = m.cli(&["token", "create", "--volunteer", "audrey"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a volunteer"));
    let out = m.cli(&["user", "list", "--json"]);
    let list = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(list.contains("\"enrolment_token\"") && !list.contains(&vic[22..]));

    // Removing a user ends their credential at once.
    let out = m.cli(&["user", "remove", "vic"]);
    assert!(out.status.success());
    assert_eq!(call(&m, "GET", "/v1/whoami", Some(&vic)).await.0, 401);
    let out = m.cli(&["user", "add", "otto", "--role", "auditor"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists already"));
    let out = m.cli(&["user", "add", "nina", "--role", "volunteer"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least one node"));

    // `hearth login` keeps Vera's credential; later commands use it, `logout` forgets it.
    let config = tmp.path().join("config");
    let hearth = |args: &[&str], stdin: Option<&str>| {
        let mut child = Command::new(bin("hearth"))
            .args(args)
            .env("HEARTH_CONFIG_DIR", &config)
            .env_remove("HEARTH_URL")
            .env_remove("HEARTH_TOKEN")
            .env_remove("HEARTH_DATA_DIR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(s) = stdin {
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    };
    let url = format!("http://{}", m.http);
    let out = hearth(&["--url", &url, "login"], Some(&format!("{vera_token}\n")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("signed in as vera (volunteer)"));
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(config.join("login.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = hearth(&["nodes", "--json"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        ids(&serde_json::from_slice(&out.stdout).unwrap()),
        vec![a.clone()]
    );
    let out = hearth(&["deployments"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("volunteer"));
    let out = hearth(&["--url", &url, "login"], Some("hu1:nonsense\n"));
    assert!(!out.status.success());
    assert!(hearth(&["logout"], None).status.success());
    let out = hearth(&["whoami"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("login"));
}
