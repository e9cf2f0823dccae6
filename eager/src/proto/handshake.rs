//! The control stream's `hello` exchange: each side names its platform and protocol
//! versions and announces its verifying keys in bytes signed by one of its keys, so that a
//! key rotation reaches peers over the channel they already trust.
//!
//! The dialer opens the control stream and sends its `hello`; the listener answers with its
//! own. Each side calls [`check_hello`] with the TLS-authenticated peer id and key.

use bver_auth::{KeySet, PublicKey};
use bver_contracts::{BverError, ErrorCode, Phase};

use crate::sign::{PeerKeys, sign_bytes, verify_bytes};
use crate::wire::{AnnouncedKey, Bytes, Hello, KeyAnnouncement, Message, PROTOCOL_VERSION};

/// The `hello` of `platform`: its protocol versions and its keys (current first, then the
/// retired ones still verifying at `now_unix`, then `next`: keys announced ahead of a
/// rotation), signed by the current key.
pub fn hello(platform: &str, keys: &KeySet, next: &[PublicKey], now_unix: u64) -> Message {
    let announcement = KeyAnnouncement {
        platform: platform.to_owned(),
        issued_at: now_unix,
        keys: keys
            .verifying_keys(now_unix)
            .into_iter()
            .map(|(k, until)| AnnouncedKey {
                key: Bytes(k.as_bytes().to_vec()),
                valid_until: until,
            })
            .chain(next.iter().map(|k| AnnouncedKey {
                key: Bytes(k.as_bytes().to_vec()),
                valid_until: None,
            }))
            .collect(),
    };
    let mut bytes = Vec::new();
    // Serializing plain data into a Vec cannot fail; an empty announcement would be refused
    // by the peer, which is the right outcome if it ever did.
    let _ = ciborium::into_writer(&announcement, &mut bytes);
    let (kid, sig) = sign_bytes(keys.current(), &bytes);
    Message::Hello(Hello {
        platform: platform.to_owned(),
        protocols: vec![PROTOCOL_VERSION],
        keys: Bytes(bytes),
        keys_kid: kid,
        keys_sig: sig,
    })
}

fn refused(code: ErrorCode, reason: &str, message: String) -> BverError {
    BverError::new(code, Phase::Authentication, message)
        .retryable(false)
        .with_details(serde_json::json!({ "reason": reason }))
}

/// Check a peer's `hello`: it names `peer` (the id its certificate was pinned for), speaks
/// protocol 1, and its announcement is signed by `tls_key` (the key its certificate
/// presented). Returns the peer's verifying keys: `tls_key` and every announced key.
///
/// # Errors
///
/// `unknown_peer` (`platform_mismatch`), `incompatible_contract` (`unsupported_protocol`),
/// `bad_signature` (the announcement's signature or shape).
pub fn check_hello(
    hello: &Hello,
    peer: &str,
    tls_key: &PublicKey,
    now_unix: u64,
) -> Result<PeerKeys, BverError> {
    if hello.platform != peer {
        return Err(refused(
            ErrorCode::UnknownPeer,
            "platform_mismatch",
            format!(
                "the peer says it is `{}` but its certificate is pinned for `{peer}`",
                hello.platform
            ),
        ));
    }
    if !hello.protocols.contains(&PROTOCOL_VERSION) {
        return Err(refused(
            ErrorCode::IncompatibleContract,
            "unsupported_protocol",
            format!(
                "`{peer}` speaks EAGER protocol versions {:?}, this node speaks {PROTOCOL_VERSION}",
                hello.protocols
            ),
        ));
    }
    let mut keys = PeerKeys::new(peer, [tls_key.clone()]);
    verify_bytes(
        &keys,
        &hello.keys_kid,
        &hello.keys.0,
        &hello.keys_sig,
        now_unix,
    )?;
    let announcement: KeyAnnouncement = ciborium::from_reader(&hello.keys.0[..])
        .map_err(|e| crate::sign::bad_signature("undecodable", format!("key announcement: {e}")))?;
    if announcement.platform != peer {
        return Err(crate::sign::bad_signature(
            "platform_mismatch",
            "the key announcement names another platform",
        ));
    }
    for k in announcement.keys {
        let public = PublicKey::from_bytes(&k.key.0).map_err(|e| {
            crate::sign::bad_signature("invalid_key", format!("announced key: {e}"))
        })?;
        keys.add(public, k.valid_until);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bver_auth::PlatformKey;

    #[test]
    fn rotation_is_announced_and_checked() {
        let mut set = KeySet::new(PlatformKey::from_seed(&[1; 32]).unwrap());
        let old = set.current().public_key().clone();
        set.rotate(PlatformKey::from_seed(&[2; 32]).unwrap(), 1_000);
        let new = set.current().public_key().clone();
        let ahead = PlatformKey::from_seed(&[3; 32])
            .unwrap()
            .public_key()
            .clone();
        let Message::Hello(h) = hello("sites", &set, std::slice::from_ref(&ahead), 10) else {
            panic!()
        };
        let keys = check_hello(&h, "sites", &new, 10).unwrap();
        assert!(keys.has_fingerprint(&old.fingerprint()));
        assert!(keys.has_fingerprint(&new.fingerprint()));
        assert!(keys.has_fingerprint(&ahead.fingerprint()));
        // Signed by a key the certificate did not present: refused.
        let e = check_hello(&h, "sites", &old, 10).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadSignature);
        let e = check_hello(&h, "grid", &new, 10).unwrap_err();
        assert_eq!(e.details["reason"], "platform_mismatch");
        let mut h2 = h.clone();
        h2.protocols = vec![2];
        let e = check_hello(&h2, "sites", &new, 10).unwrap_err();
        assert_eq!(e.details["reason"], "unsupported_protocol");
        let mut h3 = h;
        h3.keys.0[3] ^= 1;
        assert_eq!(
            check_hello(&h3, "sites", &new, 10).unwrap_err().details["reason"],
            "signature_mismatch"
        );
    }
}
