//! The versioned store on both backends: every mutation kind with its version, diff and event;
//! conflicts; idempotency; paging; concurrent writers with no lost update; an outbox that a
//! follower reads with no gap; several processes on one PostgreSQL database; and crash safety
//! (a writer killed with SIGKILL loses no acknowledged write and leaves nothing half-written).

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use bver_contracts::ErrorCode;
use bver_node::store::{
    Change, ChangeType, Idempotency, Mutation, Provenance, RefKey, Store, StoreOptions,
};
use serde_json::{Value, json};

fn prov(op: &str) -> Provenance {
    Provenance {
        principal: "alice".into(),
        operation: op.into(),
        request_id: format!("req-{op}"),
    }
}

fn site(id: &str) -> RefKey {
    RefKey::new("sites", "site", id)
}

async fn write(store: &Store, key: &RefKey, change: Change) -> bver_node::store::Committed {
    store
        .mutate(Mutation::new(key.clone(), change, prov("test.write")))
        .await
        .unwrap_or_else(|e| panic!("write to {key} failed: {e}"))
}

async fn write_err(store: &Store, m: Mutation) -> bver_contracts::BverError {
    match store.mutate(m).await {
        Ok(c) => panic!("expected an error, got version {}", c.version),
        Err(e) => e,
    }
}

/// Every event from seq 1, checking that the outbox is dense.
async fn all_events(store: &Store) -> Vec<bver_node::store::OutboxEvent> {
    let mut out = Vec::new();
    loop {
        let after = out.len() as u64;
        let page = store.events_after(after, 500).await.expect("events");
        if page.is_empty() {
            return out;
        }
        for e in page {
            assert_eq!(e.seq, out.len() as u64 + 1, "the outbox has a gap");
            out.push(e);
        }
    }
}

