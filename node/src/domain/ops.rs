//! The operations a domain generates: ten per repo (`refs.{repo}.create` ... `.change_kind`)
//! and the five resolver operations (`bver.get`, `bver.resolve`, `bver.exists`, `bver.list`,
//! `bver.listrefs`), each with its input and output JSON Schema, scopes, mutation flag and
//! idempotency rule.
//!
//! These names and shapes are the contract the operation broker executes; `docs/domain.md`
//! ("Generated operations") documents them field by field. Values embed the repo's schema:
//! each operation schema carries the repo's fragments in `$defs` and selects the schema of
//! the value by its `kind` (`if`/`then`), so a client can validate a request before sending
//! it. The broker still validates every stored value with [`RefType::validate`].
//!
//! [`RefType::validate`]: super::RefType::validate

use serde_json::{Map, Value, json};

use super::registry::{Action, Domain, FigmentOperation, RefType};
use super::schema::DRAFT_2020_12;

/// Largest `limit` a list operation accepts.
pub const MAX_PAGE: u64 = 1000;
/// `limit` when a list operation is given none.
pub const DEFAULT_PAGE: u64 = 100;

/// The operation suffixes generated for every repo, in order.
pub const REF_OPERATIONS: [&str; 10] = [
    "create",
    "get",
    "patch",
    "replace",
    "delete",
    "list",
    "history",
    "diff",
    "restore",
    "change_kind",
];

/// The resolver operations, in order.
pub const RESOLVER_OPERATIONS: [&str; 5] = [
    "bver.get",
    "bver.resolve",
    "bver.exists",
    "bver.list",
    "bver.listrefs",
];

/// The scope rule of a resolver operation: the broker requires the `read` scopes of the
/// repo the pointer (or `repo`, or each listed reference) addresses.
pub const RESOLVER_SCOPE_RULE: &str = "the read scopes of the addressed repo";

/// A generated operation, before it becomes a contract `OperationSpec`.
#[derive(Debug, Clone, PartialEq)]
pub struct OpDef {
    /// `refs.site.create`, `bver.get`.
    pub name: String,
    /// One sentence: what it does.
    pub description: String,
    /// The repo it acts on (`None` for resolver operations).
    pub repo: Option<String>,
    /// The policy action whose scopes it needs (resolver operations: read, of the addressed
    /// repo, known only per call).
    pub action: Action,
    /// Whether it changes state (a command) or only reads (a query).
    pub mutation: bool,
    /// Scopes the caller needs, all of them. Empty for resolver operations, whose scopes
    /// depend on the pointer (see [`RESOLVER_SCOPE_RULE`]).
    pub scopes: Vec<String>,
    /// JSON Schema 2020-12 of the input.
    pub input: Value,
    /// JSON Schema 2020-12 of the output.
    pub output: Value,
    /// For an operation a figment adds: the handler the broker runs it with.
    pub handler: Option<String>,
}

/// Every operation of `domain`: per repo in repo order, then the resolver operations.
pub fn definitions(domain: &Domain) -> Vec<OpDef> {
    let mut ops = Vec::new();
    for rt in domain.ref_types() {
        ops.extend(ref_operations(rt));
    }
    ops.extend(resolver_operations());
    ops
}

/// The operations of one reference type: the ten generated ones, then those its figments
/// add, by name.
pub fn ref_operations(rt: &RefType) -> Vec<OpDef> {
    let mut ops = generated_operations(rt);
    ops.extend(rt.operations.iter().map(|op| figment_operation(rt, op)));
    ops
}

