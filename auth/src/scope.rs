//! Scopes: the grammar ([`Scope::parse`]), the matching rule ([`Scope::grants`]) and sets of
//! scopes held by a principal ([`ScopeSet`]).
//!
//! The grammar and the wildcard rules are documented for users in `docs/auth.md`; this module
//! is their single implementation.
//!
//! ```text
//! scope    = resource *( ":" segment )        ; at most 255 bytes
//! resource = part                             ; never a wildcard, never dotted
//! segment  = "*" / name / name ".*"
//! name     = part *( "." part )
//! part     = 1*( %x61-7A / DIGIT / "_" / "-" ) ; [a-z0-9_-]+
//! ```
//!
//! A granted scope covers a required one when both have the same number of segments and each
//! granted segment covers the required segment at the same position: `*` covers any one whole
//! segment, `name.*` covers `name.` followed by one or more parts, a plain name covers only
//! itself. There is no implicit hierarchy: `admin` grants only `admin`.

use std::fmt;
use std::str::FromStr;

/// The longest scope accepted, in bytes (the same limit as the domain loader's).
pub const MAX_SCOPE_LEN: usize = 255;

/// A scope string that does not follow the grammar.
///
/// Every variant carries the byte offset of the problem in the parsed input (for a
/// [`ScopeSet`], in the whole space-separated string).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// The scope is empty (in a set: two spaces in a row, or a leading or trailing space).
    #[error("empty scope at byte {offset}")]
    Empty {
        /// Where the empty scope starts.
        offset: usize,
    },
    /// The scope is longer than [`MAX_SCOPE_LEN`].
    #[error("scope at byte {offset} is {len} bytes long, more than the {max} allowed")]
    TooLong {
        /// Where the scope starts.
        offset: usize,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Two `:` in a row, or a `:` at the start or the end.
    #[error("empty segment at byte {offset} (two `:` in a row, or a `:` at an end)")]
    EmptySegment {
        /// Where the empty segment is.
        offset: usize,
    },
    /// Two `.` in a row, or a `.` at the start or the end of a segment.
    #[error("empty name part at byte {offset} (two `.` in a row, or a `.` at an end)")]
    EmptyPart {
        /// Where the empty part is.
        offset: usize,
    },
    /// A character outside `[a-z0-9_-]`, `.`, `:` and `*`.
    #[error(
        "invalid character {ch:?} at byte {offset} (scopes use lowercase a-z, 0-9, `_`, `-`, \
         `.` and `:`)"
    )]
    InvalidChar {
        /// The character.
        ch: char,
        /// Where it is.
        offset: usize,
    },
    /// A `*` that is not a whole segment nor a final `.*` (for example `si*`, `a.*.b`, `**`).
    #[error(
        "misplaced `*` at byte {offset}: a wildcard is a whole segment (`refs:*:read`) or a \
         final `.*` after a name (`ops:refs.site.*`)"
    )]
    MisplacedWildcard {
        /// Where the `*` is.
        offset: usize,
    },
    /// The first segment (the resource family) is a wildcard or a dotted name.
    #[error(
        "the first segment at byte {offset} names the resource family: a plain name, never a \
         wildcard or a dotted name"
    )]
    BadResource {
        /// Where the first segment starts.
        offset: usize,
    },
}

impl ScopeError {
    /// The stable machine-readable name of the error (`misplaced_wildcard`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty { .. } => "empty_scope",
            Self::TooLong { .. } => "scope_too_long",
            Self::EmptySegment { .. } => "empty_segment",
            Self::EmptyPart { .. } => "empty_part",
            Self::InvalidChar { .. } => "invalid_char",
            Self::MisplacedWildcard { .. } => "misplaced_wildcard",
            Self::BadResource { .. } => "bad_resource",
        }
    }

    /// The byte offset of the problem.
    pub fn offset(&self) -> usize {
        match self {
            Self::Empty { offset }
            | Self::TooLong { offset, .. }
            | Self::EmptySegment { offset }
            | Self::EmptyPart { offset }
            | Self::InvalidChar { offset, .. }
            | Self::MisplacedWildcard { offset }
            | Self::BadResource { offset } => *offset,
        }
    }

    fn shifted(mut self, by: usize) -> Self {
        match &mut self {
            Self::Empty { offset }
            | Self::TooLong { offset, .. }
            | Self::EmptySegment { offset }
            | Self::EmptyPart { offset }
            | Self::InvalidChar { offset, .. }
            | Self::MisplacedWildcard { offset }
            | Self::BadResource { offset } => *offset += by,
        }
        self
    }
}

