//! Receive connectors in the console: the list, and one form for new and existing ones
//! with every field; validation errors are shown next to their field and nothing is
//! saved; the service layer's open-relay guard rails apply as for the API and CLI.

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};

use super::session::Console;
use super::what_if::{self, Answer, Question};
use super::{ConsoleChange, ConsoleError, FormPage, admin};
use crate::admin::{ReceiveConnectorChanges, receive_connector_warnings};
use crate::domain::{PermissionGroup, TlsMode};
use crate::http::AppState;
use crate::store::ReceiveConnectorRow;

/// A connector's line in the list.
pub struct ConnectorLine {
    name: String,
    enabled: bool,
    bindings: String,
    remote_ip_ranges: String,
    rights: String,
    tls_mode: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "connectors.html")]
pub struct ConnectorsPage {
    console: Console,
    connectors: Vec<ConnectorLine>,
}

pub async fn list(State(state): State<AppState>, console: Console) -> Result<ConnectorsPage, ConsoleError> {
    let rows = state.store.receive_connectors().await?;
    let connectors = rows
        .into_iter()
        .map(|r| ConnectorLine {
            rights: rights(&r),
            bindings: r.bindings.join(", "),
            remote_ip_ranges: r.remote_ip_ranges.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
            tls_mode: r.tls_mode,
            enabled: r.enabled,
            name: r.name,
        })
        .collect();
    Ok(ConnectorsPage { console, connectors })
}

fn rights(r: &ReceiveConnectorRow) -> String {
    let mut rights = r.permission_groups.clone();
    if r.accept_any_recipient {
        rights.push("relay to any domain".into());
    }
    rights.join(", ")
}

/// The form's values, as text (what the admin typed comes back as typed).
#[derive(Debug, Clone, Default)]
pub struct FormValues {
    name: String,
    enabled: bool,
    bindings: String,
    remote_ip_ranges: String,
    anonymous: bool,
    authenticated: bool,
    plain: bool,
    login: bool,
    auth_requires_tls: bool,
    tls_mode: String,
    accept_any_recipient: bool,
    max_message_size: String,
    max_recipients: String,
    max_connections: String,
    max_connections_per_source: String,
    max_messages_per_minute_per_source: String,
    connection_timeout_secs: String,
    banner: String,
    fqdn: String,
    protocol_logging: String,
    /// A certificate chain pasted or uploaded (PEM); empty keeps the current one.
    tls_certificate_pem: String,
    /// Its private key: write-only, never rendered back into the page.
    tls_key_pem: String,
    /// Return to the certificate Postern generates for the FQDN.
    remove_certificate: bool,
    /// The stored connector has its own certificate (shown, not editable as text).
    has_certificate: bool,
    /// The connector's entity tag when the form was opened: saving fails (and says so)
    /// if someone else changed it meanwhile.
    etag: String,
}

impl FormValues {
    fn from_row(r: &ReceiveConnectorRow) -> Self {
        let has = |list: &[String], v: &str| list.iter().any(|x| x == v);
        FormValues {
            name: r.name.clone(),
            enabled: r.enabled,
            bindings: r.bindings.join("\n"),
            remote_ip_ranges: r.remote_ip_ranges.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"),
            anonymous: has(&r.permission_groups, "anonymous"),
            authenticated: has(&r.permission_groups, "authenticated"),
            plain: has(&r.auth_mechanisms, "plain"),
            login: has(&r.auth_mechanisms, "login"),
            auth_requires_tls: r.auth_requires_tls,
            tls_mode: r.tls_mode.clone(),
            accept_any_recipient: r.accept_any_recipient,
            max_message_size: r.max_message_size.to_string(),
            max_recipients: r.max_recipients.to_string(),
            max_connections: r.max_connections.to_string(),
            max_connections_per_source: r.max_connections_per_source.to_string(),
            max_messages_per_minute_per_source: r.max_messages_per_minute_per_source.to_string(),
            connection_timeout_secs: r.connection_timeout_secs.to_string(),
            banner: r.banner.clone().unwrap_or_default(),
            fqdn: r.fqdn.clone(),
            protocol_logging: r.protocol_logging.clone(),
            has_certificate: r.tls_certificate_pem.is_some(),
            etag: crate::store::entity_tag(r.id, r.version),
            ..Default::default()
        }
    }

    fn new_defaults(fqdn: &str) -> Self {
        FormValues {
            enabled: true,
            auth_requires_tls: true,
            tls_mode: TlsMode::None.as_str().into(),
            max_message_size: "36700160".into(),
            max_recipients: "200".into(),
            max_connections: "5000".into(),
            max_connections_per_source: "20".into(),
            max_messages_per_minute_per_source: "0".into(),
            connection_timeout_secs: "300".into(),
            fqdn: fqdn.into(),
            protocol_logging: "none".into(),
            ..Default::default()
        }
    }

