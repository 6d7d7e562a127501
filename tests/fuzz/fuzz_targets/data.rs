//! The DATA reader on arbitrary streams cut at arbitrary points: the same message (or
//! the same refusal) and the same end position whatever the cuts, never more than one
//! message per terminator, and an accepted body holds only CRLF line endings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_protocol::data::{DataReader, Progress};

/// Feeds `input` in pieces ending at `cuts`; the end of the message and what it read.
fn read(input: &[u8], cuts: &[usize]) -> Option<(usize, String)> {
    let mut reader = DataReader::new(4096);
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    bounds.extend([0, input.len()]);
    bounds.sort_unstable();
    bounds.dedup();
    for window in bounds.windows(2) {
        if let Progress::Done { consumed } = reader.feed(&input[window[0]..window[1]]) {
            assert!(consumed <= window[1] - window[0]);
            let end = window[0] + consumed;
            let message = reader.finish();
            if let Ok(message) = &message {
                check_canonical(&message.body);
            }
            return Some((end, format!("{message:?}")));
        }
    }
    None
}

/// Every CR is followed by LF and every LF preceded by CR: no bare line ending survives
/// into the queue, so none can reach the next hop.
fn check_canonical(body: &[u8]) {
    for (i, &b) in body.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(body.get(i + 1), Some(&b'\n'), "bare CR at {i}"),
            b'\n' => assert!(i > 0 && body[i - 1] == b'\r', "bare LF at {i}"),
            0 => panic!("NUL at {i}"),
            _ => {}
        }
    }
}

// The input is the raw stream after DATA's 354, so the corpus reads as SMTP; its first
// byte picks where the stream is cut.
fuzz_target!(|input: &[u8]| {
    let Some((&seed, data)) = input.split_first() else { return };
    let step = usize::from(seed % 13) + 1;
    let cuts: Vec<usize> = (0..data.len()).filter(|i| (i * 7 + usize::from(seed)) % step == 0).collect();
    let whole = read(data, &[]);
    let split = read(data, &cuts);
    assert_eq!(whole, split, "the cuts changed what was read");
    // Byte by byte: the slowest client sees the same outcome.
    let every: Vec<usize> = (0..=data.len()).collect();
    assert_eq!(whole, read(data, &every), "byte-by-byte feed changed what was read");
});
