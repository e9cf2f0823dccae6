//! The compiled domain: the registry of bundles, reference types, kinds, figments, namespaces
//! and operations that the rest of the node reads.
//!
//! A [`Domain`] is built once by [`load`](super::load) and then only read: it is `Send +
//! Sync` and meant to sit behind an `Arc`. Every JSON Schema is compiled at load time, one
//! validator per reference type and per kind, so [`RefType::validate`] on the write path does
//! no parsing or compiling.
//!
//! **Architecture Invariant:** a `Domain` only exists for a definition without errors; there
//! is no partially valid registry.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use super::contract::ContractPackage;
use super::expr::{Expression, Rule, RuleFailure};
use super::ops::OperationSpec;
use serde_json::{Map, Value, json};

/// Whether a bundle is the platform's core app or a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// The platform's app: exactly one per platform.
    Core,
    /// A plugin installed beside the core app.
    Plugin,
}

impl Role {
    /// `core` or `plugin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Core => "core",
            Self::Plugin => "plugin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A contract package a bundle uses: `name@version`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContractUse {
    /// Package name (`grid-types`).
    pub name: String,
    /// Semantic version (`1.2.0`).
    pub version: String,
}

impl fmt::Display for ContractUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// An EAGER channel a bundle publishes: which outbox events flow into it, the scope a
/// subscriber's grant needs, and the contract of its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// Channel name (`site_changes`).
    pub name: String,
    /// What it carries.
    pub description: String,
    /// The full trigger names whose events flow in (a `repos` entry adds the repo's five
    /// built-in events), sorted.
    pub triggers: Vec<String>,
    /// The scope a subscriber's grant must hold (default `eager:subscribe:{name}`).
    pub scope: String,
    /// The payload contract: package, major version, type.
    pub contract: Option<(String, u64, String)>,
}

/// One application bundle: the core app or a plugin.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Bundle name (`grid`).
    pub name: String,
    /// Semantic version of the bundle.
    pub version: String,
    /// Core app or plugin.
    pub role: Role,
    /// What the bundle is for.
    pub description: String,
    /// The namespaces it owns, sorted.
    pub namespaces: Vec<String>,
    /// Namespaces owned elsewhere whose pointers its values hold and it resolves, sorted.
    pub resolves: Vec<String>,
    /// The repos it defines, sorted.
    pub repos: Vec<String>,
    /// The contract packages it uses, sorted.
    pub contracts: Vec<ContractUse>,
    /// Every figment its reference types and kinds include (transitively), sorted.
    pub figments: Vec<String>,
    /// The EAGER channels it publishes, by name.
    pub channels: Vec<Channel>,
    /// The directory holding its `bundle.toml`.
    pub dir: PathBuf,
    /// Its `bundle.toml`.
    pub file: PathBuf,
}

/// A figment: a reusable schema fragment (and triggers) included by name.
#[derive(Debug, Clone)]
pub struct Figment {
    /// Figment name (`geo`).
    pub name: String,
    /// Semantic version (standalone figments; inline ones share their bundle's).
    pub version: Option<String>,
    /// What the figment adds.
    pub description: String,
    /// Its schema fragment, if it has one.
    pub schema: Option<Value>,
    /// The figments it includes directly.
    pub includes: Vec<String>,
    /// Triggers it adds to every reference type that includes it (short names).
    pub triggers: Vec<DeclaredTrigger>,
    /// Rules every value that includes it must satisfy.
    pub rules: Vec<Arc<Rule>>,
    /// Operations it adds to every reference type that includes it.
    pub operations: Vec<FigmentOperation>,
    /// For an inline figment, the bundle it is private to.
    pub bundle: Option<String>,
    /// The file that defines it.
    pub file: PathBuf,
}

/// An action on references, each guarded by its own scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// get, list, history, diff.
    Read,
    /// create.
    Create,
    /// patch, replace, change_kind, restore.
    Update,
    /// delete.
    Delete,
}

impl Action {
    /// All actions, in policy order.
    pub const ALL: [Action; 4] = [Self::Read, Self::Create, Self::Update, Self::Delete];

    /// `read`, `create`, `update` or `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }
}

