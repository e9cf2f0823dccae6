//! Reading definitions: finding bundle and figment directories, parsing their TOML with
//! spans, reading and checking each schema fragment, and producing the raw definitions that
//! [`compile`](super::compile) checks against each other.
//!
//! Everything that can be checked inside one file is checked here (syntax, unknown fields,
//! types, each schema on its own); every problem is collected, none stops the walk. Each
//! section (`[bundle]`, each `[refs.X]`, each kind, trigger and figment) is deserialized on
//! its own, so one typo does not hide the errors of the sections after it.

use std::collections::HashSet;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue, ValueDeserializer};

use super::error::{DefinitionError, DefinitionErrorKind as K, Location};
use super::expr::{CONDITION_VARIABLES, CelFault, Expression};
use super::schema;

/// The file that makes a directory a bundle.
pub const BUNDLE_FILE: &str = "bundle.toml";
/// The file that makes a directory a figment.
pub const FIGMENT_FILE: &str = "figment.toml";
use super::contract::CONTRACT_FILE;
/// How deep below a given directory bundles and figments are looked for.
const MAX_DEPTH: usize = 8;

/// A value and where it was written.
#[derive(Debug, Clone)]
pub(crate) struct Located<T> {
    pub(crate) value: T,
    pub(crate) loc: Location,
}

/// A schema fragment, already checked on its own.
#[derive(Debug, Clone)]
pub(crate) struct RawSchema {
    /// The fragment as JSON.
    pub(crate) value: Value,
    /// Where `schema = ...` is written.
    pub(crate) loc: Location,
    /// For a schema in its own JSON file: the file and its text, to locate faults in it.
    pub(crate) json_file: Option<(PathBuf, String)>,
    /// For an inline schema: where each `$ref` to outside it is written.
    pub(crate) ref_locs: Vec<(String, Location)>,
}

impl RawSchema {
    /// Where the value at `pointer` (a JSON pointer into the schema) is written: in the
    /// JSON file, or where the inline schema starts.
    pub(crate) fn loc_at(&self, pointer: &str) -> Location {
        match &self.json_file {
            Some((path, text)) => {
                offset_to_location(path, text, schema::json_offset_at(text, pointer))
            }
            None => self
                .ref_locs
                .iter()
                .find(|(p, _)| p == pointer)
                .map_or_else(|| self.loc.clone(), |(_, l)| l.clone()),
        }
    }
}

/// `[types.NAME]` of a `contract.toml`.
#[derive(Debug, Clone)]
pub(crate) struct RawContractType {
    pub(crate) name: Located<String>,
    pub(crate) description: Option<String>,
    pub(crate) schema: Option<RawSchema>,
}

/// One `contract.toml`: a contract package.
#[derive(Debug, Clone)]
pub(crate) struct RawContract {
    pub(crate) name: Located<String>,
    pub(crate) version: Located<String>,
    pub(crate) description: Option<String>,
    pub(crate) types: Vec<RawContractType>,
    pub(crate) file: PathBuf,
}

/// `[bundle]` of a `bundle.toml`.
#[derive(Debug)]
pub(crate) struct RawHeader {
    pub(crate) name: Located<String>,
    pub(crate) version: Located<String>,
    pub(crate) role: Located<String>,
    pub(crate) description: Option<String>,
    pub(crate) namespaces: Vec<Located<String>>,
    pub(crate) resolves: Vec<Located<String>>,
    pub(crate) contracts: Vec<Located<String>>,
}

/// One `bundle.toml`.
#[derive(Debug)]
pub(crate) struct RawBundle {
    /// The bundle directory.
    pub(crate) dir: PathBuf,
    /// Its `bundle.toml`.
    pub(crate) file: PathBuf,
    /// `[bundle]`, absent when it could not be read (the errors are already reported).
    pub(crate) header: Option<RawHeader>,
    pub(crate) refs: Vec<RawRefType>,
    /// Inline figments (`[figments.NAME]`), private to this bundle.
    pub(crate) figments: Vec<RawFigment>,
    /// EAGER channels it publishes (`[channels.NAME]`).
    pub(crate) channels: Vec<RawChannel>,
}

/// `[channels.NAME]`: an EAGER channel the platform publishes.
#[derive(Debug, Clone)]
pub(crate) struct RawChannel {
    pub(crate) name: Located<String>,
    pub(crate) description: Option<String>,
    /// Full trigger names (`refs.site.changed`).
    pub(crate) triggers: Vec<Located<String>>,
    /// Repos whose every built-in event flows in.
    pub(crate) repos: Vec<Located<String>>,
    /// The scope a subscriber's grant needs (default `eager:subscribe:NAME`).
    pub(crate) scope: Option<Located<String>>,
    /// The payload contract, `package@major/Type`.
    pub(crate) contract: Option<Located<String>>,
}

