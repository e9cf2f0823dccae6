//! Federation benchmark (not a test): two platforms in this process federated over EAGER on
//! loopback, beside NATS JetStream on the same machine in the same run.
//!
//! ```sh
//! cargo bench -p bver-node --bench federation               # full run, a few minutes
//! cargo bench -p bver-node --bench federation -- --quick    # tiny sizes: does it run?
//! # options (or BVER_BENCH_RATE=...): --rate 5000 --secs 10 --sites 1000 --writes 200000
//! #   --tasks 128 --payload 256 --nats 127.0.0.1:4222 (or "skip") --only bver|jetstream
//! ```
//!
//! Everything on the path is real: SQLite files in a temporary directory (WAL, fsynced before
//! each answer), the broker (input schema, scopes, trigger hooks), the outbox read by
//! the EAGER publisher with values, signed batches, pinned mutual TLS 1.3 over QUIC on
//! loopback, verification of every event, and the subscriber's effectively-once apply (a
//! local trigger event per remote event and the cursor, one durable transaction per batch).
//! Both platforms run on one tokio runtime (2 workers), so both timestamps of a latency are
//! on one clock.
//!
//! What it measures, in order:
//! 1. **BVER latency**: `--sites` sites are created on the publisher `sites`, then
//!    `--rate` merge patches per second for `--secs` seconds, each issued on schedule from
//!    its own task (an open loop: a slow commit does not slow the schedule). For each
//!    patch: *commit* = when the broker answered (the commit is durable), *apply* = when the
//!    subscriber `ops` committed the local trigger event of that patch (observed through its
//!    store's head watch, the same signal local consumers of its outbox wake on). Reported:
//!    commit → apply (the issue's figure), call → apply, and call → commit.
//! 2. **BVER durable publish**: `--writes` creates from `--tasks` concurrent callers
//!    through the broker, each answered after its group commit is durable.
//! 3. **BVER bulk replay**: a third platform `audit` subscribes from the oldest event and
//!    applies every event of the channel (everything written above), signatures verified.
//! 4. **JetStream**, the same three with the same payload (the same `--payload`-byte JSON
//!    value): a file-storage stream created for the run (deleted at the end); latency =
//!    publish acknowledged → message received by a durable pull consumer; durable publish =
//!    `--writes` publishes from `--tasks` tasks each awaiting its acknowledgement; durable
//!    consume = a new durable pull consumer reading the whole stream with an explicit ack
//!    per message. The server is the one at `--nats` (default 127.0.0.1:4222); when nothing
//!    answers there, the benchmark starts `nats-server -js -sd TMP -p PORT` itself (and says
//!    so), or skips JetStream with a message when it cannot.
//!
//! `CPU/op` is the CPU time (user + system) per operation of this process and, for
//! JetStream, of the `nats-server` processes too (read from `/proc`). On a shared machine it
//! moves much less with the load than the wall-clock figures do. Figures go into
//! `docs/PERFORMANCE.md` by hand, with the machine's load.

#![allow(missing_docs)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bver_auth::{Issuer, KeySet, Principal, Revocations, ScopeSet};
use bver_node::broker::{Broker, Call};
use bver_node::datadir::DataDir;
use bver_node::domain;
use bver_node::federation::{self, Federation, FederationConfig, PeerEntry, SubscriptionEntry};
use bver_node::store::Store;
use futures_util::StreamExt;
use serde_json::{Value, json};

/// The same allocator as the `bver` binary (the platforms run in this process).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The local trigger the subscribers emit for each remote event.
const EMIT: &str = "remote.site_changed";

#[derive(Debug, Clone)]
struct Config {
    quick: bool,
    /// Paced writes per second in the latency phase.
    rate: u64,
    /// Seconds of paced writes.
    secs: u64,
    /// Sites created before the latency phase (the patches go round them).
    sites: usize,
    /// Creates (BVER) and publishes (JetStream) in the throughput phases.
    writes: usize,
    /// Concurrent callers in the throughput phases.
    tasks: usize,
    /// Bytes of each JSON value / message.
    payload: usize,
    /// Where JetStream is (`skip`: not at all).
    nats: String,
    /// `bver`, `jetstream` or both.
    only: Option<String>,
}

