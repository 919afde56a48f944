//! Resource limits through cgroups v2, when the host offers a writable unified hierarchy.
//!
//! Each instance gets `<agent's cgroup>/hearth-<instance>` with `memory.max` and `cpu.max` from
//! its reserved resources; its process is moved there right after it starts. Hosts without
//! cgroups v2 (or without write access) run instances unlimited; the agent reports which in its
//! facts (`cgroups_v2`) and logs it, never assumes it.

use std::path::{Path, PathBuf};

use hearth_protocol::Resources;
use hearth_protocol::messages::state::InstanceId;

/// Root of the unified hierarchy.
const UNIFIED: &str = "/sys/fs/cgroup";

/// The control files and values for `resources`: 0 means unlimited.
pub fn limits(resources: &Resources) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if resources.memory_mib > 0 {
        out.push((
            "memory.max",
            (resources.memory_mib.saturating_mul(1024 * 1024)).to_string(),
        ));
    }
    if resources.cpu_millis > 0 {
        // Quota per 100 ms period: 1000 millicores = 100000 µs.
        out.push((
            "cpu.max",
            format!("{} 100000", u64::from(resources.cpu_millis) * 100),
        ));
    }
    out
}

/// The agent's own cgroup directory, if the host has a writable cgroups v2 hierarchy.
pub fn agent_cgroup() -> Option<PathBuf> {
    if !crate::facts::cgroups_v2() {
        return None;
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = Path::new(UNIFIED).join(rel.trim_start_matches('/'));
    let writable = nix::unistd::access(&dir, nix::unistd::AccessFlags::W_OK).is_ok();
    writable.then_some(dir)
}

/// Creates the instance's cgroup with its limits and moves `pid` into it.
pub fn confine(
    parent: &Path,
    instance: &InstanceId,
    resources: &Resources,
    pid: u32,
) -> std::io::Result<PathBuf> {
    let dir = parent.join(format!("hearth-{instance}"));
    std::fs::create_dir_all(&dir)?;
    for (file, value) in limits(resources) {
        std::fs::write(dir.join(file), value)?;
    }
    std::fs::write(dir.join("cgroup.procs"), pid.to_string())?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_reserved_resources_and_zero_means_unlimited() {
        let r = Resources {
            cpu_millis: 250,
            memory_mib: 64,
            disk_mib: 0,
            bandwidth_mbps: 0,
        };
        assert_eq!(
            limits(&r),
            vec![
                ("memory.max", "67108864".to_owned()),
                ("cpu.max", "25000 100000".to_owned())
            ]
        );
        assert!(limits(&Resources::default()).is_empty());
    }
}
