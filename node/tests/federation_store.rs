//! The store's side of federation, on both backends: remote events applied effectively once
//! (duplicates by `(epoch, seq)` dropped, the cursor moved in the same transaction as the
//! local trigger events and the cache, also when two processes race on a subscription's very
//! first batch, and all or nothing when an apply is cancelled at any point), channel reads
//! with values, the head watch moved by federation appends, the cache keeping the newest
//! version, and leases (one holder, handed on when released or expired).

mod support;

use bver_contracts::ErrorCode;
use bver_contracts::version::{Diff, PatchOp};
use bver_node::store::{
    Change, ChangeType, Mutation, Provenance, RefKey, RemoteEffect, Store, TriggerHook,
};
use serde_json::json;
use std::sync::Arc;

fn effect(seq: u64, id: &str, version: u64, emit: bool) -> RemoteEffect {
    RemoteEffect {
        origin_seq: seq,
        trigger: emit.then(|| "remote.site_changed".to_owned()),
        cache: true,
        key: RefKey::new("sites", "site", id),
        version,
        kind: None,
        change: if version == 1 {
            ChangeType::Created
        } else {
            ChangeType::Updated
        },
        diff: Diff::new(vec![PatchOp::Replace {
            path: "/v".into(),
            value: json!(version),
        }]),
        value: Some(json!({ "v": version })),
        at: 1_700_000_000_000,
    }
}

async fn create(store: &Store, id: &str) {
    let hook: TriggerHook = Arc::new(|_| vec!["refs.site.changed".to_owned()]);
    let mut m = Mutation::new(
        RefKey::new("sites", "site", id),
        Change::Create {
            kind: None,
            value: json!({ "id": id }),
        },
        Provenance {
            principal: "t".into(),
            operation: "refs.site.create".into(),
            request_id: "r".into(),
        },
    );
    m.triggers = Some(hook);
    store.mutate(m).await.unwrap();
}

