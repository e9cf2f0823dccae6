//! The wire format: length-prefixed CBOR frames and the messages they carry.
//!
//! A frame is a 4-byte big-endian length `N` followed by `N` bytes of CBOR: an array
//! `[type, version, body]` where `type` and `version` are unsigned integers and `body` is a
//! map with text keys. The length is checked against the receiver's maximum *before* any
//! buffer is allocated for the body ([`FrameDecoder`]). A frame whose type (or whose
//! version of a known type) the receiver does not know decodes to [`Message::Unknown`] and is
//! skipped; a frame that is not well formed is a [`FrameError`], after which the stream is
//! answered with an error frame and ended. `docs/eager-protocol.md` is the specification.
//!
//! The message structs are the protocol's DTOs: they serialize here, at the edge, and the
//! state machines in [`crate::proto`] turn them into actions.

use std::fmt;

use bver_contracts::{BatchHeader, BverError, ErrorCode, Phase, SignatureBytes};
use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The ALPN protocol id of EAGER version 1.
pub const ALPN: &[u8] = b"bver-eager/1";
/// The protocol version this implementation speaks (announced in `hello`).
pub const PROTOCOL_VERSION: u32 = 1;
/// Bytes of the length prefix.
pub const LENGTH_PREFIX: usize = 4;
/// Default largest frame body accepted: 4 MiB.
pub const DEFAULT_MAX_FRAME: usize = 4 * 1024 * 1024;
/// The smallest maximum a peer may ask for (a frame limit below it is raised to it).
pub const MIN_MAX_FRAME: usize = 4 * 1024;

/// Stable numeric message types.
pub mod msg_type {
    /// `hello`: first frame of the control stream, both directions.
    pub const HELLO: u64 = 1;
    /// `error`: a terminal failure of the stream (or of one resolve request).
    pub const ERROR: u64 = 2;
    /// `notice`: a non-terminal notice (`outdated_cursor`).
    pub const NOTICE: u64 = 3;
    /// `subscribe`: first frame of a subscription stream, subscriber → publisher.
    pub const SUBSCRIBE: u64 = 16;
    /// `subscribed`: the publisher accepted a subscription.
    pub const SUBSCRIBED: u64 = 17;
    /// `batch`: a signed batch of events.
    pub const BATCH: u64 = 18;
    /// `resolve`: a remote pointer resolution request.
    pub const RESOLVE: u64 = 32;
    /// `resolved`: the signed answer to a `resolve`.
    pub const RESOLVED: u64 = 33;
    /// `list`: a remote listing request (a repo or a whole namespace).
    pub const LIST: u64 = 34;
    /// `listed`: one page of a listing.
    pub const LISTED: u64 = 35;
}

/// Why a frame could not be read. Each ends the stream (after an error frame, when the
/// stream can still carry one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix announces more than the receiver accepts.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    FrameTooLarge {
        /// The announced length.
        len: usize,
        /// The receiver's maximum.
        max: usize,
    },
    /// A zero-length frame.
    #[error("empty frame")]
    Empty,
    /// The body is not the CBOR array `[type, version, body]`, or a known message's body does
    /// not have the fields its type requires.
    #[error("malformed frame: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// The stream ended in the middle of a frame.
    #[error("the stream ended inside a frame ({have} of {need} bytes)")]
    Truncated {
        /// Bytes received of the frame (prefix included).
        have: usize,
        /// Bytes the frame needs (prefix included).
        need: usize,
    },
}

impl FrameError {
    /// The stable reason string carried in an error frame's `reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::FrameTooLarge { .. } => "frame_too_large",
            Self::Empty => "empty_frame",
            Self::Malformed { .. } => "malformed_frame",
            Self::Truncated { .. } => "truncated_frame",
        }
    }
}

impl From<FrameError> for BverError {
    fn from(e: FrameError) -> Self {
        let code = match e {
            FrameError::FrameTooLarge { .. } => ErrorCode::PayloadTooLarge,
            _ => ErrorCode::MalformedRequest,
        };
        let mut details = serde_json::json!({ "reason": e.reason() });
        if let FrameError::FrameTooLarge { len, max } = e {
            details["len"] = len.into();
            details["max"] = max.into();
        }
        BverError::new(code, Phase::Transport, e.to_string()).with_details(details)
    }
}

