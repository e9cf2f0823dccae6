//! [`AttributePath`] and [`Segment`]: the `@meta.sheet_number` / `terminals[0].label` part of a
//! pointer, its parser, its canonical writer and its builder.

use std::fmt::{self, Write as _};
use std::str::FromStr;

use super::error::{PointerError, PointerErrorKind as K};
use super::scan::{bad_char, is_key_byte, is_key_start, is_plain_key};
use super::{MAX_KEY_LEN, MAX_PATH_DEPTH, MAX_PATH_LEN};

/// One step of an [`AttributePath`]: an object key or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Segment {
    /// An object key. Written `.key` when it is a plain key (`[A-Za-z_][A-Za-z0-9_]*`),
    /// otherwise quoted: `["key.with dots"]`.
    Key(String),
    /// An array index, written `[n]`.
    Index(u32),
}

impl Segment {
    /// The key, if this is a key segment.
    pub fn as_key(&self) -> Option<&str> {
        match self {
            Self::Key(k) => Some(k),
            Self::Index(_) => None,
        }
    }

    /// The index, if this is an index segment.
    pub fn as_index(&self) -> Option<u32> {
        match self {
            Self::Key(_) => None,
            Self::Index(i) => Some(*i),
        }
    }

    /// The length of this segment's canonical text (`first`: whether it opens the path).
    fn canonical_len(&self, first: bool) -> usize {
        match self {
            Self::Key(k) if is_plain_key(k) => k.len() + usize::from(!first),
            Self::Key(k) => 4 + k.len() + k.bytes().filter(|&b| b == b'"' || b == b'\\').count(),
            Self::Index(i) => 2 + decimal_digits(*i),
        }
    }

    /// Checks a segment built by hand; the error's input is the key (or the index in
    /// decimal).
    fn validate(&self) -> Result<(), PointerError> {
        let Self::Key(key) = self else {
            return Ok(());
        };
        if key.is_empty() {
            return Err(PointerError::at(K::EmptyKey, key, 0));
        }
        if let Some((offset, _)) = key.char_indices().find(|(_, c)| c.is_control()) {
            return Err(bad_char(key, offset, K::ControlChar));
        }
        if key.len() > MAX_KEY_LEN {
            return Err(PointerError::at(K::KeyTooLong, key, MAX_KEY_LEN));
        }
        Ok(())
    }

    /// The segment as text, for builder errors.
    fn error_input(&self) -> String {
        match self {
            Self::Key(k) => k.clone(),
            Self::Index(i) => i.to_string(),
        }
    }
}

impl From<u32> for Segment {
    fn from(i: u32) -> Self {
        Self::Index(i)
    }
}

impl From<&str> for Segment {
    fn from(key: &str) -> Self {
        Self::Key(key.to_owned())
    }
}

impl From<String> for Segment {
    fn from(key: String) -> Self {
        Self::Key(key)
    }
}

fn decimal_digits(mut i: u32) -> usize {
    let mut n = 1;
    while i >= 10 {
        i /= 10;
        n += 1;
    }
    n
}

/// The attribute path of a pointer: a non-empty list of [`Segment`]s, at most
/// [`MAX_PATH_DEPTH`] deep and at most [`MAX_PATH_LEN`] bytes in canonical form.
///
/// `Display` writes the canonical form: plain keys dotted (`meta.owner`), other keys quoted
/// with `\"` and `\\` escaped (`meta["key.with dots"]`), indexes in decimal (`[0]`).
/// Equality, hashing and ordering compare the segments (a key sorts before an index).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttributePath {
    segments: Vec<Segment>,
    /// Length of the canonical text; a function of `segments`, cached for the limit check.
    text_len: usize,
}

impl AttributePath {
    /// Parses a path as written after `@` (`meta.sheet_number`, `terminals[0].label`).
    pub fn parse(input: &str) -> Result<Self, PointerError> {
        parse_path_at(input, 0)
    }

    /// Parses `input` and writes it back in canonical form.
    pub fn normalize(input: &str) -> Result<String, PointerError> {
        Self::parse(input).map(|p| p.to_string())
    }

    /// A path of one key.
    pub fn from_key(key: impl Into<String>) -> Result<Self, PointerError> {
        Self::from_segments([Segment::Key(key.into())])
    }

