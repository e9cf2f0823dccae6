//! Replays every file of the committed fuzz seed corpus (`fuzz/corpus/eager_frames/`)
//! through the fuzz target's checks, so `cargo test` exercises it without cargo-fuzz.
//! `BVER_UPDATE_CORPUS=1` rewrites the seeds from the frames built here.

use std::path::PathBuf;

use bver_contracts::{BatchHeader, Hash256, SignatureBytes};
use bver_eager::wire::{
    Batch, BatchEvent, Bytes, Cursor, ErrorMsg, Filter, Message, Resolve, Subscribe, Subscribed,
    encode,
};

#[path = "support/frames.rs"]
mod frames;

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let sub = Message::Subscribe(Subscribe {
        channel: "site_changes".into(),
        cursor: Some(Cursor {
            epoch: "e1".into(),
            seq: 7,
        }),
        start: None,
        filter: Filter {
            repos: vec!["site".into()],
            kinds: vec!["power".into()],
            prefixes: vec![],
        },
        grant: "a.b.c".into(),
        contract: None,
        max_batch: Some(64),
        max_frame: Some(65536),
    });
    let batch = Message::Batch(Batch {
        header: BatchHeader {
            origin: "sites".into(),
            epoch: "e1".into(),
            first_seq: 1,
            last_seq: 2,
            event_hashes: vec![Hash256([1; 32]), Hash256([0; 32])],
            key_id: "kid".into(),
        },
        sig: SignatureBytes(vec![9; 64]),
        events: vec![BatchEvent {
            index: 0,
            bytes: Bytes(vec![0xa0]),
        }],
    });
    let subscribed = Message::Subscribed(Subscribed {
        epoch: "e1".into(),
        head: 9,
        oldest: 1,
        next: 8,
    });
    let resolve = Message::Resolve(Resolve {
        id: 1,
        pointer: "bver://sites/site/1".into(),
        deadline_ms: 100,
        grant: "g".into(),
    });
    let error = Message::Error(ErrorMsg {
        id: Some(1),
        code: "forbidden".into(),
        reason: Some("subject_mismatch".into()),
        message: "no".into(),
        retryable: false,
        details: Some(serde_json::json!({"a": [1, 2.5, null, "x"]})),
    });
    let list = Message::List(bver_eager::wire::List {
        id: 3,
        namespace: "sites".into(),
        repo: Some("site".into()),
        kind: None,
        cursor: Some("c".into()),
        limit: 10,
        deadline_ms: 100,
        grant: "g".into(),
    });
    let mut two = encode(&subscribed);
    two.extend(encode(&resolve));
    vec![
        ("v-subscribe", [vec![3], encode(&sub)].concat()),
        ("v-batch", [vec![0], encode(&batch)].concat()),
        ("v-two-frames-split", [vec![4], two].concat()),
        ("v-error", [vec![16], encode(&error)].concat()),
        ("v-list", [vec![1], encode(&list)].concat()),
        (
            "v-unknown-type",
            vec![0, 0, 0, 0, 7, 0x83, 0x18, 99, 0x01, 0xa1, 0x61, b'x', 0x01],
        ),
        (
            "v-unknown-version",
            vec![0, 0, 0, 0, 4, 0x83, 0x11, 0x07, 0xa0],
        ),
        ("i-too-large", vec![0, 0xff, 0xff, 0xff, 0xff, 0x83]),
        ("i-empty-frame", vec![0, 0, 0, 0, 0]),
        ("i-truncated", vec![0, 0, 0, 0, 9, 0x83, 0x11]),
        ("i-not-cbor", vec![0, 0, 0, 0, 2, 0xff, 0xff]),
        (
            "i-trailing",
            vec![0, 0, 0, 0, 5, 0x83, 0x11, 0x07, 0xa0, 0x00],
        ),
        ("i-wrong-shape", vec![0, 0, 0, 0, 4, 0x83, 0x11, 0x01, 0xa0]),
        (
            "i-huge-bstr-length",
            vec![
                0, 0, 0, 0, 12, 0x83, 0x12, 0x01, 0xa1, 0x63, b's', b'i', b'g', 0x5b, 0xff, 0xff,
                0xff,
            ],
        ),
        (
            "i-deep-nesting",
            [
                vec![0, 0, 0, 1, 4, 0x83, 0x18, 99, 0x01],
                vec![0x81; 255],
                vec![0x00],
            ]
            .concat(),
        ),
    ]
}

#[test]
fn replay_eager_frames_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/eager_frames");
    if std::env::var_os("BVER_UPDATE_CORPUS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds() {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    for (_, bytes) in seeds() {
        frames::check_bytes(&bytes);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir:?}: {e}"))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= seeds().len(),
        "the seed corpus has only {} files",
        files.len()
    );
    let mut decoded = 0;
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{file:?}: {e}"));
        decoded += frames::check_bytes(&data);
    }
    assert!(
        decoded >= 6,
        "only {decoded} messages decoded from the corpus"
    );
}