both_backends! {
    async fn every_mutation_is_a_version_a_diff_and_an_event(db) {
        let store = db.open().await;
        let key = site("s1");
        let c1 = write(&store, &key, Change::Create { kind: Some("power.substation".into()), value: json!({"name": "North", "voltage_kv": 110}) }).await;
        assert_eq!((c1.version, c1.change, c1.seq), (1, ChangeType::Created, 1));
        let c2 = write(&store, &key, Change::MergePatch(json!({"voltage_kv": 220, "meta": {"owner": "grid"}}))).await;
        assert_eq!(c2.version, 2);
        assert_eq!(c2.value, json!({"name": "North", "voltage_kv": 220, "meta": {"owner": "grid"}}));
        let patch: json_patch::Patch = serde_json::from_value(json!([{"op": "replace", "path": "/name", "value": "North Yard"}])).expect("patch");
        let c3 = write(&store, &key, Change::JsonPatch(patch)).await;
        assert_eq!(c3.diff, json!([{"op": "replace", "path": "/name", "value": "North Yard"}]));
        let c4 = write(&store, &key, Change::Replace { value: json!({"name": "N"}) }).await;
        assert_eq!(c4.kind.as_deref(), Some("power.substation"), "replace keeps the kind");
        let c5 = write(&store, &key, Change::ChangeKind { kind: Some("telecom.node".into()), value: None }).await;
        assert_eq!((c5.change, c5.kind.as_deref()), (ChangeType::KindChanged, Some("telecom.node")));
        let c6 = write(&store, &key, Change::Delete).await;
        assert!(c6.deleted);
        let tomb = store.get(&key).await.expect("get").expect("tombstone");
        assert!(tomb.deleted);
        assert_eq!(tomb.version, 6);
        // A deleted reference's history stays readable.
        let hist = store.history(&key, None, 100).await.expect("history");
        assert_eq!(hist.items.iter().map(|v| v.version).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5, 6]);
        assert!(hist.items.iter().all(|v| v.provenance.principal == "alice" && v.provenance.operation == "test.write"));
        assert_eq!(hist.items[1].diff, c2.diff);
        // Restore version 2 (value and kind) as version 7: also undeletes.
        let c7 = write(&store, &key, Change::Restore { version: 2 }).await;
        assert_eq!((c7.version, c7.change, c7.deleted), (7, ChangeType::Restored, false));
        assert_eq!(c7.value, c2.value);
        assert_eq!(c7.kind.as_deref(), Some("power.substation"));
        let v3 = store.version(&key, 3).await.expect("version").expect("v3");
        assert_eq!(v3.value["name"], "North Yard");
        assert!(store.version(&key, 8).await.expect("version").is_none());
        // One event per version, in order, with the built-in trigger names.
        let events = all_events(&store).await;
        let triggers: Vec<&str> = events.iter().map(|e| e.trigger.as_str()).collect();
        assert_eq!(triggers, ["refs.site.created", "refs.site.updated", "refs.site.updated", "refs.site.updated", "refs.site.kind_changed", "refs.site.deleted", "refs.site.restored"]);
        assert!(events.iter().all(|e| e.epoch == store.epoch()));
        assert_eq!(events[1].diff, c2.diff);
    }

    async fn conflicts_are_errors_never_overwrites(db) {
        let store = db.open().await;
        let key = site("c1");
        write(&store, &key, Change::Create { kind: None, value: json!({"name": "a"}) }).await;
        let e = write_err(&store, Mutation::new(key.clone(), Change::Create { kind: None, value: json!({}) }, prov("x"))).await;
        assert_eq!(e.code, ErrorCode::AlreadyExists);
        let mut m = Mutation::new(key.clone(), Change::Replace { value: json!({"name": "b"}) }, prov("x"));
        m.expected_version = Some(5);
        let e = write_err(&store, m).await;
        assert_eq!(e.code, ErrorCode::VersionConflict);
        assert_eq!(e.details["current_version"], 1);
        assert_eq!(e.related_refs, vec!["bver://sites/site/c1".to_owned()]);
        let e = write_err(&store, Mutation::new(site("nope"), Change::MergePatch(json!({"a": 1})), prov("x"))).await;
        assert_eq!(e.code, ErrorCode::NotFound);
        let e = write_err(&store, Mutation::new(key.clone(), Change::Restore { version: 9 }, prov("x"))).await;
        assert_eq!(e.code, ErrorCode::NotFound);
        let bad: json_patch::Patch = serde_json::from_value(json!([{"op": "remove", "path": "/missing"}])).expect("patch");
        let e = write_err(&store, Mutation::new(key.clone(), Change::JsonPatch(bad), prov("x"))).await;
        assert_eq!(e.code, ErrorCode::MalformedRequest);
        // A validator that rejects: nothing is written, and a neighbour in the batch commits.
        let mut m = Mutation::new(key.clone(), Change::Replace { value: json!({"name": 7}) }, prov("x"));
        m.validator = Some(Arc::new(|_, v: &Value| {
            if v["name"].is_string() { Ok(()) } else {
                Err(bver_contracts::BverError::new(ErrorCode::SchemaViolation, bver_contracts::Phase::InputValidation, "name must be a string"))
            }
        }));
        let (bad, good) = tokio::join!(store.mutate(m), store.mutate(Mutation::new(site("c2"), Change::Create { kind: None, value: json!({}) }, prov("x"))));
        assert_eq!(bad.expect_err("rejected").code, ErrorCode::SchemaViolation);
        good.expect("the neighbour commits");
        assert_eq!(store.get(&key).await.expect("get").expect("c1").version, 1);
        assert_eq!(all_events(&store).await.len(), 2);
    }

    async fn idempotency_keys_replay_or_refuse(db) {
        let store = db.open().await;
        let key = site("i1");
        let mk = |fp: &str, value: Value| {
            let mut m = Mutation::new(key.clone(), Change::Create { kind: None, value }, prov("refs.site.create"));
            m.idempotency = Some(Idempotency { key: "k-1".into(), fingerprint: fp.into() });
            m
        };
        let first = store.mutate(mk("fp-a", json!({"name": "x"}))).await.expect("first");
        assert!(!first.replayed);
        let again = store.mutate(mk("fp-a", json!({"name": "x"}))).await.expect("replay");
        assert!(again.replayed);
        assert_eq!((again.version, again.seq), (first.version, first.seq));
        let e = write_err(&store, mk("fp-b", json!({"name": "y"}))).await;
        assert_eq!(e.code, ErrorCode::IdempotencyMismatch);
        // Another principal may use the same key.
        let mut other = mk("fp-a", json!({"name": "x"}));
        other.key = site("i2");
        other.provenance.principal = "bob".into();
        assert!(!store.mutate(other).await.expect("bob").replayed);
        assert_eq!(store.history(&key, None, 10).await.expect("history").items.len(), 1);
        // Concurrent repeats of one key (one batch or several) still make one version.
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let store = store.clone();
            let mut m = mk("fp-c", json!({"name": "z"}));
            m.key = site("i3");
            m.idempotency = Some(Idempotency { key: "k-3".into(), fingerprint: "fp-c".into() });
            tasks.push(tokio::spawn(async move { store.mutate(m).await }));
        }
        for t in tasks {
            assert_eq!(t.await.expect("task").expect("write").version, 1);
        }
        assert_eq!(store.history(&site("i3"), None, 10).await.expect("history").items.len(), 1);
    }

    async fn lists_page_with_stable_cursors(db) {
        let store = db.open().await;
        for i in 0..25 {
            let kind = if i % 2 == 0 { "power.substation" } else { "telecom.node" };
            write(&store, &site(&format!("p{i:02}")), Change::Create { kind: Some(kind.into()), value: json!({"i": i}) }).await;
        }
        write(&store, &RefKey::new("sites", "feeder", "f1"), Change::Create { kind: None, value: json!({}) }).await;
        write(&store, &site("p03"), Change::Delete).await;
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = store.list("sites", "site", None, cursor.as_deref(), 10).await.expect("list");
            seen.extend(page.items.iter().map(|c| c.key.id.clone()));
            match page.next { Some(n) => cursor = Some(n), None => break }
        }
        assert_eq!(seen.len(), 24, "deleted references are not listed");
        assert!(seen.windows(2).all(|w| w[0] < w[1]));
        let power = store.list("sites", "site", Some("power"), None, 100).await.expect("list");
        assert_eq!(power.items.len(), 13);
        assert!(power.items.iter().all(|c| c.kind.as_deref() == Some("power.substation")));
        let none = store.list("sites", "site", Some("pow"), None, 100).await.expect("list");
        assert!(none.items.is_empty(), "a kind filter matches whole dotted segments");
        let refs = store.listrefs("sites", None, 100).await.expect("listrefs");
        assert_eq!(refs.items.len(), 25);
        assert_eq!(refs.items[0].repo, "feeder");
        let e = store.list("sites", "site", None, Some("zz-not-a-cursor"), 10).await.expect_err("bad cursor");
        assert_eq!(e.code, ErrorCode::MalformedRequest);
    }

    async fn concurrent_writers_lose_no_update(db) {
        // Two stores on one database: two writers, as two processes would have.
        let a = db.open().await;
        let b = db.open().await;
        let key = RefKey::new("burst", "counter", "shared");
        let tasks_per_store = 8;
        let increments = 25;
        let mut tasks = Vec::new();
        for t in 0..tasks_per_store * 2 {
            let store = if t % 2 == 0 { a.clone() } else { b.clone() };
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..increments {
                    loop {
                        let (expected, n) = match store.get(&key).await.expect("get") {
                            Some(c) => (c.version, c.value["n"].as_u64().expect("n")),
                            None => (0, 0),
                        };
                        let change = if expected == 0 { Change::Create { kind: None, value: json!({"n": 1}) } } else { Change::Replace { value: json!({"n": n + 1}) } };
                        let mut m = Mutation::new(key.clone(), change, prov("inc"));
                        m.expected_version = Some(expected);
                        match store.mutate(m).await {
                            Ok(_) => break,
                            Err(e) if matches!(e.code, ErrorCode::VersionConflict | ErrorCode::AlreadyExists) => continue,
                            Err(e) => panic!("unexpected: {e}"),
                        }
                    }
                }
            }));
        }
        for t in tasks { t.await.expect("task"); }
        let total = (tasks_per_store * 2 * increments) as u64;
        for store in [&a, &b] {
            // Each store may cache; a fresh read through the other store's writes is checked
            // by reading the version history, which always comes from the database.
            let hist = store.history(&key, None, 1000).await.expect("history");
            assert_eq!(hist.items.len() as u64, total);
            assert_eq!(hist.items.last().expect("last").value["n"], total);
        }
    }

    async fn two_stores_on_one_database_patch_on_each_others_writes(db) {
        // Each store's writer knows the states it wrote (its cache); a write through the other
        // store must make it look again, or a patch would apply to a stale value.
        let a = db.open().await;
        let b = db.open().await;
        let key = site("shared-patches");
        write(&a, &key, Change::Create { kind: None, value: json!({"a": 0, "b": 0}) }).await;
        for i in 1..=20u64 {
            let ca = write(&a, &key, Change::MergePatch(json!({"a": i}))).await;
            assert_eq!(ca.value, json!({"a": i, "b": i - 1}), "a patched b's latest write");
            let cb = write(&b, &key, Change::MergePatch(json!({"b": i}))).await;
            assert_eq!(cb.value, json!({"a": i, "b": i}), "b patched a's latest write");
            assert_eq!(cb.version, ca.version + 1);
        }
        let hist = b.history(&key, None, 1000).await.expect("history");
        assert_eq!(hist.items.len(), 41);
        if a.backend_name() == "sqlite" {
            // A's first patch is planned ahead on the counter A knows and commits in one
            // round trip; every later one finds that B moved the counter, writes nothing on
            // that path and is applied on the full path instead.
            let stats = a.write_stats();
            assert!(stats.pipelined_batches >= 1, "{stats:?}");
            assert!(stats.pipeline_fallbacks >= 19, "{stats:?}");
        }
    }

    async fn concurrent_patches_through_two_stores_apply_to_the_latest_value(db) {
        // Many callers per store keep both writers busy with batches; each store's commits
        // interleave with the other's. A writer that trusted what it knew after the other's
        // commit would patch a stale value (or write a version twice). Every merge patch must
        // land once, on the latest value.
        let a = db.open().await;
        let b = db.open().await;
        // Three rounds on fresh keys: the interleaving that catches a stale state is timing-
        // dependent, and each round is another chance.
        for round in 0..3 {
            let keys: Vec<RefKey> = (0..8).map(|i| site(&format!("ahead-{round}-{i}"))).collect();
            for key in &keys {
                write(&a, key, Change::Create { kind: None, value: json!({}) }).await;
            }
            let rounds = 80u64;
            let mut tasks = Vec::new();
            for t in 0..48usize {
                let store = if t % 3 == 0 { b.clone() } else { a.clone() };
                let keys = keys.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 1..=rounds {
                        let key = &keys[(t + i as usize) % keys.len()];
                        write(&store, key, Change::MergePatch(json!({ format!("t{t}"): i }))).await;
                    }
                }));
            }
            for t in tasks { t.await.expect("task"); }
            let mut versions = 0;
            for key in &keys {
                let hist = a.history(key, None, 1000).await.expect("history");
                for (n, v) in hist.items.iter().enumerate() {
                    assert_eq!(v.version, n as u64 + 1, "versions of {key} are dense");
                }
                versions += hist.items.len() as u64;
                // (Not `get`: each store's cache knows its own writes only; history is read from
                // the database.)
                let last = hist.items.last().expect("a version");
                // Each task's field holds the last round in which it patched this key.
                for t in 0..48usize {
                    let expected = (1..=rounds).rev().find(|i| (t + *i as usize) % keys.len() == keys.iter().position(|k| k == key).unwrap());
                    assert_eq!(last.value.get(format!("t{t}")).and_then(|v| v.as_u64()), expected, "field t{t} of {key}");
                }
            }
            assert_eq!(versions, keys.len() as u64 + 48 * rounds, "every patch is one version");
        }
    }

    async fn a_follower_never_skips_an_event_that_commits_late(db) {
        // Several writers in two stores commit concurrently while a follower reads the outbox
        // with `seq > cursor`. Every event must be seen exactly once, in sequence order.
        let a = db.open().await;
        let b = db.open().await;
        let writers = 6;
        let per_writer = 60;
        let total = (writers * per_writer) as u64;
        let follower = {
            let store = a.clone();
            tokio::spawn(async move {
                let mut cursor = 0u64;
                let mut seen = 0u64;
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                while seen < total {
                    assert!(std::time::Instant::now() < deadline, "follower stalled at {cursor}");
                    let page = store.events_after(cursor, 50).await.expect("events");
                    for e in &page {
                        assert_eq!(e.seq, cursor + 1, "skipped from {cursor} to {}", e.seq);
                        cursor = e.seq;
                        seen += 1;
                    }
                    if page.is_empty() { tokio::task::yield_now().await; }
                }
                cursor
            })
        };
        let mut tasks = Vec::new();
        for w in 0..writers {
            let store = if w % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                for i in 0..per_writer {
                    write(&store, &RefKey::new("burst", "item", format!("w{w}-{i}")), Change::Create { kind: None, value: json!({"w": w, "i": i}) }).await;
                }
            }));
        }
        for t in tasks { t.await.expect("writer"); }
        assert_eq!(follower.await.expect("follower"), total);
    }

    async fn the_cache_never_serves_a_stale_value_to_its_own_process(db) {
        let store = db.open_with(StoreOptions { cache_capacity: 1000, ..StoreOptions::default() }).await;
        let key = site("cache");
        write(&store, &key, Change::Create { kind: None, value: json!({"n": 0}) }).await;
        for n in 1..=50u64 {
            let reader = { let store = store.clone(); let key = key.clone(); tokio::spawn(async move { store.get(&key).await }) };
            let c = write(&store, &key, Change::Replace { value: json!({"n": n}) }).await;
            let _ = reader.await;
            let got = store.get(&key).await.expect("get").expect("present");
            assert_eq!(got.version, c.version, "read after write sees the write");
            assert_eq!(got.value["n"], n);
        }
    }

    async fn large_batches_and_a_small_cache_keep_every_write(db) {
        // Batches larger than one multi-row statement (and than SQLite's padded shapes), several
        // mutations of one key in one batch, and a cache far smaller than the keys, so that the
        // writer mixes cached states, evicted ones and database reads.
        let options = StoreOptions { cache_capacity: 64, max_batch: 1024, ..StoreOptions::default() };
        let store = db.open_with(options.clone()).await;
        let keys = 600;
        let creates: Vec<_> = (0..keys).map(|i| {
            let store = store.clone();
            tokio::spawn(async move { write(&store, &RefKey::new("big", "item", format!("k{i:04}")), Change::Create { kind: None, value: json!({"i": i}) }).await })
        }).collect();
        for t in creates { assert_eq!(t.await.expect("create").version, 1); }
        // Warm part of the cache, then patch every key twice, concurrently.
        for i in (0..keys).step_by(7) { store.get(&RefKey::new("big", "item", format!("k{i:04}"))).await.expect("get"); }
        let patches: Vec<_> = (0..keys * 2).map(|j| {
            let store = store.clone();
            let key = RefKey::new("big", "item", format!("k{:04}", j % keys));
            tokio::spawn(async move { write(&store, &key, Change::MergePatch(json!({ format!("p{}", j / keys): true }))).await })
        }).collect();
        for t in patches { let c = t.await.expect("patch"); assert!(c.version >= 2 && c.seq > 0); }
        // A second store on the same database: its own cache must not go stale for keys it
        // writes after the first store wrote them.
        let other = db.open_with(options).await;
        let k0 = RefKey::new("big", "item", "k0000");
        assert_eq!(other.get(&k0).await.expect("get").expect("present").version, 3);
        write(&store, &k0, Change::MergePatch(json!({"p2": true}))).await;
        let c = write(&other, &k0, Change::MergePatch(json!({"p3": true}))).await;
        assert_eq!(c.version, 5, "the second store patched the latest version");
        assert_eq!(other.get(&k0).await.expect("get").expect("present").value, json!({"i": 0, "p0": true, "p1": true, "p2": true, "p3": true}));
        for i in 0..keys {
            let key = RefKey::new("big", "item", format!("k{i:04}"));
            let c = store.get(&key).await.expect("get").expect("present");
            if i == 0 { continue; }
            assert_eq!(c.version, 3, "{key}");
            assert_eq!(c.value, json!({"i": i, "p0": true, "p1": true}), "{key}");
            assert_eq!(store.history(&key, None, 10).await.expect("history").items.len(), 3);
        }
        let events = all_events(&store).await;
        assert_eq!(events.len(), keys * 3 + 2);
    }

    async fn a_killed_writer_loses_no_acknowledged_write(db) {
        // `bver debug write-burst` prints `ack ID VERSION SEQ` only after the durable commit.
        // Kill it with SIGKILL mid-burst, then every acknowledged write must be readable,
        // and every stored version must have its event (no half-written mutation).
        let mut child = Command::new(env!("CARGO_BIN_EXE_bver"))
            .args(["debug", "write-burst", "--tasks", "8", "--prefix", "crash"])
            .args(db.cli_args())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn bver debug write-burst");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        assert_eq!(lines.next().expect("ready line").expect("read"), "ready");
        let mut acked = BTreeMap::new();
        for line in lines.by_ref() {
            let line = line.expect("read");
            let parts: Vec<&str> = line.split(' ').collect();
            acked.insert(parts[1].to_owned(), parts[2].parse::<u64>().expect("version"));
            if acked.len() == 400 {
                child.kill().expect("SIGKILL");
                break;
            }
        }
        // Lines already in the pipe were acknowledged before the kill.
        for line in lines {
            let Ok(line) = line else { break };
            let parts: Vec<&str> = line.split(' ').collect();
            if parts.len() == 4 { acked.insert(parts[1].to_owned(), parts[2].parse::<u64>().expect("version")); }
        }
        let _ = child.wait();
        let store = db.open().await;
        for (id, version) in &acked {
            let c = store.get(&RefKey::new("burst", "item", id.clone())).await.expect("get");
            assert_eq!(c.map(|c| c.version), Some(*version), "acknowledged write {id} was lost");
        }
        let events = all_events(&store).await;
        assert!(events.len() >= acked.len());
        for e in &events {
            let v = store.version(&e.key, e.version).await.expect("version");
            assert!(v.is_some(), "event {} has no version", e.seq);
        }
        let live = store.listrefs("burst", None, 1000).await.expect("listrefs");
        let mut count = live.items.len();
        let mut cursor = live.next;
        while let Some(c) = cursor {
            let page = store.listrefs("burst", Some(&c), 1000).await.expect("listrefs");
            count += page.items.len();
            cursor = page.next;
        }
        assert_eq!(count, events.len(), "every stored reference has exactly its one event");
    }
}

