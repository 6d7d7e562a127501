//! The SMTP command parser on arbitrary lines: it never panics, and whatever it accepts
//! formats back to a line that parses to the same command (so what the session logs and
//! what it acts on cannot differ).
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_protocol::command::Command;

fuzz_target!(|line: &[u8]| {
    let Ok(command) = Command::parse(line) else { return };
    let formatted = command.to_string();
    assert!(!formatted.contains(['\r', '\n', '\0']), "a formatted command is one clean line: {formatted:?}");
    assert_eq!(Command::parse(formatted.as_bytes()), Ok(command), "{formatted:?} from {line:?}");
});
