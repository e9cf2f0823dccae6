//! The domain language (issue 4): contract packages shared by bundles, CEL rules checked by
//! the broker, named triggers with CEL conditions, and operations declared by figments.
//! Broker tests run on SQLite and PostgreSQL.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use bver_auth::{Principal, ScopeSet};
use bver_contracts::{BverError, ErrorCode, Phase};
use bver_node::broker::{Broker, Call, Handlers};
use bver_node::domain::{self, DefinitionErrors, Domain};
use serde_json::{Value, json};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packs/example")
}

fn example() -> Domain {
    domain::load(&[example_dir()]).unwrap_or_else(|e| panic!("the example pack must load:\n{e}"))
}

/// The errors loading `dirs` as `code file:line:col` (file relative to `root`).
fn errors(root: &Path) -> (Vec<String>, DefinitionErrors) {
    let errs = match domain::load(&[root]) {
        Ok(_) => panic!("{} should not load", root.display()),
        Err(e) => e,
    };
    let lines = errs
        .errors()
        .iter()
        .map(|e| match &e.location {
            Some(l) => format!(
                "{} {}:{}:{}",
                e.kind.code(),
                l.file.strip_prefix(root).unwrap_or(&l.file).display(),
                l.line,
                l.column
            ),
            None => e.kind.code().to_owned(),
        })
        .collect();
    (lines, errs)
}

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
    Broker::new(Arc::new(example()), db.open().await).expect("broker")
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
        "rating_mva": 90, "max_load_mva": 100, "voltage_kv": 132,
        "transformers": [{"tag": "T1", "rating_mva": 45, "primary_kv": 132, "secondary_kv": 33}]
    })
}

// ---------------------------------------------------------------------------------------
// Contract packages

#[test]
fn a_contract_type_is_shared_by_two_bundles() {
    let d = example();
    let pkg = d.contract("grid-types").expect("grid-types is loaded");
    assert_eq!(pkg.version, "1.2.0");
    let site = d.ref_type("site").expect("site");
    let drawing = d.ref_type("drawing").expect("drawing");
    // Both reference types carry the same contract type, under the same `$id`.
    let key = "contract:grid-types@1/Contact";
    assert_eq!(
        site.defs[key]["$id"],
        "urn:bver:contract:grid-types@1:Contact"
    );
    assert_eq!(site.defs[key], drawing.defs[key]);
    // ... and the type it refers to.
    assert!(site.defs.contains_key("contract:grid-types@1/Rating"));

    let contact = json!({"name": "Control room", "phone": "+44 1632 960000"});
    let bad = json!({"name": "Control room", "fax": "none"});
    let mut s = json!({"name": "Depot", "code": "DEP-001", "status": "planned"});
    s["contact"] = contact.clone();
    assert_eq!(site.validate(None, &s), Ok(()));
    s["contact"] = bad.clone();
    let v = site.validate(None, &s).expect_err("Contact is closed");
    assert!(
        v.iter().any(|x| x
            .schema_path
            .contains("urn:bver:contract:grid-types@1:Contact")),
        "{v:?}"
    );
    let mut dr = json!({"title": "SLD", "site": "bver://sites/site/a", "revision": "A",
                        "meta": {"sheet_number": 1}});
    dr["checked_by"] = contact;
    let checked = drawing.validate(None, &dr);
    assert!(
        checked
            .as_ref()
            .err()
            .is_none_or(|v| v.iter().all(|x| !x.pointer.starts_with("/checked_by"))),
        "{checked:?}"
    );
    dr["checked_by"] = bad;
    let v = drawing.validate(None, &dr).expect_err("Contact is closed");
    assert!(
        v.iter().any(|x| x.pointer.starts_with("/checked_by")),
        "{v:?}"
    );

    // Manifests list the packages and versions used (and the one loaded).
    for (bundle, wanted) in [("grid", "1.2.0"), ("drawings", "1.0.0")] {
        let b = d.bundle(bundle).expect("bundle");
        let m = domain::manifest::manifest(&d, b);
        assert_eq!(
            m["contracts"],
            json!([{"name": "grid-types", "version": wanted, "loaded": "1.2.0"}]),
            "{bundle}"
        );
    }
}

