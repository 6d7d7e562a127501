//! Inbound SMTP (RFC 5321): listeners, the session state machine, the sans-IO command
//! parser and DATA reader, named replies. Asks `policy` for every decision and `store`
//! only to commit a message; never talks HTTP.

pub mod address_list;
pub mod connection;
pub mod engine;
pub mod headers;
pub mod reply;
pub mod session;
pub mod stream;
pub mod what_if;

// The sans-IO parsers live in their own crate (server/protocol) so they build and fuzz
// alone; they keep their paths here.
pub use postern_protocol::{command, data, sasl};

pub use engine::{Engine, EngineParts, EngineSettings, ListenerStatus};
