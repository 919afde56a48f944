//! Network namespaces for NAT tests (needs root, `ip` and `iptables`): a "public" namespace
//! routing between two routers, each masquerading a home namespace behind it. Every name is
//! unique to the test process and case; everything is removed on drop.
//!
//! ```text
//! home1 192.168.1.2 ── 192.168.1.1 router1 10.200.1.2 ── 10.200.1.1 public 10.200.2.1 ── 10.200.2.2 router2 192.168.2.1 ── 192.168.2.2 home2
//! ```

use std::process::Command;

/// How the routers translate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// `MASQUERADE`: port-preserving where the port is free (hole punching works).
    PortPreserving,
    /// `MASQUERADE --random-fully`: a random port per mapping (hole punching fails).
    RandomFully,
}

/// The namespaces of one test case.
#[derive(Debug)]
pub struct NatLab {
    /// The public namespace (master, gateway), address [`PUBLIC_IP`].
    pub public: String,
    /// The two home namespaces.
    pub homes: [String; 2],
    routers: [String; 2],
}

/// The public namespace's address on its link to router 1 (reachable from both homes).
pub const PUBLIC_IP: &str = "10.200.1.1";
/// The homes' addresses.
pub const HOME_IPS: [&str; 2] = ["192.168.1.2", "192.168.2.2"];

/// Why the lab cannot be built here; `None` when it can.
pub fn unsupported() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root".to_owned());
    }
    for tool in ["ip", "iptables"] {
        let found = Command::new(tool).arg("-V").output().is_ok()
            || Command::new(tool).arg("--version").output().is_ok();
        if !found {
            return Some(format!(
                "needs `{tool}` (apt-get install iproute2 iptables)"
            ));
        }
    }
    None
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ns(name: &str, args: &[&str]) {
    let mut all = vec!["ip", "netns", "exec", name];
    all.extend_from_slice(args);
    run(&all);
}

impl NatLab {
    /// Builds the namespaces for case `case` (a short tag, unique within the test process).
    pub fn new(case: &str, nat: Nat) -> Self {
        let tag = format!("hA{}{case}", std::process::id() % 100_000);
        let public = format!("{tag}p");
        let routers = [format!("{tag}r1"), format!("{tag}r2")];
        let homes = [format!("{tag}h1"), format!("{tag}h2")];
        let lab = Self {
            public: public.clone(),
            homes: homes.clone(),
            routers: routers.clone(),
        };
        for n in std::iter::once(&public).chain(&routers).chain(&homes) {
            run(&["ip", "netns", "add", n]);
            ns(n, &["ip", "link", "set", "lo", "up"]);
        }
        ns(&public, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        for i in 0..2 {
            let k = i + 1;
            let (r, h) = (&routers[i], &homes[i]);
            // public <-> router
            let (a, b) = (format!("{tag}a{k}"), format!("{tag}b{k}"));
            run(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
            run(&["ip", "link", "set", &a, "netns", &public]);
            run(&["ip", "link", "set", &b, "netns", r]);
            ns(
                &public,
                &["ip", "addr", "add", &format!("10.200.{k}.1/24"), "dev", &a],
            );
            ns(&public, &["ip", "link", "set", &a, "up"]);
            ns(
                r,
                &["ip", "addr", "add", &format!("10.200.{k}.2/24"), "dev", &b],
            );
            ns(r, &["ip", "link", "set", &b, "up"]);
            ns(
                r,
                &[
                    "ip",
                    "route",
                    "add",
                    "default",
                    "via",
                    &format!("10.200.{k}.1"),
                ],
            );
            ns(r, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
            // router <-> home
            let (c, d) = (format!("{tag}c{k}"), format!("{tag}d{k}"));
            run(&["ip", "link", "add", &c, "type", "veth", "peer", "name", &d]);
            run(&["ip", "link", "set", &c, "netns", r]);
            run(&["ip", "link", "set", &d, "netns", h]);
            ns(
                r,
                &["ip", "addr", "add", &format!("192.168.{k}.1/24"), "dev", &c],
            );
            ns(r, &["ip", "link", "set", &c, "up"]);
            ns(
                h,
                &["ip", "addr", "add", &format!("192.168.{k}.2/24"), "dev", &d],
            );
            ns(h, &["ip", "link", "set", &d, "up"]);
            ns(
                h,
                &[
                    "ip",
                    "route",
                    "add",
                    "default",
                    "via",
                    &format!("192.168.{k}.1"),
                ],
            );
            let mut masq = vec![
                "iptables",
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-o",
                &b,
                "-j",
                "MASQUERADE",
            ];
            if nat == Nat::RandomFully {
                masq.push("--random-fully");
            }
            ns(r, &masq);
            // Like a home router's firewall: unsolicited packets from outside are dropped
            // before their conntrack entry is confirmed (a confirmed one would take the
            // mapping a hole punch needs).
            ns(
                r,
                &[
                    "iptables",
                    "-A",
                    "INPUT",
                    "-i",
                    &b,
                    "-m",
                    "conntrack",
                    "--ctstate",
                    "NEW,INVALID",
                    "-j",
                    "DROP",
                ],
            );
        }
        lab
    }

    /// `ip netns exec NS program args…` as a command to spawn.
    pub fn command(namespace: &str, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", namespace]).arg(program);
        c
    }

    /// Moves the calling thread into `namespace` (its sockets and the processes it spawns
    /// then live there).
    pub fn enter(namespace: &str) {
        let f = std::fs::File::open(format!("/run/netns/{namespace}")).expect("netns file");
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
    }
}

impl Drop for NatLab {
    fn drop(&mut self) {
        for n in std::iter::once(&self.public)
            .chain(&self.routers)
            .chain(&self.homes)
        {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}