/// `[refs.REPO]`.
#[derive(Debug)]
pub(crate) struct RawRefType {
    pub(crate) repo: Located<String>,
    pub(crate) namespace: Option<Located<String>>,
    pub(crate) description: Option<String>,
    pub(crate) schema: Option<RawSchema>,
    pub(crate) figments: Vec<Located<String>>,
    pub(crate) closed: bool,
    pub(crate) policy: RawPolicy,
    pub(crate) kinds: Vec<RawKind>,
    pub(crate) triggers: Vec<RawTrigger>,
    pub(crate) rules: Vec<RawRule>,
}

/// `[refs.REPO.policy]`: the scopes each action needs (absent = the default scope).
#[derive(Debug, Default)]
pub(crate) struct RawPolicy {
    pub(crate) read: Option<Vec<Located<String>>>,
    pub(crate) create: Option<Vec<Located<String>>>,
    pub(crate) update: Option<Vec<Located<String>>>,
    pub(crate) delete: Option<Vec<Located<String>>>,
}

/// `[refs.REPO.kinds."KIND"]`.
#[derive(Debug)]
pub(crate) struct RawKind {
    pub(crate) name: Located<String>,
    pub(crate) parent: Option<Located<String>>,
    pub(crate) description: Option<String>,
    pub(crate) schema: Option<RawSchema>,
    pub(crate) figments: Vec<Located<String>>,
    pub(crate) rules: Vec<RawRule>,
}

/// `[...triggers.NAME]`.
#[derive(Debug, Clone)]
pub(crate) struct RawTrigger {
    pub(crate) name: Located<String>,
    pub(crate) description: Option<String>,
    /// Absent: every built-in event.
    pub(crate) on: Option<Vec<Located<String>>>,
    /// The compiled `when` condition (a fault in it is already reported).
    pub(crate) when: Option<Expression>,
}

/// `[...rules.NAME]`: a CEL validation rule, compiled.
#[derive(Debug, Clone)]
pub(crate) struct RawRule {
    pub(crate) name: Located<String>,
    pub(crate) expr: Expression,
    pub(crate) message: Option<String>,
    pub(crate) fields: Vec<Located<String>>,
}

/// `[figment.operations.NAME]`: an operation every including reference type gains.
#[derive(Debug, Clone)]
pub(crate) struct RawFigmentOp {
    pub(crate) name: Located<String>,
    pub(crate) description: Option<String>,
    pub(crate) handler: Located<String>,
    pub(crate) mutation: bool,
    pub(crate) scopes: Option<Vec<Located<String>>>,
    pub(crate) input: Option<RawSchema>,
    pub(crate) output: Option<RawSchema>,
}

/// A figment: `[figment]` of a `figment.toml`, or `[figments.NAME]` inline in a bundle.
#[derive(Debug, Clone)]
pub(crate) struct RawFigment {
    pub(crate) name: Located<String>,
    pub(crate) version: Option<Located<String>>,
    pub(crate) description: Option<String>,
    pub(crate) schema: Option<RawSchema>,
    pub(crate) figments: Vec<Located<String>>,
    pub(crate) triggers: Vec<RawTrigger>,
    pub(crate) rules: Vec<RawRule>,
    pub(crate) operations: Vec<RawFigmentOp>,
    /// The file that defines it.
    pub(crate) file: PathBuf,
}

/// Everything read from the given directories.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub(crate) bundles: Vec<RawBundle>,
    /// Standalone figments (their own directory), shared by every bundle.
    pub(crate) figments: Vec<RawFigment>,
    /// Contract packages.
    pub(crate) contracts: Vec<RawContract>,
    /// How many `bundle.toml` files could not be read or parsed at all (their errors are
    /// reported); one of them may be the core bundle.
    pub(crate) unreadable_bundles: usize,
}

