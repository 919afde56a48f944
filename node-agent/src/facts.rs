//! Detects what this machine offers: CPU, memory, disk, architecture, cgroups v2.

use std::collections::BTreeMap;
use std::path::Path;

use hearth_protocol::{Arch, CountryCode, HomeId, NodeFacts, Resources};

/// What the volunteer declares about the home.
#[derive(Debug, Clone)]
pub struct Declared {
    /// Country.
    pub country: CountryCode,
    /// ISP name.
    pub isp: String,
    /// ISP's AS number.
    pub asn: Option<u32>,
    /// Household id.
    pub home: HomeId,
    /// Uplink, Mbit/s.
    pub uplink_mbps: u32,
    /// Downlink, Mbit/s.
    pub downlink_mbps: u32,
    /// Placement labels.
    pub labels: BTreeMap<String, String>,
    /// Watts the home server draws (`--power-watts`), for the credit statement's energy.
    pub power_w: Option<u32>,
    /// Disk the volunteer gives to the cooperative (`--disk-mib`); without it, the space free
    /// on the data directory's filesystem at enrolment.
    pub disk_mib: Option<u64>,
}

/// Measures the machine and combines it with what the volunteer declared.
pub fn detect(declared: Declared, data_dir: &Path) -> NodeFacts {
    let cpu_millis = std::thread::available_parallelism()
        .map(|n| {
            u32::try_from(n.get())
                .unwrap_or(u32::MAX / 1000)
                .saturating_mul(1000)
        })
        .unwrap_or(1000);
    NodeFacts {
        agent: format!("hearth-node/{}", env!("CARGO_PKG_VERSION")),
        arch: arch(),
        capacity: Resources {
            cpu_millis,
            memory_mib: memory_mib().unwrap_or(0),
            disk_mib: declared
                .disk_mib
                .unwrap_or_else(|| free_disk_mib(data_dir).unwrap_or(0)),
            bandwidth_mbps: declared.uplink_mbps,
        },
        country: declared.country,
        isp: declared.isp,
        asn: declared.asn,
        home: declared.home,
        uplink_mbps: declared.uplink_mbps,
        downlink_mbps: declared.downlink_mbps,
        cgroups_v2: cgroups_v2(),
        labels: declared.labels,
        power_w: declared.power_w,
    }
}

/// This machine's architecture.
pub fn arch() -> Arch {
    match std::env::consts::ARCH {
        "aarch64" => Arch::Aarch64,
        "arm" => Arch::Arm,
        "riscv64" => Arch::Riscv64,
        _ => Arch::X86_64,
    }
}

/// Total memory from `/proc/meminfo`.
fn memory_mib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// Space available to the data directory's filesystem (the directory may not exist yet at
/// enrolment: its nearest existing ancestor is on the same filesystem).
pub fn free_disk_mib(path: &Path) -> Option<u64> {
    let stat = path
        .ancestors()
        .find_map(|p| nix::sys::statvfs::statvfs(p).ok())?;
    let bytes = stat.blocks_available().saturating_mul(stat.fragment_size());
    Some(bytes / (1024 * 1024))
}

/// Whether the unified cgroup hierarchy is mounted (the agent reports, never assumes).
pub fn cgroups_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}
