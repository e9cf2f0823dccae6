//! The publisher side of one subscription stream: check the `subscribe`, answer
//! `subscribed` (or an `error`), then read the channel from the cursor on and send signed,
//! bounded batches, forever: replay and live delivery are one loop ("read from `next` while
//! `next <= head`"), so the switch from one to the other has no gap and no reordering.
//!
//! Calling order (the driver's loop):
//!
//! 1. [`Publisher::handle_subscribe`] with the first frame, the channel's metadata, the
//!    outbox position, the grant verifier and `now`;
//! 2. loop: drain [`Publisher::poll_transmit`] onto the stream; if
//!    [`Publisher::poll_read`] asks for a read, perform it and hand the answer to
//!    [`Publisher::handle_read`]; otherwise wait for the head to move
//!    ([`Publisher::handle_head`]), for a frame from the subscriber
//!    ([`Publisher::handle_message`]) or for a tick ([`Publisher::handle_tick`], which
//!    re-checks the grant so that a revocation cuts a live stream);
//! 3. stop when [`Publisher::is_closed`] and everything is transmitted.
//!
//! The publisher keeps no state about the subscriber beyond this stream.

use std::collections::VecDeque;

use bver_auth::{PlatformKey, Principal, Scope};
use bver_contracts::{BverError, ErrorCode, EventEnvelope, Phase};

use crate::sign::{ELIDED, event_hash, sign_batch};
use crate::source::{ChannelInfo, GrantVerifier, OutboxPosition, ReadBatch};
use crate::wire::{
    Batch, BatchEvent, Bytes, DEFAULT_MAX_FRAME, Filter, MIN_MAX_FRAME, Message, Notice, Subscribe,
    Subscribed, encode_into,
};

/// Limits of the publisher.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// This platform's id (the origin of its events).
    pub platform: String,
    /// Most events delivered per batch (the subscriber may ask for fewer).
    pub max_batch: usize,
    /// Most sequence numbers one header covers (delivered, filtered and elided).
    pub max_span: usize,
    /// Largest frame body sent (the subscriber may ask for less).
    pub max_frame: usize,
    /// Events read from the source per read.
    pub read_limit: usize,
}

impl PublisherConfig {
    /// Defaults: 512 events per batch, 2,048 sequence numbers per header, 4 MiB frames,
    /// 2,048 events per read.
    pub fn new(platform: impl Into<String>) -> Self {
        Self {
            platform: platform.into(),
            max_batch: 512,
            max_span: 2048,
            max_frame: DEFAULT_MAX_FRAME,
            read_limit: 2048,
        }
    }
}

/// A read the driver must perform: [`crate::source::EventSource::read`] of `channel` from
/// `from_seq`, at most `limit` events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    /// The channel.
    pub channel: String,
    /// The first sequence number wanted.
    pub from_seq: u64,
    /// Most events.
    pub limit: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitSubscribe,
    Streaming,
    Closed,
}

/// Counters of one publisher stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublisherStats {
    /// Batches sent.
    pub batches: u64,
    /// Events sent.
    pub events: u64,
    /// Events read but held back by the subscription's filter.
    pub filtered: u64,
}

/// One subscription stream, publisher side. See the module docs for the calling order.
#[derive(Debug)]
pub struct Publisher {
    config: PublisherConfig,
    peer: String,
    state: State,
    channel: String,
    filter: Filter,
    grant: String,
    epoch: String,
    head: u64,
    next: u64,
    max_batch: usize,
    max_frame: usize,
    read_in_flight: bool,
    out: VecDeque<Message>,
    stats: PublisherStats,
}

impl Publisher {
    /// A stream from the peer platform `peer` (its TLS-authenticated id).
    pub fn new(config: PublisherConfig, peer: impl Into<String>) -> Self {
        Self {
            max_batch: config.max_batch.max(1),
            max_frame: config.max_frame,
            config,
            peer: peer.into(),
            state: State::AwaitSubscribe,
            channel: String::new(),
            filter: Filter::default(),
            grant: String::new(),
            epoch: String::new(),
            head: 0,
            next: 0,
            read_in_flight: false,
            out: VecDeque::new(),
            stats: PublisherStats::default(),
        }
    }

    /// The channel, once subscribed.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The next sequence number to deliver.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Counters.
    pub fn stats(&self) -> PublisherStats {
        self.stats
    }

