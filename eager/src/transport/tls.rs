//! TLS for EAGER: a self-signed certificate made from the platform key, and rustls
//! verifiers that pin peers by the SHA-256 fingerprint of their raw Ed25519 key (like SSH
//! known_hosts), in both directions. TLS 1.3 only, ring only.
//!
//! The certificate's subject alternative name is the platform id; the dialer sends the
//! peer's platform id as the server name and accepts only a key pinned for that platform.
//! The listener accepts any client whose key is pinned for some configured peer and learns
//! the peer's id from the fingerprint. A refusal is logged with its reason; the peer sees
//! only a TLS alert.
//!
//! **Rotation.** After a key rotation a platform presents an [`Endorsement`]: the new key's
//! certificate *signed by the previous key*, followed by the previous key's self-signed
//! certificate, valid until the previous key's verification window closes. A peer that pins
//! only the previous key accepts the new one through it (one step: the previous key must be
//! pinned), and learns the new key from the `hello` that follows.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bver_auth::{PlatformKey, PublicKey};
use bver_contracts::{BverError, ErrorCode, Phase};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), before the 32 key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

fn config_error(message: String) -> BverError {
    BverError::new(ErrorCode::InvalidDefinition, Phase::Configuration, message)
}

/// A self-signed certificate for `platform` from its key (the key's PKCS#8 document).
pub fn certificate(
    platform: &str,
    key: &PlatformKey,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), BverError> {
    let pkcs8 = PrivatePkcs8KeyDer::from(key.pkcs8_der().to_vec());
    let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519)
        .map_err(|e| config_error(format!("platform key for TLS: {e}")))?;
    let mut params = rcgen::CertificateParams::new(vec![platform.to_owned()])
        .map_err(|e| config_error(format!("platform id `{platform}` as a TLS name: {e}")))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, platform);
    let cert = params
        .self_signed(&pair)
        .map_err(|e| config_error(format!("self-signed certificate: {e}")))?;
    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(pkcs8)))
}

/// A rotation endorsement (see the module docs): DER certificates, presented as the chain
/// `[certificate, previous]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Endorsement {
    /// The current key's certificate, issued and signed by the previous key.
    pub certificate: Vec<u8>,
    /// The previous key's self-signed certificate (carries the key that signed `certificate`).
    pub previous: Vec<u8>,
}

impl fmt::Debug for Endorsement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endorsement")
            .field("key", &self.key().map(|k| k.key_id().to_string()))
            .field("endorser", &self.endorser().map(|k| k.key_id().to_string()))
            .finish()
    }
}

impl Endorsement {
    /// The endorsed key (`certificate`'s).
    pub fn key(&self) -> Option<PublicKey> {
        certificate_key(&CertificateDer::from(self.certificate.as_slice()))
    }

    /// The endorsing key (`previous`'s).
    pub fn endorser(&self) -> Option<PublicKey> {
        certificate_key(&CertificateDer::from(self.previous.as_slice()))
    }
}

/// Endorse `next` with `previous` for `platform` until `valid_until` (unix seconds): what a
/// rotation hands to the endpoint (`bver key rotate` writes it beside the keys).
pub fn endorse(
    platform: &str,
    next: &PlatformKey,
    previous: &PlatformKey,
    valid_until: u64,
) -> Result<Endorsement, BverError> {
    let pair = |key: &PlatformKey| {
        rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(key.pkcs8_der().to_vec()),
            &rcgen::PKCS_ED25519,
        )
        .map_err(|e| config_error(format!("platform key for TLS: {e}")))
    };
    let params = || {
        let mut params = rcgen::CertificateParams::new(vec![platform.to_owned()])
            .map_err(|e| config_error(format!("platform id `{platform}` as a TLS name: {e}")))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, platform);
        Ok::<_, BverError>(params)
    };
    let previous_pair = pair(previous)?;
    let issuer = params()?
        .self_signed(&previous_pair)
        .map_err(|e| config_error(format!("self-signed certificate: {e}")))?;
    let mut endorsed = params()?;
    endorsed.not_after = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(valid_until);
    let cert = endorsed
        .signed_by(&pair(next)?, &issuer, &previous_pair)
        .map_err(|e| config_error(format!("endorsed certificate: {e}")))?;
    Ok(Endorsement {
        certificate: cert.der().to_vec(),
        previous: issuer.der().to_vec(),
    })
}

