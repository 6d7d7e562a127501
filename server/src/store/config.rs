//! Configuration objects: receive connectors, accepted domains, send connectors, and
//! the consistent snapshot of all of them. Every write is audited in its transaction.

use ipnet::IpNet;
use serde::Serialize;
use sqlx::FromRow;
use uuid::Uuid;

use super::{IfMatch, Store, StoreError, audit, precondition};
use crate::domain::{
    AcceptedDomain, AddressSpace, Binding, ConnectorLimits, Domain, ReceiveConnector, SendConnector, SmartHost,
    SmartHostCredentials,
};

/// The whole configuration at one generation, as typed values.
#[derive(Debug, Clone, Default)]
pub struct Configuration {
    pub generation: i64,
    pub receive_connectors: Vec<ReceiveConnector>,
    pub accepted_domains: Vec<AcceptedDomain>,
    pub send_connectors: Vec<SendConnector>,
    pub service_accounts: Vec<crate::domain::ServiceAccount>,
}

/// A `receive_connectors` row as stored. `Debug` leaves out the TLS key.
#[derive(Clone, FromRow, Serialize)]
pub struct ReceiveConnectorRow {
    pub id: Uuid,
    pub name: String,
    pub enabled: bool,
    pub bindings: Vec<String>,
    pub remote_ip_ranges: Vec<IpNet>,
    pub permission_groups: Vec<String>,
    pub auth_mechanisms: Vec<String>,
    pub auth_requires_tls: bool,
    pub tls_mode: String,
    /// Serialized (audit log) as its SHA-256, so a certificate change shows as a change.
    #[serde(rename = "tls_certificate_sha256", serialize_with = "sha256_hex")]
    pub tls_certificate_pem: Option<String>,
    #[serde(skip)]
    pub tls_key_pem: Option<String>,
    pub accept_any_recipient: bool,
    pub max_message_size: i64,
    pub max_recipients: i32,
    pub max_connections: i32,
    pub max_connections_per_source: i32,
    pub max_messages_per_minute_per_source: i32,
    pub connection_timeout_secs: i32,
    pub banner: Option<String>,
    pub fqdn: String,
    pub protocol_logging: String,
    /// Grows with every change (the API's ETag).
    pub version: i64,
}

impl std::fmt::Debug for ReceiveConnectorRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiveConnectorRow").field("id", &self.id).field("name", &self.name).finish_non_exhaustive()
    }
}

impl ReceiveConnectorRow {
    fn from_domain(c: &ReceiveConnector) -> Self {
        let strings = |v: &[_]| v.iter().map(|x: &crate::domain::PermissionGroup| x.to_string()).collect();
        Self {
            id: c.id,
            name: c.name.clone(),
            enabled: c.enabled,
            bindings: c.bindings.iter().map(Binding::to_string).collect(),
            remote_ip_ranges: c.remote_ip_ranges.iter().map(|r| r.net()).collect(),
            permission_groups: strings(&c.permission_groups),
            auth_mechanisms: c.auth_mechanisms.iter().map(|m| m.to_string()).collect(),
            auth_requires_tls: c.auth_requires_tls,
            tls_mode: c.tls_mode.to_string(),
            tls_certificate_pem: c.tls_certificate_pem.clone(),
            tls_key_pem: c.tls_key_pem.as_ref().map(|k| k.0.clone()),
            accept_any_recipient: c.accept_any_recipient,
            max_message_size: c.limits.max_message_size as i64,
            max_recipients: c.limits.max_recipients as i32,
            max_connections: c.limits.max_connections as i32,
            max_connections_per_source: c.limits.max_connections_per_source as i32,
            max_messages_per_minute_per_source: c.limits.max_messages_per_minute_per_source as i32,
            connection_timeout_secs: c.limits.connection_timeout_secs as i32,
            banner: c.banner.clone(),
            fqdn: c.fqdn.clone(),
            protocol_logging: c.protocol_logging.to_string(),
            version: 0,
        }
    }

