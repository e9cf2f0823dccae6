//! Load-time errors of domain definitions: where each one is, what is wrong, how to fix it.
//!
//! Loading never stops at the first problem: every check runs and every failure becomes one
//! [`DefinitionError`] (a [`DefinitionErrorKind`] with its context, the [`Location`] in the
//! definition files and any related locations, such as the other file that claims the same
//! repo). [`DefinitionErrors`] carries them all and maps once to the shared [`BverError`]
//! (`invalid_definition`, phase `configuration`).

use std::fmt;
use std::path::PathBuf;

use bver_contracts::{BverError, ErrorCode, Phase};
use serde_json::{Value, json};

/// A position in a definition file: the file and a 1-based line and column (in characters).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// The file, as found from the directories given to [`load`](super::load).
    pub file: PathBuf,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, counted in characters.
    pub column: u32,
}

impl Location {
    /// The start of `file` (for problems that concern the whole file).
    pub fn file_start(file: impl Into<PathBuf>) -> Self {
        Self {
            file: file.into(),
            line: 1,
            column: 1,
        }
    }

    /// The location as JSON: `{"file", "line", "column"}`.
    pub fn to_json(&self) -> Value {
        json!({
            "file": self.file.display().to_string(),
            "line": self.line,
            "column": self.column,
        })
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// What is wrong with a definition, with the context needed to explain and fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DefinitionErrorKind {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {reason}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// A directory holds neither a bundle nor a figment, nor any below it.
    #[error("no `bundle.toml` or `figment.toml` in {dir} or below it")]
    NothingToLoad {
        /// The directory that was given.
        dir: PathBuf,
    },
    /// The TOML does not parse.
    #[error("TOML syntax error: {message}")]
    Syntax {
        /// The parser's message.
        message: String,
    },
    /// A key that the format does not know.
    #[error("unknown field `{field}` in {section}")]
    UnknownField {
        /// The key as written.
        field: String,
        /// Where it appeared (`[bundle]`, `[refs.site]`, ...).
        section: String,
        /// The keys allowed there.
        expected: Vec<String>,
    },
    /// A value of the wrong type, a missing required field, or an unknown variant.
    #[error("invalid {section}: {message}")]
    InvalidValue {
        /// Where it appeared (`[bundle]`, `[refs.site]`, ...).
        section: String,
        /// What the deserializer said.
        message: String,
    },
    /// A name that does not follow its grammar.
    #[error("invalid {what} name `{name}`: {rule}")]
    BadName {
        /// What is being named (`repo`, `namespace`, `kind`, ...).
        what: &'static str,
        /// The name as written.
        name: String,
        /// The grammar it must follow.
        rule: &'static str,
    },
    /// A version that is not semantic versioning 2.0.
    #[error("invalid version `{version}`: {reason}")]
    BadVersion {
        /// The version as written.
        version: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A contract package use that is not `name@version`.
    #[error("invalid contract package `{value}`: {reason}")]
    BadContract {
        /// The entry as written.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A scope string that does not follow the scope grammar.
    #[error("invalid scope `{scope}` in the {action} policy")]
    BadScope {
        /// The scope as written.
        scope: String,
        /// The action whose policy lists it.
        action: String,
    },
    /// A schema file that is not JSON.
    #[error("{file} is not valid JSON: {message}")]
    JsonSyntax {
        /// The schema file.
        file: PathBuf,
        /// The JSON parser's message.
        message: String,
    },
    /// A schema that does not compile as JSON Schema 2020-12, or does not describe an object.
    #[error("invalid JSON Schema for {owner} at `{pointer}`: {message}")]
    BadSchema {
        /// What the schema belongs to (`refs.site`, `kind power.substation`, `figment geo`).
        owner: String,
        /// JSON pointer into the schema where the fault is (empty for the root).
        pointer: String,
        /// What is wrong.
        message: String,
    },
    /// Two bundles with one name.
    #[error(
        "bundle `{name}` is defined twice: {} and {}",
        first_file.display(),
        second_file.display()
    )]
    DuplicateBundle {
        /// The bundle name.
        name: String,
        /// The `bundle.toml` loaded first.
        first_file: PathBuf,
        /// The other `bundle.toml`.
        second_file: PathBuf,
    },
    /// Two bundles claim one namespace.
    #[error(
        "namespace `{namespace}` is claimed by bundle `{first}` ({}) and by bundle `{second}` ({})",
        first_file.display(),
        second_file.display()
    )]
    DuplicateNamespace {
        /// The namespace.
        namespace: String,
        /// The bundle loaded first.
        first: String,
        /// Its `bundle.toml`.
        first_file: PathBuf,
        /// The bundle that claims it again.
        second: String,
        /// Its `bundle.toml`.
        second_file: PathBuf,
    },
    /// Two bundles define one repo.
    #[error(
        "repo `{repo}` is defined by bundle `{first}` ({}) and by bundle `{second}` ({})",
        first_file.display(),
        second_file.display()
    )]
    DuplicateRepo {
        /// The repo name.
        repo: String,
        /// The bundle loaded first.
        first: String,
        /// Its `bundle.toml`.
        first_file: PathBuf,
        /// The bundle that defines it again.
        second: String,
        /// Its `bundle.toml`.
        second_file: PathBuf,
    },
    /// Two figments with one name.
    #[error(
        "figment `{name}` is defined twice: {} and {}",
        first_file.display(),
        second_file.display()
    )]
    DuplicateFigment {
        /// The figment name.
        name: String,
        /// The file that defines it first.
        first_file: PathBuf,
        /// The file that defines it again.
        second_file: PathBuf,
    },
    /// A reference type names a namespace its bundle does not own.
    #[error("repo `{repo}` lives in namespace `{namespace}`, which bundle `{bundle}` does not own")]
    ForeignNamespace {
        /// The repo.
        repo: String,
        /// The namespace it names.
        namespace: String,
        /// Its bundle.
        bundle: String,
        /// The namespaces the bundle owns.
        owned: Vec<String>,
    },
    /// A reference type without `namespace` in a bundle that owns zero or several namespaces.
    #[error("repo `{repo}` does not say which namespace it lives in")]
    MissingNamespace {
        /// The repo.
        repo: String,
        /// The namespaces its bundle owns.
        owned: Vec<String>,
    },
    /// A figment is included but defined nowhere that was loaded.
    #[error("figment `{name}` is not defined")]
    MissingFigment {
        /// The figment name.
        name: String,
        /// The figments that are visible from here.
        known: Vec<String>,
    },
    /// A figment defined inline in another bundle is included.
    #[error("figment `{name}` is private to bundle `{bundle}`")]
    PrivateFigment {
        /// The figment name.
        name: String,
        /// The bundle that defines it inline.
        bundle: String,
    },
    /// Figments include each other in a cycle.
    #[error("figments include each other in a cycle: {}", cycle.join(" -> "))]
    FigmentCycle {
        /// The figments on the cycle, the first repeated at the end.
        cycle: Vec<String>,
    },
    /// A kind's parent is not a kind of the same reference type.
    #[error(
        "kind `{kind}` of repo `{repo}` names parent `{parent}`, which is not a kind of `{repo}`"
    )]
    UnknownParentKind {
        /// The repo.
        repo: String,
        /// The kind.
        kind: String,
        /// The parent it names.
        parent: String,
        /// The kinds of the repo.
        known: Vec<String>,
    },
    /// Kinds are each other's parents in a cycle.
    #[error("kinds of repo `{repo}` are each other's parents in a cycle: {}", cycle.join(" -> "))]
    KindCycle {
        /// The repo.
        repo: String,
        /// The kinds on the cycle, the first repeated at the end.
        cycle: Vec<String>,
    },
    /// A declared trigger names an event that is not a built-in reference event.
    #[error("trigger `{trigger}` listens to unknown event `{event}`")]
    UnknownEvent {
        /// The trigger.
        trigger: String,
        /// The event as written.
        event: String,
    },
    /// Two triggers of one reference type with one name, or a declared trigger named like a built-in.
    #[error("trigger `{name}` is already defined")]
    DuplicateTrigger {
        /// The full trigger name (`refs.site.changed`).
        name: String,
    },
    /// No bundle says `role = "core"`.
    #[error("no core bundle: a platform loads exactly one bundle with role = \"core\"")]
    NoCore {
        /// The plugin bundles that were loaded.
        plugins: Vec<String>,
    },
    /// Several bundles say `role = "core"`.
    #[error(
        "two core bundles: `{first}` ({}) and `{second}` ({}); a platform loads exactly one",
        first_file.display(),
        second_file.display()
    )]
    TwoCores {
        /// The core bundle loaded first.
        first: String,
        /// Its `bundle.toml`.
        first_file: PathBuf,
        /// The other core bundle.
        second: String,
        /// Its `bundle.toml`.
        second_file: PathBuf,
    },
    /// A CEL expression (a rule or a trigger condition) that does not compile.
    #[error("{owner}: {message} (at line {line}, column {column} of `{expr}`)")]
    BadExpression {
        /// What the expression belongs to (`rule `x``, `condition of trigger `y``).
        owner: String,
        /// The expression as written.
        expr: String,
        /// 1-based line inside the expression.
        line: u32,
        /// 1-based column inside the expression.
        column: u32,
        /// What is wrong.
        message: String,
        /// Whether it is a trigger condition (else a rule).
        condition: bool,
    },
    /// Two rules with one name apply to the values of one reference type.
    #[error("rule `{name}` of refs.{repo} is declared twice: by {first} and by {second}")]
    DuplicateRule {
        /// The repo.
        repo: String,
        /// The rule name.
        name: String,
        /// Where it is declared first.
        first: String,
        /// Where it is declared again.
        second: String,
    },
    /// An operation name that a reference type already has.
    #[error("operation `{name}` is already defined ({reason})")]
    DuplicateOperation {
        /// The full operation name (`refs.site.locate`).
        name: String,
        /// Why it collides.
        reason: String,
    },
    /// A schema refers to another bundle's reference schema.
    #[error(
        "{owner} refers to `{target}`, the reference schema of repo `{repo}` in bundle \
         `{other}`: a bundle may use its own reference schemas and contract types, never \
         another bundle's reference schemas"
    )]
    ForeignSchema {
        /// What the schema belongs to.
        owner: String,
        /// The `$ref` as written.
        target: String,
        /// The other bundle's repo.
        repo: String,
        /// The other bundle.
        other: String,
    },
    /// A `$ref` that is neither local, nor a contract type, nor an own reference schema.
    #[error("{owner}: `$ref` to `{target}` cannot be resolved: {reason}")]
    BadRef {
        /// What the schema belongs to.
        owner: String,
        /// The `$ref` as written.
        target: String,
        /// Why.
        reason: String,
    },
    /// Two contract package directories with one name.
    #[error(
        "contract package `{name}` is loaded twice: {} and {}",
        first_file.display(),
        second_file.display()
    )]
    DuplicateContract {
        /// The package name.
        name: String,
        /// The `contract.toml` loaded first.
        first_file: PathBuf,
        /// The other one.
        second_file: PathBuf,
    },
    /// A bundle uses a contract package that is not loaded, or in too old a version.
    #[error(
        "bundle `{bundle}` uses contract package `{package}@{wanted}`, {}",
        match loaded { Some(v) => format!("but version {v} is loaded"), None => "which is not loaded".to_owned() }
    )]
    MissingContract {
        /// The bundle.
        bundle: String,
        /// The package.
        package: String,
        /// The version the bundle declares.
        wanted: String,
        /// The version loaded, if any.
        loaded: Option<String>,
    },
    /// Two bundles use incompatible versions (different major versions) of one package.
    #[error(
        "bundle `{bundle}` uses contract package `{package}@{version}` and bundle `{other}` uses \
         `{package}@{other_version}`: major versions differ, so their types are incompatible"
    )]
    IncompatibleContract {
        /// The package.
        package: String,
        /// This bundle.
        bundle: String,
        /// The version it declares.
        version: String,
        /// The other bundle.
        other: String,
        /// The version the other declares.
        other_version: String,
    },
    /// A schema uses a contract type of a package its bundle does not declare (or of
    /// another major version).
    #[error("{owner} uses `{target}`, but {reason}")]
    UndeclaredContract {
        /// What the schema belongs to.
        owner: String,
        /// The type reference as written.
        target: String,
        /// The package.
        package: String,
        /// Why it is not usable.
        reason: String,
    },
    /// A contract type that its package does not define.
    #[error("contract package `{package}` has no type `{ty}`")]
    UnknownContractType {
        /// The package.
        package: String,
        /// The type name.
        ty: String,
        /// The types it defines.
        known: Vec<String>,
    },
}

