//! The only place with SQL. A concrete `Store` over a Postgres pool: configuration
//! objects, the queue, tracking and the audit log. Knows nothing of SMTP or HTTP.

mod accounts;
mod api_tokens;
mod audit;
mod config;
mod console;
mod precondition;
mod protocol_log;
mod queue;
mod saml;
mod tracking;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

pub use accounts::{GeneratedCertificate, SendAsGrantRow, ServiceAccountRow};
pub use api_tokens::{ApiTokenRow, NewApiToken};
pub use audit::{AuditEntry, AuditFilter};
pub use config::{AcceptedDomainRow, Configuration, ConnectorConflict, ReceiveConnectorRow, SendConnectorRow};
pub use console::{AdminSession, AdminUserChange, AdminUserRow};
pub use precondition::{IfMatch, entity_tag};
pub use protocol_log::{ProtocolEvent, ProtocolFilter, ProtocolLine};
pub use queue::{
    ClaimedMessage, ClaimedRecipient, MessageOutcome, NewMessage, QueueFilter, QueuedMessageSummary, RecipientOutcome,
    RecipientStatus, RemovedMessage, SpooledBody,
};
pub use saml::{FederatedSignIn, IdentityProviderRow, SignInOutcome};
pub use tracking::{NewTrackingEvent, TrackingFilter, TrackingRecord};

/// The channel a configuration change is announced on (see the migration's trigger).
pub const CONFIG_CHANNEL: &str = "postern_config";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(&'static str),
    /// An `If-Match` precondition did not hold: the object changed since it was read.
    #[error("{0} was changed by someone else since it was read (its ETag no longer matches)")]
    PreconditionFailed(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Whether the database refused the data itself: SQLSTATE class 22 (data exception,
    /// e.g. a NUL byte in text) or 23 (integrity constraint violation). The same statement
    /// would be refused again; anything else (a lost connection, a timeout, a shutdown)
    /// may pass.
    pub fn is_refused_data(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(db)) => {
                db.code().is_some_and(|code| code.starts_with("22") || code.starts_with("23"))
            }
            _ => false,
        }
    }

    /// Maps a unique-constraint violation to a `Conflict` with a readable message.
    fn conflict_on_unique(error: sqlx::Error, what: impl FnOnce() -> String) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what()),
            _ => StoreError::Database(error),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    /// Connections with `synchronous_commit = off`, for writes whose loss in a crash only
    /// means work is repeated (delivery outcomes: at-least-once) or a log line is missing
    /// (tracking). Never used for the enqueue behind a 250.
    relaxed: PgPool,
}

impl Store {
    pub async fn connect(options: PgConnectOptions, max_connections: u32) -> Result<Self, StoreError> {
        let pool_options = || PgPoolOptions::new().min_connections(0).acquire_timeout(Duration::from_secs(5));
        // Every statement of the hot path has a fixed text and a plan that does not depend
        // on its parameters: plan it once per connection, not at every execution.
        let options = options.options([("plan_cache_mode", "force_generic_plan")]);
        let pool = pool_options().max_connections(max_connections).connect_with(options.clone()).await?;
        let relaxed = pool_options()
            .max_connections((max_connections / 4).max(2))
            .connect_with(options.options([("synchronous_commit", "off")]))
            .await?;
        Ok(Self { pool, relaxed })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies the migrations in `migrations/` (embedded at build time).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("../migrations").run(&self.pool).await?;
        Ok(())
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        Ok(self.pool.begin().await?)
    }

    /// True when a trivial query succeeds.
    pub async fn is_healthy(&self) -> bool {
        sqlx::query("select 1").execute(&self.pool).await.is_ok()
    }

    /// True when every migration this binary carries has been applied (a newer node's
    /// later migrations may be there too: they only add).
    pub async fn migrations_current(&self) -> Result<bool, StoreError> {
        let latest = sqlx::migrate!("../migrations").iter().map(|m| m.version).max().unwrap_or(0);
        let applied: Option<i64> =
            sqlx::query_scalar("select max(version) from _sqlx_migrations where success").fetch_one(&self.pool).await?;
        Ok(applied.unwrap_or(0) >= latest)
    }
}
