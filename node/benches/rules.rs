//! What CEL rules cost on the write path: durable writes per second through the broker, on
//! SQLite (and PostgreSQL when `BVER_TEST_POSTGRES_URL` or the default server answers), for
//! the same reference type without rules and with ten rules, plus the cost of checking ten
//! rules against one value on its own.
//!
//! Run: `cargo bench -p bver-node --bench rules` (`BVER_BENCH_WRITES=N` writes per run,
//! default 20000; `BVER_BENCH_TASKS=N` concurrent callers, default 64;
//! `BVER_TEST_POSTGRES=skip` for SQLite only). Results go to `docs/PERFORMANCE.md`, "Rules".

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bver_auth::{Principal, ScopeSet};
use bver_node::broker::{Broker, Call};
use bver_node::domain::{self, Domain};
use bver_node::store::{Store, StoreOptions};
use serde_json::{Value, json};

/// The same allocator as the `bver` binary (the node runs in this process).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RULES: [&str; 10] = [
    "load <= rating * 1.2",
    "min_kv < max_kv",
    "size(name) >= 3",
    "count >= 1.0 && count <= 1000.0",
    "tags.all(t, size(t) <= 20)",
    "!has(self.note) || size(self.note) < 200",
    "rating > 0.0",
    "code.matches('^[A-Z]{3}-[0-9]{3}$')",
    "lat >= -90.0 && lat <= 90.0 && lon >= -180.0 && lon <= 180.0",
    "status != 'retired' || load == 0.0",
];

fn write_domain(dir: &Path, rules: bool) {
    let mut toml = String::from(
        "[bundle]\nname = \"bench\"\nversion = \"1.0.0\"\nrole = \"core\"\nnamespaces = [\"b\"]\n\n\
         [refs.item]\n[refs.item.schema]\ntype = \"object\"\n\
         required = [\"name\", \"code\", \"rating\", \"load\", \"min_kv\", \"max_kv\", \"count\"]\n\
         properties.name = { type = \"string\" }\nproperties.code = { type = \"string\" }\n\
         properties.status = { type = \"string\" }\nproperties.note = { type = \"string\" }\n\
         properties.rating = { type = \"number\" }\nproperties.load = { type = \"number\" }\n\
         properties.min_kv = { type = \"number\" }\nproperties.max_kv = { type = \"number\" }\n\
         properties.count = { type = \"number\" }\nproperties.lat = { type = \"number\" }\n\
         properties.lon = { type = \"number\" }\n\
         properties.tags = { type = \"array\", items = { type = \"string\" } }\n",
    );
    if rules {
        for (i, r) in RULES.iter().enumerate() {
            toml.push_str(&format!(
                "\n[refs.item.rules.r{i}]\nexpr = \"{}\"\n",
                r.replace('\\', "\\\\").replace('"', "\\\"")
            ));
        }
    }
    let bundle = dir.join(if rules { "with" } else { "without" });
    std::fs::create_dir_all(&bundle).expect("dir");
    std::fs::write(bundle.join("bundle.toml"), toml).expect("write");
}

fn value(i: usize) -> Value {
    json!({
        "name": format!("item {i}"), "code": "ABC-123", "status": "in_service",
        "rating": 100, "load": 90.5, "min_kv": 11, "max_kv": 33, "count": 7,
        "lat": 51.5, "lon": -0.12, "tags": ["a", "bb", "ccc"]
    })
}

fn principal() -> Principal {
    Principal {
        subject: "bench".into(),
        scopes: ScopeSet::parse("refs:*:create").expect("scopes"),
        token_id: "t".into(),
        issued_at: 0,
        expires_at: u64::MAX,
        issuer: "bench".into(),
    }
}