/// Opaque bytes: a CBOR byte string of any length (the decoder grows the buffer as bytes
/// arrive, never from the declared length).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({} bytes)", self.0.len())
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// `hello` (type 1, version 1): who is speaking, which protocol versions it speaks, and its
/// verifying keys, announced in bytes signed by one of its keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's platform id.
    pub platform: String,
    /// Protocol versions the sender speaks (this implementation: `[1]`).
    pub protocols: Vec<u32>,
    /// CBOR bytes of a [`KeyAnnouncement`]; verified before they are decoded.
    pub keys: Bytes,
    /// Key id (see `bver_auth::KeyId`) of the key that signed `keys`.
    pub keys_kid: String,
    /// Ed25519 signature of the exact `keys` bytes.
    pub keys_sig: SignatureBytes,
}

/// The content of `hello.keys`: the sender's verifying keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyAnnouncement {
    /// The platform the keys belong to (must equal `hello.platform`).
    pub platform: String,
    /// When the announcement was made, unix seconds (newer announcements supersede older).
    pub issued_at: u64,
    /// The keys, current (signing) key first.
    pub keys: Vec<AnnouncedKey>,
}

/// One announced key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnouncedKey {
    /// The raw 32-byte Ed25519 public key.
    pub key: Bytes,
    /// Unix seconds until which signatures by this (retired) key verify; absent for the
    /// current key and for keys announced ahead of a rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<u64>,
}

/// `error` (type 2, version 1): a terminal failure. After sending it the sender finishes the
/// stream (for a resolve stream: the request named by `id` failed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorMsg {
    /// The resolve request this answers, on a resolve stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// The stable `ErrorCode` name (`forbidden`, `invalid_cursor`, ...).
    pub code: String,
    /// A finer stable reason (`wrong_epoch`, `future_seq`, `malformed_frame`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable text.
    pub message: String,
    /// Whether the same request may succeed later.
    pub retryable: bool,
    /// Structured details (JSON data model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// `notice` (type 3, version 1): something the receiver must know, after which the stream
/// goes on (`outdated_cursor`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// The stable code (`outdated_cursor`).
    pub code: String,
    /// Human-readable text.
    pub message: String,
    /// Structured details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// A subscription cursor: the last sequence number the subscriber has processed in `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cursor {
    /// The publisher's outbox epoch.
    pub epoch: String,
    /// The last processed sequence number (0: none yet).
    pub seq: u64,
}

/// Server-side filters of a subscription. Within a list, any entry matches; across lists,
/// all must match; an empty list matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Filter {
    /// Repos (reference types) whose events to deliver.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repos: Vec<String>,
    /// Kinds; `power` also matches `power.substation`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
    /// Pointer prefixes, matched against the canonical pointer text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<String>,
}

impl Filter {
    /// Whether an event about `pointer` (canonical text), in `repo`, of `kind`, passes.
    pub fn matches(&self, pointer: &str, repo: &str, kind: Option<&str>) -> bool {
        let repo_ok = self.repos.is_empty() || self.repos.iter().any(|r| r == repo);
        let kind_ok = self.kinds.is_empty()
            || kind.is_some_and(|k| {
                self.kinds.iter().any(|want| {
                    k == want
                        || (k.len() > want.len()
                            && k.starts_with(want.as_str())
                            && k.as_bytes()[want.len()] == b'.')
                })
            });
        let prefix_ok =
            self.prefixes.is_empty() || self.prefixes.iter().any(|p| pointer.starts_with(p));
        repo_ok && kind_ok && prefix_ok
    }
}

/// A contract package and major version (`grid@2`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractVersion {
    /// The package name.
    pub package: String,
    /// Its major version.
    pub major: u64,
}

/// `subscribe` (type 16, version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscribe {
    /// The channel.
    pub channel: String,
    /// Resume after this cursor; absent: start at `start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<Cursor>,
    /// Without a cursor: `live` (default) or `oldest` (replay all retained events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Server-side filters.
    #[serde(default)]
    pub filter: Filter,
    /// The grant: a JWT issued by the publisher, audience the publisher, subject the
    /// subscriber's platform id.
    pub grant: String,
    /// The payload contract the subscriber was built against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<ContractVersion>,
    /// Most events per batch the subscriber wants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch: Option<u32>,
    /// Largest frame body the subscriber accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_frame: Option<u32>,
}

