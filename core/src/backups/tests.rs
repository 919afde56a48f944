#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;

use hearth_protocol::{CountryCode, NodeId, SecretKey};

use super::*;

fn id(seed: u8) -> NodeId {
    NodeId::from_key(SecretKey::from_seed(&[seed; 32]).public())
}

fn site(home: &str, isp: &str, country: &str) -> Site {
    Site {
        home: home.parse().unwrap(),
        isp: isp.to_owned(),
        country: country.parse().unwrap(),
    }
}

fn node(seed: u8, home: &str, isp: &str, country: &str) -> HolderCandidate {
    HolderCandidate {
        node: id(seed),
        site: site(home, isp, country),
        state: HolderState::Up,
    }
}

fn countries(list: &[&str]) -> BTreeSet<CountryCode> {
    list.iter().map(|c| c.parse().unwrap()).collect()
}

fn run(
    allowed: &[&str],
    replicas: &[Site],
    candidates: &[HolderCandidate],
    current: &[NodeId],
    copies: u32,
) -> Holders {
    choose(&HolderRequest {
        countries: &countries(allowed),
        replicas,
        candidates,
        current,
        copies,
    })
}

#[test]
fn copies_never_leave_the_allowed_countries() {
    let replicas = [site("h1", "isp-a", "BE")];
    let fleet = [
        node(1, "h1", "isp-a", "BE"),
        node(2, "h2", "isp-b", "FR"),
        node(3, "h3", "isp-c", "DE"),
        node(4, "h4", "isp-a", "BE"),
    ];
    let out = run(&["BE"], &replicas, &fleet, &[], 2);
    assert_eq!(out.holders, vec![id(4)]);
    assert_eq!(
        out.shortfall.as_deref(),
        Some("backup copies: 1 of 2 homes, no other home in BE")
    );
    // A current holder outside them (the countries were narrowed) is dropped too.
    let out = run(&["BE"], &replicas, &fleet, &[id(2), id(4)], 2);
    assert_eq!(out.holders, vec![id(4)]);
    // No node at all in the countries: no holder, never one elsewhere.
    let out = run(&["NL"], &replicas, &fleet, &[], 2);
    assert!(out.holders.is_empty());
    assert_eq!(
        out.shortfall.as_deref(),
        Some("backup copies: 0 of 2 homes, no other home in NL")
    );
}

#[test]
fn another_isp_is_preferred_then_the_same_isp_in_another_home() {
    let replicas = [site("h1", "isp-a", "BE")];
    // Lower ids on the replica's ISP: the ISP preference must win over the tie-break.
    let fleet = [
        node(1, "h1", "isp-a", "BE"),
        node(2, "h2", "isp-a", "BE"),
        node(3, "h3", "isp-b", "BE"),
        node(4, "h4", "isp-c", "BE"),
    ];
    let mut out = run(&[], &replicas, &fleet, &[], 2);
    out.holders.sort();
    let mut want = vec![id(3), id(4)];
    want.sort();
    assert_eq!(out.holders, want);
    assert_eq!(out.shortfall, None);
    // Only one other ISP: the second copy goes to the replica's ISP, in another home.
    let fleet = [
        node(1, "h1", "isp-a", "BE"),
        node(2, "h2", "isp-a", "BE"),
        node(3, "h3", "isp-b", "BE"),
    ];
    let out = run(&[], &replicas, &fleet, &[], 2);
    assert_eq!(out.holders, vec![id(3), id(2)]);
}

#[test]
fn holders_are_in_distinct_homes_and_never_in_a_replicas_home() {
    let replicas = [site("h1", "isp-a", "BE"), site("h2", "isp-b", "BE")];
    let fleet = [
        node(1, "h1", "isp-a", "BE"),
        node(2, "h2", "isp-b", "BE"),
        node(3, "h1", "isp-z", "BE"),
        node(4, "h3", "isp-c", "BE"),
        node(5, "h3", "isp-d", "BE"),
    ];
    let out = run(&[], &replicas, &fleet, &[], 3);
    assert_eq!(out.holders.len(), 1, "{out:?}");
    assert!(out.holders[0] == id(4) || out.holders[0] == id(5));
    assert_eq!(
        out.shortfall.as_deref(),
        Some("backup copies: 1 of 3 homes, no other home")
    );
    // Two current holders in one home: the first is kept, the second replaced if it can be.
    let out = run(&[], &replicas, &fleet, &[id(5), id(4)], 1);
    assert_eq!(out.holders, vec![id(5)]);
}

#[test]
fn valid_holders_stay_even_when_a_better_node_appears() {
    let replicas = [site("h1", "isp-a", "BE")];
    let fleet = [
        node(1, "h1", "isp-a", "BE"),
        node(2, "h2", "isp-a", "BE"),
        node(3, "h3", "isp-a", "BE"),
        node(9, "h9", "isp-b", "BE"),
    ];
    let out = run(&[], &replicas, &fleet, &[id(3), id(2)], 2);
    assert_eq!(out.holders, vec![id(3), id(2)]);
    // The same inputs give the same answer (deterministic).
    assert_eq!(out, run(&[], &replicas, &fleet, &[id(3), id(2)], 2));
    // A holder whose home now runs a replica is replaced.
    let moved = [site("h3", "isp-a", "BE")];
    let out = run(&[], &moved, &fleet, &[id(3), id(2)], 2);
    assert_eq!(out.holders, vec![id(2), id(9)]);
}

#[test]
fn a_gone_holder_is_replaced_an_unavailable_one_kept() {
    let replicas = [site("h1", "isp-a", "BE")];
    let mut fleet = vec![
        node(1, "h1", "isp-a", "BE"),
        node(2, "h2", "isp-b", "BE"),
        node(3, "h3", "isp-c", "BE"),
        node(4, "h4", "isp-d", "BE"),
    ];
    fleet[1].state = HolderState::Unavailable; // down a short while, or suspect
    let out = run(&[], &replicas, &fleet, &[id(2), id(3)], 2);
    assert_eq!(out.holders, vec![id(2), id(3)]);
    fleet[1].state = HolderState::Gone; // retired, revoked or down for long
    let out = run(&[], &replicas, &fleet, &[id(2), id(3)], 2);
    assert_eq!(out.holders, vec![id(3), id(4)]);
    // An unknown node counts as gone.
    let out = run(&[], &replicas, &fleet[2..], &[id(7), id(3)], 2);
    assert_eq!(out.holders, vec![id(3), id(4)]);
    // An unavailable node is never chosen anew.
    fleet[3].state = HolderState::Unavailable;
    let out = run(&[], &replicas, &fleet, &[id(3)], 2);
    assert_eq!(out.holders, vec![id(3)]);
    assert_eq!(
        out.shortfall.as_deref(),
        Some("backup copies: 1 of 2 homes, no other home up")
    );
}

#[test]
fn fewer_copies_keep_the_up_holders_in_their_order() {
    let replicas = [site("h1", "isp-a", "BE")];
    let mut fleet = vec![
        node(2, "h2", "isp-b", "BE"),
        node(3, "h3", "isp-c", "BE"),
        node(4, "h4", "isp-d", "BE"),
    ];
    fleet[0].state = HolderState::Unavailable;
    let out = run(&[], &replicas, &fleet, &[id(2), id(4), id(3)], 2);
    assert_eq!(out.holders, vec![id(4), id(3)]);
    let out = run(&[], &replicas, &fleet, &[id(2), id(4), id(3)], 0);
    assert!(out.holders.is_empty());
    assert_eq!(out.shortfall, None);
}