    /// Back to the typed value. Rows are written only by validated code, but an admin may
    /// edit SQL by hand: a row that no longer parses is reported, not trusted.
    pub fn to_domain(&self) -> Result<ReceiveConnector, String> {
        Ok(ReceiveConnector {
            id: self.id,
            name: self.name.clone(),
            enabled: self.enabled,
            bindings: self
                .bindings
                .iter()
                .map(|b| Binding::parse(b).map_err(|e| e.to_string()))
                .collect::<Result<_, _>>()?,
            remote_ip_ranges: self.remote_ip_ranges.iter().map(|n| (*n).into()).collect(),
            permission_groups: parse_all(&self.permission_groups)?,
            auth_mechanisms: parse_all(&self.auth_mechanisms)?,
            auth_requires_tls: self.auth_requires_tls,
            tls_mode: self.tls_mode.parse().map_err(|e| format!("{e}"))?,
            tls_certificate_pem: self.tls_certificate_pem.clone(),
            tls_key_pem: self.tls_key_pem.clone().map(crate::domain::PrivateKeyPem),
            accept_any_recipient: self.accept_any_recipient,
            limits: ConnectorLimits {
                max_message_size: self.max_message_size.max(0) as u64,
                max_recipients: self.max_recipients.max(1) as u32,
                max_connections: self.max_connections.max(1) as u32,
                max_connections_per_source: self.max_connections_per_source.max(1) as u32,
                max_messages_per_minute_per_source: self.max_messages_per_minute_per_source.max(0) as u32,
                connection_timeout_secs: self.connection_timeout_secs.max(1) as u32,
            },
            banner: self.banner.clone(),
            fqdn: self.fqdn.clone(),
            protocol_logging: self.protocol_logging.parse().map_err(|e| format!("{e}"))?,
        })
    }
}

fn sha256_hex<S: serde::Serializer>(value: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    let digest = value.as_ref().map(|v| {
        ring::digest::digest(&ring::digest::SHA256, v.as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    });
    digest.serialize(s)
}

/// A rule that a receive connector must satisfy against all the others, checked inside
/// the saving transaction (under a lock, so two concurrent saves cannot both pass it).
/// Returns why the connector conflicts, if it does.
pub type ConnectorConflict = fn(&ReceiveConnector, &[ReceiveConnector]) -> Option<String>;

fn parse_all<T: std::str::FromStr>(values: &[String]) -> Result<Vec<T>, String>
where
    T::Err: std::fmt::Display,
{
    values.iter().map(|s| s.parse().map_err(|e: T::Err| e.to_string())).collect()
}

#[derive(Debug, Clone, FromRow, Serialize)]
pub struct AcceptedDomainRow {
    pub id: Uuid,
    pub domain: String,
    pub domain_type: String,
    pub version: i64,
}

/// A `send_connectors` row. The password is never serialized (audit, API, console)
/// nor shown by `Debug`.
#[derive(Clone, FromRow, Serialize)]
pub struct SendConnectorRow {
    pub id: Uuid,
    pub name: String,
    pub enabled: bool,
    pub address_spaces: Vec<String>,
    pub smart_hosts: Vec<String>,
    pub port: i32,
    pub tls_policy: String,
    pub username: Option<String>,
    #[serde(skip)]
    pub password: Option<String>,
    pub tls_ca_pem: Option<String>,
    pub tls_pin: Option<String>,
    pub oauth_token_url: Option<String>,
    pub oauth_client_id: Option<String>,
    pub oauth_scope: Option<String>,
    #[serde(skip)]
    pub oauth_client_secret: Option<String>,
    pub allow_private_destinations: bool,
    pub ip_preference: String,
    pub version: i64,
}

impl std::fmt::Debug for SendConnectorRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendConnectorRow").field("id", &self.id).field("name", &self.name).finish_non_exhaustive()
    }
}

impl SendConnectorRow {
    fn from_domain(c: &SendConnector) -> Self {
        Self {
            id: c.id,
            name: c.name.clone(),
            enabled: c.enabled,
            address_spaces: c.address_spaces.iter().map(AddressSpace::to_string).collect(),
            smart_hosts: c.smart_hosts.iter().map(SmartHost::to_string).collect(),
            port: i32::from(c.port),
            tls_policy: c.tls_policy.to_string(),
            username: c
                .credentials
                .as_ref()
                .map(|c| c.username.clone())
                .or_else(|| c.oauth2.as_ref().map(|o| o.mailbox.clone())),
            password: c.credentials.as_ref().map(|c| c.password.clone()),
            tls_ca_pem: c.tls_ca_pem.clone(),
            tls_pin: c.tls_pin.as_ref().map(crate::delivery::tls::format_pin),
            oauth_token_url: c.oauth2.as_ref().map(|o| o.token_url.clone()),
            oauth_client_id: c.oauth2.as_ref().map(|o| o.client_id.clone()),
            oauth_scope: c.oauth2.as_ref().map(|o| o.scope.clone()),
            oauth_client_secret: c.oauth2.as_ref().map(|o| o.client_secret.expose().to_string()),
            allow_private_destinations: c.allow_private_destinations,
            ip_preference: c.ip_preference.to_string(),
            version: 0,
        }
    }

