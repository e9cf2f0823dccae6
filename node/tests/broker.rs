//! The operation broker over the example domain, on SQLite and PostgreSQL: every generated
//! operation, the resolver operations with attribute paths, schema violations (input and
//! result of a patch), scope enforcement, the read-only mutation gate, idempotency keys and
//! kind changes. Every failure must be the shared structured error.

mod support;

use std::path::Path;
use std::sync::Arc;

use bver_auth::{Principal, ScopeSet};
use bver_contracts::{BverError, ErrorCode, Phase};
use bver_node::broker::{Broker, Call};
use bver_node::domain;
use serde_json::{Value, json};

fn principal(scopes: &str) -> Principal {
    Principal {
        subject: "alice".into(),
        scopes: ScopeSet::parse(scopes).expect("scopes"),
        token_id: "t-1".into(),
        issued_at: 0,
        expires_at: u64::MAX,
        issuer: "test".into(),
    }
}

fn admin() -> Principal {
    principal("refs:*:read refs:*:create refs:*:update refs:*:delete grid:admin")
}

async fn broker(db: &support::Db) -> Broker {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packs/example");
    let domain = domain::load(&[dir]).unwrap_or_else(|e| panic!("example pack: {e}"));
    Broker::new(Arc::new(domain), db.open().await).expect("broker")
}

async fn ok(b: &Broker, p: &Principal, op: &str, input: Value) -> Value {
    b.invoke(p, Call::new(op, input.clone()))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{op} {input} failed: {}",
                serde_json::to_string_pretty(&e).unwrap_or_default()
            )
        })
}

async fn err(b: &Broker, p: &Principal, op: &str, input: Value) -> BverError {
    match b.invoke(p, Call::new(op, input.clone())).await {
        Ok(v) => panic!("{op} {input} should fail, returned {v}"),
        Err(e) => e,
    }
}

fn substation() -> Value {
    json!({
        "name": "North", "code": "NTH-014", "status": "in_service",
        "location": {"lat": 51.5, "lon": -0.1},
        "rating_mva": 90, "voltage_kv": 132,
        "transformers": [{"tag": "T1", "rating_mva": 45, "primary_kv": 132, "secondary_kv": 33}]
    })
}

