//! Feeds arbitrary bytes, split at arbitrary points, to the incremental frame decoder and the
//! one-shot decoder. Neither may panic, and both must agree on the first frame.
#![no_main]

use hearth_protocol::frame::{self, FrameDecoder};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let (split, bytes) = match data.split_first() {
        Some((s, rest)) => (usize::from(*s).max(1), rest),
        None => return,
    };
    let one_shot = frame::decode(bytes, MAX);
    let mut dec = FrameDecoder::new(MAX);
    let mut first = None;
    for chunk in bytes.chunks(split) {
        dec.push(chunk);
        loop {
            match dec.next_message() {
                Ok(Some(m)) => {
                    first.get_or_insert(Ok(m));
                }
                Ok(None) => break,
                Err(e) => {
                    let stop = !e.is_recoverable();
                    first.get_or_insert(Err(e));
                    if stop {
                        break;
                    }
                }
            }
        }
    }
    if first.is_none() {
        first = dec.finish().err().map(Err);
    }
    match (one_shot, first) {
        (Ok((m, _)), Some(Ok(n))) => assert_eq!(m, n),
        (Err(e), Some(Err(f))) => assert_eq!(e.code(), f.code()),
        (Err(_), None) => {} // empty input
        (a, b) => panic!("decoders disagree: {a:?} vs {b:?}"),
    }
});
