//! The subscriber side of one subscription stream: send `subscribe`, then verify every
//! batch against the publisher's pinned keys, drop (and report) forged or altered events,
//! drop duplicates by `(platform, epoch, seq)`, and track the cursor.
//!
//! Calling order:
//!
//! 1. [`Subscriber::new`] with the subscription, the cursor to resume from (the one the
//!    handler persisted, or [`Subscriber::cursor`] of the previous attempt after a
//!    reconnect) and the peer's verifying keys;
//! 2. send what [`Subscriber::poll_transmit`] writes (the `subscribe` frame);
//! 3. for each frame received: [`Subscriber::handle_message`] with `now` (unix seconds, for
//!    key windows), then drain [`Subscriber::poll_event`];
//! 4. stop after [`SubEvent::Failed`] (see `BverError::retryable` to decide whether to
//!    reconnect) or when the stream ends (reconnect and resume from [`Subscriber::cursor`]).

use std::collections::VecDeque;
use std::sync::Arc;

use bver_contracts::cbor::MAX_JSON_DEPTH;
use bver_contracts::{
    BatchHeader, BatchProof, BverError, ErrorCode, EventEnvelope, Phase, SignatureBytes,
};

use crate::sign::{ELIDED, PeerKeys, bad_signature, event_hash, verify_header};
use crate::wire::{Batch, ContractVersion, Cursor, Filter, Message, Subscribe, encode_into};

/// Where a subscription without a cursor starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Start {
    /// With the next committed event.
    #[default]
    Live,
    /// With the oldest retained event.
    Oldest,
}

/// What a subscription asks for.
#[derive(Debug, Clone)]
pub struct SubscriptionSpec {
    /// The publishing peer's platform id.
    pub peer: String,
    /// The channel.
    pub channel: String,
    /// Server-side filters.
    pub filter: Filter,
    /// The grant issued by the peer to this platform.
    pub grant: String,
    /// The payload contract this platform expects.
    pub contract: Option<ContractVersion>,
    /// Where to start without a cursor.
    pub start: Start,
    /// Most events per batch.
    pub max_batch: Option<u32>,
    /// Largest frame body accepted.
    pub max_frame: usize,
}

impl SubscriptionSpec {
    /// A live subscription to `channel` of `peer`, without filters or contract.
    pub fn new(
        peer: impl Into<String>,
        channel: impl Into<String>,
        grant: impl Into<String>,
    ) -> Self {
        Self {
            peer: peer.into(),
            channel: channel.into(),
            filter: Filter::default(),
            grant: grant.into(),
            contract: None,
            start: Start::Live,
            max_batch: None,
            max_frame: crate::wire::DEFAULT_MAX_FRAME,
        }
    }
}

/// A verified event with the proof of its batch (shared by the batch's events; build the
/// envelope's `signature` with [`Delivered::proof`] when storing or relaying it).
#[derive(Debug, Clone)]
pub struct Delivered {
    /// The event (its `signature` is `None`).
    pub event: EventEnvelope,
    /// The signed header and signature of its batch.
    pub batch: Arc<(BatchHeader, SignatureBytes)>,
    /// The event's index in the header.
    pub index: u32,
}

impl Delivered {
    /// The event's proof of membership in its signed batch.
    pub fn proof(&self) -> BatchProof {
        BatchProof {
            header: self.batch.0.clone(),
            signature: self.batch.1.clone(),
            index: self.index,
        }
    }

    /// The event with its proof attached (verifiable on its own).
    pub fn into_signed(self) -> EventEnvelope {
        let proof = self.proof();
        let mut e = self.event;
        e.signature = Some(proof);
        e
    }
}

/// What the subscriber reports.
// Nearly every value is an `Event`: boxing it would cost an allocation per event to save
// space in the rare variants.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum SubEvent {
    /// The publisher accepted the subscription.
    Subscribed {
        /// Its epoch.
        epoch: String,
        /// Its head at that time.
        head: u64,
        /// The first sequence number it will deliver.
        next: u64,
    },
    /// Events `requested..oldest` are no longer retained (`outdated_cursor`): the handler
    /// knows it has a gap and can resynchronise with `listrefs`/`get`.
    Gap {
        /// The first sequence number asked for.
        requested: u64,
        /// The oldest retained one (where delivery starts).
        oldest: u64,
    },
    /// A verified, new event, in order.
    Event(Delivered),
    /// A batch or an event that failed verification, dropped (audit it).
    Rejected {
        /// The event's sequence number, when known.
        seq: Option<u64>,
        /// Why (`bad_signature` with a reason).
        error: BverError,
    },
    /// The stream failed (an `error` frame, or a protocol violation by the publisher).
    Failed(BverError),
}

