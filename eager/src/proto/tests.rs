//! Deterministic tests of the protocol core: a publisher and a subscriber joined by
//! in-memory bytes (every frame goes through the encoder and the frame decoder), an
//! in-memory outbox, real grants (bver-auth), no sockets and no clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bver_auth::{Issuer, KeySet, PlatformKey, Revocations, ScopeSet, Verifier, VerifierConfig};
use bver_contracts::{ChangeType, ErrorCode, EventEnvelope, RefPtr};
use bver_resolver::{Fetched, Source};

use super::publisher::{Publisher, PublisherConfig};
use super::resolve::{ResolveClient, ResolveServer};
use super::subscriber::{Start, SubEvent, Subscriber, SubscriptionSpec};
use crate::sign::PeerKeys;
use crate::source::{ChannelInfo, GrantVerifier, OutboxPosition, ReadBatch};
use crate::wire::{ContractVersion, Cursor, FrameDecoder, Message};

const NOW: u64 = 1_700_000_000;

struct World {
    key: PlatformKey,
    issuer: Issuer,
    verifier: Verifier,
    outbox: Vec<EventEnvelope>,
    oldest: u64,
    epoch: String,
}

fn event(seq: u64, repo: &str) -> EventEnvelope {
    EventEnvelope {
        origin: "sites".into(),
        epoch: "e1".into(),
        seq,
        trigger: format!("refs.{repo}.updated"),
        pointer: RefPtr::parse(&format!("bver://sites/{repo}/{seq}")).unwrap(),
        version: 1,
        kind: None,
        change: Some(ChangeType::Updated),
        diff: Default::default(),
        value: Some(serde_json::json!({ "n": seq })),
        time: 1_700_000_000_000 + seq as i64,
        signature: None,
    }
}

impl World {
    fn new(n: u64) -> Self {
        let key = PlatformKey::from_seed(&[1; 32]).unwrap();
        let issuer = Issuer::ed25519("sites", "sites", &key);
        let verifier = Verifier::new(
            VerifierConfig::new("sites", "sites"),
            &KeySet::new(PlatformKey::from_seed(&[1; 32]).unwrap()),
            Arc::new(Revocations::new()),
        );
        Self {
            key,
            issuer,
            verifier,
            outbox: (1..=n).map(|s| event(s, "site")).collect(),
            oldest: 1,
            epoch: "e1".into(),
        }
    }

    fn grant(&self, subject: &str, scopes: &str) -> String {
        self.issuer
            .issue(
                subject,
                &ScopeSet::parse(scopes).unwrap(),
                Duration::from_secs(3600),
                NOW,
            )
            .unwrap()
            .token
    }

    fn head(&self) -> u64 {
        self.outbox.last().map_or(0, |e| e.seq)
    }

    fn position(&self) -> OutboxPosition {
        OutboxPosition {
            epoch: self.epoch.clone(),
            head: self.head(),
            oldest: self.oldest,
        }
    }

    fn read(&self, from: u64, limit: usize) -> ReadBatch {
        let events: Vec<_> = self
            .outbox
            .iter()
            .filter(|e| e.seq >= from && e.seq >= self.oldest)
            .take(limit)
            .cloned()
            .collect();
        let scanned_to = if events.len() == limit {
            events.last().map_or(from - 1, |e| e.seq)
        } else {
            self.head().max(from - 1)
        };
        ReadBatch { events, scanned_to }
    }

    fn peer_keys(&self) -> PeerKeys {
        PeerKeys::new("sites", [self.key.public_key().clone()])
    }
}

/// Changes a frame in transit.
type Tamper = Box<dyn FnMut(&mut Message)>;

/// A publisher and a subscriber joined by bytes.
struct Pair {
    publisher: Publisher,
    subscriber: Subscriber,
    decoder: FrameDecoder,
    /// Applied to every frame the publisher sends, before the subscriber decodes it.
    tamper: Option<Tamper>,
    events: Vec<SubEvent>,
    frames: usize,
}

