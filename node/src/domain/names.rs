//! The grammar of names in domain definitions: identifiers, kinds, versions, scopes, contracts.
//!
//! | Name | Rule |
//! |---|---|
//! | repo, namespace, trigger | `[a-z][a-z0-9_]*`, at most 63 characters |
//! | bundle, figment, contract package | `[a-z][a-z0-9_-]*`, at most 63 characters |
//! | kind | dot-separated repo-style identifiers (`power.substation`), at most 127 characters |
//! | version | semantic versioning 2.0 (`1.4.0`, `2.0.0-rc.1`) |
//! | scope | `:`-separated segments of `[a-z0-9_.*-]` (`refs:site:read`) |

/// The rule for repo, namespace and trigger names.
pub(crate) const IDENT_RULE: &str =
    "a lowercase letter, then lowercase letters, digits or `_`; at most 63 characters";
/// The rule for bundle, figment and contract package names.
pub(crate) const PACKAGE_RULE: &str =
    "a lowercase letter, then lowercase letters, digits, `_` or `-`; at most 63 characters";
/// The rule for kind names.
pub(crate) const KIND_RULE: &str = "dot-separated segments, each a lowercase letter then \
     lowercase letters, digits or `_` (for example `power.substation`); at most 127 characters";

/// Whether `s` is a repo, namespace or trigger name.
pub(crate) fn is_ident(s: &str) -> bool {
    is_word(s, 63, false)
}

/// Whether `s` is a bundle, figment or contract package name.
pub(crate) fn is_package_name(s: &str) -> bool {
    is_word(s, 63, true)
}

/// Whether `s` is a kind name (`power.substation`).
pub(crate) fn is_kind(s: &str) -> bool {
    s.len() <= 127 && s.split('.').all(|seg| is_word(seg, 127, false))
}

fn is_word(s: &str, max: usize, dash: bool) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && s.len() <= max
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_') || (dash && c == '-'))
}

/// Whether `s` is a scope: `:`-separated non-empty segments of `[a-z0-9_.*-]`.
pub(crate) fn is_scope(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.split(':').all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '.' | '*' | '-'))
        })
}

/// Check a semantic version (2.0.0); the error says what is wrong.
pub(crate) fn check_semver(v: &str) -> Result<(), String> {
    let (rest, build) = match v.split_once('+') {
        Some((r, b)) => (r, Some(b)),
        None => (v, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() != 3 {
        return Err("expected MAJOR.MINOR.PATCH".into());
    }
    for p in parts {
        if !is_numeric_id(p) {
            return Err(format!("`{p}` is not a number without leading zeros"));
        }
    }
    if let Some(pre) = pre {
        for id in pre.split('.') {
            if !is_alnum_id(id) || (id.chars().all(|c| c.is_ascii_digit()) && !is_numeric_id(id)) {
                return Err(format!("bad pre-release identifier `{id}`"));
            }
        }
    }
    if let Some(build) = build {
        for id in build.split('.') {
            if !is_alnum_id(id) {
                return Err(format!("bad build identifier `{id}`"));
            }
        }
    }
    Ok(())
}

fn is_numeric_id(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
}

fn is_alnum_id(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Split and check a contract package use, `name@version`.
pub(crate) fn parse_contract(s: &str) -> Result<(&str, &str), String> {
    let Some((name, version)) = s.split_once('@') else {
        return Err("missing `@version`".into());
    };
    if !is_package_name(name) {
        return Err(format!("package name: {PACKAGE_RULE}"));
    }
    check_semver(version).map_err(|e| format!("version `{version}`: {e}"))?;
    Ok((name, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        for ok in ["site", "a", "site_2", "x".repeat(63).as_str()] {
            assert!(is_ident(ok), "{ok}");
        }
        for bad in [
            "",
            "Site",
            "2site",
            "_x",
            "si-te",
            "si te",
            "x".repeat(64).as_str(),
        ] {
            assert!(!is_ident(bad), "{bad}");
        }
        assert!(is_package_name("grid-types"));
        assert!(!is_package_name("-grid"));
    }

    #[test]
    fn kinds() {
        assert!(is_kind("power"));
        assert!(is_kind("power.substation"));
        assert!(is_kind("a.b_2.c"));
        for bad in [
            "", ".power", "power.", "power..x", "Power.x", "power.2x", "power-x",
        ] {
            assert!(!is_kind(bad), "{bad}");
        }
    }

    #[test]
    fn scopes() {
        assert!(is_scope("refs:site:read"));
        assert!(is_scope("refs:*:read"));
        assert!(is_scope("ops:jobs.reindex.start"));
        for bad in ["", "refs::read", "refs:Site:read", "refs:site read", ":a"] {
            assert!(!is_scope(bad), "{bad}");
        }
    }

    #[test]
    fn semver() {
        for ok in [
            "0.0.0",
            "1.4.0",
            "10.20.30",
            "1.0.0-rc.1",
            "1.0.0-alpha+build.5",
            "1.0.0+x",
        ] {
            assert_eq!(check_semver(ok), Ok(()), "{ok}");
        }
        for bad in [
            "1", "1.0", "01.0.0", "1.0.0-", "1.0.0-01", "1.0.0+", "v1.0.0", "1.0.0.0",
        ] {
            assert!(check_semver(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn contracts() {
        assert_eq!(
            parse_contract("grid-types@1.2.0"),
            Ok(("grid-types", "1.2.0"))
        );
        assert!(parse_contract("grid-types").is_err());
        assert!(parse_contract("Grid@1.0.0").is_err());
        assert!(parse_contract("grid@1").is_err());
    }
}
