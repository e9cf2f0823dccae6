//! Real QUIC on loopback: two (or three) endpoints with their own keys, pinned to each
//! other, an in-memory outbox and reference store defined here. Each test binds port 0
//! and finishes in well under a second or two.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bver_auth::{Issuer, KeySet, PlatformKey, Revocations, ScopeSet, Verifier, VerifierConfig};
use bver_contracts::{BverError, ChangeType, ErrorCode, EventEnvelope, RefPtr};
use bver_eager::proto::subscriber::{SubEvent, SubscriptionSpec};
use bver_eager::transport::{EagerConfig, EagerEndpoint, PeerConfig, Services};
use bver_eager::wire::Cursor;
use bver_eager::{ChannelInfo, EventSource, OutboxPosition, PointerSource, ReadBatch};
use bver_resolver::{BoxFuture, Fetched, Listed, Page, Resolver, Source};
use tokio::sync::{mpsc, watch};

/// An in-memory outbox: every event belongs to the channel `site_changes`.
struct MemOutbox {
    events: Mutex<Vec<EventEnvelope>>,
    head: watch::Sender<u64>,
    /// The highest sequence number handed out by `read`.
    read_to: AtomicU64,
    value_len: usize,
}

impl MemOutbox {
    fn new(n: u64, value_len: usize) -> Arc<Self> {
        let o = Arc::new(Self {
            events: Mutex::new(Vec::new()),
            head: watch::channel(0).0,
            read_to: AtomicU64::new(0),
            value_len,
        });
        o.append(n);
        o
    }

    fn append(&self, n: u64) {
        let mut events = self.events.lock().unwrap();
        let start = events.len() as u64 + 1;
        for seq in start..start + n {
            events.push(EventEnvelope {
                origin: "sites".into(),
                epoch: "e1".into(),
                seq,
                trigger: "refs.site.updated".into(),
                pointer: RefPtr::parse(&format!("bver://sites/site/{seq}")).unwrap(),
                version: 1,
                kind: None,
                change: Some(ChangeType::Updated),
                diff: Default::default(),
                value: Some(serde_json::json!({ "seq": seq, "pad": "x".repeat(self.value_len) })),
                time: 1_700_000_000_000,
                signature: None,
            });
        }
        self.head.send_replace(events.len() as u64);
    }
}

impl EventSource for MemOutbox {
    fn channel(&self, channel: &str) -> Option<ChannelInfo> {
        (channel == "site_changes").then(ChannelInfo::default)
    }

    fn position(&self) -> BoxFuture<'_, Result<OutboxPosition, BverError>> {
        Box::pin(async move {
            let head = self.events.lock().unwrap().len() as u64;
            Ok(OutboxPosition {
                epoch: "e1".into(),
                head,
                oldest: 1,
            })
        })
    }

    fn read<'a>(
        &'a self,
        _channel: &'a str,
        from_seq: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<ReadBatch, BverError>> {
        Box::pin(async move {
            let events = self.events.lock().unwrap();
            let from = from_seq.max(1) as usize - 1;
            let taken: Vec<_> = events.iter().skip(from).take(limit).cloned().collect();
            let scanned_to = taken
                .last()
                .map_or(events.len() as u64, |e| e.seq)
                .max(from_seq - 1);
            self.read_to.fetch_max(scanned_to, Ordering::Relaxed);
            Ok(ReadBatch {
                events: taken,
                scanned_to,
            })
        })
    }

    fn watch_head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }
}

/// References of `sites`: `bver://sites/site/N` exists for N < 100.
struct MemRefs;

