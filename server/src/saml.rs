//! SAML 2.0 single sign-on for console administrators (samael). Postern is the service
//! provider; the administrator configures one identity provider from its metadata file.
//!
//! Refusing rather than guessing starts here: metadata with a DTD, without an SSO
//! endpoint for the HTTP-Redirect binding, or without a signing certificate is refused,
//! because samael verifies no signature at all when the metadata names no signing
//! certificate (so SSO could never be enabled on such metadata).

use samael::crypto::AllowedSignatureAlgorithm;
use samael::metadata::{EntityDescriptor, HTTP_REDIRECT_BINDING};
use samael::schema::Assertion;
use samael::service_provider::ServiceProvider;
use samael::traits::ToXml;

/// Metadata files are a few KiB; an aggregate of a whole federation is not what an
/// administrator should upload here.
pub const MAX_METADATA_BYTES: usize = 512 * 1024;

/// An identity provider, as its metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityProvider {
    pub entity_id: String,
    /// Where the browser is sent with the AuthnRequest (HTTP-Redirect binding).
    pub sso_url: String,
    /// The certificates a response must be signed with (DER), pinned from the metadata.
    pub signing_certificates: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("the metadata is larger than {} KiB", MAX_METADATA_BYTES / 1024)]
    TooLarge,
    #[error("the metadata contains a DTD (<!DOCTYPE or <!ENTITY), which is never loaded")]
    Dtd,
    #[error("the metadata is not a SAML EntityDescriptor: {0}")]
    Unreadable(String),
    #[error("the metadata has no entityID")]
    NoEntityId,
    #[error("the identity provider offers no single sign-on endpoint with the HTTP-Redirect binding")]
    NoRedirectEndpoint,
    #[error("the metadata carries no signing certificate, so no response could be verified")]
    NoSigningCertificate,
    #[error("a signing certificate in the metadata is unreadable: {0}")]
    BadCertificate(String),
}

impl IdentityProvider {
    /// Reads and checks an identity provider's metadata (an `EntityDescriptor` with an
    /// `IDPSSODescriptor`).
    pub fn from_metadata(xml: &str) -> Result<Self, MetadataError> {
        let descriptor = parse_metadata(xml)?;
        let entity_id =
            descriptor.entity_id.clone().filter(|e| !e.trim().is_empty()).ok_or(MetadataError::NoEntityId)?;
        let sp = ServiceProvider { idp_metadata: descriptor, ..ServiceProvider::default() };
        let sso_url = sp.sso_binding_location(HTTP_REDIRECT_BINDING).ok_or(MetadataError::NoRedirectEndpoint)?;
        let certificates = sp
            .idp_signing_certs()
            .map_err(|e| MetadataError::BadCertificate(e.to_string()))?
            .ok_or(MetadataError::NoSigningCertificate)?;
        let signing_certificates: Vec<Vec<u8>> = certificates.iter().map(|c| c.der_data().to_vec()).collect();
        for der in &signing_certificates {
            openssl::x509::X509::from_der(der).map_err(|e| MetadataError::BadCertificate(e.to_string()))?;
        }
        Ok(Self { entity_id, sso_url, signing_certificates })
    }
}

fn parse_metadata(xml: &str) -> Result<EntityDescriptor, MetadataError> {
    if xml.len() > MAX_METADATA_BYTES {
        return Err(MetadataError::TooLarge);
    }
    if contains_dtd(xml) {
        return Err(MetadataError::Dtd);
    }
    // The deserializer does not look at the root's name: check it is an EntityDescriptor
    // (an aggregate EntitiesDescriptor of a federation is not one IdP).
    let root = root_element(xml).unwrap_or_default();
    if root.rsplit(':').next() != Some("EntityDescriptor") {
        return Err(MetadataError::Unreadable(format!("the root element is <{root}>, not <md:EntityDescriptor>")));
    }
    xml.parse::<EntityDescriptor>().map_err(|e| MetadataError::Unreadable(e.to_string()))
}

