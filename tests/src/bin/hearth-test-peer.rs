//! A replica for the replica-link tests: answers each connection on `--port` with
//! `<HEARTH_INSTANCE> got <line>`, and every 300 ms connects to each peer named in
//! `HEARTH_PEERS_FILE`, says `hello from <HEARTH_INSTANCE>` and records the answers in `--out`
//! as `{"env": HEARTH_PEERS at start, "peers": {instance: answer or "error: …"}}`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde_json::{Map, Value, json};

#[derive(Parser)]
struct Args {
    /// The peer port to listen on (127.0.0.1).
    #[arg(long)]
    port: u16,
    /// Where to record what the peers answered.
    #[arg(long)]
    out: PathBuf,
}

fn main() {
    let args = Args::parse();
    let me = std::env::var("HEARTH_INSTANCE").unwrap_or_default();
    let env = std::env::var("HEARTH_PEERS").ok();
    let file = std::env::var_os("HEARTH_PEERS_FILE").map(PathBuf::from);
    let listener = TcpListener::bind(("127.0.0.1", args.port)).expect("bind the peer port");
    let name = me.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let name = name.clone();
            std::thread::spawn(move || answer(conn, &name));
        }
    });
    loop {
        let mut peers = Map::new();
        let entries: Vec<Value> = file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        for e in entries {
            let (Some(instance), Some(addr)) = (e["instance"].as_str(), e["addr"].as_str()) else {
                continue;
            };
            let answer = match addr.parse() {
                Ok(addr) => ask(addr, &me).unwrap_or_else(|e| format!("error: {e}")),
                Err(e) => format!("error: {e}"),
            };
            peers.insert(instance.to_owned(), Value::String(answer));
        }
        let record = json!({"env": env, "peers": peers});
        let tmp = args.out.with_extension("tmp");
        if std::fs::write(&tmp, record.to_string()).is_ok() {
            let _ = std::fs::rename(&tmp, &args.out);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn answer(conn: TcpStream, name: &str) {
    let mut line = String::new();
    let mut reader = BufReader::new(&conn);
    if reader.read_line(&mut line).is_ok() {
        let mut conn = &conn;
        let _ = writeln!(conn, "{name} got {}", line.trim_end());
        let _ = conn.shutdown(Shutdown::Write);
    }
}

fn ask(addr: SocketAddr, me: &str) -> std::io::Result<String> {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    writeln!(conn, "hello from {me}")?;
    conn.shutdown(Shutdown::Write)?;
    let mut back = String::new();
    conn.read_to_string(&mut back)?;
    Ok(back.trim_end().to_owned())
}