impl PointerSource for MemRefs {
    fn fetch<'a>(
        &'a self,
        _peer: &'a str,
        pointer: &'a RefPtr,
    ) -> BoxFuture<'a, Result<Option<Fetched>, BverError>> {
        Box::pin(async move {
            let n: u64 = pointer.id().parse().unwrap_or(u64::MAX);
            Ok((n < 100).then(|| Fetched {
                version: n + 1,
                kind: Some("power.substation".into()),
                value: serde_json::json!({ "meta": { "name": format!("site {n}") } }),
                updated_at: 1_700_000_000_000,
                source: Source::Local,
            }))
        })
    }

    /// Three sites per page of `limit`, ids 0..5; `line` is empty.
    fn list<'a>(
        &'a self,
        _peer: &'a str,
        namespace: &'a str,
        repo: Option<&'a str>,
        _kind: Option<&'a str>,
        cursor: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Page<Listed>, BverError>> {
        Box::pin(async move {
            let repo = repo.unwrap_or("site");
            let start: u64 = cursor.and_then(|c| c.parse().ok()).unwrap_or(0);
            let total = if repo == "site" { 5 } else { 0 };
            let end = (start + u64::from(limit)).min(total);
            Ok(Page {
                items: (start..end)
                    .map(|n| Listed {
                        pointer: RefPtr::parse(&format!("bver://{namespace}/{repo}/{n}")).unwrap(),
                        version: n + 1,
                        kind: None,
                        updated_at: 0,
                    })
                    .collect(),
                next: (end < total).then(|| end.to_string()),
            })
        })
    }
}

struct Platform {
    id: &'static str,
    key: Arc<KeySet>,
    issuer: Issuer,
    verifier: Arc<Verifier>,
}

fn platform(id: &'static str, seed: u8) -> Platform {
    let key = PlatformKey::from_seed(&[seed; 32]).unwrap();
    let issuer = Issuer::ed25519(id, id, &key);
    let keys = KeySet::new(key);
    let verifier = Arc::new(Verifier::new(
        VerifierConfig::new(id, id),
        &keys,
        Arc::new(Revocations::new()),
    ));
    Platform {
        id,
        key: Arc::new(keys),
        issuer,
        verifier,
    }
}

impl Platform {
    fn fingerprint(&self) -> [u8; 32] {
        self.key.current().public_key().fingerprint()
    }

    fn grant(&self, subject: &str, scopes: &str) -> String {
        self.issuer
            .issue(
                subject,
                &ScopeSet::parse(scopes).unwrap(),
                Duration::from_secs(600),
                bver_auth::unix_now(),
            )
            .unwrap()
            .token
    }

    fn config(&self, listen: SocketAddr, peers: Vec<PeerConfig>) -> EagerConfig {
        let mut c = EagerConfig::new(self.id, Arc::clone(&self.key), listen);
        c.peers = peers;
        c.reconnect_base = Duration::from_millis(20);
        c.reconnect_max = Duration::from_millis(200);
        c
    }

    fn services(&self, outbox: Arc<MemOutbox>) -> Services {
        Services {
            events: outbox,
            pointers: Arc::new(MemRefs),
            grants: self.verifier.clone(),
        }
    }

    fn peer(&self, addr: Option<SocketAddr>) -> PeerConfig {
        PeerConfig {
            platform: self.id.into(),
            addr,
            fingerprints: vec![self.fingerprint()],
        }
    }
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// `sites` publishes `outbox`; `grid` is pinned to it and it to `grid`.
struct Mesh {
    sites: Platform,
    grid: Platform,
    publisher: EagerEndpoint,
    subscriber: EagerEndpoint,
    outbox: Arc<MemOutbox>,
}

fn mesh(outbox: Arc<MemOutbox>, tweak: impl FnOnce(&mut EagerConfig)) -> Mesh {
    let sites = platform("sites", 1);
    let grid = platform("grid", 2);
    let mut pc = sites.config(any_port(), vec![grid.peer(None)]);
    tweak(&mut pc);
    let publisher = EagerEndpoint::start(pc, sites.services(Arc::clone(&outbox))).unwrap();
    let addr = publisher.local_addr().unwrap();
    let subscriber = EagerEndpoint::start(
        grid.config(any_port(), vec![sites.peer(Some(addr))]),
        grid.services(MemOutbox::new(0, 0)),
    )
    .unwrap();
    Mesh {
        sites,
        grid,
        publisher,
        subscriber,
        outbox,
    }
}

/// Receive until `n` events arrived (whole frames: possibly more).
async fn next_events(rx: &mut mpsc::Receiver<Vec<SubEvent>>, n: usize) -> Vec<SubEvent> {
    let mut out = Vec::new();
    let mut count = 0;
    while count < n {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(batch)) => {
                for e in batch {
                    if let SubEvent::Failed(e) = &e {
                        panic!("subscription failed: {e:?}");
                    }
                    count += usize::from(matches!(e, SubEvent::Event(_)));
                    out.push(e)
                }
            }
            other => panic!("no event in time: {other:?}"),
        }
    }
    out
}

