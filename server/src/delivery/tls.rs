//! TLS toward next hops, with Postfix's policy levels and their meanings:
//!
//! | level | STARTTLS | certificate |
//! |---|---|---|
//! | `none` | never | — |
//! | `opportunistic` (`may`) | when offered; a failed handshake is retried once in clear text (RFC 7435) | not checked |
//! | `encrypt` | required | not checked |
//! | `verify` (`secure`) | required | chain and host name, or the connector's pin |
//!
//! Trust for `verify`: the system store (read at start and on reload: `SSL_CERT_FILE`,
//! `SSL_CERT_DIR`, the distribution's bundle, through rustls-native-certs), plus a CA
//! bundle stored with the send connector (so every node uses the same), or a pin of the
//! server's public key (`sha256:<base64 of the SPKI>`), which then decides alone, as
//! Postfix's `fingerprint` level and DANE-EE do. Every handshake reports what it proved.

use std::fmt;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use rustls::DigitallySignedStruct;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{RootCertStore, SignatureScheme};

use crate::domain::TlsPolicy;

/// What a handshake proved about the next hop's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// The policy does not check certificates (`opportunistic`, `encrypt`).
    NotChecked,
    /// Chain and host name, against the system's trusted CAs.
    SystemStore,
    /// Chain and host name, against the CA bundle of the send connector.
    ConnectorCa,
    /// The server's public key matched the connector's pin.
    Pin,
}

impl Verified {
    pub fn as_str(self) -> &'static str {
        match self {
            Verified::NotChecked => "certificate not verified",
            Verified::SystemStore => "certificate verified (system CAs)",
            Verified::ConnectorCa => "certificate verified (connector CA)",
            Verified::Pin => "certificate verified (pinned key)",
        }
    }
}

/// How one connection to a next hop was protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsReport {
    /// `TLSv1.3`, `TLSv1.2`.
    pub version: String,
    pub cipher: String,
    pub verified: Verified,
}

impl fmt::Display for TlsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}, {}", self.version, self.cipher, self.verified.as_str())
    }
}

/// The CAs of this host's system store. Loaded at start and on every configuration
/// reload, so a CA added to the host is used without a restart.
#[derive(Debug, Clone)]
pub struct SystemTrust {
    pub roots: Arc<RootCertStore>,
    /// Where they came from, for the log and the status page.
    pub source: String,
}

impl SystemTrust {
    /// The system store (honouring `SSL_CERT_FILE` and `SSL_CERT_DIR`); if it holds no
    /// usable certificate (a minimal container without ca-certificates), the Mozilla
    /// roots compiled into the binary, with a warning.
    pub fn load() -> Self {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!(%error, "a certificate of the system trust store could not be read");
        }
        let mut roots = RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added > 0 {
            return Self { roots: Arc::new(roots), source: format!("system store ({added} CAs)") };
        }
        tracing::warn!("the system trust store holds no CA certificate; using the Mozilla roots built into Postern");
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Self { roots: Arc::new(roots), source: "built-in Mozilla roots".into() }
    }
}

/// A send connector's own trust anchors: its CA bundle and its key pin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectorTrust {
    pub ca: Vec<CertificateDer<'static>>,
    /// SHA-256 of the server's SubjectPublicKeyInfo.
    pub pin: Option<[u8; 32]>,
}

/// Why a CA bundle or a pin was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error("the CA bundle holds no PEM certificate")]
    EmptyBundle,
    #[error("certificate {0} of the CA bundle cannot be read: {1}")]
    BadCertificate(usize, String),
    #[error("certificate {0} of the CA bundle ({1}) is not a CA certificate")]
    NotACa(usize, String),
    #[error("certificate {0} of the CA bundle ({1}) expired on {2}")]
    Expired(usize, String, String),
    #[error("a pin is sha256: and the base64 of 32 bytes (the SHA-256 of the server's public key)")]
    BadPin,
}

/// One CA of a bundle, as lists show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct CaSummary {
    pub subject: String,
    /// RFC 3339.
    pub not_after: String,
}

