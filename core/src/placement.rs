//! Placement, sans-IO: which nodes get a deployment's replicas.
//!
//! Hard constraints: the node is schedulable, in an allowed country, carries the required
//! labels, has room for the resources, and is in a home that holds no other replica of the
//! deployment. Spread: among those, a node in a country and then an ISP the deployment does not
//! use yet wins; what the fleet cannot give is reported, not refused. Placement is best effort:
//! as many replicas as the constraints allow are placed and the shortfall is explained, as Nomad
//! and Kubernetes do. Score: free capacity after placement times measured reliability. Existing
//! replicas stay where they are (re-placement moves as little as possible). [`assess`] says how
//! far a set of replicas meets the spread that was asked. The master and the simulator drive the
//! same functions.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use hearth_protocol::{CountryCode, HomeId, NodeId, Resources};

/// What the scheduler knows of one node.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The node.
    pub id: NodeId,
    /// Its household.
    pub home: HomeId,
    /// Its ISP.
    pub isp: String,
    /// Its country.
    pub country: CountryCode,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Total capacity.
    pub capacity: Resources,
    /// Already reserved by instances.
    pub allocated: Resources,
    /// Active and up (not draining, suspect, down, reserve…).
    pub schedulable: bool,
    /// Measured reliability in `[0, 1]` (share of audits passed).
    pub reliability: f64,
}

/// Spread preferences beyond distinct homes (always required).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Spread {
    /// Prefer distinct ISPs.
    pub isp: bool,
    /// Prefer distinct countries.
    pub country: bool,
}

/// What a deployment asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Replicas wanted in total.
    pub replicas: usize,
    /// Resources of one replica.
    pub resources: Resources,
    /// Spread preferences.
    pub spread: Spread,
    /// Allowed countries; empty means anywhere.
    pub countries: BTreeSet<CountryCode>,
    /// Labels a node must carry.
    pub labels: BTreeMap<String, String>,
}

/// A decision: as many of the missing replicas as the constraints allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Nodes of the new replicas, in order (possibly fewer than were missing).
    pub added: Vec<NodeId>,
    /// Why fewer than the missing replicas were added; `None` when all were.
    pub shortfall: Option<Unplaceable>,
}

/// Why not enough replicas could be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unplaceable(pub String);

/// How many ideal candidates (meeting every spread preference) are scored before choosing, as
/// Kubernetes scores a share of the nodes and Nomad a limited number: large fleets need not be
/// scanned whole for each replica.
pub const SCORE_LIMIT: usize = 64;

/// Positions of the fleet's nodes by country, for [`place_indexed`]: built once per snapshot so
/// that jurisdiction-restricted requests need not walk the whole fleet.
pub type CountryIndex = HashMap<CountryCode, Vec<usize>>;

/// Builds the [`CountryIndex`] of `fleet`.
pub fn country_index(fleet: &[Candidate]) -> CountryIndex {
    let mut index = CountryIndex::new();
    for (i, c) in fleet.iter().enumerate() {
        index.entry(c.country).or_default().push(i);
    }
    index
}

/// Places the missing replicas of a deployment whose current replicas run on `existing`.
///
/// The scan starts at `start` (mod the fleet size) so that successive decisions spread their
/// load; the caller chooses it (a counter, or the simulator's seeded RNG) to stay deterministic.
pub fn place(fleet: &[Candidate], existing: &[NodeId], req: &Request, start: usize) -> Placement {
    place_indexed(fleet, None, existing, req, start)
}