/// The auth policy of a reference type: the scopes a principal needs (all of them) per action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Scopes for reads (default `refs:{repo}:read`).
    pub read: Vec<String>,
    /// Scopes for create (default `refs:{repo}:create`).
    pub create: Vec<String>,
    /// Scopes for updates (default `refs:{repo}:update`).
    pub update: Vec<String>,
    /// Scopes for delete (default `refs:{repo}:delete`).
    pub delete: Vec<String>,
}

impl Policy {
    /// The default policy of `repo`: `refs:{repo}:{action}` for each action.
    pub fn default_for(repo: &str) -> Self {
        let s = |a: Action| vec![format!("refs:{repo}:{}", a.as_str())];
        Self {
            read: s(Action::Read),
            create: s(Action::Create),
            update: s(Action::Update),
            delete: s(Action::Delete),
        }
    }

    /// The scopes `action` needs.
    pub fn scopes(&self, action: Action) -> &[String] {
        match action {
            Action::Read => &self.read,
            Action::Create => &self.create,
            Action::Update => &self.update,
            Action::Delete => &self.delete,
        }
    }
}

/// A built-in reference event; every mutation emits exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RefEvent {
    /// A reference was created.
    Created,
    /// Its value changed (patch, replace).
    Updated,
    /// It was deleted.
    Deleted,
    /// Its kind changed.
    KindChanged,
    /// It was restored to an earlier version.
    Restored,
}

impl RefEvent {
    /// Every event, in a fixed order.
    pub const ALL: [RefEvent; 5] = [
        Self::Created,
        Self::Updated,
        Self::Deleted,
        Self::KindChanged,
        Self::Restored,
    ];

    /// `created`, `updated`, `deleted`, `kind_changed` or `restored`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Deleted => "deleted",
            Self::KindChanged => "kind_changed",
            Self::Restored => "restored",
        }
    }

    /// The event named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// A named trigger as declared in a reference type or figment (before it is given a repo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredTrigger {
    /// Short name (`changed`).
    pub name: String,
    /// What it means.
    pub description: String,
    /// The built-in events it fires on.
    pub on: Vec<RefEvent>,
    /// The CEL condition that must also hold (`when`), if any.
    pub when: Option<Expression>,
}

/// An operation a figment adds to every reference type that includes it
/// (`refs.{repo}.{name}`), run by a handler registered with the broker under `handler`.
#[derive(Debug, Clone, PartialEq)]
pub struct FigmentOperation {
    /// Short name (`locate`).
    pub name: String,
    /// The figment that declares it.
    pub figment: String,
    /// What it does.
    pub description: String,
    /// The handler the broker runs it with (`geo.locate`).
    pub handler: String,
    /// Whether it changes state.
    pub mutation: bool,
    /// The scopes it needs, with `{repo}` standing for the including repo; `None`: the
    /// repo's read policy (update policy for a mutation).
    pub scopes: Option<Vec<String>>,
    /// JSON Schema of the input (a closed empty object when not declared).
    pub input: Value,
    /// JSON Schema of the output (anything when not declared).
    pub output: Value,
}

/// Where a reference type's trigger comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerSource {
    /// One of the five built-in events.
    BuiltIn,
    /// Declared on the reference type.
    RefType,
    /// Added by the named figment.
    Figment(String),
}

/// A trigger a reference type emits: `refs.{repo}.{name}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// Full name (`refs.site.created`, `refs.site.changed`).
    pub name: String,
    /// What it means.
    pub description: String,
    /// The built-in events it fires on (a built-in trigger fires on itself).
    pub on: Vec<RefEvent>,
    /// The CEL condition that must also hold, if any.
    pub when: Option<Expression>,
    /// Where it comes from.
    pub source: TriggerSource,
}

/// A kind of a reference type (`power.substation`).
#[derive(Debug, Clone)]
pub struct Kind {
    /// Dotted name.
    pub name: String,
    /// The parent kind, if declared.
    pub parent: Option<String>,
    /// What the kind is.
    pub description: String,
    /// The schema fragment it adds, if any.
    pub fragment: Option<Value>,
    /// The figments it includes directly.
    pub figments: Vec<String>,
    /// The kinds from the root ancestor down to this one (this one last).
    pub lineage: Vec<String>,
    /// The schema of a value of this kind: an `allOf` of `$ref`s into its reference type's
    /// `defs` (base, figments, each kind of the lineage).
    pub schema: Value,
    /// Every rule a value of this kind must satisfy: the type's, then those of each kind of
    /// the lineage and of the figments they include.
    pub rules: Vec<Arc<Rule>>,
    pub(crate) validator: jsonschema::Validator,
}

