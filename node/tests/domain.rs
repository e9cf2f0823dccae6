//! Domain definitions end to end: the example pack, every load error with its location and
//! hint, the generated operations, the manifests and the `bver check` / `bver manifest`
//! commands.
//!
//! Error cases are data: one fixture directory under `tests/fixtures/domains/` each, and the
//! expected errors as `code file:line:col` lines (file relative to the fixture).

use std::path::{Path, PathBuf};
use std::process::Command;

use bver_contracts::{BverError, ErrorCode, Phase};
use bver_node::domain::{self, Action, DefinitionErrors, Domain, Role, TriggerSource};
use serde_json::{Value, json};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/domains")
        .join(name)
}

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packs/example")
}

fn example() -> Domain {
    match domain::load(&[example_dir()]) {
        Ok(d) => d,
        Err(e) => panic!("the example pack must load:\n{e}"),
    }
}

fn load_err(dirs: &[PathBuf]) -> DefinitionErrors {
    match domain::load(dirs) {
        Ok(_) => panic!("expected errors loading {dirs:?}"),
        Err(e) => e,
    }
}

/// The errors of a fixture as `code file:line:col` (file relative to the fixture).
fn errors_of(name: &str) -> (Vec<String>, DefinitionErrors) {
    let root = fixture(name);
    let errs = load_err(std::slice::from_ref(&root));
    let lines = errs
        .errors()
        .iter()
        .map(|e| match &e.location {
            Some(l) => format!(
                "{} {}:{}:{}",
                e.kind.code(),
                l.file.strip_prefix(&root).unwrap_or(&l.file).display(),
                l.line,
                l.column
            ),
            None => e.kind.code().to_owned(),
        })
        .collect();
    (lines, errs)
}

/// Check a fixture's errors against the expected `code file:line:col` lines.
#[track_caller]
fn check(name: &str, expected: &[&str]) -> DefinitionErrors {
    let (got, errs) = errors_of(name);
    assert_eq!(got, expected, "errors of fixture `{name}`:\n{errs}");
    errs
}

// ---------------------------------------------------------------------------------------
// The example pack

#[test]
fn example_pack_compiles_into_a_registry() {
    let d = example();
    let names: Vec<(&str, Role)> = d
        .bundles()
        .iter()
        .map(|b| (b.name.as_str(), b.role))
        .collect();
    assert_eq!(names, [("grid", Role::Core), ("drawings", Role::Plugin)]);
    assert_eq!(d.core().name, "grid");
    let repos: Vec<&str> = d.ref_types().map(|r| r.repo.as_str()).collect();
    assert_eq!(repos, ["drawing", "feeder", "site"]);
    assert_eq!(
        d.owner_of_namespace("sites").map(|b| b.name.as_str()),
        Some("grid")
    );
    assert_eq!(
        d.owner_of_namespace("drawings").map(|b| b.name.as_str()),
        Some("drawings")
    );
    assert!(d.owner_of_namespace("nowhere").is_none());

    let site = d.ref_type("site").expect("site");
    assert_eq!(
        (site.namespace.as_str(), site.bundle.as_str()),
        ("sites", "grid")
    );
    let kinds: Vec<&str> = site.kinds.keys().map(String::as_str).collect();
    assert_eq!(kinds, ["power", "power.substation", "telecom.node"]);
    assert_eq!(
        site.kinds["power.substation"].lineage,
        ["power", "power.substation"]
    );
    assert_eq!(site.scopes(Action::Read), ["refs:site:read"]);
    assert_eq!(
        site.scopes(Action::Delete),
        ["refs:site:delete", "grid:admin"]
    );
    let triggers: Vec<&str> = site.triggers.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        triggers,
        [
            "refs.site.created",
            "refs.site.updated",
            "refs.site.deleted",
            "refs.site.kind_changed",
            "refs.site.restored",
            "refs.site.changed",
            "refs.site.voltage_raised"
        ]
    );
    assert_eq!(site.triggers[5].source, TriggerSource::RefType);

    // One figment, `geo`, shared by both bundles; `revisioned` is private to drawings.
    assert_eq!(
        d.bundle("grid").map(|b| b.figments.clone()),
        Some(vec!["geo".into()])
    );
    assert_eq!(
        d.bundle("drawings").map(|b| b.figments.clone()),
        Some(vec!["geo".into(), "revisioned".into()])
    );
    assert_eq!(
        d.figment("revisioned").and_then(|f| f.bundle.clone()),
        Some("drawings".into())
    );
    assert_eq!(
        d.bundle("drawings").map(|b| b.resolves.clone()),
        Some(vec!["sites".into()])
    );
}

