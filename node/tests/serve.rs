//! `bver serve` over real HTTP: every route, every error status, each token rejection
//! reason, scope enforcement, ETag/If-Match, idempotency, paging, the OpenAPI document
//! against real responses, metrics, dev mode and graceful shutdown.

mod support;

use std::time::Duration;

use bver_auth::{Claims, HmacSecret, Issuer, PlatformKey, ScopeSet};
use bver_node::datadir::DataDir;
use bver_node::serve::{self, Running, ServeConfig};
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{Value, json};

const ADMIN: &str = "refs:*:* grid:admin admin admin:* metrics:read";

struct Node {
    running: Running,
    base: String,
    client: Client,
    issuer: Issuer,
    key: PlatformKey,
    /// The node's data directory (the SQLite test database's directory, or `_scratch`).
    data_dir: std::path::PathBuf,
    _scratch: tempfile::TempDir,
}

fn domain_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packs/example")
}

async fn start_with(db: &support::Db, tweak: impl FnOnce(&mut ServeConfig)) -> Node {
    let data = tempfile::tempdir().unwrap();
    let mut config = ServeConfig::new(vec![domain_dir()], data.path().to_path_buf());
    config.listen = "127.0.0.1:0".parse().unwrap();
    if let support::Db::Postgres { .. } = db {
        config.postgres = Some(db.cli_args()[1].clone());
    } else if let Some(p) = db.sqlite_path() {
        // The node keeps its SQLite store in its data directory; use the test's directory.
        config.data = p.parent().unwrap().to_path_buf();
    }
    tweak(&mut config);
    let running = serve::start(config.clone()).await.expect("node starts");
    let (keys, _) = DataDir::open(&config.data).unwrap().key_set(0).unwrap();
    let key = PlatformKey::from_pkcs8(keys.current().pkcs8_der()).unwrap();
    let issuer = Issuer::ed25519(&running.platform_id, &running.audience, &key);
    Node {
        base: format!("http://{}", running.http_addr),
        running,
        client: Client::new(),
        issuer,
        key,
        data_dir: config.data.clone(),
        _scratch: data,
    }
}

async fn start(db: &support::Db) -> Node {
    start_with(db, |_| {}).await
}

impl Node {
    fn token(&self, scopes: &str) -> String {
        self.issuer
            .issue(
                "tester",
                &ScopeSet::parse(scopes).unwrap(),
                Duration::from_secs(600),
                bver_auth::unix_now(),
            )
            .unwrap()
            .token
    }