impl Pair {
    fn new(
        w: &World,
        spec: SubscriptionSpec,
        cursor: Option<Cursor>,
        cfg: PublisherConfig,
    ) -> Self {
        let mut subscriber = Subscriber::new(spec, cursor, w.peer_keys());
        let mut publisher = Publisher::new(cfg, "grid");
        let mut bytes = Vec::new();
        assert!(subscriber.poll_transmit(&mut bytes));
        let mut d = FrameDecoder::new(1 << 20);
        d.push(&bytes);
        let Some(Message::Subscribe(sub)) = d.next_message().unwrap() else {
            panic!("expected subscribe")
        };
        let info = (sub.channel == "site_changes").then(|| ChannelInfo {
            contract: Some(ContractVersion {
                package: "grid".into(),
                major: 2,
            }),
        });
        publisher.handle_subscribe(sub, info, w.position(), &w.verifier, NOW);
        Self {
            publisher,
            subscriber,
            decoder: FrameDecoder::new(1 << 20),
            tamper: None,
            events: Vec::new(),
            frames: 0,
        }
    }

    /// A subscription to `site_changes` from `cursor`, with the publisher's defaults.
    fn site_changes(w: &World, cursor: Option<Cursor>) -> Self {
        Self::new(
            w,
            spec(w, "site_changes"),
            cursor,
            PublisherConfig::new("sites"),
        )
    }

    /// Run until the publisher has nothing more to do against `w`.
    fn pump(&mut self, w: &World) {
        loop {
            self.transmit();
            match self.publisher.poll_read() {
                Some(req) => {
                    assert_eq!(req.channel, self.subscriber.spec().channel);
                    let r = w.read(req.from_seq, req.limit);
                    self.publisher.handle_read(Ok(r), &w.key, &w.verifier, NOW);
                }
                None => break,
            }
        }
        self.transmit();
    }

    fn transmit(&mut self) {
        while let Some(mut m) = self.publisher.poll_message() {
            if let Some(t) = self.tamper.as_mut() {
                t(&mut m);
            }
            let bytes = crate::wire::encode(&m);
            self.decoder.push(&bytes);
            while let Some(m) = self.decoder.next_message().unwrap() {
                self.frames += 1;
                self.subscriber.handle_message(m, NOW);
                while let Some(ev) = self.subscriber.poll_event() {
                    self.events.push(ev);
                }
            }
        }
    }

    fn seqs(&self) -> Vec<u64> {
        self.events
            .iter()
            .filter_map(|e| match e {
                SubEvent::Event(d) => Some(d.event.seq),
                _ => None,
            })
            .collect()
    }

    /// The reported rejections: each event's `seq` (none for a whole batch) and reason.
    fn rejections(&self) -> Vec<(Option<u64>, serde_json::Value)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                SubEvent::Rejected { seq, error } => Some((*seq, error.details["reason"].clone())),
                _ => None,
            })
            .collect()
    }

    fn failure(&self) -> Option<&bver_contracts::BverError> {
        self.events.iter().find_map(|e| match e {
            SubEvent::Failed(e) => Some(e),
            _ => None,
        })
    }
}

fn spec(w: &World, channel: &str) -> SubscriptionSpec {
    SubscriptionSpec::new(
        "sites",
        channel,
        w.grant("grid", &format!("eager:subscribe:{channel}")),
    )
}

fn cursor(seq: u64) -> Option<Cursor> {
    Some(Cursor {
        epoch: "e1".into(),
        seq,
    })
}

#[test]
fn replay_from_cursor_then_live_without_gap_or_reordering() {
    let mut w = World::new(10);
    let mut p = Pair::site_changes(&w, cursor(3));
    assert!(matches!(
        p.events.first(),
        None | Some(SubEvent::Subscribed { .. })
    ));
    p.pump(&w);
    assert!(matches!(
        p.events[0],
        SubEvent::Subscribed {
            next: 4,
            head: 10,
            ..
        }
    ));
    assert_eq!(p.seqs(), (4..=10).collect::<Vec<_>>());
    // Live: new commits move the head.
    w.outbox.extend((11..=15).map(|s| event(s, "site")));
    p.publisher.handle_head("e1", 13);
    p.pump(&w);
    // The read went up to what the source had (15), past the head it was told.
    assert_eq!(p.seqs(), (4..=15).collect::<Vec<_>>());
    p.publisher.handle_head("e1", 15);
    p.pump(&w);
    assert_eq!(p.seqs(), (4..=15).collect::<Vec<_>>());
    assert_eq!(p.subscriber.cursor(), cursor(15).as_ref());
    // Every delivered event verifies on its own with its proof.
    for e in &p.events {
        if let SubEvent::Event(d) = e {
            crate::sign::verify_event(&w.peer_keys(), &d.clone().into_signed(), NOW).unwrap();
        }
    }
}

