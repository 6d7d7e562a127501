//! Send connectors: New-SendConnector / Set-SendConnector / Remove-SendConnector. The
//! TLS policy, trust anchors (CA bundle, pin) and the way the connector signs in to its
//! smart hosts (a password, or OAuth2 for XOAUTH2) are checked here, and stored secrets
//! never follow a change that would send them elsewhere.

use uuid::Uuid;

use super::{Admin, AdminError, Problems, items};
use crate::domain::{
    AddressSpace, IpPreference, OAuth2Client, ObjectName, Secret, SendConnector, SmartHost, SmartHostCredentials,
    TlsPolicy,
};
use crate::store::{IfMatch, SendConnectorRow, StoreError, entity_tag};

#[derive(Clone, Default)]
pub struct SendConnectorChanges {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub address_spaces: Option<Vec<String>>,
    /// Empty list: deliver by DNS MX.
    pub smart_hosts: Option<Vec<String>>,
    pub port: Option<u16>,
    pub tls_policy: Option<String>,
    /// The smart-host user name; `Some(None)` removes the credentials.
    pub username: Option<Option<String>>,
    /// The smart-host password; left out, the current one is kept.
    pub password: Option<Option<String>>,
    /// How the connector signs in: `password` (AUTH PLAIN/LOGIN), `oauth2` (XOAUTH2 with
    /// the user name as the mailbox), or `none`; left out, as it is.
    pub auth: Option<String>,
    pub oauth_token_url: Option<String>,
    pub oauth_client_id: Option<String>,
    pub oauth_scope: Option<String>,
    /// The OAuth2 client secret; left out, the current one is kept (never shown back).
    pub oauth_client_secret: Option<String>,
    /// Extra trusted CAs (PEM) for `verify`; `Some(None)` removes them.
    pub tls_ca_pem: Option<Option<String>>,
    /// `sha256:<base64>` of the next hop's public key; `Some(None)` removes it.
    pub tls_pin: Option<Option<String>>,
    pub allow_private_destinations: Option<bool>,
    pub ip_preference: Option<String>,
}

impl std::fmt::Debug for SendConnectorChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendConnectorChanges").field("name", &self.name).finish_non_exhaustive()
    }
}

impl SendConnectorChanges {
    /// As `apply`, for a new object: the name and address spaces must be given.
    fn apply_required(&self, base: &SendConnector) -> Result<SendConnector, AdminError> {
        self.apply_required_keeping(base, None)
    }

    fn apply_required_keeping(
        &self,
        base: &SendConnector,
        stored: Option<&SendConnector>,
    ) -> Result<SendConnector, AdminError> {
        let mut p = Problems::default();
        if self.name.is_none() {
            p.add("name", "is required");
        }
        if self.address_spaces.is_none() {
            p.add("address_spaces", "is required ('*' for all domains)");
        }
        p.into_result()?;
        self.apply_keeping(base, stored)
    }

    /// A user name and password go together; a new user name keeps the current password,
    /// a new password the current user name; a null user name removes both.
    fn apply_password(&self, c: &mut SendConnector, p: &mut Problems, dropped: bool) {
        match (&self.username, &self.password, &mut c.credentials) {
            (None, None, _) => {}
            (Some(None), None | Some(None), credentials) => *credentials = None,
            (Some(Some(username)), Some(Some(password)), credentials) => {
                *credentials = Some(SmartHostCredentials { username: username.clone(), password: password.clone() });
            }
            (Some(Some(username)), None, Some(current)) => current.username = username.clone(),
            (None, Some(Some(password)), Some(current)) => current.password = password.clone(),
            (Some(Some(_)), None, None) if dropped => p.add("password", MUST_GIVE_AGAIN),
            (Some(Some(_)), None, None) => p.add("password", "is required with a user name"),
            (None, Some(Some(_)), None) => p.add("username", "is required with a password"),
            (_, Some(None), _) | (Some(None), Some(Some(_)), _) => {
                p.add("password", "cannot be removed alone: set username to null to remove the credentials");
            }
        }
        if c.credentials.as_ref().is_some_and(|c| c.username.trim().is_empty() || c.password.is_empty()) {
            p.add("username", "user name and password must not be empty");
        }
    }