impl From<ScopeError> for bver_contracts::BverError {
    fn from(e: ScopeError) -> Self {
        use bver_contracts::{BverError, ErrorCode, Phase};
        BverError::new(
            ErrorCode::MalformedRequest,
            Phase::InputValidation,
            e.to_string(),
        )
        .with_details(serde_json::json!({ "reason": e.code(), "offset": e.offset() }))
    }
}

/// One scope, for example `refs:site:read`, `ops:refs.site.*` or `admin`.
///
/// A `Scope` always holds a string that follows the grammar, and the grammar has one spelling
/// per scope, so equality is string equality. Construct it with [`Scope::parse`] (or
/// `str::parse`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope(Box<str>);

/// How one segment matches, derived from its text.
#[derive(Clone, Copy)]
enum Segment<'a> {
    /// `*`: any one whole segment.
    Any,
    /// `name.*` (holding `name`): `name.` followed by one or more parts.
    Below(&'a str),
    /// A plain (possibly dotted) name: only itself.
    Exact(&'a str),
}

impl<'a> Segment<'a> {
    fn of(text: &'a str) -> Self {
        if text == "*" {
            Self::Any
        } else if let Some(stem) = text.strip_suffix(".*") {
            Self::Below(stem)
        } else {
            Self::Exact(text)
        }
    }

    /// Whether every segment `required` matches is also matched by `self` (set inclusion).
    fn covers(self, required: Segment<'_>) -> bool {
        match (self, required) {
            (Self::Any, _) => true,
            (Self::Below(stem), Segment::Exact(name)) => continues(name, stem),
            (Self::Below(stem), Segment::Below(name)) => name == stem || continues(name, stem),
            (Self::Below(_), Segment::Any) => false,
            (Self::Exact(name), Segment::Exact(other)) => name == other,
            (Self::Exact(_), _) => false,
        }
    }
}

/// Whether `name` is `stem` followed by `.` and at least one more part.
fn continues(name: &str, stem: &str) -> bool {
    name.strip_prefix(stem)
        .is_some_and(|rest| rest.len() > 1 && rest.starts_with('.'))
}

impl Scope {
    /// Parse a scope strictly; the error says what is wrong and where.
    pub fn parse(input: &str) -> Result<Self, ScopeError> {
        check(input)?;
        Ok(Self(input.into()))
    }

    /// The scope's text, exactly as parsed (there is one spelling per scope).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `:`-separated segments; the first is the resource family.
    pub fn segments(&self) -> impl Iterator<Item = &str> + '_ {
        self.0.split(':')
    }

    /// The resource family: the first segment (`refs`, `ops`, `eager`, `admin`, ...).
    pub fn resource(&self) -> &str {
        self.segments().next().unwrap_or_default()
    }

    /// Whether the scope contains no wildcard (what an operation declares it needs).
    pub fn is_concrete(&self) -> bool {
        !self.0.contains('*')
    }

    /// Whether holding `self` grants `required`.
    ///
    /// True when both have the same number of segments and each segment of `self` covers the
    /// segment of `required` at the same position: `*` covers any one whole segment, `name.*`
    /// covers any name that continues `name.` with one or more parts, and a plain name covers
    /// only itself. When `required` itself has wildcards, the answer is whether everything it
    /// matches is also matched by `self` (so granting is reflexive and transitive).
    pub fn grants(&self, required: &Scope) -> bool {
        if self.0 == required.0 {
            return true;
        }
        let mut granted = self.segments();
        let mut needed = required.segments();
        loop {
            match (granted.next(), needed.next()) {
                (None, None) => return true,
                (Some(g), Some(r)) => {
                    if !Segment::of(g).covers(Segment::of(r)) {
                        return false;
                    }
                }
                _ => return false,
            }
        }
    }
}

