//! The `postern` binary as a provisioning script or a client generator meets it: the
//! commands that need no database. The black-box suite in `tests/` drives the rest.
//!
//! Being an integration test of this package also makes `cargo test --workspace` build
//! `target/debug/postern` with the workspace's test feature set, which is the binary
//! `postern_tests::postern_binary()` hands to the suites that run it as a process.

// Test code: a failed unwrap is a failed test with a clear message.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

fn postern(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(args)
        // No settings file and no database: these commands must not need either.
        .env_remove("DATABASE_URL")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap()
}

#[test]
fn openapi_prints_the_document_the_api_serves() {
    let out = postern(&["openapi"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let document: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1."), "{}", document["openapi"]);
    let paths = document["paths"].as_object().unwrap();
    for path in ["/api/v1/receive-connectors", "/api/v1/send-connectors", "/api/v1/accepted-domains"] {
        assert!(paths.contains_key(path), "{path} missing from {:?}", paths.keys().collect::<Vec<_>>());
    }
}

#[test]
fn help_names_the_exchange_style_commands() {
    let out = postern(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for command in
        ["receive-connector", "send-connector", "accepted-domain", "service-account", "send-as", "tracking-log"]
    {
        assert!(help.contains(command), "{command} missing from:\n{help}");
    }
}

#[test]
fn an_unknown_command_is_a_usage_error_that_names_it() {
    let out = postern(&["new-receive-connector"]);
    assert_eq!(out.status.code(), Some(2), "clap's usage error status");
    let error = String::from_utf8(out.stderr).unwrap();
    assert!(error.contains("unrecognized subcommand 'new-receive-connector'"), "{error}");
    assert!(out.stdout.is_empty());
}
