//! [`RefPtr`] (a pointer with an optional attribute path) and [`AttributePointer`] (one whose
//! path is required): parsing, canonical form, accessors, ordering and conversions.

use std::cmp::Ordering;
use std::fmt::{self, Write as _};
use std::str::FromStr;

use super::MAX_POINTER_LEN;
use super::error::{PointerError, PointerErrorKind as K};
use super::path::{AttributePath, parse_path_at};
use super::scan::{IdentPart, PREFIX, encode_id, scan_id, scan_ident, scan_scheme, validate_ident};

/// A `bver://{namespace}/{repo}/{id}[@{attribute_path}]` pointer.
///
/// Always valid and always held in canonical form: [`Display`](fmt::Display) writes the
/// canonical text (lowercase scheme, minimal uppercase percent-encoding of the id, plain keys
/// unquoted), so two pointers are equal exactly when their canonical texts are equal.
/// Ordering is by namespace, repo, decoded id (bytewise), then path (none first).
///
/// ```
/// use bver_contracts::pointer::RefPtr;
///
/// let p: RefPtr = "BVER://sites/site/7@terminals[0].label".parse()?;
/// assert_eq!(p.namespace(), "sites");
/// assert_eq!(p.id(), "7");
/// assert_eq!(p.to_string(), "bver://sites/site/7@terminals[0].label");
/// assert_eq!(p.without_path().to_string(), "bver://sites/site/7");
/// # Ok::<(), bver_contracts::pointer::PointerError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RefPtr {
    /// Canonical `bver://ns/repo/id` (no path).
    base: String,
    path: Option<AttributePath>,
    /// Offset in `base` of the `/` after the namespace.
    ns_end: usize,
    /// Offset in `base` of the `/` after the repo.
    repo_end: usize,
    /// The decoded id when it differs from its canonical (encoded) text.
    decoded_id: Option<Box<str>>,
}

impl RefPtr {
    /// Parses a pointer strictly (see `docs/pointers.md`); accepts non-canonical spellings
    /// (uppercase scheme, lowercase or needless percent-escapes, quoted plain keys) and
    /// normalises them.
    pub fn parse(input: &str) -> Result<Self, PointerError> {
        let bytes = input.as_bytes();
        if bytes.is_empty() {
            return Err(PointerError::at(K::EmptyInput, input, 0));
        }
        if bytes.len() > MAX_POINTER_LEN {
            return Err(PointerError::at(K::TooLong, input, MAX_POINTER_LEN));
        }
        let ns_start = scan_scheme(input)?;
        let ns_end = scan_ident(input, ns_start, IdentPart::Namespace)?;
        match bytes.get(ns_end) {
            Some(b'/') => {}
            None | Some(b'@') => return Err(PointerError::at(K::MissingRepo, input, ns_end)),
            Some(_) => return Err(super::scan::bad_char(input, ns_end, K::InvalidChar)),
        }
        let repo_end = scan_ident(input, ns_end + 1, IdentPart::Repo)?;
        match bytes.get(repo_end) {
            Some(b'/') => {}
            None | Some(b'@') => return Err(PointerError::at(K::MissingId, input, repo_end)),
            Some(_) => return Err(super::scan::bad_char(input, repo_end, K::InvalidChar)),
        }
        let id_start = repo_end + 1;
        let mut base = String::with_capacity(bytes.len());
        base.push_str(PREFIX);
        base.push_str(&input[ns_start..id_start]);
        let (id_end, decoded_id) = scan_id(input, id_start, &mut base)?;
        let path = if id_end < bytes.len() {
            Some(parse_path_at(input, id_end + 1)?)
        } else {
            None
        };
        Ok(Self {
            base,
            path,
            ns_end,
            repo_end,
            decoded_id,
        })
    }

    /// Parses raw bytes: like [`Self::parse`], with `not_utf8` for bytes that are not UTF-8.
    pub fn parse_bytes(input: &[u8]) -> Result<Self, PointerError> {
        if input.is_empty() {
            return Err(PointerError::at_bytes(K::EmptyInput, input, 0));
        }
        if input.len() > MAX_POINTER_LEN {
            return Err(PointerError::at_bytes(K::TooLong, input, MAX_POINTER_LEN));
        }
        match std::str::from_utf8(input) {
            Ok(s) => Self::parse(s),
            Err(e) => Err(PointerError::at_bytes(K::NotUtf8, input, e.valid_up_to())),
        }
    }

    /// Parses `input` and writes it back in canonical form.
    pub fn normalize(input: &str) -> Result<String, PointerError> {
        Self::parse(input).map(|p| p.to_string())
    }

