//! The six BVER primitives' contracts: definition, invocation, result (spec/primitive-contracts.md).
//!
//! - Definition: [`PrimitiveSpec`] says what a primitive is: its [`PrimitiveKind`], version,
//!   schemas, whether it mutates state, its [`ExecutionMode`] and [`Determinism`].
//! - Invocation: [`PrimitiveRequest`] is what a caller sends: subject, evidence and state
//!   pointers, the input, constraints, a [`Budget`] and the idempotency key that mutating and
//!   asynchronous invocations must carry ([`PrimitiveRequest::validate_for`]).
//! - Result: [`PrimitiveResult`] is the common envelope every primitive returns, whatever its
//!   payload: a [`PrimitiveStatus`], the output, [`Confidence`], explicit [`StateEffect`]s,
//!   [`Diagnostic`]s, [`Followup`]s and [`Metrics`].
//! - Failure: [`PrimitiveError`] is the crate's [`BverError`].
//!
//! The runtime context (the spec's third layer) is not a contract type: it is supplied by the
//! node, in process, and never serialized.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use crate::error::PrimitiveError;
use crate::error::{BverError, ErrorCode, Phase};
use crate::ops::{OperationKind, validate_name};
use crate::pointer::RefPtr;
use crate::version::{ChangeType, Diff};

/// The six primitive kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PrimitiveKind {
    /// Turns unstructured input into structured observations, candidates or facts.
    Interpreter,
    /// Maps candidates, aliases or references to canonical identities or bindings.
    Resolver,
    /// Produces candidate artifacts, configurations, structures or patches.
    Generator,
    /// Checks artifacts, states or transitions against rules, invariants or standards.
    Validator,
    /// Models system behaviour over time, conditions or coupled interactions.
    Simulator,
    /// Scores, compares and ranks alternatives against objectives.
    Evaluator,
}

impl PrimitiveKind {
    /// Every kind, in the order of the spec's expected chain.
    pub const ALL: [PrimitiveKind; 6] = [
        Self::Interpreter,
        Self::Resolver,
        Self::Generator,
        Self::Validator,
        Self::Simulator,
        Self::Evaluator,
    ];

    /// The serialized, stable name (`interpreter`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Interpreter => "interpreter",
            Self::Resolver => "resolver",
            Self::Generator => "generator",
            Self::Validator => "validator",
            Self::Simulator => "simulator",
            Self::Evaluator => "evaluator",
        }
    }
}

impl fmt::Display for PrimitiveKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a primitive answers in the call, runs as a job, or either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionMode {
    /// Answers within the call.
    Sync,
    /// Runs as a job; the call returns a job handle.
    Async,
    /// The runtime chooses per invocation (for example by input size or budget).
    Either,
}

/// How reproducible a primitive's output is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Determinism {
    /// The same input gives the same output; outputs may be cached.
    Deterministic,
    /// Output varies within declared bounds (sampling, heuristics); its shape is stable.
    BoundedNondeterministic,
    /// An agent (a model or a person) steers the work; replays may differ.
    AgentGuided,
}

/// The definition contract of a primitive: what it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PrimitiveSpec {
    /// Stable dotted identifier (`electrical.symbols.interpret`, `site.routing.evaluate`),
    /// with the grammar of operation names: two or more dot-separated `[a-z][a-z0-9_]*`
    /// segments.
    pub name: String,
    /// Which of the six primitives this is.
    pub primitive_kind: PrimitiveKind,
    /// Semantic version of the definition contract (`1.2.0`), not of a transport endpoint.
    pub version: String,
    /// Short, stable description of what the primitive does.
    #[serde(default)]
    pub description: String,
    /// The domain pack or semantic scope (`electrical`, `structural`, `generic`).
    pub domain_scope: String,
    /// JSON Schema (2020-12) of the invocation payload (the request's `input`).
    #[serde(default = "any_schema")]
    pub input_schema: Value,
    /// JSON Schema (2020-12) of the primitive-specific payload (the result's `output`).
    #[serde(default = "any_schema")]
    pub output_schema: Value,
    /// Whether an invocation can change persistent or canonical state. A primitive that
    /// declares `false` runs with a store handle that cannot write.
    #[serde(default)]
    pub mutates_state: bool,
    /// Sync, async or either.
    pub execution_mode: ExecutionMode,
    /// How reproducible the output is.
    pub determinism: Determinism,
    /// Whether an invocation must carry evidence references besides its input.
    #[serde(default)]
    pub requires_evidence: bool,
    /// Whether a partial result is a valid outcome.
    #[serde(default)]
    pub supports_partial: bool,
    /// Discoverability tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The authorization action when exposed through the runtime (`interpret`, `run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The authorization resource when exposed through the runtime (`drawings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
}