both_backends! {
    async fn remote_events_apply_once_with_the_cursor_in_the_same_transaction(db) {
        let store = db.open().await;
        let mut head = store.subscribe_seq();
        let a = store
            .apply_remote("s", "sites", "site_changes", "e1", &[effect(2, "a", 1, true), effect(4, "b", 1, true)])
            .await
            .unwrap();
        assert_eq!((a.applied, a.duplicates, a.last_local_seq), (2, 0, Some(2)));
        assert_eq!(*head.borrow_and_update(), 2, "federation appends move the head");
        // A redelivery overlapping what was applied: only the new event applies.
        let a = store
            .apply_remote("s", "sites", "site_changes", "e1", &[effect(4, "b", 1, true), effect(6, "a", 2, true)])
            .await
            .unwrap();
        assert_eq!((a.applied, a.duplicates), (1, 1));
        let row = store.subscription("s").await.unwrap().unwrap();
        assert_eq!((row.epoch.as_str(), row.seq, row.applied), ("e1", 6, 3));
        // Local writes keep numbering after the federation's events: the outbox stays dense.
        create(&store, "x").await;
        let events = store.events_after(0, 100).await.unwrap();
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
        let ids: Vec<&str> = events.iter().map(|e| e.provenance.request_id.as_str()).collect();
        assert_eq!(&ids[..3], ["sites/e1/2", "sites/e1/4", "sites/e1/6"]);
        assert_eq!(events[0].trigger, "remote.site_changed");
        assert_eq!(events[0].provenance.principal, "peer:sites");
        // The origin's diff, stored as its RFC 6902 JSON.
        assert_eq!(events[0].diff, json!([{ "op": "replace", "path": "/v", "value": 1 }]));
        assert_eq!(events[2].diff, json!([{ "op": "replace", "path": "/v", "value": 2 }]));
        // The cache holds the newest version; an older one never overwrites it.
        let c = store.cached(&RefKey::new("sites", "site", "a")).await.unwrap().unwrap();
        assert_eq!((c.version, c.value.clone()), (2, json!({ "v": 2 })));
        store.apply_remote("t", "sites", "site_changes", "e1", &[effect(1, "a", 1, false)]).await.unwrap();
        let c = store.cached(&RefKey::new("sites", "site", "a")).await.unwrap().unwrap();
        assert_eq!(c.version, 2);
        // A new epoch at the publisher starts the cursor over.
        let a = store.apply_remote("s", "sites", "site_changes", "e2", &[effect(1, "c", 1, false)]).await.unwrap();
        assert_eq!(a.applied, 1);
        assert_eq!(store.subscription("s").await.unwrap().unwrap().seq, 1);
    }

    async fn a_large_batch_applies_in_order_across_statement_chunks(db) {
        // 600 events, one in five without a local trigger: several multi-row statements in one
        // transaction, numbered densely in order.
        let store = db.open().await;
        let batch: Vec<RemoteEffect> =
            (1..=600).map(|n| effect(n, &format!("r{}", n % 50), n, n % 5 != 0)).collect();
        let a = store.apply_remote("big", "sites", "site_changes", "e1", &batch).await.unwrap();
        assert_eq!((a.applied, a.duplicates, a.last_local_seq), (600, 0, Some(480)));
        let events = store.events_after(0, 10_000).await.unwrap();
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=480).collect::<Vec<u64>>());
        let origins: Vec<String> = events.iter().map(|e| e.provenance.request_id.clone()).collect();
        let expected: Vec<String> =
            (1..=600).filter(|n| n % 5 != 0).map(|n| format!("sites/e1/{n}")).collect();
        assert_eq!(origins, expected);
        let row = store.subscription("big").await.unwrap().unwrap();
        assert_eq!((row.seq, row.applied), (600, 600));
        // The newest version of each cached reference won.
        let c = store.cached(&RefKey::new("sites", "site", "r0")).await.unwrap().unwrap();
        assert_eq!(c.version, 600);
        // The same batch again: nothing applied, nothing appended, the cursor unchanged.
        let a = store.apply_remote("big", "sites", "site_changes", "e1", &batch).await.unwrap();
        assert_eq!((a.applied, a.duplicates, a.last_local_seq), (0, 600, None));
        assert_eq!(store.outbox_head().await.unwrap(), 480);
        assert_eq!(store.subscription("big").await.unwrap().unwrap().applied, 600);
        // A batch with no local trigger at all still moves the cursor.
        let quiet: Vec<RemoteEffect> = (601..=603).map(|n| effect(n, "q", n, false)).collect();
        let a = store.apply_remote("big", "sites", "site_changes", "e1", &quiet).await.unwrap();
        assert_eq!((a.applied, a.last_local_seq), (3, None));
        assert_eq!(store.subscription("big").await.unwrap().unwrap().seq, 603);
        // Local writes go on numbering after them.
        create(&store, "after").await;
        assert_eq!(store.outbox_head().await.unwrap(), 482);
    }

    async fn an_apply_cancelled_at_any_point_leaves_all_or_nothing_and_the_store_writing(db) {
        // A subscription stopped mid-apply drops the apply's future, wherever it is: before its
        // transaction, inside it (cache rows are a round trip each, so a batch of 300 is
        // hundreds of round trips), or after its commit. Each point must leave the batch
        // applied whole or not at all, and the write connection usable: an open transaction
        // left on it would make the next local write fail, or commit half a batch.
        let store = db.open().await;
        let batch: Vec<RemoteEffect> =
            (1..=300).map(|n| effect(n, &format!("r{n}"), 1, true)).collect();
        let mut cancelled = 0;
        let mut local = 0u64;
        for micros in [0u64, 20, 50, 100, 200, 400, 800, 1_600, 3_200, 6_400, 12_800, 25_600] {
            let run = store.apply_remote("c", "sites", "site_changes", "e1", &batch);
            let outcome = tokio::time::timeout(std::time::Duration::from_micros(micros), run).await;
            if outcome.is_err() {
                cancelled += 1;
            }
            // A statement already handed to the connection's thread runs to its end after the
            // future is gone: a cancelled apply whose last statement (with its COMMIT) was sent
            // still commits, a moment later. The next local write settles it either way: it
            // waits for the write lock the cancelled transaction holds until it commits or is
            // rolled back, and it proves the write connection usable (two events: its built-in
            // trigger and the hook's).
            create(&store, &format!("local{micros}")).await;
            local += 2;
            let remote = match store.subscription("c").await.unwrap() {
                None => 0,
                Some(row) => {
                    assert_eq!((row.seq, row.applied), (300, 300), "after {micros} µs");
                    300
                }
            };
            let events = store.events_after(0, 10_000).await.unwrap();
            let applied = events.iter().filter(|e| e.trigger == "remote.site_changed").count();
            assert_eq!(applied as u64, remote, "half a batch after {micros} µs");
            assert_eq!(store.outbox_head().await.unwrap(), remote + local);
            let locals = events.iter().filter(|e| e.trigger != "remote.site_changed").count();
            assert_eq!(locals as u64, local, "a local write lost after {micros} µs");
        }
        assert!(cancelled > 0, "no apply was cancelled: the timeouts test nothing");
        // Whatever happened above, the batch ends applied once.
        store.apply_remote("c", "sites", "site_changes", "e1", &batch).await.unwrap();
        let row = store.subscription("c").await.unwrap().unwrap();
        assert_eq!((row.seq, row.applied), (300, 300));
        assert_eq!(store.outbox_head().await.unwrap(), 300 + local);
    }

    async fn an_apply_that_fails_mid_transaction_leaves_nothing_and_the_store_writing(db) {
        // A trigger (installed from outside, as an operator's mistake or a full disk would
        // strike) fails the insert of the batch's third local event: after the cache rows and
        // the cursor read, inside the transaction. The whole batch must be rolled back, the
        // error returned, and the write connection left without an open transaction.
        let store = db.open().await;
        let fail = "sites/e1/3";
        if db.is_sqlite() {
            db.execute(&format!(
                "CREATE TRIGGER bver_test_fail BEFORE INSERT ON bver_events \
                 WHEN NEW.request_id = '{fail}' BEGIN SELECT RAISE(ABORT, 'injected'); END"
            ))
            .await;
        } else {
            db.execute(&format!(
                "CREATE FUNCTION bver_test_fail() RETURNS trigger AS $$ BEGIN \
                 IF NEW.request_id = '{fail}' THEN RAISE EXCEPTION 'injected'; END IF; \
                 RETURN NEW; END $$ LANGUAGE plpgsql; \
                 CREATE TRIGGER bver_test_fail BEFORE INSERT ON bver_events \
                 FOR EACH ROW EXECUTE FUNCTION bver_test_fail()"
            ))
            .await;
        }
        let batch: Vec<RemoteEffect> =
            (1..=5).map(|n| effect(n, &format!("r{n}"), 1, true)).collect();
        let err = store.apply_remote("f", "sites", "site_changes", "e1", &batch).await.unwrap_err();
        // The cause is logged, not returned (database messages stay out of answers).
        assert_eq!((err.code, err.retryable), (ErrorCode::StorageError, true), "{err:?}");
        assert_eq!(store.subscription("f").await.unwrap(), None, "the cursor moved");
        assert_eq!(store.outbox_head().await.unwrap(), 0, "events of a failed apply");
        assert!(store.events_after(0, 100).await.unwrap().is_empty());
        assert_eq!(store.cached(&RefKey::new("sites", "site", "r1")).await.unwrap(), None);
        // The write connection takes the next local write.
        create(&store, "after").await;
        assert_eq!(store.outbox_head().await.unwrap(), 2);
        // Once the cause is gone, the same batch applies whole, numbered after the local write.
        let on = if db.is_sqlite() { "" } else { " ON bver_events" };
        db.execute(&format!("DROP TRIGGER bver_test_fail{on}")).await;
        let a = store.apply_remote("f", "sites", "site_changes", "e1", &batch).await.unwrap();
        assert_eq!((a.applied, a.duplicates, a.last_local_seq), (5, 0, Some(7)));
        assert_eq!(store.subscription("f").await.unwrap().unwrap().seq, 5);
        assert!(store.cached(&RefKey::new("sites", "site", "r1")).await.unwrap().is_some());
    }

    async fn another_process_commits_reach_the_head_watch_by_refresh(db) {
        let reader = db.open().await;
        let writer = db.open().await;
        let head = reader.subscribe_seq();
        create(&writer, "w").await;
        assert_eq!(*head.borrow(), 0, "another process's commit is not seen by the watch");
        assert_eq!(reader.refresh_head().await.unwrap(), 2);
        assert_eq!(*head.borrow(), 2);
    }

    async fn channel_reads_filter_by_trigger_and_carry_values(db) {
        let store = db.open().await;
        for id in ["a", "b", "c"] {
            create(&store, id).await;
        }
        assert_eq!(store.outbox_head().await.unwrap(), 6);
        let rows = store.channel_events(&["refs.site.changed".to_owned()], 1, 6, 10).await.unwrap();
        let seqs: Vec<u64> = rows.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![2, 4, 6]);
        let b = &rows[1];
        assert_eq!(b.value, Some(json!({ "id": "b" })));
        assert_eq!((b.key.id.as_str(), b.version, b.change), ("b", 1, ChangeType::Created));
        assert_eq!(b.trigger, "refs.site.changed");
        // The diff, parsed straight into its wire form, is the one the outbox stored.
        let stored = store.events_after(3, 1).await.unwrap();
        assert_eq!(stored[0].seq, 4);
        assert!(!b.diff.0.is_empty());
        assert_eq!(serde_json::to_value(&b.diff).unwrap(), stored[0].diff);
        assert_eq!((b.epoch.as_str(), b.at), (stored[0].epoch.as_str(), stored[0].at));
        let rows = store.channel_events(&["refs.site.changed".to_owned()], 3, 6, 1).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].seq, 4);
        assert!(store.channel_events(&[], 1, 6, 10).await.unwrap().is_empty());
    }

    async fn the_first_batch_of_a_subscription_applies_once_when_two_processes_race(db) {
        // Two stores on one database, as two `bver serve` processes of one platform would
        // be: each gets the same first batch of a subscription that no process applied yet
        // (no cursor row to lock), at the same moment. Exactly one applies it.
        let a = db.open().await;
        let b = db.open().await;
        let batch: Vec<RemoteEffect> = (1..=5).map(|n| effect(n, &format!("r{n}"), 1, true)).collect();
        let rounds = 40;
        for round in 0..rounds {
            let name = format!("race{round}");
            let epoch = format!("e{round}");
            let barrier = Arc::new(tokio::sync::Barrier::new(2));
            let run = |store: Store| {
                let (name, epoch, batch, barrier) =
                    (name.clone(), epoch.clone(), batch.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.apply_remote(&name, "sites", "site_changes", &epoch, &batch).await.unwrap()
                })
            };
            let (x, y) = (run(a.clone()), run(b.clone()));
            let (x, y) = (x.await.unwrap(), y.await.unwrap());
            assert_eq!(x.applied + y.applied, 5, "round {round}: applied once in all ({x:?}, {y:?})");
            assert_eq!(x.duplicates + y.duplicates, 5, "round {round}: the loser drops every event");
            let row = a.subscription(&name).await.unwrap().unwrap();
            assert_eq!((row.seq, row.applied), (5, 5), "round {round}");
        }
        let events = a.events_after(0, 10_000).await.unwrap();
        assert_eq!(events.len(), 5 * rounds, "one local event per remote event, never two");
        let mut seen = std::collections::HashSet::new();
        for e in &events {
            assert!(seen.insert(e.provenance.request_id.clone()), "applied twice: {}", e.provenance.request_id);
        }
    }

    async fn a_lease_has_one_holder_and_passes_on_when_released_or_expired(db) {
        let a = db.open().await;
        let b = db.open().await;
        let ttl = std::time::Duration::from_millis(600);
        let la = a.lease_acquire("work", "A", ttl).await.unwrap();
        assert!(la.held);
        assert_eq!(la.generation, 1);
        let lb = b.lease_acquire("work", "B", ttl).await.unwrap();
        assert!(!lb.held, "a held lease is not taken");
        assert_eq!((lb.holder.as_str(), lb.generation), ("A", 1));
        assert!(lb.expires_in_ms > 0 && lb.expires_in_ms <= 600, "{lb:?}");
        // Renewal keeps the generation.
        let la = a.lease_acquire("work", "A", ttl).await.unwrap();
        assert_eq!((la.held, la.generation), (true, 1));
        // Released: the next taker gets the next generation, and the old holder cannot renew.
        assert!(a.lease_release("work", "A").await.unwrap());
        assert!(!a.lease_release("work", "A").await.unwrap(), "released once");
        let lb = b.lease_acquire("work", "B", ttl).await.unwrap();
        assert_eq!((lb.held, lb.generation), (true, 2));
        let la = a.lease_acquire("work", "A", ttl).await.unwrap();
        assert_eq!((la.held, la.holder.as_str()), (false, "B"));
        // Not renewed: it expires (by the database's clock) and A takes it over.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let taken = loop {
            let l = a.lease_acquire("work", "A", ttl).await.unwrap();
            if l.held {
                break l;
            }
            assert!(std::time::Instant::now() < deadline, "never expired: {l:?}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        assert_eq!(taken.generation, 3);
        let seen = b.lease("work").await.unwrap().unwrap();
        assert_eq!((seen.holder.as_str(), seen.generation), ("A", 3));
        assert!(!b.lease_acquire("work", "B", ttl).await.unwrap().held, "B's renewal fails: it lost the lease");
        // Many processes racing for a free lease: exactly one wins.
        let c = db.open().await;
        let mut wins = 0;
        for round in 0..20 {
            let name = format!("race{round}");
            let (x, y, z) = tokio::join!(
                a.lease_acquire(&name, "A", ttl),
                b.lease_acquire(&name, "B", ttl),
                c.lease_acquire(&name, "C", ttl)
            );
            let held = [x.unwrap(), y.unwrap(), z.unwrap()].iter().filter(|l| l.held).count();
            assert_eq!(held, 1, "round {round}");
            wins += held;
        }
        assert_eq!(wins, 20);
    }

    async fn a_channel_read_returns_each_event_of_its_triggers_once_in_order_whatever_the_limit(db) {
        use bver_eager::EventSource;
        let store = db.open().await;
        // 30 local events of the channel's trigger, with remote trigger events between them
        // that the channel does not carry.
        for i in 0..30u64 {
            create(&store, &format!("s{i}")).await;
            if i % 3 == 0 {
                store
                    .apply_remote("s", "sites", "site_changes", "e1", &[effect(i + 1, "r", i + 1, true)])
                    .await
                    .unwrap();
            }
        }
        let expected: Vec<u64> = store
            .events_after(0, 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.trigger == "refs.site.changed")
            .map(|e| e.seq)
            .collect();
        assert_eq!(expected.len(), 30);
        let head = store.outbox_head().await.unwrap();
        let channel = bver_node::domain::Channel {
            name: "sites".into(),
            description: String::new(),
            triggers: vec!["refs.site.changed".into()],
            scope: "eager:subscribe:sites".into(),
            contract: None,
        };
        let source = bver_node::federation::sources::StoreEvents::new(
            store.clone(),
            "sites".into(),
            [channel],
        );
        // Limits below, at and above the backlog: small ones split each read in two parts.
        for limit in [1, 2, 3, 5, 8, 13, 40, 100] {
            for start in [1, 2, 7] {
                let mut from = start;
                let mut seen = Vec::new();
                while from <= head {
                    let read = source.read("sites", from, limit).await.unwrap();
                    assert!(read.events.len() <= limit, "limit {limit} from {from}");
                    assert!(read.scanned_to >= from.max(1) - 1 && read.scanned_to <= head);
                    assert!(
                        read.scanned_to >= from,
                        "limit {limit} from {from}: a read below the head scans at least one"
                    );
                    for e in &read.events {
                        assert!(e.seq >= from && e.seq <= read.scanned_to);
                        assert!(e.value.is_some(), "the event carries its version's value");
                    }
                    seen.extend(read.events.iter().map(|e| e.seq));
                    from = read.scanned_to + 1;
                }
                let want: Vec<u64> = expected.iter().copied().filter(|&s| s >= start).collect();
                assert_eq!(seen, want, "limit {limit} from {start}");
            }
        }
    }
}