impl Config {
    /// `--quick` or `BVER_BENCH_QUICK=1` selects tiny defaults; each value can be set with
    /// `--name N` (or `--name=N`) or `BVER_BENCH_NAME`.
    fn load() -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let flag = |name: &str| -> Option<String> {
            let long = format!("--{name}");
            let mut it = args.iter();
            while let Some(a) = it.next() {
                if *a == long {
                    return it.next().cloned();
                }
                if let Some(v) = a.strip_prefix(&format!("{long}=")) {
                    return Some(v.to_owned());
                }
            }
            std::env::var(format!("BVER_BENCH_{}", name.to_uppercase())).ok()
        };
        let quick = args.iter().any(|a| a == "--quick")
            || std::env::var("BVER_BENCH_QUICK").is_ok_and(|v| v != "0" && !v.is_empty());
        let size = |name: &str, full: u64, tiny: u64| -> u64 {
            match flag(name) {
                Some(v) => v
                    .replace('_', "")
                    .parse()
                    .unwrap_or_else(|_| panic!("--{name} wants a number, got {v:?}")),
                None if quick => tiny,
                None => full,
            }
        };
        Self {
            quick,
            rate: size("rate", 5_000, 500),
            secs: size("secs", 10, 2),
            sites: size("sites", 1_000, 100) as usize,
            writes: size("writes", 200_000, 2_000) as usize,
            tasks: size("tasks", 128, 32) as usize,
            payload: size("payload", 256, 256) as usize,
            nats: flag("nats").unwrap_or_else(|| "127.0.0.1:4222".to_owned()),
            only: flag("only"),
        }
    }

    fn runs(&self, what: &str) -> bool {
        self.only.as_deref().is_none_or(|o| o == what)
    }
}

// ---------------------------------------------------------------------------------------------
// Figures

/// Latencies of one kind, in nanoseconds.
#[derive(Default)]
struct Dist(Vec<u64>);

impl Dist {
    fn q(&self, q: f64) -> Duration {
        let mut v = self.0.clone();
        v.sort_unstable();
        match v.len() {
            0 => Duration::ZERO,
            n => Duration::from_nanos(v[((n - 1) as f64 * q).round() as usize]),
        }
    }

    fn max(&self) -> Duration {
        Duration::from_nanos(self.0.iter().copied().max().unwrap_or(0))
    }
}

/// The latency phase of one system.
struct Latency {
    /// Paced operations issued, and how many failed or were never seen at the far end.
    issued: usize,
    lost: usize,
    /// The rate the schedule achieved.
    achieved: f64,
    /// Acknowledged (committed) → seen by the far end.
    commit_to_apply: Dist,
    /// Issued → seen by the far end.
    call_to_apply: Dist,
    /// Issued → acknowledged.
    call_to_commit: Dist,
    cpu: Option<Duration>,
}

/// A throughput phase.
struct Throughput {
    ops: usize,
    elapsed: Duration,
    cpu: Option<Duration>,
    /// Per call, when calls are individual (publish).
    calls: Dist,
}

impl Throughput {
    fn per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    fn cpu_per_op(&self) -> String {
        cpu_per(self.cpu, self.ops)
    }
}

fn cpu_per(cpu: Option<Duration>, ops: usize) -> String {
    match cpu {
        Some(c) if ops > 0 => fmt_latency(c / ops as u32),
        _ => "?".into(),
    }
}

#[derive(Default)]
struct Figures {
    latency: Option<Latency>,
    publish: Option<Throughput>,
    consume: Option<Throughput>,
}

fn fmt_latency(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 10.0 {
        format!("{us:.2} µs")
    } else if us < 1000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

fn fmt_count(n: f64) -> String {
    let n = n.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// CPU time used so far by this process (user + system, all threads), from `/proc/self/stat`.
fn process_cpu() -> Option<Duration> {
    proc_cpu("/proc/self/stat")
}

fn proc_cpu(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // The kernel reports clock ticks; USER_HZ is 100 on Linux.
    Some(Duration::from_millis(ticks * 10))
}

/// CPU time of this process plus every `nats-server` process on the machine.
fn process_and_nats_cpu() -> Option<Duration> {
    let mut total = process_cpu()?;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim() == "nats-server"
            && let Some(c) = proc_cpu(&entry.path().join("stat").to_string_lossy())
        {
            total += c;
        }
    }
    Some(total)
}

fn since(cpu: Option<Duration>, now: Option<Duration>) -> Option<Duration> {
    now.zip(cpu).map(|(a, b)| a.saturating_sub(b))
}

/// A JSON value of exactly `bytes` bytes (when `bytes` allows it) carrying `n`.
fn value_of(n: u64, bytes: usize) -> Value {
    let bare = json!({ "name": "", "n": n }).to_string().len();
    json!({ "name": "x".repeat(bytes.saturating_sub(bare)), "n": n })
}

/// Open-loop schedule: call `issue(i)` for `i` in `0..total` at `rate` per second from
/// `start` on (checked every millisecond; calls due together are issued together).
async fn paced(rate: u64, total: usize, mut issue: impl FnMut(usize)) -> Duration {
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut issued = 0usize;
    while issued < total {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as usize + 1).min(total);
        while issued < due {
            issue(issued);
            issued += 1;
        }
    }
    start.elapsed()
}

