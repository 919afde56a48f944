use super::*;
use hearth_protocol::SecretKey;

fn node(seed: u8, home: &str, isp: &str, country: &str) -> Candidate {
    Candidate {
        id: NodeId::from_key(SecretKey::from_seed(&[seed; 32]).public()),
        home: home.parse().unwrap(),
        isp: isp.into(),
        country: country.parse().unwrap(),
        labels: BTreeMap::new(),
        capacity: Resources {
            cpu_millis: 4000,
            memory_mib: 8192,
            disk_mib: 100_000,
            bandwidth_mbps: 100,
        },
        allocated: Resources::default(),
        schedulable: true,
        reliability: 1.0,
    }
}

fn request(replicas: usize, countries: &[&str]) -> Request {
    Request {
        replicas,
        resources: Resources {
            cpu_millis: 500,
            memory_mib: 512,
            disk_mib: 1000,
            bandwidth_mbps: 10,
        },
        spread: Spread {
            isp: true,
            country: true,
        },
        countries: countries.iter().map(|c| c.parse().unwrap()).collect(),
        labels: BTreeMap::new(),
    }
}

fn attrs<'a>(fleet: &'a [Candidate], ids: &[NodeId]) -> Vec<&'a Candidate> {
    ids.iter()
        .map(|id| fleet.iter().find(|c| c.id == *id).unwrap())
        .collect()
}

#[test]
fn replicas_spread_over_homes_isps_and_countries_when_the_fleet_allows() {
    let fleet = vec![
        node(1, "h1", "proximus", "BE"),
        node(2, "h1", "proximus", "BE"),
        node(3, "h2", "proximus", "BE"),
        node(4, "h3", "telenet", "BE"),
        node(5, "h4", "free", "FR"),
    ];
    let p = place(&fleet, &[], &request(3, &[]), 0);
    assert!(p.shortfall.is_none());
    let chosen = attrs(&fleet, &p.added);
    let homes: BTreeSet<_> = chosen.iter().map(|c| &c.home).collect();
    let isps: BTreeSet<_> = chosen.iter().map(|c| &c.isp).collect();
    let countries: BTreeSet<_> = chosen.iter().map(|c| &c.country).collect();
    assert_eq!((homes.len(), isps.len(), countries.len()), (3, 3, 2));
    assert_eq!(
        achieved(&chosen),
        Achieved {
            replicas: 3,
            homes: 3,
            countries: 2,
            isps: 3
        }
    );
    assert_eq!(available(&fleet, None, &chosen, &request(3, &[])), (2, 3));
}

#[test]
fn the_country_constraint_is_never_violated() {
    // A seeded pseudo-random fleet; the seed is printed on failure.
    for seed in 0u64..200 {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = |n: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % n
        };
        let countries = ["BE", "FR", "DE", "NL"];
        let fleet: Vec<Candidate> = (0..40u8)
            .map(|i| {
                let c = countries[next(4) as usize];
                let mut n = node(i, &format!("h{}", next(30)), &format!("isp{}", next(6)), c);
                n.schedulable = next(10) > 1;
                n
            })
            .collect();
        let req = request(1 + next(4) as usize, &["BE", "NL"]);
        {
            let p = place(&fleet, &[], &req, seed as usize);
            for c in attrs(&fleet, &p.added) {
                assert!(
                    ["BE", "NL"].contains(&c.country.as_str()),
                    "seed {seed}: placed in {}",
                    c.country
                );
                assert!(
                    c.schedulable,
                    "seed {seed}: placed on an unschedulable node"
                );
            }
            let homes: BTreeSet<_> = attrs(&fleet, &p.added)
                .iter()
                .map(|c| c.home.clone())
                .collect();
            assert_eq!(
                homes.len(),
                p.added.len(),
                "seed {seed}: two replicas in one home"
            );
        }
    }
}

#[test]
fn existing_replicas_stay_and_only_the_missing_are_placed_elsewhere() {
    let fleet = vec![
        node(1, "h1", "a", "BE"),
        node(2, "h2", "b", "BE"),
        node(3, "h3", "c", "BE"),
    ];
    let p = place(&fleet, &[fleet[0].id, fleet[1].id], &request(3, &[]), 0);
    assert_eq!(p.added, vec![fleet[2].id]);
    assert!(
        place(
            &fleet,
            &[fleet[0].id, fleet[1].id, fleet[2].id],
            &request(3, &[]),
            0
        )
        .added
        .is_empty()
    );
}

#[test]
fn an_unplaceable_deployment_says_why() {
    let mut fleet = vec![
        node(1, "h1", "a", "BE"),
        node(2, "h1", "b", "BE"),
        node(3, "h2", "c", "FR"),
    ];
    fleet[2].allocated.memory_mib = 8000;
    let p = place(&fleet, &[], &request(2, &["BE"]), 0);
    assert_eq!(p.added.len(), 1, "what fits is placed");
    assert_eq!(
        p.shortfall.unwrap().0,
        "needs 2 replicas in distinct homes in BE, 1 possible: 2 nodes in BE, 2 schedulable, 2 with room for the resources, in 1 distinct home"
    );
    let p = place(&fleet, &[], &request(1, &["FR"]), 0);
    assert!(p.added.is_empty());
    let e = p.shortfall.unwrap();
    assert!(e.0.contains("0 with room for the resources"), "{e}");
    let mut labelled = request(1, &["FR"]);
    labelled.labels.insert("disk".into(), "ssd".into());
    let e = place(&fleet, &[], &labelled, 0).shortfall.unwrap();
    assert!(e.0.contains("0 with the labels disk=ssd"), "{e}");
}

#[test]
fn free_capacity_and_reliability_decide_between_equals() {
    let mut fleet = vec![
        node(1, "h1", "a", "BE"),
        node(2, "h2", "a", "BE"),
        node(3, "h3", "a", "BE"),
    ];
    fleet[0].allocated.memory_mib = 6000;
    fleet[1].reliability = 0.5;
    let p = place(&fleet, &[], &request(1, &[]), 0);
    assert_eq!(p.added, vec![fleet[2].id]);
}

#[test]
fn the_country_index_gives_the_same_placements_and_never_leaves_the_countries() {
    let countries = ["BE", "FR", "DE", "NL"];
    let isps = ["a", "b", "c"];
    let fleet: Vec<Candidate> = (0u8..60)
        .map(|i| {
            node(
                i,
                &format!("h{i}"),
                isps[usize::from(i) % 3],
                countries[usize::from(i / 3) % 4],
            )
        })
        .collect();
    let index = country_index(&fleet);
    for (start, allowed) in [(0, vec!["BE"]), (7, vec!["NL"]), (13, vec!["DE"])] {
        let req = request(3, &allowed);
        let plain = place(&fleet, &[], &req, start);
        let indexed = place_indexed(&fleet, Some(&index), &[], &req, start);
        assert_eq!(plain, indexed);
    }
    let req = request(4, &["FR", "NL"]);
    let p = place_indexed(&fleet, Some(&index), &[], &req, 5);
    assert_eq!(p.added.len(), 4);
    for c in attrs(&fleet, &p.added) {
        assert!(["FR", "NL"].contains(&c.country.as_str()), "{}", c.country);
    }
}
