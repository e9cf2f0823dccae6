//! Store throughput benchmark: in-process create, patch and get on SQLite and PostgreSQL.
//!
//! Run it with `cargo bench -p bver-tests --bench store` (about a minute on a 2-core machine),
//! or `BVER_BENCH_QUICK=1 cargo bench -p bver-tests --bench store` for tiny sizes that only
//! prove the benchmark works. It is a benchmark, not a test: nothing here asserts a speed; the
//! figures go into `docs/PERFORMANCE.md` by hand, with the machine and its load.
//!
//! What it measures, per backend, with many concurrent callers in one process:
//! - **create**: new references, each one version + diff + outbox event;
//! - **patch**: JSON Merge Patches of existing references, each one version + diff + event;
//! - **get (warm)**: reads of existing keys after a warm-up pass (SQLite, served by the read
//!   cache that every write refreshes);
//! - **get**: the same reads on PostgreSQL, where the cache is disabled by design.
//!
//! Durability is the store's default: SQLite in WAL mode, the WAL fsynced before a caller is
//! answered; PostgreSQL with `synchronous_commit=on`. Every caller is answered after its group
//! commit is durable.
//!
//! Each figure has its throughput, p50 and p99 latency per call, and the CPU time the benchmark
//! process used per operation (all threads; on PostgreSQL the server's own CPU is not in it).
//! On a machine shared with other work, CPU/op moves much less than ops/s does.
//!
//! Sizes come from `--name N` arguments or `BVER_BENCH_*` variables (see [`Config::load`]).
//! PostgreSQL is the server at `BVER_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); the benchmark creates a fresh schema there,
//! selects it through the URL's `search_path` option and drops it at the end.

#![allow(missing_docs)]

/// The same allocator as the `bver` binary.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bver_node::store::{Change, Mutation, Provenance, RefKey, Store, StoreOptions};
use serde_json::json;

/// Sizes of one run.
#[derive(Debug, Clone)]
struct Config {
    quick: bool,
    /// References created (and then patched and read).
    refs: usize,
    /// Merge patches on SQLite.
    patches: usize,
    /// Warm gets on SQLite.
    gets: usize,
    /// Merge patches on PostgreSQL.
    pg_patches: usize,
    /// Gets on PostgreSQL.
    pg_gets: usize,
    /// Concurrent callers for writes.
    tasks: usize,
    /// Concurrent callers for reads.
    read_tasks: usize,
    /// `sqlite`, `postgres` or both, comma separated.
    backends: Vec<String>,
}

impl Config {
    /// `--quick` or `BVER_BENCH_QUICK=1` selects tiny defaults; each size can be set with
    /// `--refs N` (or `--refs=N`) or `BVER_BENCH_REFS`, and likewise `--patches`, `--gets`,
    /// `--pg-patches`, `--pg-gets`, `--tasks`, `--read-tasks`, `--backends sqlite,postgres`.
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
            let env = format!("BVER_BENCH_{}", name.replace('-', "_").to_uppercase());
            std::env::var(env).ok()
        };
        let quick = args.iter().any(|a| a == "--quick")
            || std::env::var("BVER_BENCH_QUICK").is_ok_and(|v| v != "0" && !v.is_empty());
        let size = |name: &str, full: usize, tiny: usize| -> usize {
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
            refs: size("refs", 20_000, 500),
            patches: size("patches", 200_000, 2_000),
            gets: size("gets", 2_000_000, 20_000),
            pg_patches: size("pg-patches", 40_000, 1_000),
            pg_gets: size("pg-gets", 100_000, 2_000),
            tasks: size("tasks", 128, 32),
            read_tasks: size("read-tasks", 64, 8),
            backends: flag("backends")
                .unwrap_or_else(|| "sqlite,postgres".to_owned())
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }
}

/// One measured operation.
struct Figure {
    backend: &'static str,
    operation: &'static str,
    ops: usize,
    tasks: usize,
    elapsed: Duration,
    /// CPU time the whole process used meanwhile (all threads, user and system), if known.
    cpu: Option<Duration>,
    /// Per-operation latencies in nanoseconds, sorted.
    latencies: Vec<u64>,
}