fn substation() -> Value {
    json!({
        "name": "Northfield",
        "code": "NTH-014",
        "status": "in_service",
        "location": {"lat": 52.41, "lon": -1.51},
        "earthing": "solid",
        "rating_mva": 240,
        "voltage_kv": 132,
        "transformers": [
            {"tag": "T1", "rating_mva": 120, "primary_kv": 132, "secondary_kv": 33, "cooling": "ONAF"},
            {"tag": "T2", "rating_mva": 120, "primary_kv": 132, "secondary_kv": 33}
        ]
    })
}

#[test]
fn site_values_validate_per_kind() {
    let d = example();
    let site = d.ref_type("site").expect("site");
    let good = substation();
    assert_eq!(site.validate(Some("power.substation"), &good), Ok(()));
    // The substation's fields are not part of a plain power site, and the site is closed.
    let errs = site
        .validate(Some("power"), &good)
        .expect_err("closed site");
    assert!(
        errs.iter().any(|v| v.message.contains("rating_mva")),
        "{errs:?}"
    );
    // Without a kind only the base schema and the geo figment apply.
    let plain = json!({"name": "Depot", "code": "DEP-001", "status": "planned"});
    assert_eq!(site.validate(None, &plain), Ok(()));

    let mut bad = substation();
    bad["rating_mva"] = json!(-5);
    bad["transformers"][1]["tag"] = json!("X9");
    bad["location"]["lat"] = json!(123.0);
    let errs = site
        .validate(Some("power.substation"), &bad)
        .expect_err("invalid");
    let pointers: Vec<&str> = errs.iter().map(|v| v.pointer.as_str()).collect();
    for p in ["/rating_mva", "/transformers/1/tag", "/location/lat"] {
        assert!(pointers.contains(&p), "{p} missing from {errs:#?}");
    }
    assert!(errs.iter().all(|v| !v.schema_path.is_empty()));

    let node = json!({"name": "Ridge", "code": "RDG-002", "status": "in_service",
                      "node_id": "TN0042", "links": ["fibre", "microwave"]});
    assert_eq!(site.validate(Some("telecom.node"), &node), Ok(()));
    let errs = site
        .validate(
            Some("telecom.node"),
            &json!({"name": "Ridge", "code": "RDG-002", "status": "in_service"}),
        )
        .expect_err("node_id is required");
    assert_eq!(errs[0].pointer, "");
    assert!(errs[0].message.contains("node_id"), "{errs:?}");

    let errs = site
        .validate(Some("power.plant"), &plain)
        .expect_err("unknown kind");
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0]
            .message
            .contains("power, power.substation, telecom.node"),
        "{}",
        errs[0].message
    );
    let errs = site
        .validate(
            None,
            &json!({"name": "Depot", "code": "DEP-001", "status": "planned", "colour": "red"}),
        )
        .expect_err("closed: unknown top-level field");
    assert!(errs[0].message.contains("colour"), "{errs:?}");
}