    /// The CAs of the connector's bundle, by subject and expiry.
    pub fn ca_summaries(&self) -> Vec<crate::delivery::tls::CaSummary> {
        self.tls_ca_pem
            .as_deref()
            .and_then(|pem| crate::delivery::tls::parse_ca_bundle(pem).ok())
            .map(|(_, s)| s)
            .unwrap_or_default()
    }

    /// Whether the connector signs in to its smart hosts (with a password or OAuth2).
    pub fn has_credentials(&self) -> bool {
        self.password.is_some() || self.oauth_client_secret.is_some()
    }

    pub fn to_domain(&self) -> Result<SendConnector, String> {
        Ok(SendConnector {
            id: self.id,
            name: self.name.clone(),
            enabled: self.enabled,
            address_spaces: self
                .address_spaces
                .iter()
                .map(|s| AddressSpace::parse(s).map_err(|e| e.to_string()))
                .collect::<Result<_, _>>()?,
            smart_hosts: self.smart_hosts.iter().map(|s| SmartHost::parse(s)).collect::<Result<_, _>>()?,
            port: u16::try_from(self.port).map_err(|e| e.to_string())?,
            tls_policy: self.tls_policy.parse().map_err(|e| format!("{e}"))?,
            tls_ca_pem: self.tls_ca_pem.clone(),
            tls_pin: self
                .tls_pin
                .as_deref()
                .map(crate::delivery::tls::parse_pin)
                .transpose()
                .map_err(|e| e.to_string())?,
            credentials: match (&self.username, &self.password) {
                (Some(u), Some(p)) => Some(SmartHostCredentials { username: u.clone(), password: p.clone() }),
                _ => None,
            },
            oauth2: match (&self.oauth_token_url, &self.oauth_client_id, &self.oauth_client_secret, &self.oauth_scope) {
                (Some(url), Some(id), Some(secret), Some(scope)) => Some(crate::domain::OAuth2Client {
                    mailbox: self.username.clone().unwrap_or_default(),
                    token_url: url.clone(),
                    client_id: id.clone(),
                    client_secret: crate::domain::Secret::new(secret.clone()),
                    scope: scope.clone(),
                }),
                _ => None,
            },
            allow_private_destinations: self.allow_private_destinations,
            ip_preference: self.ip_preference.parse().map_err(|e| format!("{e}"))?,
        })
    }
}

/// The columns of `receive_connectors`, as a macro so queries stay `&'static str`.
macro_rules! receive_connector_columns {
    () => {
        "id, name, enabled, bindings, remote_ip_ranges, permission_groups, \
    auth_mechanisms, auth_requires_tls, tls_mode, tls_certificate_pem, tls_key_pem, accept_any_recipient, \
    max_message_size, max_recipients, max_connections, max_connections_per_source, \
    max_messages_per_minute_per_source, connection_timeout_secs, banner, fqdn, protocol_logging, version"
    };
}

macro_rules! send_connector_columns {
    () => {
        "id, name, enabled, address_spaces, smart_hosts, port, tls_policy, username, password, tls_ca_pem, tls_pin, \
         oauth_token_url, oauth_client_id, oauth_scope, oauth_client_secret, allow_private_destinations, \
         ip_preference, version"
    };
}

fn to_json<T: Serialize>(value: &T) -> Option<serde_json::Value> {
    serde_json::to_value(value).ok()
}

impl Store {
    pub async fn receive_connectors(&self) -> Result<Vec<ReceiveConnectorRow>, StoreError> {
        let sql = concat!("select ", receive_connector_columns!(), " from receive_connectors order by lower(name)");
        Ok(sqlx::query_as::<_, ReceiveConnectorRow>(sql).fetch_all(&self.pool).await?)
    }

