//! Property tests for pointers: round trips, normalisation of generated non-canonical
//! spellings, robustness on arbitrary input, and ordering consistent with equality.

use std::cmp::Ordering;
use std::fmt::Write as _;

use bver_contracts::pointer::{AttributePath, MAX_ID_LEN, MAX_PATH_LEN, RefPtr, Segment};
use proptest::prelude::*;

#[path = "support/roundtrip.rs"]
mod roundtrip;

fn ident() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,62}"
}

/// A decoded id: mostly unreserved characters, sometimes anything but control characters.
fn id() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        4 => proptest::char::ranges(vec!['a'..='z', 'A'..='Z', '0'..='9'].into()),
        1 => proptest::sample::select(vec!['-', '.', '_', '~', ' ', '/', '@', '%', '?', '#']),
        1 => any::<char>(),
    ]
    .prop_filter("no control characters", |c| !c.is_control());
    proptest::collection::vec(ch, 1..24)
        .prop_map(|cs| cs.into_iter().collect::<String>())
        .prop_filter("not a dot segment", |s| s != "." && s != "..")
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z_][A-Za-z0-9_]{0,15}",
        1 => "[a-z .\\[\\]\"\\\\@/-]{1,12}",
        1 => proptest::collection::vec(any::<char>().prop_filter("no Cc", |c| !c.is_control()), 1..8)
            .prop_map(|cs| cs.into_iter().collect::<String>()),
    ]
}

fn segment() -> impl Strategy<Value = Segment> {
    prop_oneof![
        3 => key().prop_map(Segment::Key),
        1 => (0u32..20).prop_map(Segment::Index),
        1 => any::<u32>().prop_map(Segment::Index),
    ]
}

fn path() -> impl Strategy<Value = AttributePath> {
    proptest::collection::vec(segment(), 1..12).prop_filter_map("within limits", |segs| {
        AttributePath::from_segments(segs).ok()
    })
}

fn pointer() -> impl Strategy<Value = RefPtr> {
    (ident(), ident(), id(), proptest::option::of(path())).prop_filter_map(
        "within limits",
        |(ns, repo, id, path)| {
            let p = RefPtr::new(&ns, &repo, &id).ok()?;
            Some(match path {
                Some(path) => p.with_path(path),
                None => p,
            })
        },
    )
}

/// Pointers from a tiny alphabet, so that equal pairs are common.
fn small_pointer() -> impl Strategy<Value = RefPtr> {
    let seg = prop_oneof![
        proptest::sample::select(vec!["a", "b", "a b"]).prop_map(|k| Segment::Key(k.into())),
        (0u32..2).prop_map(Segment::Index),
    ];
    let path = proptest::collection::vec(seg, 1..3)
        .prop_map(|s| AttributePath::from_segments(s).expect("small path"));
    (
        proptest::sample::select(vec!["a", "b", "a_"]),
        proptest::sample::select(vec!["a", "b"]),
        proptest::sample::select(vec!["1", "2", "10", "é", "a b"]),
        proptest::option::of(path),
    )
        .prop_map(|(ns, repo, id, path)| {
            let p = RefPtr::new(ns, repo, id).expect("small pointer");
            match path {
                Some(path) => p.with_path(path),
                None => p,
            }
        })
}

fn hex_byte(out: &mut String, b: u8, lower: bool) {
    if lower {
        write!(out, "%{b:02x}").expect("write to String");
    } else {
        write!(out, "%{b:02X}").expect("write to String");
    }
}

