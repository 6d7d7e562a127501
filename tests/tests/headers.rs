//! The Send-As header check reads the header block exactly as mail clients will read it
//! after Postern has stamped the message. Differential test: for a generated corpus of
//! header blocks (folding, white-space lines, obsolete syntax, duplicate fields, groups,
//! encoded words, comments, quoted display names that look like addresses, bare CR/LF,
//! very long lines), every block Postern accepts must name exactly the author addresses
//! that Python's `email` package (policy.default), an independent RFC 5322 parser, reads
//! from the stamped message. A block Postern refuses is safe; a disagreement is a failure.

use std::collections::BTreeMap;

use base64::Engine as _;
use postern::smtp::headers::{HeaderSection, author_addresses, stamp};

const RECEIVED: &str = "Received: from client ([192.0.2.1])\r\n\tby relay.test (Postern) with ESMTPSA id 1\r\n\t(connector \"Auth\"; TLS1.3; authenticated);\r\n\tThu, 03 Dec 2026 18:00:00 +0000\r\n";

/// What Postern makes of one message: the addresses its check sees (lower-cased,
/// sorted) and the stamped message, or `None` when it refuses the message.
fn postern_view(message: &[u8]) -> Option<(Vec<String>, Vec<u8>)> {
    let section = HeaderSection::parse(message).ok()?;
    let addresses = author_addresses(&section).ok()?;
    let mut addresses: Vec<String> = addresses.iter().map(|a| a.to_string().to_lowercase()).collect();
    addresses.sort();
    Some((addresses, stamp(message, &section, RECEIVED, Some("<id@relay.test>"))))
}