#[test]
fn drawing_values_validate_per_kind() {
    let d = example();
    let drawing = d.ref_type("drawing").expect("drawing");
    let good = json!({
        "title": "Northfield 132 kV protection, sheet 3",
        "site": "bver://sites/site/nth-014",
        "revision": "C",
        "meta": {"sheet_number": 3, "sheet_count": 12, "owner": {"name": "P. Ortiz"}},
        "terminals": [{"label": "X1-1", "wire": "W104"}, {"label": "X1-2"}],
        "relays": [{"model": "P643"}]
    });
    assert_eq!(
        drawing.validate(Some("schematic.protection"), &good),
        Ok(())
    );
    let errs = drawing
        .validate(Some("schematic"), &good)
        .expect_err("relays belong to the protection kind only");
    assert!(errs[0].message.contains("relays"), "{errs:?}");

    let mut bad = good.clone();
    bad["site"] = json!("bver://drawings/drawing/1");
    bad["meta"]["sheet_number"] = json!(0);
    bad["terminals"][0]["label"] = json!("x 1");
    bad.as_object_mut().map(|o| o.remove("revision"));
    let errs = drawing
        .validate(Some("schematic.protection"), &bad)
        .expect_err("invalid");
    let pointers: Vec<&str> = errs.iter().map(|v| v.pointer.as_str()).collect();
    for p in ["/site", "/meta/sheet_number", "/terminals/0/label", ""] {
        assert!(pointers.contains(&p), "{p:?} missing from {errs:#?}");
    }
    let layout = json!({"title": "Yard plan", "site": "bver://sites/site/7", "revision": "A",
                        "meta": {"sheet_number": 1}, "scale": "1:200"});
    assert_eq!(drawing.validate(Some("layout"), &layout), Ok(()));
    let mut no_scale = layout.clone();
    no_scale.as_object_mut().map(|o| o.remove("scale"));
    assert!(drawing.validate(Some("layout"), &no_scale).is_err());
    assert!(drawing.validate(None, &no_scale).is_ok());
}

#[test]
fn overlapping_directories_load_each_file_once() {
    let d = domain::load(&[example_dir(), example_dir().join("grid")]).expect("loads");
    assert_eq!(d.bundles().len(), 2);
}

#[test]
fn domain_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Domain>();
}

// ---------------------------------------------------------------------------------------
// Figments

#[test]
fn figments_are_reused_across_bundles_with_nested_includes() {
    let d = domain::load(&[fixture("reuse")]).unwrap_or_else(|e| panic!("{e}"));
    let thing = d.ref_type("thing").expect("thing");
    // audit includes stamp: both apply to `thing`.
    assert_eq!(
        thing.validate(None, &json!({"name": "a", "stamped_at": "now"})),
        Ok(())
    );
    let errs = thing
        .validate(None, &json!({"name": "a"}))
        .expect_err("stamp is required");
    assert!(errs[0].message.contains("stamped_at"), "{errs:?}");
    // In the plugin, audit is included by the `memo` kind only.
    let note = d.ref_type("note").expect("note");
    assert_eq!(note.validate(None, &json!({"text": "hi"})), Ok(()));
    assert!(note.validate(Some("memo"), &json!({"text": "hi"})).is_err());
    assert_eq!(
        note.validate(
            Some("memo"),
            &json!({"text": "hi", "reviewed_by": "me", "stamped_at": "now"})
        ),
        Ok(())
    );
    // The figment's trigger lands on both repos.
    for (repo, bundle) in [("thing", "app"), ("note", "plugin")] {
        let rt = d.ref_type(repo).expect("repo");
        let t = rt
            .triggers
            .iter()
            .find(|t| t.name == format!("refs.{repo}.reviewed"))
            .expect("figment trigger");
        assert_eq!(t.source, TriggerSource::Figment("audit".into()));
        assert_eq!(
            d.bundle(bundle).map(|b| b.figments.clone()),
            Some(vec!["audit".into(), "stamp".into()])
        );
    }
}

#[test]
fn missing_figment_suggests_the_closest_name() {
    let errs = check("missing_figment", &["missing_figment app/bundle.toml:8:13"]);
    let e = &errs.errors()[0];
    assert_eq!(e.kind.to_string(), "figment `goe` is not defined");
    assert_eq!(e.hint(), "did you mean `geo`?");
}

