//! Accepted domains and service accounts (with their Send-As grants) in the console: the
//! seed's `New-AcceptedDomain`, `New-Mailbox svc-mailer` and `Add-RecipientPermission`,
//! in a browser. A generated password is shown once, on the page that made it.

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::error::FormRefusal;
use super::session::Console;
use super::{ConsoleChange, ConsoleError, ConsoleForm, FormPage, admin};
use crate::admin::{AdminError, ServiceAccountChanges};
use crate::http::AppState;
use crate::http::api::path_segment;
use crate::store::{AcceptedDomainRow, ServiceAccountRow};

#[derive(Template, WebTemplate)]
#[template(path = "accepted_domains.html")]
pub struct DomainsPage {
    console: Console,
    domains: Vec<AcceptedDomainRow>,
    domain: String,
    error: Option<String>,
}

/// The list with the add form (`domain` as typed), and why a change was refused if one was.
async fn domains_page(
    state: &AppState,
    console: Console,
    domain: String,
    refusal: Option<FormRefusal>,
) -> Result<Response, ConsoleError> {
    let domains = state.store.accepted_domains().await?;
    let status = refusal.as_ref().map_or(StatusCode::OK, |r| r.status);
    let error = refusal.map(|r| r.message());
    Ok((status, DomainsPage { console, domains, domain, error }).into_response())
}

pub async fn domains(State(state): State<AppState>, console: Console) -> Result<Response, ConsoleError> {
    domains_page(&state, console, String::new(), None).await
}

#[derive(Deserialize)]
pub struct DomainForm {
    domain: Option<String>,
    domain_type: Option<String>,
}

pub async fn add_domain(
    State(state): State<AppState>,
    ConsoleForm { console, form }: ConsoleForm<DomainForm>,
) -> Result<Response, ConsoleError> {
    let domain = form.domain.unwrap_or_default();
    match admin(&state, &console).new_accepted_domain(&domain, form.domain_type.as_deref()).await {
        Ok(_) => Ok(Redirect::to("/accepted-domains").into_response()),
        Err(e) => domains_page(&state, console, domain, Some(FormRefusal::of(e)?)).await,
    }
}

pub async fn remove_domain(
    State(state): State<AppState>,
    Path(domain): Path<String>,
    ConsoleChange { console, .. }: ConsoleChange,
) -> Result<Response, ConsoleError> {
    match admin(&state, &console).remove_accepted_domain(&domain, None).await {
        Ok(()) => Ok(Redirect::to("/accepted-domains").into_response()),
        Err(e) => domains_page(&state, console, domain, Some(FormRefusal::of(e)?)).await,
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "service_accounts.html")]
pub struct AccountsPage {
    console: Console,
    accounts: Vec<AccountLine>,
}

pub struct AccountLine {
    name: String,
    address: String,
    enabled: bool,
    last_used: String,
}

pub async fn accounts(State(state): State<AppState>, console: Console) -> Result<AccountsPage, ConsoleError> {
    let rows = state.store.service_accounts().await?;
    let accounts = rows
        .into_iter()
        .map(|r| AccountLine {
            last_used: r.last_used_at.map_or_else(|| "never".into(), |t| t.to_string()),
            name: r.name,
            address: r.address,
            enabled: r.enabled,
        })
        .collect();
    Ok(AccountsPage { console, accounts })
}

/// The account form's values, as typed.
#[derive(Debug, Clone, Default)]
pub struct AccountValues {
    name: String,
    address: String,
    enabled: bool,
    remote_ip_ranges: String,
    max_messages_per_minute: String,
    max_messages_per_day: String,
}

impl AccountValues {
    fn from_row(r: &ServiceAccountRow) -> Self {
        AccountValues {
            name: r.name.clone(),
            address: r.address.clone(),
            enabled: r.enabled,
            remote_ip_ranges: r
                .remote_ip_ranges
                .iter()
                .flatten()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
            max_messages_per_minute: r.max_messages_per_minute.unwrap_or(0).to_string(),
            max_messages_per_day: r.max_messages_per_day.unwrap_or(0).to_string(),
        }
    }
}

