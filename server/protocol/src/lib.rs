//! The parts of SMTP that read untrusted bytes, kept free of I/O so they can be tested
//! and fuzzed alone: addresses and domains (RFC 5321 §4.1.2), command lines (§4.1.1),
//! the DATA stream (§4.5.2) and the AUTH PLAIN/LOGIN exchanges (RFC 4954).
//!
//! The server re-exports these as `postern::domain` (addresses) and `postern::smtp`
//! (command, data, sasl); the session state machine and the socket live there.

pub mod address;
pub mod command;
pub mod data;
pub mod sasl;
