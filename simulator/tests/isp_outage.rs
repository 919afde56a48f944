//! A scheduled ISP outage: services with replicas in other ISPs keep a majority, and the lost
//! replica is re-placed and running again within the time the configuration allows (liveness
//! `down_after`, one scheduler second, the fetch and the start), with no other failures.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use hearth_core::liveness::LivenessConfig;
use hearth_simulator::{RunOptions, Scenario, simulate};

const SCENARIO: &str = r#"
name = "isp-outage"
days = 1
warmup_minutes = 10

[agent]
boot_seconds = 60
start_seconds = 2
artifact_mib = 50

[fleet.home]
down_mbps = 500
latency_ms = 20

[[fleet.country]]
code = "BE"
isp = [
  { name = "proximus", homes = 10 },
  { name = "telenet", homes = 10 },
  { name = "orange", homes = 10 },
]

[[deployment]]
name = "svc"
count = 5
replicas = 3
spread = ["isp"]
cpu_millis = 500
memory_mib = 512

[[failures.isp_link]]
country = "BE"
isp = "telenet"
at_day = 0.25
hours = 3
"#;

#[test]
fn an_isp_outage_is_healed_in_time_for_services_spread_over_isps() {
    let sc = Scenario::parse(SCENARIO).unwrap();
    let fetch_s = sc.agent.artifact_mib * 8.0 * 1_048_576.0 / (500.0 * 1e6) + 0.04;
    let live = LivenessConfig::default();
    // Silence is detected `down_after` after the last heartbeat (at most one interval before
    // the cut, so never later than `down_after`), rounded up to the 500 ms ticker; the
    // scheduler runs at the next second; the desired state, the fetch and the start follow.
    let bound_s =
        live.down_after.as_secs_f64() + 0.5 + 1.0 + 0.02 + fetch_s + sc.agent.start_seconds;
    let r = simulate(sc, RunOptions::default()).unwrap();
    assert_eq!(r.failures.isp_outages, 1);
    assert_eq!(r.services.len(), 5);
    for s in &r.services {
        // Spread over three ISPs: exactly one replica was in the lost ISP.
        assert_eq!(s.re_placements, 1, "{}: {s:?}", s.name);
        assert!(s.heal.count >= 1, "{}: no healing episode: {s:?}", s.name);
        assert!(
            s.heal.max_s <= bound_s,
            "{}: healed in {} s, bound {bound_s} s",
            s.name,
            s.heal.max_s
        );
        assert!(
            s.heal.max_s >= 5.0,
            "{}: healed suspiciously fast: {s:?}",
            s.name
        );
        // The other two replicas kept serving throughout.
        assert_eq!(s.quorum, 1.0, "{}: lost its majority: {s:?}", s.name);
        assert_eq!(s.any, 1.0, "{}: {s:?}", s.name);
        assert!(s.all < 1.0 && s.all > 0.999, "{}: {s:?}", s.name);
        assert!(!s.degraded_at_end, "{}: {s:?}", s.name);
    }
    // When the ISP came back, its nodes were told to drop their stale copies.
    assert!(r.scheduler.re_placed == 5 && r.failures.transitions.down == 10);
}

#[test]
fn a_service_kept_in_the_lost_isp_is_not_healed_elsewhere() {
    // Control: without ISP spread and only one ISP allowed by capacity, nothing can heal.
    let text = SCENARIO
        .replace(
            "{ name = \"proximus\", homes = 10 }",
            "{ name = \"proximus\", homes = 10, cpu_millis = 100 }",
        )
        .replace(
            "{ name = \"orange\", homes = 10 }",
            "{ name = \"orange\", homes = 10, cpu_millis = 100 }",
        )
        .replace(
            "count = 5\nreplicas = 3\nspread = [\"isp\"]",
            "count = 1\nreplicas = 3\nspread = []",
        );
    let r = simulate(Scenario::parse(&text).unwrap(), RunOptions::default()).unwrap();
    let s = &r.services[0];
    assert!(s.any < 0.9, "{s:?}");
    assert!(s.outages.count >= 1, "{s:?}");
    assert!(s.outages.max_s >= 3.0 * 3600.0 - 60.0, "{s:?}");
}
