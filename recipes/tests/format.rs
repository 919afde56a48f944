//! The recipe format's checks beyond the shape: each invalid recipe names its field and reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use hearth_recipes::Recipe;
use hearth_recipes::policy::{Backup, ParamKind};

const BASE: &str = r#"name = "kv"
version = "2.0.0"
[[artifacts]]
name = "server"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
size = 1
sources = ["master", "https://example.invalid/kv"]
[run]
command = "{artifact:server}"
args = ["--port", "{port:http}", "--max", "{param:max}"]
[params.max]
type = "integer"
default = "16"
[[ports]]
name = "http"
[placement]
replicas = 3
spread = ["isp", "country"]
countries = ["BE", "NL"]
[data]
persistent = true
backup = "daily"
keep = 14
"#;

#[test]
fn a_full_recipe_parses() {
    let r = Recipe::parse(BASE).unwrap();
    assert_eq!(r.params["max"].kind, ParamKind::Integer);
    assert_eq!(r.placement.replicas, 3);
    assert_eq!(r.placement.countries.len(), 2);
    assert!(r.data.persistent);
    assert_eq!(r.data.backup, Backup::DAILY);
    assert_eq!((r.data.keep, r.data.copies), (14, 2));
    assert_eq!(r.artifacts[0].sources.len(), 2);
}

#[test]
fn backup_intervals_parse() {
    for (text, secs) in [("hourly", 3_600), ("15m", 900), ("30s", 30), ("6h", 21_600)] {
        let r = Recipe::parse(&BASE.replace("\"daily\"", &format!("\"{text}\""))).unwrap();
        assert_eq!(r.data.backup.every_secs(), Some(secs), "{text}");
    }
    let none = Recipe::parse(&BASE.replace("backup = \"daily\"", "")).unwrap();
    assert_eq!(none.data.backup, Backup::None);
}

#[test]
fn invalid_fields_are_named_with_the_reason() {
    let cases = [
        (
            "default = \"16\"",
            "default = \"lots\"",
            "params.max.default",
        ),
        ("replicas = 3", "replicas = 0", "placement.replicas"),
        (
            "spread = [\"isp\", \"country\"]",
            "spread = [\"zone\"]",
            "placement.spread",
        ),
        ("keep = 14", "keep = 0", "data.keep"),
        ("\"master\", ", "\"ftp://x\", ", "artifacts.sources"),
        (
            "countries = [\"BE\", \"NL\"]",
            "countries = [\"Belgium\"]",
            "countries",
        ),
        ("backup = \"daily\"", "backup = \"5s\"", "backup"),
        ("backup = \"daily\"", "backup = \"3d\"", "backup"),
        ("keep = 14", "keep = 14\ncopies = 0", "data.copies"),
        ("persistent = true", "persistent = false", "data.backup"),
        (
            "keep = 14",
            "keep = 14\nsnapshot_command = [\"\"]",
            "data.snapshot_command",
        ),
        (
            "persistent = true",
            "persistent = true\ncolour = 1",
            "colour",
        ),
    ];
    for (from, to, field) in cases {
        let text = BASE.replace(from, to);
        assert_ne!(text, BASE, "{from}");
        let e = Recipe::parse(&text).unwrap_err().to_string();
        assert!(e.contains(field), "{field}: {e}");
    }
}

#[test]
fn peers_names_a_declared_tcp_port() {
    let with = |peers: &str, ports: &str| format!("{BASE}{ports}{peers}");
    let cluster = "[[ports]]\nname = \"cluster\"\n";
    let r = Recipe::parse(&with("[peers]\nport = \"cluster\"\n", cluster)).unwrap();
    assert_eq!(r.peers.unwrap().port.as_str(), "cluster");
    assert!(Recipe::parse(BASE).unwrap().peers.is_none());

    let cases = [
        (
            "[peers]\nport = \"gossip\"\n",
            cluster,
            "no port named `gossip`",
        ),
        (
            "[peers]\nport = \"cluster\"\n",
            "[[ports]]\nname = \"cluster\"\nprotocol = \"udp\"\n",
            "replica links carry tcp",
        ),
        ("[peers]\nport = \"Not A Name\"\n", cluster, "invalid name"),
        ("[peers]\n", cluster, "missing field `port`"),
        (
            "[peers]\nport = \"cluster\"\nmode = \"mesh\"\n",
            cluster,
            "mode",
        ),
    ];
    for (peers, ports, want) in cases {
        let e = Recipe::parse(&with(peers, ports)).unwrap_err().to_string();
        assert!(e.contains(want), "{peers}: {e}");
    }
}