async fn run(domain: Arc<Domain>, store: Store, writes: usize, tasks: usize) -> f64 {
    let broker = Broker::new(domain, store).expect("broker");
    let p = principal();
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (b, p) = (broker.clone(), p.clone());
        handles.push(tokio::spawn(async move {
            let mut i = t;
            while i < writes {
                b.invoke(
                    &p,
                    Call::new(
                        "refs.item.create",
                        json!({"id": format!("i{i}"), "value": value(i)}),
                    ),
                )
                .await
                .expect("write");
                i += tasks;
            }
        }));
    }
    for h in handles {
        h.await.expect("task");
    }
    writes as f64 / start.elapsed().as_secs_f64()
}

async fn postgres(url: &str) -> Option<(String, String)> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.ok()?;
    let schema = format!("bver_bench_{:016x}", rand::random::<u64>());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await
        .ok()?;
    let sep = if url.contains('?') { '&' } else { '?' };
    Some((
        format!("{url}{sep}options=-c%20search_path%3D{schema}"),
        schema,
    ))
}

async fn drop_schema(url: &str, schema: &str) {
    use sqlx::Connection;
    if let Ok(mut conn) = sqlx::PgConnection::connect(url).await {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&mut conn)
            .await;
    }
}

fn main() {
    let writes: usize = std::env::var("BVER_BENCH_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let tasks: usize = std::env::var("BVER_BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let dir = tempfile::tempdir().expect("tempdir");
    write_domain(dir.path(), false);
    write_domain(dir.path(), true);
    let without =
        Arc::new(domain::load(&[dir.path().join("without")]).expect("domain without rules"));
    let with = Arc::new(domain::load(&[dir.path().join("with")]).expect("domain with rules"));

    // The rules alone: ten rules against one value, in a loop.
    let rt = with.ref_type("item").expect("item");
    assert_eq!(rt.rules.len(), 10);
    let v = value(1);
    assert!(
        rt.check_rules(None, &v).is_empty(),
        "the bench value satisfies every rule"
    );
    let n = 20_000;
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(rt.check_rules(None, std::hint::black_box(&v)));
    }
    let per = start.elapsed() / n;
    println!(
        "rules: ten rules checked against one value: {:.1} µs",
        per.as_secs_f64() * 1e6
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut backends: Vec<&str> = vec!["sqlite"];
        let pg_url = std::env::var("BVER_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        if std::env::var("BVER_TEST_POSTGRES").map(|v| v != "skip").unwrap_or(true) {
            backends.push("postgres");
        }
        for backend in backends {
            let mut results = Vec::new();
            // Alternate, twice each, so that a drift of the machine hits both alike.
            for round in 0..4 {
                let rules = round % 2 == 1;
                let domain = if rules { with.clone() } else { without.clone() };
                let (store, cleanup) = match backend {
                    "sqlite" => {
                        let d = tempfile::tempdir().expect("tempdir");
                        let s = Store::open_sqlite(&d.path().join("bver.db"), StoreOptions::default()).await.expect("sqlite");
                        (s, Cleanup::Dir(d))
                    }
                    _ => {
                        let Some((url, schema)) = postgres(&pg_url).await else {
                            println!("rules: postgres at {pg_url} does not answer; skipped");
                            break;
                        };
                        let s = Store::open_postgres(&url, StoreOptions::default()).await.expect("postgres");
                        (s, Cleanup::Schema(schema))
                    }
                };
                let rate = run(domain, store, writes, tasks).await;
                println!("rules: {backend} {} rules: {rate:.0} writes/s ({writes} creates, {tasks} callers)", if rules { 10 } else { 0 });
                results.push((rules, rate));
                if let Cleanup::Schema(s) = cleanup {
                    drop_schema(&pg_url, &s).await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let best = |r: bool| results.iter().filter(|x| x.0 == r).map(|x| x.1).fold(0.0, f64::max);
            if !results.is_empty() {
                let (a, b) = (best(false), best(true));
                println!("rules: {backend} best of two: {a:.0} writes/s without rules, {b:.0} with ten ({:+.1}%)", (b / a - 1.0) * 100.0);
            }
        }
    });
}

enum Cleanup {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Schema(String),
}