/// A reference type: one repo, its schema, kinds, policy and triggers.
#[derive(Debug, Clone)]
pub struct RefType {
    /// Repo name, unique in the platform (`site`).
    pub repo: String,
    /// The namespace its pointers live in (`sites`).
    pub namespace: String,
    /// The bundle that owns it.
    pub bundle: String,
    /// What a reference of this type is.
    pub description: String,
    /// Whether top-level properties nothing declares are rejected.
    pub closed: bool,
    /// The base schema fragment as written, if any.
    pub base: Option<Value>,
    /// Every fragment its schemas use, each once, with its `$id` (`urn:bver:...`): the base
    /// (key: the repo), figments (`figment:NAME`) and kinds (`kind:NAME`).
    pub defs: Map<String, Value>,
    /// The figments it includes directly.
    pub figments: Vec<String>,
    /// The schema of a value without a kind: an `allOf` of `$ref`s into [`Self::defs`]. See
    /// [`Self::schema_document`] for a standalone document.
    pub schema: Value,
    /// Its kinds, by name.
    pub kinds: BTreeMap<String, Kind>,
    /// Scopes per action.
    pub policy: Policy,
    /// Triggers it emits: the five built-ins first, then declared ones by name.
    pub triggers: Vec<Trigger>,
    /// Rules every value (of no kind) must satisfy: its own and its figments'. Values of a
    /// kind satisfy [`Kind::rules`].
    pub rules: Vec<Arc<Rule>>,
    /// Operations its figments add, by name.
    pub operations: Vec<FigmentOperation>,
    pub(crate) validator: jsonschema::Validator,
}

/// One way a value fails its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer into the value (empty for the value itself).
    pub pointer: String,
    /// What is wrong.
    pub message: String,
    /// Where the failing keyword is: `urn:bver:...#/pointer` inside the fragment that holds
    /// it (a JSON pointer into the composed schema when no fragment does).
    pub schema_path: String,
}

impl Violation {
    /// `{"pointer", "message", "schema_path"}`.
    pub fn to_json(&self) -> Value {
        json!({
            "pointer": self.pointer,
            "message": self.message,
            "schema_path": self.schema_path,
        })
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.pointer.is_empty() {
            "(root)"
        } else {
            &self.pointer
        };
        write!(f, "{at}: {}", self.message)
    }
}

impl RefType {
    /// Validate a value of this type, of `kind` (or of no kind). Valid values cost one pass
    /// of the precompiled validator; only invalid ones collect every violation.
    ///
    /// An unknown kind is one violation at the root naming the kinds that exist.
    pub fn validate(&self, kind: Option<&str>, value: &Value) -> Result<(), Vec<Violation>> {
        let validator = match kind {
            None => &self.validator,
            Some(k) => match self.kinds.get(k) {
                Some(k) => &k.validator,
                None => return Err(vec![self.unknown_kind(k)]),
            },
        };
        if validator.is_valid(value) {
            return Ok(());
        }
        Err(validator
            .iter_errors(value)
            .map(|e| Violation {
                pointer: e.instance_path().as_str().to_owned(),
                message: e.to_string(),
                schema_path: match e.absolute_keyword_location() {
                    Some(uri) => uri.as_str().to_owned(),
                    None => e.schema_path().as_str().to_owned(),
                },
            })
            .collect())
    }

    /// The rules a value of `kind` (or of no kind) must satisfy; empty for an unknown kind.
    pub fn rules_for(&self, kind: Option<&str>) -> &[Arc<Rule>] {
        match kind {
            None => &self.rules,
            Some(k) => self.kinds.get(k).map_or(&[], |k| &k.rules),
        }
    }

    /// Check a value that matches its schema against the rules of `kind`: the rules it
    /// breaks (see [`super::expr::check_rules`]).
    pub fn check_rules(&self, kind: Option<&str>, value: &Value) -> Vec<RuleFailure> {
        super::expr::check_rules(self.rules_for(kind), value)
    }

    fn unknown_kind(&self, kind: &str) -> Violation {
        let known: Vec<&str> = self.kinds.keys().map(String::as_str).collect();
        let message = if known.is_empty() {
            format!("unknown kind `{kind}`: repo `{}` has no kinds", self.repo)
        } else {
            format!(
                "unknown kind `{kind}` for repo `{}`; its kinds are: {}",
                self.repo,
                known.join(", ")
            )
        };
        Violation {
            pointer: String::new(),
            message,
            schema_path: String::new(),
        }
    }

