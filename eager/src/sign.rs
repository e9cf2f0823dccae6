//! Batch signing and verification, and the public key sets of peers.
//!
//! The bytes are defined in `bver-contracts` ([`EventEnvelope::to_canonical_cbor`],
//! [`BatchHeader::to_canonical_cbor`]); this module adds the cryptography: an event's hash
//! is the SHA-256 of its canonical bytes, and the platform key (Ed25519, ring, through
//! [`PlatformKey`]) signs the header's canonical bytes. A header may cover sequence numbers
//! whose events the batch does not carry because they belong to no channel the batch is
//! for: their hash is [`ELIDED`] (32 zero bytes), which no event hashes to, so such a
//! header vouches for nothing at that position.
//!
//! Verification looks the signing key up by the header's `key_id` in a [`VerifyingKeys`]:
//! the platform's own [`KeySet`], or the [`PeerKeys`] pinned and announced for a peer.

use std::sync::Arc;

use bver_auth::{KeySet, PlatformKey, PublicKey};
use bver_contracts::{
    BatchHeader, BatchProof, BverError, ErrorCode, EventEnvelope, Hash256, Phase, SignatureBytes,
};

/// The hash of a sequence number the batch header covers without carrying its event.
pub const ELIDED: Hash256 = Hash256([0; 32]);

/// SHA-256 of `bytes`: the hash a [`BatchHeader`] lists for an event's canonical bytes.
pub fn event_hash(bytes: &[u8]) -> Hash256 {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    Hash256(out)
}

/// Sign a header over `event_hashes` (consecutive sequence numbers from `first_seq`) with
/// `key`. `event_hashes` must not be empty.
pub fn sign_batch(
    key: &PlatformKey,
    origin: &str,
    epoch: &str,
    first_seq: u64,
    event_hashes: Vec<Hash256>,
) -> (BatchHeader, SignatureBytes) {
    let last_seq = first_seq + (event_hashes.len() as u64).saturating_sub(1);
    let header = BatchHeader {
        origin: origin.to_owned(),
        epoch: epoch.to_owned(),
        first_seq,
        last_seq,
        event_hashes,
        key_id: key.key_id().to_string(),
    };
    let sig = SignatureBytes(key.sign(&header.to_canonical_cbor()).to_vec());
    (header, sig)
}

/// Sign a run of consecutive events (one epoch, dense sequence numbers) and attach to each
/// its [`BatchProof`]. For tests and for nodes that sign in the outbox; the publisher signs
/// per wire batch.
pub fn sign_events(key: &PlatformKey, events: &mut [EventEnvelope]) -> Result<(), BverError> {
    let Some(first) = events.first() else {
        return Ok(());
    };
    let (origin, epoch, first_seq) = (first.origin.clone(), first.epoch.clone(), first.seq);
    for (i, e) in events.iter().enumerate() {
        if e.origin != origin || e.epoch != epoch || e.seq != first_seq + i as u64 {
            return Err(BverError::internal(
                "sign_events needs consecutive events of one origin and epoch",
            ));
        }
    }
    let hashes = events
        .iter()
        .map(|e| event_hash(&e.to_canonical_cbor()))
        .collect();
    let (header, signature) = sign_batch(key, &origin, &epoch, first_seq, hashes);
    for (i, e) in events.iter_mut().enumerate() {
        e.signature = Some(BatchProof {
            header: header.clone(),
            signature: signature.clone(),
            index: i as u32,
        });
    }
    Ok(())
}

/// A set of public keys that may verify signatures by one platform.
pub trait VerifyingKeys {
    /// The key named `kid` if it may verify at `now` (unix seconds).
    fn key(&self, kid: &str, now: u64) -> Result<&PublicKey, BverError>;
}

impl VerifyingKeys for KeySet {
    fn key(&self, kid: &str, now: u64) -> Result<&PublicKey, BverError> {
        self.find(kid, now)
            .map_err(|e| bad_signature("unknown_key", format!("{e}")))
    }
}

/// One key of a peer, as pinned or announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerKey {
    /// The key.
    pub public: PublicKey,
    /// Signatures verify while `now < valid_until` (unix seconds); `None`: no end.
    pub valid_until: Option<u64>,
}

/// The verifying keys of a peer platform: the key its TLS certificate presented (whose
/// fingerprint is pinned) and the keys it announced, signed, in its `hello`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerKeys {
    platform: String,
    keys: Vec<PeerKey>,
}

