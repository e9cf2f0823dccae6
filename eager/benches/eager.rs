//! EAGER throughput and latency: signed events/s through the sans-IO core (publisher →
//! bytes → subscriber with verification), the same over loopback QUIC, and remote resolve
//! latency over loopback QUIC.
//!
//! Run: `cargo bench -p bver-eager --bench eager` (optionally `-- N` events, default
//! 200,000, and `sans-io` or `quic` for one half). Prints one line per figure; recorded in `docs/PERFORMANCE.md`, "EAGER".

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bver_auth::{Issuer, KeySet, PlatformKey, Revocations, ScopeSet, Verifier, VerifierConfig};
use bver_contracts::{BverError, ChangeType, EventEnvelope, RefPtr};
use bver_eager::proto::publisher::{Publisher, PublisherConfig};
use bver_eager::proto::subscriber::{Start, SubEvent, Subscriber, SubscriptionSpec};
use bver_eager::sign::PeerKeys;
use bver_eager::transport::{EagerConfig, EagerEndpoint, PeerConfig, Services};
use bver_eager::wire::{Cursor, FrameDecoder};
use bver_eager::{ChannelInfo, EventSource, OutboxPosition, PointerSource, ReadBatch};
use bver_resolver::{BoxFuture, Fetched, Listed, Page, Source};
use tokio::sync::{mpsc, watch};

const NOW: u64 = 1_700_000_000;

/// CPU seconds used by this process (user + system, from `/proc/self/stat`, 100 ticks/s),
/// so that figures on a shared machine can be read per CPU-second too.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the command name: state is field 0, utime field 11, stime field 12.
    (tick(11) + tick(12)) / 100.0
}

fn event(seq: u64) -> EventEnvelope {
    EventEnvelope {
        origin: "sites".into(),
        epoch: "e1".into(),
        seq,
        trigger: "refs.site.updated".into(),
        pointer: RefPtr::parse(&format!("bver://sites/site/{seq}")).expect("pointer"),
        version: seq,
        kind: Some("power.substation".into()),
        change: Some(ChangeType::Updated),
        diff: Default::default(),
        // About 256 bytes of canonical CBOR per event.
        value: Some(serde_json::json!({ "seq": seq, "name": "substation", "pad": "x".repeat(90) })),
        time: 1_700_000_000_000,
        signature: None,
    }
}

struct Outbox {
    events: Vec<EventEnvelope>,
    head: watch::Sender<u64>,
}

impl EventSource for Outbox {
    fn channel(&self, _: &str) -> Option<ChannelInfo> {
        Some(ChannelInfo::default())
    }
    fn position(&self) -> BoxFuture<'_, Result<OutboxPosition, BverError>> {
        Box::pin(async move {
            Ok(OutboxPosition {
                epoch: "e1".into(),
                head: self.events.len() as u64,
                oldest: 1,
            })
        })
    }
    fn read<'a>(
        &'a self,
        _: &'a str,
        from: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<ReadBatch, BverError>> {
        Box::pin(async move { Ok(read(&self.events, from, limit)) })
    }
    fn watch_head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }
}

fn read(events: &[EventEnvelope], from: u64, limit: usize) -> ReadBatch {
    let start = (from.max(1) - 1) as usize;
    let taken: Vec<_> = events.iter().skip(start).take(limit).cloned().collect();
    let scanned_to = taken
        .last()
        .map_or(events.len() as u64, |e| e.seq)
        .max(from - 1);
    ReadBatch {
        events: taken,
        scanned_to,
    }
}

struct Refs;

impl PointerSource for Refs {
    fn fetch<'a>(
        &'a self,
        _: &'a str,
        _: &'a RefPtr,
    ) -> BoxFuture<'a, Result<Option<Fetched>, BverError>> {
        Box::pin(async move {
            Ok(Some(Fetched {
                version: 3,
                kind: None,
                value: serde_json::json!({ "meta": { "name": "North" } }),
                updated_at: 0,
                source: Source::Local,
            }))
        })
    }

    fn list<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: Option<&'a str>,
        _: Option<&'a str>,
        _: Option<&'a str>,
        _: u32,
    ) -> BoxFuture<'a, Result<Page<Listed>, BverError>> {
        Box::pin(async move {
            Ok(Page {
                items: vec![],
                next: None,
            })
        })
    }
}

