//! Integration tests of `bver-auth`: platform keys on disk, rotation, token issue and verify,
//! every rejection reason, the verified-token cache with revocation, the mapping into the
//! shared error, and a fixed-key snapshot of a whole token.
//!
//! Time is always an explicit `now`. Hand-made tokens (for `alg: none`, algorithm confusion,
//! odd claims) are assembled by [`forge`].
//!
//! Snapshots live in `tests/snapshots/`; run with `BVER_UPDATE_SNAPSHOTS=1` to rewrite them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bver_auth::{
    AuthError, Claims, HmacSecret, Issuer, KeyError, KeySet, PlatformKey, Principal,
    RevocationReason, Revocations, Scope, ScopeSet, Verifier, VerifierConfig,
};
use bver_contracts::{BverError, ErrorCode, Phase};
use serde_json::{Value, json};

const NOW: u64 = 1_700_000_000;
const HOUR: u64 = 3600;
const ISS: &str = "sites";
const AUD: &str = "sites";

fn key(seed: u8) -> PlatformKey {
    PlatformKey::from_seed(&[seed; 32]).unwrap()
}

fn scopes(s: &str) -> ScopeSet {
    ScopeSet::parse(s).unwrap()
}

fn scope(s: &str) -> Scope {
    Scope::parse(s).unwrap()
}

fn secret() -> HmacSecret {
    HmacSecret::new("hs-1", b"0123456789abcdef0123456789abcdef-shared".to_vec()).unwrap()
}

/// A platform: key set, revocations, an issuer and a verifier (leeway 0 unless changed).
struct Platform {
    revocations: Arc<Revocations>,
    issuer: Issuer,
    verifier: Verifier,
}

impl Platform {
    fn new() -> Self {
        Self::with(VerifierConfig::new(ISS, AUD).leeway_secs(0))
    }

    fn with(config: VerifierConfig) -> Self {
        let keys = KeySet::new(key(1));
        let revocations = Arc::new(Revocations::new());
        let issuer = Issuer::ed25519(ISS, AUD, keys.current());
        let verifier = Verifier::new(config, &keys, revocations.clone());
        Self {
            revocations,
            issuer,
            verifier,
        }
    }

    fn token(&self, sub: &str, scope: &str) -> String {
        let scopes = scopes(scope);
        self.issuer
            .issue(sub, &scopes, Duration::from_secs(HOUR), NOW)
            .unwrap()
            .token
    }

    fn refuse(&self, token: &str, now: u64) -> AuthError {
        match self.verifier.verify(token, now) {
            Ok(p) => panic!("token was accepted as {p:?}"),
            Err(e) => e,
        }
    }
}

/// The claims an issuer would write, as JSON, for hand-made tokens.
fn claims_json() -> Value {
    json!({
        "iss": ISS, "sub": "alice", "aud": AUD,
        "exp": NOW + HOUR, "nbf": NOW, "iat": NOW, "jti": "t-1",
        "scope": "refs:site:read",
    })
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// How a hand-made token is signed.
enum Sig<'a> {
    Ed(&'a PlatformKey),
    Hmac(&'a [u8]),
    Empty,
}

/// Assemble `header.claims.signature` by hand.
fn forge(header: &Value, claims: &Value, sig: Sig<'_>) -> String {
    let input = format!(
        "{}.{}",
        b64(&serde_json::to_vec(header).unwrap()),
        b64(&serde_json::to_vec(claims).unwrap())
    );
    let signature = match sig {
        Sig::Ed(k) => k.sign(input.as_bytes()).to_vec(),
        Sig::Hmac(secret) => {
            let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
            ring::hmac::sign(&k, input.as_bytes()).as_ref().to_vec()
        }
        Sig::Empty => Vec::new(),
    };
    format!("{input}.{}", b64(&signature))
}

fn ed_header(k: &PlatformKey) -> Value {
    json!({ "typ": "JWT", "alg": "EdDSA", "kid": k.key_id().as_str() })
}

// ---------------------------------------------------------------------------------------------
// Keys

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
#[test]
fn key_file_round_trip_is_0600_and_never_overwritten() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("platform.key");
    let k = PlatformKey::generate().unwrap();
    k.save(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{text}");

    let loaded = PlatformKey::load(&path).unwrap();
    assert_eq!(loaded.public_key(), k.public_key());
    assert_eq!(loaded.key_id(), k.key_id());
    assert_eq!(loaded.sign(b"m"), k.sign(b"m"));

    // Never overwritten, and no temporary file is left behind.
    let other = PlatformKey::generate().unwrap();
    assert!(matches!(
        other.save(&path),
        Err(KeyError::AlreadyExists { .. })
    ));
    assert_eq!(PlatformKey::load(&path).unwrap().key_id(), k.key_id());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    // Group- or world-accessible key files are refused with a clear error.
    for bad in [0o644, 0o640, 0o604, 0o660] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(bad)).unwrap();
        let err = PlatformKey::load(&path).unwrap_err();
        assert!(matches!(err, KeyError::InsecurePermissions { mode, .. } if mode == bad));
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("{bad:04o}")) && msg.contains("chmod 600"),
            "{msg}"
        );
        let shared: BverError = err.into();
        assert_eq!(
            (shared.code, shared.phase),
            (ErrorCode::Internal, Phase::Configuration)
        );
        assert_eq!(shared.details["reason"], "insecure_permissions");
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    assert!(PlatformKey::load(&path).is_ok());
}