/// Two real processes increment one counter on one PostgreSQL database: no update is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_postgres_lose_no_update() {
    let Some(db) = support::Db::postgres().await else {
        return;
    };
    // Run the migrations once before the processes race to start.
    let store = db.open().await;
    let per_task = 30u64;
    let tasks = 4u64;
    let spawn = |prefix: &str| {
        Command::new(env!("CARGO_BIN_EXE_bver"))
            .args(["debug", "write-burst", "--shared-counter", "shared"])
            .args([
                "--tasks",
                &tasks.to_string(),
                "--count",
                &per_task.to_string(),
            ])
            .args(["--prefix", prefix])
            .args(db.cli_args())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn bver debug write-burst")
    };
    let mut p1 = spawn("p1");
    let mut p2 = spawn("p2");
    let (s1, s2) = tokio::task::spawn_blocking(move || (p1.wait(), p2.wait()))
        .await
        .expect("wait");
    assert!(s1.expect("p1").success() && s2.expect("p2").success());
    let key = RefKey::new("burst", "counter", "shared");
    let hist = store.history(&key, None, 1000).await.expect("history");
    let total = 2 * tasks * per_task;
    assert_eq!(hist.items.len() as u64, total);
    assert_eq!(hist.items.last().expect("last").value["n"], total);
    let principals: std::collections::BTreeSet<String> = hist
        .items
        .iter()
        .map(|v| v.provenance.principal[..2].to_owned())
        .collect();
    assert_eq!(principals.len(), 2, "both processes wrote");
}

