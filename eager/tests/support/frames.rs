//! The checks of the `eager_frames` fuzz target, shared with the corpus replay test:
//! arbitrary bytes through the frame decoder, pushed in chunks, must never panic nor
//! buffer a frame over the limit; every decoded message must survive an encode/decode
//! round trip (after one normalising pass, for JSON details that CBOR can say in several
//! ways).

use bver_eager::wire::{FrameDecoder, Message, decode_body, encode};

/// The frame limit used by the fuzz target.
pub(crate) const MAX_FRAME: usize = 64 * 1024;

/// Run the checks on `data`; returns how many messages decoded.
pub(crate) fn check_bytes(data: &[u8]) -> usize {
    // The first byte picks the chunk size, so the fuzzer explores split points too.
    let (chunk, data) = match data.split_first() {
        Some((c, rest)) => (usize::from(*c % 17) + 1, rest),
        None => (1, data),
    };
    let mut dec = FrameDecoder::new(MAX_FRAME);
    let mut decoded = 0;
    'outer: for piece in data.chunks(chunk) {
        dec.push(piece);
        assert!(
            dec.buffered() <= MAX_FRAME + 4 + chunk,
            "buffered past the frame limit"
        );
        loop {
            match dec.next_message() {
                Ok(Some(m)) => {
                    decoded += 1;
                    round_trip(&m);
                }
                Ok(None) => break,
                Err(e) => {
                    // A failed decoder stays failed, and the error maps to the contract.
                    assert!(dec.next_message().is_err());
                    let b: bver_contracts::BverError = e.into();
                    assert!(!b.message.is_empty());
                    break 'outer;
                }
            }
        }
    }
    decoded
}

fn round_trip(m: &Message) {
    if matches!(m, Message::Unknown { .. }) {
        assert!(encode(m).is_empty());
        return;
    }
    let once = decode_body(&encode(m)[4..]).expect("a decoded message re-encodes");
    let twice = decode_body(&encode(&once)[4..]).expect("a re-encoded message decodes");
    assert_eq!(once, twice);
}
