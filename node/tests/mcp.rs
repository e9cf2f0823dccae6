//! MCP through rmcp's own client, over both transports: Streamable HTTP against a started
//! node (`/mcp`), and stdio against the `bver mcp` binary. Each transport runs the same
//! checks: tool discovery filtered by scope, a create/patch/get chain whose structured output
//! validates against each tool's output schema, a schema violation and a forbidden call as
//! `isError` results carrying the shared error, resource reads (whole reference and an
//! attribute path), the resource template, paged listing, and change notifications (the
//! 2026-07-28 `subscriptions/listen` and the 2025-11-25 `resources/subscribe`).

use std::time::Duration;

use bver_auth::{Issuer, PlatformKey, ScopeSet};
use bver_node::datadir::DataDir;
use bver_node::serve::{self, Running, ServeConfig};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ProtocolVersion, ReadResourceRequestParams,
    ResourceContents, ResourceUpdatedNotificationParam, ServerNotification, SubscribeRequestParams,
    SubscriptionFilter, Tool,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, ClientLifecycleMode, ClientServiceExt, RoleClient};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Scopes of the writer in these tests: it may read, create and update sites, not delete.
const WRITER: &str = "refs:site:read refs:site:create refs:site:update";
const WAIT: Duration = Duration::from_secs(10);

fn domain_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packs/example")
}

fn issuer(data: &std::path::Path, platform: &str, audience: &str) -> Issuer {
    let (keys, _) = DataDir::open(data).unwrap().key_set(0).unwrap();
    let key = PlatformKey::from_pkcs8(keys.current().pkcs8_der()).unwrap();
    Issuer::ed25519(platform, audience, &key)
}

fn token(issuer: &Issuer, scopes: &str) -> String {
    issuer
        .issue(
            "mcp-tester",
            &ScopeSet::parse(scopes).unwrap(),
            Duration::from_secs(600),
            bver_auth::unix_now(),
        )
        .unwrap()
        .token
}

/// A client handler that forwards `notifications/resources/updated` (the legacy path).
#[derive(Clone)]
struct Updates(mpsc::UnboundedSender<String>);

impl ClientHandler for Updates {
    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.0.send(params.uri);
    }
}

type Client = RunningService<RoleClient, Updates>;

fn modern() -> ClientLifecycleMode {
    ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    }
}

fn legacy() -> ClientLifecycleMode {
    ClientLifecycleMode::Initialize
}

fn handler() -> (Updates, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Updates(tx), rx)
}

struct Node {
    running: Running,
    url: String,
    issuer: Issuer,
    _data: tempfile::TempDir,
}

async fn start_node() -> Node {
    let data = tempfile::tempdir().unwrap();
    let mut config = ServeConfig::new(vec![domain_dir()], data.path().to_path_buf());
    config.listen = "127.0.0.1:0".parse().unwrap();
    let running = serve::start(config).await.expect("node starts");
    let issuer = issuer(data.path(), &running.platform_id, &running.audience);
    Node {
        url: format!("http://{}/mcp", running.http_addr),
        running,
        issuer,
        _data: data,
    }
}

async fn http_client(
    url: &str,
    token: &str,
    lifecycle: ClientLifecycleMode,
) -> (Client, mpsc::UnboundedReceiver<String>) {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()).auth_header(token),
    );
    let (h, rx) = handler();
    let client = h
        .serve_with_lifecycle(transport, lifecycle)
        .await
        .expect("MCP over HTTP connects");
    (client, rx)
}

/// A data directory with a platform key and identity, and an issuer for it.
async fn stdio_platform() -> (tempfile::TempDir, Issuer) {
    let data = tempfile::tempdir().unwrap();
    let config = ServeConfig::new(vec![domain_dir()], data.path().to_path_buf());
    let p = serve::platform::open(&config)
        .await
        .expect("platform opens");
    let issuer = issuer(data.path(), &p.identity.platform_id, &p.audience);
    drop(p);
    (data, issuer)
}

fn bver_mcp(data: &std::path::Path, token: Option<&str>) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_bver"));
    cmd.arg("mcp")
        .arg("--domain")
        .arg(domain_dir())
        .arg("--data")
        .arg(data)
        .env_remove("BVER_TOKEN")
        .env("BVER_LOG", "warn");
    if let Some(t) = token {
        cmd.env("BVER_TOKEN", t);
    }
    cmd
}

