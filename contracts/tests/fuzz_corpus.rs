//! Replays every file of the committed fuzz seed corpora (`fuzz/corpus/parse_pointer/`,
//! `fuzz/corpus/patch_ops/`, `fuzz/corpus/envelope_cbor/`) through the fuzz targets' checks,
//! so `cargo test` exercises them without cargo-fuzz.

use std::path::PathBuf;

#[path = "support/roundtrip.rs"]
mod roundtrip;

#[path = "support/patch_ops.rs"]
mod patch_ops;

#[path = "support/envelope_cbor.rs"]
mod envelope_cbor;

/// The contents of the files of `fuzz/corpus/{target}`, in name order; at least `min` of
/// them (a corpus that lost its files would otherwise test nothing).
fn corpus(target: &str, min: usize) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir:?}: {e}"))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= min,
        "the seed corpus {target} has only {} files",
        files.len()
    );
    files
        .iter()
        .map(|f| std::fs::read(f).unwrap_or_else(|e| panic!("{f:?}: {e}")))
        .collect()
}

#[test]
fn replay_parse_pointer_corpus() {
    let files = corpus("parse_pointer", 24);
    let mut parsed = 0;
    for data in &files {
        roundtrip::check_bytes(data);
        parsed += usize::from(bver_contracts::RefPtr::parse_bytes(data).is_ok());
    }
    // The corpus seeds both sides of the grammar.
    assert!(
        parsed > 0 && parsed < files.len(),
        "{parsed} of {} parse",
        files.len()
    );
}

#[test]
fn replay_patch_ops_corpus() {
    let files = corpus("patch_ops", 20);
    let (mut json, mut cbor, mut neither) = (0, 0, 0);
    for data in &files {
        let out = patch_ops::check_bytes(data);
        json += usize::from(out.json);
        cbor += usize::from(out.cbor);
        neither += usize::from(!out.json && !out.cbor);
    }
    // The corpus seeds both encodings, and inputs that are neither.
    assert!(
        json >= 5 && cbor >= 4 && neither >= 10,
        "{json} JSON, {cbor} CBOR and {neither} undecodable of {}",
        files.len()
    );
}

#[test]
fn replay_envelope_cbor_corpus() {
    let files = corpus("envelope_cbor", 16);
    let (mut fast, mut deferred_ok, mut refused) = (0, 0, 0);
    for data in &files {
        let out = envelope_cbor::check_bytes(data);
        fast += usize::from(out.fast);
        deferred_ok += usize::from(!out.fast && out.general);
        refused += usize::from(!out.general);
    }
    // The corpus seeds the one-pass path, envelopes only the general decoder takes, and
    // bytes neither takes.
    assert!(
        fast >= 4 && deferred_ok >= 3 && refused >= 3,
        "{fast} on the fast path, {deferred_ok} deferred and decoded, {refused} refused of {}",
        files.len()
    );
}
