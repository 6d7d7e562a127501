//! The what-if tester: what would this client get? It runs the engine's own session
//! state machine against a configuration snapshot, without a socket: connector
//! selection, then EHLO, STARTTLS, AUTH (as if the password were right), MAIL, RCPT and
//! the end of DATA with the given `From:` header, and reports each reply line.

use std::net::SocketAddr;
use std::sync::Arc;

use uuid::Uuid;

use super::command::Command;
use super::data::Message;
use super::reply::{self, Reply};
use super::session::{Action, Session, SessionInfo, TlsInfo};
use crate::domain::AuthMechanism;
use crate::policy::Snapshot;

/// A hypothetical client and envelope.
#[derive(Debug, Clone)]
pub struct WhatIf {
    /// The address the client connects to (a receive connector binding).
    pub server: SocketAddr,
    pub client: std::net::IpAddr,
    /// The client uses STARTTLS (or implicit TLS) where it is available.
    pub tls: bool,
    /// The service account the client signs in as (its password assumed right).
    pub account: Option<String>,
    /// `None` is the null sender `<>`.
    pub mail_from: Option<String>,
    pub rcpt_to: Vec<String>,
    /// The message's `From:` header, for the Send-As header check.
    pub header_from: Option<String>,
}

/// One step of the simulated session: what the client sent and what it would get.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Step {
    pub client: String,
    pub reply: String,
}

/// What a client would get: the connector chosen, its rights, and each reply.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct WhatIfOutcome {
    /// The receive connector that would serve the client, if any.
    pub connector: Option<String>,
    pub config_generation: i64,
    pub steps: Vec<Step>,
}

impl WhatIf {
    pub fn evaluate(&self, snapshot: Arc<Snapshot>) -> WhatIfOutcome {
        let generation = snapshot.generation;
        let Some(connector) = snapshot.select_connector(self.server, self.client) else {
            // As the engine answers: with the FQDN of a connector on that address.
            let on_address =
                snapshot.receive_connectors.iter().find(|c| c.bindings.iter().any(|b| b.accepts(self.server)));
            let fqdn = on_address.map_or("postern", |c| c.fqdn.as_str());
            let refused = reply::access_denied(fqdn).summary();
            return WhatIfOutcome {
                connector: None,
                config_generation: generation,
                steps: vec![Step { client: "(connect)".into(), reply: refused }],
            };
        };
        let info = SessionInfo {
            id: Uuid::nil(),
            peer: SocketAddr::new(self.client, 40_000),
            local: self.server,
            snapshot: Arc::clone(&snapshot),
            connector: Arc::clone(&connector),
            max_hops: super::session::DEFAULT_MAX_HOPS,
        };
        let mut session = Session::new(info);
        let mut steps = vec![Step { client: "(connect)".into(), reply: session.greeting().summary() }];
        let tls_info = || TlsInfo { version: "TLS1.3".into(), cipher: "(what-if)".into() };
        if connector.tls_mode == crate::domain::TlsMode::Implicit {
            session.tls_established(tls_info());
        }
        run(&mut session, &mut steps, "EHLO what-if.test".into());
        if self.tls && session.tls().is_none() && run(&mut session, &mut steps, "STARTTLS".into()) == Action::StartTls {
            session.tls_established(tls_info());
            run(&mut session, &mut steps, "EHLO what-if.test".into());
        }
        if let Some(login) = &self.account
            && let Action::Authenticate { mechanism, .. } = run(&mut session, &mut steps, "AUTH PLAIN".into())
        {
            let outcome = snapshot.account(login).filter(|a| a.enabled && a.admits(self.client));
            let result = outcome.ok_or(crate::auth::AuthFailure::UnknownAccount);
            let action = session.authenticated(mechanism, login, result);
            steps.push(Step { client: format!("(credentials of {login})"), reply: describe(&action) });
        }
        let sender = self.mail_from.clone().unwrap_or_default();
        if !matches!(run(&mut session, &mut steps, format!("MAIL FROM:<{sender}>")), Action::Reply(ref r) if r.is_positive())
        {
            return WhatIfOutcome { connector: Some(connector.name.clone()), config_generation: generation, steps };
        }
        let mut accepted = 0;
        for rcpt in &self.rcpt_to {
            if matches!(run(&mut session, &mut steps, format!("RCPT TO:<{rcpt}>")), Action::Reply(ref r) if r.is_positive())
            {
                accepted += 1;
            }
        }
        if accepted > 0 && matches!(run(&mut session, &mut steps, "DATA".into()), Action::ReceiveData { .. }) {
            let from = self.header_from.clone().unwrap_or_else(|| sender.clone());
            let body = format!("From: {from}\r\nSubject: what-if\r\n\r\n(what-if)\r\n").into_bytes();
            let reply = match session.data_received(Ok(Message { body, eight_bit: false, spooled: None })) {
                Ok(_) => "250 2.6.0 (would be queued for delivery)".to_string(),
                Err(refused) => refused.summary(),
            };
            steps.push(Step { client: format!("(message with From: {from})"), reply });
        }
        WhatIfOutcome { connector: Some(connector.name.clone()), config_generation: generation, steps }
    }
}

