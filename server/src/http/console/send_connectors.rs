//! Send connectors in the console: where mail goes (a smart host, or DNS MX). The
//! smart-host password is write-only: never shown back, kept when left empty.

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::Console;
use super::{admin, form_errors, refused_status, unavailable};
use crate::admin::SendConnectorChanges;
use crate::domain::TlsPolicy;
use crate::http::AppState;
use crate::http::api::path_segment;
use crate::store::{SendConnectorRow, StoreError};

#[derive(Template, WebTemplate)]
#[template(path = "send_connectors.html")]
pub struct ListPage {
    console: Console,
    connectors: Vec<SendConnectorRow>,
}

pub async fn list(State(state): State<AppState>, console: Console) -> Response {
    match state.store.send_connectors().await {
        Ok(connectors) => ListPage { console, connectors }.into_response(),
        Err(_) => unavailable(),
    }
}

#[derive(Debug, Clone, Default)]
pub struct Values {
    name: String,
    enabled: bool,
    address_spaces: String,
    smart_hosts: String,
    port: String,
    tls_policy: String,
    username: String,
    has_password: bool,
}

impl Values {
    fn from_row(r: &SendConnectorRow) -> Self {
        Values {
            name: r.name.clone(),
            enabled: r.enabled,
            address_spaces: r.address_spaces.join("\n"),
            smart_hosts: r.smart_hosts.join("\n"),
            port: r.port.to_string(),
            tls_policy: r.tls_policy.clone(),
            username: r.username.clone().unwrap_or_default(),
            has_password: r.password.is_some(),
        }
    }
}

#[derive(Deserialize)]
pub struct Form {
    csrf: Option<String>,
    name: Option<String>,
    enabled: Option<String>,
    address_spaces: Option<String>,
    smart_hosts: Option<String>,
    port: Option<String>,
    tls_policy: Option<String>,
    username: Option<String>,
    password: Option<String>,
    remove_credentials: Option<String>,
}

impl Form {
    fn values(&self, has_password: bool) -> Values {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        Values {
            name: text(&self.name),
            enabled: self.enabled.is_some(),
            address_spaces: text(&self.address_spaces),
            smart_hosts: text(&self.smart_hosts),
            port: text(&self.port),
            tls_policy: text(&self.tls_policy),
            username: text(&self.username),
            has_password,
        }
    }

    fn changes(&self) -> Result<SendConnectorChanges, HashMap<String, String>> {
        let port = self
            .port
            .as_deref()
            .unwrap_or("25")
            .trim()
            .parse::<u16>()
            .map_err(|_| HashMap::from([("port".to_string(), "must be a port number (1 to 65535)".to_string())]))?;
        let username = self.username.clone().map(|u| u.trim().to_string()).filter(|u| !u.is_empty());
        let password = self.password.clone().filter(|p| !p.is_empty());
        let (username, password) = if self.remove_credentials.is_some() {
            (Some(None), None)
        } else {
            // An empty password keeps the stored one (it is never shown back).
            (username.map(Some), password.map(Some))
        };
        Ok(SendConnectorChanges {
            name: self.name.clone(),
            enabled: Some(self.enabled.is_some()),
            address_spaces: Some(vec![self.address_spaces.clone().unwrap_or_default()]),
            smart_hosts: Some(vec![self.smart_hosts.clone().unwrap_or_default()]),
            port: Some(port),
            tls_policy: self.tls_policy.clone(),
            username,
            password,
        })
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "send_connector.html")]
pub struct FormPage {
    console: Console,
    existing: Option<String>,
    values: Values,
    errors: HashMap<String, String>,
    problem: Option<String>,
    policies: Vec<&'static str>,
}

impl FormPage {
    fn error(&self, field: &str) -> String {
        self.errors.get(field).cloned().unwrap_or_default()
    }
}

fn page(console: Console, existing: Option<String>, values: Values) -> FormPage {
    FormPage {
        console,
        existing,
        values,
        errors: HashMap::new(),
        problem: None,
        policies: TlsPolicy::ALL.iter().map(|p| p.as_str()).collect(),
    }
}

pub async fn new_form(console: Console) -> FormPage {
    let values = Values {
        enabled: true,
        address_spaces: "*".into(),
        port: "25".into(),
        tls_policy: TlsPolicy::Opportunistic.as_str().into(),
        ..Default::default()
    };
    page(console, None, values)
}

pub async fn edit_form(State(state): State<AppState>, console: Console, Path(name): Path<String>) -> Response {
    match state.store.send_connector(&name).await {
        Ok(row) => page(console, Some(row.name.clone()), Values::from_row(&row)).into_response(),
        Err(StoreError::NotFound(_)) => {
            (StatusCode::NOT_FOUND, format!("no send connector named {name:?}")).into_response()
        }
        Err(_) => unavailable(),
    }
}

pub async fn create(State(state): State<AppState>, console: Console, axum::Form(form): axum::Form<Form>) -> Response {
    save(state, console, None, form).await
}

pub async fn update(
    State(state): State<AppState>,
    console: Console,
    Path(name): Path<String>,
    axum::Form(form): axum::Form<Form>,
) -> Response {
    save(state, console, Some(name), form).await
}

async fn save(state: AppState, console: Console, existing: Option<String>, form: Form) -> Response {
    if let Err(refused) = console.check_change(form.csrf.as_deref()) {
        return refused.into_response();
    }
    let mut form_page = page(console.clone(), existing.clone(), form.values(false));
    let changes = match form.changes() {
        Ok(changes) => changes,
        Err(errors) => {
            form_page.errors = errors;
            return (StatusCode::UNPROCESSABLE_ENTITY, form_page).into_response();
        }
    };
    let admin = admin(&state, &console);
    let saved = match &existing {
        Some(name) => admin.set_send_connector(name, &changes, None).await,
        None => admin.new_send_connector(&changes).await,
    };
    match saved {
        Ok(c) => Redirect::to(&format!("/send-connectors/{}", path_segment(&c.name))).into_response(),
        Err(e) => match form_errors(e) {
            Some((errors, problem)) => {
                let status = refused_status(&problem);
                (form_page.errors, form_page.problem) = (errors, problem);
                (status, form_page).into_response()
            }
            None => unavailable(),
        },
    }
}

pub async fn delete(
    State(state): State<AppState>,
    console: Console,
    Path(name): Path<String>,
    axum::Form(form): axum::Form<super::CsrfForm>,
) -> Response {
    let admin = admin(&state, &console);
    super::removed(&console, form.csrf.as_deref(), "/send-connectors", admin.remove_send_connector(&name, None)).await
}
