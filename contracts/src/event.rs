//! Event envelopes: what a mutation or a named trigger emits into the outbox and over EAGER.
//!
//! An [`EventEnvelope`] is identified by its [`EventId`]: the origin platform, the outbox
//! epoch and the sequence number within that epoch. It names the trigger that fired
//! (`refs.site.updated`), the reference and version it is about, the RFC 6902 diff and,
//! optionally, the new value.
//!
//! **Signing** (DESIGN "EAGER"): the origin signs *batches*. A [`BatchHeader`] lists the hash
//! of each event's canonical bytes ([`EventEnvelope::to_canonical_cbor`]); the header's own
//! canonical bytes ([`BatchHeader::to_canonical_cbor`]) are what the platform key signs. An
//! event carries its proof of membership ([`BatchProof`]: the header, the signature and the
//! event's index in it) in its `signature` field, so a stored or relayed event stays
//! verifiable on its own. This crate does no cryptography: it defines the bytes and checks
//! the proof's shape ([`EventEnvelope::expected_hash`]); `auth` hashes, signs and verifies.
//!
//! **Canonical CBOR** (RFC 8949 §4.2.1, core deterministic encoding): definite lengths,
//! integers and lengths in their shortest form, floats in the shortest width that keeps the
//! value, no tags, map keys sorted bytewise by their encoding (for text keys: shorter first,
//! then bytewise). A field that is absent (`None`) is omitted, never written as `null`; a
//! `value` of JSON `null` counts as absent. The canonical bytes decode, with ciborium or any
//! CBOR library, to the same envelope without its signature. The fixed vectors in
//! `contracts/tests/contract_types.rs` pin them.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cbor::Writer;
use crate::error::{BverError, ErrorCode, Phase};
use crate::pointer::RefPtr;
use crate::version::{ChangeType, Diff, PatchOp};

/// The identity of an event: `(platform, epoch, seq)`. Subscribers drop duplicates by it and
/// resume from it.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub struct EventId {
    /// The origin platform's stable id (`sites`).
    pub platform: String,
    /// The outbox epoch: a random id minted when the platform's outbox was created or
    /// restored from backup.
    pub epoch: String,
    /// Position in the epoch's outbox, dense from 1.
    pub seq: u64,
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.platform, self.epoch, self.seq)
    }
}

/// One event, as stored in the outbox and carried over EAGER.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventEnvelope {
    /// The origin platform's id.
    pub origin: String,
    /// The origin's outbox epoch.
    pub epoch: String,
    /// Position in the epoch's outbox, dense from 1.
    pub seq: u64,
    /// The trigger that fired: a built-in `refs.{repo}.{change}` or a named trigger.
    pub trigger: String,
    /// The reference the event is about (whole-reference pointer).
    pub pointer: RefPtr,
    /// The reference's version after the change.
    pub version: u64,
    /// The kind after the change, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The change that made the version, when the event comes from a mutation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<ChangeType>,
    /// RFC 6902 diff from the previous version's value.
    #[serde(default)]
    pub diff: Diff,
    /// The new value, when the channel carries values (absent for a deletion, or on
    /// diff-only channels). A JSON `null` is treated as absent.
    #[serde(default, skip_serializing_if = "value_absent")]
    pub value: Option<Value>,
    /// Commit time, unix milliseconds.
    pub time: i64,
    /// The proof that the origin signed this event (absent in the outbox before its batch
    /// is signed). Not part of the canonical bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<BatchProof>,
}

fn value_absent(v: &Option<Value>) -> bool {
    v.as_ref().is_none_or(Value::is_null)
}

impl EventEnvelope {
    /// The event's identity.
    pub fn id(&self) -> EventId {
        EventId {
            platform: self.origin.clone(),
            epoch: self.epoch.clone(),
            seq: self.seq,
        }
    }

