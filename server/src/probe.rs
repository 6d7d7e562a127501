//! The console's "Send test message" (the seed's `Send-MailMessage` check): a real SMTP
//! client session against one of this node's receive connectors, recording every line
//! both ways so the administrator sees exactly what a client would.
//!
//! The client connects from this host, so the connector sees this host's address as the
//! client IP: a connector that does not admit it answers as it would any stranger.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The whole session may take this long (a connector that stalls is reported, not waited on).
const SESSION_TIMEOUT: Duration = Duration::from_secs(30);
/// A reply longer than this ends the session (RFC 5321 §4.5.3.1.5 allows 512 per line).
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// What to send, and how.
#[derive(Clone)]
pub struct TestMessage {
    pub server: SocketAddr,
    /// The name sent in EHLO and checked against nothing (the TLS certificate is not
    /// verified: this is a test of the relay, from the relay's own host).
    pub helo: String,
    pub starttls: bool,
    /// Service account and password for AUTH PLAIN.
    pub credentials: Option<(String, String)>,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message as it goes on the wire before dot-stuffing (CRLF line ends).
    pub content: Vec<u8>,
}

impl std::fmt::Debug for TestMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestMessage")
            .field("server", &self.server)
            .field("rcpt_to", &self.rcpt_to)
            .finish_non_exhaustive()
    }
}

/// One line of the transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// True for what the client sent, false for the server's replies and notes.
    pub client: bool,
    pub text: String,
}

#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub transcript: Vec<Line>,
    /// The server's final reply to the message (after DATA), when it got that far.
    pub accepted: bool,
    /// The queue id in a `250 2.6.0 <id> Queued` reply.
    pub queue_id: Option<String>,
    /// Why the session ended early (a refusal, a timeout, a network error).
    pub failure: Option<String>,
}

/// Runs the session; never fails, the outcome says what happened.
pub async fn send(message: TestMessage) -> Outcome {
    let mut outcome = Outcome::default();
    let result = tokio::time::timeout(SESSION_TIMEOUT, run(&message, &mut outcome)).await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => outcome.failure = Some(e),
        Err(_) => outcome.failure = Some(format!("no answer within {} s", SESSION_TIMEOUT.as_secs())),
    }
    outcome
}

async fn run(message: &TestMessage, outcome: &mut Outcome) -> Result<(), String> {
    let tcp =
        TcpStream::connect(message.server).await.map_err(|e| format!("cannot connect to {}: {e}", message.server))?;
    let mut conversation = Conversation { stream: BufReader::new(tcp), outcome };
    conversation.expect(&[220], None).await?;
    let ehlo = format!("EHLO {}", message.helo);
    let extensions = conversation.expect(&[250], Some(&ehlo)).await?;
    if !message.starttls {
        return conversation.transaction(message, &extensions).await;
    }
    if !extensions.iter().any(|l| l.eq_ignore_ascii_case("STARTTLS")) {
        return Err("the connector does not offer STARTTLS".into());
    }
    conversation.expect(&[220], Some("STARTTLS")).await?;
    let Conversation { stream, outcome } = conversation;
    // An IP address as the name: rustls sends no SNI (the certificate is not verified).
    let tls = tls_connector()?
        .connect(ServerName::IpAddress(message.server.ip().into()), stream.into_inner())
        .await
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    let (_, connection) = tls.get_ref();
    let version = connection.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default();
    let cipher = connection.negotiated_cipher_suite().map(|c| format!("{:?}", c.suite())).unwrap_or_default();
    outcome.transcript.push(Line {
        client: false,
        text: format!("(TLS established: {version} {cipher}; certificate not verified for this test)"),
    });
    let mut conversation = Conversation { stream: BufReader::new(tls), outcome };
    let extensions = conversation.expect(&[250], Some(&ehlo)).await?;
    conversation.transaction(message, &extensions).await
}