/// The Ed25519 public key a certificate carries, if it carries one.
pub fn certificate_key(cert: &CertificateDer<'_>) -> Option<PublicKey> {
    let parsed = webpki::EndEntityCert::try_from(cert).ok()?;
    let spki = parsed.subject_public_key_info();
    let raw = spki.as_ref().strip_prefix(&ED25519_SPKI_PREFIX[..])?;
    PublicKey::from_bytes(raw).ok()
}

/// The pinned keys of configured peers, shared by the verifiers and the endpoint (which
/// adds keys the peers announce).
#[derive(Debug, Clone, Default)]
pub struct PeerPins {
    inner: Arc<RwLock<HashMap<String, HashSet<[u8; 32]>>>>,
}

impl PeerPins {
    /// No peers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pin `fingerprint` (SHA-256 of the raw public key) for `platform`.
    pub fn pin(&self, platform: &str, fingerprint: [u8; 32]) {
        if let Ok(mut map) = self.inner.write() {
            map.entry(platform.to_owned())
                .or_default()
                .insert(fingerprint);
        }
    }

    /// Whether `platform` is a configured peer.
    pub fn knows(&self, platform: &str) -> bool {
        self.inner.read().is_ok_and(|m| m.contains_key(platform))
    }

    /// Whether `fingerprint` is pinned for `platform`.
    pub fn is_pinned(&self, platform: &str, fingerprint: &[u8; 32]) -> bool {
        self.inner
            .read()
            .is_ok_and(|m| m.get(platform).is_some_and(|s| s.contains(fingerprint)))
    }