impl PeerKeys {
    /// The keys of `platform`, starting with `keys`.
    pub fn new(platform: impl Into<String>, keys: impl IntoIterator<Item = PublicKey>) -> Self {
        Self {
            platform: platform.into(),
            keys: keys
                .into_iter()
                .map(|public| PeerKey {
                    public,
                    valid_until: None,
                })
                .collect(),
        }
    }

    /// The platform id.
    pub fn platform(&self) -> &str {
        &self.platform
    }

    /// The keys.
    pub fn keys(&self) -> &[PeerKey] {
        &self.keys
    }

    /// Add a key, or update its window (the later end wins; `None` means no end).
    pub fn add(&mut self, public: PublicKey, valid_until: Option<u64>) {
        match self.keys.iter_mut().find(|k| k.public == public) {
            Some(k) => {
                k.valid_until = match (k.valid_until, valid_until) {
                    (None, _) | (_, None) => None,
                    (Some(a), Some(b)) => Some(a.max(b)),
                }
            }
            None => self.keys.push(PeerKey {
                public,
                valid_until,
            }),
        }
    }

    /// Whether a key with this fingerprint (SHA-256 of the raw key) is in the set.
    pub fn has_fingerprint(&self, fingerprint: &[u8; 32]) -> bool {
        self.keys
            .iter()
            .any(|k| &k.public.fingerprint() == fingerprint)
    }
}

impl VerifyingKeys for PeerKeys {
    fn key(&self, kid: &str, now: u64) -> Result<&PublicKey, BverError> {
        match self.keys.iter().find(|k| k.public.key_id().as_str() == kid) {
            Some(k) if k.valid_until.is_none_or(|until| now < until) => Ok(&k.public),
            Some(_) => Err(bad_signature(
                "key_retired",
                format!("key `{kid}` of `{}` is past its window", self.platform),
            )),
            None => Err(bad_signature(
                "unknown_key",
                format!("`{}` has no known key `{kid}`", self.platform),
            )),
        }
    }
}

impl<T: VerifyingKeys + ?Sized> VerifyingKeys for Arc<T> {
    fn key(&self, kid: &str, now: u64) -> Result<&PublicKey, BverError> {
        (**self).key(kid, now)
    }
}

pub(crate) fn bad_signature(reason: &str, message: impl Into<String>) -> BverError {
    BverError::new(ErrorCode::BadSignature, Phase::Transport, message)
        .with_details(serde_json::json!({ "reason": reason }))
}

/// Check a header's shape and its signature with `keys` at `now` (unix seconds).
///
/// # Errors
///
/// `bad_signature` with a `reason`: the header's shape reasons, `unknown_key`,
/// `key_retired`, `signature_mismatch`.
pub fn verify_header(
    keys: &(impl VerifyingKeys + ?Sized),
    header: &BatchHeader,
    sig: &SignatureBytes,
    now: u64,
) -> Result<(), BverError> {
    header.validate()?;
    let key = keys.key(&header.key_id, now)?;
    if key.verify(&header.to_canonical_cbor(), &sig.0) {
        Ok(())
    } else {
        Err(bad_signature(
            "signature_mismatch",
            format!(
                "the batch {}/{} {}..={} does not verify with key `{}`",
                header.origin, header.epoch, header.first_seq, header.last_seq, header.key_id
            ),
        ))
    }
}

/// Verify a stored or relayed event on its own: its proof's shape, the hash of its
/// canonical bytes, and the header's signature.
///
/// # Errors
///
/// `bad_signature`, with the reasons of [`EventEnvelope::expected_hash`], of
/// [`verify_header`], or `hash_mismatch`.
pub fn verify_event(
    keys: &(impl VerifyingKeys + ?Sized),
    event: &EventEnvelope,
    now: u64,
) -> Result<(), BverError> {
    let expected = event.expected_hash()?;
    if event_hash(&event.to_canonical_cbor()) != *expected {
        return Err(bad_signature(
            "hash_mismatch",
            format!("event {} does not match its signed hash", event.id()),
        ));
    }
    let proof = event
        .signature
        .as_ref()
        .ok_or_else(|| bad_signature("unsigned", "unsigned event"))?;
    verify_header(keys, &proof.header, &proof.signature, now)
}

/// Sign `bytes` (an announcement or a resolve answer, carried as a byte string) with the
/// current key of `keys`: returns the key id and the signature.
pub fn sign_bytes(key: &PlatformKey, bytes: &[u8]) -> (String, SignatureBytes) {
    (
        key.key_id().to_string(),
        SignatureBytes(key.sign(bytes).to_vec()),
    )
}

