//! Contract packages: versioned sets of named JSON Schemas (DTO types) that bundles share.
//!
//! A contract package is a directory with a `contract.toml` (its name, semantic version and
//! types). Schemas name a type as `package@MAJOR/Type` (`"$ref": "grid-types@1/Rating"`);
//! a bundle that does must list the package in `[bundle] contracts`. Within one major
//! version a package only grows: [`compare`] says whether a new version is a compatible
//! successor of an old one (`bver contracts check OLD NEW`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

/// The file that makes a directory a contract package.
pub const CONTRACT_FILE: &str = "contract.toml";

/// A loaded contract package.
#[derive(Debug, Clone, PartialEq)]
pub struct ContractPackage {
    /// Package name (`grid-types`).
    pub name: String,
    /// Semantic version (`1.2.0`).
    pub version: String,
    /// What it is for.
    pub description: String,
    /// Its types, by name.
    pub types: BTreeMap<String, ContractType>,
    /// Its `contract.toml`.
    pub file: PathBuf,
}

impl ContractPackage {
    /// The major version.
    pub fn major(&self) -> u64 {
        major(&self.version)
    }
}

/// One named JSON Schema of a contract package.
#[derive(Debug, Clone, PartialEq)]
pub struct ContractType {
    /// Type name (`Rating`).
    pub name: String,
    /// What it describes.
    pub description: String,
    /// Its JSON Schema 2020-12, as written.
    pub schema: Value,
}

/// The major version of a semantic version (0 when it cannot be read).
pub fn major(version: &str) -> u64 {
    version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}

/// `(major, minor, patch)` of a semantic version, ignoring pre-release and build.
pub(crate) fn triple(version: &str) -> (u64, u64, u64) {
    let core = version.split(['-', '+']).next().unwrap_or("");
    let mut it = core.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
    )
}

/// Whether `name` is a contract type name: `[A-Z][A-Za-z0-9_]*`, at most 63 characters.
pub(crate) fn is_type_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('A'..='Z'))
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The rule for contract type names.
pub(crate) const TYPE_RULE: &str = "an uppercase letter, then letters, digits or `_` (for example `Rating`); at most 63 characters";

/// A contract type reference `package@MAJOR/Type`, split.
pub fn parse_type_ref(s: &str) -> Option<(&str, u64, &str)> {
    let (pkg, rest) = s.split_once('@')?;
    let (maj, ty) = rest.split_once('/')?;
    if !super::names::is_package_name(pkg)
        || maj.is_empty()
        || !maj.chars().all(|c| c.is_ascii_digit())
        || !is_type_name(ty)
    {
        return None;
    }
    Some((pkg, maj.parse().ok()?, ty))
}

/// The `$id` a contract type gets where it is used.
pub fn type_id(package: &str, major: u64, ty: &str) -> String {
    format!("urn:bver:contract:{package}@{major}:{ty}")
}

/// The `$defs` key of a contract type.
pub fn type_key(package: &str, major: u64, ty: &str) -> String {
    format!("contract:{package}@{major}/{ty}")
}

/// The outcome of comparing two versions of a package.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compatibility {
    /// Changes that break users of the old version, each explained.
    pub incompatible: Vec<String>,
    /// Additions (new types, new optional properties, new definitions).
    pub additions: Vec<String>,
}

impl Compatibility {
    /// Whether the new version may replace the old one.
    pub fn compatible(&self) -> bool {
        self.incompatible.is_empty()
    }
}

/// Keywords that document a schema without constraining values: changing them is harmless.
const ANNOTATIONS: [&str; 7] = [
    "description",
    "title",
    "examples",
    "$comment",
    "default",
    "deprecated",
    "readOnly",
];

/// Whether `new` is a compatible successor of `old`: the same package, a later version
/// with the same major version, and only additions (new types; in object schemas new
/// optional properties and new `$defs`; changed descriptions). Everything else (a type
/// removed, a property removed or made required, a constraint changed) is an
/// incompatibility, explained with the type and the JSON pointer of the change.
pub fn compare(old: &ContractPackage, new: &ContractPackage) -> Compatibility {
    let mut out = Compatibility::default();
    if old.name != new.name {
        out.incompatible.push(format!(
            "these are two packages: `{}` and `{}`",
            old.name, new.name
        ));
        return out;
    }
    if triple(&new.version) <= triple(&old.version) {
        out.incompatible.push(format!(
            "version {} is not later than {}",
            new.version, old.version
        ));
    }
    if new.major() != old.major() {
        out.incompatible.push(format!(
            "major version changed ({} -> {}): a new major version is incompatible by definition; \
             users must move to `{}@{}/...` explicitly",
            old.major(),
            new.major(),
            new.name,
            new.major()
        ));
    }
    for (name, t) in &old.types {
        match new.types.get(name) {
            None => out.incompatible.push(format!("type `{name}` was removed")),
            Some(n) => diff(name, "", &t.schema, &n.schema, &mut out),
        }
    }
    for name in new.types.keys().filter(|n| !old.types.contains_key(*n)) {
        out.additions.push(format!("type `{name}` was added"));
    }
    out
}