/// Check `input` against the grammar, reporting the first problem with its byte offset.
fn check(input: &str) -> Result<(), ScopeError> {
    if input.is_empty() {
        return Err(ScopeError::Empty { offset: 0 });
    }
    if input.len() > MAX_SCOPE_LEN {
        return Err(ScopeError::TooLong {
            offset: 0,
            len: input.len(),
            max: MAX_SCOPE_LEN,
        });
    }
    let mut start = 0;
    for (index, segment) in input.split(':').enumerate() {
        check_segment(segment, start, index == 0)?;
        start += segment.len() + 1;
    }
    Ok(())
}

fn check_segment(segment: &str, start: usize, resource: bool) -> Result<(), ScopeError> {
    if segment.is_empty() {
        return Err(ScopeError::EmptySegment { offset: start });
    }
    let (name, wildcard) = match segment {
        "*" => ("", true),
        _ => match segment.strip_suffix(".*") {
            Some(stem) => (stem, true),
            None => (segment, false),
        },
    };
    if wildcard && resource {
        return Err(ScopeError::BadResource { offset: start });
    }
    if segment == "*" {
        return Ok(());
    }
    let mut part_start = start;
    for part in name.split('.') {
        if part.is_empty() {
            return Err(ScopeError::EmptyPart { offset: part_start });
        }
        if resource && part_start != start {
            return Err(ScopeError::BadResource { offset: start });
        }
        for (i, ch) in part.char_indices() {
            match ch {
                'a'..='z' | '0'..='9' | '_' | '-' => {}
                '*' => {
                    return Err(ScopeError::MisplacedWildcard {
                        offset: part_start + i,
                    });
                }
                _ => {
                    return Err(ScopeError::InvalidChar {
                        ch,
                        offset: part_start + i,
                    });
                }
            }
        }
        part_start += part.len() + 1;
    }
    Ok(())
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Scope {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for Scope {
    type Error = ScopeError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl AsRef<str> for Scope {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The scopes a principal holds. Deny by default: an empty set allows nothing.
///
/// Kept sorted and free of duplicates, so two sets with the same scopes are equal and format
/// the same. The claim form ([`fmt::Display`], [`ScopeSet::parse`]) is the RFC 8693 `scope`
/// string: scopes separated by single spaces.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet(Vec<Scope>);

impl ScopeSet {
    /// The empty set, which allows nothing.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// Parse a space-separated `scope` claim. The empty string is the empty set; any other
    /// empty item (two spaces in a row, a leading or trailing space) is an error, as is any
    /// scope that does not follow the grammar. Error offsets are into `input`.
    pub fn parse(input: &str) -> Result<Self, ScopeError> {
        if input.is_empty() {
            return Ok(Self::new());
        }
        let mut scopes = Vec::new();
        let mut start = 0;
        for item in input.split(' ') {
            scopes.push(Scope::parse(item).map_err(|e| e.shifted(start))?);
            start += item.len() + 1;
        }
        Ok(scopes.into_iter().collect())
    }

    /// Add a scope (keeping the set sorted and free of duplicates).
    pub fn insert(&mut self, scope: Scope) {
        if let Err(at) = self.0.binary_search(&scope) {
            self.0.insert(at, scope);
        }
    }

    /// Whether some scope of the set grants `required`. Always false for the empty set.
    pub fn allows(&self, required: &Scope) -> bool {
        self.0.iter().any(|granted| granted.grants(required))
    }

    /// Whether every scope in `required` is allowed (true for an empty `required`).
    pub fn allows_all<'a>(&self, required: impl IntoIterator<Item = &'a Scope>) -> bool {
        required.into_iter().all(|r| self.allows(r))
    }

    /// The first scope of `required` that the set does not allow, if any.
    pub fn first_missing<'a>(
        &self,
        required: impl IntoIterator<Item = &'a Scope>,
    ) -> Option<&'a Scope> {
        required.into_iter().find(|r| !self.allows(r))
    }

    /// Whether every scope of `other` is granted by this set (what a principal may delegate).
    pub fn covers(&self, other: &ScopeSet) -> bool {
        self.allows_all(other.iter())
    }

    /// The scopes, sorted.
    pub fn iter(&self) -> std::slice::Iter<'_, Scope> {
        self.0.iter()
    }

    /// How many scopes the set holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set is empty (and so allows nothing).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut scopes: Vec<Scope> = iter.into_iter().collect();
        scopes.sort();
        scopes.dedup();
        Self(scopes)
    }
}

