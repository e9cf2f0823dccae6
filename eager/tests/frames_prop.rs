//! Property tests of the frame decoder: any message round-trips whatever the read
//! boundaries; arbitrary bytes never panic; a length over the limit is refused before the
//! body arrives.

use bver_eager::wire::{
    Cursor, ErrorMsg, Filter, FrameDecoder, FrameError, Message, Resolve, Subscribe, Subscribed,
    encode,
};
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    "[a-z0-9_.:/-]{0,24}"
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (text(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            |(epoch, head, oldest, next)| {
                Message::Subscribed(Subscribed {
                    epoch,
                    head,
                    oldest,
                    next,
                })
            }
        ),
        (
            text(),
            proptest::option::of((text(), any::<u64>())),
            text(),
            proptest::collection::vec(text(), 0..3),
            proptest::option::of(any::<u32>())
        )
            .prop_map(|(channel, cursor, grant, repos, max_batch)| {
                Message::Subscribe(Subscribe {
                    channel,
                    cursor: cursor.map(|(epoch, seq)| Cursor { epoch, seq }),
                    start: None,
                    filter: Filter {
                        repos,
                        ..Filter::default()
                    },
                    grant,
                    contract: None,
                    max_batch,
                    max_frame: None,
                })
            }),
        (any::<u64>(), text(), any::<u32>(), text()).prop_map(
            |(id, pointer, deadline_ms, grant)| {
                Message::Resolve(Resolve {
                    id,
                    pointer,
                    deadline_ms,
                    grant,
                })
            }
        ),
        (
            proptest::option::of(any::<u64>()),
            text(),
            text(),
            any::<bool>(),
            any::<i64>()
        )
            .prop_map(|(id, code, message, retryable, n)| {
                Message::Error(ErrorMsg {
                    id,
                    code,
                    reason: None,
                    message,
                    retryable,
                    details: Some(serde_json::json!({ "n": n })),
                })
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn messages_round_trip_across_any_split(msgs in proptest::collection::vec(message(), 1..6), cuts in proptest::collection::vec(1usize..40, 1..50)) {
        let mut bytes = Vec::new();
        for m in &msgs {
            bytes.extend(encode(m));
        }
        let mut dec = FrameDecoder::new(1 << 16);
        let mut out = Vec::new();
        let mut rest = &bytes[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = cuts[i % cuts.len()].min(rest.len());
            dec.push(&rest[..n]);
            rest = &rest[n..];
            i += 1;
            while let Some(m) = dec.next_message().unwrap() {
                out.push(m);
            }
        }
        dec.finish().unwrap();
        prop_assert_eq!(out, msgs);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut dec = FrameDecoder::new(256);
        dec.push(&data);
        while let Ok(Some(_)) = dec.next_message() {}
        let _ = dec.finish();
    }

    #[test]
    fn oversized_lengths_are_refused_before_the_body(len in 1025u32..=u32::MAX) {
        let mut dec = FrameDecoder::new(1024);
        dec.push(&len.to_be_bytes());
        prop_assert_eq!(dec.next_message(), Err(FrameError::FrameTooLarge { len: len as usize, max: 1024 }));
        prop_assert_eq!(dec.buffered(), 4);
    }
}