async fn stdio_client(
    data: &std::path::Path,
    token: &str,
    lifecycle: ClientLifecycleMode,
) -> (Client, mpsc::UnboundedReceiver<String>) {
    let transport = TokioChildProcess::new(bver_mcp(data, Some(token))).expect("bver mcp runs");
    let (h, rx) = handler();
    let client = h
        .serve_with_lifecycle(transport, lifecycle)
        .await
        .expect("MCP over stdio connects");
    (client, rx)
}

async fn call(client: &Client, tool: &str, args: Value) -> CallToolResult {
    let Value::Object(args) = args else {
        panic!("arguments must be an object")
    };
    client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args))
        .await
        .unwrap_or_else(|e| panic!("{tool}: a protocol error instead of a tool result: {e}"))
}

fn structured(result: &CallToolResult) -> &Value {
    result
        .structured_content
        .as_ref()
        .expect("structuredContent")
}

fn assert_ok(tool: &Tool, result: &CallToolResult) -> Value {
    assert_ne!(
        result.is_error,
        Some(true),
        "{} failed: {:?}",
        tool.name,
        result.structured_content
    );
    let out = structured(result).clone();
    let schema = Value::Object(
        tool.output_schema
            .clone()
            .expect("outputSchema")
            .as_ref()
            .clone(),
    );
    let validator = jsonschema::draft202012::new(&schema).expect("output schema compiles");
    let errors: Vec<String> = validator.iter_errors(&out).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "{}: output does not validate: {errors:?}",
        tool.name
    );
    out
}

fn assert_error(result: &CallToolResult, code: &str) -> Value {
    assert_eq!(result.is_error, Some(true), "expected an error: {result:?}");
    let err = structured(result).clone();
    assert_eq!(err["code"], code, "{err}");
    assert!(err["phase"].is_string(), "{err}");
    assert!(err["retryable"].is_boolean(), "{err}");
    assert!(err["message"].is_string(), "{err}");
    err
}

fn text(contents: &[ResourceContents]) -> Value {
    match &contents[0] {
        ResourceContents::TextResourceContents {
            text, mime_type, ..
        } => {
            assert_eq!(mime_type.as_deref(), Some("application/json"));
            serde_json::from_str(text).unwrap()
        }
        other => panic!("expected text contents, got {other:?}"),
    }
}