/// [`place`] with the fleet's [`CountryIndex`] (which must be of this `fleet`).
pub fn place_indexed(
    fleet: &[Candidate],
    countries: Option<&CountryIndex>,
    existing: &[NodeId],
    req: &Request,
    start: usize,
) -> Placement {
    let missing = req.replicas.saturating_sub(existing.len());
    let mut chosen: Vec<&Candidate> = if existing.is_empty() {
        Vec::new()
    } else {
        fleet.iter().filter(|c| existing.contains(&c.id)).collect()
    };
    let kept = chosen.len();
    // A jurisdiction-restricted request scans only the nodes in its countries (one pass to
    // gather them), not the whole fleet once per replica.
    let pool: Option<Vec<&Candidate>> = (!req.countries.is_empty()).then(|| match countries {
        Some(index) => req
            .countries
            .iter()
            .filter_map(|c| index.get(c))
            .flatten()
            .filter_map(|i| fleet.get(*i))
            .collect(),
        None => fleet
            .iter()
            .filter(|c| req.countries.contains(&c.country))
            .collect(),
    });
    let n = pool.as_ref().map_or(fleet.len(), Vec::len);
    let at = |i: usize| match &pool {
        Some(p) => p.get(i).copied(),
        None => fleet.get(i),
    };
    let mut shortfall = None;
    for _ in 0..missing {
        let mut best: Option<(&Candidate, (bool, bool, f64))> = None;
        let mut ideal_seen = 0;
        // With the allowed countries all used already, no candidate can bring a new one: do not
        // scan the whole fleet looking for it.
        let used: BTreeSet<&CountryCode> = chosen.iter().map(|o| &o.country).collect();
        let country_open = req.countries.is_empty() || req.countries.len() > used.len();
        for k in 0..n {
            let Some(c) = at(start.wrapping_add(k) % n) else {
                continue;
            };
            if !eligible(c, req) || chosen.iter().any(|o| o.home == c.home) {
                continue;
            }
            let new_country = !chosen.iter().any(|o| o.country == c.country);
            let new_isp = !chosen
                .iter()
                .any(|o| o.country == c.country && o.isp == c.isp);
            let key = (
                req.spread.country && new_country,
                req.spread.isp && new_isp,
                score(c, &req.resources),
            );
            if best.as_ref().is_none_or(|(_, b)| better(&key, b)) {
                best = Some((c, key));
            }
            if (!req.spread.country || new_country || !country_open) && (!req.spread.isp || new_isp)
            {
                ideal_seen += 1;
                if ideal_seen >= SCORE_LIMIT {
                    break;
                }
            }
        }
        match best {
            Some((c, _)) => chosen.push(c),
            None => {
                shortfall = Some(Unplaceable(explain(fleet, req)));
                break;
            }
        }
    }
    let added: Vec<NodeId> = chosen.iter().skip(kept).map(|c| c.id).collect();
    Placement { added, shortfall }
}

fn better(a: &(bool, bool, f64), b: &(bool, bool, f64)) -> bool {
    (a.0, a.1)
        .cmp(&(b.0, b.1))
        .then(a.2.total_cmp(&b.2))
        .is_gt()
}

fn eligible(c: &Candidate, req: &Request) -> bool {
    c.schedulable
        && (req.countries.is_empty() || req.countries.contains(&c.country))
        && req.labels.iter().all(|(k, v)| c.labels.get(k) == Some(v))
        && fits(c, &req.resources)
}

fn fits(c: &Candidate, r: &Resources) -> bool {
    let free = |cap: u64, used: u64, want: u64| cap.saturating_sub(used) >= want;
    free(
        c.capacity.cpu_millis.into(),
        c.allocated.cpu_millis.into(),
        r.cpu_millis.into(),
    ) && free(c.capacity.memory_mib, c.allocated.memory_mib, r.memory_mib)
        && free(c.capacity.disk_mib, c.allocated.disk_mib, r.disk_mib)
        && free(
            c.capacity.bandwidth_mbps.into(),
            c.allocated.bandwidth_mbps.into(),
            r.bandwidth_mbps.into(),
        )
}

/// Free share of the scarcest resource after placing, times reliability.
fn score(c: &Candidate, r: &Resources) -> f64 {
    let share = |cap: u64, used: u64, want: u64| {
        if cap == 0 {
            1.0
        } else {
            cap.saturating_sub(used + want) as f64 / cap as f64
        }
    };
    let free = share(
        c.capacity.cpu_millis.into(),
        c.allocated.cpu_millis.into(),
        r.cpu_millis.into(),
    )
    .min(share(
        c.capacity.memory_mib,
        c.allocated.memory_mib,
        r.memory_mib,
    ))
    .min(share(c.capacity.disk_mib, c.allocated.disk_mib, r.disk_mib));
    free * c.reliability.clamp(0.0, 1.0)
}