/// `subscribed` (type 17, version 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribed {
    /// The publisher's outbox epoch.
    pub epoch: String,
    /// The highest committed sequence number when the subscription started.
    pub head: u64,
    /// The oldest retained sequence number.
    pub oldest: u64,
    /// The first sequence number that may be delivered.
    pub next: u64,
}

/// One event of a batch: its index in the header and its exact canonical CBOR bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchEvent {
    /// Index into `header.event_hashes`.
    pub index: u32,
    /// `EventEnvelope::to_canonical_cbor` bytes.
    pub bytes: Bytes,
}

impl Serialize for BatchEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&self.index)?;
        t.serialize_element(&self.bytes)?;
        t.end()
    }
}

impl<'de> Deserialize<'de> for BatchEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (index, bytes) = <(u32, Bytes)>::deserialize(d)?;
        Ok(Self { index, bytes })
    }
}

/// `batch` (type 18, version 1): a signed header and the delivered events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// The header (the signature covers its canonical encoding).
    pub header: BatchHeader,
    /// Ed25519 signature of `header.to_canonical_cbor()` by the key `header.key_id`.
    pub sig: SignatureBytes,
    /// The delivered events, in increasing index order (filtered events are absent).
    pub events: Vec<BatchEvent>,
}

/// `resolve` (type 32, version 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolve {
    /// Request id, echoed in the answer.
    pub id: u64,
    /// The pointer (canonical text, with an optional attribute path).
    pub pointer: String,
    /// Milliseconds the requester will wait; the responder answers `timeout` past it.
    pub deadline_ms: u32,
    /// The grant (as for `subscribe`).
    pub grant: String,
}

/// `resolved` (type 33, version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvedMsg {
    /// The request id.
    pub id: u64,
    /// CBOR bytes of a [`Answer`]; verified before they are decoded.
    pub answer: Bytes,
    /// Key id of the signing key.
    pub kid: String,
    /// Ed25519 signature of the exact `answer` bytes.
    pub sig: SignatureBytes,
}

/// The signed content of a `resolved`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The answering (owning) platform.
    pub origin: String,
    /// The request id (binds the answer to the request).
    pub id: u64,
    /// The pointer as asked (canonical).
    pub pointer: String,
    /// The reference's version.
    pub version: u64,
    /// The reference's kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The addressed value (JSON data model).
    pub value: serde_json::Value,
    /// When that version was made, unix milliseconds.
    pub updated_at: i64,
}

/// `list` (type 34, version 1): one page of the references of a repo (`repo` present) or
/// of a whole namespace (`repo` absent), at the owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct List {
    /// Request id, echoed.
    pub id: u64,
    /// The namespace.
    pub namespace: String,
    /// The repo; absent: every repo of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// Only this kind (or kinds below it); repo listings only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The opaque cursor of the page (from a previous `listed.next`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Most entries.
    pub limit: u32,
    /// Milliseconds the requester will wait.
    pub deadline_ms: u32,
    /// The grant (scope `eager:resolve:NAMESPACE`).
    pub grant: String,
}

/// One entry of a `listed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedRef {
    /// The reference's canonical pointer.
    pub pointer: String,
    /// Its current version.
    pub version: u64,
    /// Its kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// When its current version was made, unix milliseconds.
    pub updated_at: i64,
}

/// `listed` (type 35, version 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedMsg {
    /// The request id.
    pub id: u64,
    /// The entries.
    pub items: Vec<ListedRef>,
    /// The cursor of the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Message {
    /// `hello`.
    Hello(Hello),
    /// `error`.
    Error(ErrorMsg),
    /// `notice`.
    Notice(Notice),
    /// `subscribe`.
    Subscribe(Subscribe),
    /// `subscribed`.
    Subscribed(Subscribed),
    /// `batch`.
    Batch(Batch),
    /// `resolve`.
    Resolve(Resolve),
    /// `resolved`.
    Resolved(ResolvedMsg),
    /// `list`.
    List(List),
    /// `listed`.
    Listed(ListedMsg),
    /// A type (or a version of a known type) this implementation does not know: skipped.
    Unknown {
        /// The type.
        ty: u64,
        /// The version.
        version: u64,
    },
}