impl DefinitionErrorKind {
    /// A stable, machine-readable name for this kind of error (`duplicate_repo`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::NothingToLoad { .. } => "nothing_to_load",
            Self::Syntax { .. } => "syntax",
            Self::UnknownField { .. } => "unknown_field",
            Self::InvalidValue { .. } => "invalid_value",
            Self::BadName { .. } => "bad_name",
            Self::BadVersion { .. } => "bad_version",
            Self::BadContract { .. } => "bad_contract",
            Self::BadScope { .. } => "bad_scope",
            Self::JsonSyntax { .. } => "json_syntax",
            Self::BadSchema { .. } => "bad_schema",
            Self::DuplicateBundle { .. } => "duplicate_bundle",
            Self::DuplicateNamespace { .. } => "duplicate_namespace",
            Self::DuplicateRepo { .. } => "duplicate_repo",
            Self::DuplicateFigment { .. } => "duplicate_figment",
            Self::ForeignNamespace { .. } => "foreign_namespace",
            Self::MissingNamespace { .. } => "missing_namespace",
            Self::MissingFigment { .. } => "missing_figment",
            Self::PrivateFigment { .. } => "private_figment",
            Self::FigmentCycle { .. } => "figment_cycle",
            Self::UnknownParentKind { .. } => "unknown_parent_kind",
            Self::KindCycle { .. } => "kind_cycle",
            Self::UnknownEvent { .. } => "unknown_event",
            Self::DuplicateTrigger { .. } => "duplicate_trigger",
            Self::NoCore { .. } => "no_core",
            Self::TwoCores { .. } => "two_cores",
            Self::BadExpression { .. } => "bad_expression",
            Self::DuplicateRule { .. } => "duplicate_rule",
            Self::DuplicateOperation { .. } => "duplicate_operation",
            Self::ForeignSchema { .. } => "foreign_schema",
            Self::BadRef { .. } => "bad_ref",
            Self::DuplicateContract { .. } => "duplicate_contract",
            Self::MissingContract { .. } => "missing_contract",
            Self::IncompatibleContract { .. } => "incompatible_contract",
            Self::UndeclaredContract { .. } => "undeclared_contract",
            Self::UnknownContractType { .. } => "unknown_contract_type",
        }
    }

    /// How to fix it, in one or two sentences.
    pub fn hint(&self) -> String {
        match self {
            Self::Io { .. } => "check that the path exists and is readable".into(),
            Self::NothingToLoad { .. } => {
                "pass a bundle directory (with `bundle.toml`), a figment \
                 directory (with `figment.toml`), or a directory that contains them"
                    .into()
            }
            Self::Syntax { .. } => "fix the TOML syntax at this position".into(),
            Self::UnknownField {
                field, expected, ..
            } => match closest(field, expected.iter().map(String::as_str)) {
                Some(near) => format!("did you mean `{near}`? allowed here: {}", list(expected)),
                None if expected.is_empty() => "remove this field".into(),
                None => format!("remove it; allowed here: {}", list(expected)),
            },
            Self::InvalidValue { .. } => {
                "see docs/domain.md for the fields and types of this section".into()
            }
            Self::BadName { .. } => "rename it to follow the rule above".into(),
            Self::BadVersion { .. } => {
                "use semantic versioning: MAJOR.MINOR.PATCH, for example \"1.0.0\"".into()
            }
            Self::BadContract { .. } => {
                "write the package as name@version, for example \"grid-types@1.2.0\"".into()
            }
            Self::BadScope { .. } => "scopes are colon-separated segments of a-z, 0-9, `_`, `-`, \
                 `.` or `*`, for example \"refs:site:read\""
                .into(),
            Self::JsonSyntax { .. } => "fix the JSON syntax at this position".into(),
            Self::BadSchema { .. } => "schemas are JSON Schema 2020-12 describing a JSON object; \
                 `$ref` may only point inside the same schema (\"#/$defs/...\")"
                .into(),
            Self::DuplicateBundle { .. } => {
                "give each bundle its own name, or load only one of the two directories".into()
            }
            Self::DuplicateNamespace { .. } => "each namespace has exactly one owner: remove it \
                 from one of the two bundles"
                .into(),
            Self::DuplicateRepo { .. } => "repo names are unique per platform: rename one of the \
                 two, or remove it from one bundle"
                .into(),
            Self::DuplicateFigment { .. } => "rename one of the two figments".into(),
            Self::ForeignNamespace {
                namespace, owned, ..
            } if owned.is_empty() => {
                format!("add `{namespace}` to `[bundle] namespaces`")
            }
            Self::ForeignNamespace {
                namespace, owned, ..
            } => format!(
                "use one of the bundle's namespaces ({}), or add `{namespace}` to `[bundle] \
                 namespaces`",
                list(owned)
            ),
            Self::MissingNamespace { owned, .. } if owned.is_empty() => {
                "declare the bundle's namespaces in `[bundle] namespaces`".into()
            }
            Self::MissingNamespace { owned, .. } => {
                format!("add `namespace = ` one of {}", list(owned))
            }
            Self::MissingFigment { name, known } => {
                match closest(name, known.iter().map(String::as_str)) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None if known.is_empty() => "define it inline under `[figments.NAME]` or load \
                         its figment directory (the one with its `figment.toml`)"
                        .into(),
                    None => format!(
                        "known figments: {}; or load the directory that defines it",
                        list(known)
                    ),
                }
            }
            Self::PrivateFigment { .. } => "inline figments belong to their bundle: move it into \
                 its own directory with a `figment.toml` to share it"
                .into(),
            Self::FigmentCycle { .. } => "remove one of the includes on the cycle".into(),
            Self::UnknownParentKind { parent, known, .. } => {
                match closest(parent, known.iter().map(String::as_str)) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None if known.is_empty() => "declare the parent kind first".into(),
                    None => format!("kinds: {}", list(known)),
                }
            }
            Self::KindCycle { .. } => "remove one `parent` on the cycle".into(),
            Self::UnknownEvent { .. } => "events are created, updated, deleted, kind_changed and \
                 restored"
                .into(),
            Self::DuplicateTrigger { .. } => "rename the trigger; built-in names are created, \
                 updated, deleted, kind_changed and restored"
                .into(),
            Self::NoCore { plugins } if plugins.is_empty() => {
                "load the platform's core app bundle (role = \"core\")".into()
            }
            Self::NoCore { plugins } => format!(
                "only plugins were loaded ({}): load the core app bundle too",
                list(plugins)
            ),
            Self::TwoCores { .. } => "make one of them a plugin (role = \"plugin\"), or load \
                 only one platform's bundles"
                .into(),
            Self::BadExpression {
                condition: true, ..
            } => "a condition is a CEL expression over \
                 event, repo, id, kind, old_kind, old, new, diff and principal; numbers are \
                 doubles (see docs/domain.md, \"Triggers\")"
                .into(),
            Self::BadExpression { .. } => "a rule is a CEL expression over the value's fields \
                 (`rating_mva`) or `self` (`has(self.x)`); numbers are doubles, so write `2.0`, \
                 not `2` (see docs/domain.md, \"Rules\")"
                .into(),
            Self::DuplicateRule { .. } => "rename one of the two rules".into(),
            Self::DuplicateOperation { .. } => "rename the figment operation; the generated \
                 suffixes are create, get, patch, replace, delete, list, history, diff, restore \
                 and change_kind"
                .into(),
            Self::ForeignSchema { .. } => "hold a pointer to the other bundle's reference \
                 (a string `bver://...`), or move the shared shape into a contract package and \
                 use its type (`\"$ref\": \"package@1/Type\"`)"
                .into(),
            Self::BadRef { .. } => "`$ref` may point inside the schema (`#/$defs/...`), at a \
                 contract type (`package@MAJOR/Type`), or at a reference schema of the same \
                 bundle (`urn:bver:BUNDLE:REPO`)"
                .into(),
            Self::DuplicateContract { .. } => "load one directory per contract package".into(),
            Self::MissingContract { loaded: None, .. } => "load the contract package's directory \
                 (the one with its `contract.toml`) with the bundles"
                .into(),
            Self::MissingContract { .. } => "load a version of the package that is at least the \
                 one the bundle asks for, with the same major version"
                .into(),
            Self::IncompatibleContract { .. } => "bundles of one platform must agree on the major \
                 version of each contract package: move both to the same major version"
                .into(),
            Self::UndeclaredContract { package, .. } => {
                format!("add the package to `[bundle] contracts`, e.g. \"{package}@1.0.0\"")
            }
            Self::UnknownContractType { ty, known, .. } => {
                match closest(ty, known.iter().map(String::as_str)) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => format!("the package's types are {}", list(known)),
                }
            }
        }
    }
}

