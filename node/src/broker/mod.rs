//! The operation broker: the one path by which every surface (REST, MCP, CLI, EAGER,
//! orchestrator steps, primitives) runs an operation.
//!
//! [`Broker::invoke`] runs, in this order and for every operation alike:
//! 1. look the operation up in the registry (unknown: `not_found`, with the closest names);
//! 2. validate the input against the operation's JSON Schema (`schema_violation`, each
//!    violation with its JSON pointer and message);
//! 3. check the caller's scopes: the operation's declared scopes, or for the resolver
//!    operations the read scopes of the repo the pointer addresses (`forbidden`);
//! 4. the mutation gate: a broker handle made with [`Broker::read_only`] refuses any
//!    operation that mutates state (`mutation_forbidden`);
//! 5. idempotency: an `Idempotency-Key` is bound to the principal, the operation and a
//!    digest of the input; a repeat returns the first answer, a different input under the
//!    same key is `idempotency_mismatch`;
//! 6. execute against the store, whose writer validates the resulting value against the
//!    reference type's schema for its kind and then its CEL rules (a patch is validated
//!    after it is applied); an operation a figment adds runs its registered handler
//!    ([`handlers`]) instead, and its answer is checked against its output schema.
//!
//! Every failure is the shared [`BverError`].
//!
//! **Architecture Invariant:** only the broker calls the store's write path, and the broker
//! never skips a step: there is no "internal" bypass of scopes or validation.

mod exec;
pub mod handlers;
mod local;

use std::collections::HashMap;
use std::sync::Arc;

use bver_auth::{Principal, Scope};
use bver_contracts::{BverError, ErrorCode, Phase};
use bver_resolver::Resolver;
use serde_json::{Value, json};

use crate::domain::ops::OperationSpec;
use crate::domain::{Action, Domain};
use crate::store::Store;

pub use exec::rfc3339;
pub use handlers::{Handler, HandlerCall, Handlers};
pub use local::LocalAdapter;

/// Whether a broker handle may run operations that mutate state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Queries and commands.
    ReadWrite,
    /// Queries only: a mutating operation fails with `mutation_forbidden`.
    ReadOnly,
}

/// One operation call.
#[derive(Debug, Clone)]
pub struct Call {
    /// The operation (`refs.site.create`).
    pub operation: String,
    /// Its input, checked against the operation's input schema.
    pub input: Value,
    /// Correlation id, recorded in the provenance of every version the call makes.
    pub request_id: String,
    /// Optional idempotency key for mutations.
    pub idempotency_key: Option<String>,
}

impl Call {
    /// A call with a fresh request id and no idempotency key.
    pub fn new(operation: impl Into<String>, input: Value) -> Self {
        Self {
            operation: operation.into(),
            input,
            request_id: format!("req-{:016x}", rand::random::<u64>()),
            idempotency_key: None,
        }
    }

    /// Set the idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Set the request id.
    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = id.into();
        self
    }
}

/// What an operation does, decided once when the broker is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Create,
    Get,
    Patch,
    Replace,
    Delete,
    List,
    History,
    Diff,
    Restore,
    ChangeKind,
    ResolveGet,
    Resolve,
    Exists,
    ResolveList,
    ListRefs,
    /// An operation a figment adds, run by its handler.
    Handler,
}

pub(crate) struct Compiled {
    pub(crate) spec: OperationSpec,
    pub(crate) input: jsonschema::Validator,
    pub(crate) scopes: Vec<Scope>,
    pub(crate) repo: Option<String>,
    pub(crate) verb: Verb,
    /// For [`Verb::Handler`]: the handler and the compiled output schema.
    pub(crate) handler: Option<(Handler, jsonschema::Validator)>,
}

pub(crate) struct Inner {
    pub(crate) domain: Arc<Domain>,
    pub(crate) store: Store,
    pub(crate) resolver: Resolver,
    pub(crate) ops: HashMap<String, Compiled>,
    /// Read scopes per repo, parsed once.
    pub(crate) read_scopes: HashMap<String, Vec<Scope>>,
}

/// The operation broker. Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    pub(crate) inner: Arc<Inner>,
    gate: Gate,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("operations", &self.inner.ops.len())
            .field("gate", &self.gate)
            .finish()
    }
}

fn definition_error(message: String) -> BverError {
    BverError::new(ErrorCode::InvalidDefinition, Phase::Configuration, message)
}