/// `refs.{repo}.{name}` for an operation figment `op.figment` adds to `rt`.
fn figment_operation(rt: &RefType, op: &FigmentOperation) -> OpDef {
    let action = if op.mutation {
        Action::Update
    } else {
        Action::Read
    };
    let scopes = match &op.scopes {
        Some(list) => list.iter().map(|s| s.replace("{repo}", &rt.repo)).collect(),
        None => rt.scopes(action).to_vec(),
    };
    let description = if op.description.is_empty() {
        format!(
            "`{}` of a `{}` reference (figment `{}`).",
            op.name, rt.repo, op.figment
        )
    } else {
        op.description.replace("{repo}", &rt.repo)
    };
    OpDef {
        name: format!("refs.{}.{}", rt.repo, op.name),
        description,
        repo: Some(rt.repo.clone()),
        action,
        mutation: op.mutation,
        scopes,
        input: standalone(op.input.clone()),
        output: standalone(op.output.clone()),
        handler: Some(op.handler.clone()),
    }
}

/// The ten operations every reference type has.
fn generated_operations(rt: &RefType) -> Vec<OpDef> {
    let s = Shapes::new(rt);
    let repo = rt.repo.as_str();
    let op = |suffix: &str, action: Action, description: String, input: Value, output: Value| {
        let mutation = !matches!(suffix, "get" | "list" | "history" | "diff");
        OpDef {
            name: format!("refs.{repo}.{suffix}"),
            description,
            repo: Some(repo.to_owned()),
            action,
            mutation,
            scopes: rt.scopes(action).to_vec(),
            input: s.doc(input),
            output: s.doc(output),
            handler: None,
        }
    };
    let with_kind = |mut schema: Value, conditions: &[Value]| {
        if !conditions.is_empty()
            && let Some(o) = schema.as_object_mut()
        {
            o.insert("allOf".into(), Value::Array(conditions.to_vec()));
        }
        schema
    };
    vec![
        op(
            "create",
            Action::Create,
            format!("Create a `{repo}` reference (version 1), optionally of a kind."),
            with_kind(
                object(
                    &[
                        ("id", s.id_optional()),
                        ("kind", s.kind()),
                        ("value", s.value_any()),
                    ],
                    &["value"],
                ),
                &s.value_by_kind(),
            ),
            s.envelope(),
        ),
        op(
            "get",
            Action::Read,
            format!("Read a `{repo}` reference: its current version, or an earlier one."),
            object(
                &[
                    ("id", s.id()),
                    (
                        "version",
                        describe(version(), "Read this version instead of the current one."),
                    ),
                ],
                &["id"],
            ),
            s.envelope(),
        ),
        op(
            "patch",
            Action::Update,
            format!(
                "Change part of a `{repo}` reference with a JSON Merge Patch (RFC 7396) or a \
                 JSON Patch (RFC 6902); the result must validate against its kind's schema."
            ),
            {
                let mut schema = object(
                    &[
                        ("id", s.id()),
                        ("expected_version", expected_version()),
                        (
                            "merge",
                            json!({
                                "type": "object",
                                "description": "A JSON Merge Patch (RFC 7396) applied to the value: \
                                                members set to null are removed.",
                            }),
                        ),
                        ("json_patch", json_patch()),
                    ],
                    &["id"],
                );
                if let Some(o) = schema.as_object_mut() {
                    o.insert(
                        "oneOf".into(),
                        json!([{"required": ["merge"]}, {"required": ["json_patch"]}]),
                    );
                }
                schema
            },
            s.envelope(),
        ),
        op(
            "replace",
            Action::Update,
            format!(
                "Replace the whole value of a `{repo}` reference, keeping its kind; the value \
                 must validate against that kind's schema."
            ),
            object(
                &[
                    ("id", s.id()),
                    ("expected_version", expected_version()),
                    ("value", s.value_of_some_kind()),
                ],
                &["id", "value"],
            ),
            s.envelope(),
        ),
        op(
            "delete",
            Action::Delete,
            format!("Delete a `{repo}` reference; its history is kept and it can be restored."),
            object(
                &[("id", s.id()), ("expected_version", expected_version())],
                &["id"],
            ),
            object(
                &[
                    ("pointer", s.pointer()),
                    ("id", s.id()),
                    (
                        "version",
                        describe(version(), "The version that records the deletion."),
                    ),
                    ("deleted", json!({"const": true})),
                ],
                &["pointer", "id", "version", "deleted"],
            ),
        ),
        op(
            "list",
            Action::Read,
            format!(
                "List `{repo}` references in id order (a stable paging cursor), optionally of one kind."
            ),
            object(
                &[
                    ("kind", s.kind_filter()),
                    ("limit", limit()),
                    ("cursor", cursor()),
                ],
                &[],
            ),
            page(s.envelope()),
        ),
        op(
            "history",
            Action::Read,
            format!("The versions of a `{repo}` reference, oldest first."),
            object(
                &[("id", s.id()), ("limit", limit()), ("cursor", cursor())],
                &["id"],
            ),
            page(object(
                &[
                    ("version", version()),
                    ("event", event()),
                    ("kind", s.kind_or_null()),
                    ("at", timestamp("When the version was committed.")),
                    (
                        "by",
                        json!({
                            "type": ["string", "null"],
                            "description": "Subject of the principal that made the change.",
                        }),
                    ),
                ],
                &["version", "event", "kind", "at", "by"],
            )),
        ),
        op(
            "diff",
            Action::Read,
            format!("What changed in a `{repo}` reference between two versions (RFC 6902)."),
            object(
                &[
                    ("id", s.id()),
                    ("from", describe(version(), "The older version.")),
                    (
                        "to",
                        describe(version(), "The newer version (default: the current one)."),
                    ),
                ],
                &["id", "from"],
            ),
            object(
                &[
                    ("pointer", s.pointer()),
                    ("from", version()),
                    ("to", version()),
                    ("kind_from", s.kind_or_null()),
                    ("kind_to", s.kind_or_null()),
                    ("patch", json_patch()),
                ],
                &["pointer", "from", "to", "kind_from", "kind_to", "patch"],
            ),
        ),
        op(
            "restore",
            Action::Update,
            format!(
                "Make an earlier version of a `{repo}` reference (value and kind) current again, \
                 as a new version; also undeletes."
            ),
            object(
                &[
                    ("id", s.id()),
                    ("version", describe(version(), "The version to restore.")),
                    ("expected_version", expected_version()),
                ],
                &["id", "version"],
            ),
            s.envelope(),
        ),
        op(
            "change_kind",
            Action::Update,
            format!(
                "Give a `{repo}` reference another kind (or none), with the value it has under \
                 that kind (default: the current value)."
            ),
            with_kind(
                object(
                    &[
                        ("id", s.id()),
                        ("kind", s.kind()),
                        ("value", s.value_any()),
                        ("expected_version", expected_version()),
                    ],
                    &["id", "kind"],
                ),
                &s.value_by_kind(),
            ),
            s.envelope(),
        ),
    ]
}