impl Figure {
    fn per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// Process CPU time per operation: unlike ops/s, barely moved by other work on the machine.
    fn cpu_per_op(&self) -> String {
        match self.cpu {
            Some(cpu) if self.ops > 0 => fmt_latency(cpu / self.ops as u32),
            _ => "?".into(),
        }
    }

    fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        Duration::from_nanos(self.latencies[i])
    }
}

fn fmt_latency(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 10.0 {
        format!("{us:.2} µs")
    } else if us < 1000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.1} ms", us / 1000.0)
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

/// Operation `i`'s key among `n`: scattered (a multiplicative hash), so that one group commit
/// touches keys spread over the whole table, as independent callers would, not neighbours.
fn scramble(i: usize, n: usize) -> usize {
    (i as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(29) as usize
        % n
}

fn key_of(i: usize) -> RefKey {
    RefKey::new("grid", "site", format!("site-{i:07}"))
}

fn prov(operation: &str, i: usize) -> Provenance {
    Provenance {
        principal: "bench".into(),
        operation: operation.into(),
        request_id: format!("req-{i}"),
    }
}

/// Run `ops` operations split over `tasks` concurrent callers; `op(i)` performs operation `i`.
async fn measure<F, Fut>(
    backend: &'static str,
    operation: &'static str,
    ops: usize,
    tasks: usize,
    op: F,
) -> Figure
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let tasks = tasks.clamp(1, ops.max(1));
    let op = Arc::new(op);
    let cpu_before = process_cpu();
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
    let mut latencies = Vec::with_capacity(ops);
    for h in handles {
        latencies.extend(h.await.expect("a benchmark task panicked"));
    }
    let elapsed = start.elapsed();
    let cpu = process_cpu()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    latencies.sort_unstable();
    Figure {
        backend,
        operation,
        ops,
        tasks,
        elapsed,
        cpu,
        latencies,
    }
}

/// CPU time used by this process so far (user + system, all threads), from `/proc/self/stat`.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // The kernel reports clock ticks; USER_HZ is 100 on Linux.
    Some(Duration::from_millis(ticks * 10))
}

/// Create, patch and read on one store; returns the figures in order.
async fn run_backend(
    store: Store,
    backend: &'static str,
    cfg: &Config,
    patches: usize,
    gets: usize,
) -> Vec<Figure> {
    let mut figures = Vec::new();
    let refs = cfg.refs.max(1);

    let s = store.clone();
    let creates = measure(backend, "create", refs, cfg.tasks, move |i| {
        let s = s.clone();
        async move {
            let value = json!({
                "name": format!("Substation {i}"),
                "voltage_kv": 110,
                "location": { "lat": 60.17, "lon": 24.94 },
                "tags": ["grid", "north"],
                "counter": 0,
            });
            let change = Change::Create {
                kind: Some("power.substation".into()),
                value,
            };
            let m = Mutation::new(key_of(i), change, prov("refs.site.create", i));
            if let Err(e) = s.mutate(m).await {
                panic!("create {i} failed: {e}");
            }
        }
    })
    .await;
    report(&creates);
    figures.push(creates);

    let s = store.clone();
    let patched = measure(backend, "patch (merge)", patches, cfg.tasks, move |i| {
        let s = s.clone();
        async move {
            let patch = json!({ "counter": i, "status": if i % 2 == 0 { "on" } else { "off" } });
            let m = Mutation::new(
                key_of(scramble(i, refs)),
                Change::MergePatch(patch),
                prov("refs.site.patch", i),
            );
            match s.mutate(m).await {
                Ok(c) if c.diff.as_array().is_some_and(|d| !d.is_empty()) && c.seq > 0 => {}
                Ok(c) => panic!("patch {i} committed without a diff or event: {c:?}"),
                Err(e) => panic!("patch {i} failed: {e}"),
            }
        }
    })
    .await;
    report(&patched);
    eprintln!(
        "  {backend:<8} writer after the patches: {:?}",
        store.write_stats()
    );
    figures.push(patched);

    // Sanity, not speed: every write above made exactly one event.
    let seq = *store.subscribe_seq().borrow();
    assert_eq!(
        seq,
        (refs + patches) as u64,
        "the outbox should hold one event per write"
    );

    // Warm-up: touch every key once (fills the cache where there is one).
    let s = store.clone();
    measure(backend, "warm-up", refs, cfg.read_tasks, move |i| {
        let s = s.clone();
        async move {
            let _ = s.get(&key_of(i)).await;
        }
    })
    .await;

    let keys: Arc<Vec<RefKey>> = Arc::new((0..refs).map(key_of).collect());
    let s = store.clone();
    let operation = if backend == "sqlite" {
        "get (warm cache)"
    } else {
        "get (no cache)"
    };
    let got = measure(backend, operation, gets, cfg.read_tasks, move |i| {
        let s = s.clone();
        let keys = keys.clone();
        async move {
            let k = &keys[scramble(i, keys.len())];
            match s.get(k).await {
                Ok(Some(c)) => {
                    black_box(c);
                }
                Ok(None) => panic!("{k} is missing"),
                Err(e) => panic!("get {k} failed: {e}"),
            }
        }
    })
    .await;
    report(&got);
    figures.push(got);
    figures
}