    /// Whether the stream is over (after its last frames are transmitted).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    fn fail(&mut self, e: &BverError) {
        tracing::info!(peer = %self.peer, channel = %self.channel, code = %e.code, "subscription refused or ended: {}", e.message);
        self.out.push_back(Message::error(e, None));
        self.state = State::Closed;
    }

    fn check_grant(
        &self,
        grants: &dyn GrantVerifier,
        now_unix: u64,
    ) -> Result<Principal, BverError> {
        check_grant(
            grants,
            &self.grant,
            &self.peer,
            &format!("eager:subscribe:{}", self.channel),
            now_unix,
        )
    }

    /// The first frame of the stream. Queues `subscribed` (and an `outdated_cursor` notice
    /// when the cursor is older than the retained events) or a terminal `error`.
    pub fn handle_subscribe(
        &mut self,
        sub: Subscribe,
        channel: Option<ChannelInfo>,
        pos: OutboxPosition,
        grants: &dyn GrantVerifier,
        now_unix: u64,
    ) {
        if self.state != State::AwaitSubscribe {
            let e = malformed("second_subscribe", "a stream carries one subscription");
            self.fail(&e);
            return;
        }
        self.channel = sub.channel;
        self.grant = sub.grant;
        self.filter = sub.filter;
        if let Err(e) = self.check_grant(grants, now_unix) {
            self.fail(&e);
            return;
        }
        let Some(info) = channel else {
            let e = BverError::new(
                ErrorCode::NotFound,
                Phase::Resolution,
                format!(
                    "`{}` publishes no channel `{}`",
                    self.config.platform, self.channel
                ),
            )
            .with_details(serde_json::json!({ "reason": "unknown_channel" }));
            self.fail(&e);
            return;
        };
        if let (Some(have), Some(want)) = (&info.contract, &sub.contract)
            && (have.package != want.package || have.major != want.major)
        {
            let reason = if have.package != want.package {
                "package_mismatch"
            } else {
                "major_mismatch"
            };
            let e = BverError::new(
                ErrorCode::IncompatibleContract,
                Phase::Configuration,
                format!(
                    "channel `{}` carries {}@{}, the subscriber expects {}@{}",
                    self.channel, have.package, have.major, want.package, want.major
                ),
            )
            .with_details(serde_json::json!({
                "reason": reason,
                "published": { "package": have.package, "major": have.major },
                "expected": { "package": want.package, "major": want.major },
            }));
            self.fail(&e);
            return;
        }
        self.epoch = pos.epoch.clone();
        self.head = pos.head;
        let oldest = pos.oldest.max(1);
        let mut notice = None;
        self.next = match &sub.cursor {
            Some(c) if c.epoch != pos.epoch => {
                let e = invalid_cursor(
                    "wrong_epoch",
                    format!(
                        "the cursor names epoch `{}`, the outbox is at epoch `{}`",
                        c.epoch, pos.epoch
                    ),
                )
                .with_details(serde_json::json!({
                    "reason": "wrong_epoch",
                    "cursor": { "epoch": c.epoch, "seq": c.seq },
                    "epoch": pos.epoch,
                }));
                self.fail(&e);
                return;
            }
            Some(c) if c.seq > pos.head => {
                let e = invalid_cursor(
                    "future_seq",
                    format!("the cursor {} is beyond the head {}", c.seq, pos.head),
                )
                .with_details(serde_json::json!({
                    "reason": "future_seq",
                    "cursor": { "epoch": c.epoch, "seq": c.seq },
                    "head": pos.head,
                }));
                self.fail(&e);
                return;
            }
            Some(c) if c.seq + 1 < oldest => {
                notice = Some(Message::Notice(Notice {
                    code: ErrorCode::OutdatedCursor.as_str().to_owned(),
                    message: format!(
                        "events {}..{} are no longer retained; delivery starts at {}",
                        c.seq + 1,
                        oldest,
                        oldest
                    ),
                    details: Some(serde_json::json!({
                        "requested": c.seq + 1,
                        "oldest": oldest,
                    })),
                }));
                oldest
            }
            Some(c) => c.seq + 1,
            None if sub.start.as_deref() == Some("oldest") => oldest,
            None => pos.head + 1,
        };
        if let Some(b) = sub.max_batch {
            self.max_batch = self.max_batch.min((b as usize).max(1));
        }
        if let Some(f) = sub.max_frame {
            self.max_frame = self.max_frame.min((f as usize).max(MIN_MAX_FRAME));
        }
        self.out.push_back(Message::Subscribed(Subscribed {
            epoch: pos.epoch,
            head: pos.head,
            oldest,
            next: self.next,
        }));
        self.out.extend(notice);
        self.state = State::Streaming;
    }

    /// A frame from the subscriber after `subscribe`: nothing is expected; unknown frames
    /// are skipped, an `error` ends the stream.
    pub fn handle_message(&mut self, msg: Message) {
        match msg {
            Message::Subscribe(_) if self.state == State::Streaming => {
                let e = malformed("second_subscribe", "a stream carries one subscription");
                self.fail(&e);
            }
            Message::Error(_) => self.state = State::Closed,
            _ => {}
        }
    }

    /// The head moved (or a new epoch began: the stream then ends with
    /// `invalid_cursor`/`epoch_changed`, and the subscriber resynchronises).
    pub fn handle_head(&mut self, epoch: &str, head: u64) {
        if self.state != State::Streaming {
            return;
        }
        if epoch != self.epoch {
            let e = invalid_cursor(
                "epoch_changed",
                format!("the outbox moved from epoch `{}` to `{epoch}`", self.epoch),
            );
            self.fail(&e);
            return;
        }
        self.head = self.head.max(head);
    }

    /// Re-check the grant (expiry, revocation) at `now`; a failure ends the stream.
    pub fn handle_tick(&mut self, grants: &dyn GrantVerifier, now_unix: u64) {
        if self.state == State::Streaming
            && let Err(e) = self.check_grant(grants, now_unix)
        {
            self.fail(&e);
        }
    }

    /// The read to perform, if any: one at a time, only while the stream is streaming,
    /// nothing is waiting to be transmitted and `next <= head`.
    pub fn poll_read(&mut self) -> Option<ReadRequest> {
        if self.state != State::Streaming
            || self.read_in_flight
            || !self.out.is_empty()
            || self.next > self.head
        {
            return None;
        }
        self.read_in_flight = true;
        Some(ReadRequest {
            channel: self.channel.clone(),
            from_seq: self.next,
            limit: self.config.read_limit.max(1),
        })
    }

    /// The answer to the last [`ReadRequest`]: builds and signs the batches (with `key`),
    /// after re-checking the grant.
    pub fn handle_read(
        &mut self,
        result: Result<ReadBatch, BverError>,
        key: &PlatformKey,
        grants: &dyn GrantVerifier,
        now_unix: u64,
    ) {
        self.read_in_flight = false;
        if self.state != State::Streaming {
            return;
        }
        let read = match result {
            Ok(r) => r,
            Err(e) => {
                self.fail(&e);
                return;
            }
        };
        if let Err(e) = self.check_grant(grants, now_unix) {
            self.fail(&e);
            return;
        }
        if let Err(e) = self.build_batches(read, key) {
            self.fail(&e);
        }
    }

    fn build_batches(&mut self, read: ReadBatch, key: &PlatformKey) -> Result<(), BverError> {
        let from = self.next;
        if read.scanned_to + 1 < from {
            return Err(BverError::internal(format!(
                "the event source scanned to {} for a read from {from}",
                read.scanned_to
            )));
        }
        let mut prev = from.saturating_sub(1);
        let mut builder = BatchBuilder::new(self.max_batch, self.config.max_span, self.max_frame);
        for e in read.events {
            if e.seq <= prev || e.seq > read.scanned_to {
                return Err(BverError::internal(format!(
                    "the event source returned seq {} out of order (after {prev}, scanned to {})",
                    e.seq, read.scanned_to
                )));
            }
            if e.origin != self.config.platform || e.epoch != self.epoch {
                return Err(BverError::internal(format!(
                    "the event source returned {} in a read of {}/{}",
                    e.id(),
                    self.config.platform,
                    self.epoch
                )));
            }
            prev = e.seq;
            let deliver = self.filter.matches(
                e.pointer.reference_str(),
                e.pointer.repo(),
                e.kind.as_deref(),
            );
            if !deliver {
                self.stats.filtered += 1;
            }
            self.push_event(&mut builder, &e, deliver, key)?;
        }
        if let Some(batch) = builder.finish(self, key) {
            self.queue_batch(batch);
        }
        self.next = read.scanned_to + 1;
        self.head = self.head.max(read.scanned_to);
        Ok(())
    }

    fn push_event(
        &mut self,
        b: &mut BatchBuilder,
        e: &EventEnvelope,
        deliver: bool,
        key: &PlatformKey,
    ) -> Result<(), BverError> {
        let bytes = e.to_canonical_cbor();
        let hash = event_hash(&bytes);
        if deliver && bytes.len() + FRAME_OVERHEAD + 2 * HASH_COST > self.max_frame {
            return Err(BverError::new(
                ErrorCode::PayloadTooLarge,
                Phase::Transport,
                format!(
                    "event {} is {} bytes, more than a frame of {} can carry",
                    e.id(),
                    bytes.len(),
                    self.max_frame
                ),
            )
            .with_details(serde_json::json!({ "reason": "event_too_large", "seq": e.seq })));
        }
        if !b.fits(e.seq, deliver.then_some(bytes.len()))
            && let Some(batch) = b.finish(self, key)
        {
            self.queue_batch(batch);
        }
        b.push(e.seq, hash, deliver.then_some(bytes));
        Ok(())
    }

    fn queue_batch(&mut self, batch: Batch) {
        self.stats.batches += 1;
        self.stats.events += batch.events.len() as u64;
        self.out.push_back(Message::Batch(batch));
    }

    /// The next frame to send, if any.
    pub fn poll_message(&mut self) -> Option<Message> {
        self.out.pop_front()
    }

    /// Encode every queued frame into `buf`; returns whether anything was written.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> bool {
        let mut wrote = false;
        while let Some(m) = self.out.pop_front() {
            encode_into(&m, buf);
            wrote = true;
        }
        wrote
    }
}

