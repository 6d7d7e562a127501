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

use super::session::Console;
use super::{admin, form_errors, unavailable};
use crate::admin::{AdminError, ServiceAccountChanges};
use crate::http::AppState;
use crate::http::api::path_segment;
use crate::store::{AcceptedDomainRow, ServiceAccountRow, StoreError};

#[derive(Template, WebTemplate)]
#[template(path = "accepted_domains.html")]
pub struct DomainsPage {
    console: Console,
    domains: Vec<AcceptedDomainRow>,
    domain: String,
    error: Option<String>,
}

async fn domains_page(state: &AppState, console: Console, domain: String, error: Option<String>) -> Response {
    match state.store.accepted_domains().await {
        Ok(domains) => {
            let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
            (status, DomainsPage { console, domains, domain, error }).into_response()
        }
        Err(_) => unavailable(),
    }
}

pub async fn domains(State(state): State<AppState>, console: Console) -> Response {
    domains_page(&state, console, String::new(), None).await
}

#[derive(Deserialize)]
pub struct DomainForm {
    csrf: Option<String>,
    domain: Option<String>,
    domain_type: Option<String>,
}

pub async fn add_domain(
    State(state): State<AppState>,
    console: Console,
    axum::Form(form): axum::Form<DomainForm>,
) -> Response {
    if let Err(refused) = console.check_change(form.csrf.as_deref()) {
        return refused.into_response();
    }
    let domain = form.domain.unwrap_or_default();
    match admin(&state, &console).new_accepted_domain(&domain, form.domain_type.as_deref()).await {
        Ok(_) => Redirect::to("/accepted-domains").into_response(),
        Err(e) => match form_errors(e) {
            Some((fields, problem)) => {
                let message = problem.or_else(|| fields.into_values().next());
                domains_page(&state, console, domain, message).await
            }
            None => unavailable(),
        },
    }
}