both_backends! {
    async fn every_generated_reference_operation_works(db) {
        let b = broker(&db).await;
        let p = admin();
        let c = ok(&b, &p, "refs.site.create", json!({"id": "nth-014", "kind": "power.substation", "value": substation()})).await;
        assert_eq!(c["pointer"], "bver://sites/site/nth-014");
        assert_eq!((c["version"].as_u64(), c["kind"].as_str()), (Some(1), Some("power.substation")));
        assert!(c["created_at"].as_str().is_some_and(|t| t.ends_with('Z')));
        let g = ok(&b, &p, "refs.site.get", json!({"id": "nth-014"})).await;
        assert_eq!(g["value"], substation());
        let m = ok(&b, &p, "refs.site.patch", json!({"id": "nth-014", "merge": {"status": "decommissioned"}, "expected_version": 1})).await;
        assert_eq!((m["version"].as_u64(), m["value"]["status"].as_str()), (Some(2), Some("decommissioned")));
        let j = ok(&b, &p, "refs.site.patch", json!({"id": "nth-014", "json_patch": [{"op": "replace", "path": "/name", "value": "North Yard"}]})).await;
        assert_eq!(j["value"]["name"], "North Yard");
        let mut v = substation();
        v["tags"] = json!(["critical"]);
        let r = ok(&b, &p, "refs.site.replace", json!({"id": "nth-014", "value": v})).await;
        assert_eq!((r["version"].as_u64(), r["kind"].as_str()), (Some(4), Some("power.substation")));
        // Kind change: to telecom.node needs that kind's fields.
        let e = err(&b, &p, "refs.site.change_kind", json!({"id": "nth-014", "kind": "telecom.node"})).await;
        assert_eq!(e.code, ErrorCode::SchemaViolation);
        let k = ok(&b, &p, "refs.site.change_kind", json!({"id": "nth-014", "kind": "telecom.node", "value": {"name": "North", "code": "NTH-014", "status": "in_service", "node_id": "TN0001"}})).await;
        assert_eq!((k["version"].as_u64(), k["kind"].as_str()), (Some(5), Some("telecom.node")));
        let d = ok(&b, &p, "refs.site.diff", json!({"id": "nth-014", "from": 1, "to": 2})).await;
        assert_eq!(d["patch"], json!([{"op": "replace", "path": "/status", "value": "decommissioned"}]));
        assert_eq!((d["kind_from"].as_str(), d["kind_to"].as_str()), (Some("power.substation"), Some("power.substation")));
        let del = ok(&b, &p, "refs.site.delete", json!({"id": "nth-014"})).await;
        assert_eq!((del["version"].as_u64(), del["deleted"].as_bool()), (Some(6), Some(true)));
        let e = err(&b, &p, "refs.site.get", json!({"id": "nth-014"})).await;
        assert_eq!((e.code, e.details["deleted"].as_bool()), (ErrorCode::NotFound, Some(true)));
        let old = ok(&b, &p, "refs.site.get", json!({"id": "nth-014", "version": 2})).await;
        assert_eq!(old["value"]["status"], "decommissioned");
        let h = ok(&b, &p, "refs.site.history", json!({"id": "nth-014", "limit": 4})).await;
        assert_eq!(h["items"].as_array().map(Vec::len), Some(4));
        assert_eq!(h["items"][0]["event"], "created");
        assert_eq!(h["items"][0]["by"], "alice");
        let h2 = ok(&b, &p, "refs.site.history", json!({"id": "nth-014", "cursor": h["next_cursor"]})).await;
        assert_eq!(h2["items"].as_array().map(|a| a.iter().map(|i| i["event"].as_str().unwrap_or("")).collect::<Vec<_>>()), Some(vec!["kind_changed", "deleted"]));
        let back = ok(&b, &p, "refs.site.restore", json!({"id": "nth-014", "version": 4})).await;
        assert_eq!((back["version"].as_u64(), back["kind"].as_str()), (Some(7), Some("power.substation")));
        ok(&b, &p, "refs.site.create", json!({"id": "tn-1", "kind": "telecom.node", "value": {"name": "T", "code": "TEL-001", "status": "planned", "node_id": "TN0002"}})).await;
        let generated = ok(&b, &p, "refs.site.create", json!({"value": {"name": "N", "code": "NEW-001", "status": "planned"}})).await;
        assert_eq!(generated["id"].as_str().map(str::len), Some(20), "the platform assigns an id");
        let l = ok(&b, &p, "refs.site.list", json!({"kind": "power"})).await;
        assert_eq!(l["items"].as_array().map(|a| a.iter().map(|i| i["id"].clone()).collect::<Vec<_>>()), Some(vec![json!("nth-014")]));
        let all = ok(&b, &p, "refs.site.list", json!({"limit": 2})).await;
        assert_eq!(all["items"].as_array().map(Vec::len), Some(2));
        assert!(all["next_cursor"].is_string());
    }

    async fn resolver_operations_apply_attribute_paths(db) {
        let b = broker(&db).await;
        let p = admin();
        ok(&b, &p, "refs.site.create", json!({"id": "s1", "kind": "power.substation", "value": substation()})).await;
        ok(&b, &p, "refs.feeder.create", json!({"id": "f1", "value": {"name": "F1", "substation": "bver://sites/site/s1", "voltage_kv": 33}})).await;
        let g = ok(&b, &p, "bver.get", json!({"pointer": "bver://sites/site/s1@transformers[0].tag"})).await;
        assert_eq!((g["value"].as_str(), g["version"].as_u64()), (Some("T1"), Some(1)));
        let r = ok(&b, &p, "bver.resolve", json!({"pointer": "bver://sites/site/s1@location.lat"})).await;
        assert_eq!((r["value"].as_f64(), r["source"].as_str(), r["kind"].as_str()), (Some(51.5), Some("local"), Some("power.substation")));
        assert_eq!(r["reference"], "bver://sites/site/s1");
        assert_eq!(ok(&b, &p, "bver.exists", json!({"pointer": "bver://sites/site/s1@name"})).await["exists"], true);
        assert_eq!(ok(&b, &p, "bver.exists", json!({"pointer": "bver://sites/site/s1@nope"})).await["exists"], false);
        assert_eq!(ok(&b, &p, "bver.exists", json!({"pointer": "bver://sites/site/zz"})).await["exists"], false);
        let e = err(&b, &p, "bver.get", json!({"pointer": "bver://sites/site/s1@location.owner.name"})).await;
        assert_eq!((e.code, e.phase), (ErrorCode::NotFound, Phase::Resolution));
        assert_eq!((e.details["missing_segment"].as_u64(), e.details["key"].as_str()), (Some(1), Some("owner")));
        let e = err(&b, &p, "bver.get", json!({"pointer": "bver://sites/site/s1@@x"})).await;
        assert_eq!(e.code, ErrorCode::InvalidPointer);
        let e = err(&b, &p, "bver.get", json!({"pointer": "bver://elsewhere/site/s1"})).await;
        assert_eq!(e.code, ErrorCode::NotFound);
        assert_eq!(e.details["namespace"], "elsewhere");
        let l = ok(&b, &p, "bver.list", json!({"repo": "feeder"})).await;
        assert_eq!(l["items"][0]["pointer"], "bver://sites/feeder/f1");
        let l = ok(&b, &p, "bver.list", json!({"repo": "feeder", "namespace": "sites"})).await;
        assert_eq!(l["items"][0]["pointer"], "bver://sites/feeder/f1");
        let e = err(&b, &p, "bver.list", json!({"repo": "feeder", "namespace": "other"})).await;
        assert_eq!((e.code, e.phase), (ErrorCode::NotFound, Phase::Resolution));
        assert_eq!(e.details["hint"], "sites");
        let e = err(&b, &p, "bver.list", json!({"repo": "nope"})).await;
        assert_eq!(e.code, ErrorCode::NotFound);
        let e = err(&b, &p, "bver.list", json!({"repo": "nope", "namespace": "elsewhere"})).await;
        assert_eq!((e.code, e.details["namespace"].as_str()), (ErrorCode::NotFound, Some("elsewhere")), "no adapter serves it");
        let lr = ok(&b, &p, "bver.listrefs", json!({"namespace": "sites"})).await;
        let repos: Vec<&str> = lr["items"].as_array().expect("items").iter().filter_map(|i| i["repo"].as_str()).collect();
        assert_eq!(repos, ["feeder", "site"]);
    }

    async fn bad_input_is_a_structured_error(db) {
        let b = broker(&db).await;
        let p = admin();
        // Input shape: unknown member, missing required member.
        let e = err(&b, &p, "refs.site.get", json!({"id": "x", "bogus": 1})).await;
        assert_eq!((e.code, e.phase, e.retryable), (ErrorCode::SchemaViolation, Phase::InputValidation, false));
        // The value against its kind's schema, with the JSON pointer of each violation.
        let mut v = substation();
        v["code"] = json!("north");
        v["transformers"][0]["tag"] = json!("X1");
        let e = err(&b, &p, "refs.site.create", json!({"id": "bad", "kind": "power.substation", "value": v})).await;
        assert_eq!(e.code, ErrorCode::SchemaViolation);
        let pointers: Vec<&str> = e.details["violations"].as_array().expect("violations").iter().filter_map(|v| v["pointer"].as_str()).collect();
        assert!(pointers.contains(&"/value/code"), "{pointers:?}");
        assert!(pointers.contains(&"/value/transformers/0/tag"), "{pointers:?}");
        // A patch whose result breaks the schema is refused after it is applied; nothing is written.
        ok(&b, &p, "refs.site.create", json!({"id": "s2", "value": {"name": "A", "code": "AAA-001", "status": "planned"}})).await;
        let e = err(&b, &p, "refs.site.patch", json!({"id": "s2", "merge": {"status": "lost"}})).await;
        assert_eq!(e.code, ErrorCode::SchemaViolation);
        assert_eq!(e.details["violations"][0]["pointer"], "/status");
        assert_eq!(ok(&b, &p, "refs.site.get", json!({"id": "s2"})).await["version"], 1);
        // An id that cannot be a pointer (100 spaces are 300 bytes percent-encoded; the limit
        // is 256). Ids with spaces are fine otherwise: they are percent-encoded in pointers.
        let e = err(&b, &p, "refs.site.create", json!({"id": " ".repeat(100), "value": {"name": "A", "code": "AAA-002", "status": "planned"}})).await;
        assert_eq!(e.code, ErrorCode::InvalidPointer);
        // Unknown kind, unknown operation, stale version, missing version.
        let e = err(&b, &p, "refs.site.create", json!({"id": "k", "kind": "power.nuclear", "value": {"name": "A", "code": "AAA-003", "status": "planned"}})).await;
        assert_eq!(e.code, ErrorCode::SchemaViolation);
        let e = err(&b, &p, "refs.site.frobnicate", json!({})).await;
        assert_eq!(e.code, ErrorCode::NotFound);
        assert!(e.details["did_you_mean"].as_array().is_some_and(|a| !a.is_empty()));
        let e = err(&b, &p, "refs.site.replace", json!({"id": "s2", "expected_version": 9, "value": {"name": "A", "code": "AAA-001", "status": "planned"}})).await;
        assert_eq!(e.code, ErrorCode::VersionConflict);
        let e = err(&b, &p, "refs.site.get", json!({"id": "s2", "version": 3})).await;
        assert_eq!((e.code, e.details["current_version"].as_u64()), (ErrorCode::NotFound, Some(1)));
        let e = err(&b, &p, "refs.site.diff", json!({"id": "s2", "from": 1, "to": 7})).await;
        assert_eq!(e.code, ErrorCode::NotFound);
    }

    async fn scopes_and_the_mutation_gate_are_enforced(db) {
        let b = broker(&db).await;
        ok(&b, &admin(), "refs.site.create", json!({"id": "s1", "value": {"name": "A", "code": "AAA-001", "status": "planned"}})).await;
        let reader = principal("refs:site:read");
        assert_eq!(ok(&b, &reader, "refs.site.get", json!({"id": "s1"})).await["version"], 1);
        let e = err(&b, &reader, "refs.site.patch", json!({"id": "s1", "merge": {"name": "B"}})).await;
        assert_eq!((e.code, e.phase), (ErrorCode::Forbidden, Phase::Authorization));
        assert_eq!(e.details["missing_scope"], "refs:site:update");
        // The policy of site's delete needs two scopes.
        let e = err(&b, &principal("refs:site:delete"), "refs.site.delete", json!({"id": "s1"})).await;
        assert_eq!(e.details["missing_scope"], "grid:admin");
        // Nobody: deny by default, resolver operations included.
        let nobody = principal("");
        let e = err(&b, &nobody, "bver.get", json!({"pointer": "bver://sites/site/s1@name"})).await;
        assert_eq!(e.code, ErrorCode::Forbidden);
        let e = err(&b, &principal("refs:feeder:read"), "bver.listrefs", json!({"namespace": "sites"})).await;
        assert_eq!(e.code, ErrorCode::Forbidden);
        assert_eq!(ok(&b, &reader, "bver.get", json!({"pointer": "bver://sites/site/s1@name"})).await["value"], "A");
        // Discovery lists only what the caller may call.
        let names: Vec<&str> = b.visible_operations(&reader).map(|o| o.name.as_str()).collect();
        assert!(names.contains(&"refs.site.get") && !names.contains(&"refs.site.create"));
        // A read-only handle runs queries and refuses mutations, whatever the scopes.
        let ro = b.read_only();
        assert_eq!(ok(&ro, &admin(), "refs.site.get", json!({"id": "s1"})).await["version"], 1);
        let e = err(&ro, &admin(), "refs.site.patch", json!({"id": "s1", "merge": {"name": "B"}})).await;
        assert_eq!(e.code, ErrorCode::MutationForbidden);
    }

    async fn idempotency_keys_through_the_broker(db) {
        let b = broker(&db).await;
        let p = admin();
        let input = json!({"id": "s1", "value": {"name": "A", "code": "AAA-001", "status": "planned"}});
        let first = b.invoke(&p, Call::new("refs.site.create", input.clone()).idempotency_key("k1")).await.expect("first");
        // The same key and input, with members in another order: the first answer again.
        let reordered = json!({"value": {"status": "planned", "code": "AAA-001", "name": "A"}, "id": "s1"});
        let again = b.invoke(&p, Call::new("refs.site.create", reordered).idempotency_key("k1")).await.expect("replay");
        assert_eq!(first["version"], again["version"]);
        let e = b.invoke(&p, Call::new("refs.site.create", json!({"id": "s9", "value": {"name": "B", "code": "AAA-009", "status": "planned"}})).idempotency_key("k1")).await.expect_err("mismatch");
        assert_eq!(e.code, ErrorCode::IdempotencyMismatch);
        let patch = json!({"id": "s1", "merge": {"name": "Z"}});
        let p1 = b.invoke(&p, Call::new("refs.site.patch", patch.clone()).idempotency_key("k2")).await.expect("patch");
        let p2 = b.invoke(&p, Call::new("refs.site.patch", patch).idempotency_key("k2")).await.expect("patch replay");
        assert_eq!((p1["version"].as_u64(), p2["version"].as_u64()), (Some(2), Some(2)));
        let h = ok(&b, &p, "refs.site.history", json!({"id": "s1"})).await;
        assert_eq!(h["items"].as_array().map(Vec::len), Some(2));
    }
}