/// Encoded bytes per header hash (a 32-byte byte string).
const HASH_COST: usize = 34;
/// Frame, header and signature overhead, generously.
const FRAME_OVERHEAD: usize = 512;

/// Accumulates one batch: the hashes of a run of sequence numbers and the delivered events.
struct BatchBuilder {
    max_batch: usize,
    max_span: usize,
    max_frame: usize,
    first: u64,
    last: u64,
    hashes: Vec<bver_contracts::Hash256>,
    events: Vec<BatchEvent>,
    size: usize,
}

impl BatchBuilder {
    fn new(max_batch: usize, max_span: usize, max_frame: usize) -> Self {
        Self {
            max_batch,
            max_span: max_span.max(1),
            max_frame,
            first: 0,
            last: 0,
            hashes: Vec::new(),
            events: Vec::new(),
            size: FRAME_OVERHEAD,
        }
    }

    /// Whether an event at `seq` (delivered with `len` bytes, or only hashed) fits.
    fn fits(&self, seq: u64, len: Option<usize>) -> bool {
        if self.events.is_empty() {
            return true;
        }
        let span = (seq - self.first + 1) as usize;
        let added = (seq - self.last) as usize * HASH_COST + len.map_or(0, |l| l + 8);
        span <= self.max_span
            && (len.is_none() || self.events.len() < self.max_batch)
            && self.size + added <= self.max_frame
    }

