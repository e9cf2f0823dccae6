//! A platform's data directory: what a node keeps on disk besides its database.
//!
//! ```text
//! DATA/
//!   bver.db              the SQLite store (when no PostgreSQL URL is configured)
//!   node.json            the platform's identity: {"platform_id": ..., "audience": ...}
//!   keys/platform.key    the Ed25519 platform key, PKCS#8 PEM, mode 0600
//!   keys/retired.json    retired public keys that still verify until `valid_until`
//!   keys/endorsement.json  the current key's EAGER certificate signed by the previous key
//!                        (written by a rotation; public material only)
//!   revocations.json     revoked token ids and per-subject cut-offs
//! ```
//!
//! Every file is written whole to a temporary file and renamed into place, so a reader (the
//! running node polls `keys/` and `revocations.json`) never sees half a file. The CLI
//! (`bver token`, `bver key`) and the node share this module, so a change made with the CLI
//! is picked up by a running node without a restart.
//!
//! **Invariant:** nothing here logs or prints key material; the private key never leaves
//! `keys/platform.key`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bver_auth::{
    KeySet, PlatformKey, PublicKey, RevocationList, Revocations, RevokedToken, SubjectCutoff,
};
use bver_contracts::{BverError, ErrorCode, Phase};
use serde::{Deserialize, Serialize};

/// The platform's identity, written on the first start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The platform id: the `iss` of its tokens and its name on EAGER.
    pub platform_id: String,
    /// The `aud` its HTTP API accepts.
    pub audience: String,
}

/// One retired key as stored in `keys/retired.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RetiredEntry {
    kid: String,
    /// The raw 32-byte public key, base64url.
    public_key: String,
    /// Unix seconds: signatures by this key verify while `now < valid_until`.
    valid_until: u64,
}

