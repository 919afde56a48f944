//! The virtual clock and the event queue: a binary heap keyed by `(time, sequence)`.
//!
//! Events at the same millisecond run in the order they were scheduled, so a run never depends
//! on how the heap breaks ties.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use hearth_protocol::messages::state::{DesiredState, InstanceId};

/// Index of a home in the run.
pub type HomeIx = usize;

/// Something that happens at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Next power cut somewhere in the fleet (fleet-wide Poisson process).
    PowerCut,
    /// Next reboot somewhere in the fleet.
    Reboot,
    /// Power is back at a home (`epoch` guards against a newer cut).
    PowerBack { home: HomeIx, epoch: u64 },
    /// A home finished booting; its agent runs.
    Booted { home: HomeIx, epoch: u64 },
    /// Next random ISP outage.
    IspOutage,
    /// A scheduled ISP outage starts.
    IspLost { isp: usize, hours_ms: u64 },
    /// An ISP's outage ends.
    IspBack { isp: usize },
    /// Next random loss of a country link.
    CountryOutage,
    /// A scheduled country-link loss starts.
    CountryLost { country: usize, hours_ms: u64 },
    /// A country's link is back.
    CountryBack { country: usize },
    /// Next volunteer leaving.
    Leave,
    /// Next volunteer joining.
    Join,
    /// An agent's session to the master opens (hello, welcome, heartbeats).
    Connect { home: HomeIx, epoch: u64 },
    /// The master's liveness ticker looks at a home (real `Liveness::step`).
    LivenessTick { home: HomeIx },
    /// A scheduler pass (real `scheduler::plan`).
    SchedulerPass,
    /// A desired state reaches an agent over its session `epoch`.
    Deliver {
        home: HomeIx,
        epoch: u64,
        state: Box<DesiredState>,
    },
    /// Preparation of an instance finished (fetch and verify).
    Prepared {
        home: HomeIx,
        power: u64,
        instance: InstanceId,
        generation: u64,
    },
    /// A process started.
    Started {
        home: HomeIx,
        power: u64,
        instance: InstanceId,
        generation: u64,
    },
    /// A process exited after a signal.
    Exited {
        home: HomeIx,
        power: u64,
        instance: InstanceId,
        pid: u32,
    },
    /// An agent's timer (backoff, stop deadline).
    AgentTick { home: HomeIx, power: u64 },
    /// Time-series sample.
    Sample,
}

#[derive(Debug)]
struct Entry {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: the heap is a max-heap and the earliest event comes first.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The clock and the pending events.
#[derive(Debug, Default)]
pub struct Queue {
    now: u64,
    seq: u64,
    heap: BinaryHeap<Entry>,
    handled: u64,
}

impl Queue {
    /// Virtual time, ms since the start.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Schedules `event` at `at` (never in the past).
    pub fn at(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.heap.push(Entry {
            at: at.max(self.now),
            seq: self.seq,
            event,
        });
    }

    /// Schedules `event` after `delay` ms.
    pub fn after(&mut self, delay: u64, event: Event) {
        self.at(self.now.saturating_add(delay), event);
    }

    /// The next event not after `end`, advancing the clock to it.
    pub fn pop(&mut self, end: u64) -> Option<Event> {
        if self.heap.peek().is_none_or(|e| e.at > end) {
            return None;
        }
        let e = self.heap.pop()?;
        self.now = e.at;
        self.handled += 1;
        Some(e.event)
    }

    /// Events handled so far.
    pub fn handled(&self) -> u64 {
        self.handled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_then_in_order_scheduled() {
        let mut q = Queue::default();
        q.at(5, Event::Join);
        q.at(3, Event::Leave);
        q.at(5, Event::Sample);
        assert_eq!(q.pop(10), Some(Event::Leave));
        assert_eq!(q.pop(10), Some(Event::Join));
        assert_eq!(q.pop(10), Some(Event::Sample));
        assert_eq!(q.now(), 5);
        q.at(20, Event::Join);
        assert_eq!(q.pop(10), None);
    }
}
