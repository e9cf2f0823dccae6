//! Platform keys: the Ed25519 [`PlatformKey`] (generate, load, save), its [`PublicKey`] and
//! [`KeyId`], and the [`KeySet`] that keeps retired public keys verifying until their
//! `valid_until` after a rotation.
//!
//! The key file is the only I/O of this crate: a PEM `PRIVATE KEY` (PKCS#8) written with mode
//! 0600 and never overwritten; loading refuses a file that group or others can access.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use crate::error::{AuthError, KeyError, clip};

/// Length of an Ed25519 public key in bytes.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature in bytes.
pub const SIGNATURE_LEN: usize = 64;
/// How many bytes of the SHA-256 fingerprint the [`KeyId`] keeps.
pub const KEY_ID_BYTES: usize = 16;
/// The largest key file read (a PKCS#8 Ed25519 PEM is about 170 bytes).
const MAX_KEY_FILE: u64 = 16 * 1024;
/// The PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410), followed by the 32-byte seed.
const PKCS8_V1_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// A key id: base64url (no padding) of the first [`KEY_ID_BYTES`] bytes of the SHA-256 of the
/// raw 32-byte public key, so 22 characters. It is the JWT `kid` and the JWK `kid`.
///
/// 128 bits are plenty to name keys (the verifier still checks the signature with the key it
/// holds); pinning uses the full [`PublicKey::fingerprint`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(String);

impl KeyId {
    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for KeyId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// An Ed25519 public key with its [`KeyId`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PublicKey {
    bytes: [u8; PUBLIC_KEY_LEN],
    id: KeyId,
}

impl PublicKey {
    /// A public key from its raw 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let bytes: [u8; PUBLIC_KEY_LEN] = bytes.try_into().map_err(|_| KeyError::InvalidKey {
            reason: "an Ed25519 public key is 32 bytes",
        })?;
        let fingerprint = sha256(&bytes);
        let id = KeyId(URL_SAFE_NO_PAD.encode(&fingerprint[..KEY_ID_BYTES]));
        Ok(Self { bytes, id })
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.bytes
    }

    /// The key id (truncated fingerprint).
    pub fn key_id(&self) -> &KeyId {
        &self.id
    }

    /// The full SHA-256 of the raw public key, for pinning.
    pub fn fingerprint(&self) -> [u8; 32] {
        sha256(&self.bytes)
    }

    /// Whether `signature` is a valid Ed25519 signature of `message` by this key.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.bytes)
            .verify(message, signature)
            .is_ok()
    }

    /// The key as a JWK (RFC 8037): `kty` `OKP`, `crv` `Ed25519`, `x`, `kid`, `alg`, `use`.
    pub fn to_jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(self.bytes),
            "kid": self.id.as_str(),
            "alg": "EdDSA",
            "use": "sig",
        })
    }
}

/// The platform's Ed25519 signing key. It signs JWTs, grants and EAGER batches.
///
/// `Debug` shows only the key id; the private key never leaves except through
/// [`PlatformKey::pkcs8_der`] and [`PlatformKey::save`].
pub struct PlatformKey {
    pkcs8: Vec<u8>,
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl fmt::Debug for PlatformKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlatformKey")
            .field("kid", &self.public.id)
            .finish_non_exhaustive()
    }
}