    /// A whole-reference pointer from its parts. `id` is the decoded id (any text without
    /// control characters); it is percent-encoded as needed. Errors carry the offending
    /// argument as their input.
    pub fn new(namespace: &str, repo: &str, id: &str) -> Result<Self, PointerError> {
        validate_ident(namespace, IdentPart::Namespace)?;
        validate_ident(repo, IdentPart::Repo)?;
        let mut base =
            String::with_capacity(PREFIX.len() + namespace.len() + repo.len() + 2 + id.len());
        base.push_str(PREFIX);
        base.push_str(namespace);
        let ns_end = base.len();
        base.push('/');
        base.push_str(repo);
        let repo_end = base.len();
        base.push('/');
        encode_id(id, &mut base)?;
        let decoded_id = (&base[repo_end + 1..] != id).then(|| id.into());
        Ok(Self {
            base,
            path: None,
            ns_end,
            repo_end,
            decoded_id,
        })
    }

    /// The namespace (`sites`).
    pub fn namespace(&self) -> &str {
        &self.base[PREFIX.len()..self.ns_end]
    }

    /// The repo (`site`).
    pub fn repo(&self) -> &str {
        &self.base[self.ns_end + 1..self.repo_end]
    }

    /// The id, percent-decoded (`a b` for `a%20b`).
    pub fn id(&self) -> &str {
        match &self.decoded_id {
            Some(id) => id,
            None => self.id_encoded(),
        }
    }

    /// The id as written in the canonical pointer (`a%20b`).
    pub fn id_encoded(&self) -> &str {
        &self.base[self.repo_end + 1..]
    }

    /// The attribute path, if any.
    pub fn path(&self) -> Option<&AttributePath> {
        self.path.as_ref()
    }

    /// Whether the pointer has an attribute path (is an attribute pointer).
    pub fn has_path(&self) -> bool {
        self.path.is_some()
    }

    /// The canonical text of the whole reference (`bver://sites/site/7`), without the path.
    /// Borrowed: usable as a lookup key without allocating.
    pub fn reference_str(&self) -> &str {
        &self.base
    }

    /// The pointer to the whole reference (the path dropped).
    pub fn without_path(&self) -> RefPtr {
        Self {
            base: self.base.clone(),
            path: None,
            ns_end: self.ns_end,
            repo_end: self.repo_end,
            decoded_id: self.decoded_id.clone(),
        }
    }

    /// This pointer with `path` as its attribute path (replacing any previous one).
    pub fn with_path(mut self, path: AttributePath) -> RefPtr {
        self.path = Some(path);
        self
    }

    /// Replaces the attribute path (or removes it with `None`).
    pub fn set_path(&mut self, path: Option<AttributePath>) {
        self.path = path;
    }

    /// The attribute pointer to `path` within this pointer's reference.
    pub fn attribute(&self, path: AttributePath) -> AttributePointer {
        AttributePointer {
            reference: self.without_path(),
            path,
        }
    }

    /// Splits into the whole-reference pointer and the path.
    pub fn into_parts(mut self) -> (RefPtr, Option<AttributePath>) {
        let path = self.path.take();
        (self, path)
    }
}

impl PartialOrd for RefPtr {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RefPtr {
    fn cmp(&self, other: &Self) -> Ordering {
        self.namespace()
            .cmp(other.namespace())
            .then_with(|| self.repo().cmp(other.repo()))
            .then_with(|| self.id().cmp(other.id()))
            .then_with(|| self.path.cmp(&other.path))
    }
}

impl fmt::Display for RefPtr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)?;
        if let Some(path) = &self.path {
            f.write_char('@')?;
            fmt::Display::fmt(path, f)?;
        }
        Ok(())
    }
}

impl fmt::Debug for RefPtr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RefPtr({:?})", self.to_string())
    }
}

impl FromStr for RefPtr {
    type Err = PointerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl From<AttributePointer> for RefPtr {
    fn from(p: AttributePointer) -> Self {
        p.into_ref_ptr()
    }
}

/// A pointer whose attribute path is present: `bver://sites/site/123@name` (the shared
/// contract's `AttributePointer`). Same canonical form, equality and order as the
/// corresponding [`RefPtr`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttributePointer {
    /// The whole reference (never has a path).
    reference: RefPtr,
    path: AttributePath,
}

impl AttributePointer {
    /// Parses a pointer that must have an `@path` (`missing_path` otherwise).
    pub fn parse(input: &str) -> Result<Self, PointerError> {
        let ptr = RefPtr::parse(input)?;
        Self::try_from(ptr).map_err(|_| PointerError::at(K::MissingPath, input, input.len()))
    }