/// The name of the document's first element, after the XML declaration, processing
/// instructions and comments.
fn root_element(xml: &str) -> Option<&str> {
    let mut rest = xml;
    loop {
        let start = rest.find('<')?;
        rest = &rest[start..];
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = &after[after.find("-->")? + 3..];
        } else if rest.starts_with("<?") || rest.starts_with("<!") {
            rest = &rest[rest.find('>')? + 1..];
        } else {
            let name = &rest[1..];
            let end = name.find(|c: char| c.is_whitespace() || c == '>' || c == '/').unwrap_or(name.len());
            return Some(&name[..end]);
        }
    }
}

/// A document type declaration or entity declaration anywhere in the text. XML names are
/// case-sensitive, so `<!DOCTYPE` is the only spelling a parser accepts.
pub fn contains_dtd(xml: &str) -> bool {
    xml.contains("<!DOCTYPE") || xml.contains("<!ENTITY")
}

/// Postern's own addresses as a service provider, all under the console's public URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceProviderUrls {
    /// Also the SP's entity ID.
    pub metadata: String,
    /// Assertion Consumer Service (HTTP-POST binding).
    pub acs: String,
    pub logout: String,
}

impl ServiceProviderUrls {
    /// `public_url` is what browsers use to reach the console (`https://relay.example.com`).
    pub fn new(public_url: &str) -> Self {
        let base = public_url.trim_end_matches('/');
        Self {
            metadata: format!("{base}/saml/metadata"),
            acs: format!("{base}/saml/acs"),
            logout: format!("{base}/saml/logout"),
        }
    }

    /// The SP metadata document to give the identity provider.
    pub fn metadata_xml(&self) -> Result<String, String> {
        let sp = ServiceProvider {
            entity_id: Some(self.metadata.clone()),
            metadata_url: Some(self.metadata.clone()),
            acs_url: Some(self.acs.clone()),
            slo_url: Some(self.logout.clone()),
            ..ServiceProvider::default()
        };
        let descriptor = sp.metadata().map_err(|e| e.to_string())?;
        descriptor.to_string().map_err(|e| e.to_string())
    }
}

/// A `SAMLResponse` form field larger than this is refused before it is decoded.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;

const TRANSIENT_NAME_ID: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";

/// Clock skew allowed against the identity provider's validity times.
const CLOCK_SKEW_SECS: i64 = 60;
/// A response must be used within this long of being issued.
const MAX_ISSUE_DELAY_SECS: i64 = 120;

/// Signature algorithms accepted: RSA or ECDSA with SHA-256 or stronger. SHA-1 is not in
/// samael's list at all, so an rsa-sha1 signature or a sha1 digest is refused.
const ALLOWED_ALGORITHMS: [AllowedSignatureAlgorithm; 6] = [
    AllowedSignatureAlgorithm::RsaSha256,
    AllowedSignatureAlgorithm::RsaSha384,
    AllowedSignatureAlgorithm::RsaSha512,
    AllowedSignatureAlgorithm::EcdsaSha256,
    AllowedSignatureAlgorithm::EcdsaSha384,
    AllowedSignatureAlgorithm::EcdsaSha512,
];

/// Why a sign-in through the identity provider was refused (recorded in the audit log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the response is larger than {} KiB", MAX_RESPONSE_BYTES / 1024)]
    TooLarge,
    #[error("the response is not base64-encoded XML")]
    Undecodable,
    #[error("the response is not plain UTF-8 XML: it contains {0}")]
    NotUtf8(&'static str),
    #[error("the response could not be verified in time")]
    TooSlow,
    #[error("too many single sign-on attempts from this address; try again in a minute")]
    Throttled,
    #[error("the response contains a DTD")]
    Dtd,
    #[error("the response references content outside itself or uses a transform that is not allowed: {0}")]
    ForeignReference(String),
    #[error("no sign-in was started from this browser, or it was already used (IdP-initiated responses are refused)")]
    NoPendingRequest,
    #[error("the response failed verification: {0}")]
    Invalid(String),
    #[error("the assertion names no audience; it must name {0}")]
    NoAudience(String),
    #[error("the assertion has no NameID")]
    NoNameId,
    #[error("the NameID is transient; release a persistent NameID (or e-mail address) for Postern")]
    TransientNameId,
    #[error("the assertion {0} was already used")]
    Replayed(String),
    #[error("the user's groups grant no role here")]
    NoRole,
    #[error("single sign-on is not configured or not enabled")]
    NotEnabled,
    /// Not the response's fault: the sign-in could not be looked up or recorded.
    #[error("the database is unavailable; try again")]
    Unavailable,
}