/// Counters of one subscriber.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscriberStats {
    /// Events delivered.
    pub delivered: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Events (or whole batches, counted by their events) rejected.
    pub rejected: u64,
    /// Batches verified.
    pub batches: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    AwaitSubscribed,
    Streaming,
    Closed,
}

/// One subscription stream, subscriber side. See the module docs for the calling order.
#[derive(Debug)]
pub struct Subscriber {
    spec: SubscriptionSpec,
    keys: PeerKeys,
    cursor: Option<Cursor>,
    state: State,
    epoch: String,
    events: VecDeque<SubEvent>,
    stats: SubscriberStats,
}

impl Subscriber {
    /// A subscriber resuming after `cursor` (or starting at `spec.start` without one),
    /// verifying with `keys`.
    pub fn new(spec: SubscriptionSpec, cursor: Option<Cursor>, keys: PeerKeys) -> Self {
        Self {
            spec,
            keys,
            cursor,
            state: State::Start,
            epoch: String::new(),
            events: VecDeque::new(),
            stats: SubscriberStats::default(),
        }
    }

    /// The cursor: the last sequence number delivered (resume after it).
    pub fn cursor(&self) -> Option<&Cursor> {
        self.cursor.as_ref()
    }

    /// Counters.
    pub fn stats(&self) -> SubscriberStats {
        self.stats
    }

    /// The subscription.
    pub fn spec(&self) -> &SubscriptionSpec {
        &self.spec
    }

    /// Whether the stream failed or ended.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The `subscribe` message (once).
    pub fn poll_message(&mut self) -> Option<Message> {
        if self.state != State::Start {
            return None;
        }
        self.state = State::AwaitSubscribed;
        Some(Message::Subscribe(Subscribe {
            channel: self.spec.channel.clone(),
            cursor: self.cursor.clone(),
            start: match self.spec.start {
                Start::Live => None,
                Start::Oldest => Some("oldest".into()),
            },
            filter: self.spec.filter.clone(),
            grant: self.spec.grant.clone(),
            contract: self.spec.contract.clone(),
            max_batch: self.spec.max_batch,
            max_frame: u32::try_from(self.spec.max_frame).ok(),
        }))
    }

