//! Postern, a web-managed SMTP relay appliance.
//!
//! The mail flow:
//! ```text
//! client ─TCP─▶ smtp::engine (listener per binding) ─▶ policy::Snapshot::select_connector
//!   ─▶ smtp::session (state machine; policy decides MAIL/RCPT) ─▶ smtp::data (DATA reader)
//!   ─▶ store::enqueue (one transaction) ─▶ only then "250 2.6.0 <id> Queued mail for delivery"
//!   ─▶ delivery (claim with lease, route by send connector, lettre / MX) ─▶ outcome per recipient
//!   ─▶ tracking (batched events: RECEIVE, SEND, DEFER, FAIL, DSN, REJECT)
//! ```
//! Modules: `domain` (pure types), `store` (all SQL), `policy` (snapshot + decisions),
//! `queue` (retry schedule), `smtp` (inbound), `delivery` (outbound), `tracking`,
//! `reload` (NOTIFY → new snapshot), `admin` (validation + audit for CLI/console/API),
//! `auth` (service-account sign-in: argon2id, cache, throttle), `tls` (rustls configs),
//! `metrics` (Prometheus), `pressure` (452 4.3.1 back-pressure),
//! `probe` (the console's test message: an SMTP client with a transcript), `saml` (SSO
//! metadata, samael), `http`, `cli`,
//! `embedded_postgres`, `settings`, `app` (wiring).

pub mod admin;
pub mod app;
pub mod auth;
pub mod cli;
pub mod delivery;
pub mod domain;
pub mod embedded_postgres;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod policy;
pub mod pressure;
pub mod probe;
pub mod queue;
pub mod reload;
pub mod saml;
pub mod settings;
pub mod smtp;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod tracking;