// ---------------------------------------------------------------------------------------
// The TOML shapes, one per section. Sub-tables (`schema`, `kinds`, `triggers`, `policy`) are
// taken out before deserializing a section, and handled on their own.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderDef {
    name: Spanned<String>,
    version: Spanned<String>,
    role: Spanned<String>,
    description: Option<String>,
    #[serde(default)]
    namespaces: Vec<Spanned<String>>,
    #[serde(default)]
    resolves: Vec<Spanned<String>>,
    #[serde(default)]
    contracts: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelDef {
    description: Option<String>,
    #[serde(default)]
    triggers: Vec<Spanned<String>>,
    #[serde(default)]
    repos: Vec<Spanned<String>>,
    scope: Option<Spanned<String>>,
    contract: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefDef {
    namespace: Option<Spanned<String>>,
    description: Option<String>,
    #[serde(default)]
    figments: Vec<Spanned<String>>,
    #[serde(default)]
    closed: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyDef {
    read: Option<Vec<Spanned<String>>>,
    create: Option<Vec<Spanned<String>>>,
    update: Option<Vec<Spanned<String>>>,
    delete: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KindDef {
    parent: Option<Spanned<String>>,
    description: Option<String>,
    #[serde(default)]
    figments: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerDef {
    description: Option<String>,
    on: Option<Vec<Spanned<String>>>,
    when: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContractDef {
    name: Spanned<String>,
    version: Spanned<String>,
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContractTypeDef {
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    expr: Spanned<String>,
    message: Option<String>,
    #[serde(default)]
    fields: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FigmentOpDef {
    description: Option<String>,
    handler: Spanned<String>,
    #[serde(default)]
    mutation: bool,
    scopes: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FigmentDef {
    name: Option<Spanned<String>>,
    version: Option<Spanned<String>>,
    description: Option<String>,
    #[serde(default)]
    figments: Vec<Spanned<String>>,
}

/// Read every bundle and figment under `dirs`. Problems go to `errors`; what could be read
/// is returned either way.
pub(crate) fn load_dirs(dirs: &[PathBuf], errors: &mut Vec<DefinitionError>) -> Loaded {
    let mut loaded = Loaded::default();
    let mut seen = HashSet::new();
    for dir in dirs {
        let mut found = Vec::new();
        discover(dir, 0, &mut found, errors);
        if found.is_empty() && dir.exists() {
            errors.push(DefinitionError::at(
                Location::file_start(dir),
                K::NothingToLoad { dir: dir.clone() },
            ));
        }
        for file in found {
            // The same file reached twice (overlapping arguments) is read once.
            let key = fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
            if !seen.insert(key) {
                continue;
            }
            let is_bundle = file.file_name().is_some_and(|n| n == BUNDLE_FILE);
            let text = match fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(io_error(&file, &e));
                    loaded.unreadable_bundles += usize::from(is_bundle);
                    continue;
                }
            };
            let src = Source {
                path: &file,
                text: &text,
            };
            if is_bundle {
                match read_bundle(&src, errors) {
                    Some(b) => loaded.bundles.push(b),
                    None => loaded.unreadable_bundles += 1,
                }
            } else if file.file_name().is_some_and(|n| n == CONTRACT_FILE) {
                if let Some(c) = read_contract_file(&src, errors) {
                    loaded.contracts.push(c);
                }
            } else if let Some(f) = read_figment_file(&src, errors) {
                loaded.figments.push(f);
            }
        }
    }
    loaded
}

/// Find `bundle.toml` and `figment.toml` files: `path` itself (a file or a bundle/figment
/// directory) or, for any other directory, its subdirectories in name order.
fn discover(
    path: &Path,
    depth: usize,
    found: &mut Vec<PathBuf>,
    errors: &mut Vec<DefinitionError>,
) {
    if path.is_file() {
        if path
            .file_name()
            .is_some_and(|n| n == BUNDLE_FILE || n == FIGMENT_FILE || n == CONTRACT_FILE)
        {
            found.push(path.to_path_buf());
        } else if depth == 0 {
            errors.push(DefinitionError::at(
                Location::file_start(path),
                K::NothingToLoad {
                    dir: path.to_path_buf(),
                },
            ));
        }
        return;
    }
    let bundle = path.join(BUNDLE_FILE);
    let figment = path.join(FIGMENT_FILE);
    let contract = path.join(CONTRACT_FILE);
    if bundle.is_file() || figment.is_file() || contract.is_file() {
        found.extend(
            [bundle, figment, contract]
                .into_iter()
                .filter(|p| p.is_file()),
        );
        return;
    }
    if depth >= MAX_DEPTH {
        return;
    }
    let entries = match fs::read_dir(path) {
        Ok(e) => e,
        Err(e) => {
            if depth == 0 {
                errors.push(io_error(path, &e));
            }
            return;
        }
    };
    let mut subdirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    subdirs.sort();
    for sub in subdirs {
        discover(&sub, depth + 1, found, errors);
    }
}

fn io_error(path: &Path, e: &std::io::Error) -> DefinitionError {
    DefinitionError::at(
        Location::file_start(path),
        K::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
    )
}

/// A file's path and text, to turn byte offsets into locations.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn loc(&self, offset: usize) -> Location {
        offset_to_location(self.path, self.text, offset)
    }

    fn loc_of<T>(&self, s: &Spanned<T>) -> Location {
        self.loc(s.span().start)
    }

    fn located(&self, s: Spanned<String>) -> Located<String> {
        Located {
            loc: self.loc_of(&s),
            value: s.into_inner(),
        }
    }

    fn located_all(&self, v: Vec<Spanned<String>>) -> Vec<Located<String>> {
        v.into_iter().map(|s| self.located(s)).collect()
    }

    fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }
}

/// The 1-based line and character column of `offset` in `text`.
pub(crate) fn offset_to_location(path: &Path, text: &str, offset: usize) -> Location {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    Location {
        file: path.to_path_buf(),
        line: u32::try_from(line).unwrap_or(u32::MAX),
        column: u32::try_from(column).unwrap_or(u32::MAX),
    }
}

/// Parse a whole file; syntax errors are all reported and the file is skipped.
fn parse<'i>(src: &Source<'i>, errors: &mut Vec<DefinitionError>) -> Option<Spanned<DeTable<'i>>> {
    let (doc, syntax) = DeTable::parse_recoverable(src.text);
    if syntax.is_empty() {
        return Some(doc);
    }
    for e in syntax {
        let at = e.span().map_or(0, |s| s.start);
        errors.push(DefinitionError::at(
            src.loc(at),
            K::Syntax {
                message: e.message().trim().to_owned(),
            },
        ));
    }
    None
}

/// Deserialize one section. `taken` are sub-tables removed beforehand, listed among the
/// allowed fields of an unknown-field error.
fn de_section<T: DeserializeOwned>(
    src: &Source<'_>,
    value: Spanned<DeValue<'_>>,
    name: &str,
    taken: &[&str],
    errors: &mut Vec<DefinitionError>,
) -> Option<T> {
    let span = value.span();
    match T::deserialize(ValueDeserializer::from(value)) {
        Ok(v) => Some(v),
        Err(e) => {
            let at = e.span().unwrap_or(span).start;
            errors.push(DefinitionError::at(
                src.loc(at),
                serde_error_kind(e.message(), name, taken),
            ));
            None
        }
    }
}

/// Classify a serde message: unknown fields get their name and the allowed names.
fn serde_error_kind(message: &str, section: &str, taken: &[&str]) -> K {
    if message.starts_with("unknown field") {
        let quoted: Vec<String> = message
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        if let Some((field, rest)) = quoted.split_first() {
            let mut expected: Vec<String> = rest.to_vec();
            expected.extend(taken.iter().map(|s| (*s).to_owned()));
            expected.sort();
            return K::UnknownField {
                field: field.clone(),
                section: section.to_owned(),
                expected,
            };
        }
    }
    K::InvalidValue {
        section: section.to_owned(),
        message: message.trim().to_owned(),
    }
}

/// Report top-level keys other than `allowed`.
fn check_keys(
    src: &Source<'_>,
    table: &DeTable<'_>,
    section: &str,
    allowed: &[&str],
    errors: &mut Vec<DefinitionError>,
) {
    for key in table.keys() {
        if !allowed.contains(&key.get_ref().as_ref()) {
            errors.push(DefinitionError::at(
                src.loc_of(key),
                K::UnknownField {
                    field: key.get_ref().to_string(),
                    section: section.to_owned(),
                    expected: allowed.iter().map(|s| (*s).to_owned()).collect(),
                },
            ));
        }
    }
}

/// A table value, or an error saying it must be one.
fn as_table<'i>(
    src: &Source<'_>,
    value: Spanned<DeValue<'i>>,
    section: &str,
    errors: &mut Vec<DefinitionError>,
) -> Option<(Range<usize>, DeTable<'i>)> {
    let span = value.span();
    match value.into_inner() {
        DeValue::Table(t) => Some((span, t)),
        other => {
            errors.push(DefinitionError::at(
                src.loc(span.start),
                K::InvalidValue {
                    section: section.to_owned(),
                    message: format!("expected a table, found {}", other.type_str()),
                },
            ));
            None
        }
    }
}