#[test]
fn live_without_cursor_and_oldest_start() {
    let mut w = World::new(5);
    let mut p = Pair::site_changes(&w, None);
    p.pump(&w);
    assert!(p.seqs().is_empty());
    assert!(matches!(p.events[0], SubEvent::Subscribed { next: 6, .. }));
    w.outbox.push(event(6, "site"));
    p.publisher.handle_head("e1", 6);
    p.pump(&w);
    assert_eq!(p.seqs(), vec![6]);

    let mut s = spec(&w, "site_changes");
    s.start = Start::Oldest;
    w.oldest = 2;
    let mut p = Pair::new(&w, s, None, PublisherConfig::new("sites"));
    p.pump(&w);
    assert_eq!(p.seqs(), (2..=6).collect::<Vec<_>>());
}

#[test]
fn outdated_cursor_is_a_notice_then_delivery_from_the_oldest() {
    let mut w = World::new(10);
    w.oldest = 6;
    let mut p = Pair::site_changes(&w, cursor(2));
    p.pump(&w);
    assert!(matches!(
        p.events[1],
        SubEvent::Gap {
            requested: 3,
            oldest: 6
        }
    ));
    assert_eq!(p.seqs(), (6..=10).collect::<Vec<_>>());
}

#[test]
fn cursor_errors() {
    let w = World::new(10);
    let mut p = Pair::new(
        &w,
        spec(&w, "site_changes"),
        Some(Cursor {
            epoch: "e0".into(),
            seq: 3,
        }),
        PublisherConfig::new("sites"),
    );
    p.pump(&w);
    let e = p.failure().unwrap();
    assert_eq!(
        (e.code, e.details["reason"].as_str()),
        (ErrorCode::InvalidCursor, Some("wrong_epoch"))
    );
    assert!(!e.retryable);
    assert!(p.publisher.is_closed() && p.subscriber.is_closed());

    let mut p = Pair::site_changes(&w, cursor(11));
    p.pump(&w);
    let e = p.failure().unwrap();
    assert_eq!(
        (e.code, e.details["reason"].as_str()),
        (ErrorCode::InvalidCursor, Some("future_seq"))
    );
    // A cursor at the head is fine: nothing to replay.
    let mut p = Pair::site_changes(&w, cursor(10));
    p.pump(&w);
    assert!(p.failure().is_none() && p.seqs().is_empty());
}

#[test]
fn grants_scopes_channels_and_contracts() {
    let w = World::new(3);
    let check = |s: SubscriptionSpec, code: ErrorCode, reason: Option<&str>| {
        let mut p = Pair::new(&w, s, cursor(0), PublisherConfig::new("sites"));
        p.pump(&w);
        let e = p.failure().unwrap_or_else(|| panic!("expected {code}"));
        assert_eq!(e.code, code, "{e:?}");
        if let Some(r) = reason {
            assert_eq!(e.details["reason"], r, "{e:?}");
        }
        assert!(p.seqs().is_empty());
    };
    let mut s = spec(&w, "site_changes");
    s.grant = w.grant("grid", "eager:subscribe:other");
    check(s, ErrorCode::Forbidden, None);
    let mut s = spec(&w, "site_changes");
    s.grant = w.grant("mallory", "eager:subscribe:site_changes");
    check(s, ErrorCode::Forbidden, Some("subject_mismatch"));
    let mut s = spec(&w, "site_changes");
    s.grant = "not.a.jwt".into();
    check(s, ErrorCode::Unauthenticated, None);
    check(
        spec(&w, "nope"),
        ErrorCode::NotFound,
        Some("unknown_channel"),
    );
    let mut s = spec(&w, "site_changes");
    s.contract = Some(ContractVersion {
        package: "grid".into(),
        major: 3,
    });
    check(s, ErrorCode::IncompatibleContract, Some("major_mismatch"));
    let mut s = spec(&w, "site_changes");
    s.contract = Some(ContractVersion {
        package: "grid".into(),
        major: 2,
    });
    let mut p = Pair::new(&w, s, cursor(0), PublisherConfig::new("sites"));
    p.pump(&w);
    assert_eq!(p.seqs(), vec![1, 2, 3]);
    // A wildcard grant covers the channel.
    let mut s = spec(&w, "site_changes");
    s.grant = w.grant("grid", "eager:subscribe:*");
    let mut p = Pair::new(&w, s, cursor(0), PublisherConfig::new("sites"));
    p.pump(&w);
    assert_eq!(p.seqs(), vec![1, 2, 3]);
}

