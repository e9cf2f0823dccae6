//! Executing a checked call: mapping each generated operation onto the store and the
//! resolver, and shaping the answer to the operation's output schema.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bver_auth::{Principal, Scope};
use bver_contracts::{BverError, ErrorCode, Phase, RefPtr};
use bver_resolver::Listed;
use serde_json::{Value, json};

use super::{Call, Compiled, Inner, Verb};
use crate::domain::expr::{EventView, check_conditions};
use crate::domain::manifest::canonical;
use crate::domain::ops::DEFAULT_PAGE;
use crate::domain::{RefEvent, TriggerSource};
use crate::store::{
    Change, ChangeType, Committed, Current, Idempotency, Mutation, Provenance, RefKey,
    TriggerEvent, TriggerHook, Validator, VersionRow,
};

/// RFC 3339 UTC with milliseconds, from unix milliseconds.
pub fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

fn str_field<'a>(input: &'a Value, name: &str) -> Option<&'a str> {
    input.get(name).and_then(Value::as_str)
}

fn u64_field(input: &Value, name: &str) -> Option<u64> {
    input.get(name).and_then(Value::as_u64)
}

fn limit(input: &Value) -> u32 {
    u32::try_from(u64_field(input, "limit").unwrap_or(DEFAULT_PAGE)).unwrap_or(u32::MAX)
}

/// A fresh id: time-ordered (milliseconds) plus randomness, 20 lowercase hex digits.
fn new_id() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    format!("{ms:012x}{:08x}", rand::random::<u32>())
}

fn pointer_of(key: &RefKey) -> String {
    RefPtr::new(&key.namespace, &key.repo, &key.id)
        .map(|p| p.to_string())
        .unwrap_or_else(|_| key.to_string())
}

fn envelope(c: &Current) -> Value {
    json!({
        "pointer": pointer_of(&c.key),
        "id": c.key.id,
        "version": c.version,
        "kind": c.kind,
        "value": c.value,
        "created_at": rfc3339(c.created_at),
        "updated_at": rfc3339(c.updated_at),
    })
}

fn envelope_of_committed(c: &Committed, created_at: i64) -> Value {
    json!({
        "pointer": pointer_of(&c.key),
        "id": c.key.id,
        "version": c.version,
        "kind": c.kind,
        "value": c.value,
        "created_at": rfc3339(created_at),
        "updated_at": rfc3339(c.at),
    })
}

fn envelope_of_version(v: &VersionRow, created_at: i64) -> Value {
    json!({
        "pointer": pointer_of(&v.key),
        "id": v.key.id,
        "version": v.version,
        "kind": v.kind,
        "value": v.value,
        "created_at": rfc3339(created_at),
        "updated_at": rfc3339(v.at),
    })
}

fn listed_json(l: &Listed, with_repo: bool) -> Value {
    let mut v = json!({
        "pointer": l.pointer.to_string(),
        "version": l.version,
        "kind": l.kind,
        "updated_at": rfc3339(l.updated_at),
    });
    if with_repo && let Some(o) = v.as_object_mut() {
        o.insert("repo".into(), json!(l.pointer.repo()));
    }
    v
}

fn not_found(key: &RefKey, what: String) -> BverError {
    BverError::new(ErrorCode::NotFound, Phase::Resolution, what).with_ref(pointer_of(key))
}

