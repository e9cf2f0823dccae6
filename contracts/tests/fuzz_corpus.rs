//! Replays every file of the committed fuzz seed corpus (`fuzz/corpus/parse_pointer/`)
//! through the fuzz target's checks, so `cargo test` exercises the corpus without
//! cargo-fuzz.

use std::path::PathBuf;

#[path = "support/roundtrip.rs"]
mod roundtrip;

#[test]
fn replay_parse_pointer_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/parse_pointer");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir:?}: {e}"))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= 24,
        "the seed corpus has only {} files",
        files.len()
    );
    let mut parsed = 0;
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{file:?}: {e}"));
        roundtrip::check_bytes(&data);
        parsed += usize::from(bver_contracts::RefPtr::parse_bytes(&data).is_ok());
    }
    // The corpus seeds both sides of the grammar.
    assert!(
        parsed > 0 && parsed < files.len(),
        "{parsed} of {} parse",
        files.len()
    );
}