fn any_schema() -> Value {
    Value::Object(Map::new())
}

fn invalid_definition(name: &str, reason: &str, message: String) -> BverError {
    BverError::new(ErrorCode::InvalidDefinition, Phase::Configuration, message)
        .with_details(serde_json::json!({ "name": name, "reason": reason }))
}

impl PrimitiveSpec {
    /// A new definition with a checked name, schemas that accept anything, no mutation, no
    /// evidence requirement, no partial results, no tags and no authorization metadata.
    pub fn new(
        name: impl Into<String>,
        primitive_kind: PrimitiveKind,
        version: impl Into<String>,
        domain_scope: impl Into<String>,
        execution_mode: ExecutionMode,
        determinism: Determinism,
    ) -> Result<Self, BverError> {
        let spec = Self {
            name: name.into(),
            primitive_kind,
            version: version.into(),
            description: String::new(),
            domain_scope: domain_scope.into(),
            input_schema: any_schema(),
            output_schema: any_schema(),
            mutates_state: false,
            execution_mode,
            determinism,
            requires_evidence: false,
            supports_partial: false,
            tags: Vec::new(),
            action: None,
            resource: None,
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Checks the definition: the name grammar, a semantic version, a non-empty domain
    /// scope, schemas that are objects or booleans, non-empty tags.
    ///
    /// # Errors
    ///
    /// An `invalid_definition` error (phase `configuration`) whose details name the `reason`.
    pub fn validate(&self) -> Result<(), BverError> {
        validate_name(&self.name)?;
        let fail =
            |reason: &str, message: String| Err(invalid_definition(&self.name, reason, message));
        if !is_semver(&self.version) {
            return fail(
                "bad_version",
                format!(
                    "primitive `{}`: version {:?} is not a semantic version (MAJOR.MINOR.PATCH)",
                    self.name, self.version
                ),
            );
        }
        if self.domain_scope.trim().is_empty() {
            return fail(
                "empty_domain_scope",
                format!("primitive `{}` has an empty domain scope", self.name),
            );
        }
        for (which, schema) in [
            ("input", &self.input_schema),
            ("output", &self.output_schema),
        ] {
            if !(schema.is_object() || schema.is_boolean()) {
                return fail(
                    "bad_schema",
                    format!(
                        "the {which} schema of primitive `{}` is neither an object nor a boolean",
                        self.name
                    ),
                );
            }
        }
        if self.tags.iter().any(|t| t.trim().is_empty()) {
            return fail(
                "empty_tag",
                format!("primitive `{}` lists an empty tag", self.name),
            );
        }
        Ok(())
    }

    /// The operation kind this primitive projects to by default (the spec's mapping table):
    /// an async primitive is a task; a simulator is a task unless it declares `sync`; a
    /// generator is a command when it can answer synchronously; every other kind is a query
    /// when it can answer synchronously.
    pub fn projected_operation_kind(&self) -> OperationKind {
        match (self.execution_mode, self.primitive_kind) {
            (ExecutionMode::Async, _) => OperationKind::Task,
            (ExecutionMode::Either, PrimitiveKind::Simulator) => OperationKind::Task,
            (_, PrimitiveKind::Generator) => OperationKind::Command,
            (_, _) if self.mutates_state => OperationKind::Command,
            _ => OperationKind::Query,
        }
    }

    /// Whether an invocation must carry an idempotency key: when the primitive mutates
    /// state, is asynchronous, or (`run_async`) this invocation of an `either` primitive runs
    /// as a job.
    pub fn requires_idempotency_key(&self, run_async: bool) -> bool {
        self.mutates_state || self.execution_mode == ExecutionMode::Async || run_async
    }
}

/// Whether `s` is a semantic version: `MAJOR.MINOR.PATCH` (no leading zeros), optionally
/// followed by `-prerelease` and `+build` of dot-separated `[0-9A-Za-z-]+` identifiers.
fn is_semver(s: &str) -> bool {
    let (rest, build) = match s.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (s, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let idents_ok = |text: &str| {
        text.split('.')
            .all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    };
    let numbers: Vec<&str> = core.split('.').collect();
    numbers.len() == 3
        && numbers.iter().all(|n| {
            !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
                && (n.len() == 1 || !n.starts_with('0'))
        })
        && pre.is_none_or(idents_ok)
        && build.is_none_or(idents_ok)
}

/// Optional limits on what an invocation may spend. Every field is optional; absent means
/// no limit beyond the runtime's own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Budget {
    /// Wall-clock limit, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration_ms: Option<u64>,
    /// Model token limit, for agent-guided or model-backed primitives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Cost limit, in the unit the platform bills in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost: Option<f64>,
    /// Limit on the number of items (candidates, observations, steps) produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_items: Option<u64>,
}

impl Budget {
    /// Whether no limit is set.
    pub fn is_unlimited(&self) -> bool {
        self == &Self::default()
    }
}

/// The invocation contract: what a caller sends to run a primitive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PrimitiveRequest {
    /// Correlation identifier for tracing and replay.
    pub request_id: String,
    /// The primitive to run (its spec's `name`).
    pub primitive_name: String,
    /// The primary artifacts, entities, graphs or models acted on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_refs: Vec<RefPtr>,
    /// The primitive-specific payload, valid against the spec's `input_schema`.
    #[serde(default)]
    pub input: Value,
    /// Supporting evidence, observations or prior outputs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence_refs: Vec<RefPtr>,
    /// A graph, workflow, scene, document or runtime state object the call works against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_ref: Option<RefPtr>,
    /// Hard limits: schema, safety, scope or domain policy constraints, by name.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub constraints: Map<String, Value>,
    /// Compute, latency, token or cost limits.
    #[serde(default, skip_serializing_if = "Budget::is_unlimited")]
    pub budget: Budget,
    /// Required for mutating or asynchronous invocations; a retry with the same key and
    /// payload returns the first answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Caller metadata: origin, correlation, audit hints.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

impl PrimitiveRequest {
    /// A request with no pointers, constraints, budget, idempotency key or metadata.
    pub fn new(
        request_id: impl Into<String>,
        primitive_name: impl Into<String>,
        input: Value,
    ) -> Self {
        Self {
            request_id: request_id.into(),
            primitive_name: primitive_name.into(),
            subject_refs: Vec::new(),
            input,
            evidence_refs: Vec::new(),
            state_ref: None,
            constraints: Map::new(),
            budget: Budget::default(),
            idempotency_key: None,
            metadata: Map::new(),
        }
    }

    /// Sets the idempotency key.
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Checks the request against the primitive it invokes, before any schema validation:
    /// a non-empty request id, the right primitive name, an execution mode the primitive
    /// allows (`run_async`: whether this invocation runs as a job), an idempotency key when
    /// the primitive mutates state or runs asynchronously
    /// ([`PrimitiveSpec::requires_idempotency_key`]), and evidence when the primitive
    /// requires it.
    ///
    /// # Errors
    ///
    /// A `malformed_request` error (phase `input_validation`) whose details carry a `reason`:
    /// `empty_request_id`, `wrong_primitive`, `idempotency_key_required`,
    /// `evidence_required`, `async_only` or `sync_only`.
    pub fn validate_for(&self, spec: &PrimitiveSpec, run_async: bool) -> Result<(), BverError> {
        let fail = |reason: &str, message: String| {
            Err(
                BverError::new(ErrorCode::MalformedRequest, Phase::InputValidation, message)
                    .with_details(serde_json::json!({
                        "reason": reason,
                        "primitive": spec.name,
                        "request_id": self.request_id,
                    })),
            )
        };
        if self.request_id.trim().is_empty() {
            return fail("empty_request_id", "the request has no request_id".into());
        }
        if self.primitive_name != spec.name {
            return fail(
                "wrong_primitive",
                format!(
                    "the request names primitive `{}`, not `{}`",
                    self.primitive_name, spec.name
                ),
            );
        }
        match (spec.execution_mode, run_async) {
            (ExecutionMode::Async, false) => {
                return fail(
                    "async_only",
                    format!("primitive `{}` only runs as a job", spec.name),
                );
            }
            (ExecutionMode::Sync, true) => {
                return fail(
                    "sync_only",
                    format!("primitive `{}` cannot run as a job", spec.name),
                );
            }
            _ => {}
        }
        if spec.requires_idempotency_key(run_async)
            && self
                .idempotency_key
                .as_deref()
                .is_none_or(|k| k.trim().is_empty())
        {
            let why = if spec.mutates_state {
                "mutates state"
            } else {
                "runs asynchronously"
            };
            return fail(
                "idempotency_key_required",
                format!(
                    "primitive `{}` {why}: the request needs an idempotency key",
                    spec.name
                ),
            );
        }
        if spec.requires_evidence && self.evidence_refs.is_empty() {
            return fail(
                "evidence_required",
                format!("primitive `{}` requires evidence references", spec.name),
            );
        }
        Ok(())
    }
}

/// The outcome of an invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PrimitiveStatus {
    /// The primitive did all it was asked.
    Success,
    /// A valid, explicit partial result (only for primitives that support it).
    Partial,
    /// The primitive refused the request (input, policy or constraints); nothing ran.
    Rejected,
    /// The primitive ran and failed.
    Failed,
}

/// How serious a diagnostic is. Hard failures are distinct from advisory findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// A hard failure: a violated rule, invariant or constraint.
    Error,
    /// An advisory finding that does not fail the result.
    Warning,
    /// Information.
    Info,
}