    fn req(&self, method: Method, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let r = self.client.request(method, format!("{}{path}", self.base));
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn send(
        &self,
        method: Method,
        path: impl AsRef<str>,
        token: &str,
        body: Option<Value>,
    ) -> Response {
        let mut r = self.req(method, path.as_ref(), Some(token));
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.unwrap()
    }
}

async fn problem(res: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(res.status(), status, "status");
    assert_eq!(
        res.headers()["content-type"],
        "application/problem+json",
        "problem+json"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status.as_u16());
    assert!(
        body["phase"].is_string() && body["retryable"].is_boolean() && body["detail"].is_string()
    );
    assert_eq!(body["type"], format!("urn:bver:error:{code}"));
    body
}

fn site(code: &str) -> Value {
    json!({"name": "North Yard", "code": code, "status": "in_service", "location": {"lat": 60.1, "lon": 24.9}})
}

fn etag(res: &Response) -> String {
    res.headers()["etag"].to_str().unwrap().to_owned()
}

both_backends! {
    async fn crud_over_resource_routes_with_etags_if_match_and_paging(db) {
        let n = start(&db).await;
        let t = n.token(ADMIN);

        // Create: 201, Location, ETag "1".
        let res = n.send(Method::POST, "/v1/refs/sites/site", &t, Some(json!({"id": "nth-014", "value": site("NTH-014")}))).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        assert_eq!(res.headers()["location"], "/v1/refs/sites/site/nth-014");
        assert_eq!(etag(&res), "\"1\"");
        let created: Value = res.json().await.unwrap();
        assert_eq!(created["pointer"], "bver://sites/site/nth-014");

        // Read, then a conditional read.
        let res = n.send(Method::GET, "/v1/refs/sites/site/nth-014", &t, None).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(etag(&res), "\"1\"");
        let res = n.req(Method::GET, "/v1/refs/sites/site/nth-014", Some(&t)).header("if-none-match", "\"1\"").send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_MODIFIED);

        // Merge patch with the right If-Match: version 2.
        let res = n.req(Method::PATCH, "/v1/refs/sites/site/nth-014", Some(&t))
            .header("if-match", "\"1\"").header("content-type", "application/merge-patch+json")
            .body(r#"{"status": "decommissioned"}"#).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(etag(&res), "\"2\"");
        // A stale If-Match: 412, nothing written.
        let res = n.req(Method::PATCH, "/v1/refs/sites/site/nth-014", Some(&t))
            .header("if-match", "\"1\"").header("content-type", "application/merge-patch+json")
            .body(r#"{"status": "planned"}"#).send().await.unwrap();
        problem(res, StatusCode::PRECONDITION_FAILED, "version_conflict").await;
        // JSON Patch.
        let res = n.req(Method::PATCH, "/v1/refs/sites/site/nth-014", Some(&t))
            .header("content-type", "application/json-patch+json")
            .body(r#"[{"op": "replace", "path": "/name", "value": "North"}]"#).send().await.unwrap();
        assert_eq!(etag(&res), "\"3\"");
        // PUT replaces the value.
        let res = n.req(Method::PUT, "/v1/refs/sites/site/nth-014", Some(&t)).header("if-match", "\"3\"")
            .json(&site("NTH-015")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let replaced: Value = res.json().await.unwrap();
        assert_eq!(replaced["value"]["code"], "NTH-015");
        assert_eq!(replaced["version"], 4);

        // History, paged by an opaque cursor, oldest first.
        let page1: Value = n.send(Method::GET, "/v1/refs/sites/site/nth-014/history?limit=3", &t, None).await.json().await.unwrap();
        assert_eq!(page1["items"].as_array().unwrap().len(), 3);
        assert_eq!(page1["items"][0]["version"], 1);
        let cursor = page1["next_cursor"].as_str().unwrap();
        let page2: Value = n.send(Method::GET, &format!("/v1/refs/sites/site/nth-014/history?limit=3&cursor={cursor}"), &t, None).await.json().await.unwrap();
        assert_eq!(page2["items"][0]["version"], 4);
        assert!(page2["next_cursor"].is_null());

        // One version, a diff.
        let v1: Value = n.send(Method::GET, "/v1/refs/sites/site/nth-014/versions/1", &t, None).await.json().await.unwrap();
        assert_eq!(v1["value"]["status"], "in_service");
        let d: Value = n.send(Method::GET, "/v1/refs/sites/site/nth-014/diff?from=1&to=2", &t, None).await.json().await.unwrap();
        assert_eq!(d["patch"], json!([{"op": "replace", "path": "/status", "value": "decommissioned"}]));

        // Kind change, delete, read after delete, restore.
        let res = n.send(Method::PUT, "/v1/refs/sites/site/nth-014/kind", &t, Some(json!({"kind": "telecom.node", "value": {"name": "T", "code": "TEL-001", "status": "planned", "node_id": "TN0001"}}))).await;
        assert_eq!(res.status(), StatusCode::OK, "{:?}", res.text().await);
        let res = n.send(Method::DELETE, "/v1/refs/sites/site/nth-014", &t, None).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(etag(&res), "\"6\"");
        problem(n.send(Method::GET, "/v1/refs/sites/site/nth-014", &t, None).await, StatusCode::NOT_FOUND, "not_found").await;
        // The tombstone version has no value (404); the versions before it stay readable.
        let p = problem(n.send(Method::GET, "/v1/refs/sites/site/nth-014/versions/6", &t, None).await, StatusCode::NOT_FOUND, "not_found").await;
        assert_eq!(p["details"]["deleted"], true);
        assert_eq!(n.send(Method::GET, "/v1/refs/sites/site/nth-014/versions/5", &t, None).await.status(), StatusCode::OK);
        let res = n.send(Method::POST, "/v1/refs/sites/site/nth-014/restore", &t, Some(json!({"version": 4}))).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(etag(&res), "\"7\"");

        // List with a kind filter and paging.
        for i in 0..3 {
            n.send(Method::POST, "/v1/refs/sites/site", &t, Some(json!({"id": format!("s{i}"), "value": site(&format!("SSS-00{i}"))}))).await;
        }
        let l: Value = n.send(Method::GET, "/v1/refs/sites/site?limit=2", &t, None).await.json().await.unwrap();
        assert_eq!(l["items"].as_array().unwrap().len(), 2);
        let next = l["next_cursor"].as_str().unwrap();
        let l2: Value = n.send(Method::GET, &format!("/v1/refs/sites/site?limit=2&cursor={next}"), &t, None).await.json().await.unwrap();
        assert_eq!(l2["items"].as_array().unwrap().len(), 2);
        assert!(l2["next_cursor"].is_null());

        // Resolve a pointer with an attribute path.
        let r: Value = n.send(Method::GET, "/v1/resolve?pointer=bver://sites/site/s1@location.lat", &t, None).await.json().await.unwrap();
        assert_eq!(r["value"], 60.1);
        assert_eq!(r["source"], "local");
        n.running.shutdown().await.unwrap();
    }

    async fn idempotency_keys_over_http(db) {
        let n = start(&db).await;
        let t = n.token(ADMIN);
        let send = |body: Value| n.req(Method::POST, "/v1/refs/sites/site", Some(&t)).header("idempotency-key", "k-1").json(&body).send();
        let a = send(json!({"id": "a", "value": site("AAA-001")})).await.unwrap();
        assert_eq!(a.status(), StatusCode::CREATED);
        let a: Value = a.json().await.unwrap();
        let b = send(json!({"id": "a", "value": site("AAA-001")})).await.unwrap();
        let b: Value = b.json().await.unwrap();
        assert_eq!(a, b, "the repeat returns the first answer");
        problem(send(json!({"id": "a", "value": site("AAA-002")})).await.unwrap(), StatusCode::CONFLICT, "idempotency_mismatch").await;
        let h: Value = n.send(Method::GET, "/v1/refs/sites/site/a/history", &t, None).await.json().await.unwrap();
        assert_eq!(h["items"].as_array().unwrap().len(), 1, "one version only");
        n.running.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ops_route_runs_every_operation_kind_and_reports_errors() {
    let db = support::Db::sqlite();
    let n = start(&db).await;
    let t = n.token(ADMIN);
    let op =
        |name: &str, body: Value| n.send(Method::POST, format!("/v1/ops/{name}"), &t, Some(body));
    let res = op(
        "refs.site.create",
        json!({"id": "x1", "value": site("XXX-001")}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = op(
        "bver.exists",
        json!({"pointer": "bver://sites/site/x1@name"}),
    )
    .await;
    assert_eq!(res.json::<Value>().await.unwrap()["exists"], true);

    // 404 unknown operation, with suggestions.
    let p = problem(
        op("refs.site.crate", json!({})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert!(p["details"]["did_you_mean"].is_array());
    // 422 schema violation, each with its pointer.
    let p = problem(
        op(
            "refs.site.create",
            json!({"value": {"name": "", "code": "bad", "status": "planned"}}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "schema_violation",
    )
    .await;
    let pointers: Vec<&str> = p["details"]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["pointer"].as_str().unwrap())
        .collect();
    assert!(pointers.iter().any(|p| p.contains("code")), "{pointers:?}");
    // 409 already exists.
    problem(
        op(
            "refs.site.create",
            json!({"id": "x1", "value": site("XXX-001")}),
        )
        .await,
        StatusCode::CONFLICT,
        "already_exists",
    )
    .await;
    // 400 malformed JSON, with its position.
    let res = n
        .req(Method::POST, "/v1/ops/refs.site.create", Some(&t))
        .header("content-type", "application/json")
        .body("{\"id\": ")
        .send()
        .await
        .unwrap();
    let p = problem(res, StatusCode::BAD_REQUEST, "malformed_request").await;
    assert!(p["details"]["line"].is_number());
    // 400 a bad pointer.
    problem(
        op("bver.get", json!({"pointer": "bver://sites/site/"})).await,
        StatusCode::BAD_REQUEST,
        "invalid_pointer",
    )
    .await;
    // 404 a missing attribute names the first missing segment.
    let p = problem(
        op(
            "bver.get",
            json!({"pointer": "bver://sites/site/x1@location.owner.name"}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert!(p.to_string().contains("owner"), "{p}");
    n.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_errors_are_problem_json_with_the_right_status() {
    let db = support::Db::sqlite();
    let n = start_with(&db, |c| c.max_body_bytes = 4096).await;
    let t = n.token(ADMIN);
    // 404: unknown route, unknown repo, wrong namespace.
    problem(
        n.send(Method::GET, "/v1/nothing", &t, None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    problem(
        n.send(Method::GET, "/v1/refs/sites/nope/1", &t, None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let p = problem(
        n.send(Method::GET, "/v1/refs/drawings/site/1", &t, None)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(p["details"]["namespace"], "sites");
    // 405.
    let res = n
        .send(Method::DELETE, "/v1/refs/sites/site", &t, None)
        .await;
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    // 413 body too large.
    let big = json!({"id": "big", "value": {"name": "x".repeat(8000), "code": "BIG-001", "status": "planned"}});
    let p = problem(
        n.send(Method::POST, "/v1/refs/sites/site", &t, Some(big))
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
    assert_eq!(p["retryable"], false);
    // 415 an unknown patch media type.
    let res = n
        .req(Method::PATCH, "/v1/refs/sites/site/x", Some(&t))
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    problem(res, StatusCode::UNSUPPORTED_MEDIA_TYPE, "malformed_request").await;
    // 400: unknown query parameter, non-numeric limit, bad If-Match, bad Idempotency-Key.
    problem(
        n.send(Method::GET, "/v1/refs/sites/site?colour=red", &t, None)
            .await,
        StatusCode::BAD_REQUEST,
        "malformed_request",
    )
    .await;
    problem(
        n.send(Method::GET, "/v1/refs/sites/site?limit=many", &t, None)
            .await,
        StatusCode::BAD_REQUEST,
        "malformed_request",
    )
    .await;
    let res = n
        .req(Method::DELETE, "/v1/refs/sites/site/x", Some(&t))
        .header("if-match", "v1")
        .send()
        .await
        .unwrap();
    problem(res, StatusCode::BAD_REQUEST, "malformed_request").await;
    let res = n
        .req(Method::POST, "/v1/refs/sites/site", Some(&t))
        .header("idempotency-key", "a b")
        .json(&json!({"value": site("ABC-001")}))
        .send()
        .await
        .unwrap();
    problem(res, StatusCode::BAD_REQUEST, "malformed_request").await;
    // 422 through the resource route.
    problem(
        n.send(
            Method::POST,
            "/v1/refs/sites/site",
            &t,
            Some(json!({"value": {"name": "n"}})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "schema_violation",
    )
    .await;
    // 503 while draining; health stays up, readiness goes down.
    n.running
        .state()
        .draining
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let p = problem(
        n.send(Method::GET, "/v1/refs/sites/site", &t, None).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    )
    .await;
    assert_eq!(p["retryable"], true);
    assert_eq!(
        n.req(Method::GET, "/healthz", None)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let res = n.req(Method::GET, "/readyz", None).send().await.unwrap();
    assert!(res.headers().contains_key("retry-after"));
    problem(res, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    n.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cel_rule_rejects_a_write_over_rest_with_the_rule_named() {
    let db = support::Db::sqlite();
    let n = start(&db).await;
    let t = n.token(ADMIN);
    // The example's feeder rule: "length_km <= 80.0".
    let feeder = |km: f64| json!({"id": "f1", "value": {"name": "F1", "substation": "bver://sites/site/s1", "voltage_kv": 33, "length_km": km}});
    let p = problem(
        n.send(
            Method::POST,
            "/v1/refs/sites/feeder",
            &t,
            Some(feeder(120.0)),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "rule_violation",
    )
    .await;
    let text = p.to_string();
    assert!(
        text.contains("length_plausible") && text.contains("80 km"),
        "{p}"
    );
    // Nothing was written, and a value within the rule passes.
    problem(
        n.send(Method::GET, "/v1/refs/sites/feeder/f1", &t, None)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(
        n.send(
            Method::POST,
            "/v1/refs/sites/feeder",
            &t,
            Some(feeder(12.5))
        )
        .await
        .status(),
        StatusCode::CREATED
    );
    // A patch that breaks the rule is refused too, and the version stays.
    let res = n
        .req(Method::PATCH, "/v1/refs/sites/feeder/f1", Some(&t))
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"length_km": 95.0}"#)
        .send()
        .await
        .unwrap();
    problem(res, StatusCode::UNPROCESSABLE_ENTITY, "rule_violation").await;
    let cur = n
        .send(Method::GET, "/v1/refs/sites/feeder/f1", &t, None)
        .await;
    assert_eq!(etag(&cur), "\"1\"");
    n.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after() {
    let db = support::Db::sqlite();
    let n = start_with(&db, |c| c.rate_limit = Some(2)).await;
    let t = n.token(ADMIN);
    let mut limited = None;
    for _ in 0..10 {
        let res = n.send(Method::GET, "/v1/refs/sites/site", &t, None).await;
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(res);
            break;
        }
    }
    let res = limited.expect("a burst over 2/s is limited");
    assert!(
        res.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    problem(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Another principal has its own budget.
    let other = n
        .issuer
        .issue(
            "someone-else",
            &ScopeSet::parse("refs:*:*").unwrap(),
            Duration::from_secs(60),
            bver_auth::unix_now(),
        )
        .unwrap()
        .token;
    assert_eq!(
        n.send(Method::GET, "/v1/refs/sites/site", &other, None)
            .await
            .status(),
        StatusCode::OK
    );
    n.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protected_route_denies_without_a_token_and_health_does_not() {
    let db = support::Db::sqlite();
    let n = start(&db).await;
    for (method, path) in [
        (Method::POST, "/v1/ops/refs.site.get"),
        (Method::GET, "/v1/refs/sites/site"),
        (Method::POST, "/v1/refs/sites/site"),
        (Method::GET, "/v1/refs/sites/site/a"),
        (Method::PUT, "/v1/refs/sites/site/a"),
        (Method::PATCH, "/v1/refs/sites/site/a"),
        (Method::DELETE, "/v1/refs/sites/site/a"),
        (Method::GET, "/v1/refs/sites/site/a/history"),
        (Method::GET, "/v1/refs/sites/site/a/versions/1"),
        (Method::GET, "/v1/refs/sites/site/a/diff?from=1"),
        (Method::POST, "/v1/refs/sites/site/a/restore"),
        (Method::PUT, "/v1/refs/sites/site/a/kind"),
        (Method::GET, "/v1/resolve?pointer=bver://sites/site/a"),
        (Method::GET, "/v1/manifest"),
        (Method::GET, "/v1/admin/revocations"),
        (Method::GET, "/openapi.json"),
        (Method::GET, "/metrics"),
    ] {
        let res = n.req(method.clone(), path, None).send().await.unwrap();
        assert!(
            res.headers().contains_key("www-authenticate"),
            "{method} {path}"
        );
        let p = problem(res, StatusCode::UNAUTHORIZED, "unauthenticated").await;
        assert_eq!(p["details"]["reason"], "missing_token", "{method} {path}");
    }
    for path in ["/healthz", "/readyz", "/.well-known/jwks.json"] {
        let res = n.req(Method::GET, path, None).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert!(!res.headers().contains_key("x-bver-insecure"));
    }
    let jwks: Value = n
        .req(Method::GET, "/.well-known/jwks.json", None)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], n.key.key_id().as_str());
    assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
    n.running.shutdown().await.unwrap();
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_token_is_refused_with_its_reason() {
    let db = support::Db::sqlite();
    let n = start(&db).await;
    let now = bver_auth::unix_now();
    let claims = |f: &dyn Fn(&mut Claims)| {
        let mut c = Claims {
            iss: n.running.platform_id.clone(),
            sub: "tester".into(),
            aud: n.running.audience.clone(),
            exp: now + 600,
            nbf: now,
            iat: now,
            jti: format!("j{}", rand::random::<u64>()),
            scope: "refs:*:*".into(),
        };
        f(&mut c);
        c
    };
    let signed = |f: &dyn Fn(&mut Claims)| n.issuer.sign_claims(&claims(f)).unwrap();
    let other_key = PlatformKey::generate().unwrap();
    let other = Issuer::ed25519(&n.running.platform_id, &n.running.audience, &other_key);
    let good = signed(&|_| {});
    // Change one character in the middle of the signature (still valid base64url).
    let tampered = {
        let mut b = good.clone().into_bytes();
        let i = b.len() - 10;
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    let header_none = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let body = b64(serde_json::to_string(&claims(&|_| {})).unwrap().as_bytes());
    // Algorithm confusion: HS256 "signed" with the platform's public key as the secret.
    let confused = {
        let secret = HmacSecret::new(
            n.key.key_id().as_str(),
            n.key.public_key().as_bytes().repeat(2),
        )
        .unwrap();
        Issuer::hs256(&n.running.platform_id, &n.running.audience, &secret)
            .sign_claims(&claims(&|_| {}))
            .unwrap()
    };
    let cases: Vec<(&str, String, StatusCode)> = vec![
        (
            "expired",
            signed(&|c| {
                c.exp = now - 3600;
                c.iat = now - 7200;
                c.nbf = now - 7200;
            }),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "not_yet_valid",
            signed(&|c| {
                c.nbf = now + 3600;
            }),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong_issuer",
            signed(&|c| c.iss = "someone-else".into()),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong_audience",
            signed(&|c| c.aud = "another-platform".into()),
            StatusCode::UNAUTHORIZED,
        ),
        ("bad_signature", tampered, StatusCode::UNAUTHORIZED),
        (
            "alg_none",
            format!("{header_none}.{body}."),
            StatusCode::UNAUTHORIZED,
        ),
        ("algorithm_not_allowed", confused, StatusCode::UNAUTHORIZED),
        (
            "unknown_kid",
            other.sign_claims(&claims(&|_| {})).unwrap(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "malformed_token",
            "not.a-token".into(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "header_too_large",
            format!(
                "{}.{body}.sig",
                b64(format!(r#"{{"alg":"EdDSA","x":"{}"}}"#, "a".repeat(2000)).as_bytes())
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (reason, token, status) in cases {
        let res = n
            .req(Method::GET, "/v1/refs/sites/site", Some(&token))
            .send()
            .await
            .unwrap();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else if reason == "bad_signature" {
            "bad_signature"
        } else {
            "unauthenticated"
        };
        let p = problem(res, status, code).await;
        assert_eq!(p["details"]["reason"], reason, "{p}");
        assert!(
            !p.to_string().contains(&good[good.len() - 20..]),
            "no token echoed"
        );
    }
    // Not a bearer header.
    let res = n
        .req(Method::GET, "/v1/refs/sites/site", None)
        .header("authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    assert_eq!(
        problem(res, StatusCode::UNAUTHORIZED, "unauthenticated").await["details"]["reason"],
        "malformed_token"
    );
    // The good one passes.
    assert_eq!(
        n.req(Method::GET, "/v1/refs/sites/site", Some(&good))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    // Revocation by jti over the admin API: effective at once, persisted.
    let admin = n.token("admin:tokens");
    let jti = {
        let parts: Vec<&str> = good.split('.').collect();
        use base64::Engine;
        let c: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(parts[1])
                .unwrap(),
        )
        .unwrap();
        c["jti"].as_str().unwrap().to_owned()
    };
    problem(
        n.send(
            Method::POST,
            "/v1/admin/revocations",
            &good,
            Some(json!({"jti": jti})),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_eq!(
        n.send(
            Method::POST,
            "/v1/admin/revocations",
            &admin,
            Some(json!({"jti": jti}))
        )
        .await
        .status(),
        StatusCode::OK
    );
    let p = problem(
        n.req(Method::GET, "/v1/refs/sites/site", Some(&good))
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    assert_eq!(p["details"]["reason"], "revoked");
    let persisted = std::fs::read_to_string(n.data_dir.join("revocations.json")).unwrap();
    assert!(
        persisted.contains(&jti),
        "the revocation is persisted: {persisted}"
    );

    // Revocation by subject through the data directory (as `bver token revoke` does): a
    // running node picks it up without a restart.
    let victim = n
        .issuer
        .issue(
            "victim",
            &ScopeSet::parse("refs:*:*").unwrap(),
            Duration::from_secs(600),
            now,
        )
        .unwrap()
        .token;
    assert_eq!(
        n.req(Method::GET, "/v1/refs/sites/site", Some(&victim))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let data = DataDir::open(&n.data_dir).unwrap();
    let r = bver_auth::Revocations::new();
    r.restore(data.revocations().unwrap());
    r.revoke_issued_before("victim", bver_auth::unix_now() + 1);
    data.write_revocations(&r).unwrap();
    let mut refused = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if n.req(Method::GET, "/v1/refs/sites/site", Some(&victim))
            .send()
            .await
            .unwrap()
            .status()
            == StatusCode::UNAUTHORIZED
        {
            refused = true;
            break;
        }
    }
    assert!(
        refused,
        "a revocation written to the data directory applies without restart"
    );
    n.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_are_enforced_per_operation() {
    let db = support::Db::sqlite();
    let n = start(&db).await;
    let admin = n.token(ADMIN);
    n.send(
        Method::POST,
        "/v1/refs/sites/site",
        &admin,
        Some(json!({"id": "s", "value": site("SSS-001")})),
    )
    .await;
    let reader = n.token("refs:site:read");
    assert_eq!(
        n.send(Method::GET, "/v1/refs/sites/site/s", &reader, None)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        n.send(
            Method::GET,
            "/v1/resolve?pointer=bver://sites/site/s@name",
            &reader,
            None
        )
        .await
        .status(),
        StatusCode::OK
    );
    let p = problem(
        n.send(
            Method::POST,
            "/v1/refs/sites/site",
            &reader,
            Some(json!({"value": site("SSS-002")})),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_eq!(p["details"]["missing_scope"], "refs:site:create");
    problem(
        n.send(
            Method::POST,
            "/v1/ops/refs.site.patch",
            &reader,
            Some(json!({"id": "s", "merge": {"status": "planned"}})),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    // Reading another repo needs its own scope.
    problem(
        n.send(Method::GET, "/v1/refs/sites/feeder", &reader, None)
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    // Deleting a site needs `grid:admin` too (the domain's policy).
    let deleter = n.token("refs:site:delete");
    let p = problem(
        n.send(Method::DELETE, "/v1/refs/sites/site/s", &deleter, None)
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_eq!(p["details"]["missing_scope"], "grid:admin");
    // Metrics and revocations need their scopes.
    problem(
        n.send(Method::GET, "/metrics", &reader, None).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    problem(
        n.send(Method::GET, "/v1/admin/revocations", &reader, None)
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    n.running.shutdown().await.unwrap();
}

/// Resolve every `$ref` of the document; return the unresolved ones.
fn dangling_refs(doc: &Value) -> Vec<String> {
    fn walk(v: &Value, doc: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(r)) = o.get("$ref")
                    && let Some(ptr) = r.strip_prefix('#')
                    && doc.pointer(ptr).is_none()
                {
                    out.push(r.clone());
                }
                o.values().for_each(|c| walk(c, doc, out));
            }
            Value::Array(a) => a.iter().for_each(|c| walk(c, doc, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(doc, doc, &mut out);
    out
}

/// Validate `instance` against the schema at `pointer` inside the OpenAPI document.
fn conforms(doc: &Value, schema: &Value, instance: &Value) {
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    let v = jsonschema::draft202012::new(&root).expect("the schema compiles");
    let errors: Vec<String> = v
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{instance} does not match the document: {errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_complete_and_describes_real_responses() {
    let db = support::Db::sqlite();
    let n = start(&db).await;
    let t = n.token(ADMIN);
    let doc: Value = n
        .send(Method::GET, "/openapi.json", &t, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(dangling_refs(&doc), Vec::<String>::new());
    // Every operation of the registry has its path, with its scopes.
    let broker_ops = n.running.state().broker.domain().operations();
    for op in broker_ops {
        let path = &doc["paths"][format!("/v1/ops/{}", op.name)]["post"];
        assert!(path.is_object(), "{} is missing", op.name);
        assert_eq!(path["security"][0]["bearer"], json!(op.scopes));
    }
    // Operation ids are unique.
    let mut ids = std::collections::HashSet::new();
    for (_, item) in doc["paths"].as_object().unwrap() {
        for (_, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap().to_owned();
            assert!(ids.insert(id.clone()), "duplicate operationId {id}");
        }
    }
    // Real responses validate against the documented schemas.
    let created: Value = n
        .send(
            Method::POST,
            "/v1/refs/sites/site",
            &t,
            Some(json!({"id": "o1", "kind": "power", "value": site("OOO-001")})),
        )
        .await
        .json()
        .await
        .unwrap();
    let item = "/v1/refs/sites/site/{id}";
    conforms(
        &doc,
        &doc["paths"]["/v1/refs/sites/site"]["post"]["responses"]["201"]["content"]["application/json"]
            ["schema"],
        &created,
    );
    let got: Value = n
        .send(Method::GET, "/v1/refs/sites/site/o1", &t, None)
        .await
        .json()
        .await
        .unwrap();
    conforms(
        &doc,
        &doc["paths"][item]["get"]["responses"]["200"]["content"]["application/json"]["schema"],
        &got,
    );
    let list: Value = n
        .send(Method::GET, "/v1/refs/sites/site", &t, None)
        .await
        .json()
        .await
        .unwrap();
    conforms(
        &doc,
        &doc["paths"]["/v1/refs/sites/site"]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"],
        &list,
    );
    let hist: Value = n
        .send(Method::GET, "/v1/refs/sites/site/o1/history", &t, None)
        .await
        .json()
        .await
        .unwrap();
    conforms(
        &doc,
        &doc["paths"][format!("{item}/history")]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"],
        &hist,
    );
    let resolved: Value = n
        .send(
            Method::GET,
            "/v1/resolve?pointer=bver://sites/site/o1@code",
            &t,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    conforms(
        &doc,
        &doc["paths"]["/v1/resolve"]["get"]["responses"]["200"]["content"]["application/json"]["schema"],
        &resolved,
    );
    let err: Value = n
        .send(Method::GET, "/v1/refs/sites/site/none", &t, None)
        .await
        .json()
        .await
        .unwrap();
    conforms(&doc, &json!({"$ref": "#/components/schemas/Problem"}), &err);
    // Request bodies the server accepts validate against the documented request schemas.
    conforms(
        &doc,
        &doc["paths"]["/v1/refs/sites/site"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"],
        &json!({"id": "o1", "kind": "power", "value": site("OOO-001")}),
    );
    // The manifest route.
    let m: Value = n
        .send(Method::GET, "/v1/manifest", &t, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(m["platform"], n.running.platform_id);
    assert!(m["manifests"].as_array().unwrap().len() >= 2);
    n.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_request_ids_and_dev_mode() {
    let db = support::Db::sqlite();
    let n = start(&db).await;
    let t = n.token(ADMIN);
    let res = n
        .req(Method::GET, "/v1/refs/sites/site/zz", Some(&t))
        .header("x-request-id", "my-req-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "my-req-1");
    let minted = n.send(Method::GET, "/v1/refs/sites/site", &t, None).await;
    assert!(!minted.headers()["x-request-id"].is_empty());
    let text = n
        .send(Method::GET, "/metrics", &t, None)
        .await
        .text()
        .await
        .unwrap();
    assert!(text.contains(r#"bver_http_requests_total{method="GET",route="/v1/refs/{namespace}/{repo}/{id}",status="404"} 1"#), "{text}");
    assert!(
        text.contains(r#"bver_operations_total{operation="refs.site.get",outcome="not_found"} 1"#),
        "{text}"
    );
    assert!(text.contains("bver_http_request_duration_seconds_bucket"));
    n.running.shutdown().await.unwrap();

    // Dev mode: no token needed, and every response says so.
    let db = support::Db::sqlite();
    let n = start_with(&db, |c| c.insecure_dev = true).await;
    let res = n
        .req(Method::GET, "/v1/refs/sites/site", None)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["x-bver-insecure"]
            .to_str()
            .unwrap()
            .contains("DISABLED")
    );
    assert!(
        n.req(Method::GET, "/healthz", None)
            .send()
            .await
            .unwrap()
            .headers()
            .contains_key("x-bver-insecure")
    );
    // A bad token is still refused in dev mode.
    assert_eq!(
        n.req(Method::GET, "/v1/refs/sites/site", Some("x.y.z"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    n.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_shutdown_finishes_in_flight_writes_and_loses_none() {
    let db = support::Db::sqlite();
    let n = start(&db).await;
    let t = n.token(ADMIN);
    n.send(
        Method::POST,
        "/v1/refs/sites/site",
        &t,
        Some(json!({"id": "g", "value": site("GGG-001")})),
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let req = n
            .req(Method::PATCH, "/v1/refs/sites/site/g", Some(&t))
            .header("content-type", "application/merge-patch+json")
            .body(format!(r#"{{"tags": ["t{i}"]}}"#));
        tasks.push(tokio::spawn(
            async move { req.send().await.map(|r| r.status()) },
        ));
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let data = db.sqlite_path().unwrap();
    n.running.shutdown().await.unwrap();
    let mut ok = 0u64;
    for task in tasks {
        match task.await.unwrap() {
            Ok(s) if s == StatusCode::OK => ok += 1,
            Ok(s) => assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "only 200 or 503"),
            Err(_) => {} // the connection was refused after the listener closed
        }
    }
    // Every acknowledged patch is a stored version.
    let store = bver_node::store::Store::open_sqlite(&data, Default::default())
        .await
        .unwrap();
    let current = store
        .get(&bver_node::store::RefKey::new("sites", "site", "g"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(current.version, 1 + ok, "{ok} acknowledged patches");
}

#[test]
fn the_binary_serves_prints_its_endpoints_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bver"))
        .args(["serve", "--domain"])
        .arg(domain_dir())
        .arg("--data")
        .arg(data.path())
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    while let Some(Ok(line)) = lines.next() {
        let done = line.contains("bver token issue");
        printed.push(line);
        if done {
            break;
        }
    }
    let text = printed.join("\n");
    for needle in [
        "REST",
        "MCP",
        "EAGER",
        "/openapi.json",
        "first start",
        "sqlite",
    ] {
        assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
    }
    let rest = printed.iter().find(|l| l.contains("REST")).unwrap();
    let base = rest
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .trim_end_matches("/v1")
        .to_owned();

    // The printed command issues a token that the node accepts.
    let token = Command::new(env!("CARGO_BIN_EXE_bver"))
        .args([
            "token",
            "issue",
            "--sub",
            "admin",
            "--scope",
            "refs:site:read",
            "--ttl",
            "5m",
            "--data",
        ])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(token.status.success());
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async {
        Client::new()
            .get(format!("{base}/v1/refs/sites/site"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, StatusCode::OK);
    let status = rt.block_on(async {
        Client::new()
            .get(format!("{base}/v1/refs/sites/site"))
            .bearer_auth(format!("{token}x"))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // SIGTERM: a clean exit.
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    // The key is private to its owner.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.path().join("keys/platform.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0);
}