/// One problem in the definitions: what, where, related places and a fix hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionError {
    /// What is wrong.
    pub kind: DefinitionErrorKind,
    /// Where (absent only for platform-wide problems such as a missing core bundle).
    pub location: Option<Location>,
    /// Other places involved (the first definition of a duplicate, the other core bundle).
    pub related: Vec<Location>,
}

impl DefinitionError {
    /// An error at `location`.
    pub fn at(location: Location, kind: DefinitionErrorKind) -> Self {
        Self {
            kind,
            location: Some(location),
            related: Vec::new(),
        }
    }

    /// An error with no single location.
    pub fn global(kind: DefinitionErrorKind) -> Self {
        Self {
            kind,
            location: None,
            related: Vec::new(),
        }
    }

    /// Add a related location.
    pub fn also(mut self, location: Location) -> Self {
        self.related.push(location);
        self
    }

    /// The fix hint (see [`DefinitionErrorKind::hint`]).
    pub fn hint(&self) -> String {
        self.kind.hint()
    }

    /// The error as JSON: `{code, message, hint, file, line, column, related}`.
    pub fn to_json(&self) -> Value {
        let mut out = json!({
            "code": self.kind.code(),
            "message": self.kind.to_string(),
            "hint": self.hint(),
        });
        if let (Some(loc), Some(map)) = (&self.location, out.as_object_mut()) {
            map.insert("file".into(), json!(loc.file.display().to_string()));
            map.insert("line".into(), json!(loc.line));
            map.insert("column".into(), json!(loc.column));
        }
        if !self.related.is_empty()
            && let Some(map) = out.as_object_mut()
        {
            let related: Vec<Value> = self.related.iter().map(Location::to_json).collect();
            map.insert("related".into(), Value::Array(related));
        }
        out
    }
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = &self.location {
            write!(f, "{loc}: ")?;
        }
        write!(f, "error[{}]: {}", self.kind.code(), self.kind)?;
        for other in &self.related {
            write!(f, "\n  = note: see also {other}")?;
        }
        write!(f, "\n  = hint: {}", self.hint())
    }
}

