//! The what-if tester: which connector would serve this client, which rights apply, and
//! the exact reply to each command, computed by the engine's own session state machine
//! against the configuration this node runs.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use serde::Deserialize;

use super::session::Console;
use crate::http::AppState;
use crate::smtp::what_if::{Step, WhatIf};

#[derive(Debug, Default, Deserialize)]
pub struct Question {
    server: Option<String>,
    client_ip: Option<String>,
    tls: Option<String>,
    account: Option<String>,
    mail_from: Option<String>,
    rcpt_to: Option<String>,
    header_from: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "what_if.html")]
pub struct WhatIfPage {
    console: Console,
    server: String,
    client_ip: String,
    tls: bool,
    account: String,
    mail_from: String,
    rcpt_to: String,
    header_from: String,
    /// Why the question cannot be asked (an address that does not parse).
    error: Option<String>,
    answer: Option<Answer>,
}

pub struct Answer {
    connector: String,
    generation: i64,
    steps: Vec<Step>,
}

fn text(value: &Option<String>) -> String {
    value.as_deref().unwrap_or_default().trim().to_string()
}

pub async fn page(State(state): State<AppState>, console: Console, Query(q): Query<Question>) -> WhatIfPage {
    let mut page = WhatIfPage {
        console,
        server: text(&q.server),
        client_ip: text(&q.client_ip),
        tls: q.tls.is_some(),
        account: text(&q.account),
        mail_from: text(&q.mail_from),
        rcpt_to: text(&q.rcpt_to),
        header_from: text(&q.header_from),
        error: None,
        answer: None,
    };
    if page.server.is_empty() && page.client_ip.is_empty() {
        return page;
    }
    let (Ok(server), Ok(client)) = (page.server.parse(), page.client_ip.parse()) else {
        page.error = Some("Give the server as IP:port (a connector binding) and the client as an IP address.".into());
        return page;
    };
    let question = WhatIf {
        server,
        client,
        tls: page.tls,
        account: Some(page.account.clone()).filter(|a| !a.is_empty()),
        mail_from: Some(page.mail_from.clone()).filter(|m| !m.is_empty()),
        rcpt_to: page
            .rcpt_to
            .split([',', ' ', '\n'])
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(String::from)
            .collect(),
        header_from: Some(page.header_from.clone()).filter(|h| !h.is_empty()),
    };
    let outcome = question.evaluate(state.config.load_full());
    page.answer = Some(Answer {
        connector: outcome.connector.unwrap_or_else(|| "none admits this client".into()),
        generation: outcome.config_generation,
        steps: outcome.steps,
    });
    page
}