/// The entries of a table of tables (`[refs.X]`, `[figments.X]`, `kinds`, `triggers`).
fn entries<'i>(
    src: &Source<'_>,
    value: Spanned<DeValue<'i>>,
    section: &str,
    errors: &mut Vec<DefinitionError>,
) -> Vec<(Spanned<DeString<'i>>, Spanned<DeValue<'i>>)> {
    as_table(src, value, section, errors)
        .map(|(_, t)| t.into_iter().collect())
        .unwrap_or_default()
}

fn key_located(src: &Source<'_>, key: &Spanned<DeString<'_>>) -> Located<String> {
    Located {
        value: key.get_ref().to_string(),
        loc: src.loc_of(key),
    }
}

fn read_bundle(src: &Source<'_>, errors: &mut Vec<DefinitionError>) -> Option<RawBundle> {
    let doc = parse(src, errors)?;
    let doc_span = doc.span();
    let mut top = doc.into_inner();
    check_keys(
        src,
        &top,
        "bundle.toml",
        &["bundle", "channels", "figments", "refs"],
        errors,
    );
    let header = match top.remove("bundle") {
        Some(v) => de_section::<HeaderDef>(src, v, "[bundle]", &[], errors).map(|h| RawHeader {
            name: src.located(h.name),
            version: src.located(h.version),
            role: src.located(h.role),
            description: h.description,
            namespaces: src.located_all(h.namespaces),
            resolves: src.located_all(h.resolves),
            contracts: src.located_all(h.contracts),
        }),
        None => {
            errors.push(DefinitionError::at(
                src.loc(doc_span.start),
                K::InvalidValue {
                    section: "bundle.toml".into(),
                    message: "missing the `[bundle]` table (name, version, role)".into(),
                },
            ));
            None
        }
    };
    let mut refs = Vec::new();
    if let Some(v) = top.remove("refs") {
        for (key, value) in entries(src, v, "[refs]", errors) {
            if let Some(r) = read_ref(src, &key, value, errors) {
                refs.push(r);
            }
        }
    }
    let mut figments = Vec::new();
    if let Some(v) = top.remove("figments") {
        for (key, value) in entries(src, v, "[figments]", errors) {
            let name = key_located(src, &key);
            let section = format!("[figments.{}]", name.value);
            if let Some(f) = read_figment(src, Some(name), value, &section, errors) {
                figments.push(f);
            }
        }
    }
    let mut channels = Vec::new();
    if let Some(v) = top.remove("channels") {
        for (key, value) in entries(src, v, "[channels]", errors) {
            let name = key_located(src, &key);
            let section = format!("[channels.{}]", name.value);
            if let Some(c) = de_section::<ChannelDef>(src, value, &section, &[], errors) {
                channels.push(RawChannel {
                    name,
                    description: c.description,
                    triggers: src.located_all(c.triggers),
                    repos: src.located_all(c.repos),
                    scope: c.scope.map(|s| src.located(s)),
                    contract: c.contract.map(|s| src.located(s)),
                });
            }
        }
    }
    Some(RawBundle {
        dir: src.dir().to_path_buf(),
        file: src.path.to_path_buf(),
        header,
        refs,
        figments,
        channels,
    })
}