    /// The fingerprints pinned for `platform` (configured and announced), sorted.
    pub fn fingerprints(&self, platform: &str) -> Vec<[u8; 32]> {
        let mut v: Vec<[u8; 32]> = self
            .inner
            .read()
            .map(|m| {
                m.get(platform)
                    .map(|s| s.iter().copied().collect())
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The peer `fingerprint` is pinned for.
    pub fn platform_of(&self, fingerprint: &[u8; 32]) -> Option<String> {
        let map = self.inner.read().ok()?;
        map.iter()
            .find(|(_, set)| set.contains(fingerprint))
            .map(|(p, _)| p.clone())
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn refuse(reason: &str) -> rustls::Error {
    tracing::debug!(reason, "EAGER TLS refusal");
    rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
}

/// The keys a peer's certificate chain presents: its key, and the previous key endorsing it
/// when it sent an [`Endorsement`] (checked here: signed by that key, within its validity).
#[derive(Debug, Clone)]
pub struct ChainKeys {
    /// The key of the end-entity certificate (the one that signs the TLS handshake).
    pub key: PublicKey,
    /// The key that endorsed it.
    pub endorser: Option<PublicKey>,
}

impl ChainKeys {
    /// Whether either key is pinned for `platform`.
    pub fn pinned_for(&self, pins: &PeerPins, platform: &str) -> bool {
        pins.is_pinned(platform, &self.key.fingerprint())
            || self
                .endorser
                .as_ref()
                .is_some_and(|e| pins.is_pinned(platform, &e.fingerprint()))
    }

    /// The peer either key is pinned for (its own key first).
    pub fn platform(&self, pins: &PeerPins) -> Option<String> {
        pins.platform_of(&self.key.fingerprint()).or_else(|| {
            self.endorser
                .as_ref()
                .and_then(|e| pins.platform_of(&e.fingerprint()))
        })
    }
}

/// The keys of a chain a peer sent (see [`ChainKeys`]); `None` if it is not one self-signed
/// Ed25519 certificate or an endorsement that verifies at `now`.
pub fn chain_keys(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    provider: &CryptoProvider,
    now: UnixTime,
    server: bool,
) -> Result<ChainKeys, &'static str> {
    let key = certificate_key(end_entity).ok_or("not_ed25519")?;
    match intermediates {
        [] => Ok(ChainKeys {
            key,
            endorser: None,
        }),
        [previous] => {
            let endorser = certificate_key(previous).ok_or("not_ed25519")?;
            let anchor = webpki::anchor_from_trusted_cert(previous).map_err(|_| "bad_endorser")?;
            let cert =
                webpki::EndEntityCert::try_from(end_entity).map_err(|_| "bad_certificate")?;
            let usage = if server {
                webpki::KeyUsage::server_auth()
            } else {
                webpki::KeyUsage::client_auth()
            };
            cert.verify_for_usage(
                provider.signature_verification_algorithms.all,
                &[anchor],
                &[],
                now,
                usage,
                None,
                None,
            )
            .map_err(|e| {
                tracing::debug!(error = %e, "EAGER endorsement does not verify");
                if matches!(e, webpki::Error::CertExpired { .. }) {
                    "endorsement_expired"
                } else {
                    "endorsement_invalid"
                }
            })?;
            Ok(ChainKeys {
                key,
                endorser: Some(endorser),
            })
        }
        _ => Err("chain"),
    }
}

fn checked_chain(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    provider: &CryptoProvider,
    now: UnixTime,
    server: bool,
) -> Result<ChainKeys, rustls::Error> {
    chain_keys(end_entity, intermediates, provider, now, server).map_err(|reason| {
        tracing::warn!(
            reason,
            "EAGER peer refused: its certificate is not one self-signed Ed25519 certificate or a valid rotation endorsement"
        );
        refuse(reason)
    })
}

/// The dialer's verifier: the listener must present a key pinned for the platform dialed.
pub struct PinnedServerVerifier {
    pins: PeerPins,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for PinnedServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedServerVerifier")
            .finish_non_exhaustive()
    }
}

impl PinnedServerVerifier {
    /// A verifier over `pins`.
    pub fn new(pins: PeerPins, provider: Arc<CryptoProvider>) -> Self {
        Self { pins, provider }
    }
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = checked_chain(end_entity, intermediates, &self.provider, now, true)?;
        let platform = match server_name {
            ServerName::DnsName(d) => d.as_ref().to_owned(),
            other => {
                tracing::warn!(
                    ?other,
                    "EAGER peer refused: dialed by address, not by platform id"
                );
                return Err(refuse("no_platform"));
            }
        };
        let fp = chain.key.fingerprint();
        if !self.pins.knows(&platform) {
            tracing::warn!(peer = %platform, "EAGER peer refused: `{platform}` is not a configured peer");
            return Err(refuse("unknown_peer"));
        }
        if !chain.pinned_for(&self.pins, &platform) {
            tracing::warn!(
                peer = %platform,
                fingerprint = %hex(&fp),
                "EAGER peer refused: its key fingerprint is not pinned for `{platform}`"
            );
            return Err(refuse("fingerprint_mismatch"));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// Both verifiers: EAGER is TLS 1.3 only.
fn tls12_refused() -> Result<HandshakeSignatureValid, rustls::Error> {
    Err(rustls::Error::PeerIncompatible(
        rustls::PeerIncompatible::Tls12NotOffered,
    ))
}

/// Both verifiers: the handshake signature, checked with the provider's algorithms.
fn verify_tls13(
    provider: &CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature(
        message,
        cert,
        dss,
        &provider.signature_verification_algorithms,
    )
}

/// The listener's verifier: the dialer must present a key pinned for some configured peer.
pub struct PinnedClientVerifier {
    pins: PeerPins,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for PinnedClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedClientVerifier")
            .finish_non_exhaustive()
    }
}

impl PinnedClientVerifier {
    /// A verifier over `pins`.
    pub fn new(pins: PeerPins, provider: Arc<CryptoProvider>) -> Self {
        Self { pins, provider }
    }
}

impl ClientCertVerifier for PinnedClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let chain = checked_chain(end_entity, intermediates, &self.provider, now, false)?;
        let fp = chain.key.fingerprint();
        if chain.platform(&self.pins).is_none() {
            tracing::warn!(
                fingerprint = %hex(&fp),
                "EAGER peer refused: unknown key (no configured peer is pinned to it)"
            );
            return Err(refuse("unknown_peer"));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// The rustls configurations of an endpoint: server (listener) and client (dialer), both
/// TLS 1.3 with ALPN `bver-eager/1` and pinned peers. With an `endorsement` of `key` (see
/// [`Endorsement`]) both present it; an endorsement of another key is ignored.
pub fn configs(
    platform: &str,
    key: &PlatformKey,
    pins: &PeerPins,
    endorsement: Option<&Endorsement>,
) -> Result<(rustls::ServerConfig, rustls::ClientConfig), BverError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (cert, private) = certificate(platform, key)?;
    let chain = match endorsement {
        Some(e) if e.key().as_ref() == Some(key.public_key()) => vec![
            CertificateDer::from(e.certificate.clone()),
            CertificateDer::from(e.previous.clone()),
        ],
        Some(e) => {
            tracing::warn!(
                ?e,
                "EAGER: the rotation endorsement is not for the current key; not presented"
            );
            vec![cert]
        }
        None => vec![cert],
    };
    let tls = |e: rustls::Error| config_error(format!("TLS configuration: {e}"));
    let mut server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls)?
        .with_client_cert_verifier(Arc::new(PinnedClientVerifier::new(
            pins.clone(),
            Arc::clone(&provider),
        )))
        .with_single_cert(chain.clone(), private.clone_key())
        .map_err(tls)?;
    server.alpn_protocols = vec![crate::wire::ALPN.to_vec()];
    let mut client = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServerVerifier::new(
            pins.clone(),
            Arc::clone(&provider),
        )))
        .with_client_auth_cert(chain, private)
        .map_err(tls)?;
    client.alpn_protocols = vec![crate::wire::ALPN.to_vec()];
    Ok((server, client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_carries_the_platform_key() {
        let key = PlatformKey::from_seed(&[3; 32]).unwrap();
        let (cert, _) = certificate("sites", &key).unwrap();
        assert_eq!(certificate_key(&cert).as_ref(), Some(key.public_key()));
        let pins = PeerPins::new();
        pins.pin("sites", key.public_key().fingerprint());
        assert_eq!(
            pins.platform_of(&key.public_key().fingerprint()).as_deref(),
            Some("sites")
        );
        assert!(configs("grid", &key, &pins, None).is_ok());
    }

    #[test]
    fn an_endorsement_vouches_for_the_next_key_with_the_previous_one() {
        let previous = PlatformKey::from_seed(&[3; 32]).unwrap();
        let next = PlatformKey::from_seed(&[4; 32]).unwrap();
        let other = PlatformKey::from_seed(&[5; 32]).unwrap();
        let provider = rustls::crypto::ring::default_provider();
        let e = endorse("sites", &next, &previous, 2_000_000_000).unwrap();
        assert_eq!(e.key().as_ref(), Some(next.public_key()));
        assert_eq!(e.endorser().as_ref(), Some(previous.public_key()));
        let at = |secs| UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs));
        let end = CertificateDer::from(e.certificate.clone());
        let prev = CertificateDer::from(e.previous.clone());
        for server in [true, false] {
            let chain = chain_keys(
                &end,
                std::slice::from_ref(&prev),
                &provider,
                at(1_800_000_000),
                server,
            )
            .unwrap();
            assert_eq!(&chain.key, next.public_key());
            assert_eq!(chain.endorser.as_ref(), Some(previous.public_key()));
        }
        let pins = PeerPins::new();
        pins.pin("sites", previous.public_key().fingerprint());
        let chain = chain_keys(
            &end,
            std::slice::from_ref(&prev),
            &provider,
            at(1_800_000_000),
            true,
        )
        .unwrap();
        assert!(chain.pinned_for(&pins, "sites"));
        assert_eq!(chain.platform(&pins).as_deref(), Some("sites"));
        // Past the previous key's window: refused.
        assert_eq!(
            chain_keys(
                &end,
                std::slice::from_ref(&prev),
                &provider,
                at(2_000_000_001),
                true
            )
            .unwrap_err(),
            "endorsement_expired"
        );
        // Endorsed by a key that did not sign it: refused.
        let (forger, _) = certificate("sites", &other).unwrap();
        assert_eq!(
            chain_keys(&end, &[forger], &provider, at(1_800_000_000), true).unwrap_err(),
            "endorsement_invalid"
        );
        // Longer chains are refused.
        assert_eq!(
            chain_keys(
                &end,
                &[prev.clone(), prev.clone()],
                &provider,
                at(1_800_000_000),
                true
            )
            .unwrap_err(),
            "chain"
        );
        assert!(configs("sites", &next, &pins, Some(&e)).is_ok());
    }
}
