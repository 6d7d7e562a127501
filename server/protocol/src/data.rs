//! The DATA reader (RFC 5321 §4.1.1.4, §4.5.2), sans-IO: bytes in, one message out.
//!
//! Smuggling-safe by construction: only `CRLF.CRLF` ends the message, and a bare CR or
//! bare LF anywhere makes the whole message rejected after the terminator, never split
//! into two (the 2023 "SMTP smuggling" class). Lines are dot-unstuffed (§4.5.2).

/// RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets including CRLF.
pub const MAX_TEXT_LINE: usize = 1000;

/// Why a message is refused once its terminator has been read. When a message has
/// several faults, the one reported is the gravest (the order below), wherever it is:
/// the reply must not depend on how TCP cut the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DataError {
    TooBig,
    /// The header section did not end within `MAX_HEADER_SECTION` bytes.
    HeaderSectionTooBig,
    LineTooLong,
    Nul,
    /// A bare CR or LF: the mark of an SMTP smuggling attempt.
    BareLineEnding,
}

/// A header section longer than this is refused: a message must show its header
/// section before its body is spooled (the checks and the stamp read only the head).
pub const MAX_HEADER_SECTION: usize = 1024 * 1024;

/// Accumulates one message body until the terminator.
#[derive(Debug)]
pub struct DataReader {
    body: Vec<u8>,
    /// Bytes taken out of `body` so far (spooled by the caller): they count against the
    /// size limit as if they were still here.
    spilled: usize,
    /// A line whose end has not arrived yet (split across reads).
    partial: Vec<u8>,
    max_size: usize,
    error: Option<DataError>,
    eight_bit: bool,
    /// The start of the current line was dropped for being too long: its end is not
    /// the start of a line, so it can never be the terminator.
    overflowed: bool,
    /// The previous line ended with CRLF (the DATA command's own CRLF counts): only then
    /// can a "." line be the terminator. `LF . CRLF` is not `CRLF . CRLF`.
    after_crlf: bool,
}

/// What `feed` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// All of the input was consumed; more is needed.
    NeedMore,
    /// The terminator ended at this many bytes of the input; the rest belongs to the next
    /// command (RFC 2920 pipelining).
    Done { consumed: usize },
}

impl DataReader {
    pub fn new(max_size: usize) -> Self {
        Self {
            body: Vec::with_capacity(max_size.min(16 * 1024)),
            spilled: 0,
            partial: Vec::new(),
            max_size,
            error: None,
            eight_bit: false,
            overflowed: false,
            after_crlf: true,
        }
    }

    /// Bytes of the message kept so far (unstuffed; nothing past the size limit),
    /// spooled ones included.
    pub fn kept(&self) -> usize {
        self.spilled + self.body.len()
    }

    /// The message bytes held in memory: the head, and what arrived after the last spill.
    pub fn held(&self) -> &[u8] {
        &self.body
    }

    /// Takes the bytes after the first `keep` out, for the caller to spool; they still
    /// count against the size limit. Nothing when the message has already failed.
    pub fn spill_after(&mut self, keep: usize) -> Vec<u8> {
        if self.error.is_some() || keep >= self.body.len() {
            return Vec::new();
        }
        let spilled = self.body.split_off(keep);
        self.spilled += spilled.len();
        spilled
    }

    /// The header section has not ended within `MAX_HEADER_SECTION`: the message will
    /// be refused once its terminator arrives.
    pub fn header_section_too_big(&mut self) {
        self.fail(DataError::HeaderSectionTooBig);
    }

