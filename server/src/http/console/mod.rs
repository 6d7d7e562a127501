//! The browser console (askama, server-rendered; plain forms with POST-redirect-GET).
//! Every page needs a signed-in administrator; viewers see, admins change. Every
//! change goes through the same `admin` service layer as the API and the CLI, and is
//! audited as `console:<name>`.

mod accounts;
mod administrators;
mod connectors;
mod error;
mod queue;
mod send_connectors;
pub mod session;
mod sign_in;
mod sso;
mod test_message;
mod tracking;
mod what_if;

use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::admin::Admin;
use crate::auth::Throttle;
use crate::http::AppState;
use session::Console;

/// Console settings taken from the bootstrap configuration, and the console's shared
/// machinery for signing in.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    /// A session unused this long ends.
    pub idle_secs: i64,
    /// The console is served over HTTPS: the session cookie is `Secure` and `__Host-`.
    pub secure_cookie: bool,
    /// Sign-in failures per source and per name, as for SMTP AUTH.
    pub throttle: Arc<Throttle>,
    /// The URL browsers reach the console at (SAML's entity ID and ACS URL).
    pub public_url: String,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The node's argon2 threads (shared with SMTP AUTH).
    pub hashing: crate::auth::BoundedPool,
    /// The thread that verifies SAML responses (libxml2 and xmlsec).
    pub saml: crate::auth::BoundedPool,
    /// Unknown names are checked against this, so they take as long as a wrong password.
    pub decoy_hash: String,
    /// Requests per source for the unauthenticated SSO routes.
    pub requests: Arc<crate::limits::SourceRate>,
    /// Refused sign-ins written to the audit log, per source, before they are summed up.
    pub refusals: Arc<crate::auth::RefusalDigest>,
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(overview))
        .route("/sign-in", get(sign_in::page).post(sign_in::sign_in))
        .route("/sign-out", post(sign_in::sign_out))
        .route("/account/password", get(sign_in::password_page).post(sign_in::change_password))
        .route("/administrators", get(administrators::list).post(administrators::create))
        .route("/administrators/{name}", post(administrators::update))
        .route("/administrators/{name}/password", post(administrators::reset_password))
        .route("/administrators/{name}/sessions", post(administrators::end_sessions))
        .route("/administrators/{name}/delete", post(administrators::remove))
        .route("/receive-connectors", get(connectors::list))
        .route("/receive-connectors/new", get(connectors::new_form).post(connectors::create))
        .route("/receive-connectors/new/what-if", post(connectors::try_new))
        .route("/receive-connectors/{name}", get(connectors::edit_form).post(connectors::update))
        .route("/receive-connectors/{name}/delete", post(connectors::delete))
        .route("/receive-connectors/{name}/what-if", post(connectors::try_existing))
        .route("/what-if", get(what_if::page))
        .route("/test-message", get(test_message::form).post(test_message::send))
        .route("/single-sign-on", get(sso::page).post(sso::save))
        .route("/single-sign-on/policy", post(sso::save_policy))
        .route("/saml/metadata", get(sso::metadata))
        .route("/saml/login", get(sso::login))
        .route("/saml/acs", post(sso::acs))
        .route("/send-connectors", get(send_connectors::list))
        .route("/send-connectors/new", get(send_connectors::new_form).post(send_connectors::create))
        .route("/send-connectors/{name}", get(send_connectors::edit_form).post(send_connectors::update))
        .route("/send-connectors/{name}/delete", post(send_connectors::delete))
        .route("/accepted-domains", get(accounts::domains).post(accounts::add_domain))
        .route("/accepted-domains/{domain}/delete", post(accounts::remove_domain))
        .route("/service-accounts", get(accounts::accounts))
        .route("/service-accounts/new", get(accounts::new_account).post(accounts::create_account))
        .route("/service-accounts/{name}", get(accounts::account).post(accounts::update_account))
        .route("/service-accounts/{name}/password", post(accounts::reset_password))
        .route("/service-accounts/{name}/delete", post(accounts::delete_account))
        .route("/service-accounts/{name}/send-as", post(accounts::add_grant))
        .route("/service-accounts/{name}/send-as/delete", post(accounts::remove_grant))
        .route("/tracking", get(tracking::page))
        .route("/tracking/live", get(tracking::live))
        .route("/sessions/{id}", get(tracking::session))
        .route("/messages/{id}", get(tracking::message))
        .route("/queue", get(queue::page))
        .route("/queue/{id}/{action}", post(queue::act))
        .route("/audit-log", get(queue::audit))
}

pub use error::{ConsoleChange, ConsoleError, ConsoleForm, FormPage};
pub use sign_in::CsrfForm;

