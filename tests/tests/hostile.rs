//! Hostile input, table-driven: bytes in, replies and state out. Each case is sent on
//! the seed's anonymous connector twice, once in one write and once a byte at a time;
//! both must give exactly the listed replies (then the connection closes after QUIT),
//! queue exactly the listed number of messages, and leave the server answering.

use std::net::SocketAddr;
use std::time::Duration;

use postern_tests::seeded_anonymous_app;
use postern_tests::smtp_client::RawClient;

/// One case: what the client sends after the greeting, the start of each reply it must
/// get (in order, one per reply; multi-line replies by their last line), and how many
/// messages that queues.
struct Case {
    name: &'static str,
    input: Vec<u8>,
    replies: Vec<&'static str>,
    queued: i64,
}

const EHLO: &str = "EHLO client.test\r\n";
const ENVELOPE: &str = "MAIL FROM:<app@cloudmonkeys.xyz>\r\nRCPT TO:<user@cloudmonkeys.xyz>\r\n";
/// The replies to EHLO, MAIL, RCPT and DATA.
const OPENING: [&str; 4] = ["250 ", "250 2.1.0", "250 2.1.5", "354 "];

/// EHLO, one transaction whose DATA carries `body` verbatim, then QUIT.
fn transaction(name: &'static str, body: &[u8], outcome: &'static str, queued: i64) -> Case {
    let mut input = format!("{EHLO}{ENVELOPE}DATA\r\n").into_bytes();
    input.extend_from_slice(body);
    input.extend_from_slice(b"QUIT\r\n");
    let mut replies = OPENING.to_vec();
    replies.extend([outcome, "221 "]);
    Case { name, input, replies, queued }
}

/// EHLO, then `commands`, then QUIT.
fn commands(name: &'static str, commands: &str, replies: &[&'static str]) -> Case {
    let input = format!("{EHLO}{commands}QUIT\r\n").into_bytes();
    let mut all = vec!["250 "];
    all.extend_from_slice(replies);
    all.push("221 ");
    Case { name, input, replies: all, queued: 0 }
}

/// A smuggling attempt: a message whose first "end" is not CRLF.CRLF, followed by a
/// second transaction and the real terminator. Postern must see one message and refuse
/// it (bare line endings are never part of a message), never queue the smuggled one.
fn smuggling(name: &'static str, fake_end: &[u8], outcome: &'static str) -> Case {
    let mut body = b"Subject: one\r\n\r\nfirst".to_vec();
    body.extend_from_slice(fake_end);
    body.extend_from_slice(
        b"MAIL FROM:<evil@cloudmonkeys.xyz>\r\nRCPT TO:<victim@cloudmonkeys.xyz>\r\nDATA\r\nSubject: smuggled\r\n\r\nsecond\r\n.\r\n",
    );
    transaction(name, &body, outcome, 0)
}

