//! [`PointerError`]: why a pointer or attribute path was rejected, where, and its stable code.

use std::fmt;

use crate::error::{BverError, ErrorCode, Phase};

/// How many bytes of the rejected input an error keeps (cut at a character boundary).
pub const ERROR_INPUT_KEEP: usize = 256;

/// The rule a rejected pointer broke. Each kind has a stable machine code ([`Self::code`]).
///
/// Codes are part of the public contract (`docs/pointers.md` lists them): they are added,
/// never renamed or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum PointerErrorKind {
    /// `empty_input`: the input is empty.
    EmptyInput,
    /// `not_utf8`: the input bytes are not valid UTF-8.
    NotUtf8,
    /// `too_long`: the input is longer than [`super::MAX_POINTER_LEN`] bytes.
    TooLong,
    /// `bad_scheme`: the input does not start with `bver://`.
    BadScheme,
    /// `empty_namespace`: nothing between `bver://` and the next `/`.
    EmptyNamespace,
    /// `missing_repo`: the input ends (or reaches `@`) right after the namespace.
    MissingRepo,
    /// `empty_repo`: nothing between the namespace's `/` and the next `/`.
    EmptyRepo,
    /// `missing_id`: the input ends (or reaches `@`) right after the repo.
    MissingId,
    /// `empty_id`: nothing after the repo's `/`.
    EmptyId,
    /// `uppercase_identifier`: a namespace or repo contains an uppercase letter.
    UppercaseIdentifier,
    /// `bad_identifier_start`: a namespace or repo starts with a digit or `_`.
    BadIdentifierStart,
    /// `identifier_too_long`: a namespace or repo is longer than [`super::MAX_IDENT_LEN`].
    IdentifierTooLong,
    /// `id_too_long`: an id is longer than [`super::MAX_ID_LEN`] bytes as written.
    IdTooLong,
    /// `dot_segment`: the id is `.` or `..` (after percent-decoding).
    DotSegment,
    /// `bad_escape`: a malformed `%XX` escape in an id, or a `\` escape other than `\"` and
    /// `\\` in a quoted key.
    BadEscape,
    /// `bad_utf8_escape`: percent-escapes in an id that do not decode to UTF-8.
    BadUtf8Escape,
    /// `invalid_char`: a character that is not allowed at this position.
    InvalidChar,
    /// `whitespace`: a whitespace character outside a quoted key (or a tab or line break
    /// inside one).
    Whitespace,
    /// `control_char`: a control character (Unicode category Cc), raw or percent-encoded.
    ControlChar,
    /// `non_ascii`: a raw non-ASCII character outside a quoted key.
    NonAscii,
    /// `unexpected_slash`: a `/` where none may be (an extra path component).
    UnexpectedSlash,
    /// `query_or_fragment`: a `?` or `#`; pointers have no query or fragment.
    QueryOrFragment,
    /// `empty_path`: an `@` with nothing after it.
    EmptyPath,
    /// `missing_path`: an attribute pointer was required and the pointer has no `@path`.
    MissingPath,
    /// `path_too_long`: the attribute path is longer than [`super::MAX_PATH_LEN`] bytes.
    PathTooLong,
    /// `path_too_deep`: the attribute path has more than [`super::MAX_PATH_DEPTH`] segments.
    PathTooDeep,
    /// `empty_segment`: a key is missing (`a..b`, `@.a`, `a.[0]`).
    EmptySegment,
    /// `trailing_dot`: the path ends with `.`.
    TrailingDot,
    /// `bad_key_start`: a plain key starts with a digit (quote it: `["2024"]`).
    BadKeyStart,
    /// `key_too_long`: a key is longer than [`super::MAX_KEY_LEN`] bytes.
    KeyTooLong,
    /// `empty_key`: a quoted key is empty (`[""]`).
    EmptyKey,
    /// `unterminated_quote`: a quoted key has no closing `"`.
    UnterminatedQuote,
    /// `expected_bracket`: something other than `]` after a quoted key.
    ExpectedBracket,
    /// `unclosed_bracket`: the input ends inside `[...]`.
    UnclosedBracket,
    /// `empty_brackets`: `[]`.
    EmptyBrackets,
    /// `bad_index`: something other than a decimal digit or a quoted key inside `[...]`.
    BadIndex,
    /// `leading_zero`: an index with a leading zero (`[01]`).
    LeadingZero,
    /// `index_too_large`: an index above [`super::MAX_INDEX`].
    IndexTooLarge,
}