struct Conversation<'a, S> {
    stream: BufReader<S>,
    outcome: &'a mut Outcome,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conversation<'_, S> {
    /// AUTH (when asked), MAIL, RCPT for each recipient, DATA, the message, QUIT.
    async fn transaction(&mut self, message: &TestMessage, extensions: &[String]) -> Result<(), String> {
        if let Some((login, password)) = &message.credentials {
            if !extensions.iter().any(|l| l.to_ascii_uppercase().starts_with("AUTH") && l.contains("PLAIN")) {
                return Err("the connector does not offer AUTH PLAIN here (without TLS, or not at all)".into());
            }
            let token = base64_plain(login, password);
            self.send_secret(&format!("AUTH PLAIN {token}"), "AUTH PLAIN (credentials hidden)").await?;
            self.expect(&[235], None).await?;
        }
        self.expect(&[250], Some(&format!("MAIL FROM:<{}>", message.mail_from))).await?;
        let mut accepted = 0;
        for rcpt in &message.rcpt_to {
            // A refused recipient is part of the result, not the end of the test.
            if self.expect(&[250, 251], Some(&format!("RCPT TO:<{rcpt}>"))).await.is_ok() {
                accepted += 1;
            }
        }
        if accepted == 0 {
            self.quit().await;
            return Err("no recipient was accepted".into());
        }
        self.expect(&[354], Some("DATA")).await?;
        let mut data = dot_stuff(&message.content);
        data.extend_from_slice(b".\r\n");
        self.stream.get_mut().write_all(&data).await.map_err(|e| e.to_string())?;
        self.outcome
            .transcript
            .push(Line { client: true, text: format!("({} bytes of message, then \".\")", data.len()) });
        let reply = self.expect(&[250], None).await?;
        self.outcome.accepted = true;
        self.outcome.queue_id = reply.first().and_then(|l| queue_id(l));
        self.quit().await;
        Ok(())
    }

    async fn quit(&mut self) {
        let _ = self.expect(&[221], Some("QUIT")).await;
    }

    async fn send_secret(&mut self, line: &str, shown: &str) -> Result<(), String> {
        self.outcome.transcript.push(Line { client: true, text: shown.to_string() });
        let wire = format!("{line}\r\n");
        self.stream.get_mut().write_all(wire.as_bytes()).await.map_err(|e| e.to_string())
    }

    /// Sends `command` (if any) and reads the reply; a code outside `codes` is an error
    /// naming the reply. Returns the reply's text lines.
    async fn expect(&mut self, codes: &[u16], command: Option<&str>) -> Result<Vec<String>, String> {
        if let Some(command) = command {
            self.send_secret(command, command).await?;
        }
        let (code, lines) = self.reply().await?;
        if codes.contains(&code) { Ok(lines) } else { Err(format!("refused: {code} {}", lines.join(" "))) }
    }

    /// One reply, possibly multi-line (RFC 5321 §4.2.1).
    async fn reply(&mut self) -> Result<(u16, Vec<String>), String> {
        let mut lines = Vec::new();
        let mut total = 0;
        loop {
            let mut raw = Vec::new();
            let n = (&mut self.stream).take(4096).read_until(b'\n', &mut raw).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the server closed the connection".into());
            }
            total += n;
            let text = String::from_utf8_lossy(&raw).trim_end().to_string();
            self.outcome.transcript.push(Line { client: false, text: text.clone() });
            let code = text.get(..3).and_then(|c| c.parse::<u16>().ok()).ok_or("a reply without a code")?;
            let last = text.as_bytes().get(3) != Some(&b'-');
            lines.push(text.get(4..).unwrap_or_default().to_string());
            if last {
                return Ok((code, lines));
            }
            if total > MAX_REPLY_BYTES {
                return Err("the reply is too long".into());
            }
        }
    }
}

/// RFC 4616 PLAIN: authzid empty, NUL, authcid, NUL, password, in base64.
fn base64_plain(login: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{login}\0{password}"))
}

/// RFC 5321 §4.5.2: a line that starts with "." gets another; the content is made to
/// end with CRLF so the terminator stands on its own line.
fn dot_stuff(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 16);
    let mut line_start = true;
    for &byte in content {
        if line_start && byte == b'.' {
            out.push(b'.');
        }
        out.push(byte);
        line_start = byte == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// `<id>` in `2.6.0 <id> Queued mail for delivery`.
fn queue_id(reply: &str) -> Option<String> {
    let start = reply.find('<')? + 1;
    let end = start + reply[start..].find('>')?;
    Some(reply[start..end].to_string())
}

/// A TLS client that accepts any certificate (see `AnyCertificate`): for probing this
/// node's own listeners.
pub(crate) fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Accepts whatever certificate this node's connector presents (often the generated,
/// self-signed one) but still checks the handshake signatures, so the session is real
/// TLS. Used only to probe this node's own listeners (this test client, the health
/// check), never for delivery.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing_doubles_leading_dots_and_ends_with_crlf() {
        assert_eq!(dot_stuff(b".hidden\r\nok\r\n..two\r\n"), b"..hidden\r\nok\r\n...two\r\n");
        assert_eq!(dot_stuff(b"no newline"), b"no newline\r\n");
        assert_eq!(dot_stuff(b"a\r\n.\r\n"), b"a\r\n..\r\n");
    }

    #[test]
    fn queue_id_is_read_from_the_queued_reply() {
        assert_eq!(queue_id("2.6.0 <0193ab> Queued mail for delivery").as_deref(), Some("0193ab"));
        assert_eq!(queue_id("2.0.0 OK"), None);
    }

    #[test]
    fn plain_credentials_are_nul_separated() {
        assert_eq!(base64_plain("smb1", "pw"), "AHNtYjEAcHc=");
    }
}