fn parse_scopes(scopes: &[String], whose: &str) -> Result<Vec<Scope>, BverError> {
    scopes
        .iter()
        .map(|s| {
            Scope::parse(s)
                .map_err(|e| definition_error(format!("{whose}: scope `{s}` is not valid: {e}")))
        })
        .collect()
}

impl Broker {
    /// A broker for `domain` over `store`, resolving the domain's own namespaces locally.
    ///
    /// Every operation's input schema is compiled here, once.
    pub fn new(domain: Arc<Domain>, store: Store) -> Result<Self, BverError> {
        let mut resolver = Resolver::new();
        let local = Arc::new(LocalAdapter::new(store.clone()));
        for (ns, _) in domain.namespaces() {
            resolver.route(ns.to_owned(), local.clone());
        }
        Self::with_resolver(domain, store, resolver)
    }

    /// A broker with a resolver the caller has routed (local, peers, files, HTTP).
    pub fn with_resolver(
        domain: Arc<Domain>,
        store: Store,
        resolver: Resolver,
    ) -> Result<Self, BverError> {
        Self::with_handlers(domain, store, resolver, Handlers::builtin())
    }

    /// A broker with a routed resolver and the handlers that run the operations figments
    /// declare. Every handler an operation names must be registered.
    pub fn with_handlers(
        domain: Arc<Domain>,
        store: Store,
        resolver: Resolver,
        handlers: Handlers,
    ) -> Result<Self, BverError> {
        let mut ops = HashMap::new();
        for spec in domain.operations() {
            let input = jsonschema::draft202012::new(&spec.input).map_err(|e| {
                definition_error(format!("{}: input schema does not compile: {e}", spec.name))
            })?;
            let (verb, handler) = match &spec.handler {
                Some(name) => {
                    let h = handlers.get(name).cloned().ok_or_else(|| {
                        definition_error(format!(
                            "{}: no handler `{name}` is registered (registered: {})",
                            spec.name,
                            handlers.names().collect::<Vec<_>>().join(", ")
                        ))
                    })?;
                    let output = jsonschema::draft202012::new(&spec.output).map_err(|e| {
                        definition_error(format!(
                            "{}: output schema does not compile: {e}",
                            spec.name
                        ))
                    })?;
                    (Verb::Handler, Some((h, output)))
                }
                None => (
                    verb_of(&spec.name)
                        .ok_or_else(|| definition_error(format!("{}: no executor", spec.name)))?,
                    None,
                ),
            };
            ops.insert(
                spec.name.clone(),
                Compiled {
                    scopes: parse_scopes(&spec.scopes, &spec.name)?,
                    spec: spec.clone(),
                    input,
                    repo: spec.repo.clone(),
                    verb,
                    handler,
                },
            );
        }
        let mut read_scopes = HashMap::new();
        for rt in domain.ref_types() {
            read_scopes.insert(
                rt.repo.clone(),
                parse_scopes(rt.scopes(Action::Read), &rt.repo)?,
            );
        }
        Ok(Self {
            inner: Arc::new(Inner {
                domain,
                store,
                resolver,
                ops,
                read_scopes,
            }),
            gate: Gate::ReadWrite,
        })
    }