#[derive(Deserialize)]
pub struct AccountForm {
    name: Option<String>,
    address: Option<String>,
    enabled: Option<String>,
    remote_ip_ranges: Option<String>,
    max_messages_per_minute: Option<String>,
    max_messages_per_day: Option<String>,
    password: Option<String>,
}

impl AccountForm {
    fn values(&self) -> AccountValues {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        AccountValues {
            name: text(&self.name),
            address: text(&self.address),
            enabled: self.enabled.is_some(),
            remote_ip_ranges: text(&self.remote_ip_ranges),
            max_messages_per_minute: text(&self.max_messages_per_minute),
            max_messages_per_day: text(&self.max_messages_per_day),
        }
    }

    fn changes(&self) -> Result<ServiceAccountChanges, HashMap<String, String>> {
        let mut errors = HashMap::new();
        let mut limit = |field: &str, text: &Option<String>| -> Option<u32> {
            let text = text.as_deref().unwrap_or("0").trim();
            let text = if text.is_empty() { "0" } else { text };
            text.parse()
                .map_err(|_| errors.insert(field.to_string(), "must be a whole number (0 = unlimited)".into()))
                .ok()
        };
        let per_minute = limit("max_messages_per_minute", &self.max_messages_per_minute);
        let per_day = limit("max_messages_per_day", &self.max_messages_per_day);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(ServiceAccountChanges {
            name: self.name.clone(),
            address: self.address.clone(),
            password: self.password.clone().filter(|p| !p.is_empty()),
            enabled: Some(self.enabled.is_some()),
            remote_ip_ranges: Some(vec![self.remote_ip_ranges.clone().unwrap_or_default()]),
            max_messages_per_minute: per_minute,
            max_messages_per_day: per_day,
        })
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "service_account.html")]
pub struct AccountPage {
    console: Console,
    existing: Option<String>,
    values: AccountValues,
    grants: Vec<String>,
    errors: HashMap<String, String>,
    problem: Option<String>,
    /// A password Postern generated just now: shown this once.
    generated_password: Option<String>,
    last_used: String,
}

impl AccountPage {
    fn error(&self, field: &str) -> String {
        self.errors.get(field).cloned().unwrap_or_default()
    }
}

fn account_page(console: Console, existing: Option<String>, values: AccountValues) -> AccountPage {
    AccountPage {
        console,
        existing,
        values,
        grants: Vec::new(),
        errors: HashMap::new(),
        problem: None,
        generated_password: None,
        last_used: "never".into(),
    }
}

pub async fn new_account(console: Console) -> AccountPage {
    account_page(console, None, AccountValues { enabled: true, ..Default::default() })
}

impl FormPage for AccountPage {
    fn show_refusal(&mut self, fields: HashMap<String, String>, problem: Option<String>) {
        (self.errors, self.problem) = (fields, problem);
    }
}

/// The account's page, as stored (with `generated` shown once if given).
async fn stored_account(
    state: &AppState,
    console: Console,
    name: &str,
    generated: Option<String>,
) -> Result<AccountPage, ConsoleError> {
    let (row, grants) = state.store.service_account(name).await?;
    let mut page = account_page(console, Some(row.name.clone()), AccountValues::from_row(&row));
    page.grants = grants;
    page.generated_password = generated;
    page.last_used = row.last_used_at.map_or_else(|| "never".into(), |t| t.to_string());
    Ok(page)
}

/// The account's page again, saying why a change to it (`what`) was refused.
async fn account_refused(
    state: &AppState,
    console: Console,
    name: &str,
    what: &str,
    e: AdminError,
) -> Result<Response, ConsoleError> {
    let refusal = FormRefusal::of(e)?;
    let mut page = stored_account(state, console, name, None).await?;
    page.problem = Some(format!("{what} not changed: {}", refusal.message()));
    Ok((refusal.status, page).into_response())
}

