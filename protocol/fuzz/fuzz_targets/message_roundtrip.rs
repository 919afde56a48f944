//! Every structurally valid message encodes to a frame that decodes to the same message.
#![no_main]

use hearth_protocol::{Message, frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|message: Message| {
    let bytes = frame::encode(&message, usize::MAX).expect("encoding a message cannot fail");
    let (back, used) = frame::decode(&bytes, usize::MAX).expect("an encoded frame decodes");
    assert_eq!(used, bytes.len());
    assert_eq!(back, message);
});