/// A verified sign-in: who, with which groups, answering which request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLogin {
    pub name_id: String,
    pub assertion_id: String,
    pub in_response_to: String,
    /// Until when the assertion could be replayed (its latest validity time).
    pub valid_until: time::OffsetDateTime,
    /// Values of the configured group attribute.
    pub groups: Vec<String>,
}

/// The service provider for one identity provider, with strict verification settings.
pub struct ServiceProviderSession {
    sp: ServiceProvider,
    sso_url: String,
}

impl std::fmt::Debug for ServiceProviderSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceProviderSession").field("sso_url", &self.sso_url).finish_non_exhaustive()
    }
}

impl ServiceProviderSession {
    pub fn new(urls: &ServiceProviderUrls, metadata_xml: &str) -> Result<Self, MetadataError> {
        let idp = IdentityProvider::from_metadata(metadata_xml)?;
        let sp = ServiceProvider {
            entity_id: Some(urls.metadata.clone()),
            metadata_url: Some(urls.metadata.clone()),
            acs_url: Some(urls.acs.clone()),
            slo_url: Some(urls.logout.clone()),
            idp_metadata: parse_metadata(metadata_xml)?,
            allow_idp_initiated: false,
            max_issue_delay: chrono::Duration::seconds(MAX_ISSUE_DELAY_SECS),
            max_clock_skew: chrono::Duration::seconds(CLOCK_SKEW_SECS),
            allowed_signature_algorithms: Some(ALLOWED_ALGORITHMS.to_vec()),
            ..ServiceProvider::default()
        };
        // Never without a pinned certificate: samael would then verify nothing.
        match sp.idp_signing_certs() {
            Ok(Some(certs)) if !certs.is_empty() => {}
            _ => return Err(MetadataError::NoSigningCertificate),
        }
        Ok(Self { sp, sso_url: idp.sso_url })
    }

    /// The identity provider's URL for an HTTP-Redirect AuthnRequest with this ID (which
    /// the caller made unguessable and remembers for this browser).
    pub fn authn_request_url(&self, request_id: &str, relay_state: &str) -> Result<String, String> {
        let mut request = self.sp.make_authentication_request(&self.sso_url).map_err(|e| e.to_string())?;
        request.id = request_id.to_string();
        let url = request.redirect(relay_state).map_err(|e| e.to_string())?;
        url.map(|u| u.to_string()).ok_or_else(|| "the AuthnRequest has no destination".to_string())
    }

    /// Verifies a `SAMLResponse` form value answering one of `request_ids` (the requests
    /// this browser started and has not used). The group values are read from
    /// `group_attribute`.
    pub fn verify(
        &self,
        encoded: &str,
        request_ids: &[String],
        group_attribute: &str,
    ) -> Result<VerifiedLogin, Refusal> {
        if encoded.len() > MAX_RESPONSE_BYTES {
            return Err(Refusal::TooLarge);
        }
        let xml = decode(encoded)?;
        precheck(&xml)?;
        if request_ids.is_empty() {
            return Err(Refusal::NoPendingRequest);
        }
        let ids: Vec<&str> = request_ids.iter().map(String::as_str).collect();
        // samael's errors are not Send: they are turned into text here, before any await.
        let assertion = self.sp.parse_xml_response(&xml, Some(&ids)).map_err(|e| Refusal::Invalid(error_name(&e)))?;
        self.accept(assertion, request_ids, group_attribute)
    }