/// Nanoseconds since `base`, stored in slots written by the paced tasks.
struct Slots {
    base: Instant,
    call: Vec<AtomicU64>,
    commit: Vec<AtomicU64>,
    /// The version a patch made (BVER), 0 if it failed.
    version: Vec<AtomicU64>,
}

impl Slots {
    fn new(base: Instant, n: usize) -> Arc<Self> {
        let v = |_| (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        Arc::new(Self {
            base,
            call: v(()),
            commit: v(()),
            version: v(()),
        })
    }

    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

// ---------------------------------------------------------------------------------------------
// BVER

/// One platform in this process.
struct Node {
    store: Store,
    broker: Broker,
    federation: Federation,
}

/// A platform's data directory and keys, before it starts.
struct Prepared {
    id: String,
    data: DataDir,
    keys: KeySet,
    fingerprint: String,
}

fn prepare(root: &Path, id: &str) -> Prepared {
    let data = DataDir::create(root.join(id)).expect("data directory");
    let (keys, _) = data.key_set(bver_auth::unix_now()).expect("platform key");
    let fingerprint = federation::fingerprint_hex(&keys.current().public_key().fingerprint());
    Prepared {
        id: id.to_owned(),
        data,
        keys,
        fingerprint,
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/federation/{name}"))
}

async fn start_node(p: Prepared, domain_dir: &Path, config: FederationConfig) -> Node {
    let domain = Arc::new(
        domain::load(&[domain_dir.to_path_buf()]).unwrap_or_else(|e| panic!("domain: {e}")),
    );
    let store = Store::open_sqlite(&p.data.sqlite_path(), Default::default())
        .await
        .expect("store");
    let (federation, resolver) = federation::start(federation::Parts {
        platform: &p.id,
        keys: p.keys,
        revocations: Arc::new(Revocations::new()),
        store: store.clone(),
        domain: &domain,
        config: &config,
        data: &p.data,
    })
    .await
    .expect("federation starts");
    let broker = Broker::with_resolver(domain, store.clone(), resolver).expect("broker");
    Node {
        store,
        broker,
        federation,
    }
}

fn subscriber_config(
    publisher: &Prepared,
    subscriber: &str,
    addr: std::net::SocketAddr,
    start: &str,
) -> FederationConfig {
    let issuer = Issuer::ed25519(&publisher.id, &publisher.id, publisher.keys.current());
    let scopes =
        ScopeSet::parse("eager:subscribe:site_changes eager:resolve:sites").expect("scopes");
    let grant = |sub: &str| {
        issuer
            .issue(
                sub,
                &scopes,
                Duration::from_secs(86_400),
                bver_auth::unix_now(),
            )
            .expect("grant")
            .token
    };
    FederationConfig {
        listen: Some(([127, 0, 0, 1], 0).into()),
        peers: vec![PeerEntry {
            id: publisher.id.clone(),
            addr: Some(addr),
            fingerprints: vec![publisher.fingerprint.clone()],
            namespaces: vec!["sites".into()],
            grant: Some(grant(subscriber)),
        }],
        subscriptions: vec![SubscriptionEntry {
            name: None,
            peer: publisher.id.clone(),
            channel: "site_changes".into(),
            start: Some(start.into()),
            emit: Some(EMIT.into()),
            cache: false,
            contract: None,
            repos: Vec::new(),
            kinds: Vec::new(),
            prefixes: Vec::new(),
        }],
        ..FederationConfig::default()
    }
}

fn writer() -> Principal {
    Principal {
        subject: "bench".into(),
        scopes: ScopeSet::parse("refs:*:*").expect("scopes"),
        token_id: "bench".into(),
        issued_at: 0,
        expires_at: u64::MAX,
        issuer: "bench".into(),
    }
}

/// Events applied by a node's subscriptions so far.
fn applied(node: &Node) -> u64 {
    node.federation.states().iter().map(|s| s.applied).sum()
}

async fn wait_applied(node: &Node, want: u64, patience: Duration) -> bool {
    let until = Instant::now() + patience;
    while applied(node) < want {
        if Instant::now() > until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    true
}

/// `(outbox head, nanoseconds since the base instant)`, one per move of the head.
type HeadLog = Arc<Mutex<Vec<(u64, u64)>>>;

/// Record `(head, nanos since base)` each time `store`'s outbox head moves.
fn record_heads(store: &Store, base: Instant) -> (tokio::task::JoinHandle<()>, HeadLog) {
    let mut rx = store.subscribe_seq();
    let log = Arc::new(Mutex::new(Vec::with_capacity(1 << 16)));
    let out = log.clone();
    let task = tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let head = *rx.borrow_and_update();
            let t = base.elapsed().as_nanos() as u64;
            if let Ok(mut l) = log.lock() {
                l.push((head, t));
            }
        }
    });
    (task, out)
}

/// Throughput phase: `ops` calls of `op(i)` from `tasks` concurrent tasks.
/// Create `n` sites `{prefix}{i}` with `bytes`-byte values through `broker` from `tasks`
/// concurrent callers: a durable create each, measured.
async fn create_sites(
    broker: &Arc<Broker>,
    principal: &Arc<Principal>,
    prefix: &'static str,
    n: usize,
    tasks: usize,
    bytes: usize,
) -> Throughput {
    let (b, p) = (broker.clone(), principal.clone());
    measure(n, tasks, process_cpu, move |i| {
        let (b, p) = (b.clone(), p.clone());
        async move {
            let input = json!({ "id": format!("{prefix}{i}"), "value": value_of(i as u64, bytes) });
            if let Err(e) = b.invoke(&p, Call::new("refs.site.create", input)).await {
                panic!("create {prefix}{i}: {e}");
            }
        }
    })
    .await
}

async fn measure<F, Fut>(
    ops: usize,
    tasks: usize,
    cpu: fn() -> Option<Duration>,
    op: F,
) -> Throughput
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let tasks = tasks.clamp(1, ops.max(1));
    let op = Arc::new(op);
    let cpu0 = cpu();
    let start = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for t in 0..tasks {
        let op = op.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(ops / tasks + 1);
            let mut i = t;
            while i < ops {
                let began = Instant::now();
                op(i).await;
                lat.push(began.elapsed().as_nanos() as u64);
                i += tasks;
            }
            lat
        }));
    }
    let mut calls = Vec::with_capacity(ops);
    for h in handles {
        calls.extend(h.await.expect("a benchmark task panicked"));
    }
    let elapsed = start.elapsed();
    Throughput {
        ops,
        elapsed,
        cpu: since(cpu0, cpu()),
        calls: Dist(calls),
    }
}