/// The resolver operations: pointer resolution over every namespace the platform can reach.
pub fn resolver_operations() -> Vec<OpDef> {
    let op = |name: &str, description: &str, input: Value, output: Value| OpDef {
        name: name.to_owned(),
        description: description.to_owned(),
        repo: None,
        action: Action::Read,
        mutation: false,
        scopes: Vec::new(),
        input: standalone(input),
        output: standalone(output),
        handler: None,
    };
    let any_pointer = json!({
        "type": "string",
        "pattern": "^[bB][vV][eE][rR]://",
        "maxLength": 904,
        "description": "A bver:// pointer, optionally with an @attribute_path \
                        (docs/pointers.md).",
    });
    let pointer_in = || object(&[("pointer", any_pointer.clone())], &["pointer"]);
    let summary_item = |with_repo: bool| {
        let mut props = vec![("pointer", any_pointer.clone())];
        if with_repo {
            props.push(("repo", ident("The repo of the reference.")));
        }
        props.extend([
            ("version", version()),
            ("kind", kind_name_or_null()),
            (
                "updated_at",
                timestamp("When its current version was committed."),
            ),
        ]);
        let mut required = vec!["pointer", "version", "kind", "updated_at"];
        if with_repo {
            required.insert(1, "repo");
        }
        object(&props, &required)
    };
    vec![
        op(
            "bver.get",
            "The value a pointer addresses: a whole reference value or one attribute.",
            pointer_in(),
            object(
                &[
                    ("pointer", any_pointer.clone()),
                    (
                        "version",
                        describe(
                            version(),
                            "Version of the reference the value was read from.",
                        ),
                    ),
                    ("value", json!({"description": "The addressed JSON value."})),
                ],
                &["pointer", "version", "value"],
            ),
        ),
        op(
            "bver.resolve",
            "Resolve a pointer with provenance: the reference, its version and kind, where \
             it was resolved, and the addressed value.",
            pointer_in(),
            object(
                &[
                    ("pointer", any_pointer.clone()),
                    (
                        "reference",
                        describe(
                            any_pointer.clone(),
                            "The reference pointer (no attribute path).",
                        ),
                    ),
                    ("version", version()),
                    ("kind", kind_name_or_null()),
                    ("value", json!({"description": "The addressed JSON value."})),
                    ("updated_at", timestamp("When that version was committed.")),
                    (
                        "source",
                        json!({
                            "enum": ["local", "peer", "cache"],
                            "description": "Resolved from this platform's store, from the \
                                            owning peer over EAGER, or from a cache kept fresh \
                                            by a subscription.",
                        }),
                    ),
                ],
                &[
                    "pointer",
                    "reference",
                    "version",
                    "kind",
                    "value",
                    "updated_at",
                    "source",
                ],
            ),
        ),
        op(
            "bver.exists",
            "Whether a pointer addresses something: the reference exists (and is not deleted) \
             and, with an attribute path, the attribute is present.",
            pointer_in(),
            object(&[("exists", json!({"type": "boolean"}))], &["exists"]),
        ),
        op(
            "bver.list",
            "List the references of a repo (pointers and versions, not values). A repo of \
             this platform is found by its name; a repo another platform owns (over EAGER) or \
             another source serves is listed by giving its namespace too.",
            object(
                &[
                    ("repo", ident("The repo to list.")),
                    (
                        "namespace",
                        ident(
                            "The namespace the repo is in. Optional for this platform's own \
                             repos; required for a repo another platform or source serves.",
                        ),
                    ),
                    ("kind", kind_filter_any()),
                    ("limit", limit()),
                    ("cursor", cursor()),
                ],
                &["repo"],
            ),
            page(summary_item(false)),
        ),
        op(
            "bver.listrefs",
            "List the references of every repo in a namespace (pointers and versions).",
            object(
                &[
                    ("namespace", ident("The namespace to list.")),
                    ("limit", limit()),
                    ("cursor", cursor()),
                ],
                &["namespace"],
            ),
            page(summary_item(true)),
        ),
    ]
}