    /// XOAUTH2: the mailbox (the user name), the token endpoint, the client and its
    /// secret, the scope. Fields not given keep their values; a new client needs all.
    fn apply_oauth2(&self, c: &mut SendConnector, p: &mut Problems, dropped: bool) {
        let current = c.oauth2.take();
        let mailbox = match &self.username {
            Some(Some(u)) => Some(u.trim().to_string()),
            _ => current.as_ref().map(|o| o.mailbox.clone()),
        };
        let url = self.oauth_token_url.clone().or_else(|| current.as_ref().map(|o| o.token_url.clone()));
        let client_id = self.oauth_client_id.clone().or_else(|| current.as_ref().map(|o| o.client_id.clone()));
        let scope = self.oauth_scope.clone().or_else(|| current.as_ref().map(|o| o.scope.clone()));
        let secret = self.oauth_client_secret.clone().map(Secret::new).or_else(|| current.map(|o| o.client_secret));
        let missing = |p: &mut Problems, field: &'static str, what: &str| {
            p.add(field, format!("is required for OAuth2 ({what})"))
        };
        let Some(mailbox) = mailbox.filter(|m| crate::domain::EmailAddress::parse(m, true).is_ok()) else {
            return missing(p, "username", "the mailbox to send as, e.g. relay@contoso.com");
        };
        let Some(url) = url else { return missing(p, "oauth_token_url", "the token endpoint") };
        if let Err(e) = super::super::delivery::oauth::check_token_url(&url) {
            p.add("oauth_token_url", e);
        }
        let Some(client_id) = client_id.filter(|i| !i.trim().is_empty()) else {
            return missing(p, "oauth_client_id", "the application (client) ID");
        };
        let Some(scope) = scope.filter(|s| !s.trim().is_empty()) else {
            return missing(p, "oauth_scope", "e.g. https://outlook.office365.com/.default");
        };
        let Some(client_secret) = secret.filter(|s| !s.is_empty()) else {
            return p.add("oauth_client_secret", if dropped { MUST_GIVE_AGAIN } else { "is required for OAuth2" });
        };
        if [&mailbox, &url, &client_id, &scope].iter().any(|v| v.chars().any(char::is_control)) {
            p.add("oauth_client_id", "OAuth2 settings must not contain control characters");
        }
        c.oauth2 = Some(OAuth2Client { mailbox, token_url: url.trim().to_string(), client_id, client_secret, scope });
    }

    /// Which way of signing in applies: the one asked for, or the one in place.
    fn apply_auth(&self, c: &mut SendConnector, p: &mut Problems, dropped: bool) {
        let wanted = match self.auth.as_deref().map(|a| a.trim().to_ascii_lowercase()) {
            Some(a) if a == "oauth2" => "oauth2",
            Some(a) if a == "password" || a == "basic" => "password",
            Some(a) if a == "none" => "none",
            Some(other) => return p.add("auth", format!("{other:?} is not a sign-in method (password, oauth2, none)")),
            None if matches!(self.username, Some(None)) => "none",
            None if c.oauth2.is_some() || (dropped && self.oauth_token_url.is_some()) => "oauth2",
            None if self.oauth_token_url.is_some() || self.oauth_client_secret.is_some() => "oauth2",
            None => "password",
        };
        match wanted {
            "none" => (c.credentials, c.oauth2) = (None, None),
            "oauth2" => {
                c.credentials = None;
                self.apply_oauth2(c, p, dropped);
            }
            _ => {
                c.oauth2 = None;
                self.apply_password(c, p, dropped);
            }
        }
    }

    /// The CA bundle and the pin: checked now, so a bad one is refused with its reason.
    fn apply_trust(&self, c: &mut SendConnector, p: &mut Problems) {
        match &self.tls_ca_pem {
            Some(Some(pem)) if !pem.trim().is_empty() => match crate::delivery::tls::parse_ca_bundle(pem) {
                Ok(_) => c.tls_ca_pem = Some(pem.replace("\r\n", "\n").trim().to_string() + "\n"),
                Err(e) => p.add("tls_ca_pem", e),
            },
            Some(_) => c.tls_ca_pem = None,
            None => {}
        }
        match &self.tls_pin {
            Some(Some(pin)) if !pin.trim().is_empty() => {
                c.tls_pin = p.check("tls_pin", crate::delivery::tls::parse_pin(pin)).or(c.tls_pin);
            }
            Some(_) => c.tls_pin = None,
            None => {}
        }
        if (c.tls_ca_pem.is_some() || c.tls_pin.is_some()) && c.tls_policy != TlsPolicy::Verify {
            p.add("tls_policy", "a CA bundle or a pin is used only to verify: set the TLS policy to 'verify'");
        }
    }

    pub fn apply(&self, base: &SendConnector) -> Result<SendConnector, AdminError> {
        self.apply_keeping(base, Some(base))
    }

    /// As `apply`; the credentials `stored` holds stay only while they go to the same
    /// hosts as securely as before (see `redirects_credentials`).
    fn apply_keeping(&self, base: &SendConnector, stored: Option<&SendConnector>) -> Result<SendConnector, AdminError> {
        let mut p = Problems::default();
        let mut c = base.clone();
        if let Some(name) = &self.name
            && let Some(name) = p.check("name", ObjectName::parse(name))
        {
            c.name = name.into_string();
        }
        if let Some(v) = self.enabled {
            c.enabled = v;
        }
        if let Some(list) = &self.address_spaces {
            c.address_spaces =
                items(list).iter().filter_map(|s| p.check("address_spaces", AddressSpace::parse(s))).collect();
            if items(list).is_empty() {
                p.add("address_spaces", "at least one address space is required ('*' for all domains)");
            }
        }
        if let Some(list) = &self.smart_hosts {
            c.smart_hosts = items(list).iter().filter_map(|h| p.check("smart_hosts", SmartHost::parse(h))).collect();
        }
        if let Some(port) = self.port {
            if port == 0 {
                p.add("port", "must be between 1 and 65535");
            }
            c.port = port;
        }
        match &self.tls_policy {
            Some(policy) => c.tls_policy = p.check("tls_policy", policy.parse::<TlsPolicy>()).unwrap_or(c.tls_policy),
            // A new connector with credentials verifies its smart host unless told otherwise.
            None if stored.is_none() && (self.password.is_some() || self.oauth_client_secret.is_some()) => {
                c.tls_policy = TlsPolicy::Verify;
            }
            None => {}
        }
        if let Some(v) = self.allow_private_destinations {
            c.allow_private_destinations = v;
        }
        if let Some(preference) = &self.ip_preference {
            c.ip_preference = p.check("ip_preference", preference.parse::<IpPreference>()).unwrap_or(c.ip_preference);
        }
        self.apply_trust(&mut c, &mut p);
        let resupplied = matches!(self.password, Some(Some(_)))
            || self.oauth_client_secret.is_some()
            || matches!(self.username, Some(None));
        let dropped = !resupplied && stored.is_some_and(|stored| redirects_credentials(stored, &c));
        if dropped {
            (c.credentials, c.oauth2) = (None, None);
        }
        self.apply_auth(&mut c, &mut p, dropped);
        // Invariant 13: credentials go only to a verified smart host, over TLS.
        if (c.credentials.is_some() || c.oauth2.is_some()) && c.tls_policy != TlsPolicy::Verify {
            p.add("tls_policy", "credentials are only sent to a verified smart host: set the TLS policy to 'verify'");
        }
        p.into_result()?;
        Ok(c)
    }
}

