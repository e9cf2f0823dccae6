//! TLS for EAGER: a self-signed certificate made from the platform key, and rustls
//! verifiers that pin peers by the SHA-256 fingerprint of their raw Ed25519 key (like SSH
//! known_hosts), in both directions. TLS 1.3 only, ring only.
//!
//! The certificate's subject alternative name is the platform id; the dialer sends the
//! peer's platform id as the server name and accepts only a key pinned for that platform.
//! The listener accepts any client whose key is pinned for some configured peer and learns
//! the peer's id from the fingerprint. A refusal is logged with its reason; the peer sees
//! only a TLS alert.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, RwLock};

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

fn pinned_key(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Result<PublicKey, rustls::Error> {
    if !intermediates.is_empty() {
        tracing::warn!(
            "EAGER peer refused: it sent a certificate chain, not one self-signed certificate"
        );
        return Err(refuse("chain"));
    }
    certificate_key(end_entity).ok_or_else(|| {
        tracing::warn!("EAGER peer refused: its certificate does not carry an Ed25519 key");
        refuse("not_ed25519")
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
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let key = pinned_key(end_entity, intermediates)?;
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
        let fp = key.fingerprint();
        if !self.pins.knows(&platform) {
            tracing::warn!(peer = %platform, "EAGER peer refused: `{platform}` is not a configured peer");
            return Err(refuse("unknown_peer"));
        }
        if !self.pins.is_pinned(&platform, &fp) {
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
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let key = pinned_key(end_entity, intermediates)?;
        let fp = key.fingerprint();
        if self.pins.platform_of(&fp).is_none() {
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
/// TLS 1.3 with ALPN `bver-eager/1` and pinned peers.
pub fn configs(
    platform: &str,
    key: &PlatformKey,
    pins: &PeerPins,
) -> Result<(rustls::ServerConfig, rustls::ClientConfig), BverError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (cert, private) = certificate(platform, key)?;
    let tls = |e: rustls::Error| config_error(format!("TLS configuration: {e}"));
    let mut server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls)?
        .with_client_cert_verifier(Arc::new(PinnedClientVerifier::new(
            pins.clone(),
            Arc::clone(&provider),
        )))
        .with_single_cert(vec![cert.clone()], private.clone_key())
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
        .with_client_auth_cert(vec![cert], private)
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
        assert!(configs("grid", &key, &pins).is_ok());
    }
}
