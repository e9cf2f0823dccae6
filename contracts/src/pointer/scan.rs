//! The byte-level scanners shared by the pointer parser and the builders: character classes,
//! identifier and id scanning, percent-encoding.

use super::error::{PointerError, PointerErrorKind as K};
use super::{MAX_ID_LEN, MAX_IDENT_LEN};

/// The canonical scheme prefix.
pub(crate) const PREFIX: &str = "bver://";

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Whether `b` may appear literally in an id (RFC 3986 `unreserved`).
pub(crate) fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Whether `b` may start a plain attribute key.
pub(crate) fn is_key_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

/// Whether `b` may continue a plain attribute key.
pub(crate) fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Whether `key` can be written without quotes (`[A-Za-z_][A-Za-z0-9_]*`).
pub(crate) fn is_plain_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    match bytes.split_first() {
        Some((&first, rest)) => is_key_start(first) && rest.iter().all(|&b| is_key_byte(b)),
        None => false,
    }
}

/// The specific code for a character that is never allowed where it was found, if any.
fn classify(c: char) -> Option<K> {
    match c {
        ' ' | '\t' | '\n' | '\r' | '\x0B' | '\x0C' => Some(K::Whitespace),
        c if c.is_control() => Some(K::ControlChar),
        c if c.is_whitespace() => Some(K::Whitespace),
        c if !c.is_ascii() => Some(K::NonAscii),
        '/' => Some(K::UnexpectedSlash),
        '?' | '#' => Some(K::QueryOrFragment),
        _ => None,
    }
}

/// The error for a character that is not allowed at `offset`: whitespace, control,
/// non-ASCII, `/` and `?`/`#` have their own codes; anything else gets `default`.
pub(crate) fn bad_char(input: &str, offset: usize, default: K) -> PointerError {
    let kind = input
        .get(offset..)
        .and_then(|rest| rest.chars().next())
        .and_then(classify)
        .unwrap_or(default);
    PointerError::at(kind, input, offset)
}

/// Like [`bad_char`], but only whitespace and control characters get their own code.
fn bad_char_basic(input: &str, offset: usize, default: K) -> PointerError {
    let kind = match input.get(offset..).and_then(|rest| rest.chars().next()) {
        Some(c) if c.is_control() || c.is_whitespace() => classify(c).unwrap_or(default),
        _ => default,
    };
    PointerError::at(kind, input, offset)
}

/// Checks the case-insensitive `bver://` prefix; returns the offset after it.
pub(crate) fn scan_scheme(input: &str) -> Result<usize, PointerError> {
    let bytes = input.as_bytes();
    for (i, &want) in PREFIX.as_bytes().iter().enumerate() {
        match bytes.get(i) {
            Some(&b) if b.to_ascii_lowercase() == want => {}
            Some(_) => return Err(bad_char_basic(input, i, K::BadScheme)),
            None => return Err(PointerError::at(K::BadScheme, input, i)),
        }
    }
    Ok(PREFIX.len())
}

/// Which identifier is being scanned (selects the `empty_*` code).
#[derive(Debug, Clone, Copy)]
pub(crate) enum IdentPart {
    Namespace,
    Repo,
}

/// Scans `[a-z][a-z0-9_]*` (at most [`MAX_IDENT_LEN`] bytes) from `start`; returns the offset
/// of the first byte after it. An empty identifier followed by the end, `/` or `@` is
/// `empty_namespace`/`empty_repo`.
pub(crate) fn scan_ident(
    input: &str,
    start: usize,
    part: IdentPart,
) -> Result<usize, PointerError> {
    let bytes = input.as_bytes();
    let mut i = start;
    while let Some(&b) = bytes.get(i) {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' {
            if i == start && !b.is_ascii_lowercase() {
                return Err(PointerError::at(K::BadIdentifierStart, input, i));
            }
            if i - start == MAX_IDENT_LEN {
                return Err(PointerError::at(K::IdentifierTooLong, input, i));
            }
            i += 1;
        } else if b.is_ascii_uppercase() {
            return Err(PointerError::at(K::UppercaseIdentifier, input, i));
        } else {
            break;
        }
    }
    if i == start {
        return Err(match bytes.get(i) {
            None | Some(b'/') | Some(b'@') => {
                let kind = match part {
                    IdentPart::Namespace => K::EmptyNamespace,
                    IdentPart::Repo => K::EmptyRepo,
                };
                PointerError::at(kind, input, i)
            }
            Some(_) => bad_char(input, i, K::InvalidChar),
        });
    }
    Ok(i)
}

