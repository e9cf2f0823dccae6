//! HTTP load benchmark of `bver serve` (not a test): authorised GETs of a reference and
//! PATCHes with version + diff + event, on SQLite and on PostgreSQL, measured with `wrk`.
//!
//! ```sh
//! apt-get install wrk            # Debian's package
//! cargo bench -p bver-node --bench http
//! # options (environment): BVER_BENCH_SECS=10  BVER_BENCH_CONNS=64  BVER_BENCH_THREADS=1
//! #                        BVER_BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test (or "skip")
//! ```
//!
//! The node runs in this process (a 2-worker tokio runtime, logging off), `wrk` in another;
//! both share the machine, as a client on the same host would. Every request carries a real
//! EdDSA bearer token (verified once, then served from the verified-token cache, with the
//! revocation check on every request). Each run first writes 1,000 sites; GETs and PATCHes
//! pick a random one of them. The figures (requests/s, p50, p99, non-2xx count) are printed
//! as a Markdown table for `docs/PERFORMANCE.md`.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use bver_auth::{Issuer, ScopeSet};
use bver_node::datadir::DataDir;
use bver_node::serve::{self, ServeConfig};

/// The same allocator as the `bver` binary (the node runs in this process).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SITES: usize = 1000;

struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
    requests: u64,
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Milliseconds from a wrk duration (`812.00us`, `1.20ms`, `2.01s`).
fn millis(s: &str) -> f64 {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let v: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => v / 1000.0,
        "ms" => v,
        "s" => v * 1000.0,
        "m" => v * 60_000.0,
        _ => f64::NAN,
    }
}

fn parse(out: &str) -> Figures {
    let mut f = Figures {
        rps: f64::NAN,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        non_2xx: 0,
        requests: 0,
    };
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", v] => f.rps = v.parse().unwrap_or(f64::NAN),
            ["50%", v] => f.p50_ms = millis(v),
            ["99%", v] => f.p99_ms = millis(v),
            ["Non-2xx", "or", "3xx", "responses:", n] => f.non_2xx = n.parse().unwrap_or(0),
            [n, "requests", "in", ..] => f.requests = n.parse().unwrap_or(0),
            _ => {}
        }
    }
    f
}

fn wrk(url: &str, script: &std::path::Path) -> Figures {
    let secs = env_or("BVER_BENCH_SECS", 10);
    let conns = env_or("BVER_BENCH_CONNS", 64);
    let threads = env_or("BVER_BENCH_THREADS", 1);
    let out = Command::new("wrk")
        .args([
            "--latency",
            "-t",
            &threads.to_string(),
            "-c",
            &conns.to_string(),
            "-d",
            &format!("{secs}s"),
            "-s",
        ])
        .arg(script)
        .arg(url)
        .output()
        .expect("wrk runs (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        panic!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    parse(&text)
}

fn lua(dir: &std::path::Path, name: &str, token: &str, method: &str) -> std::path::PathBuf {
    let body = if method == "PATCH" {
        r#"
  n = n + 1
  local body = '{"tags": ["t' .. n .. '"]}'
  return wrk.format("PATCH", "/v1/refs/sites/site/s" .. math.random(0, SITES - 1), headers_patch, body)"#
    } else {
        r#"
  return wrk.format("GET", "/v1/refs/sites/site/s" .. math.random(0, SITES - 1), headers_get)"#
    };
    let script = format!(
        r#"SITES = {SITES}
n = 0
headers_get = {{ ["Authorization"] = "Bearer {token}" }}
headers_patch = {{ ["Authorization"] = "Bearer {token}", ["Content-Type"] = "application/merge-patch+json" }}
function setup(thread) math.randomseed(os.time()) end
request = function(){body}
end
"#
    );
    let path = dir.join(name);
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(script.as_bytes()))
        .expect("write the wrk script");
    path
}

async fn run(label: &str, postgres: Option<String>) -> Vec<(String, Figures)> {
    let data = tempfile::tempdir().expect("tempdir");
    let domain = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packs/example");
    let mut config = ServeConfig::new(vec![domain], data.path().to_path_buf());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.postgres = postgres;
    config.shutdown_grace = Duration::from_secs(5);
    let node = serve::start(config).await.expect("node starts");
    let (keys, _) = DataDir::open(data.path())
        .and_then(|d| d.key_set(bver_auth::unix_now()))
        .expect("keys");
    let issuer = Issuer::ed25519(&node.platform_id, &node.audience, keys.current());
    let token = issuer
        .issue(
            "bench",
            &ScopeSet::parse("refs:*:*").expect("scopes"),
            Duration::from_secs(3600),
            bver_auth::unix_now(),
        )
        .expect("token")
        .token;
    let base = format!("http://{}", node.http_addr);

    // Seed the sites through the API itself.
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..SITES {
        let req = client
            .post(format!("{base}/v1/refs/sites/site"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"id": format!("s{i}"), "value": {
                "name": format!("Site {i}"), "code": format!("BEN-{:03}", i % 1000),
                "status": "in_service", "location": {"lat": 60.0, "lon": 25.0}}}));
        tasks.push(tokio::spawn(
            async move { req.send().await.map(|r| r.status()) },
        ));
    }
    for t in tasks {
        let status = t.await.expect("task").expect("seed request");
        assert!(status.is_success(), "seeding failed: {status}");
    }

    let scripts = tempfile::tempdir().expect("tempdir");
    let get = lua(scripts.path(), "get.lua", &token, "GET");
    let patch = lua(scripts.path(), "patch.lua", &token, "PATCH");
    let mut out = Vec::new();
    for (op, script) in [("GET a reference", &get), ("PATCH (merge)", &patch)] {
        let url = base.clone();
        let script = script.clone();
        let f = tokio::task::spawn_blocking(move || wrk(&url, &script))
            .await
            .expect("wrk task");
        println!(
            "{label:<10} {op:<16} {:>10.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ({} requests, {} non-2xx)",
            f.rps, f.p50_ms, f.p99_ms, f.requests, f.non_2xx
        );
        out.push((format!("{label} | {op}"), f));
    }
    node.shutdown().await.expect("shutdown");
    out
}

fn main() {
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("wrk is not installed: apt-get install wrk");
        std::process::exit(2);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows = rt.block_on(run("SQLite", None));
    let pg = std::env::var("BVER_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    if pg != "skip" {
        // A fresh schema, so that the run starts from empty tables.
        let schema = format!("bver_bench_{:08x}", rand::random::<u32>());
        let url = rt.block_on(async {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&pg)
                .await
                .expect("PostgreSQL answers (or set BVER_BENCH_POSTGRES_URL=skip)");
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(&mut conn)
                .await
                .expect("create schema");
            let sep = if pg.contains('?') { '&' } else { '?' };
            format!("{pg}{sep}options=-c%20search_path%3D{schema}")
        });
        rows.extend(rt.block_on(run("PostgreSQL", Some(url))));
        rt.block_on(async {
            if let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(&pg).await {
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                    .execute(&mut conn)
                    .await;
            }
        });
    }
    println!();
    println!("| Backend | Request | Requests/s | p50 | p99 | Non-2xx |");
    println!("|---|---|---:|---:|---:|---:|");
    for (label, f) in rows {
        let (backend, op) = label.split_once(" | ").unwrap_or((&label, ""));
        println!(
            "| {backend} | {op} | {:.0} | {:.2} ms | {:.2} ms | {} |",
            f.rps, f.p50_ms, f.p99_ms, f.non_2xx
        );
    }
}