/// A structured warning, issue or repair hint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Diagnostic {
    /// How serious it is.
    pub severity: Severity,
    /// Stable machine-readable identifier of the finding (`clearance_too_small`).
    pub code: String,
    /// Human-readable description.
    pub message: String,
    /// The reference or attribute the finding is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer: Option<RefPtr>,
    /// Where in a document or payload the finding is, when a pointer cannot say it (an RFC
    /// 6901 JSON Pointer into the input or output, a page and region of a drawing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The violated rule, standard clause or policy, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// How to repair it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A diagnostic without pointer, location, rule or hint.
    pub fn new(severity: Severity, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity,
            code: code.into(),
            message: message.into(),
            pointer: None,
            location: None,
            rule: None,
            hint: None,
        }
    }
}

/// Confidence and ambiguity markers, for probabilistic or ambiguous reasoning.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Confidence {
    /// Overall confidence from 0 (none) to 1 (certain), when the primitive can score it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Whether several readings remain viable (they are then listed in the output).
    #[serde(default)]
    pub ambiguous: bool,
    /// What the confidence rests on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
}

/// Whether a state effect was applied or only proposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EffectMode {
    /// A proposed change for a caller or a later step to apply (the default for generators).
    Proposed,
    /// A change the primitive committed (only for primitives that declare `mutates_state`).
    Applied,
}