impl PointerErrorKind {
    /// Every kind, in declaration order (for documentation and coverage checks).
    pub const ALL: &'static [PointerErrorKind] = &[
        Self::EmptyInput,
        Self::NotUtf8,
        Self::TooLong,
        Self::BadScheme,
        Self::EmptyNamespace,
        Self::MissingRepo,
        Self::EmptyRepo,
        Self::MissingId,
        Self::EmptyId,
        Self::UppercaseIdentifier,
        Self::BadIdentifierStart,
        Self::IdentifierTooLong,
        Self::IdTooLong,
        Self::DotSegment,
        Self::BadEscape,
        Self::BadUtf8Escape,
        Self::InvalidChar,
        Self::Whitespace,
        Self::ControlChar,
        Self::NonAscii,
        Self::UnexpectedSlash,
        Self::QueryOrFragment,
        Self::EmptyPath,
        Self::MissingPath,
        Self::PathTooLong,
        Self::PathTooDeep,
        Self::EmptySegment,
        Self::TrailingDot,
        Self::BadKeyStart,
        Self::KeyTooLong,
        Self::EmptyKey,
        Self::UnterminatedQuote,
        Self::ExpectedBracket,
        Self::UnclosedBracket,
        Self::EmptyBrackets,
        Self::BadIndex,
        Self::LeadingZero,
        Self::IndexTooLarge,
    ];

    /// The stable machine code (`bad_scheme`).
    pub fn code(self) -> &'static str {
        match self {
            Self::EmptyInput => "empty_input",
            Self::NotUtf8 => "not_utf8",
            Self::TooLong => "too_long",
            Self::BadScheme => "bad_scheme",
            Self::EmptyNamespace => "empty_namespace",
            Self::MissingRepo => "missing_repo",
            Self::EmptyRepo => "empty_repo",
            Self::MissingId => "missing_id",
            Self::EmptyId => "empty_id",
            Self::UppercaseIdentifier => "uppercase_identifier",
            Self::BadIdentifierStart => "bad_identifier_start",
            Self::IdentifierTooLong => "identifier_too_long",
            Self::IdTooLong => "id_too_long",
            Self::DotSegment => "dot_segment",
            Self::BadEscape => "bad_escape",
            Self::BadUtf8Escape => "bad_utf8_escape",
            Self::InvalidChar => "invalid_char",
            Self::Whitespace => "whitespace",
            Self::ControlChar => "control_char",
            Self::NonAscii => "non_ascii",
            Self::UnexpectedSlash => "unexpected_slash",
            Self::QueryOrFragment => "query_or_fragment",
            Self::EmptyPath => "empty_path",
            Self::MissingPath => "missing_path",
            Self::PathTooLong => "path_too_long",
            Self::PathTooDeep => "path_too_deep",
            Self::EmptySegment => "empty_segment",
            Self::TrailingDot => "trailing_dot",
            Self::BadKeyStart => "bad_key_start",
            Self::KeyTooLong => "key_too_long",
            Self::EmptyKey => "empty_key",
            Self::UnterminatedQuote => "unterminated_quote",
            Self::ExpectedBracket => "expected_bracket",
            Self::UnclosedBracket => "unclosed_bracket",
            Self::EmptyBrackets => "empty_brackets",
            Self::BadIndex => "bad_index",
            Self::LeadingZero => "leading_zero",
            Self::IndexTooLarge => "index_too_large",
        }
    }

    /// A one-line human description of the rule that was broken.
    pub fn description(self) -> &'static str {
        match self {
            Self::EmptyInput => "the pointer is empty",
            Self::NotUtf8 => "the pointer is not valid UTF-8",
            Self::TooLong => "the pointer is longer than 904 bytes",
            Self::BadScheme => "a pointer starts with `bver://`",
            Self::EmptyNamespace => "the namespace is empty",
            Self::MissingRepo => "the repo is missing (expected `/repo/id` after the namespace)",
            Self::EmptyRepo => "the repo is empty",
            Self::MissingId => "the id is missing (expected `/id` after the repo)",
            Self::EmptyId => "the id is empty",
            Self::UppercaseIdentifier => "namespaces and repos are lowercase (`[a-z][a-z0-9_]*`)",
            Self::BadIdentifierStart => "namespaces and repos start with a lowercase letter",
            Self::IdentifierTooLong => "the namespace or repo is longer than 63 bytes",
            Self::IdTooLong => "the id is longer than 256 bytes",
            Self::DotSegment => "the id may not be `.` or `..`",
            Self::BadEscape => {
                "bad escape (ids use `%XX` with two hex digits; quoted keys only `\\\"` and `\\\\`)"
            }
            Self::BadUtf8Escape => "the percent-escapes do not decode to UTF-8",
            Self::InvalidChar => "this character is not allowed here",
            Self::Whitespace => "whitespace is not allowed here",
            Self::ControlChar => "control characters are not allowed",
            Self::NonAscii => {
                "raw non-ASCII characters are only allowed in quoted keys (percent-encode them in ids)"
            }
            Self::UnexpectedSlash => "unexpected `/` (a pointer has exactly namespace/repo/id)",
            Self::QueryOrFragment => "pointers have no query (`?`) or fragment (`#`)",
            Self::EmptyPath => "the attribute path after `@` is empty",
            Self::MissingPath => "an attribute pointer needs an `@path`",
            Self::PathTooLong => "the attribute path is longer than 512 bytes",
            Self::PathTooDeep => "the attribute path has more than 32 segments",
            Self::EmptySegment => "a key is missing in the attribute path",
            Self::TrailingDot => "the attribute path ends with `.`",
            Self::BadKeyStart => {
                "a plain key starts with a letter or `_` (quote other keys: `[\"2024\"]`)"
            }
            Self::KeyTooLong => "the key is longer than 128 bytes",
            Self::EmptyKey => "a quoted key may not be empty",
            Self::UnterminatedQuote => "the quoted key has no closing `\"`",
            Self::ExpectedBracket => "expected `]` after the quoted key",
            Self::UnclosedBracket => "the `[` is never closed",
            Self::EmptyBrackets => "`[]` holds neither an index nor a quoted key",
            Self::BadIndex => "an index is a decimal number (or a quoted key: `[\"key\"]`)",
            Self::LeadingZero => "an index has no leading zeros",
            Self::IndexTooLarge => "the index is larger than 4294967295",
        }
    }
}