fn read_ref(
    src: &Source<'_>,
    key: &Spanned<DeString<'_>>,
    value: Spanned<DeValue<'_>>,
    errors: &mut Vec<DefinitionError>,
) -> Option<RawRefType> {
    let repo = key_located(src, key);
    let section = format!("[refs.{}]", repo.value);
    let (span, mut table) = as_table(src, value, &section, errors)?;
    let owner = format!("refs.{}", repo.value);
    let schema = table
        .remove("schema")
        .and_then(|v| read_schema(src, v, &owner, errors));
    let mut kinds = Vec::new();
    if let Some(v) = table.remove("kinds") {
        for (k, v) in entries(src, v, &format!("{section} kinds"), errors) {
            kinds.extend(read_kind(src, &repo.value, &k, v, errors));
        }
    }
    let triggers = table
        .remove("triggers")
        .map(|v| read_triggers(src, v, &section, errors))
        .unwrap_or_default();
    let rules = table
        .remove("rules")
        .map(|v| read_rules(src, v, &section, errors))
        .unwrap_or_default();
    let policy = match table.remove("policy") {
        Some(v) => {
            let name = format!("[refs.{}.policy]", repo.value);
            match de_section::<PolicyDef>(src, v, &name, &[], errors) {
                Some(p) => RawPolicy {
                    read: p.read.map(|v| src.located_all(v)),
                    create: p.create.map(|v| src.located_all(v)),
                    update: p.update.map(|v| src.located_all(v)),
                    delete: p.delete.map(|v| src.located_all(v)),
                },
                None => RawPolicy::default(),
            }
        }
        None => RawPolicy::default(),
    };
    let rest = Spanned::new(span, DeValue::Table(table));
    let taken = ["kinds", "policy", "rules", "schema", "triggers"];
    let def: RefDef = de_section(src, rest, &section, &taken, errors)?;
    Some(RawRefType {
        repo,
        namespace: def.namespace.map(|n| src.located(n)),
        description: def.description,
        schema,
        figments: src.located_all(def.figments),
        closed: def.closed,
        policy,
        kinds,
        triggers,
        rules,
    })
}

fn read_kind(
    src: &Source<'_>,
    repo: &str,
    key: &Spanned<DeString<'_>>,
    value: Spanned<DeValue<'_>>,
    errors: &mut Vec<DefinitionError>,
) -> Option<RawKind> {
    let name = key_located(src, key);
    let section = format!("[refs.{repo}.kinds.\"{}\"]", name.value);
    let (span, mut table) = as_table(src, value, &section, errors)?;
    let owner = format!("kind `{}` of refs.{repo}", name.value);
    let schema = table
        .remove("schema")
        .and_then(|v| read_schema(src, v, &owner, errors));
    let rules = table
        .remove("rules")
        .map(|v| read_rules(src, v, &section, errors))
        .unwrap_or_default();
    let rest = Spanned::new(span, DeValue::Table(table));
    let def: KindDef = de_section(src, rest, &section, &["rules", "schema"], errors)?;
    Some(RawKind {
        name,
        parent: def.parent.map(|p| src.located(p)),
        description: def.description,
        schema,
        figments: src.located_all(def.figments),
        rules,
    })
}