pub async fn account(
    State(state): State<AppState>,
    console: Console,
    Path(name): Path<String>,
) -> Result<AccountPage, ConsoleError> {
    stored_account(&state, console, &name, None).await
}

pub async fn create_account(
    State(state): State<AppState>,
    ConsoleForm { console, form }: ConsoleForm<AccountForm>,
) -> Result<Response, ConsoleError> {
    let page = account_page(console.clone(), None, form.values());
    let changes = match form.changes() {
        Ok(changes) => changes,
        Err(errors) => return Ok(page.invalid(errors)),
    };
    match admin(&state, &console).new_service_account(&changes).await {
        // The generated password is shown on this response only (no redirect: it must not
        // survive in a URL or a later page).
        Ok((account, generated)) => {
            Ok(stored_account(&state, console, &account.name, generated).await?.into_response())
        }
        Err(e) => Ok(page.refused(e)),
    }
}

pub async fn update_account(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ConsoleForm { console, form }: ConsoleForm<AccountForm>,
) -> Response {
    let page = account_page(console.clone(), Some(name.clone()), form.values());
    let changes = match form.changes() {
        Ok(changes) => ServiceAccountChanges { password: None, ..changes },
        Err(errors) => return page.invalid(errors),
    };
    match admin(&state, &console).set_service_account(&name, &changes, None).await {
        Ok(account) => Redirect::to(&format!("/service-accounts/{}", path_segment(&account.name))).into_response(),
        Err(e) => page.refused(e),
    }
}

#[derive(Deserialize)]
pub struct PasswordForm {
    password: Option<String>,
}

/// Resets the password: the one typed, or a generated one shown once.
pub async fn reset_password(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ConsoleForm { console, form }: ConsoleForm<PasswordForm>,
) -> Result<Response, ConsoleError> {
    let password = form.password.filter(|p| !p.is_empty());
    match admin(&state, &console).rotate_service_account_password(&name, password, None).await {
        Ok((account, generated)) => {
            Ok(stored_account(&state, console, &account.name, generated).await?.into_response())
        }
        Err(e) => account_refused(&state, console, &name, "Password", e).await,
    }
}

pub async fn delete_account(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ConsoleChange { console, .. }: ConsoleChange,
) -> Result<Redirect, ConsoleError> {
    super::removed("/service-accounts", admin(&state, &console).remove_service_account(&name, None)).await
}

#[derive(Deserialize)]
pub struct GrantForm {
    sender: Option<String>,
}

/// Grants or withdraws Send-As (`remove` says which), then shows the account again.
async fn change_grant(
    state: AppState,
    name: String,
    ConsoleForm { console, form }: ConsoleForm<GrantForm>,
    remove: bool,
) -> Result<Response, ConsoleError> {
    let admin = admin(&state, &console);
    let sender = form.sender.unwrap_or_default();
    let result = if remove {
        admin.remove_send_as(&name, &sender).await
    } else {
        admin.add_send_as(&name, &sender).await.map(|_| ())
    };
    match result {
        Ok(()) => Ok(Redirect::to(&format!("/service-accounts/{}", path_segment(&name))).into_response()),
        Err(e) => account_refused(&state, console, &name, "Send-As", e).await,
    }
}

pub async fn add_grant(
    State(state): State<AppState>,
    Path(name): Path<String>,
    change: ConsoleForm<GrantForm>,
) -> Result<Response, ConsoleError> {
    change_grant(state, name, change, false).await
}

pub async fn remove_grant(
    State(state): State<AppState>,
    Path(name): Path<String>,
    change: ConsoleForm<GrantForm>,
) -> Result<Response, ConsoleError> {
    change_grant(state, name, change, true).await
}