    /// Feeds received bytes.
    pub fn feed(&mut self, input: &[u8]) -> Progress {
        let mut pos = 0;
        while pos < input.len() {
            let Some(nl) = input[pos..].iter().position(|&b| b == b'\n') else {
                self.hold_partial(&input[pos..]);
                return Progress::NeedMore;
            };
            let end = pos + nl + 1;
            let done = if std::mem::take(&mut self.overflowed) {
                // The rest of an over-long line: dropped, but inspected like any line.
                let mut rest = std::mem::take(&mut self.partial);
                rest.extend_from_slice(&input[pos..end]);
                self.after_crlf = rest.ends_with(b"\r\n");
                self.inspect(rest.strip_suffix(b"\r\n").unwrap_or(&rest[..rest.len() - 1]), self.after_crlf);
                rest.clear();
                self.partial = rest;
                false
            } else if self.partial.is_empty() {
                self.line(&input[pos..end])
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&input[pos..end]);
                let done = self.line(&line);
                line.clear();
                self.partial = line;
                done
            };
            pos = end;
            if done {
                return Progress::Done { consumed: pos };
            }
        }
        Progress::NeedMore
    }

    /// The message, or why it is refused. Call after `Done`.
    pub fn finish(self) -> Result<Message, DataError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(Message { eight_bit: self.eight_bit, body: self.body, spooled: None }),
        }
    }

    /// Keeps the start of a line until its LF arrives, bounded so a client that never
    /// sends LF cannot grow memory.
    fn hold_partial(&mut self, bytes: &[u8]) {
        if self.partial.len() + bytes.len() > MAX_TEXT_LINE {
            self.fail(DataError::LineTooLong);
            self.overflowed = true;
            // Keep only a CR at the very end: it may be the start of the CRLF we need.
            // What is dropped is still inspected, so the reply is the same however the
            // line was cut.
            let trailing_cr = bytes.last() == Some(&b'\r');
            let dropped = &bytes[..bytes.len() - usize::from(trailing_cr)];
            let mut all = std::mem::take(&mut self.partial);
            all.extend_from_slice(dropped);
            self.inspect(&all, true);
            all.clear();
            self.partial = all;
            if trailing_cr {
                self.partial.push(b'\r');
            }
            return;
        }
        self.partial.extend_from_slice(bytes);
    }

    /// Records the faults in line content (without its line ending; `crlf`: the line
    /// ended with CRLF, or has not ended yet).
    fn inspect(&mut self, content: &[u8], crlf: bool) {
        if !crlf || content.contains(&b'\r') {
            self.fail(DataError::BareLineEnding);
        }
        if content.contains(&0) {
            self.fail(DataError::Nul);
        }
    }

    /// One line including its LF. Returns true at the terminator.
    fn line(&mut self, line: &[u8]) -> bool {
        let after_crlf = std::mem::replace(&mut self.after_crlf, line.ends_with(b"\r\n"));
        let Some(content) = line.strip_suffix(b"\r\n") else {
            // A bare LF. Never treat it as the end of a line of ours; keep looking for the
            // real terminator and refuse the message then.
            self.inspect(&line[..line.len() - 1], false);
            return false;
        };
        if content == b"." && after_crlf {
            return true;
        }
        self.inspect(content, true);
        if line.len() > MAX_TEXT_LINE {
            self.fail(DataError::LineTooLong);
        }
        if self.error.is_some() {
            return false;
        }
        // RFC 5321 §4.5.2: a leading dot was doubled by the client; remove one.
        let unstuffed = if line.first() == Some(&b'.') { &line[1..] } else { line };
        if self.spilled + self.body.len() + unstuffed.len() > self.max_size {
            self.fail(DataError::TooBig);
            return false;
        }
        self.eight_bit |= !unstuffed.is_ascii();
        self.body.extend_from_slice(unstuffed);
        false
    }

    fn fail(&mut self, error: DataError) {
        // The gravest problem is the one reported; drop what was read so far.
        if self.error.is_none_or(|e| error > e) {
            self.error = Some(error);
            self.body = Vec::new();
        }
    }
}

/// A message body as received: unstuffed, CRLF line endings.
#[derive(Debug)]
pub struct Message {
    /// The message; for a spooled one, its head and then what came after the last
    /// spooled chunk (the chunks go between the two, at `Spooled::head`).
    pub body: Vec<u8>,
    pub eight_bit: bool,
    pub spooled: Option<Spooled>,
}

/// Where the middle of a large message went while it arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spooled {
    /// The spool's chunks (`store::spool_chunks`).
    pub id: uuid::Uuid,
    /// The head's length in `Message::body`: the chunks follow it.
    pub head: usize,
    /// Bytes in the chunks.
    pub bytes: usize,
}

impl Message {
    /// The message's whole size, spooled bytes included.
    pub fn size(&self) -> usize {
        self.body.len() + self.spooled.map_or(0, |s| s.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8], max: usize) -> (Result<Message, DataError>, usize) {
        let mut reader = DataReader::new(max);
        match reader.feed(input) {
            Progress::Done { consumed } => (reader.finish(), consumed),
            Progress::NeedMore => panic!("no terminator found"),
        }
    }

    /// Feeding byte by byte must give exactly what feeding at once gives.
    fn read_bytewise(input: &[u8], max: usize) -> (Result<Message, DataError>, usize) {
        let mut reader = DataReader::new(max);
        for (i, b) in input.iter().enumerate() {
            if let Progress::Done { consumed } = reader.feed(std::slice::from_ref(b)) {
                assert_eq!(consumed, 1);
                return (reader.finish(), i + 1);
            }
        }
        panic!("no terminator found")
    }

    #[test]
    fn reads_until_crlf_dot_crlf_and_unstuffs() {
        let input = b"Subject: hi\r\n\r\n..leading dot\r\nbody\r\n.\r\nQUIT\r\n";
        for (result, consumed) in [read_all(input, 1000), read_bytewise(input, 1000)] {
            assert_eq!(result.unwrap().body, b"Subject: hi\r\n\r\n.leading dot\r\nbody\r\n");
            assert_eq!(&input[consumed..], b"QUIT\r\n");
        }
    }

