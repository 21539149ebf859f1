//! Node identity: an Ed25519 key, the peer id derived from it, and the TLS
//! certificate and verifiers that bind a QUIC connection to that key.
//!
//! Each node presents a self-signed X.509 certificate carrying its Ed25519
//! public key. Certificates are not checked against any authority: the
//! identity of a peer *is* the key that signed the TLS 1.3 handshake. Our
//! verifiers extract the key from the certificate's SubjectPublicKeyInfo with
//! a strict DER walk, verify the handshake signature with exactly that key,
//! and, when dialling, refuse any key other than the expected one.

use std::{fmt, str::FromStr, sync::Arc};

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use rustls::{
    DigitallySignedStruct, DistinguishedName, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime},
    server::danger::{ClientCertVerified, ClientCertVerifier},
};

use crate::NetError;

/// A node's secret identity key (Ed25519).
#[derive(Clone)]
pub struct NodeKey(SigningKey);

impl NodeKey {
    /// A fresh random key from the operating system's generator.
    pub fn generate() -> Self {
        NodeKey(SigningKey::generate(&mut rand_core::OsRng))
    }

    /// The key with this 32-byte secret seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        NodeKey(SigningKey::from_bytes(&seed))
    }

    /// The 32-byte secret seed (store it with care).
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        PeerId(self.0.verifying_key().to_bytes())
    }

    /// The PKCS#8 v1 DER encoding of the key (RFC 8410), as TLS needs it.
    fn pkcs8_der(&self) -> Vec<u8> {
        const PREFIX: [u8; 16] = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        [&PREFIX[..], &self.0.to_bytes()].concat()
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeKey({})", self.peer_id())
    }
}

/// A peer's identity: its Ed25519 public key. Displayed and parsed as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub [u8; 32]);

impl PeerId {
    /// A short form for logs: the first 8 hex digits.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.short())
    }
}

impl FromStr for PeerId {
    type Err = NetError;
    fn from_str(s: &str) -> Result<Self, NetError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut bytes)
            .map_err(|e| NetError::InvalidPeerId(format!("{s:?}: expected 64 hex digits ({e})")))?;
        VerifyingKey::from_bytes(&bytes)
            .map_err(|_| NetError::InvalidPeerId(format!("{s:?} is not an Ed25519 public key")))?;
        Ok(PeerId(bytes))
    }
}

/// The DER encoding of an Ed25519 SubjectPublicKeyInfo up to the key (RFC 8410).
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Extracts the Ed25519 public key from a certificate by walking its DER
/// structure to the SubjectPublicKeyInfo. Anything else is refused.
pub fn peer_id_from_certificate(cert: &[u8]) -> Result<PeerId, NetError> {
    let bad = |why: &str| NetError::BadCertificate(why.to_string());
    let (tag, certificate, rest) = der_tlv(cert).ok_or_else(|| bad("not DER"))?;
    if tag != 0x30 || !rest.is_empty() {
        return Err(bad("certificate is not one SEQUENCE"));
    }
    let (tag, mut tbs, _) = der_tlv(certificate).ok_or_else(|| bad("no TBSCertificate"))?;
    if tag != 0x30 {
        return Err(bad("TBSCertificate is not a SEQUENCE"));
    }
    // version [0] EXPLICIT (optional), serialNumber, signature, issuer, validity, subject.
    let mut field = 0;
    loop {
        let (tag, value, rest) = der_tlv(tbs).ok_or_else(|| bad("truncated TBSCertificate"))?;
        let whole = &tbs[..tbs.len() - rest.len()];
        let _ = value;
        tbs = rest;
        if field == 0 && tag == 0xa0 {
            continue; // version
        }
        field += 1;
        if field == 6 {
            // subjectPublicKeyInfo
            let key = whole
                .strip_prefix(&ED25519_SPKI_PREFIX[..])
                .filter(|k| k.len() == 32)
                .ok_or_else(|| bad("public key is not Ed25519"))?;
            let mut id = [0u8; 32];
            id.copy_from_slice(key);
            VerifyingKey::from_bytes(&id).map_err(|_| bad("invalid Ed25519 public key"))?;
            return Ok(PeerId(id));
        }
    }
}

