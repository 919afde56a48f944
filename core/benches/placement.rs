//! Benchmark of the placement core: 10k nodes across 500 ISPs and 30 countries, spread on.
//! Prints decisions and replicas placed per second on one core, and decision latency quantiles.
//!
//! `cargo bench -p hearth-core --bench placement`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // bench code

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use hearth_core::placement::{Candidate, Request, Spread, country_index, place_indexed};
use hearth_protocol::{NodeId, Resources, SecretKey};

fn main() {
    let nodes = 10_000usize;
    let deployments = 20_000usize;
    let mut x: u64 = 42;
    let mut next = |n: u64| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) % n
    };
    let countries: Vec<String> = (0..30)
        .map(|i| format!("{}{}", (b'A' + i / 26) as char, (b'A' + i % 26) as char))
        .collect();
    let mut fleet: Vec<Candidate> = (0..nodes)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let isp = next(500);
            Candidate {
                id: NodeId::from_key(SecretKey::from_seed(&seed).public()),
                home: format!("home-{}", i / 2).parse().unwrap(),
                isp: format!("isp-{isp}"),
                country: countries[(isp % 30) as usize].parse().unwrap(),
                labels: BTreeMap::new(),
                capacity: Resources {
                    cpu_millis: 4000,
                    memory_mib: 8192,
                    disk_mib: 200_000,
                    bandwidth_mbps: 500,
                },
                allocated: Resources::default(),
                schedulable: next(100) > 2,
                reliability: 0.9 + next(100) as f64 / 1000.0,
            }
        })
        .collect();
    let index: std::collections::HashMap<NodeId, usize> =
        fleet.iter().enumerate().map(|(i, c)| (c.id, i)).collect();
    // Positions never change (only allocations do): the index is built once, as plan() does
    // once per pass.
    let by_country = country_index(&fleet);
    let mut latencies = Vec::with_capacity(deployments);
    let mut replicas = 0usize;
    let mut failed = 0usize;
    let start = Instant::now();
    for d in 0..deployments {
        let allowed: BTreeSet<_> = if d % 4 == 0 {
            [countries[d % 30].parse().unwrap()].into()
        } else {
            BTreeSet::new()
        };
        let req = Request {
            replicas: 3,
            resources: Resources {
                cpu_millis: 250,
                memory_mib: 256,
                disk_mib: 1000,
                bandwidth_mbps: 5,
            },
            spread: Spread {
                isp: true,
                country: true,
            },
            countries: allowed,
            labels: BTreeMap::new(),
        };
        let t = Instant::now();
        let result = place_indexed(&fleet, Some(&by_country), &[], &req, d.wrapping_mul(7919));
        latencies.push(t.elapsed());
        // Best effort: what was placed is allocated, a shortfall counted.
        for id in &result.added {
            let c = &mut fleet[index[id]];
            c.allocated.cpu_millis += req.resources.cpu_millis;
            c.allocated.memory_mib += req.resources.memory_mib;
            c.allocated.disk_mib += req.resources.disk_mib;
            c.allocated.bandwidth_mbps += req.resources.bandwidth_mbps;
        }
        replicas += result.added.len();
        failed += usize::from(result.shortfall.is_some());
    }
    let total = start.elapsed().as_secs_f64();
    latencies.sort();
    let q = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "fleet: {nodes} nodes, 500 ISPs, 30 countries; {deployments} deployments of 3 replicas, spread on (1 in 4 restricted to one country)"
    );
    println!("decisions/s:   {:.0}", deployments as f64 / total);
    println!(
        "replicas/s:    {:.0} ({replicas} placed, {failed} deployments short of replicas)",
        replicas as f64 / total
    );
    println!("decision p50:  {:?}", q(0.50));
    println!("decision p99:  {:?}", q(0.99));
    println!("decision max:  {:?}", latencies.last().unwrap());
}