    pub async fn receive_connector(&self, name: &str) -> Result<ReceiveConnectorRow, StoreError> {
        let sql =
            concat!("select ", receive_connector_columns!(), " from receive_connectors where lower(name) = lower($1)");
        sqlx::query_as::<_, ReceiveConnectorRow>(sql)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("receive connector {name:?}")))
    }

    /// Inserts a new connector, or replaces the one with the same id, with an audit row.
    /// With `if_match`, the stored connector must still be at the version it names.
    pub async fn save_receive_connector(
        &self,
        connector: &ReceiveConnector,
        actor: &str,
        if_match: Option<&IfMatch>,
        conflict: ConnectorConflict,
    ) -> Result<(), StoreError> {
        let mut row = ReceiveConnectorRow::from_domain(connector);
        let mut tx = self.begin().await?;
        sqlx::query("select pg_advisory_xact_lock(hashtext('postern.receive_connectors'))").execute(&mut *tx).await?;
        let others_sql = concat!("select ", receive_connector_columns!(), " from receive_connectors where id <> $1");
        let others: Vec<ReceiveConnector> = sqlx::query_as::<_, ReceiveConnectorRow>(others_sql)
            .bind(row.id)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .filter_map(|r| r.to_domain().ok())
            .collect();
        if let Some(why) = conflict(connector, &others) {
            return Err(StoreError::Conflict(why));
        }
        let before_sql =
            concat!("select ", receive_connector_columns!(), " from receive_connectors where id = $1 for update");
        let before = sqlx::query_as::<_, ReceiveConnectorRow>(before_sql).bind(row.id).fetch_optional(&mut *tx).await?;
        precondition::check(if_match, before.as_ref().map(|b| (b.id, b.version)), || {
            format!("receive connector {:?}", row.name)
        })?;
        let version: i64 = sqlx::query_scalar(
            "insert into receive_connectors (id, name, enabled, bindings, remote_ip_ranges, permission_groups, \
             auth_mechanisms, auth_requires_tls, tls_mode, tls_certificate_pem, tls_key_pem, accept_any_recipient, \
             max_message_size, max_recipients, max_connections, max_connections_per_source, \
             max_messages_per_minute_per_source, connection_timeout_secs, banner, fqdn, protocol_logging) \
             values ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21) \
             on conflict (id) do update set name = excluded.name, enabled = excluded.enabled, \
             bindings = excluded.bindings, remote_ip_ranges = excluded.remote_ip_ranges, \
             permission_groups = excluded.permission_groups, auth_mechanisms = excluded.auth_mechanisms, \
             auth_requires_tls = excluded.auth_requires_tls, tls_mode = excluded.tls_mode, \
             tls_certificate_pem = excluded.tls_certificate_pem, tls_key_pem = excluded.tls_key_pem, \
             accept_any_recipient = excluded.accept_any_recipient, max_message_size = excluded.max_message_size, \
             max_recipients = excluded.max_recipients, max_connections = excluded.max_connections, \
             max_connections_per_source = excluded.max_connections_per_source, \
             max_messages_per_minute_per_source = excluded.max_messages_per_minute_per_source, \
             connection_timeout_secs = excluded.connection_timeout_secs, banner = excluded.banner, \
             fqdn = excluded.fqdn, protocol_logging = excluded.protocol_logging, updated_at = now(), \
             version = receive_connectors.version + 1 returning version",
        )
        .bind(row.id)
        .bind(&row.name)
        .bind(row.enabled)
        .bind(&row.bindings)
        .bind(&row.remote_ip_ranges)
        .bind(&row.permission_groups)
        .bind(&row.auth_mechanisms)
        .bind(row.auth_requires_tls)
        .bind(&row.tls_mode)
        .bind(&row.tls_certificate_pem)
        .bind(&row.tls_key_pem)
        .bind(row.accept_any_recipient)
        .bind(row.max_message_size)
        .bind(row.max_recipients)
        .bind(row.max_connections)
        .bind(row.max_connections_per_source)
        .bind(row.max_messages_per_minute_per_source)
        .bind(row.connection_timeout_secs)
        .bind(&row.banner)
        .bind(&row.fqdn)
        .bind(&row.protocol_logging)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            StoreError::conflict_on_unique(e, || format!("a receive connector named {:?} already exists", row.name))
        })?;
        row.version = version;
        let action = if before.is_some() { "update" } else { "create" };
        audit::record(
            &mut tx,
            actor,
            action,
            "receive_connector",
            &row.name,
            before.as_ref().and_then(to_json),
            to_json(&row),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn remove_receive_connector(
        &self,
        name: &str,
        actor: &str,
        if_match: Option<&IfMatch>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let sql = concat!(
            "delete from receive_connectors where lower(name) = lower($1) returning ",
            receive_connector_columns!()
        );
        let removed = sqlx::query_as::<_, ReceiveConnectorRow>(sql)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("receive connector {name:?}")))?;
        // Deleted first, checked after: a failed precondition rolls the delete back.
        precondition::check(if_match, Some((removed.id, removed.version)), || format!("receive connector {name:?}"))?;
        audit::record(&mut tx, actor, "remove", "receive_connector", &removed.name, to_json(&removed), None).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn accepted_domains(&self) -> Result<Vec<AcceptedDomainRow>, StoreError> {
        Ok(sqlx::query_as::<_, AcceptedDomainRow>(
            "select id, domain, domain_type, version from accepted_domains order by domain",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn add_accepted_domain(&self, domain: &AcceptedDomain, actor: &str) -> Result<(), StoreError> {
        let row = AcceptedDomainRow {
            id: domain.id,
            domain: domain.domain.to_string(),
            domain_type: domain.domain_type.to_string(),
            version: 1,
        };
        let mut tx = self.begin().await?;
        sqlx::query("insert into accepted_domains (id, domain, domain_type) values ($1, $2, $3)")
            .bind(row.id)
            .bind(&row.domain)
            .bind(&row.domain_type)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                StoreError::conflict_on_unique(e, || format!("{} is already an accepted domain", row.domain))
            })?;
        audit::record(&mut tx, actor, "create", "accepted_domain", &row.domain, None, to_json(&row)).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn accepted_domain(&self, domain: &Domain) -> Result<AcceptedDomainRow, StoreError> {
        sqlx::query_as::<_, AcceptedDomainRow>(
            "select id, domain, domain_type, version from accepted_domains where domain = $1",
        )
        .bind(domain.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("accepted domain {domain}")))
    }

    /// Changes an accepted domain's type.
    pub async fn update_accepted_domain(
        &self,
        domain: &AcceptedDomain,
        actor: &str,
        if_match: Option<&IfMatch>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let before = sqlx::query_as::<_, AcceptedDomainRow>(
            "select id, domain, domain_type, version from accepted_domains where domain = $1 for update",
        )
        .bind(domain.domain.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("accepted domain {}", domain.domain)))?;
        precondition::check(if_match, Some((before.id, before.version)), || {
            format!("accepted domain {}", domain.domain)
        })?;
        let after = sqlx::query_as::<_, AcceptedDomainRow>(
            "update accepted_domains set domain_type = $2, version = version + 1 where id = $1 \
             returning id, domain, domain_type, version",
        )
        .bind(before.id)
        .bind(domain.domain_type.as_str())
        .fetch_one(&mut *tx)
        .await?;
        audit::record(&mut tx, actor, "update", "accepted_domain", &after.domain, to_json(&before), to_json(&after))
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn remove_accepted_domain(
        &self,
        domain: &Domain,
        actor: &str,
        if_match: Option<&IfMatch>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let removed = sqlx::query_as::<_, AcceptedDomainRow>(
            "delete from accepted_domains where domain = $1 returning id, domain, domain_type, version",
        )
        .bind(domain.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("accepted domain {domain}")))?;
        precondition::check(if_match, Some((removed.id, removed.version)), || format!("accepted domain {domain}"))?;
        audit::record(&mut tx, actor, "remove", "accepted_domain", &removed.domain, to_json(&removed), None).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn send_connectors(&self) -> Result<Vec<SendConnectorRow>, StoreError> {
        let sql = concat!("select ", send_connector_columns!(), " from send_connectors order by lower(name)");
        Ok(sqlx::query_as::<_, SendConnectorRow>(sql).fetch_all(&self.pool).await?)
    }

    pub async fn send_connector(&self, name: &str) -> Result<SendConnectorRow, StoreError> {
        let sql = concat!("select ", send_connector_columns!(), " from send_connectors where lower(name) = lower($1)");
        sqlx::query_as::<_, SendConnectorRow>(sql)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("send connector {name:?}")))
    }

    pub async fn save_send_connector(
        &self,
        connector: &SendConnector,
        actor: &str,
        if_match: Option<&IfMatch>,
    ) -> Result<(), StoreError> {
        let mut row = SendConnectorRow::from_domain(connector);
        let mut tx = self.begin().await?;
        let before_sql =
            concat!("select ", send_connector_columns!(), " from send_connectors where id = $1 for update");
        let before = sqlx::query_as::<_, SendConnectorRow>(before_sql).bind(row.id).fetch_optional(&mut *tx).await?;
        precondition::check(if_match, before.as_ref().map(|b| (b.id, b.version)), || {
            format!("send connector {:?}", row.name)
        })?;
        row.version = sqlx::query_scalar(
            "insert into send_connectors (id, name, enabled, address_spaces, smart_hosts, port, tls_policy, username, \
             password, tls_ca_pem, tls_pin, oauth_token_url, oauth_client_id, oauth_scope, oauth_client_secret, \
             allow_private_destinations, ip_preference) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
             on conflict (id) do update set name = excluded.name, enabled = excluded.enabled, \
             address_spaces = excluded.address_spaces, smart_hosts = excluded.smart_hosts, port = excluded.port, \
             tls_policy = excluded.tls_policy, username = excluded.username, password = excluded.password, \
             tls_ca_pem = excluded.tls_ca_pem, tls_pin = excluded.tls_pin, oauth_token_url = excluded.oauth_token_url, \
             oauth_client_id = excluded.oauth_client_id, oauth_scope = excluded.oauth_scope, \
             oauth_client_secret = excluded.oauth_client_secret, \
             allow_private_destinations = excluded.allow_private_destinations, ip_preference = excluded.ip_preference, \
             updated_at = now(), version = send_connectors.version + 1 returning version",
        )
        .bind(row.id)
        .bind(&row.name)
        .bind(row.enabled)
        .bind(&row.address_spaces)
        .bind(&row.smart_hosts)
        .bind(row.port)
        .bind(&row.tls_policy)
        .bind(&row.username)
        .bind(&row.password)
        .bind(&row.tls_ca_pem)
        .bind(&row.tls_pin)
        .bind(&row.oauth_token_url)
        .bind(&row.oauth_client_id)
        .bind(&row.oauth_scope)
        .bind(&row.oauth_client_secret)
        .bind(row.allow_private_destinations)
        .bind(&row.ip_preference)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            StoreError::conflict_on_unique(e, || format!("a send connector named {:?} already exists", row.name))
        })?;
        let action = if before.is_some() { "update" } else { "create" };
        audit::record(
            &mut tx,
            actor,
            action,
            "send_connector",
            &row.name,
            before.as_ref().and_then(to_json),
            to_json(&row),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn remove_send_connector(
        &self,
        name: &str,
        actor: &str,
        if_match: Option<&IfMatch>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let sql =
            concat!("delete from send_connectors where lower(name) = lower($1) returning ", send_connector_columns!());
        let removed = sqlx::query_as::<_, SendConnectorRow>(sql)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("send connector {name:?}")))?;
        precondition::check(if_match, Some((removed.id, removed.version)), || format!("send connector {name:?}"))?;
        audit::record(&mut tx, actor, "remove", "send_connector", &removed.name, to_json(&removed), None).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Reads the whole configuration and its generation in one repeatable-read
    /// transaction, so what it returns is exactly the state at that generation.
    pub async fn load_configuration(&self) -> Result<Configuration, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("set transaction isolation level repeatable read, read only").execute(&mut *tx).await?;
        let generation: i64 = sqlx::query_scalar("select generation from config_state").fetch_one(&mut *tx).await?;
        let sql = concat!("select ", receive_connector_columns!(), " from receive_connectors order by lower(name)");
        let receive = sqlx::query_as::<_, ReceiveConnectorRow>(sql).fetch_all(&mut *tx).await?;
        let domains =
            sqlx::query_as::<_, AcceptedDomainRow>("select id, domain, domain_type, version from accepted_domains")
                .fetch_all(&mut *tx)
                .await?;
        let sql = concat!("select ", send_connector_columns!(), " from send_connectors order by lower(name)");
        let send = sqlx::query_as::<_, SendConnectorRow>(sql).fetch_all(&mut *tx).await?;
        let accounts = super::accounts::load_accounts(&mut tx).await?;
        tx.commit().await?;

        let mut snapshot = Configuration { generation, ..Configuration::default() };
        for row in receive {
            match row.to_domain() {
                Ok(c) => snapshot.receive_connectors.push(c),
                Err(e) => tracing::error!(connector = %row.name, error = %e, "receive connector ignored: invalid row"),
            }
        }
        for row in domains {
            match (Domain::parse(&row.domain, true), row.domain_type.parse()) {
                (Ok(domain), Ok(domain_type)) => {
                    snapshot.accepted_domains.push(AcceptedDomain { id: row.id, domain, domain_type })
                }
                _ => tracing::error!(domain = %row.domain, "accepted domain ignored: invalid row"),
            }
        }
        for row in send {
            match row.to_domain() {
                Ok(c) => snapshot.send_connectors.push(c),
                Err(e) => tracing::error!(connector = %row.name, error = %e, "send connector ignored: invalid row"),
            }
        }
        snapshot.service_accounts = accounts;
        Ok(snapshot)
    }
}
