//! "Send test message": the seed's `Send-MailMessage` check from the console. Postern
//! connects to one of its own receive connectors as a client would, sends a message
//! built from the form, and shows the whole SMTP conversation and where it went.

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lettre::message::{Mailbox, Message, header::ContentType};
use serde::Deserialize;

use super::ConsoleForm;
use super::session::Console;
use crate::domain::Secret;
use crate::http::AppState;
use crate::probe::{self, Line, TestMessage};

/// The form, as typed (the password is never rendered back, nor shown by `Debug`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct TestForm {
    pub connector: String,
    pub server: String,
    pub starttls: Option<String>,
    pub account: String,
    pub password: Secret,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub body: String,
}

impl TestForm {
    pub fn uses_tls(&self) -> bool {
        self.starttls.is_some()
    }
}

pub struct TestResult {
    pub accepted: bool,
    pub queue_id: Option<String>,
    pub failure: Option<String>,
    pub transcript: Vec<Line>,
}

#[derive(Template, WebTemplate)]
#[template(path = "test_message.html")]
pub struct TestPage {
    console: Console,
    form: TestForm,
    /// Enabled receive connectors by name.
    connectors: Vec<String>,
    errors: HashMap<&'static str, String>,
    result: Option<TestResult>,
}

impl TestPage {
    fn error(&self, field: &str) -> String {
        self.errors.get(field).cloned().unwrap_or_default()
    }
}

fn page(state: &AppState, console: Console, form: TestForm) -> TestPage {
    let connectors =
        state.config.load().receive_connectors.iter().filter(|c| c.enabled).map(|c| c.name.clone()).collect();
    TestPage { console, form, connectors, errors: HashMap::new(), result: None }
}

#[derive(Debug, Default, Deserialize)]
pub struct Preselect {
    connector: Option<String>,
}

pub async fn form(State(state): State<AppState>, console: Console, Query(q): Query<Preselect>) -> TestPage {
    let form = TestForm {
        connector: q.connector.unwrap_or_default(),
        subject: "Postern test message".into(),
        body: "This is a test message sent from the Postern console.".into(),
        ..TestForm::default()
    };
    page(&state, console, form)
}

pub async fn send(State(state): State<AppState>, ConsoleForm { console, form }: ConsoleForm<TestForm>) -> Response {
    let mut page = page(&state, console, form);
    let message = match test_message(&state, &page.form) {
        Ok(message) => message,
        Err(errors) => {
            page.errors = errors;
            return (StatusCode::UNPROCESSABLE_ENTITY, page).into_response();
        }
    };
    let outcome = probe::send(message).await;
    page.result = Some(TestResult {
        accepted: outcome.accepted,
        queue_id: outcome.queue_id,
        failure: outcome.failure,
        transcript: outcome.transcript,
    });
    page.into_response()
}

/// The session to run, or the form's errors by field.
fn test_message(state: &AppState, form: &TestForm) -> Result<TestMessage, HashMap<&'static str, String>> {
    let mut errors = HashMap::new();
    let snapshot = state.config.load();
    let connector = snapshot.receive_connectors.iter().find(|c| c.enabled && c.name == form.connector);
    if connector.is_none() {
        errors.insert("connector", "choose an enabled receive connector".to_string());
    }
    let server = match form.server.trim() {
        "" => connector.and_then(|c| c.bindings.first()).map(|b| super::reachable(b.socket_addr())),
        text => match text.parse::<std::net::SocketAddr>() {
            // Only an address the chosen connector listens on: the test never becomes a
            // probe of other hosts (nor hands them the account's password).
            Ok(addr) if connector.is_some_and(|c| c.bindings.iter().any(|b| listens_on(b.socket_addr(), addr))) => {
                Some(addr)
            }
            Ok(_) => {
                errors.insert("server", format!("{text} is not an address this connector listens on"));
                None
            }
            Err(_) => {
                errors.insert("server", format!("{text:?} is not an IP:port address"));
                None
            }
        },
    };
    let from = form.from.trim().parse::<Mailbox>().map_err(|e| errors.insert("from", format!("not an address: {e}")));
    let to: Vec<_> = form.to.split([',', ';', '\n']).map(str::trim).filter(|t| !t.is_empty()).collect();
    let recipients: Vec<Mailbox> = to.iter().filter_map(|t| t.parse().ok()).collect();
    if to.is_empty() || recipients.len() != to.len() {
        errors.insert("to", "give one or more addresses, separated by commas".to_string());
    }
    if form.subject.chars().any(char::is_control) {
        errors.insert("subject", "must be one line".to_string());
    }
    if !form.account.trim().is_empty() && form.password.is_empty() {
        errors.insert("password", "give the service account's password".to_string());
    }
    let (Some(server), Ok(from), true) = (server, from, errors.is_empty()) else {
        return Err(errors);
    };
    let mut builder =
        Message::builder().from(from.clone()).subject(form.subject.trim()).header(ContentType::TEXT_PLAIN);
    for r in &recipients {
        builder = builder.to(r.clone());
    }
    let content =
        builder.body(form.body.replace("\r\n", "\n")).map_err(|e| HashMap::from([("body", e.to_string())]))?;
    Ok(TestMessage {
        server,
        helo: state.default_fqdn.clone(),
        starttls: form.uses_tls(),
        credentials: Some(form.account.trim().to_string())
            .filter(|a| !a.is_empty())
            .map(|a| (a, form.password.expose().to_string())),
        mail_from: from.email.to_string(),
        rcpt_to: recipients.iter().map(|r| r.email.to_string()).collect(),
        content: content.formatted(),
    })
}

/// Whether `addr` is where this binding listens on this node: the binding's own address,
/// or for a wildcard binding a loopback address (another host's address is never this
/// node's, whatever its port).
fn listens_on(binding: std::net::SocketAddr, addr: std::net::SocketAddr) -> bool {
    binding.port() == addr.port()
        && if binding.ip().is_unspecified() { addr.ip().is_loopback() } else { binding.ip() == addr.ip() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_never_shows_its_password() {
        let form: TestForm = serde_urlencoded::from_str("account=svc&password=hunter2&from=a%40b.example").unwrap();
        assert_eq!(form.password.expose(), "hunter2");
        assert!(!format!("{form:?}").contains("hunter2"));
    }
}