    /// The checks samael leaves to the caller: an audience must be named (samael checks
    /// it only when present), the answered request must be one of ours, a NameID.
    fn accept(
        &self,
        assertion: Assertion,
        request_ids: &[String],
        group_attribute: &str,
    ) -> Result<VerifiedLogin, Refusal> {
        let audience = self.sp.entity_id.clone().unwrap_or_default();
        let audiences: Vec<&String> = assertion
            .conditions
            .iter()
            .flat_map(|c| c.audience_restrictions.iter().flatten())
            .flat_map(|r| r.audience.iter())
            .collect();
        if audiences.is_empty() {
            return Err(Refusal::NoAudience(audience));
        }
        let subject = assertion.subject.as_ref().ok_or(Refusal::NoNameId)?;
        // A transient NameID changes at every sign-in: users keyed by it would multiply,
        // and one disabled here would come back as a new user.
        if subject.name_id.as_ref().and_then(|n| n.format.as_deref()) == Some(TRANSIENT_NAME_ID) {
            return Err(Refusal::TransientNameId);
        }
        let name_id = subject.name_id.as_ref().map(|n| n.value.trim().to_string()).filter(|n| !n.is_empty());
        let name_id = name_id.ok_or(Refusal::NoNameId)?;
        let confirmation = subject
            .subject_confirmations
            .iter()
            .flatten()
            .filter_map(|c| c.subject_confirmation_data.as_ref())
            .find(|d| d.in_response_to.as_ref().is_some_and(|id| request_ids.contains(id)))
            .ok_or(Refusal::NoPendingRequest)?;
        let in_response_to = confirmation.in_response_to.clone().unwrap_or_default();
        let latest = [confirmation.not_on_or_after, assertion.conditions.as_ref().and_then(|c| c.not_on_or_after)]
            .into_iter()
            .flatten()
            .max()
            .map_or(0, |t| t.timestamp())
            + CLOCK_SKEW_SECS;
        let valid_until = time::OffsetDateTime::from_unix_timestamp(latest).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let groups = assertion
            .attribute_statements
            .iter()
            .flatten()
            .flat_map(|s| s.attributes.iter())
            .filter(|a| {
                a.name.as_deref() == Some(group_attribute) || a.friendly_name.as_deref() == Some(group_attribute)
            })
            .flat_map(|a| a.values.iter().filter_map(|v| v.value.clone()))
            .collect();
        Ok(VerifiedLogin { name_id, assertion_id: assertion.id, in_response_to, valid_until, groups })
    }
}

/// samael's error as its variant's name (`AssertionExpired`, `FailedToValidateSignature`):
/// enough to say why, without request IDs or document fragments in the audit log.
fn error_name(e: &samael::service_provider::Error) -> String {
    let debug = format!("{e:?}");
    debug.split([' ', '(', '{']).next().unwrap_or_default().to_string()
}

/// Base64 (line breaks allowed, as some IdPs send them) to UTF-8 XML, in the one form
/// both readers agree on. libxml2 (under xmlsec) guesses a document's encoding from its
/// first bytes and its XML declaration; the pre-check reads Rust's UTF-8. A document that
/// is valid UTF-8 to Rust yet something else to libxml2 (UTF-16 without a byte-order
/// mark is valid UTF-8 with a NUL between letters) would let the two read different
/// documents, so anything that is not plainly UTF-8 is refused: NUL and the other
/// control characters XML 1.0 forbids (§2.2), a byte-order mark other than UTF-8's, and
/// an XML declaration naming another encoding. (samael is also patched to parse as UTF-8
/// whatever the document says.)
fn decode(encoded: &str) -> Result<String, Refusal> {
    use base64::Engine as _;
    let compact: String = encoded.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD.decode(compact).map_err(|_| Refusal::Undecodable)?;
    let text = String::from_utf8(bytes).map_err(|_| Refusal::Undecodable)?;
    let text = text.strip_prefix('\u{feff}').map(str::to_string).unwrap_or(text);
    if text.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) {
        return Err(Refusal::NotUtf8("a control character (NUL or another XML forbids)"));
    }
    if let Some(encoding) = declared_encoding(&text)
        && !encoding.eq_ignore_ascii_case("utf-8")
    {
        return Err(Refusal::NotUtf8("an XML declaration naming another encoding"));
    }
    Ok(text)
}

/// The `encoding` of the XML declaration (`<?xml version="1.0" encoding="…"?>`), if the
/// document opens with one (XML 1.0 §4.3.3).
fn declared_encoding(xml: &str) -> Option<&str> {
    let declaration = xml.strip_prefix("<?xml")?;
    let declaration = &declaration[..declaration.find("?>")?];
    let after = &declaration[declaration.find("encoding")? + "encoding".len()..];
    let value = after.trim_start().strip_prefix('=')?.trim_start();
    let quote = value.chars().next().filter(|q| *q == '"' || *q == '\'')?;
    let value = &value[1..];
    Some(&value[..value.find(quote)?])
}