impl<'a> IntoIterator for &'a ScopeSet {
    type Item = &'a Scope;
    type IntoIter = std::slice::Iter<'a, Scope>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(scope.as_str())?;
        }
        Ok(())
    }
}

impl FromStr for ScopeSet {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scope(s: &str) -> Scope {
        Scope::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    /// (granted, required, expected). One line per case; the reason is in the comment when it
    /// is not obvious.
    const GRANTS: &[(&str, &str, bool)] = &[
        // Exact matches and plain mismatches.
        ("refs:site:read", "refs:site:read", true),
        ("refs:site:read", "refs:site:write", false),
        ("refs:site:write", "refs:site:read", false), // write does not imply read
        ("refs:site:read", "refs:sites:read", false),
        ("refs:site:read", "refs:site:read:extra", false), // segment counts differ
        ("refs:site:read:extra", "refs:site:read", false),
        ("refs:site:read", "ops:site:read", false),
        // `*` matches exactly one whole segment.
        ("refs:*:read", "refs:site:read", true),
        ("refs:*:read", "refs:feeder:read", true),
        ("refs:*:read", "refs:site:write", false),
        ("refs:*:read", "refs:site:read:x", false),
        ("refs:*:read", "refs:read", false),
        ("refs:site:*", "refs:site:read", true),
        ("refs:site:*", "refs:site:delete", true),
        ("refs:site:*", "refs:feeder:read", false),
        ("refs:*:*", "refs:site:read", true),
        ("refs:*:*", "refs:site", false),
        ("refs:*", "refs:site:read", false), // `*` is one segment, never a tail
        ("refs:*:read", "refs:*:read", true),
        ("refs:*:read", "refs:*:*", false),
        ("refs:site:read", "refs:*:read", false), // a concrete grant never covers a wildcard
        ("refs:*:*", "refs:*:read", true),
        // A final `.*` inside a segment: `name.` plus one or more parts.
        ("ops:refs.site.*", "ops:refs.site.create", true),
        ("ops:refs.site.*", "ops:refs.site.history.list", true),
        ("ops:refs.site.*", "ops:refs.sites.create", false), // part boundary, not a prefix
        ("ops:refs.site.*", "ops:refs.site", false),         // needs at least one more part
        ("ops:refs.site.*", "ops:refs.sitex", false),
        ("ops:refs.*", "ops:refs.site.*", true), // inclusion of wildcards
        ("ops:refs.site.*", "ops:refs.*", false),
        ("ops:refs.site.*", "ops:refs.site.*", true),
        ("ops:refs.site.*", "ops:*", false),
        ("ops:*", "ops:refs.site.create", true), // a dotted name is one segment
        ("ops:*", "ops:refs.site.*", true),
        ("ops:jobs.reindex.start", "ops:jobs.reindex.start", true),
        ("ops:jobs.reindex.start", "ops:jobs.reindex.stop", false),
        ("ops:jobs.*", "ops:jobs.reindex.start", true),
        ("ops:jobs.*", "jobs:reindex:start", false), // ops and jobs are separate families
        (
            "primitives:site.*:invoke",
            "primitives:site.routing.evaluate:invoke",
            true,
        ),
        (
            "primitives:site.*:invoke",
            "primitives:site.routing.evaluate:describe",
            false,
        ),
        ("jobs:reindex:*", "jobs:reindex:start", true),
        ("jobs:*:start", "jobs:reindex:start", true),
        ("orch:design_site:start", "orch:design_site:start", true),
        ("orch:design_site:start", "orch:design_site:cancel", false),
        // admin is explicit: no superuser, no implicit hierarchy.
        ("admin", "admin", true),
        ("admin", "admin:tokens", false),
        ("admin", "refs:site:read", false),
        ("admin", "metrics:read", false),
        ("admin:*", "admin:tokens", true),
        ("admin:*", "admin", false),
        ("admin:tokens", "admin", false),
        ("admin:tokens", "admin:keys", false),
        // metrics and EAGER.
        ("metrics:read", "metrics:read", true),
        ("metrics:*", "metrics:read", true),
        (
            "eager:subscribe:site_changes",
            "eager:subscribe:site_changes",
            true,
        ),
        (
            "eager:subscribe:site_changes",
            "eager:subscribe:feeder_changes",
            false,
        ),
        ("eager:subscribe:*", "eager:subscribe:site_changes", true),
        ("eager:subscribe:*", "eager:resolve:sites", false),
        ("eager:*:sites", "eager:resolve:sites", true),
        ("eager:resolve:sites", "eager:resolve:grid", false),
        // Names with `_` and `-` and digits are plain characters.
        ("refs:site_2:read", "refs:site-2:read", false),
        ("refs:a-b:read", "refs:a-b:read", true),
    ];