/// Verify a signature of `bytes` by the key `kid` of `keys` at `now`.
pub fn verify_bytes(
    keys: &(impl VerifyingKeys + ?Sized),
    kid: &str,
    bytes: &[u8],
    sig: &SignatureBytes,
    now: u64,
) -> Result<(), BverError> {
    if keys.key(kid, now)?.verify(bytes, &sig.0) {
        Ok(())
    } else {
        Err(bad_signature(
            "signature_mismatch",
            format!("signed bytes do not verify with key `{kid}`"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bver_contracts::{ChangeType, RefPtr};

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    pub(crate) fn key() -> PlatformKey {
        PlatformKey::from_seed(&[7u8; 32]).unwrap()
    }

    fn event(seq: u64) -> EventEnvelope {
        EventEnvelope {
            origin: "sites".into(),
            epoch: "e1".into(),
            seq,
            trigger: "refs.site.updated".into(),
            pointer: RefPtr::parse("bver://sites/site/7").unwrap(),
            version: 3,
            kind: None,
            change: Some(ChangeType::Updated),
            diff: Default::default(),
            value: Some(serde_json::json!({"name": "x"})),
            time: 1_700_000_000_000,
            signature: None,
        }
    }

    /// Fixed vectors: the hash of an event's canonical bytes, the header's canonical bytes
    /// and the Ed25519 signature by the key of seed `[7; 32]`. A change here is a protocol
    /// change.
    #[test]
    fn batch_signature_vectors() {
        let k = key();
        let bytes = event(1).to_canonical_cbor();
        let h = event_hash(&bytes);
        let (header, sig) = sign_batch(&k, "sites", "e1", 1, vec![h, ELIDED]);
        let got = format!(
            "kid={}\nevent={}\nhash={}\nheader={}\nsig={}\n",
            k.key_id(),
            hex(&bytes),
            h,
            hex(&header.to_canonical_cbor()),
            sig.to_hex()
        );
        let expected = include_str!("../tests/vectors/batch_signature.txt");
        if std::env::var_os("BVER_UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/vectors/batch_signature.txt"
                ),
                &got,
            )
            .unwrap();
        } else {
            assert_eq!(got, expected, "BVER_UPDATE_SNAPSHOTS=1 to accept a change");
        }
        let mut set = KeySet::new(key());
        verify_header(&set, &header, &sig, 0).unwrap();
        // After a rotation, the old key keeps verifying until its window closes.
        set.rotate(PlatformKey::from_seed(&[8u8; 32]).unwrap(), 100);
        verify_header(&set, &header, &sig, 99).unwrap();
        assert!(verify_header(&set, &header, &sig, 100).is_err());
    }

    #[test]
    fn events_verify_on_their_own_and_tampering_is_caught() {
        let k = key();
        let mut events: Vec<_> = (5..9).map(event).collect();
        sign_events(&k, &mut events).unwrap();
        let peer = PeerKeys::new("sites", [k.public_key().clone()]);
        for e in &events {
            verify_event(&peer, e, 0).unwrap();
        }
        let mut altered = events[2].clone();
        altered.version = 4;
        let e = verify_event(&peer, &altered, 0).unwrap_err();
        assert_eq!(e.details["reason"], "hash_mismatch");
        let mut forged = events[1].clone();
        if let Some(p) = forged.signature.as_mut() {
            p.signature.0[0] ^= 1;
        }
        let e = verify_event(&peer, &forged, 0).unwrap_err();
        assert_eq!(e.details["reason"], "signature_mismatch");
        let other = PeerKeys::new(
            "sites",
            [PlatformKey::from_seed(&[9; 32])
                .unwrap()
                .public_key()
                .clone()],
        );
        let e = verify_event(&other, &events[0], 0).unwrap_err();
        assert_eq!(e.details["reason"], "unknown_key");
    }

    #[test]
    fn peer_key_windows() {
        let k = key();
        let mut peer = PeerKeys::new("sites", []);
        peer.add(k.public_key().clone(), Some(10));
        assert!(peer.key(k.key_id().as_str(), 9).is_ok());
        assert!(peer.key(k.key_id().as_str(), 10).is_err());
        peer.add(k.public_key().clone(), None);
        assert!(peer.key(k.key_id().as_str(), 10_000).is_ok());
        assert!(peer.has_fingerprint(&k.public_key().fingerprint()));
    }
}