fn read_triggers(
    src: &Source<'_>,
    value: Spanned<DeValue<'_>>,
    owner_section: &str,
    errors: &mut Vec<DefinitionError>,
) -> Vec<RawTrigger> {
    let mut out = Vec::new();
    let section_name = format!("{owner_section} triggers");
    for (key, value) in entries(src, value, &section_name, errors) {
        let name = key_located(src, &key);
        let section_name = format!("trigger `{}` of {owner_section}", name.value);
        if let Some(def) = de_section::<TriggerDef>(src, value, &section_name, &[], errors) {
            let when = def.when.and_then(|w| {
                let owner = format!("condition of trigger `{}`", name.value);
                compile_expr(src, &w, &owner, Some(&CONDITION_VARIABLES), errors)
            });
            out.push(RawTrigger {
                name,
                description: def.description,
                on: def.on.map(|on| src.located_all(on)),
                when,
            });
        }
    }
    out
}

fn read_rules(
    src: &Source<'_>,
    value: Spanned<DeValue<'_>>,
    owner_section: &str,
    errors: &mut Vec<DefinitionError>,
) -> Vec<RawRule> {
    let mut out = Vec::new();
    for (key, value) in entries(src, value, &format!("{owner_section} rules"), errors) {
        let name = key_located(src, &key);
        let section_name = format!("rule `{}` of {owner_section}", name.value);
        let Some(def) = de_section::<RuleDef>(src, value, &section_name, &[], errors) else {
            continue;
        };
        let owner = format!("rule `{}`", name.value);
        if let Some(expr) = compile_expr(src, &def.expr, &owner, None, errors) {
            out.push(RawRule {
                name,
                expr,
                message: def.message,
                fields: src.located_all(def.fields),
            });
        }
    }
    out
}

fn read_figment_ops(
    src: &Source<'_>,
    value: Spanned<DeValue<'_>>,
    owner_section: &str,
    errors: &mut Vec<DefinitionError>,
) -> Vec<RawFigmentOp> {
    let mut out = Vec::new();
    for (key, value) in entries(src, value, &format!("{owner_section} operations"), errors) {
        let name = key_located(src, &key);
        let section_name = format!("operation `{}` of {owner_section}", name.value);
        let Some((span, mut table)) = as_table(src, value, &section_name, errors) else {
            continue;
        };
        let owner = format!("operation `{}`", name.value);
        let input = table
            .remove("input")
            .and_then(|v| read_op_schema(src, v, &format!("input of {owner}"), errors));
        let output = table
            .remove("output")
            .and_then(|v| read_op_schema(src, v, &format!("output of {owner}"), errors));
        let rest = Spanned::new(span, DeValue::Table(table));
        let taken = ["input", "output"];
        let Some(def) = de_section::<FigmentOpDef>(src, rest, &section_name, &taken, errors) else {
            continue;
        };
        out.push(RawFigmentOp {
            name,
            description: def.description,
            handler: src.located(def.handler),
            mutation: def.mutation,
            scopes: def.scopes.map(|s| src.located_all(s)),
            input,
            output,
        });
    }
    out
}

/// Compile a CEL expression written at `expr`; a fault is reported at its position inside
/// the TOML string when the string can be mapped back to the file (no escapes), else at the
/// string.
fn compile_expr(
    src: &Source<'_>,
    expr: &Spanned<String>,
    owner: &str,
    variables: Option<&[&str]>,
    errors: &mut Vec<DefinitionError>,
) -> Option<Expression> {
    match Expression::compile(expr.get_ref(), variables) {
        Ok(e) => Some(e),
        Err(fault) => {
            errors.push(DefinitionError::at(
                expr_location(src, expr, &fault),
                K::BadExpression {
                    owner: owner.to_owned(),
                    expr: expr.get_ref().clone(),
                    line: fault.line,
                    column: fault.column,
                    message: fault.message,
                    condition: variables.is_some(),
                },
            ));
            None
        }
    }
}

/// Where in the file line `fault.line`, column `fault.column` of the expression is.
fn expr_location(src: &Source<'_>, expr: &Spanned<String>, fault: &CelFault) -> Location {
    let span = expr.span();
    let raw = src.text.get(span.clone()).unwrap_or("");
    let content_start = ["\"\"\"", "'''", "\"", "'"]
        .iter()
        .find(|q| raw.starts_with(**q))
        .map(|q| {
            let after = span.start + q.len();
            let multi = q.len() == 3;
            if multi && src.text.get(after..after + 1) == Some("\n") {
                after + 1
            } else if multi && src.text.get(after..after + 2) == Some("\r\n") {
                after + 2
            } else {
                after
            }
        });
    let value = expr.get_ref();
    match content_start {
        Some(start) if src.text.get(start..start + value.len()) == Some(value.as_str()) => {
            let mut offset = start;
            for (line, l) in (1..).zip(value.split_inclusive('\n')) {
                if line == fault.line {
                    let col = usize::try_from(fault.column.saturating_sub(1)).unwrap_or(0);
                    offset += l.char_indices().nth(col).map_or(l.len(), |(i, _)| i);
                    break;
                }
                offset += l.len();
            }
            src.loc(offset)
        }
        _ => src.loc(span.start),
    }
}