/// Validates a whole string as a namespace or repo (for builders).
pub(crate) fn validate_ident(ident: &str, part: IdentPart) -> Result<(), PointerError> {
    let end = scan_ident(ident, 0, part)?;
    if end != ident.len() {
        return Err(bad_char(ident, end, K::InvalidChar));
    }
    Ok(())
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Appends `%XX` (uppercase hex) for byte `b`.
fn push_pct(out: &mut String, b: u8) {
    out.push('%');
    out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
    out.push(char::from(HEX_UPPER[usize::from(b & 0x0F)]));
}

/// Appends the canonical id encoding of `c`: literal if unreserved, else `%XX` per UTF-8 byte.
fn push_id_char(out: &mut String, c: char) {
    if c.is_ascii() && is_unreserved(c as u8) {
        out.push(c);
    } else {
        let mut buf = [0u8; 4];
        for &b in c.encode_utf8(&mut buf).as_bytes() {
            push_pct(out, b);
        }
    }
}

/// Reads the `%XX` escape at `i` (which holds `%`).
fn pct_byte(input: &str, i: usize) -> Result<u8, PointerError> {
    let bytes = input.as_bytes();
    match (
        bytes.get(i + 1).copied().and_then(hex_val),
        bytes.get(i + 2).copied().and_then(hex_val),
    ) {
        (Some(hi), Some(lo)) => Ok(hi << 4 | lo),
        _ => Err(PointerError::at(K::BadEscape, input, i)),
    }
}

/// Decodes the escape sequence (one UTF-8 character, one to four `%XX`) starting at `i`;
/// returns the character and the offset after the sequence.
fn decode_escaped_char(input: &str, i: usize) -> Result<(char, usize), PointerError> {
    let bytes = input.as_bytes();
    let lead = pct_byte(input, i)?;
    let len = match lead {
        0x00..=0x7F => 1,
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return Err(PointerError::at(K::BadUtf8Escape, input, i)),
    };
    let mut buf = [lead, 0, 0, 0];
    let mut j = i + 3;
    for slot in buf.iter_mut().take(len).skip(1) {
        if bytes.get(j) != Some(&b'%') {
            return Err(PointerError::at(K::BadUtf8Escape, input, i));
        }
        *slot = pct_byte(input, j)?;
        j += 3;
    }
    let c = std::str::from_utf8(&buf[..len])
        .ok()
        .and_then(|s| s.chars().next())
        .ok_or_else(|| PointerError::at(K::BadUtf8Escape, input, i))?;
    if c.is_control() {
        let kind = classify(c).unwrap_or(K::ControlChar);
        return Err(PointerError::at(kind, input, i));
    }
    Ok((c, j))
}

/// Scans an id from `start` to the next `@` or the end, appending its canonical form to
/// `out`. Returns the offset where the id ends and the decoded id when it differs from the
/// canonical text (that is, when the canonical form still holds escapes).
pub(crate) fn scan_id(
    input: &str,
    start: usize,
    out: &mut String,
) -> Result<(usize, Option<Box<str>>), PointerError> {
    let bytes = input.as_bytes();
    let out_start = out.len();
    let mut decoded: Option<String> = None;
    let mut i = start;
    while let Some(&b) = bytes.get(i) {
        if b == b'@' {
            break;
        }
        if i - start >= MAX_ID_LEN {
            return Err(PointerError::at(K::IdTooLong, input, start + MAX_ID_LEN));
        }
        if is_unreserved(b) {
            let c = char::from(b);
            out.push(c);
            if let Some(d) = decoded.as_mut() {
                d.push(c);
            }
            i += 1;
        } else if b == b'%' {
            let (c, next) = decode_escaped_char(input, i)?;
            if next - start > MAX_ID_LEN {
                return Err(PointerError::at(K::IdTooLong, input, start + MAX_ID_LEN));
            }
            let literal = c.is_ascii() && is_unreserved(c as u8);
            if !literal && decoded.is_none() {
                decoded = Some(out[out_start..].to_owned());
            }
            push_id_char(out, c);
            if let Some(d) = decoded.as_mut() {
                d.push(c);
            }
            i = next;
        } else if b == b'/' && i == start {
            return Err(PointerError::at(K::EmptyId, input, i));
        } else {
            return Err(bad_char(input, i, K::InvalidChar));
        }
    }
    if i == start {
        return Err(PointerError::at(K::EmptyId, input, i));
    }
    if matches!(&out[out_start..], "." | "..") {
        return Err(PointerError::at(K::DotSegment, input, start));
    }
    Ok((i, decoded.map(String::into_boxed_str)))
}

/// Appends the canonical encoding of a decoded id (for builders); the error offsets are
/// within `id`.
pub(crate) fn encode_id(id: &str, out: &mut String) -> Result<(), PointerError> {
    if id.is_empty() {
        return Err(PointerError::at(K::EmptyId, id, 0));
    }
    let out_start = out.len();
    for (offset, c) in id.char_indices() {
        if c.is_control() {
            return Err(bad_char(id, offset, K::ControlChar));
        }
        push_id_char(out, c);
        if out.len() - out_start > MAX_ID_LEN {
            return Err(PointerError::at(K::IdTooLong, id, offset));
        }
    }
    if matches!(id, "." | "..") {
        return Err(PointerError::at(K::DotSegment, id, 0));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_keys() {
        for k in ["a", "_", "A9_b", "camelCase"] {
            assert!(is_plain_key(k), "{k}");
        }
        for k in ["", "9a", "a-b", "a.b", "a b", "é"] {
            assert!(!is_plain_key(k), "{k}");
        }
    }

    #[test]
    fn id_encoding_is_uppercase_and_minimal() {
        let mut out = String::new();
        encode_id("a b/é~", &mut out).unwrap();
        assert_eq!(out, "a%20b%2F%C3%A9~");
        let mut out = String::new();
        let (end, decoded) = scan_id("x%7e%41%c3%a9@p", 0, &mut out).unwrap();
        assert_eq!((end, out.as_str()), (13, "x~A%C3%A9"));
        assert_eq!(decoded.as_deref(), Some("x~Aé"));
    }
}