impl PlatformKey {
    /// A new random key from the system's secure random generator.
    pub fn generate() -> Result<Self, KeyError> {
        let doc =
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| KeyError::Rng)?;
        Self::from_pkcs8(doc.as_ref())
    }

    /// A key from a PKCS#8 DER document (v1 or v2, as RFC 8410 and RFC 5958 define).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        let pair =
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|_| KeyError::InvalidKey {
                reason: "not a PKCS#8 Ed25519 private key",
            })?;
        let public = PublicKey::from_bytes(pair.public_key().as_ref())?;
        Ok(Self {
            pkcs8: der.to_vec(),
            pair,
            public,
        })
    }

    /// A key from a 32-byte seed (RFC 8032's private key). For fixed test vectors; real keys
    /// come from [`PlatformKey::generate`].
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, KeyError> {
        let mut der = Vec::with_capacity(PKCS8_V1_ED25519_PREFIX.len() + seed.len());
        der.extend_from_slice(&PKCS8_V1_ED25519_PREFIX);
        der.extend_from_slice(seed);
        Self::from_pkcs8(&der)
    }

    /// Load a key file written by [`PlatformKey::save`] (PEM), or a raw PKCS#8 DER file.
    ///
    /// Refuses (on Unix) a file whose mode gives any access to group or others.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let io = |op| {
            move |source| KeyError::Io {
                op,
                path: path.to_owned(),
                source,
            }
        };
        let file = File::open(path).map_err(io("open"))?;
        let meta = file.metadata().map_err(io("inspect"))?;
        if !meta.is_file() {
            return Err(KeyError::InvalidKey {
                reason: "the key path is not a regular file",
            });
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::InsecurePermissions {
                    path: path.to_owned(),
                    mode,
                });
            }
        }
        let mut bytes = Vec::new();
        file.take(MAX_KEY_FILE)
            .read_to_end(&mut bytes)
            .map_err(io("read"))?;
        Self::from_pkcs8(&decode_key_file(&bytes)?)
    }

    /// Write the key to `path` as a PEM `PRIVATE KEY` with mode 0600, never overwriting an
    /// existing file ([`KeyError::AlreadyExists`]).
    ///
    /// The key is written to a temporary file in the same directory, synced, and then linked
    /// into place, so `path` either does not exist or holds the whole key.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let io = |op, p: &Path| {
            let p = p.to_owned();
            move |source| KeyError::Io {
                op,
                path: p,
                source,
            }
        };
        if path.exists() {
            return Err(KeyError::AlreadyExists {
                path: path.to_owned(),
            });
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let result = (|| {
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp).map_err(io("create", &tmp))?;
            file.write_all(self.to_pem().as_bytes())
                .map_err(io("write", &tmp))?;
            file.sync_all().map_err(io("sync", &tmp))?;
            match fs::hard_link(&tmp, path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    Err(KeyError::AlreadyExists {
                        path: path.to_owned(),
                    })
                }
                Err(e) => Err(io("link", path)(e)),
            }
        })();
        let _ = fs::remove_file(&tmp);
        result?;
        // Make the new directory entry durable; not every filesystem supports syncing a
        // directory, and the key is already complete on disk, so a failure here is ignored.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Load the key at `path`, or generate and save one when no file exists there (the
    /// node's first start). The boolean is true when the key was just created.
    pub fn load_or_generate(path: &Path) -> Result<(Self, bool), KeyError> {
        match Self::load(path) {
            Ok(key) => Ok((key, false)),
            Err(KeyError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate()?;
                key.save(path)?;
                Ok((key, true))
            }
            Err(e) => Err(e),
        }
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The key id (see [`KeyId`]).
    pub fn key_id(&self) -> &KeyId {
        &self.public.id
    }

    /// Sign `message` (Ed25519 is deterministic: the same key and message give the same
    /// signature).
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut out = [0u8; SIGNATURE_LEN];
        out.copy_from_slice(self.pair.sign(message).as_ref());
        out
    }

    /// The private key as PKCS#8 DER. Secret: for building a TLS certificate or a JWT
    /// signing key from the same key, never for logging.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    fn to_pem(&self) -> String {
        let b64 = STANDARD.encode(&self.pkcs8);
        let mut pem = String::with_capacity(b64.len() + 64);
        pem.push_str(PEM_BEGIN);
        pem.push('\n');
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str(PEM_END);
        pem.push('\n');
        pem
    }
}

/// The DER inside a PEM `PRIVATE KEY` file, or the bytes themselves when they are not PEM.
fn decode_key_file(bytes: &[u8]) -> Result<Vec<u8>, KeyError> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Ok(bytes.to_vec());
    };
    let text = text.trim();
    if !text.starts_with("-----BEGIN") {
        return Ok(bytes.to_vec());
    }
    let body = text
        .strip_prefix(PEM_BEGIN)
        .and_then(|t| t.strip_suffix(PEM_END))
        .ok_or(KeyError::InvalidKey {
            reason: "expected a PEM `PRIVATE KEY` block",
        })?;
    let b64: String = body.split_whitespace().collect();
    STANDARD.decode(b64).map_err(|_| KeyError::InvalidKey {
        reason: "the PEM body is not base64",
    })
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