#[test]
fn cyclic_figment_includes_are_reported_once() {
    let errs = check("figment_cycle", &["figment_cycle y/figment.toml:4:13"]);
    assert!(
        errs.errors()[0].kind.to_string().ends_with("x -> y -> x"),
        "{errs}"
    );
}

#[test]
fn inline_figments_are_private_to_their_bundle() {
    let (got, errs) = errors_of("bad_names");
    assert!(
        got.contains(&"private_figment app/bundle.toml:12:13".to_owned()),
        "{errs}"
    );
}

// ---------------------------------------------------------------------------------------
// Ownership and roles

#[test]
fn duplicate_repo_names_both_files() {
    let errs = check("dup_repo", &["duplicate_repo b/bundle.toml:7:7"]);
    let e = &errs.errors()[0];
    let msg = e.kind.to_string();
    assert!(
        msg.contains("a/bundle.toml") && msg.contains("b/bundle.toml"),
        "{msg}"
    );
    assert_eq!(e.related.len(), 1);
    assert!(e.related[0].file.ends_with("a/bundle.toml"));
    assert_eq!((e.related[0].line, e.related[0].column), (7, 7));
}

#[test]
fn duplicate_namespace_names_both_files() {
    let errs = check("dup_namespace", &["duplicate_namespace b/bundle.toml:5:27"]);
    let e = &errs.errors()[0];
    let msg = e.kind.to_string();
    assert!(
        msg.starts_with("namespace `sites` is claimed by bundle `a`"),
        "{msg}"
    );
    assert!(
        msg.contains("a/bundle.toml") && msg.contains("b/bundle.toml"),
        "{msg}"
    );
    assert!(e.related[0].file.ends_with("a/bundle.toml"));
}

#[test]
fn a_platform_needs_exactly_one_core() {
    let errs = check("no_core", &["no_core"]);
    assert!(errs.errors()[0].hint().contains("`plugin`"), "{errs}");
    let errs = check("two_cores", &["two_cores second/bundle.toml:4:8"]);
    let msg = errs.errors()[0].kind.to_string();
    assert!(
        msg.contains("first/bundle.toml") && msg.contains("second/bundle.toml"),
        "{msg}"
    );
    // Only figments, no bundle at all: no core either.
    check("missing_figment/geo", &["no_core"]);
}

// ---------------------------------------------------------------------------------------
// File-level errors

#[test]
fn unknown_fields_are_all_reported_with_line_and_column() {
    let errs = check(
        "unknown_field",
        &[
            "unknown_field app/bundle.toml:5:1",
            "unknown_field app/bundle.toml:9:1",
        ],
    );
    let hints: Vec<String> = errs.errors().iter().map(|e| e.hint()).collect();
    assert!(
        hints[0].starts_with("did you mean `namespaces`?"),
        "{hints:?}"
    );
    assert!(
        hints[1].starts_with("did you mean `figments`?"),
        "{hints:?}"
    );
    assert!(
        hints[1].contains("`kinds`"),
        "sub-tables are listed as allowed: {hints:?}"
    );
}

#[test]
fn bad_json_schemas_are_located_in_json_and_toml() {
    let errs = check(
        "bad_schema",
        &[
            "bad_schema app/bundle.toml:11:28",
            "bad_schema app/schemas/site.json:4:50",
        ],
    );
    let msg = errs.errors()[1].kind.to_string();
    assert!(msg.contains("/properties/rating_mva/minimum"), "{msg}");
    assert!(msg.contains("\"ten\""), "{msg}");
}

#[test]
fn kinds_need_known_parents_without_cycles() {
    let errs = check(
        "bad_kinds",
        &[
            "unknown_parent_kind app/bundle.toml:8:10",
            "kind_cycle app/bundle.toml:16:10",
        ],
    );
    assert_eq!(errs.errors()[0].hint(), "did you mean `power`?");
}