    #[test]
    fn non_canonical_terminators_never_end_the_message() {
        // Each of these contains a smuggled second message behind a fake terminator.
        for fake in [&b"\n.\n"[..], b"\n.\r\n", b"\r.\r\n", b"\r\n.\n", b"\r\n.\r\r\n", b"\r\n\0.\r\n"] {
            let mut input = b"Subject: a\r\n\r\nfirst".to_vec();
            input.extend_from_slice(fake);
            input
                .extend_from_slice(b"MAIL FROM:<evil@x.example>\r\nRCPT TO:<v@y.example>\r\nDATA\r\nsmuggled\r\n.\r\n");
            for (result, consumed) in [read_all(&input, 10_000), read_bytewise(&input, 10_000)] {
                assert_eq!(consumed, input.len(), "only the final CRLF.CRLF ends DATA for {fake:?}");
                assert!(result.is_err(), "message with {fake:?} must be refused");
            }
        }
    }

    #[test]
    fn limits_are_enforced_while_streaming() {
        let big = [b"x".repeat(90), b"\r\n".to_vec()].concat().repeat(20);
        let input = [big, b".\r\n".to_vec()].concat();
        assert_eq!(read_all(&input, 1000).0.unwrap_err(), DataError::TooBig);
        let long = [b"y".repeat(1200), b"\r\n.\r\n".to_vec()].concat();
        assert_eq!(read_all(&long, 100_000).0.unwrap_err(), DataError::LineTooLong);
        assert_eq!(read_bytewise(&long, 100_000).0.unwrap_err(), DataError::LineTooLong);
        assert_eq!(read_all(b"a\0b\r\n.\r\n", 1000).0.unwrap_err(), DataError::Nul);
    }

    #[test]
    fn the_tail_of_an_overlong_line_is_never_a_terminator() {
        // Split so that, after the long start is dropped, the tail reads ".\r\n".
        let mut reader = DataReader::new(100_000);
        assert_eq!(reader.feed(&b"z".repeat(1500)), Progress::NeedMore);
        assert_eq!(reader.feed(b".\r\nMAIL FROM:<a@b.example>\r\n"), Progress::NeedMore);
        assert_eq!(reader.feed(b".\r\n"), Progress::Done { consumed: 3 });
        assert_eq!(reader.finish().unwrap_err(), DataError::LineTooLong);
    }

    /// Found by the `data` fuzz target: a NUL after the 1000th byte of a line was seen
    /// when the line arrived in one read and dropped unseen when it arrived in pieces.
    #[test]
    fn the_gravest_fault_is_reported_however_the_line_was_cut() {
        let mut input = vec![b'a'; 1030];
        input[1010] = 0;
        input.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(read_all(&input, 1 << 20).0.unwrap_err(), DataError::Nul);
        assert_eq!(read_bytewise(&input, 1 << 20).0.unwrap_err(), DataError::Nul);
        input[1020] = b'\r';
        assert_eq!(read_all(&input, 1 << 20).0.unwrap_err(), DataError::BareLineEnding);
        assert_eq!(read_bytewise(&input, 1 << 20).0.unwrap_err(), DataError::BareLineEnding);
    }

    #[test]
    fn eight_bit_content_is_noticed() {
        assert!(read_all("Grüße\r\n.\r\n".as_bytes(), 1000).0.unwrap().eight_bit);
        assert!(!read_all(b"plain\r\n.\r\n", 1000).0.unwrap().eight_bit);
    }
}

/// Properties over generated input (proptest): the DATA reader is blind to how the bytes
/// are cut into reads.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Feeds `input` in the given pieces until the terminator; returns where it ended
    /// (offset into `input`) and the message or refusal.
    fn read(input: &[u8], cuts: &[usize]) -> (Option<usize>, Option<Result<Message, DataError>>) {
        let mut reader = DataReader::new(4096);
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        bounds.extend([0, input.len()]);
        bounds.sort_unstable();
        bounds.dedup();
        for window in bounds.windows(2) {
            if let Progress::Done { consumed } = reader.feed(&input[window[0]..window[1]]) {
                return (Some(window[0] + consumed), Some(reader.finish()));
            }
        }
        (None, None)
    }

    /// Bytes that make line structure likely: CR, LF, dots, NUL, letters.
    fn stream() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(prop::sample::select(vec![b'\r', b'\n', b'.', b'\0', b'a', b'b', 0xC3, b' ']), 0..300)
    }

    proptest! {
        #[test]
        fn splitting_a_stream_anywhere_gives_the_same_message(
            data in stream(),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let mut input = data.clone();
            input.extend_from_slice(b"\r\n.\r\nNOOP\r\n");
            let whole = read(&input, &[]);
            let split = read(&input, &cuts);
            prop_assert_eq!(&whole.0, &split.0);
            prop_assert_eq!(format!("{:?}", whole.1), format!("{:?}", split.1));
            // One terminator: never more than one message, and what follows stays unread.
            prop_assert!(whole.0.is_some_and(|end| end <= input.len() - b"NOOP\r\n".len()));
        }
    }
}