/// One DER TLV: (tag, value, rest). Definite lengths up to 4 bytes only.
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        rest = &rest[n..];
        len
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The certificate and key a node presents in TLS.
pub(crate) fn certificate(
    key: &NodeKey,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), NetError> {
    let der = key.pkcs8_der();
    let pkcs8 = PrivatePkcs8KeyDer::from(der.clone());
    let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519)
        .map_err(|e| NetError::Tls(format!("node key: {e}")))?;
    let params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])
        .map_err(|e| NetError::Tls(format!("certificate parameters: {e}")))?;
    let cert = params
        .self_signed(&key_pair)
        .map_err(|e| NetError::Tls(format!("self-signing: {e}")))?;
    Ok((
        cert.der().clone(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)),
    ))
}

/// The TLS server name used on every connection (identity comes from the key, not the name).
pub(crate) const SERVER_NAME: &str = "headway.peer";

fn verify_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    if dss.scheme != SignatureScheme::ED25519 {
        return Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::NoSignatureSchemesInCommon,
        ));
    }
    let peer = peer_id_from_certificate(cert)
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    let key = VerifyingKey::from_bytes(&peer.0)
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    let signature = Signature::from_slice(dss.signature())
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature))?;
    key.verify_strict(message, &signature)
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature))?;
    Ok(HandshakeSignatureValid::assertion())
}

/// The handshake-signature half of both verifiers: TLS 1.2 refused, TLS 1.3
/// signatures checked with the certificate's Ed25519 key, Ed25519 only.
macro_rules! ed25519_handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::PeerIncompatible(
                rustls::PeerIncompatible::Tls13RequiredForQuic,
            ))
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            vec![SignatureScheme::ED25519]
        }
    };
}

/// Dialler side: accepts only the expected peer's key.
#[derive(Debug)]
pub(crate) struct PinnedServerVerifier {
    pub(crate) expected: PeerId,
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !intermediates.is_empty() {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            ));
        }
        let peer = peer_id_from_certificate(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        if peer != self.expected {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    ed25519_handshake_signatures!();
}

/// Listener side: every client must present an Ed25519 certificate; any key is
/// accepted here and identified afterwards (bans apply once it is known).
#[derive(Debug)]
pub(crate) struct AnyPeerClientVerifier;

impl ClientCertVerifier for AnyPeerClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if !intermediates.is_empty() {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            ));
        }
        peer_id_from_certificate(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        Ok(ClientCertVerified::assertion())
    }

    ed25519_handshake_signatures!();
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS 1.3 server configuration presenting `key` and requiring client certificates.
pub(crate) fn server_tls(key: &NodeKey, alpn: &[u8]) -> Result<rustls::ServerConfig, NetError> {
    let (cert, private) = certificate(key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| NetError::Tls(e.to_string()))?
        .with_client_cert_verifier(Arc::new(AnyPeerClientVerifier))
        .with_single_cert(vec![cert], private)
        .map_err(|e| NetError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// TLS 1.3 client configuration presenting `key` and accepting only `expected`.
pub(crate) fn client_tls(
    key: &NodeKey,
    expected: PeerId,
    alpn: &[u8],
) -> Result<rustls::ClientConfig, NetError> {
    let (cert, private) = certificate(key)?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| NetError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServerVerifier { expected }))
        .with_client_auth_cert(vec![cert], private)
        .map_err(|e| NetError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_carries_the_node_key() {
        let key = NodeKey::from_seed([7; 32]);
        let (cert, _) = certificate(&key).unwrap();
        assert_eq!(peer_id_from_certificate(&cert).unwrap(), key.peer_id());
    }

    #[test]
    fn garbage_certificates_are_refused_without_panic() {
        let key = NodeKey::from_seed([9; 32]);
        let (cert, _) = certificate(&key).unwrap();
        for len in 0..cert.len() {
            let _ = peer_id_from_certificate(&cert[..len]);
        }
        let mut flipped = cert.to_vec();
        for i in 0..flipped.len() {
            flipped[i] ^= 0xff;
            let _ = peer_id_from_certificate(&flipped);
            flipped[i] ^= 0xff;
        }
        assert!(peer_id_from_certificate(&[]).is_err());
        assert!(peer_id_from_certificate(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn peer_id_parses_and_rejects() {
        let id = NodeKey::from_seed([3; 32]).peer_id();
        assert_eq!(id.to_string().parse::<PeerId>().unwrap(), id);
        assert!("zz".parse::<PeerId>().is_err());
        assert!("00".repeat(31).parse::<PeerId>().is_err());
    }
}