    /// The deterministic CBOR encoding of the envelope without its `signature` (RFC 8949
    /// §4.2.1; see the module docs): the exact bytes whose hash a [`BatchHeader`] lists.
    ///
    /// The map's keys, in canonical order: `seq`, `diff`, `kind`?, `time`, `epoch`,
    /// `value`?, `change`?, `origin`, `pointer`, `trigger`, `version` (`?`: omitted when
    /// absent). `pointer` is its canonical text, `diff` an array of maps with keys `op`,
    /// `from`?, `path`, `value`?; JSON objects in `value` and in the diff have their keys
    /// sorted the same way.
    pub fn to_canonical_cbor(&self) -> Vec<u8> {
        let value = self.value.as_ref().filter(|v| !v.is_null());
        let len = 8
            + usize::from(self.kind.is_some())
            + usize::from(value.is_some())
            + usize::from(self.change.is_some());
        let mut w = Writer::new();
        w.map(len);
        w.text("seq");
        w.uint(self.seq);
        w.text("diff");
        write_diff(&mut w, &self.diff);
        if let Some(kind) = &self.kind {
            w.text("kind");
            w.text(kind);
        }
        w.text("time");
        w.int(self.time);
        w.text("epoch");
        w.text(&self.epoch);
        if let Some(value) = value {
            w.text("value");
            w.json(value);
        }
        if let Some(change) = self.change {
            w.text("change");
            w.text(change.as_str());
        }
        w.text("origin");
        w.text(&self.origin);
        w.text("pointer");
        w.text(&self.pointer.to_string());
        w.text("trigger");
        w.text(&self.trigger);
        w.text("version");
        w.uint(self.version);
        w.into_bytes()
    }

    /// Decode an envelope from `bytes`, arrays and maps nested at most `depth` deep, exactly as
    /// [`crate::cbor::from_slice`] does, on a one-pass path for what publishers send (see
    /// [`EventEnvelope::from_cbor_fast`]); everything else goes to the general decoder.
    ///
    /// # Errors
    ///
    /// The general decoder's: the bytes are not a CBOR envelope, or nest deeper than `depth`.
    pub fn from_cbor(
        bytes: &[u8],
        depth: usize,
    ) -> Result<Self, ciborium::de::Error<std::io::Error>> {
        match crate::cbor::read::envelope(bytes, depth) {
            Some(e) => Ok(e),
            None => crate::cbor::from_slice(bytes, depth),
        }
    }

    /// The one-pass decoder of [`EventEnvelope::from_cbor`] alone: definite lengths, text
    /// keys, the envelope's own members once each, JSON values without tags, byte strings or
    /// `undefined`, nothing after the envelope, nesting at least one level inside `depth`.
    /// `None` where it defers to the general decoder; where it answers, the answer is the
    /// general decoder's (the differential tests and the `envelope_cbor` fuzz target check
    /// it). Public for those checks.
    pub fn from_cbor_fast(bytes: &[u8], depth: usize) -> Option<Self> {
        crate::cbor::read::envelope(bytes, depth)
    }

    /// Checks the shape of the event's signature proof, without cryptography: the header is
    /// well formed ([`BatchHeader::validate`]), names this event's origin and epoch, and the
    /// proof's index is this event's position in it (`seq = first_seq + index`). Returns the
    /// hash the event's canonical bytes must have; the verifier then checks that hash and
    /// the header's signature.
    ///
    /// # Errors
    ///
    /// `bad_signature` (phase `transport`) with a `reason` in the details: `unsigned`,
    /// `origin_mismatch`, `epoch_mismatch`, `index_out_of_range`, `seq_mismatch`, or the
    /// header's own reason.
    pub fn expected_hash(&self) -> Result<&Hash256, BverError> {
        let fail = |reason: &str, message: String| {
            Err(
                bad_signature(reason, message).with_details(serde_json::json!({
                    "reason": reason,
                    "event": self.id().to_string(),
                })),
            )
        };
        let Some(proof) = &self.signature else {
            return fail(
                "unsigned",
                format!("event {} carries no signature", self.id()),
            );
        };
        proof.header.validate()?;
        let header = &proof.header;
        if header.origin != self.origin {
            return fail(
                "origin_mismatch",
                format!(
                    "event {} is in a batch of platform `{}`",
                    self.id(),
                    header.origin
                ),
            );
        }
        if header.epoch != self.epoch {
            return fail(
                "epoch_mismatch",
                format!(
                    "event {} is in a batch of epoch `{}`",
                    self.id(),
                    header.epoch
                ),
            );
        }
        let Some(hash) = proof.event_hash() else {
            return fail(
                "index_out_of_range",
                format!(
                    "event {}: index {} outside a batch of {} events",
                    self.id(),
                    proof.index,
                    header.event_hashes.len()
                ),
            );
        };
        if header.first_seq.checked_add(u64::from(proof.index)) != Some(self.seq) {
            return fail(
                "seq_mismatch",
                format!(
                    "event {}: index {} of a batch starting at {} is another sequence number",
                    self.id(),
                    proof.index,
                    header.first_seq
                ),
            );
        }
        Ok(hash)
    }
}