async fn bver(cfg: &Config) -> Figures {
    let dir = tempfile::tempdir().expect("tempdir");
    let sites_p = prepare(dir.path(), "sites");
    let ops_p = prepare(dir.path(), "ops");
    let audit_p = prepare(dir.path(), "audit");
    let publisher_config = FederationConfig {
        listen: Some(([127, 0, 0, 1], 0).into()),
        peers: [&ops_p, &audit_p]
            .iter()
            .map(|p| PeerEntry {
                id: p.id.clone(),
                addr: None,
                fingerprints: vec![p.fingerprint.clone()],
                namespaces: Vec::new(),
                grant: None,
            })
            .collect(),
        ..FederationConfig::default()
    };
    // Grants are issued with the publisher's key before it moves into its node.
    let sites_public = Prepared {
        id: sites_p.id.clone(),
        data: sites_p.data.clone(),
        keys: sites_p.data.key_set(bver_auth::unix_now()).expect("keys").0,
        fingerprint: sites_p.fingerprint.clone(),
    };
    let mut sites = start_node(sites_p, &fixture("sites"), publisher_config).await;
    let addr = sites.federation.addr.expect("EAGER listens");
    let mut ops = start_node(
        ops_p,
        &fixture("ops"),
        subscriber_config(&sites_public, "ops", addr, "oldest"),
    )
    .await;
    let broker = Arc::new(sites.broker.clone());
    let principal = Arc::new(writer());
    let mut figures = Figures::default();
    let mut channel_events = 0u64;

    // Seed the sites (they flow to `ops` too: it subscribes from the oldest event, since its
    // subscription may start after this, once its node holds the subscription lease).
    let seed = create_sites(&broker, &principal, "s", cfg.sites, cfg.tasks, cfg.payload).await;
    channel_events += seed.ops as u64;
    assert!(
        wait_applied(&ops, channel_events, Duration::from_secs(60)).await,
        "the subscriber did not receive the seeded sites"
    );

    // 1. Latency at a fixed rate.
    eprintln!("BVER: latency, {}/s for {} s", cfg.rate, cfg.secs);
    let n = (cfg.rate * cfg.secs) as usize;
    let base = Instant::now();
    let slots = Slots::new(base, n);
    let (recorder, heads) = record_heads(&ops.store, base);
    let cpu0 = process_cpu();
    let elapsed = {
        let (sites_n, slots) = (cfg.sites, slots.clone());
        let (broker, principal) = (broker.clone(), principal.clone());
        paced(cfg.rate, n, move |i| {
            let (b, p, s) = (broker.clone(), principal.clone(), slots.clone());
            s.call[i].store(s.now(), Ordering::Relaxed);
            tokio::spawn(async move {
                let input = json!({ "id": format!("s{}", i % sites_n), "merge": { "n": i } });
                if let Ok(v) = b.invoke(&p, Call::new("refs.site.patch", input)).await {
                    s.commit[i].store(s.now(), Ordering::Relaxed);
                    s.version[i].store(v["version"].as_u64().unwrap_or(0), Ordering::Relaxed);
                }
            });
        })
        .await
    };
    // Wait for the calls still in flight, then for the subscriber to apply them.
    let until = Instant::now() + Duration::from_secs(30);
    while slots.version.iter().any(|v| v.load(Ordering::Relaxed) == 0) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let committed = slots
        .version
        .iter()
        .filter(|v| v.load(Ordering::Relaxed) != 0)
        .count();
    channel_events += committed as u64;
    let caught_up = wait_applied(&ops, channel_events, Duration::from_secs(60)).await;
    let cpu = since(cpu0, process_cpu());
    recorder.abort();
    if !caught_up {
        eprintln!("warning: the subscriber did not apply every patch within 60 s");
    }
    // Which patch each local trigger event is: (site, version) → i.
    let mut by_version = HashMap::with_capacity(n);
    for i in 0..n {
        let v = slots.version[i].load(Ordering::Relaxed);
        if v != 0 {
            by_version.insert((i % cfg.sites, v), i);
        }
    }
    let heads = heads.lock().map(|h| h.clone()).unwrap_or_default();
    let mut lat = Latency {
        issued: n,
        lost: 0,
        achieved: n as f64 / elapsed.as_secs_f64(),
        commit_to_apply: Dist::default(),
        call_to_apply: Dist::default(),
        call_to_commit: Dist::default(),
        cpu,
    };
    let mut seen = 0usize;
    let mut after = 0;
    loop {
        let events = ops
            .store
            .events_after(after, 10_000)
            .await
            .expect("subscriber events");
        let Some(last) = events.last() else { break };
        after = last.seq;
        for e in events.iter().filter(|e| e.trigger == EMIT) {
            let Some(site) = e
                .key
                .id
                .strip_prefix('s')
                .and_then(|s| s.parse::<usize>().ok())
            else {
                continue;
            };
            let Some(&i) = by_version.get(&(site, e.version)) else {
                continue;
            };
            // The first time the head was at or past this event: when it was applied.
            let at = heads.partition_point(|(h, _)| *h < e.seq);
            let Some(&(_, applied_ns)) = heads.get(at) else {
                continue;
            };
            seen += 1;
            let call = slots.call[i].load(Ordering::Relaxed);
            let commit = slots.commit[i].load(Ordering::Relaxed);
            lat.commit_to_apply
                .0
                .push(applied_ns.saturating_sub(commit));
            lat.call_to_apply.0.push(applied_ns.saturating_sub(call));
            lat.call_to_commit.0.push(commit.saturating_sub(call));
        }
    }
    lat.lost = n - seen;
    figures.latency = Some(lat);
    ops.federation.close().await;

    // 2. Durable publish: creates from many callers.
    eprintln!("BVER: durable publish, {} creates", cfg.writes);
    let publish = create_sites(&broker, &principal, "w", cfg.writes, cfg.tasks, cfg.payload).await;
    channel_events += publish.ops as u64;
    figures.publish = Some(publish);

    // 3. Bulk replay of the whole channel to a new subscriber.
    eprintln!("BVER: bulk replay, {channel_events} events");
    let cpu0 = process_cpu();
    let start = Instant::now();
    let audit_config = subscriber_config(&sites_public, "audit", addr, "oldest");
    let mut audit = start_node(audit_p, &fixture("ops"), audit_config).await;
    let done = wait_applied(&audit, channel_events, Duration::from_secs(600)).await;
    let elapsed = start.elapsed();
    if !done {
        eprintln!(
            "warning: the replay applied {} of {channel_events} events within 600 s",
            applied(&audit)
        );
    }
    figures.consume = Some(Throughput {
        ops: applied(&audit) as usize,
        elapsed,
        cpu: since(cpu0, process_cpu()),
        calls: Dist::default(),
    });
    audit.federation.close().await;
    sites.federation.close().await;
    drop((audit, ops, sites));
    figures
}