    /// The kind named `name`.
    pub fn kind(&self, name: &str) -> Option<&Kind> {
        self.kinds.get(name)
    }

    /// The schema body for values of `kind` (or of no kind); `None` for an unknown kind. Its
    /// `$ref`s point into [`Self::defs`].
    pub fn schema_for(&self, kind: Option<&str>) -> Option<&Value> {
        match kind {
            None => Some(&self.schema),
            Some(k) => self.kinds.get(k).map(|k| &k.schema),
        }
    }

    /// A standalone JSON Schema 2020-12 document for values of `kind` (or of no kind): the
    /// body with the `$defs` it refers to. `None` for an unknown kind.
    pub fn schema_document(&self, kind: Option<&str>) -> Option<Value> {
        self.schema_for(kind)
            .map(|body| super::schema::document(&self.defs, body))
    }

    /// The scopes `action` needs on this type.
    pub fn scopes(&self, action: Action) -> &[String] {
        self.policy.scopes(action)
    }
}

/// The compiled domain of one platform: one core bundle, any number of plugins.
#[derive(Debug, Clone)]
pub struct Domain {
    /// Core first, then plugins by name.
    pub(crate) bundles: Vec<Bundle>,
    pub(crate) ref_types: BTreeMap<String, RefType>,
    /// Namespace → index into `bundles`.
    pub(crate) namespaces: BTreeMap<String, usize>,
    pub(crate) figments: BTreeMap<String, Figment>,
    pub(crate) contracts: BTreeMap<String, ContractPackage>,
    pub(crate) operations: Vec<OperationSpec>,
    pub(crate) op_index: HashMap<String, usize>,
}

impl Domain {
    /// Every bundle: the core app first, then plugins by name.
    pub fn bundles(&self) -> &[Bundle] {
        &self.bundles
    }

    /// The bundle named `name`.
    pub fn bundle(&self, name: &str) -> Option<&Bundle> {
        self.bundles.iter().find(|b| b.name == name)
    }

    /// The core app bundle.
    pub fn core(&self) -> &Bundle {
        // `compile` guarantees exactly one core bundle, sorted first.
        &self.bundles[0]
    }

    /// The reference type of `repo`.
    pub fn ref_type(&self, repo: &str) -> Option<&RefType> {
        self.ref_types.get(repo)
    }

    /// Every reference type, by repo name.
    pub fn ref_types(&self) -> impl ExactSizeIterator<Item = &RefType> {
        self.ref_types.values()
    }

    /// The bundle that owns namespace `ns` on this platform.
    pub fn owner_of_namespace(&self, ns: &str) -> Option<&Bundle> {
        self.namespaces.get(ns).map(|&i| &self.bundles[i])
    }

    /// Every namespace this platform owns, with its bundle, by namespace name.
    pub fn namespaces(&self) -> impl Iterator<Item = (&str, &Bundle)> {
        self.namespaces
            .iter()
            .map(|(ns, &i)| (ns.as_str(), &self.bundles[i]))
    }

    /// The reference types in namespace `ns`, by repo name.
    pub fn repos_in(&self, ns: &str) -> impl Iterator<Item = &RefType> {
        self.ref_types.values().filter(move |r| r.namespace == ns)
    }

    /// Every figment, by name.
    pub fn figments(&self) -> impl ExactSizeIterator<Item = &Figment> {
        self.figments.values()
    }

    /// The figment named `name`.
    pub fn figment(&self, name: &str) -> Option<&Figment> {
        self.figments.get(name)
    }

    /// Every contract package loaded, by name.
    pub fn contracts(&self) -> impl ExactSizeIterator<Item = &ContractPackage> {
        self.contracts.values()
    }

    /// The contract package named `name`.
    pub fn contract(&self, name: &str) -> Option<&ContractPackage> {
        self.contracts.get(name)
    }

    /// Every generated operation: per repo in repo order, then the resolver operations.
    pub fn operations(&self) -> &[OperationSpec] {
        &self.operations
    }

    /// The operation named `name` (`refs.site.create`, `bver.get`).
    pub fn operation(&self, name: &str) -> Option<&OperationSpec> {
        self.op_index.get(name).map(|&i| &self.operations[i])
    }
}
