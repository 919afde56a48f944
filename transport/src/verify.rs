//! Certificate checks: the master admits enrolled nodes; a node accepts only its pinned master.
//!
//! Neither side uses certificate authorities or host names. A certificate stands for the Ed25519
//! key it carries, and the TLS 1.3 CertificateVerify signature proves the peer holds that key.

use std::fmt;
use std::sync::Arc;

use hearth_protocol::{MasterId, NodeId};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::cert::peer_key;

/// Decides, during the handshake, whether a node's certificate is let in.
pub trait Admission: Send + Sync {
    /// True when `node` is enrolled and not revoked.
    fn admits(&self, node: &NodeId) -> bool;
}

/// The master's client-certificate check. A client without a certificate is let through the
/// handshake (enrolment connections have none); the master then only lets it enrol.
pub struct NodeGate {
    admission: Arc<dyn Admission>,
}

impl NodeGate {
    /// A gate asking `admission` about each presented key.
    pub fn new(admission: Arc<dyn Admission>) -> Self {
        Self { admission }
    }
}

impl fmt::Debug for NodeGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NodeGate")
    }
}

impl ClientCertVerifier for NodeGate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let key = peer_key(end_entity).map_err(|_| bad_cert())?;
        let node = NodeId::from_key(key);
        if self.admission.admits(&node) {
            Ok(ClientCertVerified::assertion())
        } else {
            tracing::debug!(%node, "refused at handshake: unknown or revoked node");
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// A node's server-certificate check: the master's key must equal the pin from the token.
#[derive(Debug)]
pub struct PinnedMaster {
    pin: MasterId,
}

impl PinnedMaster {
    /// Accepts only a server presenting `pin`'s key.
    pub fn new(pin: MasterId) -> Self {
        Self { pin }
    }
}

impl ServerCertVerifier for PinnedMaster {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let key = peer_key(end_entity).map_err(|_| bad_cert())?;
        if MasterId::from_key(key) == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

fn bad_cert() -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::BadEncoding)
}
