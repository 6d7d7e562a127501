//! The console's administrators (`/administrators`): everyone may see the list; admins
//! create administrators, change their role or whether they may sign in, set a new
//! password (shown once, to be replaced at the next sign-in), sign them out everywhere,
//! and remove them. Each change goes through the same service layer as the CLI and API.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::Console;
use super::{admin, form_errors, unavailable};
use crate::admin::{AdminError, AdminUserChanges};
use crate::http::AppState;
use crate::store::AdminUserRow;

#[derive(Template, WebTemplate)]
#[template(path = "administrators.html")]
pub struct AdministratorsPage {
    console: Console,
    administrators: Vec<Line>,
    /// What the last action did (a generated password is shown here once).
    notice: Option<String>,
    generated_password: Option<String>,
    error: Option<String>,
}

/// One administrator as the list shows them.
pub struct Line {
    name: String,
    role: String,
    enabled: bool,
    federated: bool,
    must_change_password: bool,
    last_sign_in: String,
}

impl Line {
    fn new(row: AdminUserRow) -> Self {
        Self {
            last_sign_in: row.last_sign_in_at.map_or_else(|| "never".into(), |t| t.to_string()),
            name: row.name,
            role: row.role,
            enabled: row.enabled,
            federated: row.federated,
            must_change_password: row.must_change_password,
        }
    }
}

async fn page(state: &AppState, console: Console) -> Result<AdministratorsPage, Response> {
    let rows = state.store.admin_users().await.map_err(|_| unavailable())?;
    Ok(AdministratorsPage {
        console,
        administrators: rows.into_iter().map(Line::new).collect(),
        notice: None,
        generated_password: None,
        error: None,
    })
}

/// The list page with what an action did (or why it was refused), with its status.
async fn answer(state: &AppState, console: Console, outcome: Result<Outcome, AdminError>) -> Response {
    let mut shown = match page(state, console).await {
        Ok(shown) => shown,
        Err(response) => return response,
    };
    match outcome {
        Ok(Outcome { notice, password }) => {
            (shown.notice, shown.generated_password) = (Some(notice), password);
            shown.into_response()
        }
        Err(e) => {
            let status = match &e {
                AdminError::NotFound(_) => StatusCode::NOT_FOUND,
                AdminError::Conflict(_) => StatusCode::CONFLICT,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            let Some((errors, problem)) = form_errors(e) else { return unavailable() };
            let fields = errors.into_iter().map(|(field, message)| format!("{field}: {message}"));
            shown.error = Some(problem.into_iter().chain(fields).collect::<Vec<_>>().join("; "));
            (status, shown).into_response()
        }
    }
}

struct Outcome {
    notice: String,
    password: Option<String>,
}

fn done(notice: String) -> Outcome {
    Outcome { notice, password: None }
}

pub async fn list(State(state): State<AppState>, console: Console) -> Response {
    match page(&state, console).await {
        Ok(shown) => shown.into_response(),
        Err(response) => response,
    }
}

#[derive(Deserialize)]
pub struct NewForm {
    name: String,
    role: String,
    csrf: Option<String>,
}

/// A new administrator with a generated password, shown once; they replace it at their
/// first sign-in.
pub async fn create(
    State(state): State<AppState>,
    console: Console,
    axum::Form(form): axum::Form<NewForm>,
) -> Response {
    if let Err(refused) = console.check_change(form.csrf.as_deref()) {
        return refused.into_response();
    }
    let outcome = admin(&state, &console).new_admin_user(&form.name, &form.role, None).await.map(|password| Outcome {
        notice: format!(
            "Administrator {:?} created. Give them this password; they must replace it at their first sign-in:",
            form.name.trim()
        ),
        password,
    });
    answer(&state, console, outcome).await
}

#[derive(Deserialize)]
pub struct ChangeForm {
    role: String,
    enabled: Option<String>,
    csrf: Option<String>,
}

pub async fn update(
    State(state): State<AppState>,
    console: Console,
    Path(name): Path<String>,
    axum::Form(form): axum::Form<ChangeForm>,
) -> Response {
    if let Err(refused) = console.check_change(form.csrf.as_deref()) {
        return refused.into_response();
    }
    let changes = AdminUserChanges { role: Some(form.role), enabled: Some(form.enabled.is_some()) };
    let outcome =
        admin(&state, &console).set_admin_user(&name, &changes).await.map(|()| done(format!("{name:?} saved.")));
    answer(&state, console, outcome).await
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    csrf: Option<String>,
}

pub async fn reset_password(
    State(state): State<AppState>,
    console: Console,
    Path(name): Path<String>,
    axum::Form(form): axum::Form<CsrfOnly>,
) -> Response {
    if let Err(refused) = console.check_change(form.csrf.as_deref()) {
        return refused.into_response();
    }
    let outcome = admin(&state, &console).reset_admin_password(&name, None).await.map(|password| Outcome {
        notice: format!(
            "New password for {name:?}; they must replace it at their next sign-in, and their sessions ended:"
        ),
        password,
    });
    answer(&state, console, outcome).await
}

pub async fn end_sessions(
    State(state): State<AppState>,
    console: Console,
    Path(name): Path<String>,
    axum::Form(form): axum::Form<CsrfOnly>,
) -> Response {
    if let Err(refused) = console.check_change(form.csrf.as_deref()) {
        return refused.into_response();
    }
    let outcome = admin(&state, &console)
        .end_admin_sessions(&name, None)
        .await
        .map(|n| done(format!("{n} session(s) of {name:?} ended.")));
    answer(&state, console, outcome).await
}

pub async fn remove(
    State(state): State<AppState>,
    console: Console,
    Path(name): Path<String>,
    axum::Form(form): axum::Form<CsrfOnly>,
) -> Response {
    if let Err(refused) = console.check_change(form.csrf.as_deref()) {
        return refused.into_response();
    }
    match admin(&state, &console).remove_admin_user(&name).await {
        Ok(()) => Redirect::to("/administrators").into_response(),
        Err(e) => answer(&state, console, Err(e)).await,
    }
}