// ---------------------------------------------------------------------------------------------
// JetStream

/// A `nats-server` this benchmark started (killed on drop), when none was running.
struct OwnServer {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn connect_nats(addr: &str) -> Option<async_nats::Client> {
    tokio::time::timeout(Duration::from_secs(3), async_nats::connect(addr))
        .await
        .ok()?
        .ok()
}

/// A JetStream client: the server at `addr`, or one started here.
async fn jetstream_client(addr: &str) -> Option<(async_nats::Client, Option<OwnServer>)> {
    if let Some(c) = connect_nats(addr).await {
        println!("JetStream: the nats-server at {addr}");
        return Some((c, None));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .ok()?;
    let dir = tempfile::tempdir().ok()?;
    let bin = ["nats-server", "/usr/sbin/nats-server"]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok()
        });
    let Some(bin) = bin else {
        println!(
            "JetStream: nothing answers at {addr} and nats-server is not installed (apt-get install nats-server): skipped"
        );
        return None;
    };
    let child = std::process::Command::new(bin)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let own = OwnServer { child, _dir: dir };
    let url = format!("127.0.0.1:{port}");
    for _ in 0..50 {
        if let Some(c) = connect_nats(&url).await {
            println!(
                "JetStream: nothing answered at {addr}; started `{bin} -js -sd {} -p {port}` for this run",
                own._dir.path().display()
            );
            return Some((c, Some(own)));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "JetStream: nothing answers at {addr} and the nats-server started here did not answer: skipped"
    );
    None
}

async fn jetstream(cfg: &Config) -> Option<Figures> {
    use async_nats::jetstream::{self, consumer, stream};
    if cfg.nats == "skip" {
        println!("JetStream: skipped (--nats skip)");
        return None;
    }
    let (client, _own) = jetstream_client(&cfg.nats).await?;
    let js = jetstream::new(client);
    let tag = format!("{:08x}", rand::random::<u32>());
    let name = format!("BVER_BENCH_{tag}");
    let subject = format!("bver.bench.{tag}");
    let stream = js
        .create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .expect("create the JetStream stream");
    let durable = |name: &str| consumer::pull::Config {
        durable_name: Some(name.to_owned()),
        ack_policy: consumer::AckPolicy::Explicit,
        deliver_policy: consumer::DeliverPolicy::All,
        ..Default::default()
    };
    let mut figures = Figures::default();

    // 1. Latency at a fixed rate: publish acknowledged → received by a durable consumer.
    eprintln!("JetStream: latency, {}/s for {} s", cfg.rate, cfg.secs);
    let n = (cfg.rate * cfg.secs) as usize;
    let base = Instant::now();
    let slots = Slots::new(base, n);
    let received: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let live = stream
        .create_consumer(durable("live"))
        .await
        .expect("consumer");
    let reader = {
        let received = received.clone();
        let mut messages = live.messages().await.expect("consumer messages");
        tokio::spawn(async move {
            let mut left = n;
            while left > 0 {
                let m = match messages.next().await {
                    Some(Ok(m)) => m,
                    // A status of the pull (such as a missed heartbeat): keep reading.
                    Some(Err(e)) => {
                        eprintln!("JetStream consumer: {e}");
                        continue;
                    }
                    None => break,
                };
                let t = base.elapsed().as_nanos() as u64;
                let i = serde_json::from_slice::<Value>(&m.payload)
                    .ok()
                    .and_then(|v| v["n"].as_u64())
                    .unwrap_or(u64::MAX) as usize;
                // A redelivery keeps the first receipt.
                if let Some(r) = received.get(i)
                    && r.compare_exchange(0, t, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    left -= 1;
                }
                let _ = m.ack().await;
            }
        })
    };
    let cpu0 = process_and_nats_cpu();
    let elapsed = {
        let (js, slots, subject, bytes) = (js.clone(), slots.clone(), subject.clone(), cfg.payload);
        paced(cfg.rate, n, move |i| {
            let (js, s, subject) = (js.clone(), slots.clone(), subject.clone());
            let body = value_of(i as u64, bytes).to_string();
            s.call[i].store(s.now(), Ordering::Relaxed);
            tokio::spawn(async move {
                if let Ok(ack) = js.publish(subject, body.into()).await
                    && ack.await.is_ok()
                {
                    s.commit[i].store(s.now(), Ordering::Relaxed);
                    s.version[i].store(1, Ordering::Relaxed);
                }
            });
        })
        .await
    };
    let _ = tokio::time::timeout(Duration::from_secs(60), reader).await;
    let mut lat = Latency {
        issued: n,
        lost: 0,
        achieved: n as f64 / elapsed.as_secs_f64(),
        commit_to_apply: Dist::default(),
        call_to_apply: Dist::default(),
        call_to_commit: Dist::default(),
        cpu: since(cpu0, process_and_nats_cpu()),
    };
    for i in 0..n {
        let (call, commit, recv) = (
            slots.call[i].load(Ordering::Relaxed),
            slots.commit[i].load(Ordering::Relaxed),
            received[i].load(Ordering::Relaxed),
        );
        if slots.version[i].load(Ordering::Relaxed) == 0 || recv == 0 {
            lat.lost += 1;
            continue;
        }
        lat.commit_to_apply.0.push(recv.saturating_sub(commit));
        lat.call_to_apply.0.push(recv.saturating_sub(call));
        lat.call_to_commit.0.push(commit.saturating_sub(call));
    }
    figures.latency = Some(lat);
    let _ = stream.delete_consumer("live").await;

    // 2. Durable publish from many tasks, each awaiting its acknowledgement.
    eprintln!("JetStream: durable publish, {} messages", cfg.writes);
    let publish = {
        let (js, subject, bytes) = (js.clone(), subject.clone(), cfg.payload);
        measure(cfg.writes, cfg.tasks, process_and_nats_cpu, move |i| {
            let (js, subject) = (js.clone(), subject.clone());
            let body = value_of((n + i) as u64, bytes).to_string();
            async move {
                js.publish(subject, body.into())
                    .await
                    .expect("publish")
                    .await
                    .expect("publish acknowledged");
            }
        })
        .await
    };
    figures.publish = Some(publish);

    // 3. Durable consume of the whole stream by a new consumer, an explicit ack each.
    eprintln!("JetStream: durable consume");
    let total = n + cfg.writes;
    let cpu0 = process_and_nats_cpu();
    let start = Instant::now();
    let replay = stream
        .create_consumer(durable("replay"))
        .await
        .expect("consumer");
    let mut messages = replay.messages().await.expect("consumer messages");
    let mut got = 0usize;
    while got < total {
        match tokio::time::timeout(Duration::from_secs(10), messages.next()).await {
            Ok(Some(Ok(m))) => {
                got += 1;
                let _ = m.ack().await;
            }
            _ => break,
        }
    }
    let elapsed = start.elapsed();
    if got < total {
        eprintln!("warning: the JetStream consumer received {got} of {total} messages");
    }
    figures.consume = Some(Throughput {
        ops: got,
        elapsed,
        cpu: since(cpu0, process_and_nats_cpu()),
        calls: Dist::default(),
    });
    drop(messages);
    if let Err(e) = js.delete_stream(&name).await {
        eprintln!("warning: stream {name} not deleted: {e}");
    }
    Some(figures)
}

// ---------------------------------------------------------------------------------------------
// Report

fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "–".into()
    }
}

