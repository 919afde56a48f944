//! Property: every message the types can hold survives encode → frame → decode unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use arbitrary::{Arbitrary, Unstructured};
use hearth_protocol::{Message, frame};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_message_round_trips(seed in proptest::collection::vec(any::<u8>(), 64..2048)) {
        let mut u = Unstructured::new(&seed);
        if let Ok(message) = Message::arbitrary(&mut u) {
            let bytes = frame::encode(&message, usize::MAX).unwrap();
            let (back, used) = frame::decode(&bytes, usize::MAX).unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(back, message);
        }
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        // Never a panic; a frame taken is one the input holds, whole.
        if let Ok((_, used)) = frame::decode(&bytes, 256) {
            prop_assert!(used <= bytes.len() && used > 4, "{used} of {} bytes", bytes.len());
        }
    }
}