/// The whole conversation one writer has with a platform, on any transport.
async fn exercise(client: &Client, id: &str) {
    // Tools: the writer's, and not the delete it lacks the scope for.
    let tools = client.list_all_tools().await.expect("tools/list");
    let tool = |name: &str| {
        tools
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no tool {name}"))
            .clone()
    };
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    for n in [
        "refs_site_create",
        "refs_site_get",
        "refs_site_patch",
        "bver_get",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    for n in ["refs_site_delete", "refs_feeder_create", "refs_drawing_get"] {
        assert!(
            !names.contains(&n),
            "{n} is listed to a caller without its scope"
        );
    }
    let get = tool("refs_site_get");
    let ann = get.annotations.clone().expect("annotations");
    assert_eq!(ann.read_only_hint, Some(true));
    assert_eq!(ann.idempotent_hint, Some(true));
    let create = tool("refs_site_create");
    let ann = create.annotations.clone().expect("annotations");
    assert_eq!(ann.read_only_hint, Some(false));
    assert_eq!(ann.destructive_hint, Some(false));
    assert_eq!(create.input_schema["type"], "object");
    assert!(create.input_schema["properties"]["value"].is_object());

    // create → patch → get.
    let value = json!({"name": "North Yard", "code": "NTH-014", "status": "in_service"});
    let out = assert_ok(
        &create,
        &call(
            client,
            "refs_site_create",
            json!({"id": id, "value": value}),
        )
        .await,
    );
    assert_eq!(out["version"], 1);
    let pointer = format!("bver://sites/site/{id}");
    assert_eq!(out["pointer"], pointer.as_str());
    let out = assert_ok(
        &tool("refs_site_patch"),
        &call(
            client,
            "refs_site_patch",
            json!({"id": id, "merge": {"status": "planned"}}),
        )
        .await,
    );
    assert_eq!(out["version"], 2);
    let out = assert_ok(
        &get,
        &call(client, "refs_site_get", json!({"id": id})).await,
    );
    assert_eq!(out["version"], 2);
    assert_eq!(out["value"]["status"], "planned");
    let v1 = assert_ok(
        &get,
        &call(client, "refs_site_get", json!({"id": id, "version": 1})).await,
    );
    assert_eq!(v1["value"]["status"], "in_service");

    // A schema violation, a forbidden call, a conflict: tool errors, not protocol errors.
    let err = assert_error(
        &call(client, "refs_site_create", json!({"value": 42})).await,
        "schema_violation",
    );
    assert_eq!(err["phase"], "input_validation");
    assert!(
        err["details"]["violations"]
            .as_array()
            .is_some_and(|v| !v.is_empty())
    );
    let err = assert_error(
        &call(client, "refs_site_delete", json!({"id": id})).await,
        "forbidden",
    );
    assert!(err["details"]["missing_scope"].is_string(), "{err}");
    assert_error(
        &call(
            client,
            "refs_site_patch",
            json!({"id": id, "expected_version": 1, "merge": {"status": "in_service"}}),
        )
        .await,
        "version_conflict",
    );
    assert_error(
        &call(client, "refs_site_get", json!({"id": "nope"})).await,
        "not_found",
    );
    assert_error(
        &call(client, "refs_nothing_here", json!({})).await,
        "not_found",
    );

    // Resources: read, attribute path, template, listing.
    let read = client
        .read_resource(ReadResourceRequestParams::new(pointer.clone()))
        .await
        .expect("resources/read");
    assert_eq!(text(&read.contents)["status"], "planned");
    let read = client
        .read_resource(ReadResourceRequestParams::new(format!("{pointer}@name")))
        .await
        .expect("resources/read with an attribute path");
    assert_eq!(text(&read.contents), json!("North Yard"));
    let missing = client
        .read_resource(ReadResourceRequestParams::new("bver://sites/site/nope"))
        .await;
    assert!(missing.is_err(), "a missing reference is an error");
    let forbidden = client
        .read_resource(ReadResourceRequestParams::new("bver://drawings/drawing/x"))
        .await;
    assert!(forbidden.is_err(), "an unreadable repo is an error");
    let templates = client
        .list_all_resource_templates()
        .await
        .expect("resources/templates/list");
    let uris: Vec<&str> = templates.iter().map(|t| t.uri_template.as_str()).collect();
    assert!(uris.contains(&"bver://{namespace}/{repo}/{id}"), "{uris:?}");
    assert!(uris.contains(&"bver://sites/site/{id}"), "{uris:?}");
    assert!(!uris.iter().any(|u| u.contains("drawing")), "{uris:?}");
    let listed = client.list_all_resources().await.expect("resources/list");
    assert!(listed.iter().any(|r| r.uri == pointer), "{listed:?}");
}

/// 2026-07-28: `subscriptions/listen` tells about a change to a subscribed reference.
async fn listen_notifies(client: &Client, writer: &Client, id: &str) {
    let pointer = format!("bver://sites/site/{id}");
    let mut sub = client
        .listen(
            SubscriptionFilter::builder()
                .resource_subscription(format!("{pointer}@status"))
                .build(),
        )
        .await
        .expect("subscriptions/listen");
    assert_eq!(
        sub.acknowledged().resource_subscriptions.as_deref(),
        Some(&[format!("{pointer}@status")][..])
    );
    let r = call(
        writer,
        "refs_site_patch",
        json!({"id": id, "merge": {"status": "decommissioned"}}),
    )
    .await;
    assert_ne!(r.is_error, Some(true), "{r:?}");
    let note = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a notification in time")
        .expect("the subscription is open")
        .expect("a notification");
    match note {
        ServerNotification::ResourceUpdatedNotification(n) => {
            assert_eq!(n.params.uri, format!("{pointer}@status"));
        }
        other => panic!("expected resources/updated, got {other:?}"),
    }
    sub.cancel().await.expect("cancel the subscription");
}

/// 2025-11-25: `resources/subscribe`, then `notifications/resources/updated`.
#[allow(deprecated)]
async fn subscribe_notifies(
    client: &Client,
    updates: &mut mpsc::UnboundedReceiver<String>,
    writer: &Client,
    id: &str,
) {
    let pointer = format!("bver://sites/site/{id}");
    client
        .subscribe(SubscribeRequestParams::new(pointer.clone()))
        .await
        .expect("resources/subscribe");
    let r = call(
        writer,
        "refs_site_patch",
        json!({"id": id, "merge": {"name": "North Yard 2"}}),
    )
    .await;
    assert_ne!(r.is_error, Some(true), "{r:?}");
    let uri = tokio::time::timeout(WAIT, updates.recv())
        .await
        .expect("a notification in time")
        .expect("the client is open");
    assert_eq!(uri, pointer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_tools_resources_and_notifications() {
    let node = start_node().await;
    let writer = token(&node.issuer, WRITER);

    // The current revision (stateless, server/discover).
    let (client, _) = http_client(&node.url, &writer, modern()).await;
    exercise(&client, "nth-014").await;
    listen_notifies(&client, &client, "nth-014").await;

    // A 2025-11-25 client (initialize, a session, resources/subscribe).
    let (old, mut updates) = http_client(&node.url, &writer, legacy()).await;
    assert_eq!(
        old.peer_info().map(|i| i.protocol_version.clone()),
        Some(ProtocolVersion::V_2025_11_25)
    );
    exercise(&old, "sth-015").await;
    subscribe_notifies(&old, &mut updates, &client, "sth-015").await;

    // A caller who may only read feeders sees only feeder tools (and the resolver's).
    let reader = token(&node.issuer, "refs:feeder:read");
    let (c, _) = http_client(&node.url, &reader, modern()).await;
    let names: Vec<String> = c
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.into_owned())
        .collect();
    assert!(names.contains(&"refs_feeder_get".to_owned()), "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("refs_site")),
        "{names:?}"
    );

    let _ = client.cancel().await;
    let _ = old.cancel().await;
    let _ = c.cancel().await;
    node.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn http_refuses_missing_tokens_and_foreign_hosts() {
    let node = start_node().await;
    let writer = token(&node.issuer, WRITER);
    let http = reqwest::Client::new();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"}}});
    let post = |token: Option<&str>| {
        let r = http
            .post(&node.url)
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    };
    // No token: the node's own 401 problem, before MCP sees the request.
    let res = post(None).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    // A bad token.
    assert_eq!(post(Some("not.a.jwt")).send().await.unwrap().status(), 401);
    // DNS rebinding: a foreign Host, a foreign Origin.
    let res = post(Some(&writer))
        .header("host", "evil.example:80")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "{:?}", res.text().await);
    let res = post(Some(&writer))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "{:?}", res.text().await);
    // A local browser origin and a plain client pass.
    let port = node.running.http_addr.port();
    let res = post(Some(&writer))
        .header("origin", format!("http://localhost:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    node.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_tools_resources_and_notifications() {
    let (data, issuer) = stdio_platform().await;
    let writer = token(&issuer, WRITER);

    let (client, _) = stdio_client(data.path(), &writer, modern()).await;
    exercise(&client, "nth-014").await;
    listen_notifies(&client, &client, "nth-014").await;

    let (old, mut updates) = stdio_client(data.path(), &writer, legacy()).await;
    exercise(&old, "sth-015").await;
    // The write comes from the other process: the watcher reads the shared store's outbox.
    subscribe_notifies(&old, &mut updates, &client, "sth-015").await;

    let _ = client.cancel().await;
    let _ = old.cancel().await;
}

#[tokio::test]
async fn stdio_needs_a_valid_token() {
    let (data, issuer) = stdio_platform().await;
    let out = bver_mcp(data.path(), None).output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("BVER_TOKEN"));
    let out = bver_mcp(data.path(), Some("not.a.jwt"))
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not accepted"));
    // A token of another platform's key is refused too.
    let other = PlatformKey::generate().unwrap();
    let foreign = Issuer::ed25519("grid", "grid", &other)
        .issue(
            "x",
            &ScopeSet::parse(WRITER).unwrap(),
            Duration::from_secs(60),
            bver_auth::unix_now(),
        )
        .unwrap()
        .token;
    let out = bver_mcp(data.path(), Some(&foreign))
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    drop(issuer);
}