    /// A path of one index.
    pub fn from_index(index: u32) -> Self {
        let seg = Segment::Index(index);
        Self {
            text_len: seg.canonical_len(true),
            segments: vec![seg],
        }
    }

    /// A path of the given segments, checked against the same rules as the parser.
    pub fn from_segments(
        segments: impl IntoIterator<Item = Segment>,
    ) -> Result<Self, PointerError> {
        let mut path = Self {
            segments: Vec::new(),
            text_len: 0,
        };
        for seg in segments {
            path.push(seg)?;
        }
        if path.segments.is_empty() {
            return Err(PointerError::at(K::EmptyPath, "", 0));
        }
        Ok(path)
    }

    /// Appends a segment. Fails (leaving the path unchanged) on an empty, too long or
    /// control-character key, or when the path would get too deep or too long.
    pub fn push(&mut self, seg: Segment) -> Result<(), PointerError> {
        seg.validate()?;
        if self.segments.len() >= MAX_PATH_DEPTH {
            return Err(PointerError::at(K::PathTooDeep, &seg.error_input(), 0));
        }
        let len = self.text_len + seg.canonical_len(self.segments.is_empty());
        if len > MAX_PATH_LEN {
            return Err(PointerError::at(K::PathTooLong, &seg.error_input(), 0));
        }
        self.text_len = len;
        self.segments.push(seg);
        Ok(())
    }

    /// Appends a key segment (see [`Self::push`]).
    pub fn push_key(&mut self, key: impl Into<String>) -> Result<(), PointerError> {
        self.push(Segment::Key(key.into()))
    }

    /// Appends an index segment (see [`Self::push`]).
    pub fn push_index(&mut self, index: u32) -> Result<(), PointerError> {
        self.push(Segment::Index(index))
    }

    /// This path with a key appended (see [`Self::push`]).
    pub fn with_key(mut self, key: impl Into<String>) -> Result<Self, PointerError> {
        self.push_key(key)?;
        Ok(self)
    }

    /// This path with an index appended (see [`Self::push`]).
    pub fn with_index(mut self, index: u32) -> Result<Self, PointerError> {
        self.push_index(index)?;
        Ok(self)
    }

    /// The segments, first to last (never empty).
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Iterates over the segments.
    pub fn iter(&self) -> std::slice::Iter<'_, Segment> {
        self.segments.iter()
    }

    /// The number of segments (at least 1).
    pub fn depth(&self) -> usize {
        self.segments.len()
    }

    /// The first segment.
    pub fn first(&self) -> &Segment {
        &self.segments[0]
    }

    /// The last segment.
    pub fn last(&self) -> &Segment {
        &self.segments[self.segments.len() - 1]
    }

    /// The path without its last segment, or `None` for a one-segment path.
    pub fn parent(&self) -> Option<Self> {
        let n = self.segments.len();
        (n > 1).then(|| {
            let segments = self.segments[..n - 1].to_vec();
            Self {
                text_len: text_len_of(&segments),
                segments,
            }
        })
    }

    /// Whether `prefix` is this path or one of its ancestors.
    pub fn starts_with(&self, prefix: &AttributePath) -> bool {
        self.segments.starts_with(&prefix.segments)
    }

    /// The segments, by value.
    pub fn into_segments(self) -> Vec<Segment> {
        self.segments
    }

    /// The length in bytes of the canonical text.
    pub fn canonical_len(&self) -> usize {
        self.text_len
    }
}

fn text_len_of(segments: &[Segment]) -> usize {
    segments
        .iter()
        .enumerate()
        .map(|(i, s)| s.canonical_len(i == 0))
        .sum()
}

impl<'a> IntoIterator for &'a AttributePath {
    type Item = &'a Segment;
    type IntoIter = std::slice::Iter<'a, Segment>;

    fn into_iter(self) -> Self::IntoIter {
        self.segments.iter()
    }
}