#[test]
fn names_versions_scopes_and_triggers_are_checked() {
    check(
        "bad_names",
        &[
            "bad_name app/bundle.toml:2:8",
            "bad_version app/bundle.toml:3:11",
            "bad_name app/bundle.toml:5:24",
            "bad_contract app/bundle.toml:6:14",
            "missing_contract app/bundle.toml:6:28",
            "bad_name app/bundle.toml:8:7",
            "foreign_namespace app/bundle.toml:11:13",
            "private_figment app/bundle.toml:12:13",
            "bad_scope app/bundle.toml:15:29",
            "duplicate_trigger app/bundle.toml:17:23",
            "unknown_event app/bundle.toml:21:7",
            "bad_name app/bundle.toml:23:20",
        ],
    );
}

#[test]
fn toml_syntax_errors_are_located() {
    let errs = check("syntax", &["syntax app/bundle.toml:3:17"]);
    assert_eq!(
        errs.errors()[0].hint(),
        "fix the TOML syntax at this position"
    );
}

#[test]
fn a_directory_without_definitions_is_an_error() {
    let empty = tempfile::tempdir().expect("tempdir");
    let errs = load_err(&[empty.path().to_path_buf()]);
    assert!(errs.has("nothing_to_load"), "{errs}");
    let errs = load_err(&[empty.path().join("missing")]);
    assert!(errs.has("io"), "{errs}");
}

#[test]
fn every_error_is_reported_across_files() {
    // Two independent broken fixtures at once: all their errors, not the first.
    let errs = load_err(&[fixture("unknown_field"), fixture("bad_schema")]);
    let codes: Vec<&str> = errs.errors().iter().map(|e| e.kind.code()).collect();
    assert_eq!(
        codes,
        ["bad_schema", "bad_schema", "unknown_field", "unknown_field"],
        "{errs}"
    );
}

#[test]
fn definition_errors_map_to_the_contract_error() {
    let (_, errs) = errors_of("dup_repo");
    let e: BverError = errs.into();
    assert_eq!(e.code, ErrorCode::InvalidDefinition);
    assert_eq!(e.phase, Phase::Configuration);
    assert!(!e.retryable);
    let first = &e.details["errors"][0];
    assert_eq!(first["code"], "duplicate_repo");
    assert_eq!(first["line"], 7);
    assert_eq!(first["column"], 7);
    assert!(first["hint"].as_str().is_some_and(|h| !h.is_empty()));
    assert!(
        first["related"][0]["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("a/bundle.toml"))
    );
}

// ---------------------------------------------------------------------------------------
// Generated operations

#[test]
fn every_repo_gets_ten_operations_and_the_resolver_five() {
    let d = example();
    let names: Vec<&str> = d.operations().iter().map(|o| o.name.as_str()).collect();
    // site and drawing include the geo figment, which adds `locate`.
    assert_eq!(names.len(), 3 * 10 + 2 + 5);
    let site_ops: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| n.starts_with("refs.site."))
        .collect();
    assert_eq!(
        site_ops,
        [
            "refs.site.create",
            "refs.site.get",
            "refs.site.patch",
            "refs.site.replace",
            "refs.site.delete",
            "refs.site.list",
            "refs.site.history",
            "refs.site.diff",
            "refs.site.restore",
            "refs.site.change_kind",
            "refs.site.locate"
        ]
    );
    assert_eq!(
        &names[32..],
        [
            "bver.get",
            "bver.resolve",
            "bver.exists",
            "bver.list",
            "bver.listrefs"
        ]
    );
    let scopes = |name: &str| d.operation(name).map(|o| (o.scopes.clone(), o.mutation));
    assert_eq!(
        scopes("refs.site.get"),
        Some((vec!["refs:site:read".into()], false))
    );
    assert_eq!(
        scopes("refs.site.create"),
        Some((vec!["refs:site:create".into()], true))
    );
    assert_eq!(
        scopes("refs.site.patch"),
        Some((vec!["refs:site:update".into()], true))
    );
    assert_eq!(
        scopes("refs.site.restore"),
        Some((vec!["refs:site:update".into()], true))
    );
    assert_eq!(
        scopes("refs.site.delete"),
        Some((vec!["refs:site:delete".into(), "grid:admin".into()], true))
    );
    assert_eq!(
        scopes("refs.drawing.diff"),
        Some((vec!["refs:drawing:read".into()], false))
    );
    assert_eq!(scopes("bver.resolve"), Some((vec![], false)));
    assert!(d.operation("refs.site.frobnicate").is_none());
}