fn esc(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn diff(ty: &str, at: &str, old: &Value, new: &Value, out: &mut Compatibility) {
    let (Value::Object(o), Value::Object(n)) = (old, new) else {
        if old != new {
            out.incompatible.push(format!(
                "type `{ty}` at `{}`: changed from {old} to {new}",
                if at.is_empty() { "/" } else { at }
            ));
        }
        return;
    };
    let required = |m: &serde_json::Map<String, Value>| -> Vec<String> {
        m.get("required")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let (old_req, new_req) = (required(o), required(n));
    for r in new_req.iter().filter(|r| !old_req.contains(r)) {
        out.incompatible.push(format!(
            "type `{ty}` at `{at}/required`: property `{r}` became required"
        ));
    }
    for r in old_req.iter().filter(|r| !new_req.contains(r)) {
        out.incompatible.push(format!(
            "type `{ty}` at `{at}/required`: property `{r}` is no longer required (consumers \
             that rely on it break)"
        ));
    }
    for (key, ov) in o {
        if ANNOTATIONS.contains(&key.as_str()) || key == "required" {
            continue;
        }
        let path = format!("{at}/{}", esc(key));
        match n.get(key) {
            None => out
                .incompatible
                .push(format!("type `{ty}` at `{path}`: removed")),
            Some(nv) if matches!(key.as_str(), "properties" | "$defs" | "patternProperties") => {
                match (ov, nv) {
                    (Value::Object(om), Value::Object(nm)) => {
                        for (p, os) in om {
                            let sub = format!("{path}/{}", esc(p));
                            match nm.get(p) {
                                None => out
                                    .incompatible
                                    .push(format!("type `{ty}` at `{sub}`: removed")),
                                Some(ns) => diff(ty, &sub, os, ns, out),
                            }
                        }
                        for p in nm.keys().filter(|p| !om.contains_key(*p)) {
                            out.additions
                                .push(format!("type `{ty}`: `{path}/{}` added", esc(p)));
                        }
                    }
                    _ => diff(ty, &path, ov, nv, out),
                }
            }
            Some(nv) => diff(ty, &path, ov, nv, out),
        }
    }
    for key in n.keys().filter(|k| !o.contains_key(*k)) {
        if ANNOTATIONS.contains(&key.as_str()) || key == "required" {
            continue;
        }
        out.incompatible.push(format!(
            "type `{ty}` at `{at}/{}`: new constraint `{key}`",
            esc(key)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pkg(version: &str, types: &[(&str, Value)]) -> ContractPackage {
        ContractPackage {
            name: "grid-types".into(),
            version: version.into(),
            description: String::new(),
            types: types
                .iter()
                .map(|(n, s)| {
                    (
                        (*n).to_owned(),
                        ContractType {
                            name: (*n).to_owned(),
                            description: String::new(),
                            schema: s.clone(),
                        },
                    )
                })
                .collect(),
            file: PathBuf::new(),
        }
    }

    #[test]
    fn type_refs_parse() {
        assert_eq!(
            parse_type_ref("grid-types@1/Rating"),
            Some(("grid-types", 1, "Rating"))
        );
        for bad in [
            "grid-types/Rating",
            "grid-types@x/Rating",
            "g@1/rating",
            "G@1/R",
        ] {
            assert_eq!(parse_type_ref(bad), None, "{bad}");
        }
    }

    #[test]
    fn additions_are_compatible_and_the_rest_is_explained() {
        let v1 = pkg(
            "1.0.0",
            &[(
                "Rating",
                json!({"type": "object", "required": ["mva"], "properties": {"mva": {"type": "number"}}}),
            )],
        );
        let v11 = pkg(
            "1.1.0",
            &[
                (
                    "Rating",
                    json!({"type": "object", "required": ["mva"], "description": "x",
                           "properties": {"mva": {"type": "number"}, "kv": {"type": "number"}}}),
                ),
                ("Voltage", json!({"type": "number"})),
            ],
        );
        let c = compare(&v1, &v11);
        assert!(c.compatible(), "{c:?}");
        assert_eq!(c.additions.len(), 2, "{c:?}");
        let v12 = pkg(
            "1.2.0",
            &[(
                "Rating",
                json!({"type": "object", "required": ["mva", "kv"],
                       "properties": {"mva": {"type": "integer"}, "kv": {"type": "number"}}}),
            )],
        );
        let c = compare(&v11, &v12);
        assert!(!c.compatible());
        let text = c.incompatible.join("\n");
        assert!(text.contains("`kv` became required"), "{text}");
        assert!(text.contains("/properties/mva/type"), "{text}");
        assert!(text.contains("type `Voltage` was removed"), "{text}");
        assert!(!compare(&v11, &v1).compatible(), "a downgrade");
        let v2 = pkg("2.0.0", &[]);
        assert!(compare(&v1, &v2).incompatible[0].contains("major version"));
    }
}
