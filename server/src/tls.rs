//! TLS for receive connectors (rustls on ring): server configurations built from a
//! connector's PEM certificate chain and key, or from a self-signed certificate Postern
//! generates for the connector's FQDN (rcgen) and keeps in the database. Built again
//! with every configuration snapshot, so a replaced certificate is used by the next
//! handshake without a restart.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use uuid::Uuid;

use crate::domain::{ReceiveConnector, TlsMode};
use crate::store::Store;

/// The TLS side of one connector.
#[derive(Debug)]
pub struct ConnectorTls {
    pub config: Arc<ServerConfig>,
    /// Postern generated the certificate (no certificate was configured).
    pub self_signed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("no certificate found in the PEM text")]
    NoCertificate,
    #[error("certificate PEM is invalid: {0}")]
    BadCertificate(String),
    #[error("private key PEM is invalid: {0}")]
    BadKey(String),
    #[error("certificate and key do not belong together or are unusable: {0}")]
    Unusable(String),
    #[error("a certificate needs its key, and a key its certificate")]
    Incomplete,
}

/// A server configuration for a PEM chain (leaf first) and its private key. TLS 1.2 and
/// 1.3 only; ring's default suites are all AEAD with forward secrecy (ECDHE + AES-GCM or
/// ChaCha20-Poly1305), so nothing weaker can be negotiated.
pub fn server_config(chain_pem: &str, key_pem: &str) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = parse_chain(chain_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| TlsError::BadKey(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Unusable(e.to_string()))?
        .with_no_client_auth()
        // Also checks that the key matches the leaf certificate.
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Unusable(e.to_string()))?;
    Ok(Arc::new(config))
}

fn parse_chain(chain_pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::BadCertificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(chain)
}

/// Whether the leaf certificate names `fqdn` (subjectAltName, wildcards as RFC 6125
/// allows). A mismatch is the seed's "certificate error" trouble: clients that verify
/// names refuse the connection.
pub fn certificate_names(chain_pem: &str, fqdn: &str) -> Result<bool, TlsError> {
    let chain = parse_chain(chain_pem)?;
    let leaf =
        rustls::server::ParsedCertificate::try_from(&chain[0]).map_err(|e| TlsError::BadCertificate(e.to_string()))?;
    let Ok(name) = ServerName::try_from(fqdn) else { return Ok(false) };
    Ok(rustls::client::verify_server_name(&leaf, &name).is_ok())
}

/// Checks a certificate and key pair an administrator supplies; returns a warning when
/// it does not name the connector's FQDN (clients that check names will refuse it).
pub fn check_certificate(chain_pem: &str, key_pem: &str, fqdn: &str) -> Result<Option<String>, TlsError> {
    server_config(chain_pem, key_pem)?;
    Ok((!certificate_names(chain_pem, fqdn)?)
        .then(|| format!("the certificate does not name {fqdn}; clients that verify the server name will refuse it")))
}