const MUST_GIVE_AGAIN: &str = "must be given again: the smart hosts, port, TLS policy, trust or token endpoint \
    changed, and stored credentials never follow a change";

/// Stored credentials are never shown back, so they must not follow a change that would
/// send them somewhere else or less safely (invariant 13): a smart host that was not in
/// the list, another port, a weaker TLS policy, other trust anchors (a CA bundle or pin
/// that would accept another server), or, for OAuth2, another token endpoint (the
/// client secret goes there). Such a change drops them unless the same request gives
/// the secret again; the audit log shows the user name go.
fn redirects_credentials(stored: &SendConnector, changed: &SendConnector) -> bool {
    let token_url = |c: &SendConnector| c.oauth2.as_ref().map(|o| o.token_url.clone());
    (stored.credentials.is_some() || stored.oauth2.is_some())
        && (changed.smart_hosts.iter().any(|host| !stored.smart_hosts.contains(host))
            || changed.port != stored.port
            || changed.tls_policy.strength() < stored.tls_policy.strength()
            || changed.tls_ca_pem != stored.tls_ca_pem
            || changed.tls_pin != stored.tls_pin
            || (changed.oauth2.is_some() && token_url(changed) != token_url(stored)))
}

impl Admin {
    pub async fn send_connectors(&self) -> Result<Vec<SendConnectorRow>, AdminError> {
        Ok(self.store.send_connectors().await?)
    }

    pub async fn send_connector(&self, name: &str) -> Result<SendConnectorRow, AdminError> {
        Ok(self.store.send_connector(name).await?)
    }

    pub async fn new_send_connector(&self, changes: &SendConnectorChanges) -> Result<SendConnector, AdminError> {
        let connector = changes.apply_required(&new_send_connector_base())?;
        self.store.save_send_connector(&connector, &self.actor, None).await?;
        Ok(connector)
    }