impl fmt::Display for AttributePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.segments.iter().enumerate() {
            match seg {
                Segment::Key(k) if is_plain_key(k) => {
                    if i > 0 {
                        f.write_char('.')?;
                    }
                    f.write_str(k)?;
                }
                Segment::Key(k) => {
                    f.write_str("[\"")?;
                    let mut run = 0;
                    for (j, b) in k.bytes().enumerate() {
                        if b == b'"' || b == b'\\' {
                            f.write_str(&k[run..j])?;
                            f.write_char('\\')?;
                            run = j;
                        }
                    }
                    f.write_str(&k[run..])?;
                    f.write_str("\"]")?;
                }
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

impl FromStr for AttributePath {
    type Err = PointerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Parses the path occupying `input[start..]` (offsets in errors are relative to `input`).
pub(crate) fn parse_path_at(input: &str, start: usize) -> Result<AttributePath, PointerError> {
    let bytes = input.as_bytes();
    let len = bytes.len();
    if start >= len {
        return Err(PointerError::at(K::EmptyPath, input, len));
    }
    if len - start > MAX_PATH_LEN {
        return Err(PointerError::at(
            K::PathTooLong,
            input,
            start + MAX_PATH_LEN,
        ));
    }
    let mut segments = Vec::new();
    let mut i = start;
    let mut after_dot = false;
    loop {
        // `i < len` here: at the start (checked above), after `.` (trailing dot checked) and
        // before `[` (the byte exists).
        if segments.len() == MAX_PATH_DEPTH {
            let seg_start = if after_dot { i - 1 } else { i };
            return Err(PointerError::at(K::PathTooDeep, input, seg_start));
        }
        i = if !after_dot && bytes[i] == b'[' {
            parse_bracket(input, i, &mut segments)?
        } else {
            parse_plain_key(input, i, &mut segments)?
        };
        match bytes.get(i) {
            None => break,
            Some(b'.') => {
                if i + 1 == len {
                    return Err(PointerError::at(K::TrailingDot, input, i));
                }
                i += 1;
                after_dot = true;
            }
            Some(b'[') => after_dot = false,
            Some(_) => return Err(bad_char(input, i, K::InvalidChar)),
        }
    }
    Ok(AttributePath {
        text_len: text_len_of(&segments),
        segments,
    })
}

/// Parses a plain key at `i`; returns the offset after it.
fn parse_plain_key(
    input: &str,
    i: usize,
    segments: &mut Vec<Segment>,
) -> Result<usize, PointerError> {
    let bytes = input.as_bytes();
    match bytes[i] {
        b'.' | b'[' => return Err(PointerError::at(K::EmptySegment, input, i)),
        b if b.is_ascii_digit() => return Err(PointerError::at(K::BadKeyStart, input, i)),
        b if is_key_start(b) => {}
        _ => return Err(bad_char(input, i, K::InvalidChar)),
    }
    let mut j = i + 1;
    while bytes.get(j).is_some_and(|&b| is_key_byte(b)) {
        j += 1;
    }
    if j - i > MAX_KEY_LEN {
        return Err(PointerError::at(K::KeyTooLong, input, i + MAX_KEY_LEN));
    }
    segments.push(Segment::Key(input[i..j].to_owned()));
    Ok(j)
}

/// Parses `[n]` or `["key"]` at `open` (which holds `[`); returns the offset after `]`.
fn parse_bracket(
    input: &str,
    open: usize,
    segments: &mut Vec<Segment>,
) -> Result<usize, PointerError> {
    let bytes = input.as_bytes();
    let j = open + 1;
    match bytes.get(j) {
        None => Err(PointerError::at(K::UnclosedBracket, input, open)),
        Some(b']') => Err(PointerError::at(K::EmptyBrackets, input, j)),
        Some(b'"') => parse_quoted(input, open, j, segments),
        Some(b) if b.is_ascii_digit() => parse_index(input, open, j, segments),
        Some(_) => Err(bad_char(input, j, K::BadIndex)),
    }
}

fn parse_index(
    input: &str,
    open: usize,
    first: usize,
    segments: &mut Vec<Segment>,
) -> Result<usize, PointerError> {
    let bytes = input.as_bytes();
    if bytes[first] == b'0' && bytes.get(first + 1).is_some_and(u8::is_ascii_digit) {
        return Err(PointerError::at(K::LeadingZero, input, first));
    }
    let mut value: u64 = 0;
    let mut k = first;
    while let Some(&b) = bytes.get(k).filter(|b| b.is_ascii_digit()) {
        value = value * 10 + u64::from(b - b'0');
        if value > u64::from(u32::MAX) {
            return Err(PointerError::at(K::IndexTooLarge, input, first));
        }
        k += 1;
    }
    match bytes.get(k) {
        None => return Err(PointerError::at(K::UnclosedBracket, input, open)),
        Some(b']') => {}
        Some(_) => return Err(bad_char(input, k, K::BadIndex)),
    }
    let index =
        u32::try_from(value).map_err(|_| PointerError::at(K::IndexTooLarge, input, first))?;
    segments.push(Segment::Index(index));
    Ok(k + 1)
}

fn parse_quoted(
    input: &str,
    open: usize,
    quote: usize,
    segments: &mut Vec<Segment>,
) -> Result<usize, PointerError> {
    let bytes = input.as_bytes();
    let mut key = String::new();
    let mut k = quote + 1;
    let mut run = k;
    loop {
        match bytes.get(k) {
            None => return Err(PointerError::at(K::UnterminatedQuote, input, quote)),
            Some(b'"') => {
                key.push_str(&input[run..k]);
                k += 1;
                break;
            }
            Some(b'\\') => {
                key.push_str(&input[run..k]);
                match bytes.get(k + 1) {
                    Some(b'"') => key.push('"'),
                    Some(b'\\') => key.push('\\'),
                    None => return Err(PointerError::at(K::UnterminatedQuote, input, quote)),
                    Some(_) => return Err(PointerError::at(K::BadEscape, input, k)),
                }
                k += 2;
                run = k;
            }
            Some(&b) if b < 0x80 => {
                if b < 0x20 || b == 0x7F {
                    return Err(bad_char(input, k, K::ControlChar));
                }
                k += 1;
            }
            Some(_) => {
                // A non-ASCII character: `k` is at a character boundary (all prior steps
                // advanced over whole characters).
                let c = input[k..]
                    .chars()
                    .next()
                    .unwrap_or(char::REPLACEMENT_CHARACTER);
                if c.is_control() {
                    return Err(bad_char(input, k, K::ControlChar));
                }
                k += c.len_utf8();
            }
        }
    }
    if key.is_empty() {
        return Err(PointerError::at(K::EmptyKey, input, quote));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(PointerError::at(K::KeyTooLong, input, quote));
    }
    match bytes.get(k) {
        None => return Err(PointerError::at(K::UnclosedBracket, input, open)),
        Some(b']') => {}
        Some(_) => return Err(bad_char(input, k, K::ExpectedBracket)),
    }
    segments.push(Segment::Key(key));
    Ok(k + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_len_matches_display() {
        for s in [
            "a",
            "a.b[0]",
            "[\"x y\"].z[10]",
            "[0][4294967295]",
            "m[\"q\\\"\\\\\"]",
            "[\"plain\"]",
        ] {
            let p = AttributePath::parse(s).unwrap();
            assert_eq!(p.canonical_len(), p.to_string().len(), "{s}");
        }
    }

    #[test]
    fn builder_matches_parser() {
        let built = AttributePath::from_key("meta")
            .unwrap()
            .with_key("key.with dots")
            .unwrap()
            .with_index(3)
            .unwrap();
        assert_eq!(built.to_string(), "meta[\"key.with dots\"][3]");
        assert_eq!(AttributePath::parse(&built.to_string()).unwrap(), built);
        assert_eq!(
            built.parent().unwrap().to_string(),
            "meta[\"key.with dots\"]"
        );
        assert!(built.starts_with(&AttributePath::from_key("meta").unwrap()));
        assert_eq!(built.last().as_index(), Some(3));
        assert_eq!(built.first().as_key(), Some("meta"));
    }

    #[test]
    fn builder_rejects_what_the_parser_rejects() {
        let code = |r: Result<AttributePath, PointerError>| r.unwrap_err().code();
        assert_eq!(code(AttributePath::from_key("")), "empty_key");
        assert_eq!(code(AttributePath::from_key("a\u{0}")), "control_char");
        assert_eq!(code(AttributePath::from_key("a\tb")), "whitespace");
        assert_eq!(
            code(AttributePath::from_key("k".repeat(129))),
            "key_too_long"
        );
        assert_eq!(code(AttributePath::from_segments([])), "empty_path");
        let deep = (0..33).map(Segment::Index);
        assert_eq!(code(AttributePath::from_segments(deep)), "path_too_deep");
        let long = (0..5).map(|_| Segment::Key("k".repeat(120)));
        assert_eq!(code(AttributePath::from_segments(long)), "path_too_long");
        let mut p = AttributePath::from_index(0);
        assert!(p.push_key("").is_err());
        assert_eq!(p.depth(), 1);
    }
}