fn cases() -> Vec<Case> {
    let long_local = format!("RCPT TO:<{}@cloudmonkeys.xyz>\r\n", "a".repeat(65));
    let long_command = format!("NOOP {}\r\n", "x".repeat(600));
    vec![
        transaction("canonical message (control)", b"Subject: ok\r\n\r\nhello\r\n.\r\n", "250 2.6.0", 1),
        transaction("dot-stuffed line is content", b"Subject: ok\r\n\r\n..hidden\r\n.\r\n", "250 2.6.0", 1),
        smuggling("bare LF end: \\n.\\n", b"\n.\n", "550 5.5.2"),
        smuggling("LF dot CRLF: \\n.\\r\\n", b"\n.\r\n", "550 5.5.2"),
        smuggling("CR dot CRLF: \\r.\\r\\n", b"\r.\r\n", "550 5.5.2"),
        smuggling("CRLF dot LF: \\r\\n.\\n", b"\r\n.\n", "550 5.5.2"),
        smuggling("CRLF dot CR: \\r\\n.\\r", b"\r\n.\r", "550 5.5.2"),
        smuggling("bare CR end: \\r.\\r", b"\r.\r", "550 5.5.2"),
        smuggling("doubled CR: \\r\\r\\n.\\r\\r\\n", b"\r\r\n.\r\r\n", "550 5.5.2"),
        smuggling("NUL before the dot", b"\r\n\0.\r\n", "550 5.6.0"),
        smuggling("NUL after the dot", b"\r\n.\0\r\n", "550 5.6.0"),
        {
            // RFC 2920 pipelining without waiting for 354: two canonical transactions are
            // two messages, each acknowledged once.
            let mut input = format!("{EHLO}{ENVELOPE}DATA\r\nSubject: a\r\n\r\na\r\n.\r\n{ENVELOPE}DATA\r\nSubject: b\r\n\r\nb\r\n.\r\nQUIT\r\n")
                .into_bytes();
            input.shrink_to_fit();
            Case {
                name: "two pipelined transactions without waiting for 354",
                input,
                replies: vec![
                    "250 ",
                    "250 2.1.0",
                    "250 2.1.5",
                    "354 ",
                    "250 2.6.0",
                    "250 2.1.0",
                    "250 2.1.5",
                    "354 ",
                    "250 2.6.0",
                    "221 ",
                ],
                queued: 2,
            }
        },
        commands("unknown command", "FROB\r\n", &["500 5.5.1"]),
        commands("NUL in a command", "NOOP\0x\r\n", &["500 5.5.2"]),
        commands("command line too long", Box::leak(long_command.into_boxed_str()), &["500 5.5.2"]),
        commands("DATA before MAIL", "DATA\r\n", &["503 5.5.1"]),
        commands("RCPT before MAIL", "RCPT TO:<user@cloudmonkeys.xyz>\r\n", &["503 5.5.1"]),
        commands(
            "MAIL twice",
            "MAIL FROM:<a@cloudmonkeys.xyz>\r\nMAIL FROM:<b@cloudmonkeys.xyz>\r\n",
            &["250 2.1.0", "503 5.5.1"],
        ),
        commands(
            "DATA without an accepted recipient",
            "MAIL FROM:<a@cloudmonkeys.xyz>\r\nDATA\r\n",
            &["250 2.1.0", "503 5.5.1"],
        ),
        commands("STARTTLS where TLS is not offered", "STARTTLS\r\n", &["502 5.5.1"]),
        commands("AUTH where no mechanism is offered", "AUTH PLAIN AGFAYg==\r\n", &["503 5.5.1"]),
        commands(
            "external recipient: 5.7.54",
            "MAIL FROM:<a@cloudmonkeys.xyz>\r\nRCPT TO:<someone@gmail.com>\r\n",
            &["250 2.1.0", "550 5.7.54"],
        ),
        commands(
            "percent hack",
            "MAIL FROM:<a@cloudmonkeys.xyz>\r\nRCPT TO:<someone%gmail.com@cloudmonkeys.xyz>\r\n",
            &["250 2.1.0", "550 5.7.54"],
        ),
        commands(
            "source route to an external domain",
            "MAIL FROM:<a@cloudmonkeys.xyz>\r\nRCPT TO:<@cloudmonkeys.xyz:someone@gmail.com>\r\n",
            &["250 2.1.0", "550 5.7.54"],
        ),
        commands(
            "bang path",
            "MAIL FROM:<a@cloudmonkeys.xyz>\r\nRCPT TO:<gmail.com!someone@cloudmonkeys.xyz>\r\n",
            &["250 2.1.0", "550 5.7.54"],
        ),
        commands(
            "double @",
            "MAIL FROM:<a@cloudmonkeys.xyz>\r\nRCPT TO:<a@b@cloudmonkeys.xyz>\r\n",
            &["250 2.1.0", "501 5.1.3"],
        ),
        commands(
            "IP literal (loopback)",
            "MAIL FROM:<a@cloudmonkeys.xyz>\r\nRCPT TO:<root@[127.0.0.1]>\r\n",
            &["250 2.1.0", "550 "],
        ),
        commands(
            "IP literal (metadata address)",
            "MAIL FROM:<a@cloudmonkeys.xyz>\r\nRCPT TO:<root@[169.254.169.254]>\r\n",
            &["250 2.1.0", "550 "],
        ),
        commands("empty recipient", "MAIL FROM:<a@cloudmonkeys.xyz>\r\nRCPT TO:<>\r\n", &["250 2.1.0", "501 5.1.3"]),
        commands(
            "unqualified recipient",
            "MAIL FROM:<a@cloudmonkeys.xyz>\r\nRCPT TO:<user>\r\n",
            &["250 2.1.0", "501 5.1.3"],
        ),
        commands(
            "local part over 64 octets",
            Box::leak(format!("MAIL FROM:<a@cloudmonkeys.xyz>\r\n{long_local}").into_boxed_str()),
            &["250 2.1.0", "501 5.1.3"],
        ),
        commands(
            "non-ASCII without SMTPUTF8",
            "MAIL FROM:<a@cloudmonkeys.xyz>\r\nRCPT TO:<jürgen@cloudmonkeys.xyz>\r\n",
            &["250 2.1.0", "553 "],
        ),
        commands(
            "quoted local part is an address",
            "MAIL FROM:<a@cloudmonkeys.xyz>\r\nRCPT TO:<\"john doe\"@cloudmonkeys.xyz>\r\n",
            &["250 2.1.0", "250 2.1.5"],
        ),
        commands(
            "upper case domain is the accepted domain",
            "MAIL FROM:<a@cloudmonkeys.xyz>\r\nRCPT TO:<User@CLOUDMONKEYS.XYZ>\r\n",
            &["250 2.1.0", "250 2.1.5"],
        ),
        commands(
            "trailing dot on an external domain",
            "MAIL FROM:<a@cloudmonkeys.xyz>\r\nRCPT TO:<someone@gmail.com.>\r\n",
            &["250 2.1.0", "501 5.1.3"],
        ),
        commands(
            "null sender is allowed",
            "MAIL FROM:<>\r\nRCPT TO:<user@cloudmonkeys.xyz>\r\n",
            &["250 2.1.0", "250 2.1.5"],
        ),
        commands("unknown MAIL parameter", "MAIL FROM:<a@cloudmonkeys.xyz> FROB=1\r\n", &["555 5.5.4"]),
        commands("SIZE over the limit", "MAIL FROM:<a@cloudmonkeys.xyz> SIZE=999999999999\r\n", &["552 5.3.4"]),
        commands(
            "source route to an accepted domain is ignored",
            "MAIL FROM:<@relay.example,@other.example:a@cloudmonkeys.xyz>\r\nRCPT TO:<@gmail.com:user@cloudmonkeys.xyz>\r\n",
            &["250 2.1.0", "250 2.1.5"],
        ),
        commands(
            "malformed source route",
            "MAIL FROM:<a@cloudmonkeys.xyz>\r\nRCPT TO:<@:user@cloudmonkeys.xyz>\r\n",
            &["250 2.1.0", "501 "],
        ),
        commands(
            "quoted @ in the local part",
            "MAIL FROM:<a@cloudmonkeys.xyz>\r\nRCPT TO:<\"someone@gmail.com\"@cloudmonkeys.xyz>\r\n",
            &["250 2.1.0", "550 5.7.54"],
        ),
    ]
}