#[test]
fn load_or_generate_creates_once_then_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.pem");
    let (first, created) = PlatformKey::load_or_generate(&path).unwrap();
    assert!(created);
    let (second, created) = PlatformKey::load_or_generate(&path).unwrap();
    assert!(!created);
    assert_eq!(first.key_id(), second.key_id());
}

#[test]
fn invalid_key_material_is_refused() {
    assert!(matches!(
        PlatformKey::from_pkcs8(b"nope"),
        Err(KeyError::InvalidKey { .. })
    ));
    assert!(matches!(
        bver_auth::PublicKey::from_bytes(&[0; 31]),
        Err(KeyError::InvalidKey { .. })
    ));
    assert!(matches!(
        HmacSecret::new("k", b"short".to_vec()),
        Err(KeyError::WeakSecret { .. })
    ));
    // Debug output never shows secrets.
    let dbg = format!("{:?} {:?}", secret(), key(1));
    assert!(!dbg.contains("0123456789abcdef"), "{dbg}");
}

#[test]
fn key_ids_are_truncated_sha256_fingerprints() {
    let k = key(1);
    let fp = k.public_key().fingerprint();
    assert_eq!(k.key_id().as_str(), b64(&fp[..16]));
    assert_eq!(k.key_id().as_str().len(), 22);
    assert_ne!(key(1).key_id(), key(2).key_id());
    // Same seed, same key: fixed vectors are stable.
    assert_eq!(key(1).public_key(), k.public_key());
}