/// Refuses, before samael or xmlsec see it, what they would act on unsafely: a DTD (never
/// loaded), a signature `Reference` to anything but a same-document ID (xmlsec would fetch
/// `file:` and `http:` URIs before the signature is rejected), and transforms other than
/// enveloped-signature and exclusive canonicalization (no XSLT, no XPath).
fn precheck(xml: &str) -> Result<(), Refusal> {
    use quick_xml::events::Event;
    if contains_dtd(xml) {
        return Err(Refusal::Dtd);
    }
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut assertions = 0;
    loop {
        let element = match reader.read_event() {
            Ok(Event::Start(e) | Event::Empty(e)) => e,
            Ok(Event::DocType(_)) => return Err(Refusal::Dtd),
            Ok(Event::Eof) => return Ok(()),
            Ok(_) => continue,
            Err(_) => return Err(Refusal::Undecodable),
        };
        let local = element.local_name();
        let attribute = |name: &[u8]| {
            element
                .attributes()
                .flatten()
                .find(|a| a.key.local_name().as_ref() == name)
                .map(|a| String::from_utf8_lossy(&a.value).into_owned())
        };
        match local.as_ref() {
            // Signature wrapping hides a second assertion beside or around the signed
            // one; a response from the identity provider carries exactly one.
            b"Assertion" | b"EncryptedAssertion" => {
                assertions += 1;
                if assertions > 1 {
                    return Err(Refusal::Invalid("the response carries more than one assertion".into()));
                }
            }
            b"Reference" => {
                let uri = attribute(b"URI").unwrap_or_default();
                if !(uri.is_empty() || uri.starts_with('#') && !uri[1..].contains(['/', ':', '('])) {
                    return Err(Refusal::ForeignReference(for_the_log(&uri)));
                }
            }
            b"Transform" => {
                let algorithm = attribute(b"Algorithm").unwrap_or_default();
                if !ALLOWED_TRANSFORMS.contains(&algorithm.as_str()) {
                    return Err(Refusal::ForeignReference(for_the_log(&algorithm)));
                }
            }
            _ => {}
        }
    }
}

/// Text from an unauthenticated document, made safe to log: at most 100 characters, with
/// control characters (a forged log line) escaped.
fn for_the_log(text: &str) -> String {
    text.chars().take(100).flat_map(char::escape_debug).collect()
}

