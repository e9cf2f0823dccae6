//! Federation between separate `bver serve` processes, each with its own data directory and
//! SQLite database, over real QUIC on loopback: subscribe and receive (a mutation on `sites`
//! becomes a local trigger event on `ops`), replay from a cursor, restarts of the subscriber
//! (SIGKILL) and of the publisher (SIGTERM) mid-stream with nothing lost, nothing applied
//! twice and order kept, remote resolution with and without scope, an unknown peer refused,
//! a link cut with network namespaces (root only; skipped with a message otherwise), two
//! processes of one platform on one PostgreSQL database handing the subscription lease over,
//! and a live key rotation of the publisher.
//!
//! The payloads check themselves: reference `sN` is the N-th mutation, so its channel event
//! has sequence number 2N at the publisher (each mutation also emits its built-in event), and
//! the subscriber's local events must carry exactly 2, 4, ..., 2N in that order.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bver_node::store::{Store, StoreOptions};
use serde_json::{Value, json};

mod support;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_bver")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/federation")
        .join(name)
}

fn free_udp_port(ip: &str) -> u16 {
    UdpSocket::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Run a `bver` command and return its stdout (panics with stderr on failure).
fn bver(args: &[&str]) -> String {
    let out = Command::new(bin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "bver {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// One platform: a data directory, a domain, a fixed EAGER address, and its process when
/// running. The process is killed on drop.
struct Node {
    platform: String,
    dir: tempfile::TempDir,
    domain: PathBuf,
    eager: String,
    config: Option<String>,
    netns: Option<String>,
    /// More `bver serve` arguments (`--postgres URL`).
    args: Vec<String>,
    child: Option<Child>,
    http: String,
}

impl Node {
    fn new(platform: &str, domain: &str, ip: &str) -> Self {
        let n = Self {
            platform: platform.to_owned(),
            dir: tempfile::tempdir().unwrap(),
            domain: fixture(domain),
            eager: format!("{ip}:{}", free_udp_port(ip)),
            config: None,
            netns: None,
            args: Vec::new(),
            child: None,
            http: String::new(),
        };
        bver(&["node", "id", "--data", n.data(), "--platform", platform]);
        n
    }

    fn data(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    /// Another process of this platform (the same identity, keys, peers, configuration and
    /// database arguments) with its own data directory and EAGER port, as a second machine
    /// of the platform would have.
    fn replica(&self) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for rel in [
            "node.json",
            "keys/platform.key",
            "keys/retired.json",
            "peers.json",
            "revocations.json",
        ] {
            let from = self.dir.path().join(rel);
            if from.exists() {
                let to = dir.path().join(rel);
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                std::fs::copy(&from, &to).unwrap();
            }
        }
        let mut n = Self {
            platform: self.platform.clone(),
            dir,
            domain: self.domain.clone(),
            eager: format!("127.0.0.1:{}", free_udp_port("127.0.0.1")),
            config: None,
            netns: None,
            args: self.args.clone(),
            child: None,
            http: String::new(),
        };
        if let Some(c) = &self.config {
            n.write_config(&std::fs::read_to_string(c).unwrap());
        }
        n
    }

    fn fingerprint(&self) -> String {
        let v: Value =
            serde_json::from_str(&bver(&["node", "id", "--data", self.data(), "--json"])).unwrap();
        v["fingerprint"].as_str().unwrap().to_owned()
    }

    /// Pin `other` as a peer (with its address, namespaces and a grant it issued to us).
    fn add_peer(&self, other: &Node, namespaces: &[&str], grant: Option<&str>) {
        let fp = other.fingerprint();
        let mut args = vec![
            "peer",
            "add",
            "--data",
            self.data(),
            "--id",
            &other.platform,
            "--addr",
            &other.eager,
            "--fingerprint",
            &fp,
        ];
        for ns in namespaces {
            args.extend(["--namespace", ns]);
        }
        if let Some(g) = grant {
            args.extend(["--grant", g]);
        }
        bver(&args);
    }

    /// A grant issued by this platform to `sub`.
    fn grant(&self, sub: &str, channels: &[&str], namespaces: &[&str]) -> String {
        let mut args = vec!["grant", "issue", "--data", self.data(), "--sub", sub];
        for c in channels {
            args.extend(["--channel", c]);
        }
        for ns in namespaces {
            args.extend(["--namespace", ns]);
        }
        bver(&args)
    }

    fn write_config(&mut self, text: &str) {
        let path = self.dir.path().join("bver.toml");
        std::fs::write(&path, text).unwrap();
        self.config = Some(path.to_str().unwrap().to_owned());
    }

    fn start(&mut self) {
        assert!(self.child.is_none());
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, bin()]);
                c
            }
            None => Command::new(bin()),
        };
        cmd.args(["serve", "--domain"])
            .arg(&self.domain)
            .args(["--data", self.data(), "--listen", "127.0.0.1:0"])
            .args(["--eager-listen", &self.eager]);
        if let Some(c) = &self.config {
            cmd.args(["--config", c]);
        }
        cmd.args(&self.args);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("serve.log"))
            .unwrap();
        let mut child = cmd
            .env("BVER_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut http = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if line.trim_start().starts_with("REST") {
                http = line.split_whitespace().nth(1).map(str::to_owned);
            }
            if line.contains("bver token issue") {
                break;
            }
        }
        // Keep draining stdout so the node never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        self.http = http
            .unwrap_or_else(|| panic!("{} did not start:\n{}", self.platform, self.log()))
            .trim_end_matches("/v1")
            .to_owned();
        self.child = Some(child);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: a graceful stop (EAGER connections are closed, peers notice).
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if c.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The line of metric family `name` in the node's `/metrics` (the first series), and
    /// the whole text for failure messages.
    async fn metric(&self, c: &reqwest::Client, name: &str) -> (String, String) {
        let metrics = c
            .get(format!("{}/metrics", self.http))
            .bearer_auth(self.token("metrics:read"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{")))
            .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"))
            .to_owned();
        (line, metrics)
    }

    fn token(&self, scopes: &str) -> String {
        bver(&[
            "token",
            "issue",
            "--data",
            self.data(),
            "--sub",
            "admin",
            "--scope",
            scopes,
        ])
    }

    /// The status file (`DATA/federation.json`), once written.
    fn status(&self) -> Option<Value> {
        let text = std::fs::read_to_string(self.dir.path().join("federation.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Wait until the status file says whether this process runs the subscriptions.
    fn wait_runner(&self, runner: bool, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let st = self.status();
            if let Some(st) = &st
                && st["lease"]["runner"] == runner
                && !st["lease"]["current_holder"].is_null()
                && st["pid"] == self.child.as_ref().map(|c| c.id()).unwrap_or(0)
            {
                return st.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{}: the lease state never had runner = {runner}: {st:?}\nlog:\n{}",
                self.platform,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The live state of subscription `name` (from the status file).
    fn subscription(&self, name: &str) -> Option<Value> {
        let v = self.status()?;
        v["subscriptions"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
    }

    /// Wait until subscription `name` applied up to `seq`.
    fn wait_seq(&self, name: &str, seq: u64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let st = self.subscription(name);
            if st.as_ref().and_then(|s| s["seq"].as_u64()).unwrap_or(0) >= seq {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: subscription `{name}` did not reach seq {seq}: {st:?}\nlog:\n{}",
                self.platform,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn sqlite(&self) -> PathBuf {
        self.dir.path().join("bver.db")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn create_site(c: &reqwest::Client, node: &Node, token: &str, n: u64) {
    let res = c
        .post(format!("{}/v1/refs/sites/site", node.http))
        .bearer_auth(token)
        .json(&json!({ "id": format!("s{n}"), "value": { "name": format!("site {n}"), "n": n } }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
}

/// The origin sequence numbers of the local events `emit` appended on a stopped node, in
/// local outbox order, with the pointer ids.
async fn received(node: &Node, emit: &str) -> Vec<(u64, String)> {
    let store = Store::open_sqlite(&node.sqlite(), StoreOptions::default())
        .await
        .unwrap();
    received_in(&store, emit).await
}

/// [`received`] from any store.
async fn received_in(store: &Store, emit: &str) -> Vec<(u64, String)> {
    let events = store.events_after(0, 1_000_000).await.unwrap();
    let mut local = 0;
    let mut out = Vec::new();
    for e in events {
        local += 1;
        assert_eq!(e.seq, local, "the local outbox stays dense");
        if e.trigger == emit {
            let origin: u64 = e
                .provenance
                .request_id
                .rsplit('/')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            out.push((origin, e.key.id.clone()));
        }
    }
    out
}

const OPS_SUBSCRIBES: &str = r#"
[[subscriptions]]
peer = "sites"
channel = "site_changes"
start = "oldest"
emit = "remote.site_changed"
cache = true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_replay_and_restarts_lose_nothing_and_apply_once_in_order() {
    let mut sites = Node::new("sites", "sites", "127.0.0.1");
    let mut ops = Node::new("ops", "ops", "127.0.0.1");
    sites.add_peer(&ops, &[], None);
    let grant = sites.grant("ops", &["site_changes"], &["sites"]);
    ops.add_peer(&sites, &["sites"], Some(&grant));
    ops.write_config(OPS_SUBSCRIBES);

    sites.start();
    let token = sites.token("refs:*:*");
    let c = client();
    // Before the subscriber exists: it replays these from the oldest event.
    for n in 1..=20 {
        create_site(&c, &sites, &token, n).await;
    }
    ops.start();
    ops.wait_seq("sites.site_changes", 40, Duration::from_secs(15));

    // The cache answers remote resolution (source `cache`).
    let ops_token = ops.token("refs:*:* admin");
    let r: Value = c
        .get(format!(
            "{}/v1/resolve?pointer=bver://sites/site/s7@name",
            ops.http
        ))
        .bearer_auth(&ops_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["value"], "site 7", "{r}");
    assert_eq!(r["source"], "cache", "{r}");

    // Subscriber killed mid-stream (SIGKILL), restarted: resumes from its persisted cursor.
    let writer = {
        let c = c.clone();
        let token = token.clone();
        let http = sites.http.clone();
        tokio::spawn(async move {
            for n in 21..=120u64 {
                let res = c
                    .post(format!("{http}/v1/refs/sites/site"))
                    .bearer_auth(&token)
                    .json(&json!({ "id": format!("s{n}"), "value": { "name": format!("site {n}"), "n": n } }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 201);
            }
        })
    };
    ops.wait_seq("sites.site_changes", 80, Duration::from_secs(15));
    ops.kill();
    ops.start();
    writer.await.unwrap();
    ops.wait_seq("sites.site_changes", 240, Duration::from_secs(20));

    // Publisher restarted mid-stream (graceful): the subscriber reconnects and resumes.
    sites.stop();
    sites.start();
    for n in 121..=150 {
        create_site(&c, &sites, &token, n).await;
    }
    ops.wait_seq("sites.site_changes", 300, Duration::from_secs(20));
    let state = ops.subscription("sites.site_changes").unwrap();
    assert_eq!(state["connected"], true, "{state}");
    let listed: Value =
        serde_json::from_str(&bver(&["subscriptions", "--data", ops.data(), "--json"])).unwrap();
    assert_eq!(listed["running"], true);
    let (line, metrics) = ops.metric(&c, "bver_eager_subscription_seq").await;
    assert!(line.ends_with(" 300"), "{line}");
    assert!(metrics.contains("bver_eager_subscription_connected{"));

    ops.stop();
    sites.stop();
    let got = received(&ops, "remote.site_changed").await;
    let want: Vec<(u64, String)> = (1..=150u64).map(|n| (2 * n, format!("s{n}"))).collect();
    assert_eq!(got.len(), want.len(), "nothing lost, nothing applied twice");
    assert_eq!(got, want, "in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_resolve_with_and_without_scope_and_an_unknown_peer_is_refused() {
    let mut sites = Node::new("sites", "sites", "127.0.0.1");
    let mut ops = Node::new("ops", "ops", "127.0.0.1");
    let mut audit = Node::new("audit", "ops", "127.0.0.1");
    let mut rogue = Node::new("rogue", "ops", "127.0.0.1");
    sites.add_peer(&ops, &[], None);
    sites.add_peer(&audit, &[], None);
    // `ops` may resolve `sites`; `audit` holds a grant for the channel only.
    let g_ops = sites.grant("ops", &[], &["sites"]);
    let g_audit = sites.grant("audit", &["site_changes"], &[]);
    ops.add_peer(&sites, &["sites"], Some(&g_ops));
    audit.add_peer(&sites, &["sites"], Some(&g_audit));
    // `rogue` pins `sites`, but `sites` does not know it; its grant is forged by itself.
    let g_rogue = rogue.grant("rogue", &[], &["sites"]);
    rogue.add_peer(&sites, &["sites"], Some(&g_rogue));
    // `ops` also serves the namespace `drawings` from a directory of documents.
    let drawings = ops.dir.path().join("drawings");
    std::fs::create_dir_all(drawings.join("sheet")).unwrap();
    std::fs::write(drawings.join("sheet/d1.json"), r#"{"title":"single line"}"#).unwrap();
    ops.write_config(&format!(
        "[[adapters]]\nnamespace = \"drawings\"\nfiles = {:?}\n",
        drawings.to_str().unwrap()
    ));
    for n in [&mut sites, &mut ops, &mut audit, &mut rogue] {
        n.start();
    }
    let c = client();
    let token = sites.token("refs:*:*");
    create_site(&c, &sites, &token, 1).await;

    let resolve = |node: &Node, pointer: &str| {
        let c = c.clone();
        let url = format!("{}/v1/resolve?pointer={pointer}", node.http);
        let token = node.token("refs:*:* admin");
        async move {
            let res = c.get(url).bearer_auth(token).send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = resolve(&ops, "bver://sites/site/s1@n").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["value"], 1);
    assert_eq!(body["version"], 1);
    assert_eq!(body["source"], "peer");
    let (status, body) = resolve(&ops, "bver://sites/site/missing").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );

    let (status, body) = resolve(&ops, "bver://drawings/sheet/d1@title").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["value"].as_str(), body["source"].as_str()),
        (Some("single line"), Some("files"))
    );

    // listrefs of the remote namespace, over EAGER.
    let listed: Value = c
        .post(format!("{}/v1/ops/bver.listrefs", ops.http))
        .bearer_auth(ops.token("refs:*:* admin"))
        .json(&json!({ "namespace": "sites" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["items"][0]["pointer"], "bver://sites/site/s1",
        "{listed}"
    );
    // list of one remote repo: by its namespace, over EAGER, as for a local repo.
    let list = |input: Value| {
        c.post(format!("{}/v1/ops/bver.list", ops.http))
            .bearer_auth(ops.token("refs:*:* admin"))
            .json(&input)
            .send()
    };
    let res = list(json!({ "namespace": "sites", "repo": "site" }))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let listed: Value = res.json().await.unwrap();
    assert_eq!(
        listed["items"][0]["pointer"], "bver://sites/site/s1",
        "{listed}"
    );
    assert_eq!(listed["items"][0]["version"], 1, "{listed}");
    // Without the namespace, a repo this platform does not define is not found, with a hint.
    let res = list(json!({ "repo": "site" })).await.unwrap();
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "not_found", "{body}");
    assert!(
        body["details"]["hint"]
            .as_str()
            .unwrap_or_default()
            .contains("namespace"),
        "{body}"
    );

    let (status, body) = resolve(&audit, "bver://sites/site/s1").await;
    assert_eq!(status, 403, "without the resolve scope: {body}");
    assert_eq!(body["code"], "forbidden", "{body}");

    let (status, body) = resolve(&rogue, "bver://sites/site/s1").await;
    assert_ne!(status, 200, "an unknown peer is refused: {body}");
    assert_eq!(body["code"], "peer_unreachable", "{body}");
    assert!(
        sites.log().contains("refused") || sites.log().contains("unknown"),
        "the refusal is logged by the publisher:\n{}",
        sites.log()
    );
    assert!(
        body["value"].is_null(),
        "nothing about the platform is revealed: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_grant_cuts_the_live_stream() {
    let mut sites = Node::new("sites", "sites", "127.0.0.1");
    let mut ops = Node::new("ops", "ops", "127.0.0.1");
    sites.add_peer(&ops, &[], None);
    let grant = sites.grant("ops", &["site_changes"], &[]);
    ops.add_peer(&sites, &[], Some(&grant));
    ops.write_config(OPS_SUBSCRIBES);
    sites.start();
    ops.start();
    let c = client();
    let token = sites.token("refs:*:*");
    create_site(&c, &sites, &token, 1).await;
    ops.wait_seq("sites.site_changes", 2, Duration::from_secs(15));

    bver(&["token", "revoke", "--data", sites.data(), "--sub", "ops"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = ops.subscription("sites.site_changes").unwrap();
        if st["connected"] == false && !st["last_error"].is_null() {
            break;
        }
        assert!(Instant::now() < deadline, "the stream was not cut: {st}");
        std::thread::sleep(Duration::from_millis(50));
    }
    create_site(&c, &sites, &token, 2).await;
    std::thread::sleep(Duration::from_millis(500));
    let st = ops.subscription("sites.site_changes").unwrap();
    assert_eq!(st["seq"], 2, "nothing flows under a revoked grant: {st}");
}

/// Writes `sN` for each `n` of `range` at `node`, in order, in the background.
fn write_sites(
    c: &reqwest::Client,
    node: &Node,
    token: &str,
    range: std::ops::RangeInclusive<u64>,
) -> tokio::task::JoinHandle<()> {
    let (c, token, http) = (c.clone(), token.to_owned(), node.http.clone());
    tokio::spawn(async move {
        for n in range {
            let res = c
                .post(format!("{http}/v1/refs/sites/site"))
                .bearer_auth(&token)
                .json(&json!({ "id": format!("s{n}"), "value": { "name": format!("site {n}"), "n": n } }))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 201);
        }
    })
}

/// Two `bver serve` processes of `ops` on one PostgreSQL schema: only the holder of the
/// subscription lease connects and applies; SIGKILL it and the other takes over within the
/// lease's bound, resuming from the persisted cursor; a graceful stop hands over at once.
/// Every event ends up applied exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_of_a_postgres_platform_runs_the_subscriptions_and_another_takes_over() {
    let Some(db) = support::Db::postgres().await else {
        return;
    };
    let mut sites = Node::new("sites", "sites", "127.0.0.1");
    let mut ops1 = Node::new("ops", "ops", "127.0.0.1");
    ops1.args = db.cli_args();
    sites.add_peer(&ops1, &[], None);
    let grant = sites.grant("ops", &["site_changes"], &[]);
    ops1.add_peer(&sites, &[], Some(&grant));
    ops1.write_config(&format!(
        "subscription_lease_ttl = \"1s\"\n{OPS_SUBSCRIBES}"
    ));
    let mut ops2 = ops1.replica();
    const SUB: &str = "sites.site_changes";

    sites.start();
    let token = sites.token("refs:*:*");
    let c = client();
    for n in 1..=10 {
        create_site(&c, &sites, &token, n).await;
    }
    ops1.start();
    ops1.wait_runner(true, Duration::from_secs(10));
    ops1.wait_seq(SUB, 20, Duration::from_secs(15));
    ops2.start();
    let standby = ops2.wait_runner(false, Duration::from_secs(10));
    let holder1 = ops1.status().unwrap()["lease"]["holder"].clone();
    assert_eq!(standby["lease"]["current_holder"], holder1, "{standby}");

    // Events flow through ops1 only: ops2 neither connects nor applies.
    let writer = write_sites(&c, &sites, &token, 11..=80);
    ops1.wait_seq(SUB, 60, Duration::from_secs(15));
    let st2 = ops2.subscription(SUB).unwrap();
    assert_eq!(
        (
            st2["runner"].clone(),
            st2["connected"].clone(),
            st2["applied"].clone()
        ),
        (json!(false), json!(false), json!(0)),
        "{st2}"
    );
    assert!(
        !ops2.log().contains("subscribed"),
        "the standby never subscribes:\n{}",
        ops2.log()
    );
    let listed: Value =
        serde_json::from_str(&bver(&["subscriptions", "--data", ops2.data(), "--json"])).unwrap();
    assert_eq!(listed["lease"]["runner"], false, "{listed}");
    let table = bver(&["subscriptions", "--data", ops2.data()]);
    assert!(table.contains("standby"), "{table}");

    // The holder is killed: ops2 takes over within the lease's bound (1 s + 1/5 s, with
    // slack for the status file and a busy machine) and resumes from the persisted cursor.
    ops1.kill();
    let killed = Instant::now();
    let took = ops2.wait_runner(true, Duration::from_secs(10));
    let after = killed.elapsed();
    assert!(after < Duration::from_secs(4), "take-over took {after:?}");
    assert!(took["lease"]["generation"].as_u64().unwrap() >= 2, "{took}");
    writer.await.unwrap();
    ops2.wait_seq(SUB, 160, Duration::from_secs(20));
    let st2 = ops2.subscription(SUB).unwrap();
    assert_eq!(st2["connected"], true, "{st2}");

    // Restarted, ops1 stands by; a graceful stop of ops2 releases the lease to it at once.
    ops1.start();
    ops1.wait_runner(false, Duration::from_secs(10));
    let writer = write_sites(&c, &sites, &token, 81..=100);
    ops2.stop();
    ops1.wait_runner(true, Duration::from_secs(3));
    writer.await.unwrap();
    ops1.wait_seq(SUB, 200, Duration::from_secs(20));
    let (line, _) = ops1.metric(&c, "bver_eager_subscription_runner").await;
    assert!(line.ends_with(" 1"), "{line}");

    ops1.stop();
    sites.stop();
    let store = db.open().await;
    let got = received_in(&store, "remote.site_changed").await;
    let want: Vec<(u64, String)> = (1..=100u64).map(|n| (2 * n, format!("s{n}"))).collect();
    assert_eq!(got.len(), want.len(), "nothing lost, nothing applied twice");
    assert_eq!(got, want, "in order");
}

/// `bver key rotate` on the publisher while a subscription is live: the running node picks
/// the new key up without a restart (EAGER certificate, batch signatures, grant verifier), the
/// stream reconnects and loses nothing, and a subscriber restarted afterwards with only the
/// old pin connects (the new key is endorsed by the old one) with a grant signed by the new
/// key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_key_rotation_keeps_the_stream_and_the_old_pin() {
    let mut sites = Node::new("sites", "sites", "127.0.0.1");
    let mut ops = Node::new("ops", "ops", "127.0.0.1");
    sites.add_peer(&ops, &[], None);
    let grant = sites.grant("ops", &["site_changes"], &["sites"]);
    ops.add_peer(&sites, &["sites"], Some(&grant));
    ops.write_config(OPS_SUBSCRIBES);
    let old_fp = sites.fingerprint();
    sites.start();
    ops.start();
    let c = client();
    let token = sites.token("refs:*:*");
    for n in 1..=10 {
        create_site(&c, &sites, &token, n).await;
    }
    ops.wait_seq("sites.site_changes", 20, Duration::from_secs(15));

    // Rotate while events flow.
    let writer = write_sites(&c, &sites, &token, 11..=60);
    ops.wait_seq("sites.site_changes", 30, Duration::from_secs(15));
    bver(&["key", "rotate", "--data", sites.data(), "--keep", "1h"]);
    let new_fp = sites.fingerprint();
    assert_ne!(new_fp, old_fp);
    let deadline = Instant::now() + Duration::from_secs(5);
    while sites.status().map(|s| s["fingerprint"].clone()) != Some(json!(new_fp)) {
        assert!(
            Instant::now() < deadline,
            "the running node did not take the new key:\n{}",
            sites.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    writer.await.unwrap();
    ops.wait_seq("sites.site_changes", 120, Duration::from_secs(20));
    let st = ops.subscription("sites.site_changes").unwrap();
    assert_eq!(st["rejected"], 0, "every batch verified: {st}");
    assert!(
        sites.log().contains("EAGER: platform key rotated"),
        "{}",
        sites.log()
    );

    // A grant signed by the new key; ops keeps pinning only the old fingerprint.
    let grant2 = sites.grant("ops", &["site_changes"], &["sites"]);
    ops.kill();
    bver(&[
        "peer",
        "add",
        "--data",
        ops.data(),
        "--id",
        "sites",
        "--addr",
        &sites.eager,
        "--fingerprint",
        &old_fp,
        "--namespace",
        "sites",
        "--grant",
        &grant2,
    ]);
    ops.start();
    for n in 61..=70 {
        create_site(&c, &sites, &token, n).await;
    }
    ops.wait_seq("sites.site_changes", 140, Duration::from_secs(20));
    let st = ops.subscription("sites.site_changes").unwrap();
    assert_eq!(
        (st["connected"].clone(), st["rejected"].clone()),
        (json!(true), json!(0)),
        "{st}"
    );
    // Remote resolution on the same connection: answers signed by the new key verify.
    let res = c
        .get(format!(
            "{}/v1/resolve?pointer=bver://sites/site/missing",
            ops.http
        ))
        .bearer_auth(ops.token("refs:*:* admin"))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let peers = std::fs::read_to_string(ops.dir.path().join("peers.json")).unwrap();
    assert!(
        peers.contains(&old_fp) && !peers.contains(&new_fp),
        "{peers}"
    );

    ops.stop();
    sites.stop();
    let got = received(&ops, "remote.site_changed").await;
    let want: Vec<(u64, String)> = (1..=70u64).map(|n| (2 * n, format!("s{n}"))).collect();
    assert_eq!(got, want, "nothing lost, nothing applied twice, in order");
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A network namespace with a veth pair to the root namespace, removed on drop.
struct Netns {
    name: String,
    host_dev: String,
}

impl Netns {
    fn create(tag: u32, host_ip: &str, ns_ip: &str) -> Option<Self> {
        let name = format!("bver-t{tag}");
        let host_dev = format!("bvh{tag}");
        let ns_dev = format!("bvn{tag}");
        let me = Self {
            name: name.clone(),
            host_dev: host_dev.clone(),
        };
        let ok = ip(&["netns", "add", &name])
            && ip(&[
                "link", "add", &host_dev, "type", "veth", "peer", "name", &ns_dev,
            ])
            && ip(&["link", "set", &ns_dev, "netns", &name])
            && ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_dev])
            && ip(&["link", "set", &host_dev, "up"])
            && ip(&[
                "netns",
                "exec",
                &name,
                "ip",
                "addr",
                "add",
                &format!("{ns_ip}/30"),
                "dev",
                &ns_dev,
            ])
            && ip(&["netns", "exec", &name, "ip", "link", "set", &ns_dev, "up"])
            && ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        ok.then_some(me)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host_dev]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_cut_and_restored_resumes_without_loss() {
    if !is_root() {
        eprintln!(
            "SKIPPED a_link_cut_and_restored_resumes_without_loss: network namespaces need root"
        );
        return;
    }
    let tag = std::process::id() % 100_000;
    let octet = 1 + (tag % 60) * 4;
    let host_ip = format!("10.231.{}.{}", tag % 250, octet);
    let ns_ip = format!("10.231.{}.{}", tag % 250, octet + 1);
    let Some(netns) = Netns::create(tag, &host_ip, &ns_ip) else {
        panic!("could not set up a network namespace (ip netns / veth) as root");
    };
    let mut sites = Node::new("sites", "sites", &host_ip);
    let mut ops = Node::new("ops", "ops", "127.0.0.1");
    ops.eager = format!("{ns_ip}:{}", free_udp_port("127.0.0.1"));
    ops.netns = Some(netns.name.clone());
    sites.add_peer(&ops, &[], None);
    let grant = sites.grant("ops", &["site_changes"], &[]);
    ops.add_peer(&sites, &[], Some(&grant));
    ops.write_config(OPS_SUBSCRIBES);
    sites.start();
    ops.start();
    let c = client();
    let token = sites.token("refs:*:*");
    for n in 1..=10 {
        create_site(&c, &sites, &token, n).await;
    }
    ops.wait_seq("sites.site_changes", 20, Duration::from_secs(15));

    // Cut the link, write while it is down, restore it.
    assert!(ip(&["link", "set", &netns.host_dev, "down"]));
    for n in 11..=40 {
        create_site(&c, &sites, &token, n).await;
    }
    std::thread::sleep(Duration::from_secs(2));
    let during = ops.subscription("sites.site_changes").unwrap()["seq"]
        .as_u64()
        .unwrap();
    assert!(during <= 20, "nothing crosses a cut link (seq {during})");
    assert!(ip(&["link", "set", &netns.host_dev, "up"]));
    ops.wait_seq("sites.site_changes", 80, Duration::from_secs(30));

    ops.stop();
    sites.stop();
    let got = received(&ops, "remote.site_changed").await;
    let want: Vec<(u64, String)> = (1..=40u64).map(|n| (2 * n, format!("s{n}"))).collect();
    assert_eq!(got, want);
    drop(netns);
}

/// `bver grant issue --json` and `bver token issue --json` share one signer: each prints its
/// own field with the claims, a grant's audience and issuer are the platform and its scopes
/// are the channels and namespaces asked for.
#[test]
fn grant_and_token_issue_print_their_json() {
    let node = Node::new("sites", "sites", "127.0.0.1");
    let grant: Value = serde_json::from_str(&bver(&[
        "grant",
        "issue",
        "--data",
        node.data(),
        "--sub",
        "ops",
        "--channel",
        "site-changes",
        "--namespace",
        "sites",
        "--ttl",
        "1h",
        "--json",
    ]))
    .unwrap();
    assert!(
        grant["grant"]
            .as_str()
            .is_some_and(|g| g.split('.').count() == 3),
        "{grant}"
    );
    let claims = &grant["claims"];
    assert_eq!(
        (claims["iss"].as_str(), claims["aud"].as_str()),
        (Some("sites"), Some("sites")),
        "{grant}"
    );
    assert_eq!(claims["sub"], "ops", "{grant}");
    let scope = claims["scope"]
        .as_str()
        .or(claims["scopes"].as_str())
        .unwrap_or_default();
    assert!(
        scope.contains("eager:subscribe:site-changes") && scope.contains("eager:resolve:sites"),
        "{grant}"
    );
    let exp = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert_eq!(exp, 3600, "{grant}");

    let token: Value = serde_json::from_str(&bver(&[
        "token",
        "issue",
        "--data",
        node.data(),
        "--sub",
        "admin",
        "--scope",
        "metrics:read",
        "--json",
    ]))
    .unwrap();
    assert!(token["token"].as_str().is_some(), "{token}");
    assert!(token.get("grant").is_none(), "{token}");
    assert_eq!(token["claims"]["sub"], "admin", "{token}");

    let out = Command::new(bin())
        .args([
            "grant",
            "issue",
            "--data",
            node.data(),
            "--sub",
            "ops",
            "--channel",
            "c",
            "--ttl",
            "soon",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ttl `soon`"));
}
