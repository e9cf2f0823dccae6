//! `bver://` pointers: [`RefPtr`], [`AttributePath`], [`AttributePointer`] and their strict parser.
//!
//! A pointer names a reference, and optionally an attribute inside it:
//! `bver://{namespace}/{repo}/{id}[@{attribute_path}]`, for example `bver://sites/site/123`,
//! `bver://drawings/drawing/456@meta.sheet_number` or `bver://sites/site/7@terminals[0].label`.
//! The grammar, the limits, the normalisation rules and the error codes are specified in
//! `docs/pointers.md`; the vectors in `contracts/tests/vectors/` pin them.
//!
//! - Parsing is strict and allocation-light: a hand-written byte scanner, one pass, one
//!   buffer for the canonical `bver://ns/repo/id` and one per path key. Every rejection is a
//!   [`PointerError`] with a stable code and the byte offset of the fault.
//! - Values are always canonical: `Display` and serde write the normalised text, and
//!   `parse(p.to_string()) == p` for every pointer `p`.

mod error;
mod path;
mod ref_ptr;
mod scan;
mod serde_impls;

pub use error::{ERROR_INPUT_KEEP, PointerError, PointerErrorKind};
pub use path::{AttributePath, Segment};
pub use ref_ptr::{AttributePointer, RefPtr};

/// The scheme, as written in canonical pointers (accepted in any case on input).
pub const SCHEME: &str = "bver";
/// Maximum length in bytes of a namespace or a repo.
pub const MAX_IDENT_LEN: usize = 63;
/// Maximum length in bytes of an id as written (percent-escapes count three bytes).
pub const MAX_ID_LEN: usize = 256;
/// Maximum length in bytes of one key's value (after unquoting).
pub const MAX_KEY_LEN: usize = 128;
/// Maximum length in bytes of an attribute path as written (after the `@`).
pub const MAX_PATH_LEN: usize = 512;
/// Maximum number of segments in an attribute path.
pub const MAX_PATH_DEPTH: usize = 32;
/// The largest array index.
pub const MAX_INDEX: u32 = u32::MAX;
/// Maximum length in bytes of a whole pointer: the sum of the part limits and separators
/// (`bver://` + namespace + `/` + repo + `/` + id + `@` + path = 904). Longer inputs are
/// rejected before any other check.
pub const MAX_POINTER_LEN: usize =
    "bver://".len() + MAX_IDENT_LEN + 1 + MAX_IDENT_LEN + 1 + MAX_ID_LEN + 1 + MAX_PATH_LEN;

/// Parses a pointer and writes it back in canonical form.
pub fn normalize(input: &str) -> Result<String, PointerError> {
    RefPtr::normalize(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_quote_the_limits() {
        let check = |kind: PointerErrorKind, n: String| {
            assert!(kind.description().contains(&n), "{kind}: {n}");
        };
        check(PointerErrorKind::TooLong, MAX_POINTER_LEN.to_string());
        check(
            PointerErrorKind::IdentifierTooLong,
            MAX_IDENT_LEN.to_string(),
        );
        check(PointerErrorKind::IdTooLong, MAX_ID_LEN.to_string());
        check(PointerErrorKind::KeyTooLong, MAX_KEY_LEN.to_string());
        check(PointerErrorKind::PathTooLong, MAX_PATH_LEN.to_string());
        check(PointerErrorKind::PathTooDeep, MAX_PATH_DEPTH.to_string());
        check(PointerErrorKind::IndexTooLarge, MAX_INDEX.to_string());
    }

    #[test]
    fn examples_from_the_spec() {
        for s in [
            "bver://sites/site/123",
            "bver://sites/site/123@name",
            "bver://drawings/drawing/456@meta.sheet_number",
            "bver://sites/site/7@terminals[0].label",
        ] {
            assert_eq!(normalize(s).unwrap(), s);
        }
    }
}