#[test]
fn revocation_cuts_a_live_stream() {
    let w = World::new(3);
    let mut p = Pair::site_changes(&w, cursor(0));
    p.pump(&w);
    assert_eq!(p.seqs(), vec![1, 2, 3]);
    w.verifier
        .revocations()
        .revoke_issued_before("grid", NOW + 1);
    p.publisher.handle_tick(&w.verifier, NOW + 2);
    p.transmit();
    assert_eq!(
        p.failure().map(|e| e.code),
        Some(ErrorCode::Unauthenticated)
    );
}

#[test]
fn batches_are_bounded() {
    let w = World::new(20);
    let mut s = spec(&w, "site_changes");
    s.max_batch = Some(3);
    let mut p = Pair::new(&w, s, cursor(0), PublisherConfig::new("sites"));
    p.pump(&w);
    assert_eq!(p.seqs(), (1..=20).collect::<Vec<_>>());
    assert_eq!(p.publisher.stats().batches, 7);
    assert_eq!(p.subscriber.stats().batches, 7);
    // Frame size bound: small frames force small batches too.
    let mut cfg = PublisherConfig::new("sites");
    cfg.max_frame = 4096;
    let mut big = World::new(0);
    big.outbox = (1..=10)
        .map(|s| {
            let mut e = event(s, "site");
            e.value = Some(serde_json::json!({ "blob": "x".repeat(1000) }));
            e
        })
        .collect();
    let mut p = Pair::new(&big, spec(&big, "site_changes"), cursor(0), cfg);
    p.pump(&big);
    assert_eq!(p.seqs(), (1..=10).collect::<Vec<_>>());
    assert!(p.publisher.stats().batches >= 3);
}

#[test]
fn server_side_filters_and_sparse_channels() {
    let mut w = World::new(0);
    w.outbox = (1..=30)
        .map(|s| event(s, if s % 3 == 0 { "line" } else { "site" }))
        .collect();
    let mut s = spec(&w, "site_changes");
    s.filter.repos = vec!["line".into()];
    let mut p = Pair::new(&w, s, cursor(0), PublisherConfig::new("sites"));
    p.pump(&w);
    assert_eq!(p.seqs(), (1..=10).map(|i| i * 3).collect::<Vec<_>>());
    assert_eq!(p.publisher.stats().filtered, 20);
    assert_eq!(p.subscriber.cursor(), cursor(30).as_ref());

    // A sparse channel (seqs the source does not return are elided): spans are bounded.
    let mut w = World::new(0);
    w.outbox = [1, 2, 50, 51, 5000]
        .into_iter()
        .map(|s| event(s, "site"))
        .collect();
    let mut cfg = PublisherConfig::new("sites");
    cfg.max_span = 100;
    let mut p = Pair::new(&w, spec(&w, "site_changes"), cursor(0), cfg);
    p.pump(&w);
    assert_eq!(p.seqs(), vec![1, 2, 50, 51, 5000]);
    assert_eq!(p.publisher.stats().batches, 2);
}

#[test]
fn an_event_nested_deeper_than_json_reads_back_is_refused_as_undecodable() {
    use bver_contracts::cbor::MAX_JSON_DEPTH;
    let nested =
        |depth: usize| (1..depth).fold(serde_json::json!([]), |v, _| serde_json::json!([v]));
    let mut w = World::new(3);
    // Event 2's value is as deep as stored JSON may be; event 3's one level deeper.
    w.outbox[1].value = Some(nested(MAX_JSON_DEPTH));
    w.outbox[2].value = Some(nested(MAX_JSON_DEPTH + 1));
    let mut p = Pair::site_changes(&w, cursor(0));
    p.pump(&w);
    assert_eq!(p.seqs(), vec![1, 2]);
    let rejected = p.rejections();
    assert_eq!(rejected, vec![(Some(3), "undecodable".into())]);
    // What was accepted can be stored as JSON and read back.
    let delivered = p.events.iter().find_map(|e| match e {
        SubEvent::Event(d) if d.event.seq == 2 => d.event.value.clone(),
        _ => None,
    });
    let text = delivered
        .expect("event 2 delivered with its value")
        .to_string();
    serde_json::from_str::<serde_json::Value>(&text).expect("reads back");
}