/// Feeds one command line to the session and records the reply.
fn run(session: &mut Session, steps: &mut Vec<Step>, line: String) -> Action {
    let action = session.handle(Command::parse(line.as_bytes()));
    steps.push(Step { client: line, reply: describe(&action) });
    action
}

fn describe(action: &Action) -> String {
    match action {
        Action::Reply(r) | Action::Close(r) => first_and_last(r),
        Action::StartTls => Reply::from(reply::READY_FOR_TLS).summary(),
        Action::Authenticate { mechanism, .. } => format!("334 (AUTH {} exchange)", mechanism_name(*mechanism)),
        Action::ReceiveData { .. } => Reply::from(reply::START_DATA).summary(),
    }
}

fn mechanism_name(m: AuthMechanism) -> String {
    m.as_str().to_ascii_uppercase()
}

/// A multi-line reply (EHLO) as its lines joined, so the offered extensions show.
fn first_and_last(r: &Reply) -> String {
    if r.lines.len() > 1 { format!("{} {}", r.code, r.lines.join(" | ")) } else { r.summary() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AcceptedDomain, Domain, DomainType, PermissionGroup, TlsMode};
    use crate::policy::tests::connector;

    fn snapshot() -> Arc<Snapshot> {
        let anonymous = connector("SMTP Relay Script", "0.0.0.0:2526", &["192.168.1.13"]);
        let mut auth = connector("SMTP Auth Relay Script", "0.0.0.0:587", &["192.168.1.13"]);
        auth.permission_groups = vec![PermissionGroup::Authenticated];
        auth.auth_mechanisms = vec![AuthMechanism::Login, AuthMechanism::Plain];
        auth.tls_mode = TlsMode::StarttlsRequired;
        let (cert, key) = crate::tls::generate_self_signed("relay.example").unwrap();
        let tls =
            crate::tls::ConnectorTls { config: crate::tls::server_config(&cert, &key).unwrap(), self_signed: true };
        let account = crate::domain::accounts::tests::account(&["smb1@cloudmonkeys.xyz"]);
        Arc::new(Snapshot {
            tls: [(auth.id, Arc::new(tls))].into(),
            receive_connectors: vec![Arc::new(anonymous), Arc::new(auth)],
            service_accounts: vec![Arc::new(account)],
            accepted_domains: vec![AcceptedDomain {
                id: Uuid::new_v4(),
                domain: Domain::parse("cloudmonkeys.xyz", false).unwrap(),
                domain_type: DomainType::Authoritative,
            }],
            ..Snapshot::default()
        })
    }

    fn ask(port: u16, client: &str, tls: bool, account: Option<&str>, from: &str, header: &str) -> WhatIfOutcome {
        WhatIf {
            server: SocketAddr::from(([10, 0, 0, 5], port)),
            client: client.parse().unwrap(),
            tls,
            account: account.map(str::to_string),
            mail_from: Some(from.into()),
            rcpt_to: vec!["someone@gmail.example".into()],
            header_from: Some(header.into()),
        }
        .evaluate(snapshot())
    }

    fn last(outcome: &WhatIfOutcome) -> &str {
        &outcome.steps.last().unwrap().reply
    }

    #[test]
    fn the_seeds_validation_as_what_if_answers() {
        let unlisted = ask(2526, "192.168.1.99", false, None, "test@cloudmonkeys.xyz", "test@cloudmonkeys.xyz");
        assert_eq!(unlisted.connector, None);
        assert!(last(&unlisted).starts_with("554 5.7.1"));
        let anonymous = ask(2526, "192.168.1.13", false, None, "test@cloudmonkeys.xyz", "test@cloudmonkeys.xyz");
        assert_eq!(anonymous.connector.as_deref(), Some("SMTP Relay Script"));
        assert!(last(&anonymous).starts_with("550 5.7.54"), "{anonymous:?}");
        let no_credentials = ask(587, "192.168.1.13", true, None, "smb1@cloudmonkeys.xyz", "smb1@cloudmonkeys.xyz");
        assert!(last(&no_credentials).starts_with("530 5.7.57"), "{no_credentials:?}");
        let no_tls = ask(587, "192.168.1.13", false, Some("svc-mailer"), "smb1@cloudmonkeys.xyz", "x@y.example");
        assert!(no_tls.steps.iter().any(|s| s.reply.starts_with("538 5.7.11")), "{no_tls:?}");
        let send_as =
            ask(587, "192.168.1.13", true, Some("svc-mailer"), "smb1@cloudmonkeys.xyz", "smb1@cloudmonkeys.xyz");
        assert!(last(&send_as).starts_with("250 2.6.0"), "{send_as:?}");
        let forged =
            ask(587, "192.168.1.13", true, Some("svc-mailer"), "smb1@cloudmonkeys.xyz", "ceo@cloudmonkeys.xyz");
        assert!(last(&forged).starts_with("550 5.7.60"), "{forged:?}");
        let unknown = ask(587, "192.168.1.13", true, Some("nobody"), "smb1@cloudmonkeys.xyz", "smb1@cloudmonkeys.xyz");
        assert!(unknown.steps.iter().any(|s| s.reply.starts_with("535 5.7.8")), "{unknown:?}");
    }
}
