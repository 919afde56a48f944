//! The master addresses a node may connect to, and which one it dials next (sans-IO).
//!
//! All of a cooperative's masters share one key, so any of them can take the node's session.
//! The list is kept in the order the operator gave it; the cursor moves to the next address
//! (wrapping) after every failed attempt and after the loss of a session, so a dead master is
//! left at once and every address is tried before the link backs off ([`super::Link`] counts
//! the round).

use std::collections::BTreeSet;
use std::net::SocketAddr;

use hearth_protocol::MAX_MASTER_ADDRS;

/// Why a list of master addresses was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MastersError {
    /// No address at all.
    #[error("no master address: give at least one")]
    Empty,
    /// More than [`MAX_MASTER_ADDRS`].
    #[error("{0} master addresses; at most {MAX_MASTER_ADDRS} are allowed")]
    TooMany(usize),
    /// An address listed twice.
    #[error("master address {0} is listed twice")]
    Duplicate(SocketAddr),
}

/// A non-empty list of distinct master addresses (at most [`MAX_MASTER_ADDRS`]) and the one in
/// use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Masters {
    addrs: Vec<SocketAddr>,
    /// Index of the current address in `addrs`.
    cursor: usize,
    /// The current address when a new list no longer names it: kept until the next move, which
    /// goes to the new list's first address.
    detached: Option<SocketAddr>,
}

impl Masters {
    /// The list, starting at its first address.
    pub fn new(addrs: Vec<SocketAddr>) -> Result<Self, MastersError> {
        check(&addrs)?;
        Ok(Self {
            addrs,
            cursor: 0,
            detached: None,
        })
    }

    /// The addresses, in order.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// How many addresses (at least 1).
    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    /// Never: a list has at least one address (for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// The address in use: the one the next (or the open) connection goes to.
    pub fn current(&self) -> SocketAddr {
        match (self.detached, self.addrs.get(self.cursor)) {
            (Some(addr), _) | (None, Some(&addr)) => addr,
            // `new` and `replace` refuse an empty list and keep the cursor inside it.
            (None, None) => SocketAddr::from(([0, 0, 0, 0], 0)),
        }
    }

    /// Moves to the next address, wrapping; from a detached one to the first.
    pub fn advance(&mut self) {
        if self.detached.take().is_some() {
            self.cursor = 0;
        } else {
            self.cursor = (self.cursor + 1) % self.addrs.len().max(1);
        }
    }

    /// Adopts `addrs` (the master's list) if it differs: the current address stays current
    /// when the new list names it, else it is kept until the next move, which goes to the new
    /// list's first address. Returns whether anything changed.
    pub fn replace(&mut self, addrs: Vec<SocketAddr>) -> Result<bool, MastersError> {
        check(&addrs)?;
        if addrs == self.addrs {
            return Ok(false);
        }
        let current = self.current();
        match addrs.iter().position(|a| *a == current) {
            Some(i) => {
                self.cursor = i;
                self.detached = None;
            }
            None => {
                self.cursor = 0;
                self.detached = Some(current);
            }
        }
        self.addrs = addrs;
        Ok(true)
    }
}

fn check(addrs: &[SocketAddr]) -> Result<(), MastersError> {
    if addrs.is_empty() {
        return Err(MastersError::Empty);
    }
    if addrs.len() > MAX_MASTER_ADDRS {
        return Err(MastersError::TooMany(addrs.len()));
    }
    let mut seen = BTreeSet::new();
    match addrs.iter().find(|a| !seen.insert(**a)) {
        Some(dup) => Err(MastersError::Duplicate(*dup)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(ports: &[u16]) -> Vec<SocketAddr> {
        ports
            .iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
            .collect()
    }

    #[test]
    fn advance_walks_the_list_and_wraps() {
        let mut m = Masters::new(addrs(&[1, 2, 3])).unwrap();
        let mut seen = vec![m.current().port()];
        for _ in 0..4 {
            m.advance();
            seen.push(m.current().port());
        }
        assert_eq!(seen, [1, 2, 3, 1, 2]);
    }

    #[test]
    fn bad_lists_are_refused() {
        assert_eq!(Masters::new(vec![]), Err(MastersError::Empty));
        assert_eq!(
            Masters::new(addrs(&[1, 2, 1])),
            Err(MastersError::Duplicate(addrs(&[1])[0]))
        );
        let many: Vec<u16> = (1..=17).collect();
        assert_eq!(Masters::new(addrs(&many)), Err(MastersError::TooMany(17)));
        let mut m = Masters::new(addrs(&[1])).unwrap();
        assert_eq!(m.replace(vec![]), Err(MastersError::Empty));
        assert_eq!(m.addrs(), addrs(&[1]));
    }

    #[test]
    fn a_new_list_keeps_the_current_address_where_it_can() {
        let mut m = Masters::new(addrs(&[1, 2, 3])).unwrap();
        m.advance();
        assert_eq!(m.replace(addrs(&[1, 2, 3])), Ok(false));
        // Still on 2, now the list's last: the next move wraps to 5.
        assert_eq!(m.replace(addrs(&[5, 4, 2])), Ok(true));
        assert_eq!(m.current().port(), 2);
        m.advance();
        assert_eq!(m.current().port(), 5);
        // A list without the current address: it stays current until the next move, which
        // goes to the new list's first address, not its second.
        assert_eq!(m.replace(addrs(&[7, 8])), Ok(true));
        assert_eq!(m.current().port(), 5);
        m.advance();
        assert_eq!(m.current().port(), 7);
        m.advance();
        assert_eq!(m.current().port(), 8);
    }
}