    /// Reads the posted form (checkboxes are present when ticked).
    fn parse(body: &[u8]) -> Self {
        // The certificate textareas keep their line breaks; every other field is one
        // line or a list, and none may carry NUL (refused before this is called).
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
        let mut fields: HashMap<&str, &str> = HashMap::new();
        for (k, v) in &pairs {
            fields.insert(k.as_str(), v.as_str());
        }
        let text = |k: &str| fields.get(k).map(|v| v.to_string()).unwrap_or_default();
        let ticked = |k: &str| fields.contains_key(k);
        FormValues {
            name: text("name"),
            enabled: ticked("enabled"),
            bindings: text("bindings"),
            remote_ip_ranges: text("remote_ip_ranges"),
            anonymous: ticked("anonymous"),
            authenticated: ticked("authenticated"),
            plain: ticked("plain"),
            login: ticked("login"),
            auth_requires_tls: ticked("auth_requires_tls"),
            tls_mode: text("tls_mode"),
            accept_any_recipient: ticked("accept_any_recipient"),
            max_message_size: text("max_message_size"),
            max_recipients: text("max_recipients"),
            max_connections: text("max_connections"),
            max_connections_per_source: text("max_connections_per_source"),
            max_messages_per_minute_per_source: text("max_messages_per_minute_per_source"),
            connection_timeout_secs: text("connection_timeout_secs"),
            banner: text("banner"),
            fqdn: text("fqdn"),
            protocol_logging: text("protocol_logging"),
            tls_certificate_pem: text("tls_certificate_pem"),
            tls_key_pem: text("tls_key_pem"),
            remove_certificate: ticked("remove_certificate"),
            has_certificate: ticked("has_certificate"),
            etag: text("etag"),
        }
    }