fn write_diff(w: &mut Writer, diff: &Diff) {
    w.array(diff.len());
    for op in diff {
        write_patch_op(w, op);
    }
}

fn write_patch_op(w: &mut Writer, op: &PatchOp) {
    let from = op.from();
    let value = op.value();
    w.map(2 + usize::from(from.is_some()) + usize::from(value.is_some()));
    w.text("op");
    w.text(op.op());
    if let Some(from) = from {
        w.text("from");
        w.text(from);
    }
    w.text("path");
    w.text(op.path());
    if let Some(value) = value {
        w.text("value");
        w.json(value);
    }
}

fn bad_signature(reason: &str, message: String) -> BverError {
    BverError::new(ErrorCode::BadSignature, Phase::Transport, message)
        .with_details(serde_json::json!({ "reason": reason }))
}

/// What the origin platform signs: the hashes of a run of consecutive events of one epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BatchHeader {
    /// The origin platform's id.
    pub origin: String,
    /// The outbox epoch of every event in the batch.
    pub epoch: String,
    /// The sequence number of the first event.
    pub first_seq: u64,
    /// The sequence number of the last event (`first_seq + event_hashes.len() - 1`).
    pub last_seq: u64,
    /// The hash of each event's canonical CBOR bytes, in sequence order.
    pub event_hashes: Vec<Hash256>,
    /// Which of the origin's keys signed (its fingerprint), so verification survives key
    /// rotation.
    pub key_id: String,
}

impl BatchHeader {
    /// The deterministic CBOR encoding of the header (RFC 8949 §4.2.1): the bytes the
    /// origin's key signs. Keys in canonical order: `epoch`, `key_id`, `origin`, `last_seq`,
    /// `first_seq`, `event_hashes` (an array of 32-byte byte strings).
    pub fn to_canonical_cbor(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.map(6);
        w.text("epoch");
        w.text(&self.epoch);
        w.text("key_id");
        w.text(&self.key_id);
        w.text("origin");
        w.text(&self.origin);
        w.text("last_seq");
        w.uint(self.last_seq);
        w.text("first_seq");
        w.uint(self.first_seq);
        w.text("event_hashes");
        w.array(self.event_hashes.len());
        for hash in &self.event_hashes {
            w.bytes(&hash.0);
        }
        w.into_bytes()
    }

    /// Checks the header's shape: non-empty origin, epoch and key id, at least one event,
    /// and exactly one hash per sequence number from `first_seq` to `last_seq`.
    ///
    /// # Errors
    ///
    /// `bad_signature` (phase `transport`) with a `reason`: `empty_field`, `empty_batch` or
    /// `range_mismatch`.
    pub fn validate(&self) -> Result<(), BverError> {
        if self.origin.is_empty() || self.epoch.is_empty() || self.key_id.is_empty() {
            return Err(bad_signature(
                "empty_field",
                "batch header with an empty origin, epoch or key id".into(),
            ));
        }
        if self.event_hashes.is_empty() {
            return Err(bad_signature(
                "empty_batch",
                "batch header without events".into(),
            ));
        }
        let expected = self
            .first_seq
            .checked_add(self.event_hashes.len() as u64 - 1);
        if expected != Some(self.last_seq) {
            return Err(bad_signature(
                "range_mismatch",
                format!(
                    "batch header for sequence numbers {}..={} lists {} hashes",
                    self.first_seq,
                    self.last_seq,
                    self.event_hashes.len()
                ),
            ));
        }
        Ok(())
    }
}

/// An event's proof of membership in a signed batch: the header, the origin's signature
/// over the header's canonical bytes, and the event's index in the header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BatchProof {
    /// The signed header.
    pub header: BatchHeader,
    /// The signature of the header's canonical CBOR bytes (`BatchHeader::to_canonical_cbor`)
    /// by the key `header.key_id`.
    pub signature: SignatureBytes,
    /// The event's position in `header.event_hashes`.
    pub index: u32,
}

impl BatchProof {
    /// The hash the header lists for this event, if the index is in range.
    pub fn event_hash(&self) -> Option<&Hash256> {
        self.header.event_hashes.get(self.index as usize)
    }
}

/// A 32-byte hash. Lowercase hex in JSON and other human-readable formats; a CBOR byte
/// string in CBOR.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash256(pub [u8; 32]);

