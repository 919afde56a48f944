//! The recipe of `hearth-static` that tests and benchmarks deploy.

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