    fn push(&mut self, seq: u64, hash: bver_contracts::Hash256, bytes: Option<Vec<u8>>) {
        if self.events.is_empty() {
            // A batch starts at a delivered event: hashes of held-back events before it
            // are not worth carrying.
            let Some(bytes) = bytes else {
                return;
            };
            self.first = seq;
            self.last = seq;
            self.hashes.clear();
            self.hashes.push(hash);
            self.size = FRAME_OVERHEAD + HASH_COST + bytes.len() + 8;
            self.events.push(BatchEvent {
                index: 0,
                bytes: Bytes(bytes),
            });
            return;
        }
        for _ in self.last + 1..seq {
            self.hashes.push(ELIDED);
        }
        self.size += (seq - self.last) as usize * HASH_COST;
        self.hashes.push(hash);
        self.last = seq;
        if let Some(bytes) = bytes {
            self.size += bytes.len() + 8;
            self.events.push(BatchEvent {
                index: (seq - self.first) as u32,
                bytes: Bytes(bytes),
            });
        }
    }

    /// The signed batch (trimmed to its last delivered event), or `None` when empty.
    fn finish(&mut self, p: &Publisher, key: &PlatformKey) -> Option<Batch> {
        let last_index = self.events.last()?.index as usize;
        let mut hashes = std::mem::take(&mut self.hashes);
        hashes.truncate(last_index + 1);
        let events = std::mem::take(&mut self.events);
        let (header, sig) = sign_batch(key, &p.config.platform, &p.epoch, self.first, hashes);
        self.size = FRAME_OVERHEAD;
        Some(Batch {
            header,
            sig,
            events,
        })
    }
}

pub(crate) fn malformed(reason: &str, message: impl Into<String>) -> BverError {
    BverError::new(ErrorCode::MalformedRequest, Phase::Transport, message)
        .with_details(serde_json::json!({ "reason": reason }))
}

fn invalid_cursor(reason: &str, message: String) -> BverError {
    BverError::new(ErrorCode::InvalidCursor, Phase::InputValidation, message)
        .retryable(false)
        .with_details(serde_json::json!({ "reason": reason }))
}

/// Verify `grant` for `peer` and require `scope`: the grant must verify, name the peer as
/// its subject, and hold the scope.
pub(crate) fn check_grant(
    grants: &dyn GrantVerifier,
    grant: &str,
    peer: &str,
    scope: &str,
    now_unix: u64,
) -> Result<Principal, BverError> {
    let required = Scope::parse(scope).map_err(|e| {
        malformed(
            "invalid_name",
            format!("`{scope}` is not a valid scope: {e}"),
        )
    })?;
    let principal = grants.verify(grant, now_unix)?;
    if principal.subject != peer {
        return Err(BverError::new(
            ErrorCode::Forbidden,
            Phase::Authorization,
            format!(
                "the grant was issued to `{}`, not to the connected peer `{peer}`",
                principal.subject
            ),
        )
        .retryable(false)
        .with_details(serde_json::json!({ "reason": "subject_mismatch" })));
    }
    principal.require(&required)?;
    Ok(principal)
}
