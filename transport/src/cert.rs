//! Self-signed certificates whose subject key is a party's Ed25519 identity.

use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use hearth_protocol::{PublicKey, SecretKey};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use x509_parser::prelude::{FromDer as _, X509Certificate};

/// Why a certificate could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// Generating the certificate failed.
    #[error("cannot generate certificate: {0}")]
    Generate(String),
    /// The peer's certificate is not DER X.509.
    #[error("peer certificate is not valid X.509: {0}")]
    Parse(String),
    /// The certificate's key is not Ed25519.
    #[error("peer certificate key is not Ed25519 (Hearth identities are Ed25519 keys)")]
    NotEd25519,
    /// The key bytes are not a valid Ed25519 point.
    #[error("peer certificate key is not a valid Ed25519 public key")]
    BadKey,
}

/// OID 1.3.101.112, id-Ed25519 (RFC 8410).
const ED25519_OID: &str = "1.3.101.112";

/// A party's TLS identity: its self-signed certificate and private key.
#[derive(Debug)]
pub struct Identity {
    /// The certificate, DER.
    pub cert: CertificateDer<'static>,
    /// The PKCS#8 private key, DER.
    key_der: Vec<u8>,
}

impl Identity {
    /// A self-signed certificate for `key`, named `name` (informational only: peers check keys).
    pub fn new(key: &SecretKey, name: &str) -> Result<Self, CertError> {
        let gen_err = |e: &dyn std::fmt::Display| CertError::Generate(e.to_string());
        let der = key.signing_key().to_pkcs8_der().map_err(|e| gen_err(&e))?;
        let key_der = der.as_bytes().to_vec();
        let pair = rcgen::KeyPair::try_from(key_der.as_slice()).map_err(|e| gen_err(&e))?;
        let mut params =
            rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(|e| gen_err(&e))?;
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(4000, 1, 1);
        let cert = params.self_signed(&pair).map_err(|e| gen_err(&e))?;
        Ok(Self {
            cert: cert.der().clone(),
            key_der,
        })
    }

    /// The certificate chain to present.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert.clone()]
    }

    /// The private key for rustls.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// A secret derived from the private key for `purpose` (domain-separated SHA-256): stable
    /// across restarts, useless for anything else.
    pub fn derived_secret(&self, purpose: &str) -> [u8; 32] {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(b"hearth derived secret v1\0");
        h.update(purpose.as_bytes());
        h.update([0]);
        h.update(&self.key_der);
        h.finalize().into()
    }
}

/// The Ed25519 key a certificate carries.
pub fn peer_key(cert: &CertificateDer<'_>) -> Result<PublicKey, CertError> {
    let (_, parsed) =
        X509Certificate::from_der(cert.as_ref()).map_err(|e| CertError::Parse(e.to_string()))?;
    let spki = parsed.public_key();
    if spki.algorithm.algorithm.to_id_string() != ED25519_OID {
        return Err(CertError::NotEd25519);
    }
    let bytes: [u8; 32] = spki
        .subject_public_key
        .data
        .as_ref()
        .try_into()
        .map_err(|_| CertError::BadKey)?;
    PublicKey::from_bytes(&bytes).map_err(|_| CertError::BadKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_carries_the_identity_key() {
        let key = SecretKey::generate();
        let id = Identity::new(&key, "hearth-node").unwrap();
        assert_eq!(peer_key(&id.cert).unwrap(), key.public());
        assert!(peer_key(&CertificateDer::from(vec![1, 2, 3])).is_err());
    }
}