    /// The changes the form asks for (every field: the form shows them all), with the
    /// numbers that do not even parse reported against their field.
    fn changes(&self) -> Result<ReceiveConnectorChanges, HashMap<String, String>> {
        let mut errors = HashMap::new();
        let mut number = |field: &str, text: &str| -> Option<u32> {
            match text.trim().parse::<u32>() {
                Ok(n) => Some(n),
                Err(_) => {
                    errors.insert(field.to_string(), "must be a whole number".to_string());
                    None
                }
            }
        };
        let max_recipients = number("max_recipients", &self.max_recipients);
        let max_connections = number("max_connections", &self.max_connections);
        let per_source = number("max_connections_per_source", &self.max_connections_per_source);
        let rate = number("max_messages_per_minute_per_source", &self.max_messages_per_minute_per_source);
        let timeout = number("connection_timeout_secs", &self.connection_timeout_secs);
        let size = self.max_message_size.trim().parse::<u64>().ok();
        if size.is_none() {
            errors.insert("max_message_size".into(), "must be a whole number of bytes".into());
        }
        let tls_certificate = self.certificate_change(&mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut groups = Vec::new();
        if self.anonymous {
            groups.push(PermissionGroup::Anonymous.as_str().to_string());
        }
        if self.authenticated {
            groups.push(PermissionGroup::Authenticated.as_str().to_string());
        }
        let mechanisms: Vec<String> = [("plain", self.plain), ("login", self.login)]
            .iter()
            .filter(|(_, on)| *on)
            .map(|(m, _)| m.to_string())
            .collect();
        Ok(ReceiveConnectorChanges {
            name: Some(self.name.clone()),
            enabled: Some(self.enabled),
            bindings: Some(vec![self.bindings.clone()]),
            remote_ip_ranges: Some(vec![self.remote_ip_ranges.clone()]),
            permission_groups: Some(groups),
            auth_mechanisms: Some(mechanisms),
            auth_requires_tls: Some(self.auth_requires_tls),
            tls_mode: Some(self.tls_mode.clone()),
            accept_any_recipient: Some(self.accept_any_recipient),
            max_message_size: size,
            max_recipients,
            max_connections,
            max_connections_per_source: per_source,
            max_messages_per_minute_per_source: rate,
            connection_timeout_secs: timeout,
            banner: Some(self.banner.clone()),
            fqdn: Some(self.fqdn.clone()),
            protocol_logging: Some(self.protocol_logging.clone()),
            tls_certificate,
            ..Default::default()
        })
    }

    /// A new certificate needs both its chain and its key; neither given keeps the
    /// current one (which the form cannot show back: the key is write-only).
    fn certificate_change(&self, errors: &mut HashMap<String, String>) -> Option<Option<(String, String)>> {
        // Browsers send a textarea's line breaks as CRLF; PEM is stored with LF.
        let (chain, key) = (self.tls_certificate_pem.replace("\r\n", "\n"), self.tls_key_pem.replace("\r\n", "\n"));
        let (chain, key) = (chain.trim(), key.trim());
        match (self.remove_certificate, chain.is_empty(), key.is_empty()) {
            (true, true, true) => Some(None),
            (true, _, _) => {
                errors
                    .insert("tls_certificate_pem".into(), "either upload a certificate or remove it, not both".into());
                None
            }
            (false, true, true) => None,
            (false, false, false) => Some(Some((chain.to_string(), key.to_string()))),
            (false, _, _) => {
                errors.insert(
                    "tls_certificate_pem".into(),
                    "give both the certificate chain and its private key (PEM)".into(),
                );
                None
            }
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "connector_form.html")]
pub struct ConnectorForm {
    console: Console,
    /// The connector's current name (None: a new one).
    existing: Option<String>,
    values: FormValues,
    errors: HashMap<String, String>,
    /// A problem that is not one field's (a duplicate name, an overlap).
    problem: Option<String>,
    warnings: Vec<String>,
    tls_modes: Vec<&'static str>,
    /// The what-if question asked against the unsaved edit, and its answer.
    question: Question,
    answer: Option<Answer>,
    what_if_error: Option<String>,
    question_defaults_to_binding: bool,
}

impl ConnectorForm {
    fn error(&self, field: &str) -> String {
        self.errors.get(field).cloned().unwrap_or_default()
    }
}

fn form(console: Console, existing: Option<String>, values: FormValues, warnings: Vec<String>) -> ConnectorForm {
    ConnectorForm {
        console,
        existing,
        values,
        errors: HashMap::new(),
        problem: None,
        warnings,
        tls_modes: TlsMode::ALL.iter().map(|m| m.as_str()).collect(),
        question: Question::default(),
        answer: None,
        what_if_error: None,
        question_defaults_to_binding: true,
    }
}

pub async fn new_form(State(state): State<AppState>, console: Console) -> ConnectorForm {
    form(console, None, FormValues::new_defaults(&state.default_fqdn), Vec::new())
}

pub async fn edit_form(
    State(state): State<AppState>,
    console: Console,
    Path(name): Path<String>,
) -> Result<ConnectorForm, ConsoleError> {
    let row = state.store.receive_connector(&name).await?;
    let warnings = row.to_domain().map(|c| receive_connector_warnings(&c)).unwrap_or_default();
    Ok(form(console, Some(row.name.clone()), FormValues::from_row(&row), warnings))
}

pub async fn create(State(state): State<AppState>, change: ConsoleChange) -> Response {
    save(state, change, None).await
}

pub async fn update(State(state): State<AppState>, Path(name): Path<String>, change: ConsoleChange) -> Response {
    save(state, change, Some(name)).await
}

impl FormPage for ConnectorForm {
    fn show_refusal(&mut self, fields: HashMap<String, String>, problem: Option<String>) {
        (self.errors, self.problem) = (fields, problem);
    }
}

/// Validates and saves; on error shows the form again with the values as typed.
async fn save(state: AppState, ConsoleChange { console, body }: ConsoleChange, existing: Option<String>) -> Response {
    let values = FormValues::parse(&body);
    let page = form(console.clone(), existing.clone(), values.clone(), Vec::new());
    let changes = match values.changes() {
        Ok(changes) => changes,
        Err(errors) => return page.invalid(errors),
    };
    let admin = admin(&state, &console);
    // A form for an existing connector always carries its tag; one that does not parse
    // matches nothing (the save is refused rather than applied unchecked).
    let if_match = (!values.etag.is_empty())
        .then(|| crate::store::IfMatch::parse(&values.etag).unwrap_or(crate::store::IfMatch::Tags(Vec::new())));
    let saved = match &existing {
        Some(name) => admin.set_receive_connector(name, &changes, if_match.as_ref()).await,
        None => admin.new_receive_connector(&changes).await,
    };
    match saved {
        Ok(connector) => {
            Redirect::to(&format!("/receive-connectors/{}", crate::http::api::path_segment(&connector.name)))
                .into_response()
        }
        Err(e) => page.refused(e),
    }
}

pub async fn try_new(State(state): State<AppState>, change: ConsoleChange) -> Response {
    try_edit(state, change, None).await
}

pub async fn try_existing(State(state): State<AppState>, Path(name): Path<String>, change: ConsoleChange) -> Response {
    try_edit(state, change, Some(name)).await
}

/// "Try these settings": the what-if question answered with the form's unsaved values in
/// place of the connector, checked as a save would check them. Nothing is saved; the
/// form comes back as typed, with the answer below it.
async fn try_edit(
    state: AppState,
    ConsoleChange { console, body }: ConsoleChange,
    existing: Option<String>,
) -> Response {
    let values = FormValues::parse(&body);
    let mut page = form(console.clone(), existing.clone(), values.clone(), Vec::new());
    page.question = Question::from_form(&body);
    let changes = match values.changes() {
        Ok(changes) => changes,
        Err(errors) => return page.invalid(errors),
    };
    match admin(&state, &console).preview_receive_connector(existing.as_deref(), &changes).await {
        Ok(candidate) => {
            page.warnings = receive_connector_warnings(&candidate);
            match what_if::against_edit(&state, &page.question, candidate) {
                Ok(answer) => page.answer = Some(answer),
                Err(e) => page.what_if_error = Some(e),
            }
            page.into_response()
        }
        Err(e) => page.refused(e),
    }
}

pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ConsoleChange { console, .. }: ConsoleChange,
) -> Result<Redirect, ConsoleError> {
    super::removed("/receive-connectors", admin(&state, &console).remove_receive_connector(&name, None)).await
}