    /// A handle on the same broker that refuses every mutating operation.
    pub fn read_only(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            gate: Gate::ReadOnly,
        }
    }

    /// This handle's gate.
    pub fn gate(&self) -> Gate {
        self.gate
    }

    /// The domain the broker serves.
    pub fn domain(&self) -> &Arc<Domain> {
        &self.inner.domain
    }

    /// The store it writes to.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The resolver it resolves pointers with.
    pub fn resolver(&self) -> &Resolver {
        &self.inner.resolver
    }

    /// The specification of `operation`, if it exists.
    pub fn operation(&self, operation: &str) -> Option<&OperationSpec> {
        self.inner.ops.get(operation).map(|c| &c.spec)
    }

    /// The operations `principal` may call (for discovery: MCP tool lists, OpenAPI).
    /// Resolver operations are listed for everyone; their scopes depend on the pointer.
    pub fn visible_operations<'a>(
        &'a self,
        principal: &'a Principal,
    ) -> impl Iterator<Item = &'a OperationSpec> + 'a {
        self.inner.domain.operations().iter().filter(move |spec| {
            self.inner
                .ops
                .get(&spec.name)
                .is_some_and(|c| c.scopes.iter().all(|s| principal.allows(s)))
        })
    }

    /// Run one operation as `principal`. See the module docs for the steps.
    pub async fn invoke(&self, principal: &Principal, call: Call) -> Result<Value, BverError> {
        let op = self.inner.ops.get(&call.operation).ok_or_else(|| {
            let names: Vec<&str> = self.inner.ops.keys().map(String::as_str).collect();
            let mut close: Vec<&str> = names
                .iter()
                .copied()
                .filter(|n| {
                    n.split('.').take(2).eq(call.operation.split('.').take(2))
                        || n.ends_with(call.operation.rsplit('.').next().unwrap_or(""))
                })
                .collect();
            close.sort_unstable();
            close.truncate(5);
            BverError::new(
                ErrorCode::NotFound,
                Phase::InputValidation,
                format!("no operation `{}`", call.operation),
            )
            .with_details(json!({ "operation": call.operation, "did_you_mean": close }))
        })?;
        validate_input(op, &call.input)?;
        principal.require_all(&op.scopes)?;
        if op.spec.mutation && self.gate == Gate::ReadOnly {
            return Err(BverError::new(
                ErrorCode::MutationForbidden,
                Phase::Authorization,
                format!(
                    "`{}` mutates state and this caller may only run queries",
                    op.spec.name
                ),
            )
            .with_details(json!({ "operation": op.spec.name })));
        }
        if let Some((handler, output)) = &op.handler {
            return self.run_handler(op, handler, output, principal, call).await;
        }
        exec::execute(&self.inner, op, principal, &call).await
    }

    async fn run_handler(
        &self,
        op: &Compiled,
        handler: &Handler,
        output: &jsonschema::Validator,
        principal: &Principal,
        call: Call,
    ) -> Result<Value, BverError> {
        let repo = op.repo.clone().unwrap_or_default();
        let namespace = self
            .inner
            .domain
            .ref_type(&repo)
            .map(|rt| rt.namespace.clone())
            .unwrap_or_default();
        let broker = if op.spec.mutation {
            self.clone()
        } else {
            self.read_only()
        };
        let answer = handler(HandlerCall {
            operation: op.spec.name.clone(),
            repo,
            namespace,
            input: call.input,
            principal: principal.clone(),
            request_id: call.request_id,
            broker,
        })
        .await?;
        if let Some(e) = output.iter_errors(&answer).next() {
            tracing::error!(
                operation = %op.spec.name,
                error = %e,
                "a handler answered with a value its output schema refuses"
            );
            return Err(BverError::internal(format!(
                "`{}` produced an invalid answer",
                op.spec.name
            )));
        }
        Ok(answer)
    }
}

fn verb_of(name: &str) -> Option<Verb> {
    Some(match name {
        "bver.get" => Verb::ResolveGet,
        "bver.resolve" => Verb::Resolve,
        "bver.exists" => Verb::Exists,
        "bver.list" => Verb::ResolveList,
        "bver.listrefs" => Verb::ListRefs,
        _ => match name.rsplit('.').next()? {
            "create" => Verb::Create,
            "get" => Verb::Get,
            "patch" => Verb::Patch,
            "replace" => Verb::Replace,
            "delete" => Verb::Delete,
            "list" => Verb::List,
            "history" => Verb::History,
            "diff" => Verb::Diff,
            "restore" => Verb::Restore,
            "change_kind" => Verb::ChangeKind,
            _ => return None,
        },
    })
}

/// Check `input` against the operation's input schema; every violation is reported.
fn validate_input(op: &Compiled, input: &Value) -> Result<(), BverError> {
    if op.input.is_valid(input) {
        return Ok(());
    }
    let violations: Vec<Value> = op
        .input
        .iter_errors(input)
        .take(50)
        .map(|e| {
            json!({
                "pointer": e.instance_path().as_str(),
                "message": e.to_string(),
            })
        })
        .collect();
    Err(BverError::new(
        ErrorCode::SchemaViolation,
        Phase::InputValidation,
        format!(
            "the input of `{}` does not match its schema ({} violation{})",
            op.spec.name,
            violations.len(),
            if violations.len() == 1 { "" } else { "s" }
        ),
    )
    .with_details(json!({ "operation": op.spec.name, "violations": violations })))
}
