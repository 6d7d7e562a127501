//! The what-if tester: which connector would serve this client, which rights apply, and
//! the exact reply to each command, computed by the engine's own session state machine
//! against the configuration this node runs, or against an edit of a receive connector
//! before it is saved (from the connector's form).

use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use serde::Deserialize;

use super::session::Console;
use crate::domain::ReceiveConnector;
use crate::http::AppState;
use crate::policy::Snapshot;
use crate::smtp::what_if::{Step, WhatIf};

/// The tester's question, as typed (form fields of the tester page and of the
/// connector form share these names).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct Question {
    #[serde(default)]
    pub server: String,
    #[serde(default)]
    pub client_ip: String,
    /// A ticked checkbox (present or absent).
    pub tls: Option<String>,
    #[serde(default)]
    pub account: String,
    #[serde(default)]
    pub mail_from: String,
    #[serde(default)]
    pub rcpt_to: String,
    #[serde(default)]
    pub header_from: String,
}

impl Question {
    /// Reads the question's fields from a posted form, ignoring the others.
    pub fn from_form(body: &[u8]) -> Self {
        serde_urlencoded::from_bytes(body).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.server.trim().is_empty() && self.client_ip.trim().is_empty()
    }

    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The question for the engine. Without a server address, `default_server` is used
    /// (the binding of the connector being edited).
    fn to_what_if(&self, default_server: Option<SocketAddr>) -> Result<WhatIf, String> {
        let server = match self.server.trim() {
            "" => default_server.ok_or("Give the server address as IP:port (a connector binding).")?,
            text => text.parse().map_err(|_| format!("{text:?} is not an IP:port server address."))?,
        };
        let client = self.client_ip.trim().parse().map_err(|_| "Give the client as an IP address.".to_string())?;
        let optional = |text: &str| Some(text.trim().to_string()).filter(|t| !t.is_empty());
        Ok(WhatIf {
            server,
            client,
            tls: self.uses_tls(),
            account: optional(&self.account),
            mail_from: optional(&self.mail_from),
            rcpt_to: self
                .rcpt_to
                .split([',', ' ', '\n'])
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(String::from)
                .collect(),
            header_from: optional(&self.header_from),
        })
    }

    /// The answer against `snapshot`, or why the question cannot be asked.
    pub fn answer(&self, snapshot: Arc<Snapshot>, default_server: Option<SocketAddr>) -> Result<Answer, String> {
        let outcome = self.to_what_if(default_server)?.evaluate(snapshot);
        Ok(Answer {
            connector: outcome.connector.unwrap_or_else(|| "none admits this client".into()),
            generation: outcome.config_generation,
            steps: outcome.steps,
        })
    }
}

pub struct Answer {
    pub connector: String,
    pub generation: i64,
    pub steps: Vec<Step>,
}

#[derive(Template, WebTemplate)]
#[template(path = "what_if.html")]
pub struct WhatIfPage {
    console: Console,
    question: Question,
    /// Why the question cannot be asked (an address that does not parse).
    what_if_error: Option<String>,
    answer: Option<Answer>,
}

pub async fn page(State(state): State<AppState>, console: Console, Query(question): Query<Question>) -> WhatIfPage {
    let mut page = WhatIfPage { console, question, what_if_error: None, answer: None };
    if !page.question.is_empty() {
        match page.question.answer(state.config.load_full(), None) {
            Ok(answer) => page.answer = Some(answer),
            Err(e) => page.what_if_error = Some(e),
        }
    }
    page
}

/// The what-if answer against the live configuration with `candidate` in place of the
/// connector it edits (or added, for a new one). Nothing is saved or generated.
pub fn against_edit(state: &AppState, question: &Question, candidate: ReceiveConnector) -> Result<Answer, String> {
    let tls = crate::tls::candidate_tls(&candidate).ok().map(Arc::new);
    let default_server = candidate.bindings.first().map(|b| super::reachable(b.socket_addr()));
    let snapshot = state.config.load().with_receive_connector(candidate, tls);
    question.answer(Arc::new(snapshot), default_server)
}