    /// Encode the `subscribe` frame into `buf` (once); returns whether it wrote.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> bool {
        match self.poll_message() {
            Some(m) => {
                encode_into(&m, buf);
                true
            }
            None => false,
        }
    }

    /// The next thing to report.
    pub fn poll_event(&mut self) -> Option<SubEvent> {
        self.events.pop_front()
    }

    fn fail(&mut self, e: BverError) {
        self.state = State::Closed;
        self.events.push_back(SubEvent::Failed(e));
    }

    /// The stream ended (the publisher finished it or the connection dropped).
    pub fn handle_end(&mut self) {
        if self.state != State::Closed {
            self.state = State::Closed;
        }
    }

    /// A frame from the publisher, at `now_unix` (seconds: key windows).
    pub fn handle_message(&mut self, msg: Message, now_unix: u64) {
        if self.state == State::Closed {
            return;
        }
        match msg {
            Message::Subscribed(s) if self.state == State::AwaitSubscribed => {
                if let Some(c) = &self.cursor
                    && c.epoch != s.epoch
                {
                    self.fail(protocol("the publisher answered with another epoch"));
                    return;
                }
                self.epoch = s.epoch.clone();
                self.state = State::Streaming;
                self.events.push_back(SubEvent::Subscribed {
                    epoch: s.epoch,
                    head: s.head,
                    next: s.next,
                });
            }
            Message::Notice(n) if self.state == State::Streaming => {
                if n.code == ErrorCode::OutdatedCursor.as_str() {
                    let get = |k: &str| {
                        n.details
                            .as_ref()
                            .and_then(|d| d.get(k))
                            .and_then(serde_json::Value::as_u64)
                            .unwrap_or(0)
                    };
                    let (requested, oldest) = (get("requested"), get("oldest"));
                    // Everything below `oldest` is gone: move the cursor so a reconnect
                    // does not ask again.
                    self.advance(oldest.saturating_sub(1));
                    self.events.push_back(SubEvent::Gap { requested, oldest });
                }
            }
            Message::Batch(b) if self.state == State::Streaming => self.handle_batch(b, now_unix),
            Message::Error(e) => {
                let e = e.to_bver();
                self.fail(e);
            }
            Message::Unknown { .. } => {}
            other => self.fail(protocol(&format!(
                "unexpected message type {} in state {:?}",
                other.type_code(),
                self.state
            ))),
        }
    }

    fn advance(&mut self, seq: u64) {
        match &mut self.cursor {
            Some(c) => c.seq = c.seq.max(seq),
            None => {
                self.cursor = Some(Cursor {
                    epoch: self.epoch.clone(),
                    seq,
                })
            }
        }
    }

    fn handle_batch(&mut self, b: Batch, now_unix: u64) {
        let header = &b.header;
        let reject_all = |s: &mut Self, e: BverError| {
            tracing::warn!(peer = %s.spec.peer, channel = %s.spec.channel, "batch rejected: {}", e.message);
            s.stats.rejected += b.events.len() as u64;
            s.events.push_back(SubEvent::Rejected {
                seq: None,
                error: e,
            });
        };
        if header.origin != self.spec.peer || header.epoch != self.epoch {
            let e = bad_signature(
                "foreign_batch",
                format!(
                    "a batch of {}/{} on a subscription to {}/{}",
                    header.origin, header.epoch, self.spec.peer, self.epoch
                ),
            );
            reject_all(self, e);
            return;
        }
        if let Err(e) = verify_header(&self.keys, header, &b.sig, now_unix) {
            reject_all(self, e);
            return;
        }
        self.stats.batches += 1;
        let batch = Arc::new((b.header, b.sig));
        let header = &batch.0;
        let mut last_index: Option<u32> = None;
        for ev in b.events {
            let seq = header.first_seq.saturating_add(u64::from(ev.index));
            if last_index.is_some_and(|l| ev.index <= l) {
                self.reject(
                    Some(seq),
                    bad_signature("index_order", "batch events out of order"),
                );
                continue;
            }
            last_index = Some(ev.index);
            let Some(expected) = header.event_hashes.get(ev.index as usize) else {
                self.reject(
                    None,
                    bad_signature("index_out_of_range", "event index outside its batch"),
                );
                continue;
            };
            if *expected == ELIDED || event_hash(&ev.bytes.0) != *expected {
                self.reject(
                    Some(seq),
                    bad_signature(
                        "hash_mismatch",
                        format!(
                            "event {}/{}/{seq} does not match its signed hash",
                            header.origin, header.epoch
                        ),
                    ),
                );
                continue;
            }
            // One level for the envelope's own map: the value and each diff operation's
            // value then nest no deeper than the JSON the subscriber stores them as.
            let depth = MAX_JSON_DEPTH + 1;
            let event = match EventEnvelope::from_cbor(&ev.bytes.0, depth) {
                Ok(e) => e,
                Err(e) => {
                    self.reject(
                        Some(seq),
                        bad_signature(
                            "undecodable",
                            format!("signed event {seq} does not decode: {e}"),
                        ),
                    );
                    continue;
                }
            };
            if event.origin != header.origin || event.epoch != header.epoch || event.seq != seq {
                self.reject(
                    Some(seq),
                    bad_signature(
                        "identity_mismatch",
                        format!("event {} at position {seq}", event.id()),
                    ),
                );
                continue;
            }
            if self.cursor.as_ref().is_some_and(|c| seq <= c.seq) {
                self.stats.duplicates += 1;
                continue;
            }
            self.advance(seq);
            self.stats.delivered += 1;
            self.events.push_back(SubEvent::Event(Delivered {
                event,
                batch: Arc::clone(&batch),
                index: ev.index,
            }));
        }
    }

    fn reject(&mut self, seq: Option<u64>, error: BverError) {
        tracing::warn!(peer = %self.spec.peer, channel = %self.spec.channel, ?seq, "event rejected: {}", error.message);
        self.stats.rejected += 1;
        self.events.push_back(SubEvent::Rejected { seq, error });
    }
}

fn protocol(message: &str) -> BverError {
    BverError::new(ErrorCode::MalformedRequest, Phase::Transport, message)
        .with_details(serde_json::json!({ "reason": "protocol_violation" }))
}