fn report(cfg: &Config, bver: &Figures, js: Option<&Figures>) {
    println!();
    println!(
        "payload {} bytes; latency: {}/s for {} s ({} sites); throughput: {} writes from {} tasks",
        cfg.payload, cfg.rate, cfg.secs, cfg.sites, cfg.writes, cfg.tasks
    );
    println!();
    println!("| figure | BVER | JetStream | BVER / JetStream |");
    println!("|---|---:|---:|---:|");
    fn lat(f: Option<&Figures>) -> Option<&Latency> {
        f.and_then(|f| f.latency.as_ref())
    }
    let cell = |f: Option<&Latency>, g: &dyn Fn(&Latency) -> String| f.map_or("–".into(), g);
    let rowd = |label: &str, g: &dyn Fn(&Latency) -> Duration| {
        let (a, b) = (lat(Some(bver)), lat(js));
        println!(
            "| {label} | {} | {} | {} |",
            cell(a, &|l| fmt_latency(g(l))),
            cell(b, &|l| fmt_latency(g(l))),
            match (a, b) {
                (Some(a), Some(b)) => ratio(g(a).as_secs_f64(), g(b).as_secs_f64()),
                _ => "–".into(),
            }
        );
    };
    if lat(Some(bver)).is_some() || lat(js).is_some() {
        let rate = |l: &Latency| format!("{}/s, {} lost", fmt_count(l.achieved), l.lost);
        println!(
            "| latency phase: achieved rate, lost | {} | {} | |",
            cell(lat(Some(bver)), &rate),
            cell(lat(js), &rate),
        );
    }
    rowd("commit → remote apply p50", &|l| {
        l.commit_to_apply.q(0.50)
    });
    rowd("commit → remote apply p99", &|l| {
        l.commit_to_apply.q(0.99)
    });
    rowd("commit → remote apply p99.9", &|l| {
        l.commit_to_apply.q(0.999)
    });
    rowd("commit → remote apply max", &|l| l.commit_to_apply.max());
    rowd("call → remote apply p50", &|l| l.call_to_apply.q(0.50));
    rowd("call → remote apply p99", &|l| l.call_to_apply.q(0.99));
    rowd("call → commit p50", &|l| l.call_to_commit.q(0.50));
    rowd("call → commit p99", &|l| l.call_to_commit.q(0.99));
    let lat_cpu = |l: &Latency| cpu_per(l.cpu, l.issued);
    println!(
        "| latency phase: CPU per write | {} | {} | |",
        cell(lat(Some(bver)), &lat_cpu),
        cell(lat(js), &lat_cpu)
    );
    type Pick = fn(&Figures) -> Option<&Throughput>;
    let rows: [(&str, Pick); 2] = [
        ("durable publish", |f| f.publish.as_ref()),
        ("durable consume (bulk replay)", |f| f.consume.as_ref()),
    ];
    for (label, pick) in rows {
        let (a, b) = (pick(bver), js.and_then(pick));
        let rate = |t: Option<&Throughput>| {
            t.map_or("–".into(), |t| format!("{}/s", fmt_count(t.per_second())))
        };
        println!(
            "| {label}, per second | {} | {} | {} |",
            rate(a),
            rate(b),
            ratio(
                a.map_or(f64::NAN, Throughput::per_second),
                b.map_or(f64::NAN, Throughput::per_second)
            )
        );
        if a.or(b).is_some_and(|t| !t.calls.0.is_empty()) {
            let q = |t: Option<&Throughput>, q: f64| {
                t.map_or("–".into(), |t| fmt_latency(t.calls.q(q)))
            };
            println!("| {label}, call p50 | {} | {} | |", q(a, 0.5), q(b, 0.5));
            println!("| {label}, call p99 | {} | {} | |", q(a, 0.99), q(b, 0.99));
        }
        let cpu = |t: Option<&Throughput>| t.map_or("–".into(), Throughput::cpu_per_op);
        println!("| {label}, CPU per event | {} | {} | |", cpu(a), cpu(b));
        if let Some(t) = a {
            eprintln!(
                "  {label}: BVER {} events in {:.2} s",
                t.ops,
                t.elapsed.as_secs_f64()
            );
        }
    }
}

fn main() {
    let cfg = Config::load();
    if cfg.quick {
        println!("--quick: tiny sizes, figures mean nothing");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let bver = if cfg.runs("bver") {
        rt.block_on(bver(&cfg))
    } else {
        Figures::default()
    };
    let js = if cfg.runs("jetstream") {
        rt.block_on(jetstream(&cfg))
    } else {
        None
    };
    report(&cfg, &bver, js.as_ref());
}