/// `in the fleet`, or `in BE,FR`: where a request may go.
pub fn scope(req: &Request) -> String {
    if req.countries.is_empty() {
        "in the fleet".to_owned()
    } else {
        format!(
            "in {}",
            req.countries
                .iter()
                .map(CountryCode::as_str)
                .collect::<Vec<_>>()
                .join(",")
        )
    }
}

/// Says which constraint ran out: the operator's answer to "why is it not running?". Only the
/// constraints that were asked are named.
fn explain(fleet: &[Candidate], req: &Request) -> String {
    let in_scope: Vec<&Candidate> = fleet
        .iter()
        .filter(|c| req.countries.is_empty() || req.countries.contains(&c.country))
        .collect();
    let where_ = scope(req);
    let schedulable = in_scope.iter().filter(|c| c.schedulable).count();
    let fitting: Vec<&&Candidate> = in_scope.iter().filter(|c| eligible(c, req)).collect();
    let homes: BTreeSet<&HomeId> = fitting.iter().map(|c| &c.home).collect();
    let mut steps = vec![
        count(in_scope.len(), "node", "nodes") + " " + &where_,
        format!("{schedulable} schedulable"),
    ];
    if !req.labels.is_empty() {
        let labelled = in_scope
            .iter()
            .filter(|c| c.schedulable && req.labels.iter().all(|(k, v)| c.labels.get(k) == Some(v)))
            .count();
        let labels: Vec<String> = req.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        steps.push(format!("{labelled} with the labels {}", labels.join(",")));
    }
    steps.push(format!("{} with room for the resources", fitting.len()));
    steps.push(format!(
        "in {}",
        count(homes.len(), "distinct home", "distinct homes")
    ));
    format!(
        "needs {} in distinct homes {where_}, {} possible: {}",
        count(req.replicas, "replica", "replicas"),
        homes.len(),
        steps.join(", ")
    )
}

/// `1 replica`, `3 replicas`.
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// What a set of replicas achieves: distinct homes, countries and ISPs (an ISP is counted per
/// country: Orange in FR and Orange in BE are two networks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Achieved {
    /// Replicas.
    pub replicas: usize,
    /// Distinct homes.
    pub homes: usize,
    /// Distinct countries.
    pub countries: usize,
    /// Distinct (country, ISP) pairs.
    pub isps: usize,
}

/// The spread of replicas on `nodes`.
pub fn achieved(nodes: &[&Candidate]) -> Achieved {
    Achieved {
        replicas: nodes.len(),
        homes: nodes.iter().map(|c| &c.home).collect::<BTreeSet<_>>().len(),
        countries: nodes
            .iter()
            .map(|c| c.country)
            .collect::<BTreeSet<_>>()
            .len(),
        isps: nodes
            .iter()
            .map(|c| (c.country, c.isp.as_str()))
            .collect::<BTreeSet<_>>()
            .len(),
    }
}

/// Distinct countries and ISPs that the replicas on `existing` could use: theirs, and those of
/// every node eligible for `req` (schedulable, in scope, labelled, with room). Scans the fleet (or
/// the allowed countries' nodes), so callers ask only when the spread falls short.
pub fn available<'a>(
    fleet: &'a [Candidate],
    countries: Option<&CountryIndex>,
    existing: &[&'a Candidate],
    req: &Request,
) -> (usize, usize) {
    let mut cs: BTreeSet<CountryCode> = existing.iter().map(|c| c.country).collect();
    let mut isps: BTreeSet<(CountryCode, &str)> = existing
        .iter()
        .map(|c| (c.country, c.isp.as_str()))
        .collect();
    let mut visit = |c: &'a Candidate| {
        if eligible(c, req) {
            cs.insert(c.country);
            isps.insert((c.country, c.isp.as_str()));
        }
    };
    match (countries, req.countries.is_empty()) {
        (Some(index), false) => req
            .countries
            .iter()
            .filter_map(|c| index.get(c))
            .flatten()
            .filter_map(|i| fleet.get(*i))
            .for_each(&mut visit),
        _ => fleet.iter().for_each(&mut visit),
    }
    (cs.len(), isps.len())
}

#[cfg(test)]
mod tests;
