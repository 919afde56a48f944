//! The catalogue's recipes (`catalogue/recipes/*/recipe.toml`) parse with `Recipe::parse` (their
//! artifact hash and size are placeholders until `hearth recipe build`), and each runs as its
//! recipe says: arguments and environment expanded as a node would, health check on `/healthz`,
//! and the secret token guarding writes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use hearth_recipes::template::{Context, expand};
use hearth_recipes::{HealthCheck, Recipe};

/// (directory, binary) of each catalogue recipe.
const CATALOGUE: [(&str, &str); 3] = [
    ("static-site", env!("CARGO_BIN_EXE_hearth-static")),
    ("kv-store", env!("CARGO_BIN_EXE_hearth-kv")),
    ("notes", env!("CARGO_BIN_EXE_hearth-notes")),
];

fn load(name: &str) -> Recipe {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("recipes")
        .join(name)
        .join("recipe.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    Recipe::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn catalogue_recipes_parse() {
    for (name, _) in CATALOGUE {
        let r = load(name);
        assert_eq!(r.name.as_str(), name);
        assert_eq!(r.artifacts.len(), 1, "{name}");
        assert_eq!(r.artifacts[0].size, 0, "{name}: placeholder until built");
        assert_eq!(r.ports.len(), 1, "{name}");
        assert_eq!(r.ports[0].name, "http", "{name}");
        assert_eq!(
            r.health,
            Some(HealthCheck::Http {
                port: "http".into(),
                path: "/healthz".into()
            }),
            "{name}"
        );
        assert!(
            r.resources.memory_mib > 0 && r.resources.disk_mib > 0,
            "{name}"
        );
        let secrets = r.params.values().filter(|p| p.secret).count();
        assert_eq!(
            secrets,
            usize::from(name != "static-site"),
            "{name}: secret token"
        );
        if secrets > 0 {
            assert!(
                r.run.env.values().any(|v| v == "{param:token}"),
                "{name}: the token goes through the environment"
            );
        }
        assert!(
            !r.run.args.iter().any(|a| a.contains("{param:token}")),
            "{name}: never on the command line"
        );
    }
}

/// A node's view of one instance: the recipe's run section expanded and started.
struct Instance {
    child: Child,
    base: String,
    token: String,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(name: &str, bin: &str, dir: &Path) -> Instance {
    let r = load(name);
    // A free port, as the node would choose one; released just before the service binds it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let token = format!("generated-{name}-secret");
    let params: BTreeMap<String, String> = r
        .params
        .iter()
        .map(|(k, p)| {
            let value = if p.secret {
                token.clone()
            } else {
                p.default.clone().unwrap()
            };
            (k.clone(), value)
        })
        .collect();
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let ctx = Context {
        artifacts: [("server".to_owned(), bin.to_owned())].into(),
        ports: [("http".to_owned(), port)].into(),
        params,
        dir: Some(dir),
        data: Some(&data),
    };
    let command = expand(&r.run.command, &ctx).unwrap();
    let args: Vec<String> = r
        .run
        .args
        .iter()
        .map(|a| expand(a, &ctx).unwrap())
        .collect();
    let env: Vec<(String, String)> = r
        .run
        .env
        .iter()
        .map(|(k, v)| (k.clone(), expand(v, &ctx).unwrap()))
        .collect();
    let child = Command::new(command)
        .args(args)
        .env_clear()
        .envs(env)
        .spawn()
        .unwrap();
    Instance {
        child,
        base: format!("http://127.0.0.1:{port}"),
        token,
    }
}

/// Polls the recipe's health check (bounded: 100 tries, 100 ms apart).
async fn healthy(c: &reqwest::Client, base: &str) -> bool {
    for _ in 0..100 {
        if let Ok(resp) = c.get(format!("{base}/healthz")).send().await
            && resp.status().is_success()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn catalogue_recipes_run_as_written() {
    let c = reqwest::Client::new();
    for (name, bin) in CATALOGUE {
        let dir = tempfile::tempdir().unwrap();
        let inst = run(name, bin, dir.path());
        assert!(healthy(&c, &inst.base).await, "{name} never became healthy");
        let base = &inst.base;
        match name {
            "static-site" => {
                let page = c
                    .get(format!("{base}/"))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                assert!(page.contains("Hello co-op"), "{page}");
            }
            "kv-store" => {
                let url = format!("{base}/v1/objects/greeting");
                let open = c.put(&url).body("hi").send().await.unwrap();
                assert_eq!(open.status(), 401, "the secret token guards writes");
                let put = c
                    .put(&url)
                    .bearer_auth(&inst.token)
                    .body("hi")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(put.status(), 201);
                assert_eq!(
                    c.get(&url).send().await.unwrap().text().await.unwrap(),
                    "hi"
                );
                assert!(dir.path().join("data/objects/greeting").is_file());
            }
            _ => {
                let url = format!("{base}/v1/notes");
                let open = c.post(&url).body("hi").send().await.unwrap();
                assert_eq!(open.status(), 401, "the secret token guards posting");
                let post = c
                    .post(&url)
                    .bearer_auth(&inst.token)
                    .body("hi")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(post.status(), 201);
                let page = c
                    .get(format!("{base}/"))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                assert!(
                    page.contains("Co-op notes") && page.contains(">hi</a>"),
                    "{page}"
                );
            }
        }
    }
}