#[test]
fn a_bundle_that_refers_to_another_bundles_schema_is_refused() {
    let root = fixture("domains/foreign_schema");
    let (got, errs) = errors(&root);
    assert_eq!(
        got,
        [
            "foreign_schema maps/bundle.toml:9:30",
            "foreign_schema maps/bundle.toml:10:30",
            "bad_ref maps/bundle.toml:11:29",
        ],
        "{errs}"
    );
    let text = errs.to_string();
    assert!(
        text.contains("reference schema of repo `site` in bundle `grid`"),
        "{text}"
    );
    assert!(text.contains("hold a pointer"), "{text}");
    assert!(text.contains("contract package"), "{text}");
    // The same reference inside the owning bundle is fine (feeder -> site): only `maps`
    // is reported above.
}

#[test]
fn incompatible_package_versions_are_refused() {
    let root = fixture("domains/incompatible_contracts");
    let (got, errs) = errors(&root);
    assert_eq!(
        got,
        [
            "missing_contract a/bundle.toml:6:14",
            "incompatible_contract b/bundle.toml:6:14",
        ],
        "{errs}"
    );
    let text = errs.to_string();
    assert!(
        text.contains("bundle `b` uses contract package `grid-types@2.0.0` and bundle `a` uses `grid-types@1.0.0`"),
        "{text}"
    );
    assert!(text.contains("but version 2.0.0 is loaded"), "{text}");
}

fn bver(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bver"))
        .args(args)
        .output()
        .expect("run bver");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn bver_contracts_check_explains_each_incompatibility() {
    let dir = |v: &str| fixture("contracts").join(v).display().to_string();
    let (code, out) = bver(&["contracts", "check", &dir("v1_0"), &dir("v1_1")]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.starts_with("grid-types 1.0.0 -> 1.1.0: compatible"),
        "{out}"
    );
    assert!(out.contains("added: type `Contact` was added"), "{out}");
    assert!(out.contains("/properties/kv` added"), "{out}");

    let (code, out) = bver(&["contracts", "check", &dir("v1_1"), &dir("v1_2")]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("INCOMPATIBLE"), "{out}");
    assert!(out.contains("type `Contact` was removed"), "{out}");
    assert!(out.contains("property `kv` became required"), "{out}");
    assert!(
        out.contains(
            "type `Rating` at `/properties/mva/type`: changed from \"number\" to \"integer\""
        ),
        "{out}"
    );
    assert!(out.contains("need a new major version (2.0.0)"), "{out}");

    let (code, out) = bver(&[
        "contracts",
        "check",
        &dir("v1_0"),
        &dir("v1_1"),
        "--format",
        "json",
    ]);
    assert_eq!(code, Some(0));
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["compatible"], true);
    let pack = example_dir()
        .join("contracts/grid-types")
        .display()
        .to_string();
    let (code, _) = bver(&["contracts", "check", &dir("v1_0"), &pack]);
    assert_eq!(
        code,
        Some(1),
        "the pack's Rating.mva adds `exclusiveMinimum`: a new constraint"
    );
    let (code, _) = bver(&["contracts", "check", &dir("v1_0"), "/nonexistent"]);
    assert_eq!(code, Some(2));
}

// ---------------------------------------------------------------------------------------
// CEL rules and trigger conditions at load time

#[test]
fn a_broken_cel_expression_is_a_load_error_with_its_location() {
    let root = fixture("domains/bad_rule");
    let (got, errs) = errors(&root);
    assert_eq!(
        got,
        [
            "bad_expression app/bundle.toml:12:21",
            "bad_expression app/bundle.toml:15:20",
            "bad_expression app/bundle.toml:19:9",
        ],
        "{errs}"
    );
    let text = errs.to_string();
    assert!(text.contains("rule `syntax`"), "{text}");
    assert!(text.contains("write `2.0`"), "{text}");
    assert!(text.contains("unknown variable `nwe`"), "{text}");
    assert!(text.contains("hint: a rule is a CEL expression"), "{text}");
}

