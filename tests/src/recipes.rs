//! The recipes that tests and benchmarks deploy: `hearth-static` and `hearth-test-peer`.

use hearth_protocol::Sha256;

/// `static-site` 1.0.0 running the artifact `artifact` (`size` bytes): a `title` parameter
/// (default "Hello co-op"), a generated secret `admin_password`, one port `http` with an HTTP
/// health check, and small reserved resources.
pub fn static_site(artifact: &Sha256, size: u64) -> String {
    format!(
        r#"name = "static-site"
version = "1.0.0"
description = "Static website (hearth-static, built in this workspace)"
[[artifacts]]
name = "server"
sha256 = "{artifact}"
size = {size}
executable = true
[run]
command = "{{artifact:server}}"
args = ["--port", "{{port:http}}", "--root", "{{data}}/site", "--title", "{{param:title}}"]
[params.title]
default = "Hello co-op"
[params.admin_password]
secret = true
[[ports]]
name = "http"
[health]
kind = "http"
port = "http"
path = "/healthz"
[resources]
cpu_millis = 100
memory_mib = 32
"#
    )
}

/// `peer-echo` 1.0.0 running `hearth-test-peer` (`artifact`, `size` bytes): replicas that
/// listen on their `cluster` port, reach each other through the addresses their agents give
/// them (`[peers] port = "cluster"`) and record the answers in `{data}/reached.json`.
pub fn peer_echo(artifact: &Sha256, size: u64) -> String {
    format!(
        r#"name = "peer-echo"
version = "1.0.0"
description = "Replicas that greet each other (hearth-test-peer)"
[[artifacts]]
name = "server"
sha256 = "{artifact}"
size = {size}
executable = true
[run]
command = "{{artifact:server}}"
args = ["--port", "{{port:cluster}}", "--out", "{{data}}/reached.json"]
[[ports]]
name = "cluster"
[peers]
port = "cluster"
[health]
kind = "tcp"
port = "cluster"
"#
    )
}

/// Signs and publishes a recipe through the real tooling (`hearth recipe keys init` once per
/// master, then `build`, `sign`, `publish`), with `artifacts` as NAME=PATH files. Returns
/// `NAME@VERSION:SHA256` of the staged recipe.
pub fn sign_and_publish(
    m: &crate::master::MasterProc,
    recipe_text: &str,
    artifacts: &[(&str, &std::path::Path)],
) -> String {
    let base = m.dir.with_extension("recipes");
    let (keys, work) = (base.join("keys"), base.join("work"));
    let run = |args: &[&str]| {
        let out = m.cli(args);
        assert!(
            out.status.success(),
            "hearth {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    if !keys.join("root.json").exists() {
        run(&["recipe", "keys", "init", "--keys", keys.to_str().unwrap()]);
    }
    let n = std::fs::read_dir(&base).map_or(0, |d| d.count());
    let src = base.join(format!("src-{n}"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("recipe.toml"), recipe_text).unwrap();
    let mut args: Vec<String> = ["recipe", "build", src.to_str().unwrap()]
        .map(String::from)
        .to_vec();
    args.extend(["--repo".into(), work.to_str().unwrap().into()]);
    for (name, path) in artifacts {
        args.extend(["--artifact".into(), format!("{name}={}", path.display())]);
    }
    let reference = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    run(&[
        "recipe",
        "sign",
        "--repo",
        work.to_str().unwrap(),
        "--keys",
        keys.to_str().unwrap(),
    ]);
    run(&["recipe", "publish", "--repo", work.to_str().unwrap()]);
    reference
}

/// `hearth recipe keys rotate-root` on the keys directory `keys`: root version N+1 with three
/// new root keys and a threshold of two, signed by the old root keys too.
pub fn rotate_root(m: &crate::master::MasterProc, keys: &std::path::Path) {
    crate::deploy::cli_ok(
        m,
        &[
            "recipe",
            "keys",
            "rotate-root",
            "--keys",
            keys.to_str().unwrap(),
            "--root-keys",
            "3",
            "--threshold",
            "2",
        ],
    );
}