/// Reads a PEM CA bundle: every certificate must parse, be a CA and be unexpired.
pub fn parse_ca_bundle(pem: &str) -> Result<(Vec<CertificateDer<'static>>, Vec<CaSummary>), TrustError> {
    let mut certificates = Vec::new();
    let mut summaries = Vec::new();
    for (n, item) in CertificateDer::pem_slice_iter(pem.as_bytes()).enumerate() {
        let der = item.map_err(|e| TrustError::BadCertificate(n + 1, e.to_string()))?;
        let x509 = openssl::x509::X509::from_der(&der).map_err(|e| TrustError::BadCertificate(n + 1, e.to_string()))?;
        let subject = subject_of(&x509);
        let is_ca = x509_is_ca(&der);
        if !is_ca {
            return Err(TrustError::NotACa(n + 1, subject));
        }
        let now =
            openssl::asn1::Asn1Time::days_from_now(0).map_err(|e| TrustError::BadCertificate(n + 1, e.to_string()))?;
        if x509.not_after() < now {
            return Err(TrustError::Expired(n + 1, subject, x509.not_after().to_string()));
        }
        summaries.push(CaSummary { subject, not_after: asn1_rfc3339(x509.not_after()) });
        certificates.push(der);
    }
    if certificates.is_empty() {
        return Err(TrustError::EmptyBundle);
    }
    Ok((certificates, summaries))
}

/// A certificate is a CA when its basic constraints say so (webpki's own reading: it
/// refuses a leaf as a trust anchor only at handshake time, too late to tell the admin).
fn x509_is_ca(der: &[u8]) -> bool {
    let Ok(x509) = openssl::x509::X509::from_der(der) else { return false };
    // openssl exposes the extension through the text form only; the CA flag is
    // "CA:TRUE" in the basic constraints. A self-signed certificate without basic
    // constraints (old internal CAs) is accepted as an anchor too, as OpenSSL does.
    let text = x509.to_text().map(|t| String::from_utf8_lossy(&t).into_owned()).unwrap_or_default();
    text.contains("CA:TRUE")
        || (!text.contains("Basic Constraints") && x509.issued(&x509) == openssl::x509::X509VerifyResult::OK)
}

fn subject_of(x509: &openssl::x509::X509Ref) -> String {
    x509.subject_name()
        .entries()
        .map(|e| {
            let key = e.object().nid().short_name().unwrap_or("?");
            let value = String::from_utf8_lossy(e.data().as_slice()).into_owned();
            format!("{key}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// openssl's `Asn1Time` ("Dec  3 18:00:00 2027 GMT") as RFC 3339.
fn asn1_rfc3339(t: &openssl::asn1::Asn1TimeRef) -> String {
    let epoch = openssl::asn1::Asn1Time::from_unix(0).ok();
    let seconds = epoch.and_then(|e| e.diff(t).ok()).map(|d| i64::from(d.days) * 86_400 + i64::from(d.secs));
    seconds
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| t.to_string())
}

/// Reads a pin: `sha256:` and the standard base64 of a 32-byte digest.
pub fn parse_pin(text: &str) -> Result<[u8; 32], TrustError> {
    let encoded = text.trim().strip_prefix("sha256:").ok_or(TrustError::BadPin)?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| TrustError::BadPin)?;
    bytes.try_into().map_err(|_| TrustError::BadPin)
}

/// The pin of a certificate: SHA-256 of its SubjectPublicKeyInfo (RFC 7469 §2.4).
pub fn pin_of(certificate: &[u8]) -> Option<[u8; 32]> {
    let x509 = openssl::x509::X509::from_der(certificate).ok()?;
    let spki = x509.public_key().ok()?.public_key_to_der().ok()?;
    ring::digest::digest(&ring::digest::SHA256, &spki).as_ref().try_into().ok()
}

pub fn format_pin(pin: &[u8; 32]) -> String {
    format!("sha256:{}", base64::engine::general_purpose::STANDARD.encode(pin))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate check of one connection, per the policy; it notes what it proved.
#[derive(Debug)]
struct HopVerifier {
    verify: bool,
    system: Arc<WebPkiServerVerifier>,
    connector_ca: Option<Arc<WebPkiServerVerifier>>,
    pin: Option<[u8; 32]>,
    provider: Arc<CryptoProvider>,
    proved: Arc<Mutex<Verified>>,
}

impl HopVerifier {
    fn note(&self, verified: Verified) {
        *self.proved.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = verified;
    }
}

impl ServerCertVerifier for HopVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !self.verify {
            self.note(Verified::NotChecked);
            return Ok(ServerCertVerified::assertion());
        }
        if let Some(pin) = &self.pin {
            return if pin_of(end_entity).as_ref() == Some(pin) {
                self.note(Verified::Pin);
                Ok(ServerCertVerified::assertion())
            } else {
                let found = pin_of(end_entity).map(|p| format_pin(&p)).unwrap_or_default();
                Err(rustls::Error::General(format!("the server's key {found} does not match the connector's pin")))
            };
        }
        if let Some(ca) = &self.connector_ca {
            match ca.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
                Ok(verified) => {
                    self.note(Verified::ConnectorCa);
                    return Ok(verified);
                }
                // Issued by the connector's CA, but wrong (another name, expired): that
                // is the answer, not whether some system CA knows it.
                Err(e) if !matches!(e, rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)) => {
                    return Err(e);
                }
                Err(_) => {}
            }
        }
        let verified = self.system.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        self.note(Verified::SystemStore);
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Even when the certificate is not checked, the handshake must be signed by its key.
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// What a connection needs for its handshake: the policy and every trust anchor.
#[derive(Debug, Clone)]
pub struct HopTls {
    pub policy: TlsPolicy,
    pub system: SystemTrust,
    pub connector: ConnectorTrust,
}

/// A TLS client for one connection and the cell its verifier reports into.
fn client(tls: &HopTls) -> Result<(Arc<rustls::ClientConfig>, Arc<Mutex<Verified>>), String> {
    let provider = provider();
    let webpki = |roots: Arc<RootCertStore>| {
        WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider)).build().map_err(|e| e.to_string())
    };
    let connector_ca = if tls.connector.ca.is_empty() {
        None
    } else {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(tls.connector.ca.iter().cloned());
        Some(webpki(Arc::new(roots))?)
    };
    let proved = Arc::new(Mutex::new(Verified::NotChecked));
    let verifier = HopVerifier {
        verify: tls.policy == TlsPolicy::Verify,
        system: webpki(Arc::clone(&tls.system.roots))?,
        connector_ca,
        pin: tls.connector.pin,
        provider: Arc::clone(&provider),
        proved: Arc::clone(&proved),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok((Arc::new(config), proved))
}

