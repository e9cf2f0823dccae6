//! The pointer invariants checked on arbitrary input, shared by the fuzz target
//! (`fuzz/fuzz_targets/parse_pointer.rs`), the fuzz-corpus replay test and the property
//! tests: a parse either fails with a well-formed error or yields a value whose canonical
//! form re-parses to the same value and is a fixed point of normalisation.

use std::cmp::Ordering;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use bver_contracts::pointer::{
    AttributePath, AttributePointer, MAX_POINTER_LEN, PointerError, PointerErrorKind, RefPtr,
};
use bver_contracts::{BverError, ErrorCode};

fn hash_of<T: Hash>(value: &T) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

fn check_error(e: &PointerError, input_len: usize) {
    assert!(
        e.offset() <= input_len,
        "offset {} beyond input length {input_len}: {e}",
        e.offset()
    );
    assert!(PointerErrorKind::ALL.contains(&e.kind()), "{e}");
    assert!(e.to_string().contains(e.code()), "{e}");
    let b = BverError::from(e.clone());
    assert_eq!(b.code, ErrorCode::InvalidPointer);
    assert_eq!(b.details["reason"], e.code());
    assert_eq!(b.details["offset"], e.offset());
}

fn check_path(path: &AttributePath) {
    let text = path.to_string();
    assert_eq!(text.len(), path.canonical_len(), "{text}");
    let again = AttributePath::parse(&text)
        .unwrap_or_else(|e| panic!("canonical path {text:?} does not parse: {e}"));
    assert_eq!(&again, path, "{text}");
    assert_eq!(again.to_string(), text);
    let rebuilt = AttributePath::from_segments(path.segments().to_vec())
        .unwrap_or_else(|e| panic!("builder rejects parsed path {text:?}: {e}"));
    assert_eq!(&rebuilt, path);
}

/// Checks every invariant for one input, given as a string.
pub(crate) fn check_str(input: &str) {
    match RefPtr::parse(input) {
        Ok(p) => {
            let canonical = p.to_string();
            assert!(
                canonical.len() <= input.len(),
                "{input:?} grew to {canonical:?}"
            );
            assert!(canonical.len() <= MAX_POINTER_LEN);
            let again = RefPtr::parse(&canonical)
                .unwrap_or_else(|e| panic!("canonical {canonical:?} does not parse: {e}"));
            assert_eq!(again, p, "{input:?}");
            assert_eq!(
                again.to_string(),
                canonical,
                "normalisation is not idempotent"
            );
            assert_eq!(again.cmp(&p), Ordering::Equal);
            assert_eq!(hash_of(&again), hash_of(&p));
            let whole = RefPtr::new(p.namespace(), p.repo(), p.id())
                .unwrap_or_else(|e| panic!("builder rejects the parts of {canonical:?}: {e}"));
            assert_eq!(whole, p.without_path());
            assert_eq!(whole.reference_str(), p.reference_str());
            match p.path() {
                Some(path) => {
                    check_path(path);
                    assert_eq!(p.without_path().cmp(&p), Ordering::Less);
                    let attr = AttributePointer::parse(input)
                        .unwrap_or_else(|e| panic!("{input:?} is no attribute pointer: {e}"));
                    assert_eq!(attr.to_string(), canonical);
                    assert_eq!(attr.to_ref_ptr(), p);
                }
                None => {
                    let e = AttributePointer::parse(input).expect_err("no path");
                    assert_eq!((e.code(), e.offset()), ("missing_path", input.len()));
                }
            }
            let json = serde_json::to_string(&p).expect("serialize");
            assert_eq!(
                serde_json::from_str::<RefPtr>(&json).expect("deserialize"),
                p
            );
        }
        Err(e) => check_error(&e, input.len()),
    }
    match AttributePath::parse(input) {
        Ok(path) => check_path(&path),
        Err(e) => check_error(&e, input.len()),
    }
}

/// Checks every invariant for one input, given as raw bytes.
pub(crate) fn check_bytes(data: &[u8]) {
    let from_bytes = RefPtr::parse_bytes(data);
    match std::str::from_utf8(data) {
        Ok(s) => {
            check_str(s);
            match (from_bytes, RefPtr::parse(s)) {
                (Ok(a), Ok(b)) => assert_eq!(a, b),
                (Err(a), Err(b)) => assert_eq!((a.code(), a.offset()), (b.code(), b.offset())),
                (a, b) => panic!("parse_bytes and parse disagree: {a:?} / {b:?}"),
            }
        }
        Err(_) => {
            let e = from_bytes.expect_err("non-UTF-8 input parsed");
            assert!(
                matches!(e.code(), "not_utf8" | "too_long"),
                "non-UTF-8 input gave {e}"
            );
            check_error(&e, data.len());
        }
    }
}
