//! The `bver.manifest.json` capability contract of a bundle.
//!
//! A [`Manifest`] lists what one bundle brings to its platform: its reference types
//! ([`ReferenceSpec`]: schemas, kinds, policies), the operations generated for them, the
//! triggers they emit, the namespaces it serves and those it resolves elsewhere, the figments
//! and contract packages it uses, and its jobs, orchestrators, channels and primitives. The
//! node renders it deterministically (`docs/domain.md`, "Manifest"); `content_hash` is the
//! SHA-256 (lowercase hex) of the canonical JSON of the manifest without `content_hash`
//! (computed by the node: this crate does no cryptography).
//!
//! Deserialization is lenient so that a reader keeps working as the format grows: every
//! collection defaults to empty, unknown fields are ignored, and the sections whose format is
//! not fixed yet (jobs, orchestrators, channels) are kept as raw JSON values.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ops::OperationSpec;
use crate::primitive::PrimitiveSpec;
use crate::version::ChangeType;

/// The format identifier of the manifests this module describes.
pub const MANIFEST_FORMAT: &str = "bver.manifest/1";

/// The capability contract of one bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Manifest {
    /// The format identifier, `bver.manifest/1`.
    #[serde(default)]
    pub format: String,
    /// Which bundle this is.
    pub bundle: BundleInfo,
    /// Its reference types, in definition order.
    #[serde(default)]
    pub references: Vec<ReferenceSpec>,
    /// The operations generated for its reference types (the platform-wide resolver
    /// operations are not listed per bundle).
    #[serde(default)]
    pub operations: Vec<OperationSpec>,
    /// The triggers its reference types emit, built-in and declared.
    #[serde(default)]
    pub triggers: Vec<TriggerSpec>,
    /// Its job definitions (format not fixed yet: raw JSON).
    #[serde(default)]
    pub jobs: Vec<Value>,
    /// Its orchestrators (format not fixed yet: raw JSON).
    #[serde(default)]
    pub orchestrators: Vec<Value>,
    /// Its EAGER channels (format not fixed yet: raw JSON).
    #[serde(default)]
    pub channels: Vec<Value>,
    /// Its primitive definitions.
    #[serde(default)]
    pub primitives: Vec<PrimitiveSpec>,
    /// The namespaces whose pointers it serves and those it resolves elsewhere.
    #[serde(default)]
    pub pointers: PointerScope,
    /// The figments its reference types include.
    #[serde(default)]
    pub figments: Vec<FigmentUse>,
    /// The contract packages it uses, with their versions.
    #[serde(default)]
    pub contracts: Vec<ContractPackage>,
    /// SHA-256 (lowercase hex) of the canonical JSON of the manifest without this field.
    #[serde(default)]
    pub content_hash: String,
}

impl Manifest {
    /// The operation named `name`, if the bundle has it.
    pub fn operation(&self, name: &str) -> Option<&OperationSpec> {
        self.operations.iter().find(|op| op.name == name)
    }

    /// The reference type of `repo`, if the bundle has it.
    pub fn reference(&self, repo: &str) -> Option<&ReferenceSpec> {
        self.references.iter().find(|r| r.repo == repo)
    }
}

/// Whether a bundle is the platform's core app or a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BundleRole {
    /// The core app (exactly one per platform).
    Core,
    /// A plugin.
    Plugin,
}

/// A bundle's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BundleInfo {
    /// Bundle name (`grid`).
    pub name: String,
    /// Semantic version of the bundle (`1.0.0`).
    pub version: String,
    /// Core app or plugin.
    pub role: BundleRole,
    /// What the bundle is for.
    #[serde(default)]
    pub description: String,
}

/// A reference type (a repo) as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReferenceSpec {
    /// The repo name, unique within the platform (`site`).
    pub repo: String,
    /// The namespace its references live in (`sites`).
    pub namespace: String,
    /// What its references are.
    #[serde(default)]
    pub description: String,
    /// Whether values reject members no schema declares.
    #[serde(default)]
    pub closed: bool,
    /// The figments included in its base schema.
    #[serde(default)]
    pub figments: Vec<String>,
    /// The schema fragments its schemas refer to (`$ref` by `$id`), by name.
    #[serde(default)]
    pub defs: Map<String, Value>,
    /// The compiled JSON Schema of a value without a kind.
    #[serde(default)]
    pub schema: Value,
    /// Its kinds, in definition order.
    #[serde(default)]
    pub kinds: Vec<KindSpec>,
    /// The scopes each action needs.
    #[serde(default)]
    pub policy: RefPolicy,
}

/// A kind of a reference type (`power.substation`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KindSpec {
    /// The dotted kind name.
    pub name: String,
    /// The parent kind whose schema this one extends, if any.
    #[serde(default)]
    pub parent: Option<String>,
    /// What the kind means.
    #[serde(default)]
    pub description: String,
    /// The kind's ancestors and itself, root first (`["power", "power.substation"]`).
    #[serde(default)]
    pub lineage: Vec<String>,
    /// The figments the kind adds.
    #[serde(default)]
    pub figments: Vec<String>,
    /// The compiled JSON Schema of a value of this kind.
    #[serde(default)]
    pub schema: Value,
}

/// The auth policy of a reference type: the scopes a principal needs (all of them) per action.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RefPolicy {
    /// Scopes for reads (get, list, history, diff).
    #[serde(default)]
    pub read: Vec<String>,
    /// Scopes for create.
    #[serde(default)]
    pub create: Vec<String>,
    /// Scopes for updates (patch, replace, change_kind, restore).
    #[serde(default)]
    pub update: Vec<String>,
    /// Scopes for delete.
    #[serde(default)]
    pub delete: Vec<String>,
}

/// A trigger a reference type emits: `refs.{repo}.{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TriggerSpec {
    /// Full name (`refs.site.created`, `refs.drawing.revised`).
    pub name: String,
    /// What it means.
    #[serde(default)]
    pub description: String,
    /// The changes it fires on (a built-in trigger fires on its own change).
    #[serde(default)]
    pub on: Vec<ChangeType>,
    /// Where it comes from: `built_in`, `declared` (on the reference type) or
    /// `figment:{name}` (added by that figment).
    #[serde(default)]
    pub source: String,
}

/// The namespaces a bundle serves and those it resolves elsewhere.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PointerScope {
    /// The namespaces it owns, each with its repos.
    #[serde(default)]
    pub serves: Vec<ServedNamespace>,
    /// Namespaces owned elsewhere whose pointers its values hold.
    #[serde(default)]
    pub resolves: Vec<String>,
}

/// A namespace a bundle owns and the repos in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ServedNamespace {
    /// The namespace (`sites`).
    pub namespace: String,
    /// Its repos, sorted.
    #[serde(default)]
    pub repos: Vec<String>,
}

/// A figment a bundle's reference types include.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FigmentUse {
    /// The figment's name (`geo`).
    pub name: String,
    /// Its version (a bundle's inline figment has the bundle's version).
    #[serde(default)]
    pub version: String,
    /// What it adds.
    #[serde(default)]
    pub description: String,
    /// Whether it is a shared figment (defined outside any bundle) rather than inline.
    #[serde(default)]
    pub shared: bool,
}

/// A contract package a bundle uses: `name@version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ContractPackage {
    /// Package name (`grid-types`).
    pub name: String,
    /// Semantic version (`1.2.0`).
    pub version: String,
}