/// `keys/endorsement.json`: the EAGER rotation endorsement of the current key (see
/// `bver_eager::transport::tls::Endorsement`), DER certificates in base64url.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct EndorsementFile {
    /// The endorsed (current) key's id.
    kid: String,
    /// The endorsing (previous) key's id.
    endorsed_by: String,
    /// Unix seconds: the end of the previous key's window, and of the endorsement.
    valid_until: u64,
    certificate: String,
    previous: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RevocationFile {
    #[serde(default)]
    tokens: Vec<RevokedEntry>,
    #[serde(default)]
    subjects: Vec<CutoffEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct RevokedEntry {
    jti: String,
    forget_after: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct CutoffEntry {
    subject: String,
    issued_before: u64,
}

/// A handle on a data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

fn config_error(message: String) -> BverError {
    BverError::new(ErrorCode::InvalidDefinition, Phase::Configuration, message)
}

impl DataDir {
    /// The data directory at `root`, created (mode 0700) if it does not exist.
    pub fn create(root: impl Into<PathBuf>) -> Result<Self, BverError> {
        let root = root.into();
        fs::create_dir_all(root.join("keys")).map_err(|e| {
            config_error(format!(
                "cannot create the data directory {}: {e}",
                root.display()
            ))
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(root.join("keys"), fs::Permissions::from_mode(0o700));
        }
        Ok(Self { root })
    }

    /// An existing data directory (`not_found` if `root` is not a directory).
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, BverError> {
        let root = root.into();
        if !root.is_dir() {
            return Err(BverError::new(
                ErrorCode::NotFound,
                Phase::Configuration,
                format!("{} is not a directory", root.display()),
            ));
        }
        Ok(Self { root })
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The SQLite store's file.
    pub fn sqlite_path(&self) -> PathBuf {
        self.root.join("bver.db")
    }

    /// The platform key's file.
    pub fn key_path(&self) -> PathBuf {
        self.root.join("keys").join("platform.key")
    }

    fn retired_path(&self) -> PathBuf {
        self.root.join("keys").join("retired.json")
    }

    fn endorsement_path(&self) -> PathBuf {
        self.root.join("keys").join("endorsement.json")
    }

    /// The EAGER rotation endorsement of `current` (its certificate signed by the previous
    /// key), if a rotation wrote one for it and its window is open at `now`.
    pub fn endorsement(
        &self,
        current: &PublicKey,
        now: u64,
    ) -> Result<Option<bver_eager::transport::Endorsement>, BverError> {
        let Some(f) = read_json::<EndorsementFile>(&self.endorsement_path())? else {
            return Ok(None);
        };
        if now >= f.valid_until {
            return Ok(None);
        }
        let decode = |what: &str, v: &str| {
            URL_SAFE_NO_PAD
                .decode(v)
                .map_err(|e| config_error(format!("keys/endorsement.json: {what}: {e}")))
        };
        let e = bver_eager::transport::Endorsement {
            certificate: decode("certificate", &f.certificate)?,
            previous: decode("previous", &f.previous)?,
        };
        Ok((e.key().as_ref() == Some(current)).then_some(e))
    }

    /// The revocation list's file.
    pub fn revocations_path(&self) -> PathBuf {
        self.root.join("revocations.json")
    }

    fn identity_path(&self) -> PathBuf {
        self.root.join("node.json")
    }

    /// The stored identity, if the node has started here before.
    pub fn identity(&self) -> Result<Option<Identity>, BverError> {
        read_json(&self.identity_path())
    }

    /// Store the identity (on the first start).
    pub fn write_identity(&self, identity: &Identity) -> Result<(), BverError> {
        write_json(&self.identity_path(), identity, 0o644)
    }

    /// Load the key set: the platform key (made on the first call, 0600) and the retired keys
    /// still in their window at `now`. The flag says whether the key was just made.
    pub fn key_set(&self, now: u64) -> Result<(KeySet, bool), BverError> {
        let (key, created) = PlatformKey::load_or_generate(&self.key_path())
            .map_err(|e| config_error(format!("platform key: {e}")))?;
        let mut set = KeySet::new(key);
        for r in self.retired()? {
            let bytes = URL_SAFE_NO_PAD.decode(&r.public_key).map_err(|e| {
                config_error(format!(
                    "keys/retired.json: key {} is not base64: {e}",
                    r.kid
                ))
            })?;
            let public = PublicKey::from_bytes(&bytes)
                .map_err(|e| config_error(format!("keys/retired.json: key {}: {e}", r.kid)))?;
            set.add_retired(public, r.valid_until);
        }
        set.prune(now);
        Ok((set, created))
    }

    fn retired(&self) -> Result<Vec<RetiredEntry>, BverError> {
        Ok(read_json(&self.retired_path())?.unwrap_or_default())
    }

    /// Rotate the platform key: a new key signs from now on; the previous one keeps verifying
    /// until `previous_valid_until`, and endorses the new one on EAGER until then
    /// (`keys/endorsement.json`, when the platform's identity is known), so that peers
    /// pinning only the previous key accept the new one. Returns the new key's id.
    pub fn rotate_key(&self, previous_valid_until: u64, now: u64) -> Result<String, BverError> {
        let path = self.key_path();
        let previous =
            PlatformKey::load(&path).map_err(|e| config_error(format!("platform key: {e}")))?;
        let next = PlatformKey::generate().map_err(|e| config_error(format!("{e}")))?;
        let mut retired: Vec<RetiredEntry> = self
            .retired()?
            .into_iter()
            .filter(|r| now < r.valid_until)
            .collect();
        retired.push(RetiredEntry {
            kid: previous.key_id().to_string(),
            public_key: URL_SAFE_NO_PAD.encode(previous.public_key().as_bytes()),
            valid_until: previous_valid_until,
        });
        // The retired list and the endorsement first: if the process dies before the key is
        // replaced, the old key is both current and listed as retired, which verifies exactly
        // as before, and the endorsement (of another key) is ignored.
        write_json(&self.retired_path(), &retired, 0o644)?;
        if let Some(identity) = self.identity()? {
            let e = bver_eager::transport::tls::endorse(
                &identity.platform_id,
                &next,
                &previous,
                previous_valid_until,
            )?;
            let file = EndorsementFile {
                kid: next.key_id().to_string(),
                endorsed_by: previous.key_id().to_string(),
                valid_until: previous_valid_until,
                certificate: URL_SAFE_NO_PAD.encode(&e.certificate),
                previous: URL_SAFE_NO_PAD.encode(&e.previous),
            };
            write_json(&self.endorsement_path(), &file, 0o644)?;
        }
        let staging = path.with_extension("key.new");
        let _ = fs::remove_file(&staging);
        next.save(&staging)
            .map_err(|e| config_error(format!("platform key: {e}")))?;
        fs::rename(&staging, &path)
            .map_err(|e| config_error(format!("cannot replace {}: {e}", path.display())))?;
        Ok(next.key_id().to_string())
    }

    /// The stored revocation list (empty if none).
    pub fn revocations(&self) -> Result<RevocationList, BverError> {
        let file: RevocationFile = read_json(&self.revocations_path())?.unwrap_or_default();
        Ok(RevocationList {
            tokens: file
                .tokens
                .into_iter()
                .map(|t| RevokedToken {
                    jti: t.jti,
                    forget_after: t.forget_after,
                })
                .collect(),
            subjects: file
                .subjects
                .into_iter()
                .map(|s| SubjectCutoff {
                    subject: s.subject,
                    issued_before: s.issued_before,
                })
                .collect(),
        })
    }

    /// Store `revocations` whole.
    pub fn write_revocations(&self, revocations: &Revocations) -> Result<(), BverError> {
        let list = revocations.snapshot();
        let file = RevocationFile {
            tokens: list
                .tokens
                .into_iter()
                .map(|t| RevokedEntry {
                    jti: t.jti,
                    forget_after: t.forget_after,
                })
                .collect(),
            subjects: list
                .subjects
                .into_iter()
                .map(|s| CutoffEntry {
                    subject: s.subject,
                    issued_before: s.issued_before,
                })
                .collect(),
        };
        write_json(&self.revocations_path(), &file, 0o600)
    }

    /// Modification times of the files a running node reloads (keys, revocations), to notice
    /// changes made by the CLI.
    pub fn watched_stamp(&self) -> Vec<Option<std::time::SystemTime>> {
        [
            self.key_path(),
            self.retired_path(),
            self.endorsement_path(),
            self.revocations_path(),
        ]
        .iter()
        .map(|p| fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, BverError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| config_error(format!("{} is not valid: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(config_error(format!("cannot read {}: {e}", path.display()))),
    }
}

/// Write `value` as JSON to a temporary file beside `path`, sync it, and rename it into place.
fn write_json<T: Serialize>(path: &Path, value: &T, mode: u32) -> Result<(), BverError> {
    let fail = |e: std::io::Error| config_error(format!("cannot write {}: {e}", path.display()));
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp).map_err(fail)?;
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| config_error(format!("cannot encode {}: {e}", path.display())))?;
    file.write_all(&bytes).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    fs::rename(&tmp, path).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_the_previous_key_verifying_until_its_window_closes() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::create(dir.path()).unwrap();
        let (set, created) = data.key_set(1000).unwrap();
        assert!(created);
        let old = set.current().key_id().to_string();
        let new = data.rotate_key(2000, 1000).unwrap();
        assert_ne!(old, new);
        let (set, created) = data.key_set(1500).unwrap();
        assert!(!created);
        assert_eq!(set.current().key_id().as_str(), new);
        assert!(set.find(&old, 1500).is_ok());
        let (set, _) = data.key_set(2000).unwrap();
        assert!(set.find(&old, 2000).is_err(), "pruned after its window");
    }

    #[test]
    fn rotation_endorses_the_new_key_with_the_previous_one_for_eager() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::create(dir.path()).unwrap();
        let (set, _) = data.key_set(1000).unwrap();
        let previous = set.current().public_key().clone();
        // Without an identity there is no platform id to endorse for.
        data.rotate_key(2000, 1000).unwrap();
        let (set, _) = data.key_set(1000).unwrap();
        assert!(
            data.endorsement(set.current().public_key(), 1000)
                .unwrap()
                .is_none()
        );
        data.write_identity(&Identity {
            platform_id: "sites".into(),
            audience: "sites".into(),
        })
        .unwrap();
        let previous_now = set.current().public_key().clone();
        assert_ne!(previous, previous_now);
        data.rotate_key(2000, 1000).unwrap();
        let (set, _) = data.key_set(1000).unwrap();
        let e = data
            .endorsement(set.current().public_key(), 1000)
            .unwrap()
            .expect("an endorsement of the current key");
        assert_eq!(e.key().as_ref(), Some(set.current().public_key()));
        assert_eq!(e.endorser(), Some(previous_now.clone()));
        assert!(
            data.endorsement(&previous_now, 1000).unwrap().is_none(),
            "only for the key it endorses"
        );
        assert!(
            data.endorsement(set.current().public_key(), 2000)
                .unwrap()
                .is_none(),
            "not after the previous key's window"
        );
    }

    #[test]
    fn revocations_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::create(dir.path()).unwrap();
        let r = Revocations::new();
        r.revoke_token("abc", 99);
        r.revoke_issued_before("alice", 50);
        data.write_revocations(&r).unwrap();
        let back = Revocations::new();
        back.restore(data.revocations().unwrap());
        assert!(back.check("bob", "abc", 0).is_some());
        assert!(back.check("alice", "x", 49).is_some());
        assert!(back.check("alice", "x", 50).is_none());
    }
}