#[test]
fn forged_and_altered_events_are_dropped_and_reported() {
    let w = World::new(6);
    let mut p = Pair::site_changes(&w, cursor(0));
    // Alter the third event's bytes in transit.
    p.tamper = Some(Box::new(|m| {
        if let Message::Batch(b) = m
            && let Some(e) = b.events.get_mut(2)
        {
            let n = e.bytes.0.len();
            e.bytes.0[n - 1] ^= 1;
        }
    }));
    p.pump(&w);
    assert_eq!(p.seqs(), vec![1, 2, 4, 5, 6]);
    let rejected = p.rejections();
    assert_eq!(rejected, vec![(Some(3), "hash_mismatch".into())]);

    // A forged header signature: the whole batch is dropped.
    let mut p = Pair::site_changes(&w, cursor(0));
    p.tamper = Some(Box::new(|m| {
        if let Message::Batch(b) = m {
            b.sig.0[0] ^= 1;
        }
    }));
    p.pump(&w);
    assert!(p.seqs().is_empty());
    assert_eq!(p.subscriber.stats().rejected, 6);

    // Signed by another key (an impostor with a valid-looking batch).
    let mut p = Pair::site_changes(&w, cursor(0));
    let other = PlatformKey::from_seed(&[66; 32]).unwrap();
    p.tamper = Some(Box::new(move |m| {
        if let Message::Batch(b) = m {
            let (h, s) = crate::sign::sign_batch(
                &other,
                "sites",
                "e1",
                b.header.first_seq,
                b.header.event_hashes.clone(),
            );
            b.header = h;
            b.sig = s;
        }
    }));
    p.pump(&w);
    assert!(p.seqs().is_empty());
    assert!(p.events.iter().any(|e| matches!(e, SubEvent::Rejected { error, .. } if error.details["reason"] == "unknown_key")));
}

#[test]
fn duplicates_are_dropped_by_platform_epoch_seq() {
    let w = World::new(5);
    let mut p = Pair::site_changes(&w, cursor(0));
    p.pump(&w);
    assert_eq!(p.seqs(), vec![1, 2, 3, 4, 5]);
    // Another stream replays 3..=5 (as after a reconnect from a stale cursor); its events,
    // fed to the first subscriber, are all duplicates.
    let mut second = Pair::site_changes(&w, cursor(2));
    second.pump(&w);
    for e in second.events.iter() {
        if let SubEvent::Event(d) = e {
            let b = crate::wire::Batch {
                header: d.batch.0.clone(),
                sig: d.batch.1.clone(),
                events: vec![crate::wire::BatchEvent {
                    index: d.index,
                    bytes: crate::wire::Bytes(d.event.to_canonical_cbor()),
                }],
            };
            p.subscriber.handle_message(Message::Batch(b), NOW);
        }
    }
    while let Some(ev) = p.subscriber.poll_event() {
        assert!(
            !matches!(ev, SubEvent::Event(_)),
            "a duplicate was delivered"
        );
    }
    assert_eq!(p.subscriber.stats().duplicates, 3);
}

#[test]
fn epoch_change_ends_the_stream() {
    let w = World::new(2);
    let mut p = Pair::site_changes(&w, cursor(0));
    p.pump(&w);
    p.publisher.handle_head("e2", 1);
    p.transmit();
    assert_eq!(
        p.failure().map(|e| e.details["reason"].clone()),
        Some("epoch_changed".into())
    );
}

