//! The console's administrators (`/administrators`): everyone may see the list; admins
//! create administrators, change their role or whether they may sign in, set a new
//! password (shown once, to be replaced at the next sign-in), sign them out everywhere,
//! and remove them. Each change goes through the same service layer as the CLI and API.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::error::FormRefusal;
use super::session::Console;
use super::{ConsoleChange, ConsoleError, ConsoleForm, admin};
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

async fn page(state: &AppState, console: Console) -> Result<AdministratorsPage, ConsoleError> {
    let rows = state.store.admin_users().await?;
    Ok(AdministratorsPage {
        console,
        administrators: rows.into_iter().map(Line::new).collect(),
        notice: None,
        generated_password: None,
        error: None,
    })
}

/// The list page with what an action did (or why it was refused), with its status.
async fn answer(
    state: &AppState,
    console: Console,
    outcome: Result<Outcome, AdminError>,
) -> Result<Response, ConsoleError> {
    match outcome {
        Ok(Outcome { notice, password }) => {
            let mut shown = page(state, console).await?;
            (shown.notice, shown.generated_password) = (Some(notice), password);
            Ok(shown.into_response())
        }
        Err(e) => {
            let refusal = FormRefusal::of(e)?;
            let mut shown = page(state, console).await?;
            shown.error = Some(refusal.message());
            Ok((refusal.status, shown).into_response())
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

pub async fn list(State(state): State<AppState>, console: Console) -> Result<AdministratorsPage, ConsoleError> {
    page(&state, console).await
}

#[derive(Deserialize)]
pub struct NewForm {
    name: String,
    role: String,
}

/// A new administrator with a generated password, shown once; they replace it at their
/// first sign-in.
pub async fn create(
    State(state): State<AppState>,
    ConsoleForm { console, form }: ConsoleForm<NewForm>,
) -> Result<Response, ConsoleError> {
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
}

pub async fn update(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ConsoleForm { console, form }: ConsoleForm<ChangeForm>,
) -> Result<Response, ConsoleError> {
    let changes = AdminUserChanges { role: Some(form.role), enabled: Some(form.enabled.is_some()) };
    let outcome =
        admin(&state, &console).set_admin_user(&name, &changes).await.map(|()| done(format!("{name:?} saved.")));
    answer(&state, console, outcome).await
}

pub async fn reset_password(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ConsoleChange { console, .. }: ConsoleChange,
) -> Result<Response, ConsoleError> {
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
    Path(name): Path<String>,
    ConsoleChange { console, .. }: ConsoleChange,
) -> Result<Response, ConsoleError> {
    let outcome = admin(&state, &console)
        .end_admin_sessions(&name, None)
        .await
        .map(|n| done(format!("{n} session(s) of {name:?} ended.")));
    answer(&state, console, outcome).await
}

pub async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ConsoleChange { console, .. }: ConsoleChange,
) -> Result<Response, ConsoleError> {
    match admin(&state, &console).remove_admin_user(&name).await {
        Ok(()) => Ok(Redirect::to("/administrators").into_response()),
        Err(e) => answer(&state, console, Err(e)).await,
    }
}