/// An explicit mutation, patch or proposed change of one reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StateEffect {
    /// The reference changed or to change.
    pub pointer: RefPtr,
    /// Applied or proposed.
    pub mode: EffectMode,
    /// The kind of change.
    pub change: ChangeType,
    /// The change as an RFC 6902 patch of the reference's value.
    #[serde(default)]
    pub diff: Diff,
    /// The version written, for an applied change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// A suggested next primitive call or orchestration step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Followup {
    /// The primitive or operation to call next (`site.routing.evaluate`).
    pub name: String,
    /// Why.
    #[serde(default)]
    pub reason: String,
    /// A suggested input for that call.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub input: Value,
}

/// Timing, cost and scale of an invocation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Metrics {
    /// Wall-clock time, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Model tokens used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// Cost, in the unit the platform bills in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// Items processed or produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<u64>,
    /// Other primitive-specific measures, by name.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

impl Metrics {
    /// Whether nothing is measured.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// The result contract: the common envelope every primitive returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PrimitiveResult {
    /// Echo of the invocation's request id.
    pub request_id: String,
    /// The primitive that produced the result.
    pub primitive_name: String,
    /// Its kind.
    pub primitive_kind: PrimitiveKind,
    /// The version of its definition, for replay and audit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primitive_version: Option<String>,
    /// Success, partial, rejected or failed.
    pub status: PrimitiveStatus,
    /// Short human-readable summary (never the only result).
    #[serde(default)]
    pub summary: String,
    /// The primitive-specific payload, valid against the spec's `output_schema`.
    #[serde(default)]
    pub output: Value,
    /// Confidence and ambiguity, when the reasoning is probabilistic or ambiguous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<Confidence>,
    /// Evidence produced or consumed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence_refs: Vec<RefPtr>,
    /// Artifacts created or inspected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifact_refs: Vec<RefPtr>,
    /// Mutations applied or proposed, explicitly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state_effects: Vec<StateEffect>,
    /// Structured warnings, issues and repair hints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<Diagnostic>,
    /// Suggested next calls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub followups: Vec<Followup>,
    /// Timing, cost and scale.
    #[serde(default, skip_serializing_if = "Metrics::is_empty")]
    pub metrics: Metrics,
    /// The failure, for a `rejected` or `failed` result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<PrimitiveError>,
}