impl std::error::Error for DefinitionError {}

/// Every problem found while loading definitions (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionErrors {
    errors: Vec<DefinitionError>,
}

impl DefinitionErrors {
    /// Wrap a list of errors, sorted by file, line and column (platform-wide ones last).
    pub(crate) fn new(mut errors: Vec<DefinitionError>) -> Self {
        errors.sort_by(|a, b| match (&a.location, &b.location) {
            (Some(x), Some(y)) => x.cmp(y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
        errors.dedup();
        Self { errors }
    }

    /// The errors, sorted by location.
    pub fn errors(&self) -> &[DefinitionError] {
        &self.errors
    }

    /// How many errors there are.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Always false: a `DefinitionErrors` holds at least one error.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Whether any error has this [`DefinitionErrorKind::code`].
    pub fn has(&self, code: &str) -> bool {
        self.errors.iter().any(|e| e.kind.code() == code)
    }

    /// The errors as a JSON array.
    pub fn to_json(&self) -> Value {
        Value::Array(self.errors.iter().map(DefinitionError::to_json).collect())
    }
}

impl fmt::Display for DefinitionErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "{e}")?;
        }
        let n = self.errors.len();
        write!(
            f,
            "{n} error{} in the domain definition",
            if n == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for DefinitionErrors {}

impl From<DefinitionErrors> for BverError {
    fn from(errors: DefinitionErrors) -> Self {
        let n = errors.len();
        let message = match errors.errors.first() {
            Some(first) if n == 1 => format!("invalid domain definition: {}", first.kind),
            _ => format!("invalid domain definition: {n} errors"),
        };
        BverError::new(ErrorCode::InvalidDefinition, Phase::Configuration, message)
            .with_details(json!({ "errors": errors.to_json() }))
    }
}

/// `a`, `b`, `c` as "`a`, `b`, `c`".
fn list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a typo
/// (one edit per three characters; words shorter than three characters get no suggestion).
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = word.chars().count() / 3;
    candidates
        .filter(|c| *c != word)
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(b.1)))
        .map(|(_, c)| c)
}

