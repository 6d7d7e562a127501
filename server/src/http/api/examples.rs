//! One example per schema of the OpenAPI document that does not carry its own (request
//! bodies carry theirs beside their types). Generated clients show them in each model's
//! documentation, and Spectral checks each against its schema (`oas3-valid-schema-example`
//! in `tests/api/openapi-clients.sh`), so an example cannot drift from its type. The
//! objects are the seed's: cloudmonkeys.xyz, the two relay connectors, svc-mailer.

use serde_json::{Value, json};

/// The example of schema `name`, if it has one here.
pub(super) fn example(name: &str) -> Option<Value> {
    Some(match name {
        "AcceptedDomain" => json!({
            "id": "01936f2e-8a44-7c2b-9f1e-3a5d2c6b7e10", "domain": "cloudmonkeys.xyz",
            "domain_type": "authoritative", "version": 1
        }),
        "Administrator" => json!({
            "name": "admin", "role": "admin", "enabled": true, "federated": false,
            "must_change_password": false, "created_at": "2026-12-01T09:00:00Z",
            "last_sign_in_at": "2026-12-04T08:12:31Z"
        }),
        "AdministratorChanges" => json!({ "enabled": false }),
        "AdministratorInput" => json!({ "name": "helpdesk", "role": "viewer" }),
        "AdministratorPassword" => json!({ "password": "a-new-Passw0rd-for-admin" }),
        "ApiScope" => json!("write"),
        "ApiToken" => json!({
            "id": "01936f30-1b2c-7d3e-8f40-5a6b7c8d9e0f", "name": "ansible", "scope": "write",
            "created_at": "2026-12-01T09:05:00Z", "created_by": "01936f2f-ee01-7a00-8b00-0000000000a1", "expires_at": "2027-12-01T09:05:00Z",
            "last_used_at": "2026-12-04T07:58:00Z", "revoked_at": null
        }),
        "ApiTokenInput" => json!({ "name": "ansible", "scope": "write", "expires_in_days": 365 }),
        "AuditEntry" => json!({
            "id": 42, "at": "2026-12-04T08:15:02Z", "actor": "api:ansible", "action": "update",
            "object_type": "receive_connector", "object_name": "SMTP Relay Script",
            "before": { "remote_ip_ranges": ["192.168.1.13"] },
            "after": { "remote_ip_ranges": ["192.168.1.13", "192.168.1.14"] }
        }),
        "AuthMechanism" => json!("plain"),
        "AuthMechanismName" => json!("basic-auth-require-tls"),
        "CaSummary" => {
            json!({ "subject": "CN=Cloudmonkeys Root CA,O=Cloudmonkeys", "not_after": "2035-06-30T23:59:59Z" })
        }
        "DomainType" => json!("authoritative"),
        "FieldError" => json!({ "field": "remote_ip_ranges", "message": "\"192.168.1.0/16\" has host bits set" }),
        "IpPreference" => json!("any"),
        "ListenerStatus" => json!({ "binding": "0.0.0.0:2526", "local_addr": "0.0.0.0:2526", "error": null }),
        "Lockout" => json!({ "kind": "source", "key": "203.0.113.7", "failures": 10, "until": "2026-12-04T08:30:00Z" }),
        "NodeStatus" => json!({
            "node_id": "01936f31-0000-7000-8000-000000000001", "config_generation": 17,
            "config_loaded_at": "2026-12-04T08:15:02Z",
            "listeners": [{ "binding": "0.0.0.0:2526", "local_addr": "0.0.0.0:2526", "error": null }],
            "auth_lockouts": [], "open_sessions": 3, "queue_depth": 0,
            "last_minute": { "RECEIVE": 12, "SEND": 12 }
        }),
        "PasswordInput" => json!({ "password": "a-new-Passw0rd-for-svc" }),
        "PermissionGroup" => json!("anonymous"),
        "Problem" => json!({
            "type": "about:blank", "title": "Unprocessable Entity", "status": 422,
            "detail": "1 field is invalid",
            "errors": [{ "field": "remote_ip_ranges", "message": "\"192.168.1.0/16\" has host bits set" }]
        }),
        "ProtocolLine" => json!({
            "at": "2026-12-04T08:20:11.204Z", "session_id": "01936f40-2a3b-7c4d-8e5f-6a7b8c9d0e1f", "seq": 3,
            "connector": "SMTP Relay Script", "local_endpoint": "192.168.1.10:2526",
            "remote_endpoint": "192.168.1.13:50514", "event": "<", "data": "MAIL FROM:<test@cloudmonkeys.xyz>",
            "context": ""
        }),
        "ProtocolLogging" => json!("verbose"),
        "QueuedMessageSummary" => json!({
            "id": "01936f40-5b6c-7d8e-9f00-1a2b3c4d5e6f", "sender": "test@cloudmonkeys.xyz", "state": "deferred",
            "size": 10240, "received_at": "2026-12-04T08:20:11Z", "next_attempt_at": "2026-12-04T08:25:11Z",
            "attempts": 2, "recipients": ["user@cloudmonkeys.xyz"], "statuses": ["deferred"],
            "last_replies": ["451 4.4.1 smtp.example.net:587: connection refused"], "subject": "Scan from MFP-3"
        }),
        "ReceiveConnector" => json!({
            "id": "01936f2e-9b55-7d3c-8a2f-4b6e3d7c8f21", "name": "SMTP Relay Script", "enabled": true,
            "bindings": ["0.0.0.0:2526"], "remote_ip_ranges": ["192.168.1.13"], "permission_groups": ["anonymous"],
            "auth_mechanisms": [], "auth_requires_tls": false, "tls_mode": "starttls_offered",
            "has_tls_certificate": false, "accept_any_recipient": true, "max_message_size": 36700160,
            "max_recipients": 200, "max_connections": 5000, "max_connections_per_source": 20,
            "max_messages_per_minute_per_source": 600, "connection_timeout_secs": 600,
            "fqdn": "relay.cloudmonkeys.xyz", "protocol_logging": "none", "version": 3, "warnings": []
        }),
        "RemovedMessage" => json!({
            "id": "01936f40-5b6c-7d8e-9f00-1a2b3c4d5e6f", "dropped_recipients": ["user@cloudmonkeys.xyz"],
            "dsn_id": null
        }),
        "SendAsGrant" => json!({ "account": "svc-mailer", "sender": "smb1@cloudmonkeys.xyz" }),
        "SendConnector" => json!({
            "id": "01936f2f-0c66-7e4d-9b30-5c7f4e8d9a32", "name": "Exchange Online", "enabled": true,
            "address_spaces": ["*"], "smart_hosts": ["smtp.office365.com:587"], "port": 25, "tls_policy": "verify",
            "auth": "oauth2", "username": "relay@contoso.com",
            "oauth_token_url": "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
            "oauth_client_id": "6f1c2d3e-4a5b-6c7d-8e9f-0a1b2c3d4e5f",
            "oauth_scope": "https://outlook.office365.com/.default", "tls_ca": [], "tls_ca_pem": null,
            "tls_pin": null, "allow_private_destinations": false, "ip_preference": "any", "version": 2
        }),
        "ServiceAccount" => json!({
            "id": "01936f2f-1d77-7f5e-8c41-6d8a5f9e0b43", "name": "svc-mailer", "address": "svc-mailer@cloudmonkeys.xyz",
            "enabled": true, "remote_ip_ranges": ["192.168.1.0/24"], "send_as": ["smb1@cloudmonkeys.xyz"],
            "max_messages_per_minute": 60, "max_messages_per_day": null, "last_used_at": "2026-12-04T08:19:40Z",
            "version": 1
        }),
        "SessionsEnded" => json!({ "sessions_ended": 2 }),
        "Step" => json!({ "client": "RCPT TO:<user@gmail.example>", "reply": "250 2.1.5 Recipient OK" }),
        "TlsMode" => json!("starttls_required"),
        "TlsPolicy" => json!("verify"),
        "TrackingRecord" => json!({
            "id": 1047, "at": "2026-12-04T08:20:11.391Z", "event_id": "RECEIVE", "source": "SMTP",
            "connector": "SMTP Relay Script", "client_ip": "192.168.1.13", "client_hostname": "mfp-3",
            "server_ip": "192.168.1.10", "server_hostname": "relay.cloudmonkeys.xyz",
            "session_id": "01936f40-2a3b-7c4d-8e5f-6a7b8c9d0e1f", "queue_id": "01936f40-5b6c-7d8e-9f00-1a2b3c4d5e6f",
            "message_id": "<scan-20261204-0820@mfp-3>", "sender": "test@cloudmonkeys.xyz",
            "header_from": "test@cloudmonkeys.xyz", "recipients": ["user@cloudmonkeys.xyz"],
            "recipient_status": ["250 2.6.0 Queued mail for delivery"], "recipient_count": 1, "size": 10240,
            "subject": "Scan from MFP-3", "tls": null, "account": null, "auth_as": null, "auth_mechanism": null,
            "detail": null, "reference": null, "config_generation": 17
        }),
        "WhatIfOutcome" => json!({
            "config_generation": 17, "connector": "SMTP Relay Script",
            "steps": [
                { "client": "EHLO what-if", "reply": "250 relay.cloudmonkeys.xyz" },
                { "client": "MAIL FROM:<test@cloudmonkeys.xyz>", "reply": "250 2.1.0 Sender OK" },
                { "client": "RCPT TO:<user@gmail.example>", "reply": "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain" }
            ]
        }),
        _ => return None,
    })
}