/// The shapes of one reference type's values, envelopes and fields.
struct Shapes<'a> {
    rt: &'a RefType,
}

impl<'a> Shapes<'a> {
    fn new(rt: &'a RefType) -> Self {
        Self { rt }
    }

    /// A root schema: `$schema`, the type's fragments in `$defs`, then `body`.
    fn doc(&self, body: Value) -> Value {
        let mut root = Map::new();
        root.insert("$schema".into(), json!(DRAFT_2020_12));
        if !self.rt.defs.is_empty() && mentions_refs(&body) {
            root.insert("$defs".into(), Value::Object(self.rt.defs.clone()));
        }
        if let Value::Object(o) = body {
            root.extend(o);
        }
        Value::Object(root)
    }

    fn pointer(&self) -> Value {
        json!({
            "type": "string",
            "pattern": format!("^bver://{}/{}/[^/@?#\\s]+$", self.rt.namespace, self.rt.repo),
            "description": format!(
                "The reference's pointer: bver://{}/{}/{{id}}.",
                self.rt.namespace, self.rt.repo
            ),
        })
    }

    fn id(&self) -> Value {
        json!({
            "type": "string",
            "minLength": 1,
            "maxLength": 256,
            "description": format!(
                "The reference id: the last segment of bver://{}/{}/{{id}}.",
                self.rt.namespace, self.rt.repo
            ),
        })
    }