impl Message {
    /// The message's type code.
    pub fn type_code(&self) -> u64 {
        match self {
            Self::Hello(_) => msg_type::HELLO,
            Self::Error(_) => msg_type::ERROR,
            Self::Notice(_) => msg_type::NOTICE,
            Self::Subscribe(_) => msg_type::SUBSCRIBE,
            Self::Subscribed(_) => msg_type::SUBSCRIBED,
            Self::Batch(_) => msg_type::BATCH,
            Self::Resolve(_) => msg_type::RESOLVE,
            Self::Resolved(_) => msg_type::RESOLVED,
            Self::List(_) => msg_type::LIST,
            Self::Listed(_) => msg_type::LISTED,
            Self::Unknown { ty, .. } => *ty,
        }
    }

    /// A terminal error frame from a [`BverError`].
    pub fn error(e: &BverError, id: Option<u64>) -> Self {
        let reason = e
            .details
            .get("reason")
            .and_then(|r| r.as_str())
            .map(str::to_owned);
        Self::Error(ErrorMsg {
            id,
            code: e.code.as_str().to_owned(),
            reason,
            message: e.message.clone(),
            retryable: e.retryable,
            details: (!e.details.is_null()).then(|| e.details.clone()),
        })
    }
}

impl ErrorMsg {
    /// The shared error this frame reports (phase `transport` unless the code says
    /// otherwise; an unknown code becomes `internal`).
    pub fn to_bver(&self) -> BverError {
        let code: ErrorCode = serde_json::from_value(serde_json::Value::String(self.code.clone()))
            .unwrap_or(ErrorCode::Internal);
        let phase = match code {
            ErrorCode::Forbidden => Phase::Authorization,
            ErrorCode::Unauthenticated | ErrorCode::UnknownPeer => Phase::Authentication,
            ErrorCode::NotFound | ErrorCode::InvalidPointer => Phase::Resolution,
            _ => Phase::Transport,
        };
        let mut details = self.details.clone().unwrap_or(serde_json::Value::Null);
        if let Some(reason) = &self.reason {
            if details.is_null() {
                details = serde_json::json!({});
            }
            if let Some(map) = details.as_object_mut() {
                map.entry("reason").or_insert_with(|| reason.clone().into());
            }
        }
        BverError::new(code, phase, self.message.clone())
            .retryable(self.retryable)
            .with_details(details)
    }
}

fn enc<T: Serialize>(ty: u64, body: &T, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; LENGTH_PREFIX]);
    struct Frame<'a, T>(u64, &'a T);
    impl<T: Serialize> Serialize for Frame<'_, T> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut t = s.serialize_tuple(3)?;
            t.serialize_element(&self.0)?;
            t.serialize_element(&1u64)?;
            t.serialize_element(self.1)?;
            t.end()
        }
    }
    // Writing into a Vec cannot fail, and every message type serializes (no maps with
    // non-string keys, no custom errors).
    if ciborium::into_writer(&Frame(ty, body), &mut *out).is_err() {
        out.truncate(start);
        return;
    }
    let len = (out.len() - start - LENGTH_PREFIX) as u32;
    out[start..start + LENGTH_PREFIX].copy_from_slice(&len.to_be_bytes());
}

/// Append the frame of `msg` (length prefix included) to `out`. [`Message::Unknown`] writes
/// nothing.
pub fn encode_into(msg: &Message, out: &mut Vec<u8>) {
    match msg {
        Message::Hello(m) => enc(msg_type::HELLO, m, out),
        Message::Error(m) => enc(msg_type::ERROR, m, out),
        Message::Notice(m) => enc(msg_type::NOTICE, m, out),
        Message::Subscribe(m) => enc(msg_type::SUBSCRIBE, m, out),
        Message::Subscribed(m) => enc(msg_type::SUBSCRIBED, m, out),
        Message::Batch(m) => enc(msg_type::BATCH, m, out),
        Message::Resolve(m) => enc(msg_type::RESOLVE, m, out),
        Message::Resolved(m) => enc(msg_type::RESOLVED, m, out),
        Message::List(m) => enc(msg_type::LIST, m, out),
        Message::Listed(m) => enc(msg_type::LISTED, m, out),
        Message::Unknown { .. } => {}
    }
}