    /// The attribute pointer to `path` within `reference` (any path of `reference` is
    /// replaced).
    pub fn new(reference: &RefPtr, path: AttributePath) -> Self {
        reference.attribute(path)
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        self.reference.namespace()
    }

    /// The repo.
    pub fn repo(&self) -> &str {
        self.reference.repo()
    }

    /// The id, percent-decoded.
    pub fn id(&self) -> &str {
        self.reference.id()
    }

    /// The id as written in the canonical pointer.
    pub fn id_encoded(&self) -> &str {
        self.reference.id_encoded()
    }

    /// The attribute path.
    pub fn path(&self) -> &AttributePath {
        &self.path
    }

    /// The pointer to the whole reference (without the path).
    pub fn reference(&self) -> &RefPtr {
        &self.reference
    }

    /// Converts into a [`RefPtr`] with this path.
    pub fn into_ref_ptr(self) -> RefPtr {
        self.reference.with_path(self.path)
    }

    /// A [`RefPtr`] with this path.
    pub fn to_ref_ptr(&self) -> RefPtr {
        self.clone().into_ref_ptr()
    }

    /// Splits into the whole reference and the path.
    pub fn into_parts(self) -> (RefPtr, AttributePath) {
        (self.reference, self.path)
    }
}

impl TryFrom<RefPtr> for AttributePointer {
    type Error = PointerError;

    /// Fails with `missing_path` (offset: the canonical text's length) for a pointer
    /// without a path.
    fn try_from(ptr: RefPtr) -> Result<Self, Self::Error> {
        match ptr.into_parts() {
            (reference, Some(path)) => Ok(Self { reference, path }),
            (reference, None) => {
                let text = reference.to_string();
                Err(PointerError::at(K::MissingPath, &text, text.len()))
            }
        }
    }
}

impl fmt::Display for AttributePointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reference.reference_str())?;
        f.write_char('@')?;
        fmt::Display::fmt(&self.path, f)
    }
}

impl fmt::Debug for AttributePointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AttributePointer({:?})", self.to_string())
    }
}

impl FromStr for AttributePointer {
    type Err = PointerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<RefPtr> for AttributePointer {
    fn as_ref(&self) -> &RefPtr {
        &self.reference
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_encodes_and_matches_parser() {
        let p = RefPtr::new("drawings", "drawing", "A 1/é").unwrap();
        assert_eq!(p.to_string(), "bver://drawings/drawing/A%201%2F%C3%A9");
        assert_eq!(p.id(), "A 1/é");
        assert_eq!(RefPtr::parse(&p.to_string()).unwrap(), p);
        let plain = RefPtr::new("sites", "site", "123").unwrap();
        assert_eq!(plain.id(), plain.id_encoded());
    }

    #[test]
    fn builder_errors() {
        let code = |r: Result<RefPtr, PointerError>| r.unwrap_err().code();
        assert_eq!(code(RefPtr::new("", "site", "1")), "empty_namespace");
        assert_eq!(
            code(RefPtr::new("Sites", "site", "1")),
            "uppercase_identifier"
        );
        assert_eq!(code(RefPtr::new("sites", "si-te", "1")), "invalid_char");
        assert_eq!(code(RefPtr::new("sites", "a/b", "1")), "unexpected_slash");
        assert_eq!(code(RefPtr::new("sites", "", "1")), "empty_repo");
        assert_eq!(code(RefPtr::new("sites", "site", "")), "empty_id");
        assert_eq!(code(RefPtr::new("sites", "site", "..")), "dot_segment");
        assert_eq!(
            code(RefPtr::new("sites", "site", "a\u{7f}")),
            "control_char"
        );
        assert_eq!(
            code(RefPtr::new("sites", "site", &"é".repeat(43))),
            "id_too_long"
        );
        assert!(RefPtr::new("sites", "site", &"é".repeat(42)).is_ok());
    }

    #[test]
    fn attribute_pointer_conversions() {
        let p = RefPtr::parse("bver://sites/site/1@a[\"b\"]").unwrap();
        let a = AttributePointer::try_from(p.clone()).unwrap();
        assert_eq!(a.to_string(), "bver://sites/site/1@a.b");
        assert_eq!(RefPtr::from(a.clone()), p);
        assert_eq!(a.reference(), &p.without_path());
        let err = AttributePointer::try_from(p.without_path()).unwrap_err();
        assert_eq!((err.code(), err.offset()), ("missing_path", 19));
        assert_eq!(p.without_path().attribute(a.path().clone()), a);
    }
}