    /// The API's PUT: creates or replaces (fields not given take their defaults, except
    /// the credentials, which cannot be read back and so are kept unless given, with the
    /// TLS policy they need).
    pub async fn put_send_connector(
        &self,
        name: &str,
        changes: &SendConnectorChanges,
        if_match: Option<&IfMatch>,
    ) -> Result<(SendConnector, bool), AdminError> {
        let name = name.trim();
        retry_unless_asked!(if_match, self.put_send_connector_once(name, changes, if_match).await)
    }

    async fn put_send_connector_once(
        &self,
        name: &str,
        changes: &SendConnectorChanges,
        expected: Option<&IfMatch>,
    ) -> Result<(SendConnector, bool), AdminError> {
        let current = match self.store.send_connector(name).await {
            Ok(row) => Some(row),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let mut base = new_send_connector_base();
        let mut changes = changes.clone();
        changes.name = Some(current.as_ref().map_or(name, |r| r.name.as_str()).to_string());
        let parsed = current.as_ref().and_then(|r| r.to_domain().ok());
        if let Some(row) = &current {
            base.id = row.id;
        }
        if let Some(kept) = parsed.as_ref().filter(|c| c.credentials.is_some() || c.oauth2.is_some()) {
            (base.credentials, base.oauth2) = (kept.credentials.clone(), kept.oauth2.clone());
            base.tls_policy = TlsPolicy::Verify;
            (base.tls_ca_pem, base.tls_pin) = (kept.tls_ca_pem.clone(), kept.tls_pin);
        }
        let connector = changes.apply_required_keeping(&base, parsed.as_ref())?;
        let created = current.is_none();
        self.save_send_connector(connector, current.map(|r| (r, parsed)), expected).await.map(|c| (c, created))
    }

    /// Set-SendConnector (the API's PATCH).
    pub async fn set_send_connector(
        &self,
        name: &str,
        changes: &SendConnectorChanges,
        if_match: Option<&IfMatch>,
    ) -> Result<SendConnector, AdminError> {
        retry_unless_asked!(if_match, self.set_send_connector_once(name, changes, if_match).await)
    }

    async fn set_send_connector_once(
        &self,
        name: &str,
        changes: &SendConnectorChanges,
        expected: Option<&IfMatch>,
    ) -> Result<SendConnector, AdminError> {
        let row = self.store.send_connector(name.trim()).await?;
        let current = stored(&row)?;
        let connector = changes.apply(&current)?;
        self.save_send_connector(connector, Some((row, Some(current))), expected).await
    }

    /// Saves unless nothing changed, under the caller's precondition or the version read.
    async fn save_send_connector(
        &self,
        connector: SendConnector,
        current: Option<(SendConnectorRow, Option<SendConnector>)>,
        expected: Option<&IfMatch>,
    ) -> Result<SendConnector, AdminError> {
        let read = current.as_ref().map(|(row, _)| IfMatch::Tags(vec![entity_tag(row.id, row.version)]));
        match (&current, expected) {
            (None, Some(_)) => {
                return Err(AdminError::PreconditionFailed(format!(
                    "send connector {:?} does not exist (If-Match needs a current object)",
                    connector.name
                )));
            }
            (Some((row, parsed)), _) if parsed.as_ref() == Some(&connector) => {
                if expected.is_some_and(|p| !p.holds(Some(&entity_tag(row.id, row.version)))) {
                    return Err(StoreError::PreconditionFailed(format!("send connector {:?}", row.name)).into());
                }
                return Ok(connector);
            }
            _ => {}
        }
        self.store.save_send_connector(&connector, &self.actor, expected.or(read.as_ref())).await?;
        Ok(connector)
    }

    pub async fn remove_send_connector(&self, name: &str, if_match: Option<&IfMatch>) -> Result<(), AdminError> {
        Ok(self.store.remove_send_connector(name.trim(), &self.actor, if_match).await?)
    }
}

fn new_send_connector_base() -> SendConnector {
    SendConnector {
        id: Uuid::now_v7(),
        name: String::new(),
        enabled: true,
        address_spaces: Vec::new(),
        smart_hosts: Vec::new(),
        port: 25,
        tls_policy: TlsPolicy::Opportunistic,
        tls_ca_pem: None,
        tls_pin: None,
        credentials: None,
        oauth2: None,
        allow_private_destinations: false,
        ip_preference: IpPreference::Any,
    }
}

fn stored(row: &SendConnectorRow) -> Result<SendConnector, AdminError> {
    row.to_domain().map_err(|e| AdminError::Conflict(format!("stored send connector {:?} is invalid: {e}", row.name)))
}