    #[test]
    fn grants_table() {
        assert!(GRANTS.len() >= 40);
        let mut failures = Vec::new();
        for &(granted, required, expected) in GRANTS {
            let got = scope(granted).grants(&scope(required));
            if got != expected {
                failures.push(format!("{granted} grants {required}: expected {expected}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// (input, expected error code or "ok", offset).
    const PARSE: &[(&str, &str, usize)] = &[
        ("refs:site:read", "ok", 0),
        ("admin", "ok", 0),
        ("ops:refs.site.*", "ok", 0),
        ("refs:*:read", "ok", 0),
        ("a-b:c_d:0", "ok", 0),
        ("", "empty_scope", 0),
        ("refs::read", "empty_segment", 5),
        (":refs", "empty_segment", 0),
        ("refs:", "empty_segment", 5),
        ("refs:Site:read", "invalid_char", 5),
        ("refs:site read", "invalid_char", 9),
        ("refs:sité", "invalid_char", 8),
        ("refs:si*:read", "misplaced_wildcard", 7),
        ("refs:*si:read", "misplaced_wildcard", 5),
        ("refs:**", "misplaced_wildcard", 5),
        ("ops:refs.*.create", "misplaced_wildcard", 9),
        ("ops:refs*", "misplaced_wildcard", 8),
        ("ops:.*", "empty_part", 4),
        ("ops:refs..site", "empty_part", 9),
        ("ops:.refs", "empty_part", 4),
        ("ops:refs.", "empty_part", 9),
        ("*:site:read", "bad_resource", 0),
        ("refs.*:site", "bad_resource", 0),
        ("refs.x:site", "bad_resource", 0),
    ];

    #[test]
    fn parse_table() {
        for &(input, code, offset) in PARSE {
            match Scope::parse(input) {
                Ok(s) => {
                    assert_eq!(code, "ok", "{input:?} parsed but should fail with {code}");
                    assert_eq!(s.as_str(), input);
                }
                Err(e) => {
                    assert_eq!((e.code(), e.offset()), (code, offset), "{input:?}: {e}");
                }
            }
        }
        let long = format!("refs:{}", "a".repeat(MAX_SCOPE_LEN));
        assert_eq!(
            Scope::parse(&long).map_err(|e| e.code()),
            Err("scope_too_long")
        );
    }

    #[test]
    fn sets_deny_by_default_and_parse_strictly() {
        let empty = ScopeSet::new();
        assert!(!empty.allows(&scope("admin")));
        assert!(!empty.allows(&scope("refs:site:read")));
        assert_eq!(ScopeSet::parse(""), Ok(ScopeSet::new()));

        let set = ScopeSet::parse("refs:site:read ops:refs.site.* refs:site:read").unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.to_string(), "ops:refs.site.* refs:site:read");
        assert!(set.allows(&scope("ops:refs.site.create")));
        assert!(!set.allows(&scope("refs:site:write")));
        let needed = [scope("refs:site:read"), scope("refs:site:write")];
        assert!(!set.allows_all(&needed));
        assert_eq!(set.first_missing(&needed), Some(&needed[1]));

        for (input, code, offset) in [
            ("a  b", "empty_scope", 2),
            (" a", "empty_scope", 0),
            ("a ", "empty_scope", 2),
            ("refs:site:read refs:Site:read", "invalid_char", 20),
        ] {
            let e = ScopeSet::parse(input).unwrap_err();
            assert_eq!((e.code(), e.offset()), (code, offset), "{input:?}");
        }
    }

    fn part() -> impl Strategy<Value = String> {
        "[a-z0-9_-]{1,6}"
    }

    fn name() -> impl Strategy<Value = String> {
        prop::collection::vec(part(), 1..4).prop_map(|p| p.join("."))
    }

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => name(),
            1 => Just("*".to_string()),
            1 => name().prop_map(|n| format!("{n}.*")),
        ]
    }

    fn valid_scope() -> impl Strategy<Value = String> {
        (part(), prop::collection::vec(segment(), 0..4)).prop_map(|(resource, rest)| {
            std::iter::once(resource)
                .chain(rest)
                .collect::<Vec<_>>()
                .join(":")
        })
    }

    /// Small alphabet so that related scopes (and so both answers of `grants`) are common.
    fn small_scope() -> impl Strategy<Value = Scope> {
        let seg = prop_oneof![
            Just("a"),
            Just("b"),
            Just("a.b"),
            Just("a.b.c"),
            Just("a.*"),
            Just("a.b.*"),
            Just("*"),
        ];
        (
            prop_oneof![Just("r"), Just("s")],
            prop::collection::vec(seg, 0..3),
        )
            .prop_map(|(resource, rest)| {
                let text = std::iter::once(resource)
                    .chain(rest)
                    .collect::<Vec<_>>()
                    .join(":");
                Scope::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
            })
    }

    proptest! {
        #[test]
        fn valid_scopes_round_trip(text in valid_scope()) {
            prop_assume!(text.len() <= MAX_SCOPE_LEN);
            let s = Scope::parse(&text).unwrap();
            prop_assert_eq!(s.to_string(), text.clone());
            let shown = s.to_string();
            prop_assert_eq!(Scope::parse(&shown).unwrap(), s.clone());
            prop_assert!(s.grants(&s));
        }

        #[test]
        fn any_string_parses_to_itself_or_fails_cleanly(text in ".{0,40}") {
            if let Ok(s) = Scope::parse(&text) {
                prop_assert_eq!(s.as_str(), text.as_str());
            }
        }

        #[test]
        fn scope_sets_round_trip(texts in prop::collection::vec(valid_scope(), 0..6)) {
            let set: ScopeSet = texts.iter().filter_map(|t| Scope::parse(t).ok()).collect();
            let again = ScopeSet::parse(&set.to_string()).unwrap();
            prop_assert_eq!(again, set);
        }

        #[test]
        fn grants_is_transitive(a in small_scope(), b in small_scope(), c in small_scope()) {
            if a.grants(&b) && b.grants(&c) {
                prop_assert!(a.grants(&c), "{a} grants {b} grants {c}");
            }
        }

        #[test]
        fn concrete_scopes_grant_only_themselves(a in small_scope(), b in small_scope()) {
            if a.is_concrete() && a.grants(&b) {
                prop_assert_eq!(a, b);
            }
        }
    }
}