fn compiled(schema: &Value) -> jsonschema::Validator {
    jsonschema::draft202012::new(schema).unwrap_or_else(|e| panic!("{e}: {schema:#}"))
}

#[test]
fn operation_schemas_compile_and_embed_the_repo_schema() {
    let d = example();
    for op in d.operations() {
        compiled(&op.input);
        compiled(&op.output);
    }
    let op = |name: &str| d.operation(name).unwrap_or_else(|| panic!("{name}"));

    let create = compiled(&op("refs.site.create").input);
    let good = json!({"id": "nth-014", "kind": "power.substation", "value": substation()});
    assert!(create.is_valid(&good));
    // The value is checked against the schema of the kind it names.
    assert!(!create.is_valid(&json!({"kind": "telecom.node", "value": substation()})));
    assert!(!create.is_valid(&json!({"kind": "power.plant", "value": substation()})));
    let plain = json!({"name": "Depot", "code": "DEP-001", "status": "planned"});
    assert!(create.is_valid(&json!({"value": plain})));
    assert!(create.is_valid(&json!({"kind": null, "value": plain})));
    assert!(!create.is_valid(&json!({"value": {"name": "Depot"}})));
    assert!(!create.is_valid(&json!({"value": plain, "extra": 1})));

    let patch = compiled(&op("refs.site.patch").input);
    assert!(patch.is_valid(&json!({"id": "a", "merge": {"status": "in_service"}})));
    assert!(patch.is_valid(&json!({"id": "a", "expected_version": 3,
        "json_patch": [{"op": "replace", "path": "/status", "value": "in_service"}]})));
    assert!(
        !patch.is_valid(&json!({"id": "a"})),
        "merge or json_patch is required"
    );
    assert!(!patch.is_valid(&json!({"id": "a", "merge": {}, "json_patch": []})));
    assert!(!patch.is_valid(&json!({"id": "a", "json_patch": [{"op": "add", "path": "/x"}]})));

    let replace = compiled(&op("refs.site.replace").input);
    assert!(replace.is_valid(&json!({"id": "a", "value": substation()})));
    assert!(!replace.is_valid(&json!({"id": "a", "value": {"name": 1}})));

    let envelope = json!({
        "pointer": "bver://sites/site/nth-014", "id": "nth-014", "version": 2,
        "kind": "power.substation", "value": substation(),
        "created_at": "2025-01-02T03:04:05Z", "updated_at": "2025-01-03T03:04:05Z"
    });
    assert!(compiled(&op("refs.site.get").output).is_valid(&envelope));
    let mut wrong = envelope.clone();
    wrong["pointer"] = json!("bver://drawings/drawing/1");
    assert!(!compiled(&op("refs.site.get").output).is_valid(&wrong));
    let list = compiled(&op("refs.site.list").output);
    assert!(list.is_valid(&json!({"items": [envelope], "next_cursor": null})));
    let list_in = compiled(&op("refs.site.list").input);
    assert!(list_in.is_valid(&json!({"kind": "power", "limit": 50, "cursor": "abc"})));
    assert!(!list_in.is_valid(&json!({"limit": 5000})));

    // A repo without kinds embeds its schema directly.
    let feeder = compiled(&op("refs.feeder.create").input);
    let value = json!({"name": "F12", "substation": "bver://sites/site/nth-014", "voltage_kv": 11});
    assert!(feeder.is_valid(&json!({"value": value})));
    assert!(!feeder.is_valid(&json!({"value": {"name": "F12"}})));

    let get = compiled(&op("bver.get").input);
    assert!(get.is_valid(&json!({"pointer": "bver://drawings/drawing/456@meta.sheet_number"})));
    assert!(!get.is_valid(&json!({"pointer": "http://x"})));
    let listrefs = compiled(&op("bver.listrefs").output);
    assert!(listrefs.is_valid(
        &json!({"items": [{"pointer": "bver://sites/site/1", "repo": "site",
        "version": 1, "kind": null, "updated_at": "2025-01-02T03:04:05Z"}], "next_cursor": "n"})
    ));
}