/// `input = { ... }` / `output = "file.json"` of a figment operation: any JSON Schema
/// 2020-12 (not necessarily an object).
fn read_op_schema(
    src: &Source<'_>,
    value: Spanned<DeValue<'_>>,
    owner: &str,
    errors: &mut Vec<DefinitionError>,
) -> Option<RawSchema> {
    read_schema_with(src, value, owner, schema::check_dto, errors)
}

fn read_contract_file(src: &Source<'_>, errors: &mut Vec<DefinitionError>) -> Option<RawContract> {
    let doc = parse(src, errors)?;
    let doc_span = doc.span();
    let mut top = doc.into_inner();
    check_keys(src, &top, "contract.toml", &["contract", "types"], errors);
    let Some(value) = top.remove("contract") else {
        errors.push(DefinitionError::at(
            src.loc(doc_span.start),
            K::InvalidValue {
                section: "contract.toml".into(),
                message: "missing the `[contract]` table (name, version)".into(),
            },
        ));
        return None;
    };
    let def: ContractDef = de_section(src, value, "[contract]", &[], errors)?;
    let mut types = Vec::new();
    if let Some(v) = top.remove("types") {
        for (key, value) in entries(src, v, "[types]", errors) {
            let name = key_located(src, &key);
            let section = format!("[types.{}]", name.value);
            let Some((span, mut table)) = as_table(src, value, &section, errors) else {
                continue;
            };
            let owner = format!("contract type `{}`", name.value);
            let schema = table
                .remove("schema")
                .and_then(|v| read_op_schema(src, v, &owner, errors));
            let rest = Spanned::new(span, DeValue::Table(table));
            if let Some(t) = de_section::<ContractTypeDef>(src, rest, &section, &["schema"], errors)
            {
                if schema.is_none() {
                    errors.push(DefinitionError::at(
                        name.loc.clone(),
                        K::InvalidValue {
                            section,
                            message: "missing field `schema`".into(),
                        },
                    ));
                }
                types.push(RawContractType {
                    name,
                    description: t.description,
                    schema,
                });
            }
        }
    }
    Some(RawContract {
        name: src.located(def.name),
        version: src.located(def.version),
        description: def.description,
        types,
        file: src.path.to_path_buf(),
    })
}

fn read_figment_file(src: &Source<'_>, errors: &mut Vec<DefinitionError>) -> Option<RawFigment> {
    let doc = parse(src, errors)?;
    let doc_span = doc.span();
    let mut top = doc.into_inner();
    check_keys(src, &top, "figment.toml", &["figment"], errors);
    let Some(value) = top.remove("figment") else {
        errors.push(DefinitionError::at(
            src.loc(doc_span.start),
            K::InvalidValue {
                section: "figment.toml".into(),
                message: "missing the `[figment]` table (name, version)".into(),
            },
        ));
        return None;
    };
    read_figment(src, None, value, "[figment]", errors)
}

/// A figment body. `inline_name` is the table key of an inline figment; a standalone one
/// carries `name` and `version` itself.
fn read_figment(
    src: &Source<'_>,
    inline_name: Option<Located<String>>,
    value: Spanned<DeValue<'_>>,
    section_name: &str,
    errors: &mut Vec<DefinitionError>,
) -> Option<RawFigment> {
    let (span, mut table) = as_table(src, value, section_name, errors)?;
    let schema_value = table.remove("schema");
    let triggers_value = table.remove("triggers");
    let rules_value = table.remove("rules");
    let operations_value = table.remove("operations");
    let rest = Spanned::new(span.clone(), DeValue::Table(table));
    let taken = ["operations", "rules", "schema", "triggers"];
    let def: FigmentDef = de_section(src, rest, section_name, &taken, errors)?;
    let name = match (inline_name, def.name) {
        (Some(key), None) => key,
        (None, Some(n)) => src.located(n),
        (Some(_), Some(n)) => {
            errors.push(DefinitionError::at(
                src.loc_of(&n),
                K::InvalidValue {
                    section: section_name.to_owned(),
                    message: "an inline figment is named by its table key, not by `name`".into(),
                },
            ));
            return None;
        }
        (None, None) => {
            errors.push(DefinitionError::at(
                src.loc(span.start),
                K::InvalidValue {
                    section: section_name.to_owned(),
                    message: "missing field `name`".into(),
                },
            ));
            return None;
        }
    };
    let owner = format!("figment `{}`", name.value);
    let schema = schema_value.and_then(|v| read_schema(src, v, &owner, errors));
    let triggers = triggers_value
        .map(|v| read_triggers(src, v, section_name, errors))
        .unwrap_or_default();
    let rules = rules_value
        .map(|v| read_rules(src, v, section_name, errors))
        .unwrap_or_default();
    let operations = operations_value
        .map(|v| read_figment_ops(src, v, section_name, errors))
        .unwrap_or_default();
    Some(RawFigment {
        name,
        version: def.version.map(|v| src.located(v)),
        description: def.description,
        schema,
        figments: src.located_all(def.figments),
        triggers,
        rules,
        operations,
        file: src.path.to_path_buf(),
    })
}