/// `bver get` resolves against a data directory: a value at a path, a clear not-found that
/// names the missing segment, and a malformed pointer, each as JSON with its exit status.
#[test]
fn bver_get_resolves_against_a_data_directory() {
    let db = support::Db::sqlite();
    let status = Command::new(env!("CARGO_BIN_EXE_bver"))
        .args([
            "debug",
            "write-burst",
            "--tasks",
            "1",
            "--count",
            "2",
            "--prefix",
            "g",
        ])
        .args(db.cli_args())
        .stdout(Stdio::null())
        .status()
        .expect("write-burst");
    assert!(status.success());
    let get = |pointer: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_bver"))
            .args(["get", pointer])
            .args(db.cli_args())
            .output()
            .expect("bver get");
        let json: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        (out.status.code(), json)
    };
    let (code, v) = get("bver://burst/item/g-0-2@i");
    assert_eq!(
        (code, v["value"].as_u64(), v["version"].as_u64()),
        (Some(0), Some(2), Some(1))
    );
    assert_eq!(v["source"], "local");
    let (code, v) = get("bver://burst/item/g-0-2@meta.owner");
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (Some(1), Some("not_found"))
    );
    assert_eq!(v["error"]["details"]["key"], "meta");
    let (code, v) = get("bver://burst/item/g-0-9");
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (Some(1), Some("not_found"))
    );
    let (code, v) = get("bver://burst//x");
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (Some(1), Some("invalid_pointer"))
    );
}