/// The next single event (flattening frames).
async fn next_one(
    rx: &mut mpsc::Receiver<Vec<SubEvent>>,
    pending: &mut Vec<SubEvent>,
) -> Option<SubEvent> {
    while pending.is_empty() {
        let mut batch = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("an event in time")?;
        batch.reverse();
        *pending = batch;
    }
    pending.pop()
}

fn seqs(events: &[SubEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            SubEvent::Event(d) => Some(d.event.seq),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_replay_from_cursor_then_live() {
    let m = mesh(MemOutbox::new(50, 16), |_| {});
    let (tx, mut rx) = mpsc::channel(64);
    let grant = m.sites.grant("grid", "eager:subscribe:site_changes");
    let h = m.subscriber.subscribe(
        SubscriptionSpec::new("sites", "site_changes", grant),
        Some(Cursor {
            epoch: "e1".into(),
            seq: 10,
        }),
        tx,
    );
    let got = next_events(&mut rx, 40).await;
    assert!(matches!(got[0], SubEvent::Subscribed { next: 11, .. }));
    assert_eq!(seqs(&got), (11..=50).collect::<Vec<_>>());
    m.outbox.append(10);
    let got = next_events(&mut rx, 10).await;
    assert_eq!(seqs(&got), (51..=60).collect::<Vec<_>>());
    assert_eq!(h.cursor().map(|c| c.seq), Some(60));
    h.stop();
    m.subscriber.close().await;
    m.publisher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_and_resumes_from_the_cursor() {
    let outbox = MemOutbox::new(20, 16);
    let Mesh {
        sites,
        grid,
        publisher,
        subscriber,
        ..
    } = mesh(Arc::clone(&outbox), |_| {});
    let addr = publisher.local_addr().unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let grant = sites.grant("grid", "eager:subscribe:site_changes");
    let mut spec = SubscriptionSpec::new("sites", "site_changes", grant);
    spec.start = bver_eager::proto::subscriber::Start::Oldest;
    let h = subscriber.subscribe(spec, None, tx);
    let first = next_events(&mut rx, 20).await;
    // The publisher goes away and comes back on the same address.
    publisher.close().await;
    drop(publisher);
    outbox.append(10);
    let mut again = None;
    for _ in 0..100 {
        match EagerEndpoint::start(
            sites.config(addr, vec![grid.peer(None)]),
            sites.services(Arc::clone(&outbox)),
        ) {
            Ok(ep) => {
                again = Some(ep);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let again = again.expect("the publisher's address is free again");
    let second = next_events(&mut rx, 10).await;
    let mut all = seqs(&first);
    all.extend(seqs(&second));
    assert_eq!(
        all,
        (1..=30).collect::<Vec<_>>(),
        "nothing lost, nothing twice"
    );
    h.stop();
    subscriber.close().await;
    again.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_mismatched_peers_are_refused() {
    let m = mesh(MemOutbox::new(1, 0), |_| {});
    let addr = m.publisher.local_addr().unwrap();
    let ptr = RefPtr::parse("bver://sites/site/1").unwrap();
    // `mallory` pins `sites`, but `sites` does not know `mallory`.
    let mallory = platform("mallory", 3);
    let mal = EagerEndpoint::start(
        mallory.config(any_port(), vec![m.sites.peer(Some(addr))]),
        mallory.services(MemOutbox::new(0, 0)),
    )
    .unwrap();
    let grant = m.sites.grant("mallory", "eager:resolve:sites");
    let e = mal
        .resolve("sites", &ptr, &grant, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PeerUnreachable, "{e:?}");
    // `grid2` dials `sites` with a wrong pin for it: refused on the dialer's side.
    let grid2 = platform("grid", 2);
    let mut wrong = m.sites.peer(Some(addr));
    wrong.fingerprints = vec![mallory.fingerprint()];
    let g2 = EagerEndpoint::start(
        grid2.config(any_port(), vec![wrong]),
        grid2.services(MemOutbox::new(0, 0)),
    )
    .unwrap();
    let grant = m.sites.grant("grid", "eager:resolve:sites");
    let e = g2
        .resolve("sites", &ptr, &grant, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PeerUnreachable, "{e:?}");
    // A platform that is not configured at all.
    let e = m
        .subscriber
        .resolve("nobody", &ptr, &grant, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::UnknownPeer);
    // The configured pair still works.
    m.subscriber
        .resolve("sites", &ptr, &grant, Duration::from_secs(2))
        .await
        .unwrap();
    for ep in [mal, g2, m.subscriber, m.publisher] {
        ep.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_batches_are_dropped_and_reported() {
    let forger = Arc::new(PlatformKey::from_seed(&[99; 32]).unwrap());
    let m = mesh(MemOutbox::new(5, 0), |c| {
        c.forge_batches_with = Some(forger)
    });
    let (tx, mut rx) = mpsc::channel(64);
    let grant = m.sites.grant("grid", "eager:subscribe:site_changes");
    let h = m.subscriber.subscribe(
        SubscriptionSpec::new("sites", "site_changes", grant),
        Some(Cursor {
            epoch: "e1".into(),
            seq: 0,
        }),
        tx,
    );
    let mut rejected = 0;
    let mut pending = Vec::new();
    while rejected == 0 {
        match next_one(&mut rx, &mut pending).await.unwrap() {
            SubEvent::Event(d) => panic!("forged event {} delivered", d.event.seq),
            SubEvent::Rejected { error, .. } => {
                assert_eq!(error.code, ErrorCode::BadSignature);
                assert_eq!(error.details["reason"], "unknown_key");
                rejected += 1;
            }
            _ => {}
        }
    }
    assert_eq!(h.cursor().map(|c| c.seq), Some(0));
    h.stop();
    m.subscriber.close().await;
    m.publisher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_resolve_with_and_without_scope() {
    let m = mesh(MemOutbox::new(0, 0), |_| {});
    let ptr = RefPtr::parse("bver://sites/site/7@meta.name").unwrap();
    let ok = m.sites.grant("grid", "eager:resolve:sites");
    let a = m
        .subscriber
        .resolve("sites", &ptr, &ok, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(a.answer.value, serde_json::json!("site 7"));
    assert_eq!((a.answer.version, a.answer.origin.as_str()), (8, "sites"));
    let e = m
        .subscriber
        .resolve(
            "sites",
            &ptr,
            &m.sites.grant("grid", "eager:resolve:other"),
            Duration::from_secs(2),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden, "{e:?}");
    // Through the resolver and the EAGER adapter: attribute paths and not-found behave as
    // for any other source, and the answer says it came from the peer.
    let mut resolver = Resolver::new();
    resolver.route("sites", Arc::new(m.subscriber.adapter("sites", ok)));
    let r = resolver.resolve(&ptr).await.unwrap();
    assert_eq!(
        (r.value, r.source),
        (serde_json::json!("site 7"), Source::Peer)
    );
    // Listings of a remote repo and namespace, page by page.
    let page = resolver.list("sites", "site", None, None, 3).await.unwrap();
    assert_eq!(page.items.len(), 3);
    assert_eq!(page.next.as_deref(), Some("3"));
    let page = resolver
        .listrefs("sites", page.next.as_deref(), 3)
        .await
        .unwrap();
    assert_eq!(
        page.items
            .iter()
            .map(|l| l.pointer.to_string())
            .collect::<Vec<_>>(),
        vec!["bver://sites/site/3", "bver://sites/site/4"]
    );
    assert_eq!(page.next, None);
    let no_scope = m
        .subscriber
        .adapter("sites", m.sites.grant("grid", "eager:resolve:other"));
    let e = bver_resolver::Adapter::listrefs(&no_scope, "sites", None, 10)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    let missing = RefPtr::parse("bver://sites/site/700").unwrap();
    assert_eq!(
        resolver.resolve(&missing).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    assert!(!resolver.exists(&missing).await.unwrap());
    m.subscriber.close().await;
    m.publisher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_is_throttled_not_dropped() {
    const N: u64 = 20_000;
    let m = mesh(MemOutbox::new(N, 1000), |c| {
        c.publisher.read_limit = 256;
        c.publisher.max_batch = 64;
    });
    let (tx, mut rx) = mpsc::channel(1);
    let grant = m.sites.grant("grid", "eager:subscribe:site_changes");
    let h = m.subscriber.subscribe(
        SubscriptionSpec::new("sites", "site_changes", grant),
        Some(Cursor {
            epoch: "e1".into(),
            seq: 0,
        }),
        tx,
    );
    let first = next_events(&mut rx, 100).await;
    // The handler stalls: the publisher must stop reading (QUIC flow control), not buffer
    // everything and not drop anything.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let read = m.outbox.read_to.load(Ordering::Relaxed);
    assert!(
        read < N / 2,
        "the publisher read {read} of {N} events while the subscriber stalled"
    );
    let got = seqs(&first).len();
    let rest = next_events(&mut rx, N as usize - got).await;
    let mut all = seqs(&first);
    all.extend(seqs(&rest));
    assert_eq!(all.len() as u64, N);
    assert!(all.iter().copied().eq(1..=N), "in order, without gaps");
    h.stop();
    m.subscriber.close().await;
    m.publisher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_announced_ahead_keeps_the_pins_working() {
    let outbox = MemOutbox::new(0, 0);
    let sites = platform("sites", 1);
    let grid = platform("grid", 2);
    let next = PlatformKey::from_seed(&[11; 32]).unwrap();
    let mut pc = sites.config(any_port(), vec![grid.peer(None)]);
    pc.next_keys = vec![next.public_key().clone()];
    let publisher = EagerEndpoint::start(pc, sites.services(Arc::clone(&outbox))).unwrap();
    let addr = publisher.local_addr().unwrap();
    // `grid` pins only the current key of `sites`.
    let subscriber = EagerEndpoint::start(
        grid.config(any_port(), vec![sites.peer(Some(addr))]),
        grid.services(MemOutbox::new(0, 0)),
    )
    .unwrap();
    let ptr = RefPtr::parse("bver://sites/site/1").unwrap();
    let grant = sites.grant("grid", "eager:resolve:sites");
    subscriber
        .resolve("sites", &ptr, &grant, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(
        subscriber
            .pins()
            .fingerprints("sites")
            .contains(&next.public_key().fingerprint())
    );
    // `sites` restarts with the announced key as its current key (the old one retired).
    publisher.close().await;
    drop(publisher);
    let mut rotated = KeySet::new(PlatformKey::from_seed(&[1; 32]).unwrap());
    rotated.rotate(next, bver_auth::unix_now() + 600);
    let rotated = Arc::new(rotated);
    let mut again = None;
    for _ in 0..100 {
        let mut pc = EagerConfig::new("sites", Arc::clone(&rotated), addr);
        pc.peers = vec![grid.peer(None)];
        match EagerEndpoint::start(pc, sites.services(Arc::clone(&outbox))) {
            Ok(ep) => {
                again = Some(ep);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let again = again.expect("address free again");
    // Grants signed by the old key still verify at `sites` (retired, within its window);
    // the TLS certificate now carries the new key, which `grid` learned from the hello.
    let mut ok = false;
    for _ in 0..50 {
        match subscriber
            .resolve("sites", &ptr, &grant, Duration::from_secs(2))
            .await
        {
            Ok(_) => {
                ok = true;
                break;
            }
            Err(e) if e.code == ErrorCode::PeerUnreachable => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(ok, "the rotated platform is still accepted");
    subscriber.close().await;
    again.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_grant_cuts_a_live_stream() {
    let m = mesh(MemOutbox::new(3, 0), |c| {
        c.grant_recheck = Duration::from_millis(50)
    });
    let (tx, mut rx) = mpsc::channel(64);
    let grant = m.sites.grant("grid", "eager:subscribe:site_changes");
    let h = m.subscriber.subscribe(
        SubscriptionSpec::new("sites", "site_changes", grant),
        Some(Cursor {
            epoch: "e1".into(),
            seq: 0,
        }),
        tx,
    );
    next_events(&mut rx, 3).await;
    m.sites
        .verifier
        .revocations()
        .revoke_issued_before("grid", bver_auth::unix_now() + 1);
    let mut pending = Vec::new();
    loop {
        match next_one(&mut rx, &mut pending).await {
            Some(SubEvent::Failed(e)) => {
                assert_eq!(e.code, ErrorCode::Unauthenticated, "{e:?}");
                break;
            }
            Some(SubEvent::Event(d)) => panic!("event {} after revocation", d.event.seq),
            Some(_) => {}
            None => panic!("the subscription ended without reporting"),
        }
    }
    h.stop();
    m.subscriber.close().await;
    m.publisher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_keeps_the_stream_and_a_peer_pinning_only_the_old_key() {
    let m = mesh(MemOutbox::new(20, 16), |_| {});
    let addr = m.publisher.local_addr().unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let grant = m
        .sites
        .grant("grid", "eager:subscribe:site_changes eager:resolve:sites");
    let mut spec = SubscriptionSpec::new("sites", "site_changes", grant.clone());
    spec.start = bver_eager::proto::subscriber::Start::Oldest;
    let h = m.subscriber.subscribe(spec, None, tx);
    let first = next_events(&mut rx, 20).await;

    // Rotate `sites` live: the new key, endorsed by the previous one for an hour.
    let now = bver_auth::unix_now();
    let previous = PlatformKey::from_seed(&[1; 32]).unwrap();
    let next = PlatformKey::from_seed(&[9; 32]).unwrap();
    let next_fp = next.public_key().fingerprint();
    let mut set = KeySet::new(PlatformKey::from_seed(&[1; 32]).unwrap());
    set.rotate(next, now + 3600);
    let endorsement =
        bver_eager::transport::tls::endorse("sites", set.current(), &previous, now + 3600).unwrap();
    assert!(
        m.publisher
            .set_keys(Arc::new(set), Some(endorsement.clone()))
            .await
            .unwrap()
    );
    assert_eq!(
        m.publisher.keys().current().public_key().fingerprint(),
        next_fp
    );
    // Setting the same keys again is not a rotation.
    assert!(
        !m.publisher
            .set_keys(m.publisher.keys(), Some(endorsement))
            .await
            .unwrap()
    );

    // The stream reconnects (the rotation closed the connection) and goes on: batches are
    // signed with the new key, which the subscriber learned from the new hello.
    m.outbox.append(10);
    let second = next_events(&mut rx, 10).await;
    assert!(
        !second
            .iter()
            .any(|e| matches!(e, SubEvent::Rejected { .. })),
        "nothing rejected: {second:?}"
    );
    let mut all = seqs(&first);
    all.extend(seqs(&second));
    assert_eq!(
        all,
        (1..=30).collect::<Vec<_>>(),
        "nothing lost, nothing twice"
    );
    // The closed connection is replaced; the new hello pins the new key at the subscriber,
    // and what follows is signed by it.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !m.subscriber.pins().is_pinned("sites", &next_fp) {
        assert!(
            std::time::Instant::now() < deadline,
            "the subscriber never learned the new key"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    m.outbox.append(10);
    let third = next_events(&mut rx, 10).await;
    assert!(
        !third.iter().any(|e| matches!(e, SubEvent::Rejected { .. })),
        "nothing rejected: {third:?}"
    );
    assert_eq!(seqs(&third), (31..=40).collect::<Vec<_>>());

    // A new peer endpoint that pins only the previous key connects (the endorsement) and its
    // answers verify (the new key is announced in the hello).
    let fresh = EagerEndpoint::start(
        m.grid.config(any_port(), vec![m.sites.peer(Some(addr))]),
        m.grid.services(MemOutbox::new(0, 0)),
    )
    .unwrap();
    assert!(!fresh.pins().is_pinned("sites", &next_fp));
    let ptr = RefPtr::parse("bver://sites/site/7").unwrap();
    let answer = fresh
        .resolve("sites", &ptr, &grant, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(answer.answer.version, 8);
    assert!(fresh.pins().is_pinned("sites", &next_fp));

    h.stop();
    fresh.close().await;
    m.subscriber.close().await;
    m.publisher.close().await;
}

/// A UDP relay between one client and `upstream` that can be cut (drops every datagram, in
/// both directions, as a dead link would) without either side being told.
struct Relay {
    addr: SocketAddr,
    cut: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Self {
        let socket = Arc::new(tokio::net::UdpSocket::bind(any_port()).await.unwrap());
        let addr = socket.local_addr().unwrap();
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = {
            let cut = Arc::clone(&cut);
            tokio::spawn(async move {
                let mut client: Option<SocketAddr> = None;
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                    if cut.load(Ordering::SeqCst) {
                        continue;
                    }
                    let to = if from == upstream {
                        match client {
                            Some(c) => c,
                            None => continue,
                        }
                    } else {
                        client = Some(from);
                        upstream
                    };
                    let _ = socket.send_to(&buf[..n], to).await;
                }
            })
        };
        Self { addr, cut, task }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_timeout_is_configurable_and_ends_a_dead_connection() {
    assert_eq!(
        EagerConfig::new("x", platform("x", 7).key, any_port()).idle_timeout,
        bver_eager::transport::DEFAULT_IDLE_TIMEOUT,
        "30 s unless configured"
    );
    let zero = EagerEndpoint::start(
        {
            let p = platform("sites", 1);
            let mut c = p.config(any_port(), vec![]);
            c.idle_timeout = Duration::ZERO;
            c
        },
        platform("sites", 1).services(MemOutbox::new(0, 0)),
    );
    assert_eq!(
        zero.unwrap_err().code,
        ErrorCode::InvalidDefinition,
        "a zero idle timeout is refused"
    );

    let outbox = MemOutbox::new(5, 16);
    let sites = platform("sites", 1);
    let grid = platform("grid", 2);
    let publisher = EagerEndpoint::start(
        sites.config(any_port(), vec![grid.peer(None)]),
        sites.services(Arc::clone(&outbox)),
    )
    .unwrap();
    let relay = Relay::start(publisher.local_addr().unwrap()).await;
    let mut config = grid.config(any_port(), vec![sites.peer(Some(relay.addr))]);
    config.idle_timeout = Duration::from_millis(600);
    // Reconnects wait long enough for the test to see the interruption first.
    config.reconnect_base = Duration::from_secs(5);
    config.reconnect_max = Duration::from_secs(5);
    let subscriber = EagerEndpoint::start(config, grid.services(MemOutbox::new(0, 0))).unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let mut spec = SubscriptionSpec::new(
        "sites",
        "site_changes",
        sites.grant("grid", "eager:subscribe:site_changes"),
    );
    spec.start = bver_eager::proto::subscriber::Start::Oldest;
    let h = subscriber.subscribe(spec, None, tx);
    next_events(&mut rx, 5).await;
    let mut interruptions = h.interruptions();
    interruptions.borrow_and_update();

    // An idle but healthy connection stays up past its idle timeout (keep-alives).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        interruptions.borrow_and_update().is_none(),
        "keep-alives hold a healthy idle connection open"
    );

    // The link dies silently: the connection ends after the idle timeout, not after 30 s.
    relay.cut.store(true, Ordering::SeqCst);
    let cut = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(5), interruptions.changed())
        .await
        .expect("the dead connection ends within the configured idle timeout")
        .unwrap();
    let took = cut.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "ended after {took:?}"
    );
    let reason = interruptions.borrow().clone().unwrap_or_default();
    assert!(reason.starts_with("peer_unreachable"), "{reason}");
    eprintln!("the dead connection ended {took:?} after the cut");

    h.stop();
    relay.task.abort();
    subscriber.close().await;
    publisher.close().await;
}