/// A retired key: its public half and the end of its verification window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetiredKey {
    /// The public key.
    pub public: PublicKey,
    /// Signatures by this key verify while `now < valid_until` (unix seconds).
    pub valid_until: u64,
}

/// The platform's current signing key plus retired public keys that still verify until their
/// `valid_until`.
///
/// Rotation ([`KeySet::rotate`]) makes a new key current and keeps the old public key for
/// verification, so tokens and batches signed before the rotation stay valid until the old
/// key's window closes (set it to at least the longest token lifetime).
#[derive(Debug)]
pub struct KeySet {
    current: PlatformKey,
    retired: Vec<RetiredKey>,
}

impl KeySet {
    /// A set holding only `current`.
    pub fn new(current: PlatformKey) -> Self {
        Self {
            current,
            retired: Vec::new(),
        }
    }

    /// The key that signs.
    pub fn current(&self) -> &PlatformKey {
        &self.current
    }

    /// The retired keys, in the order they were retired.
    pub fn retired(&self) -> &[RetiredKey] {
        &self.retired
    }

    /// Make `next` the signing key; the previous one keeps verifying while
    /// `now < previous_valid_until`.
    pub fn rotate(&mut self, next: PlatformKey, previous_valid_until: u64) {
        let previous = std::mem::replace(&mut self.current, next);
        self.add_retired(previous.public, previous_valid_until);
    }

    /// Add (or extend the window of) a retired public key, for example one restored from the
    /// node's key history. The current key is never retired this way.
    pub fn add_retired(&mut self, public: PublicKey, valid_until: u64) {
        if public == self.current.public {
            return;
        }
        match self.retired.iter_mut().find(|r| r.public == public) {
            Some(r) => r.valid_until = r.valid_until.max(valid_until),
            None => self.retired.push(RetiredKey {
                public,
                valid_until,
            }),
        }
    }

    /// Forget retired keys whose window closed (`valid_until <= now`).
    pub fn prune(&mut self, now: u64) {
        self.retired.retain(|r| now < r.valid_until);
    }

    /// The public key named `kid` if it may verify at `now`: the current key, or a retired
    /// key whose window is open.
    pub fn find(&self, kid: &str, now: u64) -> Result<&PublicKey, AuthError> {
        if self.current.key_id().as_str() == kid {
            return Ok(&self.current.public);
        }
        match self.retired.iter().find(|r| r.public.id.as_str() == kid) {
            Some(r) if now < r.valid_until => Ok(&r.public),
            Some(r) => Err(AuthError::KeyRetired {
                kid: kid.to_owned(),
                valid_until: r.valid_until,
            }),
            None => Err(AuthError::UnknownKid {
                kid: Some(clip(kid)),
            }),
        }
    }

    /// Verify an Ed25519 `signature` of `message` by the key named `kid`, at time `now`.
    pub fn verify(
        &self,
        kid: &str,
        message: &[u8],
        signature: &[u8],
        now: u64,
    ) -> Result<(), AuthError> {
        if self.find(kid, now)?.verify(message, signature) {
            Ok(())
        } else {
            Err(AuthError::BadSignature)
        }
    }

    /// The public keys that verify at `now`, current first, each with its window end (`None`
    /// for the current key).
    pub fn verifying_keys(&self, now: u64) -> Vec<(&PublicKey, Option<u64>)> {
        std::iter::once((&self.current.public, None))
            .chain(
                self.retired
                    .iter()
                    .filter(|r| now < r.valid_until)
                    .map(|r| (&r.public, Some(r.valid_until))),
            )
            .collect()
    }

    /// The JWK Set (RFC 7517) served at `/.well-known/jwks.json`: the keys that verify at
    /// `now`, current first.
    pub fn jwks(&self, now: u64) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .verifying_keys(now)
            .into_iter()
            .map(|(k, _)| k.to_jwk())
            .collect();
        serde_json::json!({ "keys": keys })
    }
}
