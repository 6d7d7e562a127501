//! Inbound SMTP (RFC 5321): listeners, the session state machine, the sans-IO command
//! parser and DATA reader, named replies. Asks `policy` for every decision and `store`
//! only to commit a message; never talks HTTP.

pub mod address_list;
pub mod command;
pub mod connection;
pub mod data;
pub mod engine;
pub mod headers;
pub mod reply;
pub mod sasl;
pub mod session;
pub mod stream;
pub mod what_if;

pub use engine::{Engine, EngineParts, EngineSettings, ListenerStatus};