/// The frame of `msg`, length prefix included.
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(msg, &mut out);
    out
}

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = Message;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array [type, version, body]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Message, A::Error> {
        let ty: u64 = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let version: u64 = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        fn body<'de, A: SeqAccess<'de>, T: Deserialize<'de>>(seq: &mut A) -> Result<T, A::Error> {
            seq.next_element()?
                .ok_or_else(|| de::Error::invalid_length(2, &"an array of three items"))
        }
        let msg = match (ty, version) {
            (msg_type::HELLO, 1) => Message::Hello(body(&mut seq)?),
            (msg_type::ERROR, 1) => Message::Error(body(&mut seq)?),
            (msg_type::NOTICE, 1) => Message::Notice(body(&mut seq)?),
            (msg_type::SUBSCRIBE, 1) => Message::Subscribe(body(&mut seq)?),
            (msg_type::SUBSCRIBED, 1) => Message::Subscribed(body(&mut seq)?),
            (msg_type::BATCH, 1) => Message::Batch(body(&mut seq)?),
            (msg_type::RESOLVE, 1) => Message::Resolve(body(&mut seq)?),
            (msg_type::RESOLVED, 1) => Message::Resolved(body(&mut seq)?),
            (msg_type::LIST, 1) => Message::List(body(&mut seq)?),
            (msg_type::LISTED, 1) => Message::Listed(body(&mut seq)?),
            _ => {
                let _: IgnoredAny = body(&mut seq)?;
                Message::Unknown { ty, version }
            }
        };
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(de::Error::invalid_length(4, &"an array of three items"));
        }
        Ok(msg)
    }
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(MessageVisitor)
    }
}

/// Decode one frame body (the bytes after the length prefix).
pub fn decode_body(body: &[u8]) -> Result<Message, FrameError> {
    if body.is_empty() {
        return Err(FrameError::Empty);
    }
    let mut reader = body;
    let msg: Message = ciborium::from_reader(&mut reader).map_err(|e| FrameError::Malformed {
        reason: clip(&e.to_string()),
    })?;
    if !reader.is_empty() {
        return Err(FrameError::Malformed {
            reason: format!("{} bytes after the message", reader.len()),
        });
    }
    Ok(msg)
}