pub async fn remove_domain(
    State(state): State<AppState>,
    console: Console,
    Path(domain): Path<String>,
    axum::Form(form): axum::Form<super::CsrfForm>,
) -> Response {
    if let Err(refused) = console.check_change(form.csrf.as_deref()) {
        return refused.into_response();
    }
    match admin(&state, &console).remove_accepted_domain(&domain, None).await {
        Ok(()) => Redirect::to("/accepted-domains").into_response(),
        Err(AdminError::NotFound(what)) => (StatusCode::NOT_FOUND, format!("{what} not found")).into_response(),
        Err(e) => match form_errors(e) {
            Some((_, problem)) => domains_page(&state, console, domain, problem).await,
            None => unavailable(),
        },
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

pub async fn accounts(State(state): State<AppState>, console: Console) -> Response {
    let Ok(rows) = state.store.service_accounts().await else { return unavailable() };
    let accounts = rows
        .into_iter()
        .map(|r| AccountLine {
            last_used: r.last_used_at.map_or_else(|| "never".into(), |t| t.to_string()),
            name: r.name,
            address: r.address,
            enabled: r.enabled,
        })
        .collect();
    AccountsPage { console, accounts }.into_response()
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
    csrf: Option<String>,
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

/// The account's page, as stored (with `generated` shown once if given).
async fn show_account(state: &AppState, console: Console, name: &str, generated: Option<String>) -> Response {
    match state.store.service_account(name).await {
        Ok((row, grants)) => {
            let mut page = account_page(console, Some(row.name.clone()), AccountValues::from_row(&row));
            page.grants = grants;
            page.generated_password = generated;
            page.last_used = row.last_used_at.map_or_else(|| "never".into(), |t| t.to_string());
            page.into_response()
        }
        Err(StoreError::NotFound(_)) => {
            (StatusCode::NOT_FOUND, format!("no service account named {name:?}")).into_response()
        }
        Err(_) => unavailable(),
    }
}

pub async fn account(State(state): State<AppState>, console: Console, Path(name): Path<String>) -> Response {
    show_account(&state, console, &name, None).await
}

pub async fn create_account(
    State(state): State<AppState>,
    console: Console,
    axum::Form(form): axum::Form<AccountForm>,
) -> Response {
    if let Err(refused) = console.check_change(form.csrf.as_deref()) {
        return refused.into_response();
    }
    let mut page = account_page(console.clone(), None, form.values());
    let changes = match form.changes() {
        Ok(changes) => changes,
        Err(errors) => {
            page.errors = errors;
            return (StatusCode::UNPROCESSABLE_ENTITY, page).into_response();
        }
    };
    match admin(&state, &console).new_service_account(&changes).await {
        // The generated password is shown on this response only (no redirect: it must not
        // survive in a URL or a later page).
        Ok((account, generated)) => show_account(&state, console, &account.name, generated).await,
        Err(e) => match form_errors(e) {
            Some((errors, problem)) => {
                (page.errors, page.problem) = (errors, problem);
                (StatusCode::UNPROCESSABLE_ENTITY, page).into_response()
            }
            None => unavailable(),
        },
    }
}

pub async fn update_account(
    State(state): State<AppState>,
    console: Console,
    Path(name): Path<String>,
    axum::Form(form): axum::Form<AccountForm>,
) -> Response {
    if let Err(refused) = console.check_change(form.csrf.as_deref()) {
        return refused.into_response();
    }
    let mut page = account_page(console.clone(), Some(name.clone()), form.values());
    let changes = match form.changes() {
        Ok(changes) => ServiceAccountChanges { password: None, ..changes },
        Err(errors) => {
            page.errors = errors;
            return (StatusCode::UNPROCESSABLE_ENTITY, page).into_response();
        }
    };
    match admin(&state, &console).set_service_account(&name, &changes, None).await {
        Ok(account) => Redirect::to(&format!("/service-accounts/{}", path_segment(&account.name))).into_response(),
        Err(e) => match form_errors(e) {
            Some((errors, problem)) => {
                (page.errors, page.problem) = (errors, problem);
                (StatusCode::UNPROCESSABLE_ENTITY, page).into_response()
            }
            None => unavailable(),
        },
    }
}

#[derive(Deserialize)]
pub struct PasswordForm {
    csrf: Option<String>,
    password: Option<String>,
}

/// Resets the password: the one typed, or a generated one shown once.
pub async fn reset_password(
    State(state): State<AppState>,
    console: Console,
    Path(name): Path<String>,
    axum::Form(form): axum::Form<PasswordForm>,
) -> Response {
    if let Err(refused) = console.check_change(form.csrf.as_deref()) {
        return refused.into_response();
    }
    let password = form.password.filter(|p| !p.is_empty());
    match admin(&state, &console).rotate_service_account_password(&name, password, None).await {
        Ok((account, generated)) => show_account(&state, console, &account.name, generated).await,
        Err(e) => match form_errors(e) {
            Some((errors, problem)) => {
                let message = problem.or_else(|| errors.into_values().next()).unwrap_or_default();
                (StatusCode::UNPROCESSABLE_ENTITY, message).into_response()
            }
            None => unavailable(),
        },
    }
}

pub async fn delete_account(
    State(state): State<AppState>,
    console: Console,
    Path(name): Path<String>,
    axum::Form(form): axum::Form<super::CsrfForm>,
) -> Response {
    let admin = admin(&state, &console);
    super::removed(&console, form.csrf.as_deref(), "/service-accounts", admin.remove_service_account(&name, None)).await
}

#[derive(Deserialize)]
pub struct GrantForm {
    csrf: Option<String>,
    sender: Option<String>,
}

/// Grants or withdraws Send-As (`remove` says which), then shows the account again.
async fn change_grant(state: AppState, console: Console, name: String, form: GrantForm, remove: bool) -> Response {
    if let Err(refused) = console.check_change(form.csrf.as_deref()) {
        return refused.into_response();
    }
    let admin = admin(&state, &console);
    let sender = form.sender.unwrap_or_default();
    let result = if remove {
        admin.remove_send_as(&name, &sender).await
    } else {
        admin.add_send_as(&name, &sender).await.map(|_| ())
    };
    match result {
        Ok(()) => Redirect::to(&format!("/service-accounts/{}", path_segment(&name))).into_response(),
        Err(e) => match form_errors(e) {
            Some((errors, problem)) => {
                let message = problem.or_else(|| errors.into_values().next()).unwrap_or_default();
                (StatusCode::UNPROCESSABLE_ENTITY, format!("Send-As not changed: {message}")).into_response()
            }
            None => unavailable(),
        },
    }
}

pub async fn add_grant(
    State(state): State<AppState>,
    console: Console,
    Path(name): Path<String>,
    axum::Form(form): axum::Form<GrantForm>,
) -> Response {
    change_grant(state, console, name, form, false).await
}

pub async fn remove_grant(
    State(state): State<AppState>,
    console: Console,
    Path(name): Path<String>,
    axum::Form(form): axum::Form<GrantForm>,
) -> Response {
    change_grant(state, console, name, form, true).await
}