/// A self-signed certificate for `fqdn` (ECDSA P-256, valid ten years), as PEM.
pub fn generate_self_signed(fqdn: &str) -> Result<(String, String), String> {
    let mut params = rcgen::CertificateParams::new(vec![fqdn.to_string()]).map_err(|e| e.to_string())?;
    params.distinguished_name.push(rcgen::DnType::CommonName, fqdn);
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The TLS configuration of every enabled connector that uses TLS, keyed by connector id.
/// Connectors without a certificate get the generated one for their FQDN (made and
/// stored on first use). A connector whose TLS cannot be set up is logged and left out:
/// it then answers STARTTLS with 454 and refuses implicit-TLS connections.
pub async fn load(store: &Store, connectors: &[Arc<ReceiveConnector>]) -> HashMap<Uuid, Arc<ConnectorTls>> {
    let mut configs = HashMap::new();
    for connector in connectors.iter().filter(|c| c.enabled && c.tls_mode != TlsMode::None) {
        match connector_tls(store, connector).await {
            Ok(tls) => {
                configs.insert(connector.id, Arc::new(tls));
            }
            Err(e) => tracing::error!(connector = %connector.name, error = %e, "TLS unavailable on this connector"),
        }
    }
    configs
}

/// The TLS configuration a connector would get, built in memory (nothing generated is
/// stored): its own certificate, or a throwaway self-signed one standing in for the
/// certificate a node generates for its FQDN. For the what-if tester.
pub fn candidate_tls(connector: &ReceiveConnector) -> Result<ConnectorTls, String> {
    let (chain, key, self_signed) = match (&connector.tls_certificate_pem, &connector.tls_key_pem) {
        (Some(chain), Some(key)) => (chain.clone(), key.0.clone(), false),
        _ => {
            let (chain, key) = generate_self_signed(&connector.fqdn)?;
            (chain, key, true)
        }
    };
    let config = server_config(&chain, &key).map_err(|e| e.to_string())?;
    Ok(ConnectorTls { config, self_signed })
}

async fn connector_tls(store: &Store, connector: &ReceiveConnector) -> Result<ConnectorTls, String> {
    if let (Some(chain), Some(key)) = (&connector.tls_certificate_pem, &connector.tls_key_pem) {
        let config = server_config(chain, &key.0).map_err(|e| e.to_string())?;
        if !certificate_names(chain, &connector.fqdn).unwrap_or(false) {
            tracing::warn!(connector = %connector.name, fqdn = %connector.fqdn,
                "the connector's certificate does not name its FQDN; clients that verify names will refuse it");
        }
        return Ok(ConnectorTls { config, self_signed: false });
    }
    let fqdn = connector.fqdn.to_ascii_lowercase();
    let (generated, created) =
        store.generated_certificate(&fqdn, || generate_self_signed(&fqdn)).await.map_err(|e| e.to_string())?;
    if created {
        tracing::warn!(connector = %connector.name, %fqdn,
            "generated a self-signed certificate; configure a certificate from a CA the clients trust");
    }
    let config = server_config(&generated.certificate_pem, &generated.key_pem).map_err(|e| e.to_string())?;
    Ok(ConnectorTls { config, self_signed: true })
}

/// The console's TLS configuration: the PEM files the settings name, or the certificate
/// generated for the console's host name (made and stored on first use, shared by every
/// node of the database). Offers HTTP/1.1 by ALPN.
pub async fn console_config(store: &Store, settings: &crate::settings::Settings) -> anyhow::Result<ConnectorTls> {
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("console TLS: cannot read {}: {e}", path.display()))
    };
    let (chain, key, self_signed) = match (&settings.console_tls_certificate_file, &settings.console_tls_key_file) {
        (Some(chain), Some(key)) => (read(chain)?, read(key)?, false),
        (None, None) => {
            let host = settings.console_host();
            let (generated, created) = store
                .generated_certificate(&host, || generate_self_signed(&host))
                .await
                .map_err(|e| anyhow::anyhow!("console TLS: {e}"))?;
            if created {
                tracing::warn!(%host, "generated a self-signed certificate for the console; \
                    set console_tls_certificate_file and console_tls_key_file to one browsers trust");
            }
            (generated.certificate_pem, generated.key_pem, true)
        }
        _ => anyhow::bail!("console TLS: {}", TlsError::Incomplete),
    };
    let config = server_config(&chain, &key).map_err(|e| anyhow::anyhow!("console TLS: {e}"))?;
    let mut config = Arc::unwrap_or_clone(config);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ConnectorTls { config: Arc::new(config), self_signed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificates_work_and_name_their_fqdn() {
        let (cert, key) = generate_self_signed("relay.cloudmonkeys.xyz").unwrap();
        assert!(server_config(&cert, &key).is_ok());
        assert_eq!(check_certificate(&cert, &key, "relay.cloudmonkeys.xyz"), Ok(None));
        let warning = check_certificate(&cert, &key, "mail.cloudmonkeys.xyz").unwrap().unwrap();
        assert!(warning.contains("does not name mail.cloudmonkeys.xyz"));
    }

    #[test]
    fn mismatched_or_broken_pem_is_refused() {
        let (cert, _) = generate_self_signed("a.example").unwrap();
        let (_, other_key) = generate_self_signed("b.example").unwrap();
        assert!(matches!(server_config(&cert, &other_key), Err(TlsError::Unusable(_))));
        assert_eq!(server_config("", &other_key).unwrap_err(), TlsError::NoCertificate);
        assert!(matches!(server_config(&cert, "garbage"), Err(TlsError::BadKey(_))));
    }
}