// ---------------------------------------------------------------------------------------
// Manifests

fn manifests(d: &Domain) -> Vec<String> {
    d.bundles()
        .iter()
        .map(|b| domain::manifest::render(&domain::manifest::manifest(d, b)))
        .collect()
}

#[test]
fn manifests_are_byte_identical_across_runs_and_paths() {
    let first = manifests(&example());
    let second = manifests(&example());
    assert_eq!(first, second);
    // Loaded another way (each directory named, in another order): the same bytes, so no
    // path or load order leaks into a manifest.
    let root = example_dir();
    let other = domain::load(&[
        root.join("figments/geo"),
        root.join("contracts/grid-types"),
        root.join("drawings"),
        root.join("grid"),
    ])
    .expect("loads");
    assert_eq!(manifests(&other), first);

    let out1 = tempfile::tempdir().expect("tempdir");
    let out2 = tempfile::tempdir().expect("tempdir");
    let d = example();
    let written = domain::manifest::write_all(&d, Some(out1.path())).expect("writes");
    domain::manifest::write_all(&d, Some(out2.path())).expect("writes");
    assert_eq!(written.len(), 2);
    for bundle in ["grid", "drawings"] {
        let rel = Path::new(bundle).join("bver.manifest.json");
        let a = std::fs::read(out1.path().join(&rel)).expect("written");
        let b = std::fs::read(out2.path().join(&rel)).expect("written");
        assert_eq!(a, b, "{bundle}");
    }
}

#[test]
fn the_manifest_lists_references_operations_scopes_and_pointers() {
    let d = example();
    let grid = d.bundle("grid").expect("grid");
    let m = domain::manifest::manifest(&d, grid);
    assert_eq!(m["format"], "bver.manifest/1");
    assert_eq!(
        m["bundle"],
        json!({"name": "grid", "version": "1.0.0", "role": "core",
        "description": "Sites and feeders of an electrical utility's network."})
    );
    let repos: Vec<&str> = m["references"]
        .as_array()
        .expect("references")
        .iter()
        .filter_map(|r| r["repo"].as_str())
        .collect();
    assert_eq!(repos, ["feeder", "site"]);
    let site = &m["references"][1];
    let kinds: Vec<&str> = site["kinds"]
        .as_array()
        .expect("kinds")
        .iter()
        .filter_map(|k| k["name"].as_str())
        .collect();
    assert_eq!(kinds, ["power", "power.substation", "telecom.node"]);
    assert_eq!(
        site["policy"]["delete"],
        json!(["refs:site:delete", "grid:admin"])
    );
    assert!(site["defs"]["figment:geo"].is_object());

    let ops = m["operations"].as_array().expect("operations");
    assert_eq!(
        ops.len(),
        21,
        "ten per repo, refs.site.locate from the geo figment, no resolver operations"
    );
    let create = ops
        .iter()
        .find(|o| o["name"] == "refs.site.create")
        .expect("refs.site.create");
    assert_eq!(create["scopes"], json!(["refs:site:create"]));
    assert_eq!(create["kind"], "command");
    assert_eq!(create["mutation"], true);
    assert_eq!(create["idempotency"], "optional");
    assert!(create["input"]["properties"]["value"].is_object());
    let get = ops
        .iter()
        .find(|o| o["name"] == "refs.site.get")
        .expect("get");
    assert_eq!(
        (get["kind"].as_str(), get["scopes"].clone()),
        (Some("query"), json!(["refs:site:read"]))
    );

    let triggers: Vec<&str> = m["triggers"]
        .as_array()
        .expect("triggers")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(triggers.contains(&"refs.feeder.kind_changed"));
    assert!(triggers.contains(&"refs.site.changed"));
    assert_eq!(
        m["pointers"],
        json!({"serves": [{"namespace": "sites", "repos": ["feeder", "site"]}], "resolves": []})
    );
    for list in ["jobs", "orchestrators", "channels", "primitives"] {
        assert_eq!(m[list], json!([]), "{list}");
    }
    assert_eq!(m["figments"][0]["name"], "geo");

    let drawings = domain::manifest::manifest(&d, d.bundle("drawings").expect("drawings"));
    assert_eq!(drawings["pointers"]["resolves"], json!(["sites"]));
    assert_eq!(drawings["bundle"]["role"], "plugin");

    // The hash covers everything but itself.
    let hash = m["content_hash"].as_str().expect("hash").to_owned();
    assert_eq!(hash.len(), 64);
    assert_eq!(domain::manifest::content_hash(&m), hash);
    let mut changed = m.clone();
    changed["bundle"]["version"] = json!("1.0.1");
    assert_ne!(domain::manifest::content_hash(&changed), hash);
}

