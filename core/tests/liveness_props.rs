//! Property: liveness never leaves `down` for `up` (or anything but `down`) without a heartbeat,
//! and a tick brings `up` back only to a node that was up or suspect (its last heartbeat recent
//! again is not a new one), whatever the timing of ticks and heartbeats.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code

use hearth_core::liveness::{Event, Liveness, LivenessConfig};
use proptest::prelude::*;

mod common;

fn start() -> impl Strategy<Value = Liveness> {
    prop_oneof![
        Just(Liveness::Pending),
        (0u64..10_000).prop_map(|t| Liveness::Up { last_heartbeat: t }),
        (0u64..10_000).prop_map(|t| Liveness::Suspect { last_heartbeat: t }),
        (0u64..70_000, proptest::option::of(0u64..10_000)).prop_map(|(until, last_heartbeat)| {
            Liveness::Returning {
                until,
                last_heartbeat,
            }
        }),
        (0u64..10_000, proptest::option::of(0u64..10_000)).prop_map(|(since, last_heartbeat)| {
            Liveness::Down {
                since,
                last_heartbeat,
            }
        }),
    ]
}

/// Steps: a delay (ms) and whether a heartbeat (else a tick) comes after it.
fn steps() -> impl Strategy<Value = Vec<(u64, bool)>> {
    proptest::collection::vec((0u64..40_000, proptest::bool::weighted(0.2)), 1..200)
}

proptest! {
    #![proptest_config(common::config())]

    #[test]
    fn down_to_up_needs_a_heartbeat(initial in start(), steps in steps()) {
        let cfg = LivenessConfig::default();
        let mut state = initial;
        let mut now = 10_000u64;
        for (dt, heartbeat) in steps {
            now += dt;
            let event = if heartbeat { Event::Heartbeat } else { Event::Tick };
            let (next, transition) = state.step(&cfg, now, event);
            if event == Event::Tick {
                prop_assert!(
                    !matches!(state, Liveness::Down { .. }) || matches!(next, Liveness::Down { .. }),
                    "{state:?} left down on a tick: {next:?}"
                );
                prop_assert!(
                    matches!(state, Liveness::Up { .. } | Liveness::Suspect { .. })
                        || !matches!(next, Liveness::Up { .. }),
                    "{state:?} became up on a tick: {next:?}"
                );
            } else {
                prop_assert_eq!(next, Liveness::Up { last_heartbeat: now });
            }
            prop_assert_eq!(transition.is_some(), next.name() != state.name());
            state = next;
        }
    }
}
