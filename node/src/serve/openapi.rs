//! The OpenAPI 3.1 document of a node, generated from the operation registry.
//!
//! Nothing here is written per operation: every `POST /v1/ops/{operation}` path and every
//! resource route of every repo comes from the registry, with the operation's own JSON
//! Schemas (2020-12, the dialect OpenAPI 3.1 uses). Schema fragments shared by several
//! operations (a repo's base schema, its kinds, the figments it includes) are placed once in
//! `components/schemas`, keyed by their `$id`, and every `$ref` to them is rewritten to point
//! there, so the document is self-contained and tools that do not index `$id` still resolve it.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::domain::Domain;
use crate::domain::ops::OperationSpec;

/// Error statuses every authenticated route may answer.
const COMMON_ERRORS: [&str; 8] = ["400", "401", "403", "404", "413", "422", "429", "503"];
/// Additional statuses of mutations.
const MUTATION_ERRORS: [&str; 2] = ["409", "412"];

fn component_name(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '.'
            }
        })
        .collect()
}

/// Collects fragments into components and rewrites references to them.
struct Schemas {
    components: BTreeMap<String, Value>,
    /// `$id` → component name.
    ids: BTreeMap<String, String>,
}

impl Schemas {
    fn new() -> Self {
        Self {
            components: BTreeMap::new(),
            ids: BTreeMap::new(),
        }
    }

    /// Move `schema`'s `$defs` (fragments with `$id`s) into components; return the schema
    /// without `$schema` and `$defs`. References are rewritten by [`Self::rewrite`] at the end.
    fn take(&mut self, schema: &Value) -> Value {
        let mut schema = schema.clone();
        if let Some(o) = schema.as_object_mut() {
            o.remove("$schema");
            if let Some(Value::Object(defs)) = o.remove("$defs") {
                for (key, mut def) in defs {
                    let id = def
                        .get("$id")
                        .and_then(Value::as_str)
                        .map_or_else(|| format!("urn:bver:def:{key}"), str::to_owned);
                    let name = component_name(&id);
                    // Without its `$id`, the fragment's own `#/...` references must name
                    // its new place in the document.
                    if let Some(d) = def.as_object_mut() {
                        d.remove("$id");
                    }
                    prefix_local_refs(&mut def, &format!("#/components/schemas/{name}"));
                    self.ids.insert(id, name.clone());
                    self.components.entry(name).or_insert(def);
                }
            }
        }
        schema
    }

    fn rewrite(&self, v: &mut Value) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(r)) = o.get_mut("$ref")
                    && let Some(name) = self.ids.get(r.as_str())
                {
                    *r = format!("#/components/schemas/{name}");
                }
                for (_, child) in o.iter_mut() {
                    self.rewrite(child);
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|c| self.rewrite(c)),
            _ => {}
        }
    }

    /// Register `schema` as component `name`; returns a `$ref` to it.
    fn add(&mut self, name: &str, schema: &Value) -> Value {
        let s = self.take(schema);
        self.components.insert(name.to_owned(), s);
        json!({ "$ref": format!("#/components/schemas/{name}") })
    }
}

/// Resource routes get an operation id from their method and path (`get_v1_refs_sites_site_id`),
/// unique even where two routes run the same operation.
fn unique_operation_ids(paths: &mut Value) {
    let Some(paths) = paths.as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            if op["operationId"]
                .as_str()
                .is_some_and(|id| id.starts_with("rest."))
            {
                let id: String = format!("{method}{path}")
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect::<String>()
                    .split('_')
                    .filter(|p| !p.is_empty())
                    .collect::<Vec<_>>()
                    .join("_");
                op["operationId"] = Value::String(id);
            }
        }
    }
}

/// Rewrite `#/...` references inside `v` to `{base}/...`.
fn prefix_local_refs(v: &mut Value, base: &str) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get_mut("$ref")
                && let Some(rest) = r.strip_prefix('#')
            {
                *r = format!("{base}{rest}");
            }
            for (_, child) in o.iter_mut() {
                prefix_local_refs(child, base);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| prefix_local_refs(c, base)),
        _ => {}
    }
}