    fn id_optional(&self) -> Value {
        describe(
            self.id(),
            "The id of the new reference; omitted, the platform assigns one.",
        )
    }

    fn kind_names(&self) -> Vec<Value> {
        self.rt.kinds.keys().map(|k| json!(k)).collect()
    }

    /// `kind` of an input: one of the repo's kinds, or null (or absent) for none.
    fn kind(&self) -> Value {
        let mut names = vec![Value::Null];
        names.extend(self.kind_names());
        json!({
            "enum": names,
            "description": "The kind (null or absent: no kind).",
        })
    }

    fn kind_or_null(&self) -> Value {
        let mut names = vec![Value::Null];
        names.extend(self.kind_names());
        json!({ "enum": names })
    }

    fn kind_filter(&self) -> Value {
        json!({
            "enum": self.kind_names(),
            "description": "Only references of this kind or of a kind below it \
                            (`power` matches `power.substation`).",
        })
    }

    /// `value` of an input whose kind is a sibling `kind` field: an object, checked per kind by
    /// [`Self::value_by_kind`].
    fn value_any(&self) -> Value {
        if self.rt.kinds.is_empty() {
            describe(self.rt.schema.clone(), "The reference value.")
        } else {
            json!({
                "type": "object",
                "description": "The reference value; its schema depends on `kind`.",
            })
        }
    }

    /// `value` when the kind is not in the input (replace): valid for one of the kinds.
    fn value_of_some_kind(&self) -> Value {
        if self.rt.kinds.is_empty() {
            return describe(self.rt.schema.clone(), "The new value.");
        }
        let mut options = vec![self.rt.schema.clone()];
        options.extend(self.rt.kinds.values().map(|k| k.schema.clone()));
        json!({
            "description": "The new value, valid for the reference's current kind (checked by \
                            the broker); the schema admits a value of any of the repo's kinds.",
            "anyOf": options,
        })
    }

    /// `if`/`then` rules selecting the schema of `value` by `kind` (none without kinds).
    fn value_by_kind(&self) -> Vec<Value> {
        if self.rt.kinds.is_empty() {
            return Vec::new();
        }
        let then = |schema: &Value| json!({ "properties": { "value": schema } });
        let mut rules: Vec<Value> = self
            .rt
            .kinds
            .values()
            .map(|k| {
                json!({
                    "if": { "properties": { "kind": { "const": k.name } }, "required": ["kind"] },
                    "then": then(&k.schema),
                })
            })
            .collect();
        rules.push(json!({
            "if": { "properties": { "kind": { "type": "string" } }, "required": ["kind"] },
            "else": then(&self.rt.schema),
        }));
        rules
    }

    /// The reference envelope: what get, create, patch, replace, restore and change_kind
    /// return.
    fn envelope(&self) -> Value {
        let mut env = object(
            &[
                ("pointer", self.pointer()),
                ("id", self.id()),
                (
                    "version",
                    describe(version(), "The current version, from 1."),
                ),
                ("kind", self.kind_or_null()),
                ("value", self.value_any()),
                ("created_at", timestamp("When version 1 was committed.")),
                ("updated_at", timestamp("When this version was committed.")),
            ],
            &[
                "pointer",
                "id",
                "version",
                "kind",
                "value",
                "created_at",
                "updated_at",
            ],
        );
        let rules = self.value_by_kind();
        if !rules.is_empty()
            && let Some(o) = env.as_object_mut()
        {
            o.insert("allOf".into(), Value::Array(rules));
        }
        env
    }
}