#[test]
fn remote_resolve_both_sides() {
    let w = World::new(0);
    let t0 = Instant::now();
    let fetched = || {
        Ok(Some(Fetched {
            version: 4,
            kind: Some("power.substation".into()),
            value: serde_json::json!({ "meta": { "name": "North" } }),
            updated_at: 17,
            source: Source::Local,
        }))
    };
    let ask = |ptr: &str, scopes: &str| {
        let grant = w.grant("grid", scopes);
        let (client, msg) = ResolveClient::new(
            9,
            RefPtr::parse(ptr).unwrap(),
            &grant,
            w.peer_keys(),
            Duration::from_millis(100),
            t0,
        );
        let Message::Resolve(req) = msg else { panic!() };
        let mut server = ResolveServer::new("sites", "grid");
        let answer = match server.handle_request(req, &w.verifier, t0, NOW) {
            Ok(fetch) => {
                assert!(!fetch.reference.has_path());
                server.handle_fetched(fetched(), &w.key, t0 + Duration::from_millis(1))
            }
            Err(frame) => frame,
        };
        let bytes = crate::wire::encode(&answer);
        let mut d = FrameDecoder::new(1 << 16);
        d.push(&bytes);
        client.handle_message(d.next_message().unwrap().unwrap(), NOW)
    };
    let a = ask("bver://sites/site/1@meta.name", "eager:resolve:sites").unwrap();
    assert_eq!(a.answer.value, serde_json::json!("North"));
    assert_eq!((a.answer.version, a.answer.origin.as_str()), (4, "sites"));
    crate::sign::verify_bytes(&w.peer_keys(), &a.kid, &a.bytes, &a.sig, NOW).unwrap();
    let e = ask("bver://sites/site/1", "eager:resolve:other").unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    let e = ask("bver://sites/site/1@meta.nope", "eager:resolve:sites").unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);

    // Not found, and the deadline.
    let mut server = ResolveServer::new("sites", "grid");
    let req = crate::wire::Resolve {
        id: 1,
        pointer: "bver://sites/site/2".into(),
        deadline_ms: 50,
        grant: w.grant("grid", "eager:resolve:sites"),
    };
    server
        .handle_request(req.clone(), &w.verifier, t0, NOW)
        .unwrap();
    let Message::Error(e) = server.handle_fetched(Ok(None), &w.key, t0) else {
        panic!()
    };
    assert_eq!((e.code.as_str(), e.id), ("not_found", Some(1)));
    server.handle_request(req, &w.verifier, t0, NOW).unwrap();
    let Message::Error(e) =
        server.handle_fetched(fetched(), &w.key, t0 + Duration::from_millis(51))
    else {
        panic!()
    };
    assert_eq!(e.code, "timeout");
    let (client, _) = ResolveClient::new(
        2,
        RefPtr::parse("bver://sites/site/2").unwrap(),
        "g",
        w.peer_keys(),
        Duration::from_millis(10),
        t0,
    );
    assert!(
        client
            .handle_timeout(t0 + Duration::from_millis(9))
            .is_none()
    );
    assert_eq!(
        client
            .handle_timeout(t0 + Duration::from_millis(10))
            .map(|e| e.code),
        Some(ErrorCode::Timeout)
    );
}

/// The grant verifier trait object works for any implementation, not only `Verifier`.
#[test]
fn grant_verifier_is_object_safe() {
    let w = World::new(0);
    let g: &dyn GrantVerifier = &w.verifier;
    let p = g
        .verify(&w.grant("grid", "eager:subscribe:x"), NOW)
        .unwrap();
    assert_eq!(p.subject, "grid");
}

#[test]
fn remote_listing_both_sides() {
    use super::resolve::{ListClient, ListRequest, ListServer};
    use bver_resolver::{Listed, Page};
    let w = World::new(0);
    let t0 = Instant::now();
    let request = |namespace: &str| ListRequest {
        namespace: namespace.into(),
        repo: Some("site".into()),
        kind: None,
        cursor: None,
        limit: 5_000,
    };
    let page = |ptr: &str| {
        Ok(Page {
            items: vec![Listed {
                pointer: RefPtr::parse(ptr).unwrap(),
                version: 2,
                kind: None,
                updated_at: 5,
            }],
            next: Some("c2".into()),
        })
    };
    let run = |scopes: &str, answer: &str, late: bool| {
        let (client, msg) = ListClient::new(
            4,
            request("sites"),
            &w.grant("grid", scopes),
            Duration::from_millis(100),
        );
        let Message::List(req) = msg else { panic!() };
        let mut server = ListServer::new("grid");
        let frame = match server.handle_request(req, &w.verifier, t0, NOW) {
            Ok(l) => {
                assert_eq!(l.limit, super::resolve::MAX_LIST_LIMIT);
                let at = t0 + Duration::from_millis(if late { 101 } else { 1 });
                server.handle_listed(page(answer), at)
            }
            Err(frame) => frame,
        };
        let mut d = FrameDecoder::new(1 << 16);
        d.push(&crate::wire::encode(&frame));
        client.handle_message(d.next_message().unwrap().unwrap())
    };
    let p = run("eager:resolve:sites", "bver://sites/site/1", false).unwrap();
    assert_eq!((p.items.len(), p.next.as_deref()), (1, Some("c2")));
    let e = run("eager:resolve:grid", "bver://sites/site/1", false).unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    let e = run("eager:resolve:sites", "bver://other/site/1", false).unwrap_err();
    assert_eq!(e.details["reason"], "answer_mismatch");
    let e = run("eager:resolve:sites", "bver://sites/site/1", true).unwrap_err();
    assert_eq!(e.code, ErrorCode::Timeout);
}