// ---------------------------------------------------------------------------------------
// The `bver` command

fn bver(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bver"))
        .args(args)
        .output()
        .expect("runs bver")
}

#[test]
fn bver_check_exits_zero_with_a_summary() {
    let dir = example_dir();
    let out = bver(&["check".as_ref(), dir.as_os_str()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        "ok: 2 bundles (grid core, drawings plugin), 3 repos, 6 kinds, 2 figments, 37 operations"
    );
    let out = bver(&[
        "check".as_ref(),
        dir.as_os_str(),
        "--format".as_ref(),
        "json".as_ref(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["ok"], true);
    assert_eq!(v["operations"].as_array().map(Vec::len), Some(37));
}

#[test]
fn bver_check_exits_one_and_prints_every_error() {
    let dir = fixture("unknown_field");
    let out = bver(&["check".as_ref(), dir.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("app/bundle.toml:5:1: error[unknown_field]"),
        "{stderr}"
    );
    assert!(
        stderr.contains("app/bundle.toml:9:1: error[unknown_field]"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: did you mean `namespaces`?"),
        "{stderr}"
    );
    assert!(
        stderr
            .trim_end()
            .ends_with("2 errors in the domain definition"),
        "{stderr}"
    );

    let dir = fixture("dup_repo");
    let out = bver(&[
        "check".as_ref(),
        "--format".as_ref(),
        "json".as_ref(),
        dir.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["ok"], false);
    assert_eq!(v["errors"][0]["code"], "duplicate_repo");
    assert_eq!(
        (
            v["errors"][0]["line"].clone(),
            v["errors"][0]["column"].clone()
        ),
        (json!(7), json!(7))
    );

    // No directory at all is a usage error (clap's exit code 2).
    assert_eq!(bver(&["check".as_ref()]).status.code(), Some(2));
}

#[test]
fn bver_manifest_writes_one_file_per_bundle() {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let dir = example_dir();
    let out = bver(&[
        "manifest".as_ref(),
        dir.as_os_str(),
        "--out".as_ref(),
        out_dir.path().as_os_str(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = example();
    for b in d.bundles() {
        let path = out_dir.path().join(&b.name).join("bver.manifest.json");
        let bytes = std::fs::read_to_string(&path).expect("manifest written");
        assert_eq!(
            bytes,
            domain::manifest::render(&domain::manifest::manifest(&d, b))
        );
    }
    let dir = fixture("two_cores");
    let out = bver(&[
        "manifest".as_ref(),
        dir.as_os_str(),
        "--out".as_ref(),
        out_dir.path().as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1));
}
