//! Property tests of the NDJSON line framing that reads every streamed answer of an
//! Ollama server (`ndjson::LineBuffer`, with the cap of `optillm_http::check_pending`
//! applied after each chunk as the backend does): chunk boundaries do not change the
//! lines, arbitrary bytes never panic, and a line that never ends is a typed error once
//! over the cap instead of a buffer that keeps growing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use optillm_core::BackendError;
use optillm_http::check_pending;
use optillm_ollama::ndjson::LineBuffer;
use proptest::prelude::*;

/// The lines of `chunks` fed one by one, and what `finish` returns.
fn lines_of(chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Option<Vec<u8>>) {
    let mut b = LineBuffer::new();
    let mut out = Vec::new();
    for c in chunks {
        b.push(c);
        while let Some(l) = b.next_line() {
            out.push(l);
        }
    }
    let rest = b.finish();
    assert_eq!(b.pending(), 0, "finish leaves nothing behind");
    (out, rest)
}

/// `body` cut at `cuts` (indices into it, any order, repeats allowed).
fn split<'a>(body: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(body.len() + 1)).collect();
    at.push(0);
    at.push(body.len());
    at.sort_unstable();
    at.windows(2).map(|w| &body[w[0]..w[1]]).collect()
}

/// The lines of the whole body read directly: split at `\n`, one `\r` before it
/// dropped; the last piece is the rest unless it is only whitespace.
fn reference(body: &[u8]) -> (Vec<Vec<u8>>, Option<Vec<u8>>) {
    let mut pieces: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    let last = pieces.pop().unwrap_or_default();
    let lines = pieces
        .into_iter()
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
        .collect();
    let rest = (!last.iter().all(u8::is_ascii_whitespace)).then(|| last.to_vec());
    (lines, rest)
}

/// NDJSON-like lines: Ollama chat chunks, the final line, error lines, blank lines,
/// multi-byte text, invalid UTF-8, CRLF endings.
fn line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(
            &[
                "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"caf\u{e9} \u{1F600}\"},\"done\":false}",
                "{\"model\":\"m\",\"done\":true,\"done_reason\":\"stop\",\"eval_count\":3}",
                "{\"error\":\"model 'x' not found\"}",
                "{}",
                "",
                "\r",
                " \t ",
                "{\"done\":tr",
            ][..]
        )
        .prop_map(|s| s.as_bytes().to_vec()),
        "\\PC{0,16}".prop_map(|s| format!("{{\"message\":{{\"content\":{s:?}}}}}").into_bytes()),
        prop::collection::vec(any::<u8>(), 0..12),
    ]
    .prop_flat_map(|l| {
        prop_oneof![Just(b"\n".to_vec()), Just(b"\r\n".to_vec())].prop_map(move |end| {
            let mut l = l.clone();
            l.extend(end);
            l
        })
    })
}

fn ndjson_body() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(line(), 0..24),
        prop::collection::vec(any::<u8>(), 0..6),
    )
        .prop_map(|(lines, tail)| {
            let mut body = lines.concat();
            // Sometimes a last line without its `\n`.
            body.extend(tail);
            body
        })
}

fn cuts() -> impl Strategy<Value = Vec<prop::sample::Index>> {
    prop::collection::vec(any::<prop::sample::Index>(), 0..16)
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Feeds `chunks` as the backend does, checking the cap after each chunk; returns the
/// lines read and the error that stopped the reading, if any.
fn capped(chunks: &[&[u8]], limit: usize) -> (Vec<Vec<u8>>, Option<BackendError>) {
    let mut b = LineBuffer::new();
    let mut out = Vec::new();
    for c in chunks {
        b.push(c);
        while let Some(l) = b.next_line() {
            out.push(l);
        }
        if let Err(e) = check_pending(b.pending(), limit, "a line") {
            return (out, Some(e));
        }
        assert!(b.pending() <= limit);
    }
    out.extend(b.finish());
    (out, None)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_bytes_split_anywhere_give_the_same_lines(
        body in prop::collection::vec(any::<u8>(), 0..300),
        cuts in cuts(),
    ) {
        let whole = lines_of(&[&body]);
        prop_assert_eq!(lines_of(&split(&body, &cuts)), whole.clone());
        prop_assert_eq!(whole, reference(&body));
    }

    #[test]
    fn ndjson_bodies_split_anywhere_give_the_same_lines(body in ndjson_body(), cuts in cuts()) {
        let whole = lines_of(&[&body]);
        prop_assert_eq!(lines_of(&split(&body, &cuts)), whole.clone());
        // Byte by byte, the worst case for the buffering.
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        prop_assert_eq!(lines_of(&bytes), whole.clone());
        prop_assert_eq!(whole, reference(&body));
    }

    #[test]
    fn lines_are_decoded_only_when_whole(text in "\\PC{0,40}", cuts in cuts()) {
        // A multi-byte character cut between chunks comes out whole.
        let body = format!("{text}\n{text}");
        let (lines, rest) = lines_of(&split(body.as_bytes(), &cuts));
        let first = lines.first().map(|l| std::str::from_utf8(l).map(str::to_string));
        prop_assert_eq!(first, Some(Ok(text.strip_suffix('\r').unwrap_or(&text).to_string())));
        if !text.trim_matches(|c: char| c.is_ascii_whitespace()).is_empty() {
            prop_assert_eq!(rest, Some(text.into_bytes()));
        }
    }

    #[test]
    fn under_the_cap_the_lines_are_all_read(body in ndjson_body(), cuts in cuts()) {
        // Generated lines stay far below this cap: none is refused.
        let (lines, error) = capped(&split(&body, &cuts), 4096);
        prop_assert!(error.is_none(), "{error:?}");
        let (mut want, rest) = lines_of(&[&body]);
        want.extend(rest);
        prop_assert_eq!(lines, want);
    }

    #[test]
    fn a_line_past_the_cap_is_a_typed_error_not_growth(
        limit in 1usize..512,
        chunk in 1usize..64,
        short_lines_first in 0usize..8,
    ) {
        // A few complete lines, then one that never ends.
        let mut body: Vec<u8> = b"{\"done\":false}\n".repeat(short_lines_first);
        let complete = body.len();
        body.extend(std::iter::repeat_n(b'x', limit * 2 + 64));
        let chunks: Vec<&[u8]> = body.chunks(chunk).collect();
        let (lines, error) = capped(&chunks, limit);
        // The complete lines that fit are read before the error; none after it.
        prop_assert!(lines.len() <= short_lines_first);
        if complete + chunk <= limit {
            prop_assert_eq!(lines.len(), short_lines_first);
        }
        match error {
            Some(BackendError::TooLarge { what, limit: l }) => {
                prop_assert_eq!(what, "a line");
                prop_assert_eq!(l, limit);
            }
            other => prop_assert!(false, "expected TooLarge, got {:?}", other),
        }
    }
}