/// Every reply until the server closes the connection.
async fn all_replies(client: &mut RawClient) -> Vec<String> {
    let mut replies = Vec::new();
    loop {
        let reply = client.reply().await;
        if reply == "EOF" {
            return replies;
        }
        replies.push(reply);
    }
}

async fn run(addr: SocketAddr, input: &[u8], byte_by_byte: bool) -> Vec<String> {
    let mut client = RawClient::connect(addr).await;
    assert!(client.reply().await.starts_with("220"));
    if byte_by_byte {
        for byte in input {
            client.send(std::slice::from_ref(byte)).await;
        }
    } else {
        client.send(input).await;
    }
    all_replies(&mut client).await
}

#[tokio::test]
async fn hostile_input_gets_the_exact_replies_in_one_write_and_byte_by_byte() {
    let (app, _sink, addr) = seeded_anonymous_app().await;
    let store = app.admin.store().clone();
    let mut failures = Vec::new();
    for case in cases() {
        for byte_by_byte in [false, true] {
            let before =
                sqlx::query_scalar::<_, i64>("select count(*) from messages").fetch_one(store.pool()).await.unwrap();
            let replies = tokio::time::timeout(Duration::from_secs(30), run(addr, &case.input, byte_by_byte))
                .await
                .unwrap_or_else(|_| panic!("{}: no end within 30 s", case.name));
            let after =
                sqlx::query_scalar::<_, i64>("select count(*) from messages").fetch_one(store.pool()).await.unwrap();
            let matches = replies.len() == case.replies.len()
                && replies.iter().zip(&case.replies).all(|(got, want)| got.starts_with(want));
            if !matches || after - before != case.queued {
                failures.push(format!(
                    "{} ({}): replies {replies:?}, expected {:?}; queued {}, expected {}",
                    case.name,
                    if byte_by_byte { "byte by byte" } else { "one write" },
                    case.replies,
                    after - before,
                    case.queued
                ));
            }
        }
        // The server lives on: a new client is greeted.
        let mut probe = RawClient::connect(addr).await;
        assert!(probe.reply().await.starts_with("220"), "{}: the server stopped answering", case.name);
    }
    assert!(failures.is_empty(), "{} failing:\n{}", failures.len(), failures.join("\n"));
    app.stop().await;
}