#[test]
fn key_set_verifies_and_rotates() {
    let mut set = KeySet::new(key(1));
    let old_kid = key(1).key_id().to_string();
    let sig = set.current().sign(b"batch");
    assert_eq!(set.verify(&old_kid, b"batch", &sig, NOW), Ok(()));
    assert_eq!(
        set.verify(&old_kid, b"other", &sig, NOW),
        Err(AuthError::BadSignature)
    );
    assert!(matches!(
        set.verify("nope", b"batch", &sig, NOW),
        Err(AuthError::UnknownKid { .. })
    ));

    set.rotate(key(2), NOW + HOUR);
    assert_eq!(set.current().key_id(), key(2).key_id());
    assert_eq!(set.verify(&old_kid, b"batch", &sig, NOW + HOUR - 1), Ok(()));
    assert_eq!(
        set.verify(&old_kid, b"batch", &sig, NOW + HOUR),
        Err(AuthError::KeyRetired {
            kid: old_kid.clone(),
            valid_until: NOW + HOUR
        })
    );
    assert_eq!(set.jwks(NOW)["keys"].as_array().unwrap().len(), 2);
    let jwks = set.jwks(NOW + HOUR);
    assert_eq!(
        jwks,
        json!({ "keys": [{
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
            "kid": key(2).key_id().as_str(),
            "x": b64(key(2).public_key().as_bytes()),
        }]})
    );
    set.prune(NOW + HOUR);
    assert!(set.retired().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Issue and verify

#[test]
fn issued_token_verifies_into_a_principal() {
    let p = Platform::new();
    let issued = p
        .issuer
        .issue(
            "alice",
            &scopes("refs:site:read"),
            Duration::from_secs(HOUR),
            NOW,
        )
        .unwrap();
    assert!(
        !format!("{issued:?}").contains(&issued.token),
        "Debug must redact the token"
    );
    let principal = p.verifier.verify(&issued.token, NOW).unwrap();
    assert_eq!(
        principal,
        Principal {
            subject: "alice".into(),
            scopes: scopes("refs:site:read"),
            token_id: issued.claims.jti.clone(),
            issued_at: NOW,
            expires_at: NOW + HOUR,
            issuer: ISS.into(),
        }
    );
    assert_eq!(issued.claims.jti.len(), 22);
    // The header carries the kid.
    let header = jsonwebtoken::decode_header(&issued.token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(key(1).key_id().as_str()));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    // Two tokens never share a jti.
    let again = p
        .issuer
        .issue("alice", &ScopeSet::new(), Duration::from_secs(1), NOW)
        .unwrap();
    assert_ne!(again.claims.jti, issued.claims.jti);
}

#[test]
fn ring_and_jsonwebtoken_agree_on_ed25519() {
    // The JWT is signed by jsonwebtoken (RustCrypto) from the PKCS#8 DER and verified from
    // the raw public key; ring signs the same input to the same bytes.
    let k = key(1);
    let issuer = Issuer::ed25519(ISS, AUD, &k);
    let token = issuer
        .issue("alice", &ScopeSet::new(), Duration::from_secs(60), NOW)
        .unwrap();
    let (input, sig) = token.token.rsplit_once('.').unwrap();
    assert_eq!(b64(&k.sign(input.as_bytes())), sig);
    let decoding = jsonwebtoken::DecodingKey::from_ed_der(k.public_key().as_bytes());
    assert!(
        jsonwebtoken::crypto::verify(
            sig,
            input.as_bytes(),
            &decoding,
            jsonwebtoken::Algorithm::EdDSA
        )
        .unwrap()
    );
    // A freshly generated key (PKCS#8 v2 from ring) works with jsonwebtoken too.
    let fresh = PlatformKey::generate().unwrap();
    let set = KeySet::new(fresh);
    let v = Verifier::new(VerifierConfig::new(ISS, AUD), &set, Arc::default());
    let t = Issuer::ed25519(ISS, AUD, set.current())
        .issue("bob", &ScopeSet::new(), Duration::from_secs(60), NOW)
        .unwrap();
    assert_eq!(v.verify(&t.token, NOW).unwrap().subject, "bob");
}

#[test]
fn issue_refuses_empty_subject_and_zero_ttl() {
    let p = Platform::new();
    let none = ScopeSet::new();
    for (sub, ttl) in [("", 60), ("a", 0)] {
        let err = p
            .issuer
            .issue(sub, &none, Duration::from_secs(ttl), NOW)
            .unwrap_err();
        assert!(matches!(err, KeyError::InvalidRequest { .. }));
        let shared: BverError = err.into();
        assert_eq!(shared.code, ErrorCode::MalformedRequest);
    }
}

#[test]
fn hs256_only_when_configured() {
    let config = VerifierConfig::new(ISS, AUD)
        .leeway_secs(0)
        .with_hs256(secret());
    let p = Platform::with(config);
    let hs = Issuer::hs256(ISS, AUD, &secret());
    let token = hs
        .issue("svc", &scopes("metrics:read"), Duration::from_secs(60), NOW)
        .unwrap();
    assert_eq!(p.verifier.verify(&token.token, NOW).unwrap().subject, "svc");
    // EdDSA still works beside it.
    assert!(p.verifier.verify(&p.token("alice", ""), NOW).is_ok());

    // Without the secret configured, HS256 is refused outright.
    let plain = Platform::new();
    assert_eq!(
        plain.refuse(&token.token, NOW),
        AuthError::AlgorithmNotAllowed {
            alg: "HS256".into()
        }
    );
    // An EdDSA token naming the HMAC kid is a mismatch.
    let ed_as_hmac = forge(
        &json!({"alg": "EdDSA", "kid": "hs-1"}),
        &claims_json(),
        Sig::Ed(&key(1)),
    );
    assert!(matches!(
        p.refuse(&ed_as_hmac, NOW),
        AuthError::KeyAlgorithmMismatch { .. }
    ));
    // A wrong HMAC secret with the right kid is a bad signature.
    let wrong = forge(
        &json!({"alg": "HS256", "kid": "hs-1"}),
        &claims_json(),
        Sig::Hmac(b"another secret that is long enough!!"),
    );
    assert_eq!(p.refuse(&wrong, NOW), AuthError::BadSignature);
}

#[test]
fn algorithm_confusion_is_refused() {
    // The attacker knows the public key (it is published in the JWKS) and uses it as an HMAC
    // secret, naming the Ed25519 key as kid.
    let k = key(1);
    let header = json!({ "typ": "JWT", "alg": "HS256", "kid": k.key_id().as_str() });
    let jwk_x = b64(k.public_key().as_bytes());
    for public in [k.public_key().as_bytes().as_slice(), jwk_x.as_bytes()] {
        let token = forge(&header, &claims_json(), Sig::Hmac(public));
        // EdDSA-only verifier: HS256 is not an accepted algorithm at all.
        let p = Platform::new();
        assert_eq!(
            p.refuse(&token, NOW),
            AuthError::AlgorithmNotAllowed {
                alg: "HS256".into()
            }
        );
        // Verifier with HS256 configured: the kid names an Ed25519 key, so it is a mismatch,
        // never an HMAC check with the public key.
        let p = Platform::with(VerifierConfig::new(ISS, AUD).with_hs256(secret()));
        assert_eq!(
            p.refuse(&token, NOW),
            AuthError::KeyAlgorithmMismatch {
                alg: "HS256".into(),
                kid: k.key_id().to_string()
            }
        );
        // And naming the HMAC kid with the public key as secret is a bad signature.
        let token = forge(
            &json!({"alg": "HS256", "kid": "hs-1"}),
            &claims_json(),
            Sig::Hmac(public),
        );
        assert_eq!(p.refuse(&token, NOW), AuthError::BadSignature);
    }
}

// ---------------------------------------------------------------------------------------------
// Every rejection reason

#[test]
fn every_rejection_reason_is_distinct() {
    let p = Platform::new();
    let k = key(1);
    let good = forge(&ed_header(&k), &claims_json(), Sig::Ed(&k));
    assert!(p.verifier.verify(&good, NOW).is_ok());

    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims_json();
        f(&mut c);
        forge(&ed_header(&k), &c, Sig::Ed(&k))
    };
    let (h, c, s) = {
        let mut it = good.split('.');
        (it.next().unwrap(), it.next().unwrap(), it.next().unwrap())
    };

    let big_header = forge(
        &json!({"alg": "EdDSA", "kid": k.key_id().as_str(), "pad": "x".repeat(1000)}),
        &claims_json(),
        Sig::Ed(&k),
    );
    let cases: Vec<(&str, String, u64, AuthError)> = vec![
        ("missing", String::new(), NOW, AuthError::MissingToken),
        (
            "two parts",
            format!("{h}.{c}"),
            NOW,
            AuthError::Malformed {
                reason: "expected three `.`-separated parts",
            },
        ),
        (
            "four parts",
            format!("{good}.x"),
            NOW,
            AuthError::Malformed {
                reason: "expected three `.`-separated parts",
            },
        ),
        (
            "header not base64",
            format!("!!.{c}.{s}"),
            NOW,
            AuthError::Malformed {
                reason: "the header is not base64url",
            },
        ),
        (
            "header not json",
            format!("{}.{c}.{s}", b64(b"[1,2")),
            NOW,
            AuthError::Malformed {
                reason: "the header is not a JSON object",
            },
        ),
        (
            "header without alg",
            forge(
                &json!({"kid": k.key_id().as_str()}),
                &claims_json(),
                Sig::Ed(&k),
            ),
            NOW,
            AuthError::Malformed {
                reason: "the header has no `alg`",
            },
        ),
        (
            "crit header",
            forge(
                &json!({"alg": "EdDSA", "kid": k.key_id().as_str(), "crit": ["b64"]}),
                &claims_json(),
                Sig::Ed(&k),
            ),
            NOW,
            AuthError::Malformed {
                reason: "critical header extensions (`crit`)",
            },
        ),
        (
            "claims not json",
            {
                let input = format!("{h}.{}", b64(b"not json"));
                format!("{input}.{}", b64(&k.sign(input.as_bytes())))
            },
            NOW,
            AuthError::Malformed {
                reason: "the header or claims do not have the expected JSON shape",
            },
        ),
        (
            "exp is a string",
            with(&|c| c["exp"] = json!("tomorrow")),
            NOW,
            AuthError::Malformed {
                reason: "the header or claims do not have the expected JSON shape",
            },
        ),
        (
            "signature not base64",
            format!("{h}.{c}.***"),
            NOW,
            AuthError::Malformed {
                reason: "a part is not base64url",
            },
        ),
        (
            "too large",
            format!("{good}{}", "A".repeat(8 * 1024)),
            NOW,
            AuthError::TokenTooLarge {
                len: good.len() + 8 * 1024,
                max: 8 * 1024,
            },
        ),
        (
            "header too large",
            big_header.clone(),
            NOW,
            AuthError::HeaderTooLarge {
                len: big_header.find('.').unwrap(),
                max: 1024,
            },
        ),
        (
            "alg none",
            forge(&json!({"alg": "none"}), &claims_json(), Sig::Empty),
            NOW,
            AuthError::AlgNone,
        ),
        (
            "alg None",
            forge(
                &json!({"alg": "None", "kid": k.key_id().as_str()}),
                &claims_json(),
                Sig::Empty,
            ),
            NOW,
            AuthError::AlgNone,
        ),
        (
            "alg RS256",
            forge(
                &json!({"alg": "RS256", "kid": k.key_id().as_str()}),
                &claims_json(),
                Sig::Ed(&k),
            ),
            NOW,
            AuthError::AlgorithmNotAllowed {
                alg: "RS256".into(),
            },
        ),
        (
            "alg lowercase eddsa",
            forge(
                &json!({"alg": "eddsa", "kid": k.key_id().as_str()}),
                &claims_json(),
                Sig::Ed(&k),
            ),
            NOW,
            AuthError::AlgorithmNotAllowed {
                alg: "eddsa".into(),
            },
        ),
        (
            "unknown kid",
            forge(
                &json!({"alg": "EdDSA", "kid": "someone-else"}),
                &claims_json(),
                Sig::Ed(&k),
            ),
            NOW,
            AuthError::UnknownKid {
                kid: Some("someone-else".into()),
            },
        ),
        (
            "missing kid",
            forge(&json!({"alg": "EdDSA"}), &claims_json(), Sig::Ed(&k)),
            NOW,
            AuthError::UnknownKid { kid: None },
        ),
        (
            "signed by another key under our kid",
            forge(&ed_header(&k), &claims_json(), Sig::Ed(&key(9))),
            NOW,
            AuthError::BadSignature,
        ),
        (
            "tampered claims",
            {
                let mut c = claims_json();
                c["scope"] = json!("admin");
                let other = forge(&ed_header(&k), &c, Sig::Empty);
                let tampered_claims = other.split('.').nth(1).unwrap().to_owned();
                format!("{h}.{tampered_claims}.{s}")
            },
            NOW,
            AuthError::BadSignature,
        ),
        (
            "truncated signature",
            format!("{h}.{c}.{}", &s[..40]),
            NOW,
            AuthError::BadSignature,
        ),
        (
            "wrong issuer",
            with(&|c| c["iss"] = json!("grid")),
            NOW,
            AuthError::WrongIssuer {
                expected: ISS.into(),
                found: "grid".into(),
            },
        ),
        (
            "missing issuer",
            with(&|c| {
                c.as_object_mut().unwrap().remove("iss");
            }),
            NOW,
            AuthError::MissingClaim { claim: "iss" },
        ),
        (
            "wrong audience",
            with(&|c| c["aud"] = json!("grid")),
            NOW,
            AuthError::WrongAudience {
                expected: AUD.into(),
            },
        ),
        (
            "audience list without us",
            with(&|c| c["aud"] = json!(["grid", "geo"])),
            NOW,
            AuthError::WrongAudience {
                expected: AUD.into(),
            },
        ),
        (
            "missing audience",
            with(&|c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
            NOW,
            AuthError::MissingClaim { claim: "aud" },
        ),
        (
            "missing exp",
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            NOW,
            AuthError::MissingClaim { claim: "exp" },
        ),
        (
            "missing iat",
            with(&|c| {
                c.as_object_mut().unwrap().remove("iat");
            }),
            NOW,
            AuthError::MissingClaim { claim: "iat" },
        ),
        (
            "missing jti",
            with(&|c| {
                c.as_object_mut().unwrap().remove("jti");
            }),
            NOW,
            AuthError::MissingClaim { claim: "jti" },
        ),
        (
            "missing sub",
            with(&|c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
            NOW,
            AuthError::MissingClaim { claim: "sub" },
        ),
        (
            "empty sub",
            with(&|c| c["sub"] = json!("")),
            NOW,
            AuthError::InvalidClaim {
                claim: "sub",
                reason: "it is empty".into(),
            },
        ),
        (
            "scope outside the grammar",
            with(&|c| c["scope"] = json!("refs:Site:read")),
            NOW,
            AuthError::InvalidClaim {
                claim: "scope",
                reason: Scope::parse("refs:Site:read").unwrap_err().to_string(),
            },
        ),
        (
            "expired at exp",
            good.clone(),
            NOW + HOUR,
            AuthError::Expired {
                exp: NOW + HOUR,
                now: NOW + HOUR,
                leeway: 0,
            },
        ),
        (
            "nbf in the future",
            with(&|c| c["nbf"] = json!(NOW + 10)),
            NOW,
            AuthError::NotYetValid {
                claim: "nbf",
                at: NOW + 10,
                now: NOW,
                leeway: 0,
            },
        ),
        (
            "iat in the future",
            with(&|c| {
                c["iat"] = json!(NOW + 10);
                c.as_object_mut().unwrap().remove("nbf");
            }),
            NOW,
            AuthError::NotYetValid {
                claim: "iat",
                at: NOW + 10,
                now: NOW,
                leeway: 0,
            },
        ),
    ];

    let mut codes = std::collections::BTreeSet::new();
    for (name, token, now, expected) in cases {
        let got = p.verifier.verify(&token, now);
        assert_eq!(got.as_ref().err(), Some(&expected), "{name}: got {got:?}");
        codes.insert(expected.code());
        // Messages never repeat the token or its signature.
        let shared: BverError = expected.clone().into();
        assert_eq!(shared.phase, Phase::Authentication, "{name}");
        assert!(!shared.retryable, "{name}");
        assert_eq!(shared.details["reason"], expected.code(), "{name}");
        if let Some(sig) = token.rsplit('.').next().filter(|s| s.len() > 20) {
            assert!(!shared.message.contains(sig), "{name}: {}", shared.message);
        }
        assert!(
            !shared.message.contains(&token) || token.is_empty(),
            "{name}"
        );
    }
    // Revoked, key_retired and key_algorithm_mismatch have their own tests.
    assert_eq!(codes.len(), 14, "{codes:?}");
}

#[test]
fn audience_may_be_a_list_containing_us() {
    let p = Platform::new();
    let k = key(1);
    let mut c = claims_json();
    c["aud"] = json!(["grid", AUD]);
    assert!(
        p.verifier
            .verify(&forge(&ed_header(&k), &c, Sig::Ed(&k)), NOW)
            .is_ok()
    );
    // A token without a scope claim is valid and allows nothing.
    c.as_object_mut().unwrap().remove("scope");
    let principal = p
        .verifier
        .verify(&forge(&ed_header(&k), &c, Sig::Ed(&k)), NOW)
        .unwrap();
    assert!(principal.scopes.is_empty());
    assert!(principal.require(&scope("refs:site:read")).is_err());
}

#[test]
fn leeway_applies_to_exp_nbf_and_iat() {
    let p = Platform::with(
        VerifierConfig::new(ISS, AUD)
            .leeway_secs(30)
            .cache_capacity(0),
    );
    let k = key(1);
    let token = forge(&ed_header(&k), &claims_json(), Sig::Ed(&k));
    assert!(p.verifier.verify(&token, NOW + HOUR + 29).is_ok());
    assert!(matches!(
        p.refuse(&token, NOW + HOUR + 30),
        AuthError::Expired { leeway: 30, .. }
    ));
    assert!(p.verifier.verify(&token, NOW - 30).is_ok());
    assert!(matches!(
        p.refuse(&token, NOW - 31),
        AuthError::NotYetValid {
            claim: "nbf",
            leeway: 30,
            ..
        }
    ));
    let future = {
        let mut c = claims_json();
        c.as_object_mut().unwrap().remove("nbf");
        c["iat"] = json!(NOW + 30);
        forge(&ed_header(&k), &c, Sig::Ed(&k))
    };
    assert!(p.verifier.verify(&future, NOW).is_ok());
    assert!(matches!(
        p.refuse(&future, NOW - 1),
        AuthError::NotYetValid { claim: "iat", .. }
    ));
}

#[test]
fn clipped_echoes_and_no_secrets_in_messages() {
    let p = Platform::with(VerifierConfig::new(ISS, AUD).with_hs256(secret()));
    let long_kid = "k".repeat(500);
    let e = p.refuse(
        &forge(
            &json!({"alg": "EdDSA", "kid": long_kid}),
            &claims_json(),
            Sig::Empty,
        ),
        NOW,
    );
    assert!(e.to_string().len() < 200, "{e}");
    let token = forge(
        &json!({"alg": "HS256", "kid": "hs-1"}),
        &claims_json(),
        Sig::Hmac(b"x"),
    );
    let e: BverError = p.refuse(&token, NOW).into();
    let text = serde_json::to_string(&e).unwrap();
    assert!(!text.contains("0123456789abcdef"), "{text}");
    assert_eq!(e.code, ErrorCode::BadSignature);
}

// ---------------------------------------------------------------------------------------------
// Rotation, cache and revocation

#[test]
fn rotation_keeps_old_tokens_valid_until_valid_until() {
    let mut keys = KeySet::new(key(1));
    let old_token = Issuer::ed25519(ISS, AUD, keys.current())
        .issue(
            "alice",
            &ScopeSet::new(),
            Duration::from_secs(10 * HOUR),
            NOW,
        )
        .unwrap()
        .token;
    let until = NOW + 2 * HOUR;
    keys.rotate(key(2), until);
    let new_token = Issuer::ed25519(ISS, AUD, keys.current())
        .issue(
            "alice",
            &ScopeSet::new(),
            Duration::from_secs(10 * HOUR),
            NOW,
        )
        .unwrap()
        .token;
    let config = VerifierConfig::new(ISS, AUD).leeway_secs(0);
    let v = Verifier::new(config, &keys, Arc::default());
    assert!(v.verify(&old_token, NOW).is_ok());
    assert!(v.verify(&old_token, until - 1).is_ok());
    let retired = AuthError::KeyRetired {
        kid: key(1).key_id().to_string(),
        valid_until: until,
    };
    // Also when the token is already cached.
    assert_eq!(v.verify(&old_token, until), Err(retired.clone()));
    // A fresh verifier refuses it before checking the signature.
    let fresh = Verifier::new(VerifierConfig::new(ISS, AUD), &keys, Arc::default());
    assert_eq!(fresh.verify(&old_token, until), Err(retired));
    assert_eq!(fresh.stats().signature_checks, 0);
    assert!(v.verify(&new_token, until).is_ok());
    // A verifier built before the rotation does not know the new key.
    let before = Verifier::new(
        VerifierConfig::new(ISS, AUD),
        &KeySet::new(key(1)),
        Arc::default(),
    );
    assert!(matches!(
        before.verify(&new_token, NOW),
        Err(AuthError::UnknownKid { .. })
    ));
}

#[test]
fn cache_answers_repeat_tokens_but_time_and_revocation_still_apply() {
    let p = Platform::new();
    let token = p.token("alice", "refs:site:read");
    let other = p.token("alice", "refs:site:read");
    let bob = p.token("bob", "refs:site:read");
    assert!(p.verifier.verify(&token, NOW).is_ok());
    assert!(p.verifier.verify(&token, NOW + 1).is_ok());
    assert!(p.verifier.verify(&other, NOW).is_ok());
    assert!(p.verifier.verify(&bob, NOW).is_ok());
    let stats = p.verifier.stats();
    assert_eq!((stats.signature_checks, stats.cache_hits), (3, 1));

    // Expiry applies to a cached token.
    assert!(matches!(
        p.verifier.verify(&token, NOW + HOUR),
        Err(AuthError::Expired { .. })
    ));

    // Revocation by jti applies to the cached token at once.
    let jti = p.verifier.verify(&token, NOW + 2).unwrap().token_id;
    p.revocations.revoke_token(&jti, NOW + HOUR);
    assert_eq!(
        p.verifier.verify(&token, NOW + 2),
        Err(AuthError::Revoked {
            by: RevocationReason::TokenId
        })
    );
    assert!(p.verifier.verify(&other, NOW + 2).is_ok());

    // Revocation by issued-before, per subject, also for cached tokens.
    p.revocations.revoke_issued_before("alice", NOW + 1);
    assert_eq!(
        p.verifier.verify(&other, NOW + 2),
        Err(AuthError::Revoked {
            by: RevocationReason::IssuedBefore
        })
    );
    assert!(
        p.verifier.verify(&bob, NOW + 2).is_ok(),
        "other subjects are untouched"
    );
    let later = p
        .issuer
        .issue("alice", &ScopeSet::new(), Duration::from_secs(60), NOW + 1)
        .unwrap();
    assert!(
        p.verifier.verify(&later.token, NOW + 2).is_ok(),
        "iat == cut-off is not revoked"
    );
    assert!(p.verifier.stats().cache_hits >= 4);

    // Lifting the cut-off restores the subject's tokens (the jti revocation stays).
    assert!(p.revocations.lift_subject("alice"));
    assert!(p.verifier.verify(&other, NOW + 2).is_ok());
    assert!(p.verifier.verify(&token, NOW + 2).is_err());

    let shared: BverError = AuthError::Revoked {
        by: RevocationReason::TokenId,
    }
    .into();
    assert_eq!(shared.code, ErrorCode::Unauthenticated);
    assert_eq!(
        shared.details,
        json!({"reason": "revoked", "revoked_by": "jti"})
    );
}

#[test]
fn revocations_prune_snapshot_and_restore() {
    let r = Revocations::new();
    assert!(r.is_empty());
    assert_eq!(r.check("a", "j", NOW), None);
    r.revoke_token("j1", NOW + 10);
    r.revoke_token("j2", NOW + 100);
    r.revoke_issued_before("a", NOW);
    r.revoke_issued_before("a", NOW - 50); // never moves the cut-off back
    assert_eq!(r.len(), 3);
    assert_eq!(r.check("x", "j1", 0), Some(RevocationReason::TokenId));
    assert_eq!(
        r.check("a", "other", NOW - 1),
        Some(RevocationReason::IssuedBefore)
    );
    assert_eq!(r.check("a", "other", NOW), None);

    let snap = r.snapshot();
    assert_eq!(r.prune(NOW + 11), 1);
    assert_eq!(r.check("x", "j1", 0), None);
    let restored = Revocations::new();
    restored.restore(snap.clone());
    assert_eq!(restored.snapshot(), snap);
    assert_eq!(
        restored.check("x", "j1", 0),
        Some(RevocationReason::TokenId)
    );
}

#[test]
fn revocations_are_shared_across_threads() {
    let p = Arc::new(Platform::new());
    let token = p.token("alice", "");
    std::thread::scope(|s| {
        for _ in 0..2 {
            let p = p.clone();
            let token = token.clone();
            s.spawn(move || {
                for i in 0..200 {
                    assert!(p.verifier.verify(&token, NOW + i).is_ok());
                }
            });
        }
    });
    p.revocations.revoke_issued_before("alice", NOW + 1);
    assert!(p.verifier.verify(&token, NOW).is_err());
}

// ---------------------------------------------------------------------------------------------
// Principal and scopes at the broker

#[test]
fn principal_require_yields_forbidden_with_the_missing_scope() {
    let p = Platform::new();
    let principal = p
        .verifier
        .verify(&p.token("alice", "refs:*:read ops:refs.site.*"), NOW)
        .unwrap();
    assert!(principal.require(&scope("refs:site:read")).is_ok());
    assert!(principal.require(&scope("ops:refs.site.create")).is_ok());
    let err = principal.require(&scope("refs:site:write")).unwrap_err();
    assert_eq!(
        (err.code, err.phase, err.retryable),
        (ErrorCode::Forbidden, Phase::Authorization, false)
    );
    assert_eq!(
        err.details,
        json!({"missing_scope": "refs:site:write", "subject": "alice"})
    );
    assert!(err.message.contains("refs:site:write"));
    let needed = [scope("refs:site:read"), scope("admin")];
    assert_eq!(
        principal.require_all(&needed).unwrap_err().details["missing_scope"],
        "admin"
    );
}

// ---------------------------------------------------------------------------------------------
// Snapshot

fn check_snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var_os("BVER_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with BVER_UPDATE_SNAPSHOTS=1)", path.display()));
    assert_eq!(
        actual, expected,
        "snapshot {name} changed (BVER_UPDATE_SNAPSHOTS=1 to accept)"
    );
}

#[test]
fn fixed_key_token_snapshot() {
    // Ed25519 is deterministic: a fixed seed and fixed claims pin the whole token.
    let k = PlatformKey::from_seed(&[42; 32]).unwrap();
    let claims = Claims {
        iss: "sites".into(),
        sub: "alice".into(),
        aud: "sites".into(),
        exp: NOW + HOUR,
        nbf: NOW,
        iat: NOW,
        jti: "fixed-jti-1".into(),
        scope: scopes("refs:site:read ops:refs.site.* eager:subscribe:site_changes").to_string(),
    };
    let token = Issuer::ed25519("sites", "sites", &k)
        .sign_claims(&claims)
        .unwrap();
    let mut parts = token.split('.');
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap();
    let payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap();
    let snapshot = format!(
        "kid: {}\nheader: {}\nclaims: {}\ntoken: {token}\n",
        k.key_id(),
        serde_json::to_string(&header).unwrap(),
        serde_json::to_string(&payload).unwrap(),
    );
    check_snapshot("token_ed25519.txt", &snapshot);
    let v = Verifier::new(
        VerifierConfig::new("sites", "sites"),
        &KeySet::new(k),
        Arc::default(),
    );
    assert_eq!(v.verify(&token, NOW).unwrap().token_id, "fixed-jti-1");
}