/// The store validator of a reference type: its schema for the value's kind.
fn validator(inner: &Inner, repo: &str) -> Validator {
    let domain = inner.domain.clone();
    let repo = repo.to_owned();
    Arc::new(move |kind: Option<&str>, value: &Value| {
        let Some(rt) = domain.ref_type(&repo) else {
            return Err(BverError::internal(format!("no reference type `{repo}`")));
        };
        rt.validate(kind, value).map_err(|violations| {
            let list: Vec<Value> = violations.iter().map(|v| v.to_json()).collect();
            BverError::new(
                ErrorCode::SchemaViolation,
                Phase::InputValidation,
                format!(
                    "the value does not match the `{repo}` schema{}: {}",
                    kind.map(|k| format!(" for kind `{k}`")).unwrap_or_default(),
                    violations
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            )
            .with_details(json!({ "repo": repo, "kind": kind, "violations": list }))
        })?;
        let failures = rt.check_rules(kind, value);
        if failures.is_empty() {
            return Ok(());
        }
        let list: Vec<Value> = failures.iter().map(|f| f.to_json()).collect();
        Err(BverError::new(
            ErrorCode::RuleViolation,
            Phase::InputValidation,
            format!(
                "the value breaks {} rule{} of `{repo}`{}: {}",
                failures.len(),
                if failures.len() == 1 { "" } else { "s" },
                kind.map(|k| format!(" for kind `{k}`")).unwrap_or_default(),
                failures
                    .iter()
                    .map(|f| format!("{}: {}", f.rule, f.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        )
        .with_details(json!({ "repo": repo, "kind": kind, "violations": list })))
    })
}

/// The trigger hook of a reference type: the named triggers (declared, or added by a
/// figment) a committed mutation fires, given their events and `when` conditions. `None`
/// when the type declares none. A condition that cannot be evaluated does not fire (logged).
fn trigger_hook(inner: &Inner, repo: &str) -> Option<TriggerHook> {
    let rt = inner.domain.ref_type(repo)?;
    if rt
        .triggers
        .iter()
        .all(|t| t.source == TriggerSource::BuiltIn)
    {
        return None;
    }
    let domain = inner.domain.clone();
    let repo = repo.to_owned();
    Some(Arc::new(move |e: &TriggerEvent<'_>| {
        let Some(rt) = domain.ref_type(&repo) else {
            return Vec::new();
        };
        let event = match e.change {
            ChangeType::Created => RefEvent::Created,
            ChangeType::Updated => RefEvent::Updated,
            ChangeType::Deleted => RefEvent::Deleted,
            ChangeType::KindChanged => RefEvent::KindChanged,
            ChangeType::Restored => RefEvent::Restored,
        };
        let candidates: Vec<_> = rt
            .triggers
            .iter()
            .filter(|t| t.source != TriggerSource::BuiltIn && t.on.contains(&event))
            .collect();
        let view = EventView {
            event: event.as_str(),
            repo: &repo,
            id: &e.key.id,
            kind: e.kind,
            old_kind: e.old_kind,
            old: e.old,
            new: e.new,
            diff: e.diff,
            principal: e.principal,
        };
        let conditions: Vec<_> = candidates.iter().filter_map(|t| t.when.as_ref()).collect();
        let mut results = check_conditions(conditions, &view).into_iter();
        let mut fired = Vec::new();
        for t in candidates {
            let holds = match &t.when {
                None => true,
                Some(_) => match results.next() {
                    Some(Ok(b)) => b,
                    Some(Err(reason)) => {
                        tracing::warn!(trigger = %t.name, pointer = %e.key, %reason, "trigger condition could not be evaluated; not fired");
                        false
                    }
                    None => false,
                },
            };
            if holds {
                fired.push(t.name.clone());
            }
        }
        fired
    }))
}

pub(crate) async fn execute(
    inner: &Inner,
    op: &Compiled,
    principal: &Principal,
    call: &Call,
) -> Result<Value, BverError> {
    let input = &call.input;
    let Some(repo) = op.repo.as_deref() else {
        return resolve(inner, op, principal, input).await;
    };
    let rt = inner
        .domain
        .ref_type(repo)
        .ok_or_else(|| BverError::internal(format!("no reference type `{repo}`")))?;
    let id = match (op.verb, str_field(input, "id")) {
        (_, Some(id)) => id.to_owned(),
        (Verb::Create, None) => new_id(),
        _ => String::new(),
    };
    if !id.is_empty() {
        // The id must make a valid pointer: the same grammar everywhere.
        RefPtr::new(&rt.namespace, repo, &id)?;
    }
    let key = RefKey::new(&rt.namespace, repo, &id);
    let store = &inner.store;
    let read = |what: &str| not_found(&key, format!("{} {what}", pointer_of(&key)));
    match op.verb {
        Verb::Get => {
            let current = store
                .get(&key)
                .await?
                .ok_or_else(|| read("does not exist"))?;
            match u64_field(input, "version") {
                None if current.deleted => Err(read("was deleted").with_details(json!({
                    "deleted": true,
                    "version": current.version,
                    "hint": "read an earlier version, or restore one"
                }))),
                None => Ok(envelope(&current)),
                Some(v) => {
                    let row = store.version(&key, v).await?.ok_or_else(|| {
                        read(&format!(
                            "has no version {v} (latest is {})",
                            current.version
                        ))
                        .with_details(json!({ "version": v, "current_version": current.version }))
                    })?;
                    if row.deleted {
                        // A tombstone has no value: reading it is "not found", like reading
                        // a deleted reference, with the way back in the details.
                        return Err(read(&format!("was deleted at version {v}")).with_details(
                            json!({
                                "deleted": true,
                                "version": v,
                                "hint": "read an earlier version, or restore one"
                            }),
                        ));
                    }
                    Ok(envelope_of_version(&row, current.created_at))
                }
            }
        }
        Verb::List => {
            let page = store
                .list(
                    &rt.namespace,
                    repo,
                    str_field(input, "kind"),
                    str_field(input, "cursor"),
                    limit(input),
                )
                .await?;
            Ok(json!({
                "items": page.items.iter().map(envelope).collect::<Vec<_>>(),
                "next_cursor": page.next,
            }))
        }
        Verb::History => {
            if store.get(&key).await?.is_none() {
                return Err(read("does not exist"));
            }
            let page = store
                .history(&key, str_field(input, "cursor"), limit(input))
                .await?;
            let items: Vec<Value> = page
                .items
                .iter()
                .map(|v| {
                    json!({
                        "version": v.version,
                        "event": v.change.as_str(),
                        "kind": v.kind,
                        "at": rfc3339(v.at),
                        "by": v.provenance.principal,
                    })
                })
                .collect();
            Ok(json!({ "items": items, "next_cursor": page.next }))
        }
        Verb::Diff => {
            let current = store
                .get(&key)
                .await?
                .ok_or_else(|| read("does not exist"))?;
            let from = u64_field(input, "from").unwrap_or(1);
            let to = u64_field(input, "to").unwrap_or(current.version);
            let latest = current.version;
            let version = |v: u64| {
                let key = &key;
                async move {
                    store.version(key, v).await?.ok_or_else(|| {
                        not_found(
                            key,
                            format!(
                                "{} has no version {v} (latest is {latest})",
                                pointer_of(key)
                            ),
                        )
                        .with_details(json!({ "version": v, "current_version": latest }))
                    })
                }
            };
            let (a, b) = (version(from).await?, version(to).await?);
            let patch = json_patch::diff(&a.value, &b.value);
            Ok(json!({
                "pointer": pointer_of(&key),
                "from": from,
                "to": to,
                "kind_from": a.kind,
                "kind_to": b.kind,
                "patch": patch,
            }))
        }
        _ => mutate(inner, op, principal, call, key, rt.repo.as_str()).await,
    }
}

async fn mutate(
    inner: &Inner,
    op: &Compiled,
    principal: &Principal,
    call: &Call,
    key: RefKey,
    repo: &str,
) -> Result<Value, BverError> {
    let input = &call.input;
    let change = match op.verb {
        Verb::Create => Change::Create {
            kind: str_field(input, "kind").map(str::to_owned),
            value: input.get("value").cloned().unwrap_or(Value::Null),
        },
        Verb::Replace => Change::Replace {
            value: input.get("value").cloned().unwrap_or(Value::Null),
        },
        Verb::Patch => match (input.get("merge"), input.get("json_patch")) {
            (Some(m), None) => Change::MergePatch(m.clone()),
            (None, Some(p)) => {
                Change::JsonPatch(serde_json::from_value(p.clone()).map_err(|e| {
                    BverError::new(
                        ErrorCode::MalformedRequest,
                        Phase::InputValidation,
                        format!("`json_patch` is not a JSON Patch: {e}"),
                    )
                })?)
            }
            _ => {
                return Err(BverError::new(
                    ErrorCode::MalformedRequest,
                    Phase::InputValidation,
                    "give exactly one of `merge` and `json_patch`",
                ));
            }
        },
        Verb::Delete => Change::Delete,
        Verb::Restore => Change::Restore {
            version: u64_field(input, "version").unwrap_or(0),
        },
        Verb::ChangeKind => Change::ChangeKind {
            kind: str_field(input, "kind").map(str::to_owned),
            value: input.get("value").cloned(),
        },
        other => {
            return Err(BverError::internal(format!("{other:?} is not a mutation")));
        }
    };
    let mut m = Mutation::new(
        key.clone(),
        change,
        Provenance {
            principal: principal.subject.clone(),
            operation: op.spec.name.clone(),
            request_id: call.request_id.clone(),
        },
    );
    m.expected_version = u64_field(input, "expected_version");
    m.validator = Some(validator(inner, repo));
    m.triggers = trigger_hook(inner, repo);
    if let Some(k) = &call.idempotency_key {
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            format!("{}\n{}", op.spec.name, canonical(input)).as_bytes(),
        );
        m.idempotency = Some(Idempotency {
            key: k.clone(),
            fingerprint: hex::encode(digest.as_ref()),
        });
    }
    let committed = inner.store.mutate(m).await?;
    if committed.deleted {
        return Ok(json!({
            "pointer": pointer_of(&committed.key),
            "id": committed.key.id,
            "version": committed.version,
            "deleted": true,
        }));
    }
    let created_at = if committed.version == 1 {
        committed.at
    } else {
        inner
            .store
            .get(&committed.key)
            .await?
            .map(|c| c.created_at)
            .unwrap_or(committed.at)
    };
    Ok(envelope_of_committed(&committed, created_at))
}

/// The read scopes a resolver call needs for `repo`: the repo's policy when this platform
/// defines it, otherwise the default `refs:{repo}:read`.
fn require_read(inner: &Inner, principal: &Principal, repo: &str) -> Result<(), BverError> {
    match inner.read_scopes.get(repo) {
        Some(scopes) => principal.require_all(scopes),
        None => principal.require(&Scope::parse(&format!("refs:{repo}:read"))?),
    }
}

fn parse_pointer(input: &Value) -> Result<RefPtr, BverError> {
    Ok(RefPtr::parse(str_field(input, "pointer").unwrap_or(""))?)
}

async fn resolve(
    inner: &Inner,
    op: &Compiled,
    principal: &Principal,
    input: &Value,
) -> Result<Value, BverError> {
    let resolver = &inner.resolver;
    match op.verb {
        Verb::ResolveGet | Verb::Resolve | Verb::Exists => {
            let pointer = parse_pointer(input)?;
            require_read(inner, principal, pointer.repo())?;
            if op.verb == Verb::Exists {
                return Ok(json!({ "exists": resolver.exists(&pointer).await? }));
            }
            let r = resolver.resolve(&pointer).await?;
            if op.verb == Verb::ResolveGet {
                return Ok(json!({
                    "pointer": r.pointer.to_string(),
                    "version": r.version,
                    "value": r.value,
                }));
            }
            Ok(json!({
                "pointer": r.pointer.to_string(),
                "reference": r.pointer.reference_str(),
                "version": r.version,
                "kind": r.kind,
                "value": r.value,
                "updated_at": rfc3339(r.updated_at),
                "source": r.source.as_str(),
            }))
        }
        Verb::ResolveList => {
            let repo = str_field(input, "repo").unwrap_or("");
            require_read(inner, principal, repo)?;
            let own = inner.domain.ref_type(repo).map(|rt| rt.namespace.clone());
            let namespace = match (str_field(input, "namespace"), own) {
                // A repo of this platform: its namespace, which a given one must match.
                (Some(given), Some(own)) if given != own => {
                    return Err(BverError::new(
                        ErrorCode::NotFound,
                        Phase::Resolution,
                        format!("repo `{repo}` is in namespace `{own}`, not `{given}`"),
                    )
                    .with_details(json!({ "repo": repo, "namespace": given, "hint": own })));
                }
                (_, Some(own)) => own,
                // Another platform's or source's repo: routed by the namespace.
                (Some(given), None) => given.to_owned(),
                (None, None) => {
                    return Err(BverError::new(
                        ErrorCode::NotFound,
                        Phase::Resolution,
                        format!("no repo `{repo}` on this platform"),
                    )
                    .with_details(json!({
                        "repo": repo,
                        "hint": "give `namespace` to list a repo another platform or source serves",
                    })));
                }
            };
            let page = resolver
                .list(
                    &namespace,
                    repo,
                    str_field(input, "kind"),
                    str_field(input, "cursor"),
                    limit(input),
                )
                .await?;
            Ok(json!({
                "items": page.items.iter().map(|l| listed_json(l, false)).collect::<Vec<_>>(),
                "next_cursor": page.next,
            }))
        }
        Verb::ListRefs => {
            let namespace = str_field(input, "namespace").unwrap_or("");
            // The caller must be able to read every repo of the namespace this platform
            // defines; listing a namespace is reading all of it.
            for rt in inner.domain.repos_in(namespace) {
                require_read(inner, principal, &rt.repo)?;
            }
            let page = resolver
                .listrefs(namespace, str_field(input, "cursor"), limit(input))
                .await?;
            for l in &page.items {
                require_read(inner, principal, l.pointer.repo())?;
            }
            Ok(json!({
                "items": page.items.iter().map(|l| listed_json(l, true)).collect::<Vec<_>>(),
                "next_cursor": page.next,
            }))
        }
        other => Err(BverError::internal(format!(
            "{other:?} is not a resolver operation"
        ))),
    }
}