impl PrimitiveResult {
    /// A `success` result for `request`, produced by `spec`, with this summary and output.
    pub fn success(
        request: &PrimitiveRequest,
        spec: &PrimitiveSpec,
        summary: impl Into<String>,
        output: Value,
    ) -> Self {
        Self {
            request_id: request.request_id.clone(),
            primitive_name: spec.name.clone(),
            primitive_kind: spec.primitive_kind,
            primitive_version: Some(spec.version.clone()),
            status: PrimitiveStatus::Success,
            summary: summary.into(),
            output,
            confidence: None,
            evidence_refs: Vec::new(),
            artifact_refs: Vec::new(),
            state_effects: Vec::new(),
            diagnostics: Vec::new(),
            followups: Vec::new(),
            metrics: Metrics::default(),
            error: None,
        }
    }

    /// A `failed` result (or `rejected`, for an error in the input validation or
    /// authorization phases) carrying `error`.
    pub fn failure(request: &PrimitiveRequest, spec: &PrimitiveSpec, error: BverError) -> Self {
        let status = match error.phase {
            Phase::InputValidation | Phase::Authentication | Phase::Authorization => {
                PrimitiveStatus::Rejected
            }
            _ => PrimitiveStatus::Failed,
        };
        let mut result = Self::success(request, spec, error.message.clone(), Value::Null);
        result.status = status;
        result.error = Some(error);
        result
    }

    /// Checks that the result keeps its primitive's contract: same name and kind, `partial`
    /// only when the spec supports it, applied state effects only from a mutating primitive,
    /// an error exactly when the status is `rejected` or `failed`.
    ///
    /// # Errors
    ///
    /// `mutation_forbidden` for an applied effect of a non-mutating primitive; `internal`
    /// (phase `projection`) for any other breach, with a `reason` in the details.
    pub fn validate_for(&self, spec: &PrimitiveSpec) -> Result<(), BverError> {
        let fail = |code: ErrorCode, reason: &str, message: String| {
            Err(BverError::new(code, Phase::Projection, message)
                .with_details(serde_json::json!({
                    "reason": reason,
                    "primitive": spec.name,
                    "request_id": self.request_id,
                }))
                .retryable(false))
        };
        if self.primitive_name != spec.name || self.primitive_kind != spec.primitive_kind {
            return fail(
                ErrorCode::Internal,
                "wrong_primitive",
                format!(
                    "result of `{}` ({}) returned for primitive `{}` ({})",
                    self.primitive_name, self.primitive_kind, spec.name, spec.primitive_kind
                ),
            );
        }
        if self.status == PrimitiveStatus::Partial && !spec.supports_partial {
            return fail(
                ErrorCode::Internal,
                "partial_not_supported",
                format!("primitive `{}` returned a partial result", spec.name),
            );
        }
        if !spec.mutates_state
            && self
                .state_effects
                .iter()
                .any(|e| e.mode == EffectMode::Applied)
        {
            return fail(
                ErrorCode::MutationForbidden,
                "undeclared_mutation",
                format!(
                    "primitive `{}` does not declare mutates_state but applied a change",
                    spec.name
                ),
            );
        }
        let failed = matches!(
            self.status,
            PrimitiveStatus::Rejected | PrimitiveStatus::Failed
        );
        if failed != self.error.is_some() {
            return fail(
                ErrorCode::Internal,
                "error_status_mismatch",
                format!(
                    "primitive `{}` returned status {:?} {} an error",
                    spec.name,
                    self.status,
                    if failed { "without" } else { "with" }
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver() {
        for ok in [
            "0.0.0",
            "1.2.3",
            "10.20.30",
            "1.0.0-alpha.1",
            "1.0.0+build.5",
            "1.0.0-rc-1+x",
        ] {
            assert!(is_semver(ok), "{ok}");
        }
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "01.2.3",
            "1.2.x",
            "1.2.3-",
            "1.2.3+",
            "1.2.3-a..b",
            "v1.2.3",
        ] {
            assert!(!is_semver(bad), "{bad}");
        }
    }

    #[test]
    fn projection_follows_the_mapping_table() {
        let kind = |k, mode, mutates| {
            let mut s = PrimitiveSpec::new(
                "a.b",
                k,
                "1.0.0",
                "generic",
                mode,
                Determinism::Deterministic,
            )
            .unwrap();
            s.mutates_state = mutates;
            s.projected_operation_kind()
        };
        use ExecutionMode::*;
        use OperationKind as O;
        use PrimitiveKind::*;
        assert_eq!(kind(Simulator, Either, false), O::Task);
        assert_eq!(kind(Simulator, Sync, false), O::Query);
        assert_eq!(kind(Generator, Sync, false), O::Command);
        assert_eq!(kind(Generator, Async, false), O::Task);
        assert_eq!(kind(Validator, Either, false), O::Query);
        assert_eq!(kind(Resolver, Sync, true), O::Command);
        assert_eq!(kind(Evaluator, Async, false), O::Task);
    }
}