/// Runs the TLS handshake on `stream` for `host`; the encrypted stream and what it proved.
pub async fn handshake<S>(
    stream: S,
    host: &str,
    tls: &HopTls,
) -> Result<(tokio_rustls::client::TlsStream<S>, TlsReport), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (config, proved) = client(tls)?;
    // A host given as an IP address is checked against the certificate's IP names.
    let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_string())
        .map_err(|e| format!("{host} cannot be a TLS server name: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(config).connect(name, stream).await.map_err(|e| e.to_string())?;
    let (_, session) = stream.get_ref();
    let version = match session.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        other => format!("{other:?}"),
    };
    let cipher = session.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())).unwrap_or_default();
    let verified = *proved.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    Ok((stream, TlsReport { version, cipher, verified }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_read_and_print_back() {
        let pin = [7u8; 32];
        assert_eq!(parse_pin(&format_pin(&pin)), Ok(pin));
        assert_eq!(parse_pin("sha1:AAAA"), Err(TrustError::BadPin));
        assert_eq!(parse_pin("sha256:AAAA"), Err(TrustError::BadPin));
        assert_eq!(parse_pin("sha256:not base64!"), Err(TrustError::BadPin));
    }

    #[test]
    fn a_ca_bundle_must_hold_unexpired_ca_certificates() {
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "Corp Root CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap();
        let (certs, summary) = parse_ca_bundle(&ca.pem()).unwrap();
        assert_eq!(certs.len(), 1);
        assert!(summary[0].subject.contains("CN=Corp Root CA"), "{summary:?}");
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::from_params(&params, &key);
        let leaf = rcgen::CertificateParams::new(vec!["smtp.corp.example".into()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        assert!(matches!(parse_ca_bundle(&leaf.pem()), Err(TrustError::NotACa(1, _))));
        assert_eq!(parse_ca_bundle("no pem here"), Err(TrustError::EmptyBundle));
        let broken = ca.pem().replace("MII", "XXX");
        assert!(matches!(parse_ca_bundle(&broken), Err(TrustError::BadCertificate(1, _))));
        let mut old = rcgen::CertificateParams::new(vec![]).unwrap();
        old.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        old.not_before = rcgen::date_time_ymd(2001, 1, 1);
        old.not_after = rcgen::date_time_ymd(2002, 1, 1);
        let expired = old.self_signed(&key).unwrap();
        assert!(matches!(parse_ca_bundle(&expired.pem()), Err(TrustError::Expired(1, _, _))));
    }
}
