//! **Sans-IO core** of backup placement: which homes keep the copies of a deployment's
//! snapshots (its *holders*).
//!
//! [`choose`] is a pure, deterministic function of the deployment's allowed countries, the
//! sites of its replicas, the candidate nodes, the current holders and the number of copies
//! asked. Its rules, in order of strength:
//! - never outside the allowed countries (empty: any), whatever else happens;
//! - never a home that runs one of the deployment's replicas (a copy beside the data is no copy);
//! - one holder per home;
//! - a current holder that is still valid stays (its copies exist already): only a holder that
//!   is [`HolderState::Gone`] (retired, revoked, or down for longer than the grace the driver
//!   applies) or that breaks a rule above is replaced;
//! - new holders are taken among [`HolderState::Up`] nodes, preferring an ISP that no replica
//!   uses, then an ISP no other holder uses, then the smallest node id.
//!
//! When fewer than `copies` homes can be had, [`Holders::shortfall`] says so for humans
//! (`backup copies: 1 of 2 homes, no other home in BE`).

use std::collections::BTreeSet;

use hearth_protocol::{CountryCode, HomeId, NodeId};

/// Where a replica of the deployment runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// Its home.
    pub home: HomeId,
    /// Its ISP, as declared.
    pub isp: String,
    /// Its country.
    pub country: CountryCode,
}

/// Whether a node can keep copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HolderState {
    /// Up and active: may be chosen.
    Up,
    /// Enrolled and not lost, but not to be chosen now (never seen, suspect, returning after a
    /// master restart, draining, suspended, or down for less than the grace): a current holder
    /// stays, no new one is chosen here.
    Unavailable,
    /// Retired, revoked, or down for longer than the grace: a current holder is replaced.
    Gone,
}

/// A node that might keep copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderCandidate {
    /// Its id.
    pub node: NodeId,
    /// Where it is.
    pub site: Site,
    /// Whether it can keep copies.
    pub state: HolderState,
}

/// What [`choose`] decides from.
#[derive(Debug, Clone, Copy)]
pub struct HolderRequest<'a> {
    /// Countries the deployment may be in (empty: any).
    pub countries: &'a BTreeSet<CountryCode>,
    /// Where its replicas run.
    pub replicas: &'a [Site],
    /// Every enrolled node (a node absent here counts as gone).
    pub candidates: &'a [HolderCandidate],
    /// The holders now, in their order.
    pub current: &'a [NodeId],
    /// Homes wanted.
    pub copies: u32,
}

/// What [`choose`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holders {
    /// The holders: the current ones kept, in their order, then the new ones.
    pub holders: Vec<NodeId>,
    /// Why there are fewer than `copies`, for humans.
    pub shortfall: Option<String>,
}

/// Chooses the holders (see the module doc).
pub fn choose(req: &HolderRequest<'_>) -> Holders {
    let wanted = usize::try_from(req.copies).unwrap_or(usize::MAX);
    let allowed =
        |c: &HolderCandidate| req.countries.is_empty() || req.countries.contains(&c.site.country);
    let replica_homes: BTreeSet<&HomeId> = req.replicas.iter().map(|s| &s.home).collect();
    let replica_isps: BTreeSet<(CountryCode, &str)> = req
        .replicas
        .iter()
        .map(|s| (s.country, s.isp.as_str()))
        .collect();
    let eligible = |c: &HolderCandidate| allowed(c) && !replica_homes.contains(&c.site.home);
    let find = |id: &NodeId| req.candidates.iter().find(|c| c.node == *id);

    // Current holders still valid, one per home, in their order.
    let mut kept: Vec<&HolderCandidate> = Vec::new();
    for id in req.current {
        let Some(c) = find(id) else { continue };
        if c.state == HolderState::Gone
            || !eligible(c)
            || kept
                .iter()
                .any(|k| k.site.home == c.site.home || k.node == c.node)
        {
            continue;
        }
        kept.push(c);
    }
    if kept.len() > wanted {
        // Fewer copies asked than kept: keep the up ones first, then those on ISPs no replica
        // uses, each group in the current order.
        let rank = |c: &HolderCandidate| {
            (
                c.state != HolderState::Up,
                replica_isps.contains(&(c.site.country, c.site.isp.as_str())),
            )
        };
        kept.sort_by_key(|c| rank(c)); // stable: the current order within a rank
        kept.truncate(wanted);
        kept.sort_by_key(|c| req.current.iter().position(|o| *o == c.node));
    }

    let mut chosen = kept;
    while chosen.len() < wanted {
        let best = req
            .candidates
            .iter()
            .filter(|c| c.state == HolderState::Up && eligible(c))
            .filter(|c| !chosen.iter().any(|k| k.site.home == c.site.home))
            .min_by_key(|c| {
                let isp = (c.site.country, c.site.isp.as_str());
                (
                    replica_isps.contains(&isp),
                    chosen
                        .iter()
                        .any(|k| (k.site.country, k.site.isp.as_str()) == isp),
                    c.node,
                )
            });
        match best {
            Some(c) => chosen.push(c),
            None => break,
        }
    }

    let shortfall = (chosen.len() < wanted).then(|| {
        let mut text = format!("backup copies: {} of {} homes", chosen.len(), req.copies);
        let other_home = req.candidates.iter().any(|c| {
            c.state != HolderState::Gone
                && eligible(c)
                && !chosen.iter().any(|k| k.site.home == c.site.home)
        });
        text.push_str(if other_home {
            ", no other home up"
        } else {
            ", no other home"
        });
        if !req.countries.is_empty() {
            let names: Vec<String> = req.countries.iter().map(|c| c.to_string()).collect();
            text.push_str(" in ");
            text.push_str(&names.join(", "));
        }
        text
    });
    Holders {
        holders: chosen.iter().map(|c| c.node).collect(),
        shortfall,
    }
}

#[cfg(test)]
mod tests;