#[test]
fn rules_are_compiled_per_kind_with_their_sources() {
    let d = example();
    let site = d.ref_type("site").expect("site");
    let names = |kind: Option<&str>| -> Vec<String> {
        site.rules_for(kind)
            .iter()
            .map(|r| format!("{} ({})", r.name, r.source))
            .collect()
    };
    assert_eq!(names(None), ["not_null_island (figment `geo`)"]);
    assert_eq!(
        names(Some("power.substation")),
        [
            "not_null_island (figment `geo`)",
            "load_within_rating (kind `power.substation` of refs.site)",
            "transformers_within_rating (kind `power.substation` of refs.site)",
        ]
    );
    let r = &site.rules_for(Some("power.substation"))[1];
    assert_eq!(r.fields, ["/max_load_mva", "/rating_mva"]);
    let when = site
        .triggers
        .iter()
        .find(|t| t.name == "refs.site.voltage_raised")
        .and_then(|t| t.when.as_ref())
        .expect("a condition");
    assert!(when.source.contains("new.voltage_kv >= 110.0"));
}

// ---------------------------------------------------------------------------------------
// Through the broker, on both backends

both_backends! {
    async fn a_cel_rule_rejects_a_write_with_a_clear_error(db) {
        let b = broker(&db).await;
        let p = admin();
        ok(&b, &p, "refs.site.create", json!({"id": "s1", "kind": "power.substation", "value": substation()})).await;
        // 120 > 90 * 1.2 = 108: the value matches its schema but breaks a rule.
        let e = err(&b, &p, "refs.site.patch", json!({"id": "s1", "merge": {"max_load_mva": 120}})).await;
        assert_eq!((e.code, e.phase, e.retryable), (ErrorCode::RuleViolation, Phase::InputValidation, false), "{e:?}");
        assert!(e.message.contains("load_within_rating"), "{}", e.message);
        assert!(e.message.contains("at most 20%"), "{}", e.message);
        let v = &e.details["violations"];
        assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
        assert_eq!(v[0]["rule"], "load_within_rating");
        assert_eq!(v[0]["fields"], json!(["/max_load_mva", "/rating_mva"]));
        assert_eq!(v[0]["source"], "kind `power.substation` of refs.site");
        assert_eq!(e.details["kind"], "power.substation");
        // Nothing was written.
        let g = ok(&b, &p, "refs.site.get", json!({"id": "s1"})).await;
        assert_eq!(g["version"], 1);
        // Two rules broken at once: each is reported.
        let mut both = substation();
        both["max_load_mva"] = json!(500);
        both["transformers"][0]["rating_mva"] = json!(95);
        let e = err(&b, &p, "refs.site.replace", json!({"id": "s1", "value": both})).await;
        let rules: Vec<&str> = e.details["violations"].as_array().map(|a| a.iter().filter_map(|x| x["rule"].as_str()).collect()).unwrap_or_default();
        assert_eq!(rules, ["load_within_rating", "transformers_within_rating"]);
        // A figment's rule applies to every type that includes it, on create too.
        let e = err(&b, &p, "refs.drawing.create", json!({"id": "d1", "value": {
            "title": "SLD", "site": "bver://sites/site/s1", "revision": "A",
            "meta": {"sheet_number": 1}, "location": {"lat": 0, "lon": 0}}})).await;
        assert_eq!(e.code, ErrorCode::RuleViolation);
        assert_eq!(e.details["violations"][0]["rule"], "not_null_island");
        assert_eq!(e.details["violations"][0]["fields"], json!(["/location"]));
        // A schema violation comes first: rules only see values of the right shape.
        let e = err(&b, &p, "refs.site.patch", json!({"id": "s1", "merge": {"max_load_mva": "lots"}})).await;
        assert_eq!(e.code, ErrorCode::SchemaViolation);
        // A value that satisfies the rules is written.
        let m = ok(&b, &p, "refs.site.patch", json!({"id": "s1", "merge": {"max_load_mva": 108}})).await;
        assert_eq!(m["version"], 2);
    }

    async fn a_figment_operation_appears_on_two_reference_types_and_works_on_both(db) {
        let b = broker(&db).await;
        let p = admin();
        for repo in ["site", "drawing"] {
            let spec = b.operation(&format!("refs.{repo}.locate")).expect("locate exists");
            assert_eq!(spec.handler.as_deref(), Some("geo.locate"));
            assert_eq!(spec.scopes, [format!("refs:{repo}:read")]);
            assert!(!spec.mutation);
        }
        assert!(b.operation("refs.feeder.locate").is_none(), "feeder does not include geo");
        ok(&b, &p, "refs.site.create", json!({"id": "s1", "kind": "power.substation", "value": substation()})).await;
        ok(&b, &p, "refs.drawing.create", json!({"id": "d1", "value": {
            "title": "SLD", "site": "bver://sites/site/s1", "revision": "A",
            "meta": {"sheet_number": 1}, "location": {"lat": 48.8566, "lon": 2.3522}}})).await;
        let s = ok(&b, &p, "refs.site.locate", json!({"id": "s1"})).await;
        assert_eq!(s, json!({"pointer": "bver://sites/site/s1", "location": {"lat": 51.5, "lon": -0.1}}));
        let d = ok(&b, &p, "refs.drawing.locate", json!({"id": "d1", "from": {"lat": 51.5, "lon": -0.1}})).await;
        assert_eq!(d["pointer"], "bver://drawings/drawing/d1");
        let km = d["distance_km"].as_f64().expect("distance");
        assert!((330.0..350.0).contains(&km), "{km}");
        // Like every operation: input schema, scopes, and the handler reads as the caller.
        let e = err(&b, &p, "refs.site.locate", json!({"id": "s1", "extra": 1})).await;
        assert_eq!(e.code, ErrorCode::SchemaViolation);
        let e = err(&b, &principal("refs:site:read"), "refs.drawing.locate", json!({"id": "d1"})).await;
        assert_eq!(e.code, ErrorCode::Forbidden);
        let e = err(&b, &p, "refs.site.locate", json!({"id": "nope"})).await;
        assert_eq!(e.code, ErrorCode::NotFound);
        // The read-only handle still runs queries.
        ok(&b.read_only(), &p, "refs.site.locate", json!({"id": "s1"})).await;
        // Listed for discovery.
        let reader = principal("refs:drawing:read");
        let visible: Vec<String> = b.visible_operations(&reader).map(|o| o.name.clone()).collect();
        assert!(visible.contains(&"refs.drawing.locate".to_owned()));
        assert!(!visible.contains(&"refs.site.locate".to_owned()));
    }

    async fn a_named_trigger_fires_exactly_when_its_condition_holds(db) {
        let b = broker(&db).await;
        let p = admin();
        // The outbox after `seq`: (trigger, id, version) of each event, in order.
        let events = |after: u64| {
            let store = b.store().clone();
            async move {
                store.events_after(after, 1000).await.expect("events").into_iter()
                    .map(|e| (e.seq, e.trigger, e.key.id, e.version))
                    .collect::<Vec<_>>()
            }
        };
        let mut low = substation();
        low["voltage_kv"] = json!(33);
        ok(&b, &p, "refs.site.create", json!({"id": "s1", "kind": "power.substation", "value": low})).await;
        let created = events(0).await;
        // Created: the built-in event and the unconditional `changed`; `voltage_raised`
        // listens to updates only.
        let names: Vec<&str> = created.iter().map(|e| e.1.as_str()).collect();
        assert_eq!(names, ["refs.site.created", "refs.site.changed"]);
        let seqs: Vec<u64> = created.iter().map(|e| e.0).collect();
        assert_eq!(seqs, [1, 2], "each firing has its own sequence number");
        // An unrelated change: no voltage_raised.
        ok(&b, &p, "refs.site.patch", json!({"id": "s1", "merge": {"name": "North Yard"}})).await;
        let after = events(2).await;
        let names: Vec<&str> = after.iter().map(|e| e.1.as_str()).collect();
        assert_eq!(names, ["refs.site.updated", "refs.site.changed"]);
        // The voltage rises to 132 kV: it fires, for that version.
        ok(&b, &p, "refs.site.patch", json!({"id": "s1", "merge": {"voltage_kv": 132}})).await;
        let after = events(4).await;
        let got: Vec<(&str, u64)> = after.iter().map(|e| (e.1.as_str(), e.3)).collect();
        assert_eq!(got, [("refs.site.updated", 3), ("refs.site.changed", 3), ("refs.site.voltage_raised", 3)]);
        assert!(after.iter().all(|e| e.2 == "s1"));
        // Another update that keeps 132 kV: the condition needs a change, so no firing.
        ok(&b, &p, "refs.site.patch", json!({"id": "s1", "merge": {"status": "decommissioned"}})).await;
        // Down to 66 kV: a change, but below 110: no firing.
        ok(&b, &p, "refs.site.patch", json!({"id": "s1", "merge": {"voltage_kv": 66}})).await;
        let after = events(7).await;
        assert!(after.iter().all(|e| e.1 != "refs.site.voltage_raised"), "{after:?}");
        assert_eq!(after.len(), 4);
        // A rejected write fires nothing and writes no event.
        err(&b, &p, "refs.site.patch", json!({"id": "s1", "merge": {"voltage_kv": 400, "max_load_mva": 1000}})).await;
        assert!(events(11).await.is_empty());
        // Several writes in one batch: dense sequence numbers, every firing recorded.
        let mut tasks = Vec::new();
        for i in 0..20 {
            let b = b.clone();
            let p = p.clone();
            tasks.push(tokio::spawn(async move {
                let mut v = substation();
                v["voltage_kv"] = json!(33);
                b.invoke(&p, Call::new("refs.site.create", json!({"id": format!("b{i}"), "kind": "power.substation", "value": v}))).await.expect("create");
                b.invoke(&p, Call::new("refs.site.patch", json!({"id": format!("b{i}"), "merge": {"voltage_kv": 220}}))).await.expect("patch")
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        let all = events(0).await;
        let seqs: Vec<u64> = all.iter().map(|e| e.0).collect();
        assert_eq!(seqs, (1..=all.len() as u64).collect::<Vec<_>>(), "gapless");
        let raised = all.iter().filter(|e| e.1 == "refs.site.voltage_raised").count();
        assert_eq!(raised, 1 + 20);
    }

    async fn a_missing_handler_fails_when_the_broker_is_built(db) {
        let store = db.open().await;
        let e = Broker::with_handlers(
            Arc::new(example()),
            store,
            bver_resolver::Resolver::new(),
            Handlers::new(),
        )
        .expect_err("geo.locate is not registered");
        assert_eq!(e.code, ErrorCode::InvalidDefinition);
        assert!(e.message.contains("no handler `geo.locate`"), "{}", e.message);
        // A custom handler registered under the name runs instead.
        let mut h = Handlers::new();
        h.register("geo.locate", |call: bver_node::broker::HandlerCall| async move {
            Ok(json!({"pointer": format!("custom:{}", call.repo), "location": null}))
        });
        let b = Broker::with_handlers(Arc::new(example()), db.open().await, bver_resolver::Resolver::new(), h).expect("broker");
        let v = ok(&b, &admin(), "refs.site.locate", json!({"id": "x"})).await;
        assert_eq!(v["pointer"], "custom:site");
    }
}

#[test]
fn the_manifest_projects_figment_operations_rules_and_conditions() {
    let d = example();
    let grid = d.bundle("grid").expect("grid");
    let m = domain::manifest::manifest(&d, grid);
    let locate = m["operations"]
        .as_array()
        .and_then(|ops| ops.iter().find(|o| o["name"] == "refs.site.locate"))
        .expect("refs.site.locate in the manifest");
    assert_eq!(locate["handler"], "geo.locate");
    assert_eq!(locate["scopes"], json!(["refs:site:read"]));
    let site = &m["references"][1];
    let substation = site["kinds"]
        .as_array()
        .and_then(|k| k.iter().find(|k| k["name"] == "power.substation"))
        .expect("kind");
    assert_eq!(substation["rules"][1]["name"], "load_within_rating");
    let t = m["triggers"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "refs.site.voltage_raised"))
        .expect("trigger");
    assert!(t["when"].as_str().is_some_and(|w| w.contains("110.0")));
    let geo = m["figments"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == "geo"))
        .expect("geo");
    assert_eq!(geo["operations"], json!(["locate"]));
}