fn problem_schema() -> Value {
    json!({
        "type": "object",
        "description": "RFC 9457 problem details carrying BVER's structured error.",
        "required": ["type", "title", "status", "detail", "code", "phase", "retryable"],
        "properties": {
            "type": {"type": "string", "format": "uri", "description": "urn:bver:error:{code}"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string", "description": "What went wrong, for people."},
            "code": {"type": "string", "description": "Stable machine-readable error code."},
            "phase": {"type": "string", "description": "Where the failure happened."},
            "retryable": {"type": "boolean", "description": "Whether the same request may be retried."},
            "details": {"description": "Structured details (violations, missing scope, ...)."},
            "related_refs": {"type": "array", "items": {"type": "string"}},
        },
    })
}

fn error_responses(statuses: &[&str]) -> Map<String, Value> {
    statuses
        .iter()
        .map(|s| {
            (
                (*s).to_owned(),
                json!({ "$ref": format!("#/components/responses/Problem{s}") }),
            )
        })
        .collect()
}

fn response_components() -> Value {
    let describe = |s: &str| match s {
        "400" => "Malformed request: bad JSON, bad parameter, bad pointer.",
        "401" => "Missing, malformed, expired, revoked or otherwise invalid token.",
        "403" => "The token lacks a scope the operation needs.",
        "404" => "No such operation, repo, reference, version or attribute.",
        "409" => "Conflict: already exists, or an idempotency key reused with another request.",
        "412" => "The reference's version is not the one stated (If-Match / expected_version).",
        "413" => "Request body too large.",
        "415" => "Unsupported patch media type.",
        "422" => "The input or the resulting value does not validate against its schema or rules.",
        "429" => "Over the caller's rate limit; see Retry-After.",
        "503" => "Not ready, draining, or storage unreachable; see Retry-After.",
        _ => "Error.",
    };
    let mut m = Map::new();
    for s in [
        "400", "401", "403", "404", "409", "412", "413", "415", "422", "429", "503",
    ] {
        m.insert(
            format!("Problem{s}"),
            json!({
                "description": describe(s),
                "content": {"application/problem+json": {
                    "schema": {"$ref": "#/components/schemas/Problem"}
                }},
            }),
        );
    }
    Value::Object(m)
}

fn security(spec: &OperationSpec) -> Value {
    json!([{ "bearer": spec.scopes }])
}

fn ok(description: &str, schema: Value, etag: bool) -> Value {
    let mut r = json!({
        "description": description,
        "content": {"application/json": {"schema": schema}},
    });
    if etag {
        r["headers"] = json!({"ETag": {"$ref": "#/components/headers/ETag"}});
    }
    r
}

/// `schema` without its `id` property (the id is in the path).
fn without_id(schema: &Value) -> Value {
    let mut s = schema.clone();
    if let Some(o) = s.as_object_mut() {
        if let Some(Value::Object(p)) = o.get_mut("properties") {
            p.remove("id");
        }
        if let Some(Value::Array(r)) = o.get_mut("required") {
            r.retain(|v| v != "id");
        }
    }
    s
}

fn property(schema: &Value, name: &str) -> Value {
    schema
        .pointer(&format!("/properties/{name}"))
        .cloned()
        .unwrap_or_else(|| json!({}))
}

struct Route<'a> {
    spec: &'a OperationSpec,
    summary: String,
    params: Vec<Value>,
    body: Option<Value>,
    success: (&'static str, Value),
    extra_errors: &'static [&'static str],
}

impl Route<'_> {
    fn render(self) -> Value {
        let mut statuses: Vec<&str> = COMMON_ERRORS.to_vec();
        if self.spec.mutation {
            statuses.extend(MUTATION_ERRORS);
        }
        statuses.extend(self.extra_errors);
        let mut responses = error_responses(&statuses);
        responses.insert(self.success.0.to_owned(), self.success.1);
        let mut op = json!({
            "operationId": format!("rest.{}", self.spec.name),
            "summary": self.summary,
            "description": self.spec.description,
            "tags": [self.spec.repo.clone().unwrap_or_else(|| "resolver".into())],
            "parameters": self.params,
            "responses": responses,
            "security": security(self.spec),
            "x-bver-operation": self.spec.name,
        });
        if let Some(b) = self.body {
            op["requestBody"] = b;
        }
        op
    }
}