impl fmt::Display for PointerErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A rejected pointer or attribute path: the broken rule, the byte offset of the fault, the
/// character found there (if any) and the start of the input.
///
/// The offset counts bytes from the start of the input given to the parser (for builder
/// methods such as [`super::RefPtr::new`], from the start of the argument that was
/// rejected). It is at most the input's length; when the input ended too early it is the
/// input's length. `docs/pointers.md` says where each code points.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub struct PointerError {
    kind: PointerErrorKind,
    offset: usize,
    found: Option<char>,
    input: Box<str>,
    input_truncated: bool,
}

impl PointerError {
    /// An error of `kind` at byte `offset` of `input`; records the character found there.
    pub(crate) fn at(kind: PointerErrorKind, input: &str, offset: usize) -> Self {
        let found = input.get(offset..).and_then(|rest| rest.chars().next());
        let mut keep = input.len().min(ERROR_INPUT_KEEP);
        while !input.is_char_boundary(keep) {
            keep -= 1;
        }
        Self {
            kind,
            offset,
            found,
            input: input[..keep].into(),
            input_truncated: keep < input.len(),
        }
    }

    /// An error about raw bytes (used when the input is not UTF-8).
    pub(crate) fn at_bytes(kind: PointerErrorKind, input: &[u8], offset: usize) -> Self {
        let keep = input.len().min(ERROR_INPUT_KEEP);
        let shown = String::from_utf8_lossy(&input[..keep]);
        Self {
            kind,
            offset,
            found: None,
            input: shown.as_ref().into(),
            input_truncated: keep < input.len(),
        }
    }

    /// The rule that was broken.
    pub fn kind(&self) -> PointerErrorKind {
        self.kind
    }

    /// The stable machine code of the rule (`bad_scheme`).
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// The byte offset of the fault in the input.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The character at the offset, if the offset is inside the input.
    pub fn found(&self) -> Option<char> {
        self.found
    }

    /// The input (at most [`ERROR_INPUT_KEEP`] bytes of it; non-UTF-8 bytes replaced).
    pub fn input(&self) -> &str {
        &self.input
    }

    /// Whether [`Self::input`] was cut short.
    pub fn input_truncated(&self) -> bool {
        self.input_truncated
    }
}

impl fmt::Display for PointerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid pointer: {} ({}) at byte {}",
            self.kind.description(),
            self.kind.code(),
            self.offset
        )?;
        if let Some(c) = self.found {
            write!(f, ", found '{}'", c.escape_debug())?;
        }
        Ok(())
    }
}

impl From<PointerError> for BverError {
    fn from(e: PointerError) -> Self {
        let mut details = serde_json::Map::new();
        details.insert("reason".into(), e.code().into());
        details.insert("offset".into(), e.offset.into());
        details.insert("input".into(), e.input().into());
        if e.input_truncated {
            details.insert("input_truncated".into(), true.into());
        }
        BverError::new(
            ErrorCode::InvalidPointer,
            Phase::InputValidation,
            e.to_string(),
        )
        .with_details(serde_json::Value::Object(details))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = std::collections::BTreeSet::new();
        for kind in PointerErrorKind::ALL {
            let code = kind.code();
            assert!(seen.insert(code), "duplicate code {code}");
            assert!(
                code.bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
            );
            assert!(!kind.description().is_empty());
        }
    }

    #[test]
    fn input_is_cut_at_a_char_boundary() {
        let input = "é".repeat(200);
        let e = PointerError::at(PointerErrorKind::TooLong, &input, 400);
        assert!(e.input_truncated());
        assert_eq!(e.input().len(), ERROR_INPUT_KEEP);
        assert_eq!(e.found(), None);
        let e = PointerError::at(PointerErrorKind::InvalidChar, "bver://a b", 8);
        assert_eq!(e.found(), Some(' '));
        assert!(!e.input_truncated());
    }

    #[test]
    fn maps_to_bver_error() {
        let e = PointerError::at(PointerErrorKind::BadScheme, "http://x", 0);
        let b = BverError::from(e);
        assert_eq!(b.code, ErrorCode::InvalidPointer);
        assert_eq!(b.phase, Phase::InputValidation);
        assert!(!b.retryable);
        assert_eq!(
            b.details,
            serde_json::json!({"reason": "bad_scheme", "offset": 0, "input": "http://x"})
        );
        assert!(b.message.contains("bad_scheme"), "{}", b.message);
    }
}