const ALLOWED_TRANSFORMS: [&str; 3] = [
    "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
    "http://www.w3.org/2001/10/xml-exc-c14n#",
    "http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// A real certificate's DER, base64 (as metadata carries it).
    fn certificate() -> String {
        use base64::Engine as _;
        use rustls::pki_types::pem::PemObject;
        let (pem, _) = crate::tls::generate_self_signed("idp.example.com").unwrap();
        let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        base64::engine::general_purpose::STANDARD.encode(der.as_ref())
    }

    fn metadata(key_descriptor: &str, binding: &str) -> String {
        format!(
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://idp.example.com/realms/ops">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    {key_descriptor}
    <md:SingleSignOnService Binding="{binding}" Location="https://idp.example.com/sso"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>"#
        )
    }

    fn signing_key() -> String {
        format!(
            r#"<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#,
            certificate()
        )
    }

    #[test]
    fn metadata_with_a_signing_certificate_and_a_redirect_endpoint_is_read() {
        let idp = IdentityProvider::from_metadata(&metadata(&signing_key(), HTTP_REDIRECT_BINDING)).unwrap();
        assert_eq!(idp.entity_id, "https://idp.example.com/realms/ops");
        assert_eq!(idp.sso_url, "https://idp.example.com/sso");
        assert_eq!(idp.signing_certificates.len(), 1);
    }

    #[test]
    fn metadata_that_could_not_be_verified_against_is_refused() {
        let encryption_only = signing_key().replace("use=\"signing\"", "use=\"encryption\"");
        assert_eq!(
            IdentityProvider::from_metadata(&metadata(&encryption_only, HTTP_REDIRECT_BINDING)),
            Err(MetadataError::NoSigningCertificate)
        );
        assert_eq!(
            IdentityProvider::from_metadata(&metadata("", HTTP_REDIRECT_BINDING)),
            Err(MetadataError::NoSigningCertificate)
        );
        let post_only = metadata(&signing_key(), samael::metadata::HTTP_POST_BINDING);
        assert_eq!(IdentityProvider::from_metadata(&post_only), Err(MetadataError::NoRedirectEndpoint));
        let with_dtd = format!(
            "<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>{}",
            metadata(&signing_key(), HTTP_REDIRECT_BINDING)
        );
        assert_eq!(IdentityProvider::from_metadata(&with_dtd), Err(MetadataError::Dtd));
        assert!(matches!(IdentityProvider::from_metadata("<html/>"), Err(MetadataError::Unreadable(_))));
        let garbage = signing_key().replace("<ds:X509Certificate>", "<ds:X509Certificate>AAAA");
        assert!(matches!(
            IdentityProvider::from_metadata(&metadata(&garbage, HTTP_REDIRECT_BINDING)),
            Err(MetadataError::BadCertificate(_))
        ));
        let huge = " ".repeat(MAX_METADATA_BYTES + 1);
        assert_eq!(IdentityProvider::from_metadata(&huge), Err(MetadataError::TooLarge));
    }

    #[test]
    fn only_plain_utf8_is_decoded() {
        use base64::Engine as _;
        let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let doc = "<samlp:Response ID=\"_1\"/>";
        assert_eq!(decode(&encode(doc.as_bytes())).as_deref(), Ok(doc));
        let declared = format!("<?xml version=\"1.0\" encoding=\"utf-8\"?>{doc}");
        assert_eq!(decode(&encode(declared.as_bytes())), Ok(declared.clone()));
        let with_bom = format!("\u{feff}{doc}");
        assert_eq!(decode(&encode(with_bom.as_bytes())).as_deref(), Ok(doc), "UTF-8's own mark is dropped");
        // UTF-16LE without a mark is valid UTF-8 (a NUL after every ASCII letter).
        let utf16: Vec<u8> = doc.encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert!(std::str::from_utf8(&utf16).is_ok());
        assert!(matches!(decode(&encode(&utf16)), Err(Refusal::NotUtf8(_))));
        let utf16_bom: Vec<u8> = [0xff, 0xfe].into_iter().chain(utf16.iter().copied()).collect();
        assert_eq!(decode(&encode(&utf16_bom)), Err(Refusal::Undecodable));
        for other in ["UTF-16", "utf-7", "ISO-8859-1", "UTF-8 "] {
            let declared = format!("<?xml version='1.0' encoding='{other}'?>{doc}");
            assert!(matches!(decode(&encode(declared.as_bytes())), Err(Refusal::NotUtf8(_))), "{other}");
        }
        for control in ['\0', '\u{1}', '\u{1b}', '\u{7f}', '\u{85}'] {
            let text = format!("<a>{control}</a>");
            assert!(matches!(decode(&encode(text.as_bytes())), Err(Refusal::NotUtf8(_))), "{control:?}");
        }
        assert_eq!(decode("not base64!"), Err(Refusal::Undecodable));
    }

    #[test]
    fn the_root_element_is_found_past_declarations_and_comments() {
        assert_eq!(
            root_element("<?xml version=\"1.0\"?><!-- a > b --><md:EntityDescriptor x=\"1\">"),
            Some("md:EntityDescriptor")
        );
        assert_eq!(root_element("<EntityDescriptor/>"), Some("EntityDescriptor"));
        assert_eq!(root_element("no xml"), None);
    }

    #[test]
    fn service_provider_metadata_names_our_urls() {
        let urls = ServiceProviderUrls::new("https://relay.example.com/");
        assert_eq!(urls.acs, "https://relay.example.com/saml/acs");
        let xml = urls.metadata_xml().unwrap();
        assert!(xml.contains(r#"entityID="https://relay.example.com/saml/metadata""#), "{xml}");
        assert!(xml.contains(r#"Location="https://relay.example.com/saml/acs""#), "{xml}");
        assert!(xml.contains("WantAssertionsSigned=\"true\""), "{xml}");
    }
}