fn json_body(schema: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

fn param(name: &str, location: &str, required: bool, schema: Value, description: &str) -> Value {
    json!({
        "name": name, "in": location, "required": required,
        "schema": schema, "description": description,
    })
}

/// The OpenAPI document for `domain`, served as platform `platform_id`.
pub fn document(domain: &Domain, platform_id: &str) -> Value {
    let mut schemas = Schemas::new();
    let mut paths = Map::new();
    let idem = json!({"$ref": "#/components/parameters/IdempotencyKey"});
    let if_match = json!({"$ref": "#/components/parameters/IfMatch"});

    for spec in domain.operations() {
        let input = schemas.add(&format!("{}.input", spec.name), &spec.input);
        let output = schemas.add(&format!("{}.output", spec.name), &spec.output);
        let mut params = Vec::new();
        if spec.mutation {
            params.push(idem.clone());
        }
        let route = Route {
            spec,
            summary: format!("Run `{}`", spec.name),
            params,
            body: Some(json_body(input)),
            success: ("200", ok("The operation's output.", output, false)),
            extra_errors: &[],
        };
        let mut op = route.render();
        op["operationId"] = json!(spec.name);
        op["x-bver-mutation"] = json!(spec.mutation);
        paths.insert(format!("/v1/ops/{}", spec.name), json!({ "post": op }));
    }

    for rt in domain.ref_types() {
        let repo = &rt.repo;
        let ns = &rt.namespace;
        let find = |suffix: &str| domain.operation(&format!("refs.{repo}.{suffix}"));
        let (
            Some(create),
            Some(get),
            Some(patch),
            Some(replace),
            Some(delete),
            Some(list),
            Some(history),
            Some(diff),
            Some(restore),
            Some(change_kind),
        ) = (
            find("create"),
            find("get"),
            find("patch"),
            find("replace"),
            find("delete"),
            find("list"),
            find("history"),
            find("diff"),
            find("restore"),
            find("change_kind"),
        )
        else {
            continue;
        };
        let out_ref = |name: &str| json!({ "$ref": format!("#/components/schemas/{name}.output") });
        let id_schema = {
            let mut s = property(&get.input, "id");
            schemas.rewrite(&mut s);
            s
        };
        let id_param = param("id", "path", true, id_schema, "The reference id.");
        let base = format!("/v1/refs/{ns}/{repo}");
        let item = format!("{base}/{{id}}");

        let query_param = |name: &str, from: &OperationSpec, description: &str| {
            let mut s = property(&from.input, name);
            schemas.rewrite(&mut s);
            param(name, "query", false, s, description)
        };
        let list_params = vec![
            query_param("kind", list, "Only references of this kind."),
            query_param("limit", list, "Page size."),
            query_param("cursor", list, "`next_cursor` of the previous page."),
        ];
        let history_params = vec![
            id_param.clone(),
            query_param("limit", history, "Page size."),
            query_param("cursor", history, "`next_cursor` of the previous page."),
        ];
        let diff_params = vec![
            id_param.clone(),
            {
                let mut p = query_param("from", diff, "The older version.");
                p["required"] = json!(true);
                p
            },
            query_param("to", diff, "The newer version (default: current)."),
        ];

        let mut created = ok("Created (version 1).", out_ref(&create.name), true);
        created["headers"]["Location"] = json!({
            "description": "The new reference's resource path.",
            "schema": {"type": "string"},
        });
        let collection = json!({
            "get": Route {
                spec: list, summary: format!("List `{repo}` references"),
                params: list_params, body: None,
                success: ("200", ok("A page of references.", out_ref(&list.name), false)),
                extra_errors: &[],
            }.render(),
            "post": Route {
                spec: create, summary: format!("Create a `{repo}` reference"),
                params: vec![idem.clone()],
                body: Some(json_body(json!({"$ref": format!("#/components/schemas/{}.input", create.name)}))),
                success: ("201", created),
                extra_errors: &[],
            }.render(),
        });
        paths.insert(base.clone(), collection);

        let put_body = {
            let mut s = property(&replace.input, "value");
            schemas.rewrite(&mut s);
            s
        };
        let merge_schema = {
            let mut s = property(&patch.input, "merge");
            schemas.rewrite(&mut s);
            s
        };
        let json_patch_schema = {
            let mut s = property(&patch.input, "json_patch");
            schemas.rewrite(&mut s);
            s
        };
        let mut get_ok = ok("The current version.", out_ref(&get.name), true);
        get_ok["description"] = json!("The current version.");
        let mut get_op = Route {
            spec: get,
            summary: format!("Read a `{repo}` reference"),
            params: vec![
                id_param.clone(),
                json!({"$ref": "#/components/parameters/IfNoneMatch"}),
            ],
            body: None,
            success: ("200", get_ok),
            extra_errors: &[],
        }
        .render();
        get_op["responses"]["304"] = json!({
            "description": "Not modified: the If-None-Match tag is the current version.",
            "headers": {"ETag": {"$ref": "#/components/headers/ETag"}},
        });
        let item_ops = json!({
            "get": get_op,
            "put": Route {
                spec: replace, summary: format!("Replace a `{repo}` reference's value"),
                params: vec![id_param.clone(), if_match.clone(), idem.clone()],
                body: Some(json_body(put_body)),
                success: ("200", ok("The new version.", out_ref(&replace.name), true)),
                extra_errors: &[],
            }.render(),
            "patch": Route {
                spec: patch, summary: format!("Patch a `{repo}` reference"),
                params: vec![id_param.clone(), if_match.clone(), idem.clone()],
                body: Some(json!({"required": true, "content": {
                    "application/merge-patch+json": {"schema": merge_schema},
                    "application/json": {"schema": merge_schema},
                    "application/json-patch+json": {"schema": json_patch_schema},
                }})),
                success: ("200", ok("The new version.", out_ref(&patch.name), true)),
                extra_errors: &["415"],
            }.render(),
            "delete": Route {
                spec: delete, summary: format!("Delete a `{repo}` reference"),
                params: vec![id_param.clone(), if_match.clone(), idem.clone()],
                body: None,
                success: ("200", ok("The deletion's version.", out_ref(&delete.name), true)),
                extra_errors: &[],
            }.render(),
        });
        paths.insert(item.clone(), item_ops);
        paths.insert(
            format!("{item}/history"),
            json!({"get": Route {
                spec: history, summary: format!("History of a `{repo}` reference"),
                params: history_params, body: None,
                success: ("200", ok("A page of versions, oldest first.", out_ref(&history.name), false)),
                extra_errors: &[],
            }.render()}),
        );
        paths.insert(
            format!("{item}/versions/{{version}}"),
            json!({"get": Route {
                spec: get, summary: format!("One version of a `{repo}` reference"),
                params: vec![id_param.clone(), param("version", "path", true,
                    json!({"type": "integer", "minimum": 1}), "The version.")],
                body: None,
                success: ("200", ok("That version.", out_ref(&get.name), true)),
                extra_errors: &[],
            }.render()}),
        );
        paths.insert(
            format!("{item}/diff"),
            json!({"get": Route {
                spec: diff, summary: format!("Diff two versions of a `{repo}` reference"),
                params: diff_params, body: None,
                success: ("200", ok("An RFC 6902 patch from `from` to `to`.", out_ref(&diff.name), false)),
                extra_errors: &[],
            }.render()}),
        );
        let mut restore_body = without_id(&restore.input);
        restore_body = schemas.take(&restore_body);
        schemas.rewrite(&mut restore_body);
        paths.insert(
            format!("{item}/restore"),
            json!({"post": Route {
                spec: restore, summary: format!("Restore a version of a `{repo}` reference"),
                params: vec![id_param.clone(), if_match.clone(), idem.clone()],
                body: Some(json_body(restore_body)),
                success: ("200", ok("The new version.", out_ref(&restore.name), true)),
                extra_errors: &[],
            }.render()}),
        );
        let mut kind_body = without_id(&change_kind.input);
        kind_body = schemas.take(&kind_body);
        schemas.rewrite(&mut kind_body);
        paths.insert(
            format!("{item}/kind"),
            json!({"put": Route {
                spec: change_kind, summary: format!("Change a `{repo}` reference's kind"),
                params: vec![id_param.clone(), if_match.clone(), idem.clone()],
                body: Some(json_body(kind_body)),
                success: ("200", ok("The new version.", out_ref(&change_kind.name), true)),
                extra_errors: &[],
            }.render()}),
        );
    }

    if let Some(resolve) = domain.operation("bver.resolve") {
        let mut pointer = property(&resolve.input, "pointer");
        schemas.rewrite(&mut pointer);
        paths.insert(
            "/v1/resolve".into(),
            json!({"get": Route {
                spec: resolve, summary: "Resolve a bver:// pointer".into(),
                params: vec![{
                    let mut p = param("pointer", "query", true, pointer, "The pointer.");
                    p["required"] = json!(true);
                    p
                }],
                body: None,
                success: ("200", ok("The resolution.", json!({"$ref": "#/components/schemas/bver.resolve.output"}), true)),
                extra_errors: &[],
            }.render()}),
        );
    }

    paths.insert(
        "/v1/manifest".into(),
        json!({"get": {
            "operationId": "platform.manifest",
            "summary": "The platform's manifests",
            "description": "One `bver.manifest.json` per bundle; any valid token.",
            "tags": ["platform"],
            "security": [{"bearer": []}],
            "responses": {
                "200": {"description": "The manifests.", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["platform", "manifests"],
                    "properties": {"platform": {"type": "string"}, "manifests": {"type": "array", "items": {"type": "object"}}},
                }}}},
                "401": {"$ref": "#/components/responses/Problem401"},
                "429": {"$ref": "#/components/responses/Problem429"},
                "503": {"$ref": "#/components/responses/Problem503"},
            },
        }}),
    );
    paths.insert(
        "/healthz".into(),
        json!({"get": {
            "operationId": "platform.healthz", "summary": "Liveness", "tags": ["platform"],
            "security": [],
            "responses": {"200": {"description": "The process answers.", "content": {"application/json": {"schema": {
                "type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}},
            }}}}},
        }}),
    );
    paths.insert(
        "/readyz".into(),
        json!({"get": {
            "operationId": "platform.readyz", "summary": "Readiness", "tags": ["platform"],
            "security": [],
            "responses": {
                "200": {"description": "Storage reachable, migrations applied, not draining.", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["status", "storage"],
                    "properties": {"status": {"const": "ready"}, "storage": {"enum": ["sqlite", "postgres"]}},
                }}}},
                "503": {"$ref": "#/components/responses/Problem503"},
            },
        }}),
    );
    paths.insert(
        "/.well-known/jwks.json".into(),
        json!({"get": {
            "operationId": "platform.jwks", "summary": "The platform's public keys (RFC 7517)",
            "tags": ["platform"], "security": [],
            "responses": {"200": {"description": "The JWK Set.", "content": {"application/json": {"schema": {
                "type": "object", "required": ["keys"],
                "properties": {"keys": {"type": "array", "items": {"type": "object"}}},
            }}}}},
        }}),
    );

    let mut components: Map<String, Value> = schemas.components.clone().into_iter().collect();
    components.insert("Problem".into(), problem_schema());
    let mut components = Value::Object(components);
    let mut paths = Value::Object(paths);
    schemas.rewrite(&mut components);
    schemas.rewrite(&mut paths);
    unique_operation_ids(&mut paths);
    let core = domain.core();
    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": format!("{platform_id}: BVER platform API"),
            "version": core.version.to_string(),
            "description": format!(
                "Generated from the domain `{}` by BVER. Every operation is `POST /v1/ops/{{operation}}`; \
                 references also have resource routes. Errors are application/problem+json. \
                 Security: a bearer JWT issued by this platform; `security` lists the scopes each \
                 operation needs (resolver operations need the read scopes of the addressed repo).",
                core.name
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "tags": domain.ref_types().map(|r| json!({"name": r.repo, "description": r.description}))
            .chain([json!({"name": "resolver", "description": "Pointer resolution."}),
                    json!({"name": "platform", "description": "Health, keys, manifests."})])
            .collect::<Vec<_>>(),
        "paths": paths,
        "components": {
            "schemas": components,
            "responses": response_components(),
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "EdDSA JWT from `bver token issue`; verify with /.well-known/jwks.json.",
            }},
            "parameters": {
                "IdempotencyKey": {"name": "Idempotency-Key", "in": "header", "required": false,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
                    "description": "Repeat a mutation safely: the same key and body return the first answer."},
                "IfMatch": {"name": "If-Match", "in": "header", "required": false,
                    "schema": {"type": "string", "pattern": "^(\\*|\"[1-9][0-9]{0,17}\")$"},
                    "description": "The version the change expects, as an entity tag (\"3\"); 412 when it is not current."},
                "IfNoneMatch": {"name": "If-None-Match", "in": "header", "required": false,
                    "schema": {"type": "string"},
                    "description": "304 when the current version's tag is listed."},
            },
            "headers": {
                "ETag": {"description": "The reference's version as a strong entity tag (\"3\").",
                    "schema": {"type": "string"}},
            },
        },
    })
}