/// Refuses a POST that a browser says comes from another site (`Sec-Fetch-Site`), or
/// whose `Origin` is not this host: no cross-site form (sign-in included) reaches a
/// handler. The CSRF token in every form is the second, independent check.
pub async fn same_origin_posts(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    // The identity provider posts its response from its own site; what protects the ACS
    // is the response's signature and its answer to a request bound to this browser.
    if request.method() == axum::http::Method::POST && request.uri().path() != "/saml/acs" {
        let headers = request.headers();
        let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let cross_site = text(header::HeaderName::from_static("sec-fetch-site"))
            .is_some_and(|site| site != "same-origin" && site != "none");
        let foreign_origin = match (text(header::ORIGIN), text(header::HOST)) {
            (Some(origin), Some(host)) => origin != format!("http://{host}") && origin != format!("https://{host}"),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if cross_site || foreign_origin {
            return session::Refusal::Forgery.into_response();
        }
    }
    next.run(request).await
}

/// The address a client on this host reaches a binding at: a wildcard binding's
/// loopback address, any other binding itself.
fn reachable(binding: SocketAddr) -> SocketAddr {
    match binding.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::from(([127, 0, 0, 1], binding.port())),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, binding.port()))
        }
        _ => binding,
    }
}

/// A removal, then back to the list.
async fn removed(
    back_to: &str,
    removal: impl Future<Output = Result<(), crate::admin::AdminError>>,
) -> Result<Redirect, ConsoleError> {
    removal.await?;
    Ok(Redirect::to(back_to))
}

/// The service layer, acting as this administrator.
fn admin(state: &AppState, console: &Console) -> Admin {
    Admin::new(state.store.clone(), format!("console:{}", console.name), state.default_fqdn.clone())
        .with_reserved_addresses(vec![state.http_addr])
}

/// One listener's line on the overview.
struct ListenerLine {
    binding: String,
    state: String,
    up: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "overview.html")]
struct OverviewPage {
    console: Console,
    generation: i64,
    listeners: Vec<ListenerLine>,
    open_sessions: usize,
    queue_depth: i64,
    counters: Vec<(String, i64)>,
    chart: Chart,
}

/// The last hour as bars, one pair per minute (received, sent), scaled to the busiest
/// minute; the template only draws them.
pub struct Chart {
    bars: Vec<Bar>,
    peak: i64,
    received: i64,
    sent: i64,
}

pub struct Bar {
    x: usize,
    received_height: i64,
    sent_height: i64,
    title: String,
}

/// Chart height in SVG units.
const CHART_HEIGHT: i64 = 100;

impl Chart {
    fn new(minutes: &[(i64, i64)]) -> Self {
        let peak = minutes.iter().map(|(r, s)| (*r).max(*s)).max().unwrap_or(0);
        let scale = |n: i64| if peak == 0 { 0 } else { n * CHART_HEIGHT / peak };
        let bars = minutes
            .iter()
            .enumerate()
            .map(|(i, (received, sent))| Bar {
                x: i * 10,
                received_height: scale(*received),
                sent_height: scale(*sent),
                title: format!("{} min ago: {received} received, {sent} sent", minutes.len() - 1 - i),
            })
            .collect();
        Chart { bars, peak, received: minutes.iter().map(|(r, _)| r).sum(), sent: minutes.iter().map(|(_, s)| s).sum() }
    }
}

async fn overview(State(state): State<AppState>, console: Console) -> Result<OverviewPage, ConsoleError> {
    let listeners = state
        .engine
        .listener_status()
        .into_iter()
        .map(|l| ListenerLine {
            up: l.error.is_none(),
            state: l.error.map_or_else(
                || format!("listening on {}", l.local_addr.unwrap_or_default()),
                |e| format!("failed: {e}"),
            ),
            binding: l.binding,
        })
        .collect();
    let counts = state.store.tracking_counts_last_minute().await?;
    let chart = Chart::new(&state.store.throughput_last_hour().await?);
    let counters = ["RECEIVE", "SEND", "DEFER", "FAIL", "REJECT"]
        .iter()
        .map(|e| (e.to_string(), counts.get(*e).copied().unwrap_or(0)))
        .collect();
    Ok(OverviewPage {
        generation: state.config.load().generation,
        listeners,
        open_sessions: state.engine.open_sessions(),
        queue_depth: state.store.queue_depth().await?,
        counters,
        chart,
        console,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_scales_to_the_busiest_minute_and_puts_the_newest_last() {
        let mut minutes = vec![(0, 0); 60];
        minutes[59] = (4, 2);
        minutes[0] = (1, 0);
        let chart = Chart::new(&minutes);
        assert_eq!((chart.peak, chart.received, chart.sent), (4, 5, 2));
        let newest = &chart.bars[59];
        assert_eq!((newest.x, newest.received_height, newest.sent_height), (590, 100, 50));
        assert_eq!(chart.bars[0].received_height, 25);
        assert!(chart.bars[0].title.starts_with("59 min ago"));
        assert!(Chart::new(&[(0, 0); 60]).bars.iter().all(|b| b.received_height == 0), "an idle hour draws nothing");
    }
}