/// Runs STARTTLS on the seed's PART 2 connector by hand, then hands the socket to an
/// OpenSSL client configured as `configure` says; returns the handshake's outcome.
async fn handshake_after_starttls(
    addr: SocketAddr,
    configure: fn(&mut openssl::ssl::SslConnectorBuilder),
) -> Result<String, String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let mut read_reply = async |reader: &mut BufReader<tokio::net::TcpStream>| loop {
        line.clear();
        reader.read_line(&mut line).await.unwrap();
        if line.as_bytes().get(3) != Some(&b'-') {
            return line.clone();
        }
    };
    assert!(read_reply(&mut reader).await.starts_with("220"));
    reader.get_mut().write_all(b"EHLO client.test\r\n").await.unwrap();
    assert!(read_reply(&mut reader).await.starts_with("250"));
    reader.get_mut().write_all(b"STARTTLS\r\n").await.unwrap();
    assert!(read_reply(&mut reader).await.starts_with("220"));
    let std_stream = reader.into_inner().into_std().unwrap();
    std_stream.set_nonblocking(false).unwrap();
    tokio::task::spawn_blocking(move || {
        let mut builder = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client()).unwrap();
        builder.set_verify(openssl::ssl::SslVerifyMode::NONE);
        configure(&mut builder);
        let connector = builder.build();
        match connector.connect("relay.test", std_stream) {
            Ok(tls) => Ok(format!("{:?}", tls.ssl().version_str())),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .unwrap()
}

/// A client that offers only this protocol version (OpenSSL's security level lowered so
/// that it really offers it).
fn only(builder: &mut openssl::ssl::SslConnectorBuilder, version: openssl::ssl::SslVersion) {
    builder.set_security_level(0);
    builder.set_min_proto_version(Some(version)).unwrap();
    builder.set_max_proto_version(Some(version)).unwrap();
}

#[tokio::test]
async fn old_tls_versions_and_weak_suites_are_refused() {
    let sink = postern_tests::sink::Sink::start().await;
    let db = postern_tests::TestDb::new().await;
    let port = postern_tests::free_port();
    postern_tests::seed_auth_relay(&db.store().await, port, sink.addr).await;
    let settings = postern_tests::test_settings(&db);
    let app = postern_tests::TestApp::start(db, settings).await;
    app.wait_for_current_config().await;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // The control: a modern client gets TLS 1.3.
    let modern = handshake_after_starttls(addr, |_| {}).await;
    assert_eq!(modern.as_deref(), Ok("\"TLSv1.3\""));
    // TLS 1.0 and 1.1 offered alone: refused.
    let only_tls_1_0: fn(&mut openssl::ssl::SslConnectorBuilder) = |b| only(b, openssl::ssl::SslVersion::TLS1);
    let only_tls_1_1: fn(&mut openssl::ssl::SslConnectorBuilder) = |b| only(b, openssl::ssl::SslVersion::TLS1_1);
    for (name, configure) in [("TLS 1.0", only_tls_1_0), ("TLS 1.1", only_tls_1_1)] {
        let refused = handshake_after_starttls(addr, configure).await;
        // An alert from the server: the client did offer it, and Postern said no.
        assert!(refused.as_ref().is_err_and(|e| e.contains("alert")), "{name} must be refused: {refused:?}");
    }
    // TLS 1.2 with only CBC (no AEAD, no forward secrecy) or RC4/3DES suites: refused.
    let weak = handshake_after_starttls(addr, |b| {
        b.set_security_level(0);
        b.set_max_proto_version(Some(openssl::ssl::SslVersion::TLS1_2)).unwrap();
        b.set_cipher_list("AES128-SHA:AES256-SHA:DES-CBC3-SHA:RC4-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA")
            .unwrap();
    })
    .await;
    assert!(weak.as_ref().is_err_and(|e| e.contains("alert")), "weak suites must be refused: {weak:?}");
    // The server lives on.
    let mut probe = RawClient::connect(addr).await;
    assert!(probe.reply().await.starts_with("220"));
    app.stop().await;
}

/// What the client means, and how it must write it after DATA (RFC 5321 §4.5.2: a line
/// starting with "." gets one more).
fn stuffed(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in body.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Every CR is followed by LF and every LF follows a CR.
fn only_crlf(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().all(|(i, &b)| match b {
        b'\r' => bytes.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && bytes[i - 1] == b'\r',
        _ => true,
    })
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).filter(|w| *w == needle).count()
}

#[tokio::test]
async fn what_reaches_the_smart_host_is_canonical_dot_stuffed_and_ends_once() {
    let (app, sink, addr) = seeded_anonymous_app().await;
    let long_line = format!("Subject: long\r\n\r\n{}\r\n", "x".repeat(998));
    let bodies: Vec<Vec<u8>> = vec![
        b"Subject: dots\r\n\r\n.\r\n..\r\n. leading\r\n.x\r\nend\r\n".to_vec(),
        b"Subject: last line is a dot\r\n\r\nbefore\r\n.\r\n".to_vec(),
        "Subject: 8bit\r\n\r\ncaf\u{e9} \u{2014} na\u{ef}ve\r\n".as_bytes().to_vec(),
        long_line.into_bytes(),
    ];
    for body in &bodies {
        let mut client = RawClient::connect(addr).await;
        assert!(client.start_transaction("app@cloudmonkeys.xyz", "user@cloudmonkeys.xyz").await.starts_with("250"));
        assert!(client.command("DATA").await.starts_with("354"));
        client.send(&stuffed(body)).await;
        let reply = client.reply().await;
        assert!(reply.starts_with("250 2.6.0"), "{reply}");
    }
    // A smuggling attempt in between is refused whole, so nothing of it may go out. The
    // replies are checked one by one: an `all(..)` over them would also hold for a
    // connection that answered nothing.
    let smuggle = b"EHLO c\r\nMAIL FROM:<app@cloudmonkeys.xyz>\r\nRCPT TO:<user@cloudmonkeys.xyz>\r\nDATA\r\nx\n.\nMAIL FROM:<evil@cloudmonkeys.xyz>\r\nRCPT TO:<victim@cloudmonkeys.xyz>\r\nDATA\r\nsmuggled\r\n.\r\nQUIT\r\n";
    let replies = run(addr, smuggle, false).await;
    let expected = [&OPENING[..], &["550 5.5.2", "221 "]].concat();
    assert_eq!(replies.len(), expected.len(), "one message, refused, then QUIT: {replies:?}");
    assert!(replies.iter().zip(&expected).all(|(got, want)| got.starts_with(want)), "{replies:?}");

    // Whatever was queued is in the queue before its 250, and the smuggling connection has
    // ended: once every queued message has been delivered (recorded as done), nothing more
    // can go out. Only then is the sink counted, so a late extra message cannot slip by.
    let store = app.admin.store().clone();
    let queued: i64 = sqlx::query_scalar("select count(*) from messages").fetch_one(store.pool()).await.unwrap();
    assert_eq!(queued, bodies.len() as i64, "only the accepted messages were queued");
    postern_tests::wait_until_all_done(&store, Duration::from_secs(20)).await;
    let received = sink.received();
    assert_eq!(received.len(), bodies.len(), "only the accepted messages went out");
    for body in &bodies {
        let subject = &body[..body.iter().position(|&b| b == b'\r').unwrap()];
        let message = received.iter().find(|m| count(&m.raw, subject) == 1).expect("each message delivered");
        // The sink kept the data as sent (stuffed) without the final ".\r\n": unstuffed, it
        // ends with exactly what the client meant, after Postern's own trace header.
        let on_wire = [message.raw.as_slice(), b".\r\n"].concat();
        assert!(
            on_wire.ends_with(&stuffed(body)),
            "not dot-stuffed as RFC 5321 4.5.2 says:\n{}",
            String::from_utf8_lossy(&on_wire)
        );
        assert!(!message.raw.split_inclusive(|&b| b == b'\n').any(|line| line == b".\r\n"), "an unstuffed lone dot");
    }
    for wire in sink.wire().iter().filter(|w| count(w, b"DATA\r\n") > 0) {
        assert!(only_crlf(wire), "a bare CR or LF crossed the wire:\n{}", String::from_utf8_lossy(wire));
        assert_eq!(count(wire, b"\r\n.\r\n"), count(wire, b"DATA\r\n"), "one terminator per DATA, never more");
        assert!(!String::from_utf8_lossy(wire).contains("smuggled"));
    }
    app.stop().await;
}