/// Whether a schema contains a `$ref` (and so needs the `$defs`).
fn mentions_refs(v: &Value) -> bool {
    match v {
        Value::Object(o) => o.iter().any(|(k, v)| k == "$ref" || mentions_refs(v)),
        Value::Array(items) => items.iter().any(mentions_refs),
        _ => false,
    }
}

fn standalone(body: Value) -> Value {
    let mut root = Map::new();
    root.insert("$schema".into(), json!(DRAFT_2020_12));
    if let Value::Object(o) = body {
        root.extend(o);
    }
    Value::Object(root)
}

/// A closed object schema with these properties, in this order.
fn object(props: &[(&str, Value)], required: &[&str]) -> Value {
    let properties: Map<String, Value> = props
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let mut o = Map::new();
    o.insert("type".into(), json!("object"));
    if !required.is_empty() {
        o.insert("required".into(), json!(required));
    }
    o.insert("properties".into(), Value::Object(properties));
    o.insert("additionalProperties".into(), json!(false));
    Value::Object(o)
}

/// `schema` with a `description` (replacing any).
fn describe(mut schema: Value, text: &str) -> Value {
    if let Some(o) = schema.as_object_mut() {
        o.insert("description".into(), json!(text));
    }
    schema
}

fn version() -> Value {
    json!({"type": "integer", "minimum": 1})
}

fn expected_version() -> Value {
    describe(
        version(),
        "Optimistic concurrency: fail with `version_conflict` unless this is the current version.",
    )
}

fn limit() -> Value {
    json!({
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_PAGE,
        "default": DEFAULT_PAGE,
        "description": "Page size.",
    })
}

fn cursor() -> Value {
    json!({
        "type": "string",
        "description": "Opaque: the `next_cursor` of the previous page; absent for the first.",
    })
}

fn timestamp(text: &str) -> Value {
    json!({"type": "string", "format": "date-time", "description": text})
}

fn ident(text: &str) -> Value {
    json!({
        "type": "string",
        "pattern": "^[a-z][a-z0-9_]{0,62}$",
        "description": text,
    })
}

fn kind_name_or_null() -> Value {
    json!({"type": ["string", "null"], "description": "The kind, or null for none."})
}

fn kind_filter_any() -> Value {
    json!({
        "type": "string",
        "description": "Only references of this kind or of a kind below it.",
    })
}

fn event() -> Value {
    json!({
        "enum": ["created", "updated", "deleted", "kind_changed", "restored"],
        "description": "The change that made this version.",
    })
}

/// A page of items with an opaque cursor to the next page.
fn page(item: Value) -> Value {
    object(
        &[
            ("items", json!({"type": "array", "items": item})),
            (
                "next_cursor",
                json!({
                    "type": ["string", "null"],
                    "description": "Pass as `cursor` for the next page; null on the last page.",
                }),
            ),
        ],
        &["items", "next_cursor"],
    )
}

/// An RFC 6902 JSON Patch document.
fn json_patch() -> Value {
    json!({
        "type": "array",
        "description": "A JSON Patch (RFC 6902): operations applied in order.",
        "items": {
            "type": "object",
            "required": ["op", "path"],
            "properties": {
                "op": {"enum": ["add", "remove", "replace", "move", "copy", "test"]},
                "path": {"type": "string", "description": "A JSON pointer into the value."},
                "from": {"type": "string"},
                "value": {}
            },
            "additionalProperties": false,
            "allOf": [
                {
                    "if": {"properties": {"op": {"enum": ["add", "replace", "test"]}}},
                    "then": {"required": ["value"]}
                },
                {
                    "if": {"properties": {"op": {"enum": ["move", "copy"]}}},
                    "then": {"required": ["from"]}
                }
            ]
        }
    })
}

/// TEMPORARY until `bver_contracts::ops::OperationSpec` exists.
pub use OpDef as OperationSpec;

pub(crate) fn generate(domain: &Domain) -> Vec<OperationSpec> {
    definitions(domain)
}