/// A non-canonical spelling of `p`, steered by `bits`: scheme case, needless or lowercase
/// percent-escapes, quoted plain keys.
fn denormalize(p: &RefPtr, bits: &[bool]) -> String {
    let mut bit = bits.iter().copied().cycle();
    let mut next = move || bit.next().unwrap_or(false);
    let mut out = String::new();
    for c in "bver".chars() {
        out.push(if next() { c.to_ascii_uppercase() } else { c });
    }
    out.push_str("://");
    out.push_str(p.namespace());
    out.push('/');
    out.push_str(p.repo());
    out.push('/');
    for c in p.id().chars() {
        let unreserved = c.is_ascii_alphanumeric() || "-._~".contains(c);
        if unreserved && !next() {
            out.push(c);
        } else {
            let lower = next();
            for b in c.to_string().bytes() {
                hex_byte(&mut out, b, lower);
            }
        }
    }
    if let Some(path) = p.path() {
        out.push('@');
        for (i, seg) in path.iter().enumerate() {
            match seg {
                Segment::Index(n) => write!(out, "[{n}]").expect("write to String"),
                Segment::Key(k) => {
                    let plain = k
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if plain && !next() {
                        if i > 0 {
                            out.push('.');
                        }
                        out.push_str(k);
                    } else {
                        out.push_str("[\"");
                        for c in k.chars() {
                            if c == '"' || c == '\\' {
                                out.push('\\');
                            }
                            out.push(c);
                        }
                        out.push_str("\"]");
                    }
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_format_round_trip(p in pointer()) {
        let text = p.to_string();
        let again = RefPtr::parse(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(&again, &p);
        prop_assert_eq!(again.to_string(), text);
        roundtrip::check_str(&p.to_string());
    }

    #[test]
    fn canonical_strings_format_to_themselves(
        s in "bver://[a-z][a-z0-9_]{0,8}/[a-z][a-z0-9_]{0,8}/[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,16}(@[A-Za-z_][A-Za-z0-9_]{0,8}(\\.[A-Za-z_][A-Za-z0-9_]{0,8}|\\[(0|[1-9][0-9]{0,8})\\]|\\[\"[a-z .@-]{0,4}[ .@-]\"\\]){0,6})?"
    ) {
        let p = RefPtr::parse(&s).map_err(|e| TestCaseError::fail(format!("{s:?}: {e}")))?;
        prop_assert_eq!(p.to_string(), s);
    }

    #[test]
    fn normalisation_is_idempotent(p in pointer(), bits in proptest::collection::vec(any::<bool>(), 1..64)) {
        let variant = denormalize(&p, &bits);
        match RefPtr::parse(&variant) {
            Ok(q) => {
                prop_assert_eq!(&q, &p, "{}", variant);
                let once = RefPtr::normalize(&variant).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let twice = RefPtr::normalize(&once).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(&once, &p.to_string());
                prop_assert_eq!(once, twice);
            }
            Err(e) => {
                // Needless escapes can push the id or the path over its limit as written.
                let (head, path_written) = match variant.find('@') {
                    Some(at) => (&variant[..at], variant.len() - at - 1),
                    None => (variant.as_str(), 0),
                };
                let id_written = head.len() - (p.reference_str().len() - p.id_encoded().len());
                prop_assert!(
                    matches!(e.code(), "id_too_long" | "path_too_long" | "too_long"),
                    "{variant:?}: {e}"
                );
                prop_assert!(id_written > MAX_ID_LEN || path_written > MAX_PATH_LEN, "{variant:?}: {e}");
            }
        }
    }

    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>()) {
        roundtrip::check_str(&s);
    }

    #[test]
    fn pointer_like_strings_never_panic(
        s in "(bver|BVER|bve)?(://)?[a-zA-Z0-9_./@%\\[\\]\"\\\\ ~?#-]{0,48}"
    ) {
        roundtrip::check_str(&s);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        roundtrip::check_bytes(&data);
    }

    #[test]
    fn mutated_pointers_never_panic(p in pointer(), at in any::<proptest::sample::Index>(), byte in any::<u8>()) {
        let mut data = p.to_string().into_bytes();
        let i = at.index(data.len());
        data[i] = byte;
        roundtrip::check_bytes(&data);
        data.insert(i, byte);
        roundtrip::check_bytes(&data);
        data.truncate(i);
        roundtrip::check_bytes(&data);
    }

    #[test]
    fn ordering_is_consistent_with_eq(a in small_pointer(), b in small_pointer(), c in small_pointer()) {
        prop_assert_eq!(a.cmp(&b) == Ordering::Equal, a == b);
        prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
        prop_assert_eq!(a.partial_cmp(&b), Some(a.cmp(&b)));
        let key = |p: &RefPtr| (p.namespace().to_owned(), p.repo().to_owned(), p.id().to_owned(), p.path().cloned());
        prop_assert_eq!(a.cmp(&b), key(&a).cmp(&key(&b)));
        if a <= b && b <= c {
            prop_assert!(a <= c);
        }
        if a == b {
            prop_assert_eq!(a.to_string(), b.to_string());
        }
    }

    #[test]
    fn ordering_of_generated_pointers(a in pointer(), b in pointer()) {
        prop_assert_eq!(a.cmp(&b) == Ordering::Equal, a == b);
        prop_assert_eq!(a == b, a.to_string() == b.to_string());
        prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
    }
}
