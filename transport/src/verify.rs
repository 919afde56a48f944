//! Certificate checks: the master admits enrolled nodes; a node accepts only its pinned master.
//!
//! Neither side uses certificate authorities or host names. A certificate stands for the Ed25519
//! key it carries, and the TLS 1.3 CertificateVerify signature proves the peer holds that key.

use std::fmt;
use std::sync::Arc;

use hearth_protocol::{MasterId, NodeId, PublicKey, SignerId};
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
    mandatory: bool,
}

impl NodeGate {
    /// A gate asking `admission` about each presented key (the master's: a client without a
    /// certificate may finish the handshake, to enrol).
    pub fn new(admission: Arc<dyn Admission>) -> Self {
        Self {
            admission,
            mandatory: false,
        }
    }

    /// A gate that also refuses clients without a certificate (a gateway's: only nodes the
    /// master named may connect).
    pub fn mandatory(admission: Arc<dyn Admission>) -> Self {
        Self {
            admission,
            mandatory: true,
        }
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
        self.mandatory
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

/// A node's server-certificate check: the server's key must equal the pin (the master's from
/// the token, a gateway's from the desired state).
#[derive(Debug)]
pub struct PinnedKey {
    pin: PublicKey,
}

/// The node's check of its master.
pub type PinnedMaster = PinnedKey;

impl PinnedKey {
    /// Accepts only a server presenting `pin`'s key.
    pub fn new(pin: MasterId) -> Self {
        Self { pin: *pin.key() }
    }

    /// Accepts only a gateway presenting `gateway`'s key.
    pub fn gateway(gateway: &SignerId) -> Self {
        Self {
            pin: *gateway.key(),
        }
    }
}

impl ServerCertVerifier for PinnedKey {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let key = peer_key(end_entity).map_err(|_| bad_cert())?;
        if key == self.pin {
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