fn sans_io(n: u64, key: &PlatformKey, verifier: &Verifier, grant: &str) {
    let events: Vec<_> = (1..=n).map(event).collect();
    let spec = SubscriptionSpec::new("sites", "c", grant);
    let mut sub = Subscriber::new(
        spec,
        Some(Cursor {
            epoch: "e1".into(),
            seq: 0,
        }),
        PeerKeys::new("sites", [key.public_key().clone()]),
    );
    let mut publisher = Publisher::new(PublisherConfig::new("sites"), "grid");
    let started = Instant::now();
    let cpu0 = cpu_secs();
    let mut bytes = Vec::new();
    sub.poll_transmit(&mut bytes);
    let mut d = FrameDecoder::new(1 << 22);
    d.push(&bytes);
    let Ok(Some(bver_eager::wire::Message::Subscribe(s))) = d.next_message() else {
        panic!("subscribe")
    };
    publisher.handle_subscribe(
        s,
        Some(ChannelInfo::default()),
        OutboxPosition {
            epoch: "e1".into(),
            head: n,
            oldest: 1,
        },
        verifier,
        NOW,
    );
    let mut delivered = 0u64;
    let mut wire = 0usize;
    loop {
        bytes.clear();
        publisher.poll_transmit(&mut bytes);
        wire += bytes.len();
        d.push(&bytes);
        while let Ok(Some(m)) = d.next_message() {
            sub.handle_message(m, NOW);
            while let Some(ev) = sub.poll_event() {
                if let SubEvent::Event(_) = ev {
                    delivered += 1;
                }
            }
        }
        match publisher.poll_read() {
            Some(r) => {
                publisher.handle_read(Ok(read(&events, r.from_seq, r.limit)), key, verifier, NOW)
            }
            None => break,
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    assert_eq!(delivered, n);
    println!(
        "sans-io: {n} signed events (read, sign, encode, decode, verify, dedupe; both sides on one thread) in {secs:.3} s = {:.0} events/s; {cpu:.2} CPU-s = {:.0} events per CPU-second; {:.0} bytes/event on the wire",
        n as f64 / secs,
        n as f64 / cpu.max(0.01),
        wire as f64 / n as f64
    );
}

fn platform(id: &str, seed: u8) -> (Arc<KeySet>, Issuer, Arc<Verifier>) {
    let key = PlatformKey::from_seed(&[seed; 32]).expect("key");
    let issuer = Issuer::ed25519(id, id, &key);
    let keys = KeySet::new(key);
    let verifier = Arc::new(Verifier::new(
        VerifierConfig::new(id, id),
        &keys,
        Arc::new(Revocations::new()),
    ));
    (Arc::new(keys), issuer, verifier)
}

async fn quic(n: u64) {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let (skeys, sissuer, sverifier) = platform("sites", 1);
    let (gkeys, _, gverifier) = platform("grid", 2);
    let outbox = Arc::new(Outbox {
        events: (1..=n).map(event).collect(),
        head: watch::channel(n).0,
    });
    let mut pc = EagerConfig::new("sites", Arc::clone(&skeys), any);
    pc.peers = vec![PeerConfig {
        platform: "grid".into(),
        addr: None,
        fingerprints: vec![gkeys.current().public_key().fingerprint()],
    }];
    let publisher = EagerEndpoint::start(
        pc,
        Services {
            events: outbox.clone(),
            pointers: Arc::new(Refs),
            grants: sverifier.clone(),
        },
    )
    .expect("publisher");
    let mut gc = EagerConfig::new("grid", Arc::clone(&gkeys), any);
    gc.peers = vec![PeerConfig {
        platform: "sites".into(),
        addr: Some(publisher.local_addr().expect("addr")),
        fingerprints: vec![skeys.current().public_key().fingerprint()],
    }];
    let empty = Arc::new(Outbox {
        events: vec![],
        head: watch::channel(0).0,
    });
    let subscriber = EagerEndpoint::start(
        gc,
        Services {
            events: empty,
            pointers: Arc::new(Refs),
            grants: gverifier,
        },
    )
    .expect("subscriber");
    let scopes = ScopeSet::parse("eager:subscribe:c eager:resolve:sites").expect("scopes");
    let grant = sissuer
        .issue(
            "grid",
            &scopes,
            Duration::from_secs(600),
            bver_auth::unix_now(),
        )
        .expect("grant")
        .token;

    // Resolve latency (the first call also connects).
    let ptr = RefPtr::parse("bver://sites/site/1@meta.name").expect("pointer");
    subscriber
        .resolve("sites", &ptr, &grant, Duration::from_secs(2))
        .await
        .expect("warm-up resolve");
    let mut lat = Vec::new();
    for _ in 0..5_000 {
        let t = Instant::now();
        subscriber
            .resolve("sites", &ptr, &grant, Duration::from_secs(2))
            .await
            .expect("resolve");
        lat.push(t.elapsed());
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "quic resolve: {} sequential requests, p50 {:?}, p99 {:?}, max {:?}",
        lat.len(),
        pct(0.50),
        pct(0.99),
        lat[lat.len() - 1]
    );

    // Bulk replay.
    let (tx, mut rx) = mpsc::channel(16);
    let mut spec = SubscriptionSpec::new("sites", "c", grant.clone());
    spec.start = Start::Oldest;
    let started = Instant::now();
    let cpu0 = cpu_secs();
    let h = subscriber.subscribe(spec, None, tx);
    let mut delivered = 0u64;
    while delivered < n {
        let Some(batch) = rx.recv().await else {
            panic!("subscription ended")
        };
        for ev in batch {
            match ev {
                SubEvent::Event(_) => delivered += 1,
                SubEvent::Failed(e) => panic!("{e:?}"),
                _ => {}
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    println!(
        "quic replay: {n} signed events subscribed, verified and handed to the handler in {secs:.3} s = {:.0} events/s; {cpu:.2} CPU-s (both platforms) = {:.0} events per CPU-second",
        n as f64 / secs,
        n as f64 / cpu.max(0.01)
    );
    h.stop();
    subscriber.close().await;
    publisher.close().await;
}

fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    let key = PlatformKey::from_seed(&[1; 32]).expect("key");
    let (_, issuer, verifier) = platform("sites", 1);
    let grant = issuer
        .issue(
            "grid",
            &ScopeSet::parse("eager:subscribe:c").expect("scope"),
            Duration::from_secs(600),
            NOW,
        )
        .expect("grant")
        .token;
    let only = std::env::args().find(|a| a == "sans-io" || a == "quic");
    if only.as_deref() != Some("quic") {
        sans_io(n, &key, &verifier, &grant);
    }
    if only.as_deref() == Some("sans-io") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(quic(n));
}