fn report(f: &Figure) {
    eprintln!(
        "  {:<8} {:<18} {:>9} ops in {:>6.2} s = {:>10} ops/s  p50 {:>9}  p99 {:>9}  CPU/op {:>9}",
        f.backend,
        f.operation,
        f.ops,
        f.elapsed.as_secs_f64(),
        fmt_count(f.per_second()),
        fmt_latency(f.quantile(0.50)),
        fmt_latency(f.quantile(0.99)),
        f.cpu_per_op(),
    );
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// A fresh PostgreSQL schema, dropped when this guard goes away (even after a panic).
struct PgSchema {
    base: String,
    schema: String,
}

impl PgSchema {
    async fn create(base: &str) -> Result<Self, sqlx::Error> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let schema = format!("bver_bench_{:x}_{}", nanos as u64, std::process::id());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(base).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut conn)
            .await?;
        Ok(Self {
            base: base.to_owned(),
            schema,
        })
    }

    fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!(
            "{}{sep}options=-c%20search_path%3D{}",
            self.base, self.schema
        )
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let base = self.base.clone();
        let schema = self.schema.clone();
        // Drop may run inside the benchmark's runtime: clean up from a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(&base).await
                {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP SCHEMA IF EXISTS {schema} CASCADE"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

async fn bench(cfg: Config) -> Vec<Figure> {
    let mut figures = Vec::new();
    if cfg.backends.iter().any(|b| b == "sqlite") {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open_sqlite(&dir.path().join("bver.db"), StoreOptions::default())
            .await
            .expect("open the SQLite store");
        figures.extend(run_backend(store, "sqlite", &cfg, cfg.patches, cfg.gets).await);
    }
    if cfg.backends.iter().any(|b| b == "postgres") {
        let base = std::env::var("BVER_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        match PgSchema::create(&base).await {
            Err(e) => eprintln!("PostgreSQL at {base} does not answer ({e}); skipping it"),
            Ok(schema) => {
                let store = Store::open_postgres(&schema.url(), StoreOptions::default())
                    .await
                    .expect("open the PostgreSQL store");
                figures.extend(
                    run_backend(store, "postgres", &cfg, cfg.pg_patches, cfg.pg_gets).await,
                );
                drop(schema);
            }
        }
    }
    figures
}

fn main() {
    let cfg = Config::load();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load_before = load_average();
    eprintln!(
        "store benchmark{}: {cores} cores ({}), load average {load_before}",
        if cfg.quick { " (quick)" } else { "" },
        cpu_model()
    );
    eprintln!("  {cfg:?}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let started = Instant::now();
    let figures = rt.block_on(bench(cfg.clone()));
    let load_after = load_average();

    println!();
    println!(
        "Machine: {cores} cores, {}; load average before {load_before}, after {load_after}; \
         total {:.1} s",
        cpu_model(),
        started.elapsed().as_secs_f64()
    );
    println!();
    println!("| backend | operation | ops | callers | ops/s | p50 | p99 | CPU/op |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for f in &figures {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            f.backend,
            f.operation,
            fmt_count(f.ops as f64),
            f.tasks,
            fmt_count(f.per_second()),
            fmt_latency(f.quantile(0.50)),
            fmt_latency(f.quantile(0.99)),
            f.cpu_per_op(),
        );
    }
}
