//! Send connectors in the console: where mail goes (a smart host, or DNS MX). The
//! smart-host password is write-only: never shown back, kept when left empty.

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::FormPage as _;
use super::session::Console;
use super::{ConsoleChange, ConsoleError, ConsoleForm, admin};
use crate::admin::SendConnectorChanges;
use crate::domain::{IpPreference, TlsPolicy};
use crate::http::AppState;
use crate::http::api::path_segment;
use crate::store::SendConnectorRow;

#[derive(Template, WebTemplate)]
#[template(path = "send_connectors.html")]
pub struct ListPage {
    console: Console,
    connectors: Vec<SendConnectorRow>,
}

pub async fn list(State(state): State<AppState>, console: Console) -> Result<ListPage, ConsoleError> {
    Ok(ListPage { console, connectors: state.store.send_connectors().await? })
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
    /// `password`, `oauth2` or `none`.
    auth: String,
    oauth_token_url: String,
    oauth_client_id: String,
    oauth_scope: String,
    has_client_secret: bool,
    tls_ca_pem: String,
    /// The stored bundle's CAs, by subject and expiry.
    tls_ca: Vec<crate::delivery::tls::CaSummary>,
    tls_pin: String,
    allow_private_destinations: bool,
    ip_preference: String,
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
            auth: match (&r.oauth_token_url, &r.password) {
                (Some(_), _) => "oauth2",
                (None, Some(_)) => "password",
                _ => "none",
            }
            .into(),
            oauth_token_url: r.oauth_token_url.clone().unwrap_or_default(),
            oauth_client_id: r.oauth_client_id.clone().unwrap_or_default(),
            oauth_scope: r.oauth_scope.clone().unwrap_or_default(),
            has_client_secret: r.oauth_client_secret.is_some(),
            tls_ca_pem: r.tls_ca_pem.clone().unwrap_or_default(),
            tls_ca: r.ca_summaries(),
            tls_pin: r.tls_pin.clone().unwrap_or_default(),
            allow_private_destinations: r.allow_private_destinations,
            ip_preference: r.ip_preference.clone(),
        }
    }
}

#[derive(Deserialize)]
pub struct Form {
    name: Option<String>,
    enabled: Option<String>,
    address_spaces: Option<String>,
    smart_hosts: Option<String>,
    port: Option<String>,
    tls_policy: Option<String>,
    username: Option<String>,
    password: Option<String>,
    remove_credentials: Option<String>,
    auth: Option<String>,
    oauth_token_url: Option<String>,
    oauth_client_id: Option<String>,
    oauth_scope: Option<String>,
    oauth_client_secret: Option<String>,
    tls_ca_pem: Option<String>,
    tls_pin: Option<String>,
    allow_private_destinations: Option<String>,
    ip_preference: Option<String>,
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
            auth: self.auth.clone().unwrap_or_else(|| "password".into()),
            oauth_token_url: text(&self.oauth_token_url),
            oauth_client_id: text(&self.oauth_client_id),
            oauth_scope: text(&self.oauth_scope),
            has_client_secret: has_password,
            tls_ca_pem: text(&self.tls_ca_pem),
            tls_ca: Vec::new(),
            tls_pin: text(&self.tls_pin),
            allow_private_destinations: self.allow_private_destinations.is_some(),
            ip_preference: self.ip_preference.clone().unwrap_or_else(|| "any".into()),
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
        let auth = if self.remove_credentials.is_some() { Some("none".to_string()) } else { self.auth.clone() };
        let oauth = auth.as_deref() == Some("oauth2");
        let (username, password) = match auth.as_deref() {
            Some("none") => (None, None),
            // An empty password keeps the stored one (it is never shown back).
            _ if oauth => (username.map(Some), None),
            _ => (username.map(Some), password.map(Some)),
        };
        let filled = |v: &Option<String>| v.clone().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let oauth_field = |v: &Option<String>| if oauth { filled(v) } else { None };
        Ok(SendConnectorChanges {
            name: self.name.clone(),
            enabled: Some(self.enabled.is_some()),
            address_spaces: Some(vec![self.address_spaces.clone().unwrap_or_default()]),
            smart_hosts: Some(vec![self.smart_hosts.clone().unwrap_or_default()]),
            port: Some(port),
            tls_policy: self.tls_policy.clone(),
            username,
            password,
            // A form without credentials says nothing about them; the field decides.
            auth: auth.filter(|a| a != "password" || self.username.as_deref().is_some_and(|u| !u.trim().is_empty())),
            oauth_token_url: oauth_field(&self.oauth_token_url),
            oauth_client_id: oauth_field(&self.oauth_client_id),
            oauth_scope: oauth_field(&self.oauth_scope),
            oauth_client_secret: oauth_field(&self.oauth_client_secret),
            tls_ca_pem: Some(filled(&self.tls_ca_pem)),
            tls_pin: Some(filled(&self.tls_pin)),
            allow_private_destinations: Some(self.allow_private_destinations.is_some()),
            ip_preference: filled(&self.ip_preference),
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
    preferences: Vec<&'static str>,
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
        preferences: IpPreference::ALL.iter().map(|p| p.as_str()).collect(),
    }
}

pub async fn new_form(console: Console) -> FormPage {
    let values = Values {
        enabled: true,
        address_spaces: "*".into(),
        port: "25".into(),
        tls_policy: TlsPolicy::Opportunistic.as_str().into(),
        auth: "none".into(),
        ip_preference: "any".into(),
        ..Default::default()
    };
    page(console, None, values)
}

pub async fn edit_form(
    State(state): State<AppState>,
    console: Console,
    Path(name): Path<String>,
) -> Result<FormPage, ConsoleError> {
    let row = state.store.send_connector(&name).await?;
    Ok(page(console, Some(row.name.clone()), Values::from_row(&row)))
}

pub async fn create(State(state): State<AppState>, change: ConsoleForm<Form>) -> Response {
    save(state, change, None).await
}

pub async fn update(State(state): State<AppState>, Path(name): Path<String>, change: ConsoleForm<Form>) -> Response {
    save(state, change, Some(name)).await
}

impl super::FormPage for FormPage {
    fn show_refusal(&mut self, fields: HashMap<String, String>, problem: Option<String>) {
        (self.errors, self.problem) = (fields, problem);
    }
}

async fn save(state: AppState, ConsoleForm { console, form }: ConsoleForm<Form>, existing: Option<String>) -> Response {
    let form_page = page(console.clone(), existing.clone(), form.values(false));
    let changes = match form.changes() {
        Ok(changes) => changes,
        Err(errors) => return form_page.invalid(errors),
    };
    let admin = admin(&state, &console);
    let saved = match &existing {
        Some(name) => admin.set_send_connector(name, &changes, None).await,
        None => admin.new_send_connector(&changes).await,
    };
    match saved {
        Ok(c) => Redirect::to(&format!("/send-connectors/{}", path_segment(&c.name))).into_response(),
        Err(e) => form_page.refused(e),
    }
}

pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ConsoleChange { console, .. }: ConsoleChange,
) -> Result<Redirect, ConsoleError> {
    super::removed("/send-connectors", admin(&state, &console).remove_send_connector(&name, None)).await
}