/// `schema = { ... }` (inline) or `schema = "path.json"` (beside the definition file).
/// The fragment is checked on its own; every fault is reported where it is written.
fn read_schema(
    src: &Source<'_>,
    value: Spanned<DeValue<'_>>,
    owner: &str,
    errors: &mut Vec<DefinitionError>,
) -> Option<RawSchema> {
    read_schema_with(src, value, owner, schema::check_fragment, errors)
}

/// Read a schema (inline or from a file) and check it with `check`.
fn read_schema_with(
    src: &Source<'_>,
    value: Spanned<DeValue<'_>>,
    owner: &str,
    check: fn(&Value) -> Vec<schema::SchemaFault>,
    errors: &mut Vec<DefinitionError>,
) -> Option<RawSchema> {
    let loc = src.loc_of(&value);
    let before = errors.len();
    let mut json_file = None;
    let mut ref_locs = Vec::new();
    let json = match value.get_ref() {
        DeValue::String(rel) => {
            let path = src.dir().join(rel.as_ref());
            let text = match fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(DefinitionError::at(
                        loc,
                        K::Io {
                            path,
                            reason: e.to_string(),
                        },
                    ));
                    return None;
                }
            };
            let json: Value = match serde_json::from_str(&text) {
                Ok(j) => j,
                Err(e) => {
                    let at = Location {
                        file: path.clone(),
                        line: u32::try_from(e.line()).unwrap_or(u32::MAX).max(1),
                        column: u32::try_from(e.column()).unwrap_or(u32::MAX).max(1),
                    };
                    errors.push(DefinitionError::at(
                        at,
                        K::JsonSyntax {
                            file: path,
                            message: e.to_string(),
                        },
                    ));
                    return None;
                }
            };
            for (pointer, message) in check(&json) {
                let offset = schema::json_offset_at(&text, &pointer);
                errors.push(DefinitionError::at(
                    offset_to_location(&path, &text, offset),
                    K::BadSchema {
                        owner: owner.to_owned(),
                        pointer,
                        message,
                    },
                ));
            }
            json_file = Some((path, text));
            json
        }
        DeValue::Table(_) => {
            let json = match schema::toml_to_json(&value) {
                Ok(j) => j,
                Err(span) => {
                    errors.push(DefinitionError::at(
                        src.loc(span.start),
                        K::InvalidValue {
                            section: format!("schema of {owner}"),
                            message: "TOML dates and times have no JSON form; quote them".into(),
                        },
                    ));
                    return None;
                }
            };
            for (pointer, _) in schema::external_refs(&json) {
                let span = schema::toml_span_at(&value, &pointer);
                ref_locs.push((pointer, src.loc(span.start)));
            }
            for (pointer, message) in check(&json) {
                let span = schema::toml_span_at(&value, &pointer);
                errors.push(DefinitionError::at(
                    src.loc(span.start),
                    K::BadSchema {
                        owner: owner.to_owned(),
                        pointer,
                        message,
                    },
                ));
            }
            json
        }
        other => {
            errors.push(DefinitionError::at(
                loc,
                K::InvalidValue {
                    section: format!("schema of {owner}"),
                    message: format!(
                        "`schema` is a table (inline JSON Schema) or a path to a JSON file, \
                         not {}",
                        other.type_str()
                    ),
                },
            ));
            return None;
        }
    };
    (errors.len() == before).then_some(RawSchema {
        value: json,
        loc,
        json_file,
        ref_locs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_character_columns() {
        let text = "ab\ncdé f\n";
        let p = Path::new("x.toml");
        assert_eq!(offset_to_location(p, text, 0).line, 1);
        let l = offset_to_location(p, text, text.find('f').unwrap_or(0));
        assert_eq!((l.line, l.column), (2, 5));
        let end = offset_to_location(p, text, 999);
        assert_eq!((end.line, end.column), (3, 1));
    }

    #[test]
    fn serde_messages_are_classified() {
        let k = serde_error_kind(
            "unknown field `namspaces`, expected one of `name`, `namespaces`",
            "[bundle]",
            &["kinds"],
        );
        assert_eq!(
            k,
            K::UnknownField {
                field: "namspaces".into(),
                section: "[bundle]".into(),
                expected: vec!["kinds".into(), "name".into(), "namespaces".into()],
            }
        );
        assert_eq!(
            k.hint(),
            "did you mean `namespaces`? allowed here: `kinds`, `name`, `namespaces`"
        );
        let k = serde_error_kind("missing field `version`", "[bundle]", &[]);
        assert_eq!(k.code(), "invalid_value");
    }
}