/// Author field values: well-formed ones and every trick we know.
fn values() -> Vec<String> {
    let long_name = "x".repeat(900);
    let mut v: Vec<String> = [
        "smb1@cloudmonkeys.xyz",
        "<smb1@cloudmonkeys.xyz>",
        "App <smb1@cloudmonkeys.xyz>",
        "\"App, Inc.\" <smb1@cloudmonkeys.xyz>",
        "\"ceo@cloudmonkeys.xyz\" <smb1@cloudmonkeys.xyz>",
        "\"CEO <ceo@cloudmonkeys.xyz>\" <smb1@cloudmonkeys.xyz>",
        "ceo@cloudmonkeys.xyz <smb1@cloudmonkeys.xyz>",
        "smb1@cloudmonkeys.xyz (ceo@cloudmonkeys.xyz)",
        "(ceo@cloudmonkeys.xyz) smb1@cloudmonkeys.xyz",
        "App (comment <ceo@cloudmonkeys.xyz>) <smb1@cloudmonkeys.xyz>",
        "=?utf-8?q?ceo=40cloudmonkeys=2Exyz?= <smb1@cloudmonkeys.xyz>",
        "=?utf-8?b?Y2VvQGNsb3VkbW9ua2V5cy54eXo=?= <smb1@cloudmonkeys.xyz>",
        "=?utf-8?q?=3Cceo=40cloudmonkeys=2Exyz=3E?=",
        "=?utf-8?b?PGNlb0BjbG91ZG1vbmtleXMueHl6Pg==?= <smb1@cloudmonkeys.xyz>",
        "smb1@cloudmonkeys.xyz, ceo@cloudmonkeys.xyz",
        "App <smb1@cloudmonkeys.xyz>, CEO <ceo@cloudmonkeys.xyz>",
        "Team: smb1@cloudmonkeys.xyz, ceo@cloudmonkeys.xyz;",
        "Team: smb1@cloudmonkeys.xyz;",
        "\"ceo@cloudmonkeys.xyz\" :;",
        "undisclosed-recipients:;",
        "Team:;, smb1@cloudmonkeys.xyz",
        "<@relay.example:ceo@cloudmonkeys.xyz>",
        "\"ceo\"@cloudmonkeys.xyz",
        "\"smb1\\\"@x\"@cloudmonkeys.xyz",
        "smb1@[192.0.2.1]",
        "smb1 @ cloudmonkeys.xyz",
        "smb1@cloudmonkeys.xyz <ceo@cloudmonkeys.xyz>",
        "<smb1@cloudmonkeys.xyz> ceo@cloudmonkeys.xyz",
        "<smb1@cloudmonkeys.xyz> <ceo@cloudmonkeys.xyz>",
        "App <smb1@cloudmonkeys.xyz",
        "\"App <smb1@cloudmonkeys.xyz>",
        "App (unclosed <smb1@cloudmonkeys.xyz>",
        "smb1@cloudmonkeys.xyz)",
        "App <<smb1@cloudmonkeys.xyz>>",
        "just a name",
        "",
        "smb1@cloudmonkeys.xyz;ceo@cloudmonkeys.xyz",
        "smb1@cloudmonkeys.xyz ceo@cloudmonkeys.xyz",
        "Sv\u{e9}n <smb1@cloudmonkeys.xyz>",
        "sm\u{f8}b1@cloudmonkeys.xyz",
        "smb1@cloudm\u{f8}nkeys.xyz",
        "\t smb1@cloudmonkeys.xyz \t",
        "App\\ <ceo@cloudmonkeys.xyz> <smb1@cloudmonkeys.xyz>",
        "\"App\\\" <ceo@cloudmonkeys.xyz>\" <smb1@cloudmonkeys.xyz>",
        "smb1@cloudmonkeys.xyz,",
        ",smb1@cloudmonkeys.xyz",
        "SMB1@CloudMonkeys.XYZ",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(format!("\"{long_name}\" <smb1@cloudmonkeys.xyz>"));
    v.push(format!("{long_name} <smb1@cloudmonkeys.xyz>"));
    v
}

/// The same value folded: before its last `<`, after each comma, inside a quoted string.
fn foldings(value: &str) -> Vec<String> {
    let mut out = vec![value.to_string()];
    if let Some(at) = value.rfind('<') {
        out.push(format!("{}\r\n\t{}", &value[..at], &value[at..]));
    }
    if value.contains(", ") {
        out.push(value.replace(", ", ",\r\n "));
    }
    if let Some(at) = value.find("\" <") {
        out.push(format!("{}\r\n {}", &value[..at], &value[at..]));
    }
    if let Some(at) = value.find('@') {
        out.push(format!("{}\r\n {}", &value[..at], &value[at..]));
    }
    out
}

/// Ways to put an author field into a header block.
fn blocks(name: &str, value: &str) -> Vec<Vec<u8>> {
    let field = format!("{name}:{}{value}", if value.starts_with([' ', '\t']) { "" } else { " " });
    let shapes = [
        format!("{field}\r\nSubject: hi\r\n\r\nbody\r\n"),
        format!("Subject: hi\r\n{field}\r\n\r\nbody\r\n"),
        format!("Subject: hi\r\n folded\r\n{field}\r\nTo: x@example.net\r\n\r\nbody\r\n"),
        format!("From: smb1@cloudmonkeys.xyz\r\n{field}\r\n\r\nbody\r\n"),
        format!(" \r\n{field}\r\n\r\nbody\r\n"),
        format!("\t\r\n{field}\r\n\r\nbody\r\n"),
        format!("Subject: hi\r\n \r\n{field}\r\n\r\nbody\r\n"),
        format!("Subject: hi\r\n\t \r\n{field}\r\n\r\nbody\r\n"),
        format!("Subject: hi\r\nnot a header line\r\n{field}\r\n\r\nbody\r\n"),
        format!("Subject: hi\r\n\r\n{field}\r\n\r\nbody\r\n"),
        format!("Subject: hi\n{field}\r\n\r\nbody\r\n"),
        format!("Subject: hi\r{field}\r\n\r\nbody\r\n"),
        format!("{field}\r\n"),
        format!("{field}\r\n{field}\r\n\r\n"),
        format!("X-Long: {}\r\n{field}\r\n\r\n", "y".repeat(990)),
    ];
    shapes.iter().map(|s| s.clone().into_bytes()).collect()
}

const NAMES: [&str; 9] =
    ["From", "FROM", "from", "Sender", "Resent-From", "Resent-Sender", "From ", "From\t", "Reply-To"];

fn python_views(cases: &BTreeMap<String, (Vec<String>, Vec<u8>)>) -> serde_json::Map<String, serde_json::Value> {
    let input: Vec<serde_json::Value> = cases
        .iter()
        .map(|(id, (_, stamped))| {
            serde_json::json!({ "id": id, "stamped": base64::engine::general_purpose::STANDARD.encode(stamped) })
        })
        .collect();
    let path = std::env::temp_dir().join(format!("postern-authors-{}.json", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, serde_json::to_vec(&input).unwrap()).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("differential/authors.py");
    let out = std::process::Command::new("python3").arg(&script).arg(&path).output().expect("python3 runs");
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap().as_object().unwrap().clone()
}

#[test]
fn the_send_as_check_reads_the_authors_python_reads_from_the_stamped_message() {
    postern_tests::require_tool!(Python);
    let mut accepted = BTreeMap::new();
    let mut refused = 0;
    for name in NAMES {
        for value in values() {
            for folded in foldings(&value) {
                for (shape, block) in blocks(name, &folded).into_iter().enumerate() {
                    let id = format!("{name:?} {folded:?} shape {shape}");
                    match postern_view(&block) {
                        Some(view) => {
                            accepted.insert(id, view);
                        }
                        None => refused += 1,
                    }
                }
            }
        }
    }
    let python = python_views(&accepted);
    let mut disagreements = Vec::new();
    for (id, (ours, _)) in &accepted {
        let theirs = &python[id];
        if theirs != &serde_json::json!(ours) {
            disagreements.push(format!("{id}: Postern checked {ours:?}, Python reads {theirs}"));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {} accepted blocks disagree:\n{}",
        disagreements.len(),
        accepted.len(),
        disagreements.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
    // The test cannot pass by refusing everything: most blocks are read, and refused.
    assert!(accepted.len() > 2000 && refused > 500, "accepted {}, refused {refused}", accepted.len());
    eprintln!("{} blocks agreed with Python, {refused} refused", accepted.len());
}

/// Ordinary messages from applications are never refused, and read as expected.
#[test]
fn well_formed_author_fields_are_read_and_never_refused() {
    let cases: [(&[u8], &[&str]); 6] = [
        (b"From: smb1@cloudmonkeys.xyz\r\nTo: a@example.net\r\nSubject: x\r\n\r\nbody\r\n", &["smb1@cloudmonkeys.xyz"]),
        (b"From: \"Scanner, 2nd floor\" <smb1@cloudmonkeys.xyz>\r\n\r\n", &["smb1@cloudmonkeys.xyz"]),
        (b"From: =?utf-8?q?Sv=C3=A9n?=\r\n <smb1@cloudmonkeys.xyz>\r\n\r\n", &["smb1@cloudmonkeys.xyz"]),
        (
            b"Sender: smb1@cloudmonkeys.xyz\r\nFrom: Team: a@cloudmonkeys.xyz, b@cloudmonkeys.xyz;\r\n\r\n",
            &["a@cloudmonkeys.xyz", "b@cloudmonkeys.xyz", "smb1@cloudmonkeys.xyz"],
        ),
        (b"Subject: no author at all\r\n\r\n", &[]),
        (b"plain text, no header\r\n", &[]),
    ];
    for (message, expected) in cases {
        let (addresses, _) =
            postern_view(message).unwrap_or_else(|| panic!("refused: {:?}", String::from_utf8_lossy(message)));
        assert_eq!(addresses, expected, "{:?}", String::from_utf8_lossy(message));
    }
}
