//! MCP tool-call latency: p50/p99 of `tools/call` through rmcp's client, in process (client
//! and server joined by an in-memory duplex pipe: the full JSON-RPC path without a socket)
//! and over Streamable HTTP against a started node (loopback TCP, bearer token, the node's
//! middleware). The figures are recorded in `docs/PERFORMANCE.md` ("MCP").
//!
//! Run: `cargo bench -p bver-node --bench mcp` (optionally `-- ITERATIONS`, default 2000).
//! SQLite in a temporary directory; revision 2026-07-28 (stateless).

use std::time::{Duration, Instant};

use bver_auth::{Issuer, PlatformKey, ScopeSet};
use bver_node::datadir::DataDir;
use bver_node::mcp::{Caller, McpServer};
use bver_node::serve::{self, ServeConfig, platform};
use rmcp::model::{CallToolRequestParams, ClientConfig, ProtocolVersion};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientLifecycleMode, ClientServiceExt, RoleClient, ServiceExt};
use serde_json::{Value, json};

/// The same allocator as the `bver` binary (the node runs in this process).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SCOPES: &str = "refs:site:read refs:site:create refs:site:update";

fn domain_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packs/example")
}

fn token(data: &std::path::Path, platform: &str, audience: &str) -> String {
    let (keys, _) = DataDir::open(data).unwrap().key_set(0).unwrap();
    let key = PlatformKey::from_pkcs8(keys.current().pkcs8_der()).unwrap();
    Issuer::ed25519(platform, audience, &key)
        .issue(
            "bench",
            &ScopeSet::parse(SCOPES).unwrap(),
            Duration::from_secs(3600),
            bver_auth::unix_now(),
        )
        .unwrap()
        .token
}

fn modern() -> ClientLifecycleMode {
    ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    }
}

async fn call(client: &RunningService<RoleClient, ClientConfig>, tool: &str, args: Value) {
    let Value::Object(args) = args else {
        unreachable!()
    };
    let r = client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args))
        .await
        .expect("tools/call");
    assert_ne!(r.is_error, Some(true), "{r:?}");
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn measure(label: &str, client: &RunningService<RoleClient, ClientConfig>, n: usize) {
    call(
        client,
        "refs_site_create",
        json!({"id": "bench", "value": {"name": "B", "code": "BEN-001", "status": "planned"}}),
    )
    .await;
    for _ in 0..50 {
        call(client, "refs_site_get", json!({"id": "bench"})).await;
    }
    for (tool, args, count) in [
        ("refs_site_get", json!({"id": "bench"}), n),
        (
            "refs_site_patch",
            json!({"id": "bench", "merge": {"name": "B2"}}),
            (n / 4).max(50),
        ),
    ] {
        let mut times = Vec::with_capacity(count);
        for _ in 0..count {
            let t = Instant::now();
            call(client, tool, args.clone()).await;
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "{label:<12} {tool:<16} n={count:<5} p50={:>8.1}µs p99={:>8.1}µs",
            pct(&times, 0.5).as_secs_f64() * 1e6,
            pct(&times, 0.99).as_secs_f64() * 1e6,
        );
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2000);

    // In process: rmcp client ↔ McpServer over a duplex pipe.
    let dir = tempfile::tempdir().unwrap();
    let config = ServeConfig::new(vec![domain_dir()], dir.path().to_path_buf());
    let p = platform::open(&config).await.unwrap();
    let t = token(dir.path(), &p.identity.platform_id, &p.audience);
    let caller = Caller::Token {
        token: t,
        verifier: std::sync::Arc::new(p.verifier),
    };
    let server = McpServer::new(
        bver_node::broker::Broker::new(p.domain.clone(), p.store).unwrap(),
        p.identity.platform_id,
        caller,
        None,
    )
    .unwrap();
    let (client_io, server_io) = tokio::io::duplex(1 << 20);
    tokio::spawn(async move {
        let running = server.serve(server_io).await.unwrap();
        let _ = running.waiting().await;
    });
    let client = ClientConfig::default()
        .serve_with_lifecycle(client_io, modern())
        .await
        .unwrap();
    measure("in-process", &client, n).await;
    let _ = client.cancel().await;

    // Streamable HTTP against a started node.
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServeConfig::new(vec![domain_dir()], dir.path().to_path_buf());
    config.listen = "127.0.0.1:0".parse().unwrap();
    let running = serve::start(config).await.unwrap();
    let t = token(dir.path(), &running.platform_id, &running.audience);
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(format!("http://{}/mcp", running.http_addr))
            .auth_header(t),
    );
    let client = ClientConfig::default()
        .serve_with_lifecycle(transport, modern())
        .await
        .unwrap();
    measure("http", &client, n).await;
    let _ = client.cancel().await;
    running.shutdown().await.unwrap();
}