/// Optimal string alignment distance over characters: insertions, deletions, substitutions
/// and transpositions of neighbours (`goe` is one edit from `geo`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = best;
        }
    }
    d[a.len() * w + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_finds_typos_only() {
        let c = ["namespaces", "name", "version"];
        assert_eq!(closest("namspaces", c.iter().copied()), Some("namespaces"));
        assert_eq!(closest("zzz", c.iter().copied()), None);
        assert_eq!(closest("goe", ["geo", "grid"].into_iter()), Some("geo"));
        assert_eq!(closest("y", ["x"].into_iter()), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("ab", "ba"), 1);
    }

    #[test]
    fn errors_sort_by_location_and_map_to_bver_error() {
        let a = DefinitionError::at(
            Location {
                file: "b.toml".into(),
                line: 2,
                column: 1,
            },
            DefinitionErrorKind::Syntax {
                message: "x".into(),
            },
        );
        let b = DefinitionError::global(DefinitionErrorKind::NoCore { plugins: vec![] });
        let c = DefinitionError::at(
            Location::file_start("a.toml"),
            DefinitionErrorKind::DuplicateBundle {
                name: "g".into(),
                first_file: "a.toml".into(),
                second_file: "b.toml".into(),
            },
        );
        let errs = DefinitionErrors::new(vec![b, a, c]);
        let codes: Vec<_> = errs.errors().iter().map(|e| e.kind.code()).collect();
        assert_eq!(codes, ["duplicate_bundle", "syntax", "no_core"]);
        let bver: BverError = errs.into();
        assert_eq!(bver.code, ErrorCode::InvalidDefinition);
        assert_eq!(bver.phase, Phase::Configuration);
        assert_eq!(bver.details["errors"].as_array().map(Vec::len), Some(3));
        assert_eq!(bver.details["errors"][0]["file"], "a.toml");
    }
}