/// Signature bytes (64 for Ed25519). Lowercase hex in JSON and other human-readable
/// formats; a CBOR byte string in CBOR.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct SignatureBytes(pub Vec<u8>);

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

impl Hash256 {
    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(s: &str) -> Option<Self> {
        from_hex(s)?.try_into().ok().map(Self)
    }
}

impl fmt::Debug for Hash256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash256({})", self.to_hex())
    }
}

impl fmt::Display for Hash256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl SignatureBytes {
    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }

    /// Parses hex digits (either case, an even number of them).
    pub fn from_hex(s: &str) -> Option<Self> {
        from_hex(s).map(Self)
    }
}

impl fmt::Debug for SignatureBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignatureBytes({})", self.to_hex())
    }
}

/// Accepts hex text, a byte string, or a sequence of byte values.
struct BytesVisitor(&'static str);

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
        from_hex(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(out)
    }
}

fn serialize_bytes<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        serializer.serialize_str(&to_hex(bytes))
    } else {
        serializer.serialize_bytes(bytes)
    }
}

fn deserialize_bytes<'de, D: Deserializer<'de>>(
    deserializer: D,
    expecting: &'static str,
) -> Result<Vec<u8>, D::Error> {
    if deserializer.is_human_readable() {
        deserializer.deserialize_str(BytesVisitor(expecting))
    } else {
        deserializer.deserialize_bytes(BytesVisitor(expecting))
    }
}

impl Serialize for Hash256 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_bytes(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for Hash256 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = deserialize_bytes(deserializer, "a 32-byte hash (64 hex digits)")?;
        let len = bytes.len();
        bytes
            .try_into()
            .map(Self)
            .map_err(|_| de::Error::invalid_length(len, &"32 bytes"))
    }
}

impl Serialize for SignatureBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_bytes(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for SignatureBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_bytes(deserializer, "signature bytes (hex)").map(Self)
    }
}

impl JsonSchema for Hash256 {
    fn schema_name() -> Cow<'static, str> {
        "Hash256".into()
    }

    fn schema_id() -> Cow<'static, str> {
        "bver_contracts::event::Hash256".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A 32-byte hash as 64 hex digits (written lowercase); a byte string in CBOR.",
            "pattern": "^[0-9a-fA-F]{64}$",
        })
    }
}

impl JsonSchema for SignatureBytes {
    fn schema_name() -> Cow<'static, str> {
        "SignatureBytes".into()
    }

    fn schema_id() -> Cow<'static, str> {
        "bver_contracts::event::SignatureBytes".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "Signature bytes as hex digits (written lowercase); a byte string in CBOR.",
            "pattern": "^(?:[0-9a-fA-F]{2})*$",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cbor::text_key_order;

    /// The canonical key order of an envelope's fields (signature excluded).
    const ENVELOPE_KEYS: [&str; 11] = [
        "seq", "diff", "kind", "time", "epoch", "value", "change", "origin", "pointer", "trigger",
        "version",
    ];

    /// The canonical key order of a patch operation's fields.
    const PATCH_OP_KEYS: [&str; 4] = ["op", "from", "path", "value"];

    /// The canonical key order of a batch header's fields.
    const BATCH_HEADER_KEYS: [&str; 6] = [
        "epoch",
        "key_id",
        "origin",
        "last_seq",
        "first_seq",
        "event_hashes",
    ];

    #[test]
    fn key_lists_are_in_canonical_order() {
        for keys in [
            &ENVELOPE_KEYS[..],
            &PATCH_OP_KEYS[..],
            &BATCH_HEADER_KEYS[..],
        ] {
            for pair in keys.windows(2) {
                assert_eq!(
                    text_key_order(pair[0], pair[1]),
                    std::cmp::Ordering::Less,
                    "{pair:?}"
                );
            }
        }
    }

    #[test]
    fn hex() {
        let h = Hash256([0xab; 32]);
        assert_eq!(Hash256::from_hex(&h.to_hex()), Some(h));
        assert_eq!(Hash256::from_hex(&"AB".repeat(32)), Some(h));
        assert_eq!(Hash256::from_hex("ab"), None);
        assert_eq!(Hash256::from_hex(&"zz".repeat(32)), None);
        assert_eq!(SignatureBytes::from_hex("0a0B").unwrap().0, vec![10, 11]);
        assert!(SignatureBytes::from_hex("abc").is_none());
    }
}