fn clip(s: &str) -> String {
    const MAX: usize = 200;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// An incremental frame decoder: feed bytes as they arrive ([`FrameDecoder::push`]), take
/// complete messages out ([`FrameDecoder::next_message`]).
///
/// The length prefix is checked against the maximum before the body is buffered, so a peer
/// cannot make the receiver allocate more than `max_frame` (plus one read's worth) bytes.
/// After an error the decoder stays failed: the stream must end.
#[derive(Debug)]
pub struct FrameDecoder {
    max_frame: usize,
    buf: Vec<u8>,
    pos: usize,
    failed: Option<FrameError>,
}

impl FrameDecoder {
    /// A decoder accepting frame bodies up to `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self {
            max_frame,
            buf: Vec::new(),
            pos: 0,
            failed: None,
        }
    }

    /// The maximum frame body.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Bytes buffered and not yet consumed.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Append received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// How many more bytes are needed to complete the frame being received (at least 1 when
    /// no complete frame is buffered), for drivers that read exactly.
    pub fn wanted(&self) -> usize {
        let avail = self.buffered();
        if avail < LENGTH_PREFIX {
            return LENGTH_PREFIX - avail;
        }
        let len = self.peek_len();
        (LENGTH_PREFIX + len).saturating_sub(avail).max(1)
    }

    fn peek_len(&self) -> usize {
        let p = &self.buf[self.pos..self.pos + LENGTH_PREFIX];
        u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize
    }

    /// The next complete frame's message, `Ok(None)` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Message>, FrameError> {
        match self.next_frame()? {
            None => Ok(None),
            Some((start, end)) => {
                let result = decode_body(&self.buf[start..end]);
                self.pos = end;
                self.compact();
                result
                    .map(Some)
                    .inspect_err(|e| self.failed = Some(e.clone()))
            }
        }
    }

    fn next_frame(&mut self) -> Result<Option<(usize, usize)>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.buffered() < LENGTH_PREFIX {
            return Ok(None);
        }
        let len = self.peek_len();
        if len > self.max_frame {
            let e = FrameError::FrameTooLarge {
                len,
                max: self.max_frame,
            };
            self.failed = Some(e.clone());
            return Err(e);
        }
        if len == 0 {
            self.failed = Some(FrameError::Empty);
            return Err(FrameError::Empty);
        }
        if self.buffered() < LENGTH_PREFIX + len {
            return Ok(None);
        }
        let start = self.pos + LENGTH_PREFIX;
        Ok(Some((start, start + len)))
    }

    fn compact(&mut self) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 64 * 1024 && self.pos * 2 > self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }

    /// Call when the stream ended: an error if it ended inside a frame.
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let have = self.buffered();
        if have == 0 {
            return Ok(());
        }
        let need = if have < LENGTH_PREFIX {
            LENGTH_PREFIX
        } else {
            LENGTH_PREFIX + self.peek_len()
        };
        Err(FrameError::Truncated { have, need })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn subscribed_frame_vector() {
        let msg = Message::Subscribed(Subscribed {
            epoch: "e1".into(),
            head: 10,
            oldest: 1,
            next: 4,
        });
        let bytes = encode(&msg);
        // [17, 1, {"epoch": "e1", "head": 10, "oldest": 1, "next": 4}]
        assert_eq!(
            hex(&bytes),
            "00000021831101a46565706f636862653164686561640a666f6c64657374016\
             46e65787404"
                .replace(' ', "")
        );
        let mut d = FrameDecoder::new(1024);
        d.push(&bytes);
        assert_eq!(d.next_message().unwrap(), Some(msg));
        assert_eq!(d.next_message().unwrap(), None);
        d.finish().unwrap();
    }

    #[test]
    fn too_large_is_refused_before_buffering() {
        let mut d = FrameDecoder::new(16);
        d.push(&[0, 0, 0, 17]);
        assert_eq!(
            d.next_message(),
            Err(FrameError::FrameTooLarge { len: 17, max: 16 })
        );
        // The decoder stays failed.
        d.push(&[0; 17]);
        assert!(d.next_message().is_err());
    }

    #[test]
    fn unknown_type_and_version_are_skipped() {
        // [99, 1, {"x": 1}] then [17, 7, {}]
        let mut bytes = vec![0, 0, 0, 7, 0x83, 0x18, 99, 0x01, 0xa1, 0x61, b'x'];
        bytes.push(0x01);
        bytes[3] = (bytes.len() - 4) as u8;
        let mut d = FrameDecoder::new(64);
        d.push(&bytes);
        d.push(&[0, 0, 0, 4, 0x83, 0x11, 0x07, 0xa0]);
        assert_eq!(
            d.next_message().unwrap(),
            Some(Message::Unknown { ty: 99, version: 1 })
        );
        assert_eq!(
            d.next_message().unwrap(),
            Some(Message::Unknown {
                ty: msg_type::SUBSCRIBED,
                version: 7
            })
        );
    }

    #[test]
    fn malformed_and_truncated() {
        let mut d = FrameDecoder::new(64);
        d.push(&[0, 0, 0, 1, 0xff]);
        assert!(matches!(
            d.next_message(),
            Err(FrameError::Malformed { .. })
        ));
        let mut d = FrameDecoder::new(64);
        d.push(&[0, 0, 0, 0]);
        assert_eq!(d.next_message(), Err(FrameError::Empty));
        let mut d = FrameDecoder::new(64);
        d.push(&[0, 0, 0, 9, 0x83]);
        assert_eq!(d.next_message(), Ok(None));
        assert_eq!(d.finish(), Err(FrameError::Truncated { have: 5, need: 13 }));
        // Trailing bytes inside a frame.
        let mut d = FrameDecoder::new(64);
        d.push(&[0, 0, 0, 5, 0x83, 0x11, 0x07, 0xa0, 0x00]);
        assert!(matches!(
            d.next_message(),
            Err(FrameError::Malformed { .. })
        ));
    }

    #[test]
    fn filter_matching() {
        let f = Filter {
            repos: vec!["site".into()],
            kinds: vec!["power".into()],
            prefixes: vec!["bver://sites/site/".into()],
        };
        assert!(f.matches("bver://sites/site/1", "site", Some("power.substation")));
        assert!(f.matches("bver://sites/site/1", "site", Some("power")));
        assert!(!f.matches("bver://sites/site/1", "site", Some("powerline")));
        assert!(!f.matches("bver://sites/site/1", "site", None));
        assert!(!f.matches("bver://sites/line/1", "line", Some("power")));
        assert!(Filter::default().matches("x", "y", None));
    }
}
