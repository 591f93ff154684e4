//! Property tests of the framing that reads every streamed answer of a remote backend:
//! NDJSON lines (Ollama, `framing::LineBuffer`) and server-sent events (OpenAI-compatible
//! servers, `framing::SseBuffer`), read as the backends read them (`framing::frames_of`:
//! the cap of `check_pending` applied after each chunk). For both: chunk boundaries do
//! not change the frames, arbitrary bytes never panic, the frames are those of a plain
//! reading of the format's rules, and a frame that never ends is a typed error once over
//! the cap instead of a buffer that keeps growing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Debug;

use optillm_core::BackendError;
use optillm_http::framing::{Framer, LineBuffer, SseBuffer, SseEvent, frames_of};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// The frames of `chunks`, with no cap.
fn all<F: Framer>(chunks: &[&[u8]]) -> Vec<F::Frame> {
    let (frames, error) = frames_of::<F>(chunks, usize::MAX);
    assert!(error.is_none());
    frames
}

/// `body` cut at `cuts` (indices into it, any order, repeats allowed).
fn split<'a>(body: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(body.len() + 1)).collect();
    at.push(0);
    at.push(body.len());
    at.sort_unstable();
    at.windows(2).map(|w| &body[w[0]..w[1]]).collect()
}

/// Whole, cut at `cuts`, byte by byte: the same frames, those of `reference`.
fn same_frames_however_cut<F: Framer>(
    body: &[u8],
    cuts: &[prop::sample::Index],
    reference: fn(&[u8]) -> Vec<F::Frame>,
) -> Result<(), TestCaseError>
where
    F::Frame: PartialEq + Debug,
{
    let whole = all::<F>(&[body]);
    prop_assert_eq!(&all::<F>(&split(body, cuts)), &whole);
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    prop_assert_eq!(&all::<F>(&bytes), &whole);
    prop_assert_eq!(whole, reference(body));
    Ok(())
}

/// Under a cap far above every frame: all frames are read, none refused.
fn under_the_cap<F: Framer>(body: &[u8], cuts: &[prop::sample::Index]) -> Result<(), TestCaseError>
where
    F::Frame: PartialEq + Debug,
{
    let (frames, error) = frames_of::<F>(&split(body, cuts), 4096);
    prop_assert!(error.is_none(), "{error:?}");
    prop_assert_eq!(frames, all::<F>(&[body]));
    Ok(())
}

/// A body whose last frame never ends, fed `chunk` bytes at a time: the frames complete
/// before it, then `TooLarge` naming the frame and the cap.
fn past_the_cap<F: Framer>(
    body: &[u8],
    chunk: usize,
    limit: usize,
    what: &str,
) -> Result<Vec<F::Frame>, TestCaseError> {
    let chunks: Vec<&[u8]> = body.chunks(chunk).collect();
    let (frames, error) = frames_of::<F>(&chunks, limit);
    match error {
        Some(BackendError::TooLarge { what: w, limit: l }) => {
            prop_assert_eq!(w, what);
            prop_assert_eq!(l, limit);
        }
        other => prop_assert!(false, "expected TooLarge, got {:?}", other),
    }
    Ok(frames)
}

/// Lines made of `pieces` (canned and generated), each ended by `\n` or `\r\n`; then a
/// tail that may be a last line without its `\n`.
fn body_of(
    pieces: impl Strategy<Value = Vec<u8>> + Clone + 'static,
    tail: usize,
) -> impl Strategy<Value = Vec<u8>> {
    let line = pieces.prop_flat_map(|l| {
        prop_oneof![Just(b"\n".to_vec()), Just(b"\r\n".to_vec())].prop_map(move |end| {
            let mut l = l.clone();
            l.extend(end);
            l
        })
    });
    (
        prop::collection::vec(line, 0..24),
        prop::collection::vec(any::<u8>(), 0..tail),
    )
        .prop_map(|(lines, tail)| {
            let mut body = lines.concat();
            body.extend(tail);
            body
        })
}

fn canned(lines: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> + Clone {
    prop::sample::select(lines).prop_map(|s| s.as_bytes().to_vec())
}

/// NDJSON-like lines: Ollama chat chunks, the final line, error lines, blank lines,
/// multi-byte text, invalid UTF-8.
fn ndjson_body() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop_oneof![
        canned(&[
            "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"caf\u{e9} \u{1F600}\"},\"done\":false}",
            "{\"model\":\"m\",\"done\":true,\"done_reason\":\"stop\",\"eval_count\":3}",
            "{\"error\":\"model 'x' not found\"}",
            "{}",
            "",
            "\r",
            " \t ",
            "{\"done\":tr",
        ]),
        "\\PC{0,16}".prop_map(|s| format!("{{\"message\":{{\"content\":{s:?}}}}}").into_bytes()),
        prop::collection::vec(any::<u8>(), 0..12),
    ];
    body_of(pieces, 6)
}

/// SSE-like lines: data (JSON, empty, without the space, multi-byte), event names,
/// comments, unknown fields, blank lines, bare `\r`, invalid UTF-8.
fn sse_body() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop_oneof![
        canned(&[
            "data: {\"choices\":[{\"delta\":{\"content\":\"caf\u{e9} \u{1F600}\"}}]}",
            "data: [DONE]",
            "data:",
            "data: ",
            "data:x",
            "data",
            "event: error",
            "event:",
            "event",
            ": keep-alive",
            ":",
            "id: 7",
            "retry: 10",
            "",
            "\r",
            " data: x",
        ]),
        "\\PC{0,12}".prop_map(|s| format!("data: {s}").into_bytes()),
        prop::collection::vec(any::<u8>(), 0..12),
    ];
    body_of(pieces, 4)
}

/// The lines of a whole body read directly: split at `\n`, one `\r` before it dropped;
/// the last piece is a line too unless it is only whitespace.
fn ndjson_reference(body: &[u8]) -> Vec<Vec<u8>> {
    let mut pieces: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    let last = pieces.pop().unwrap_or_default();
    let mut lines: Vec<Vec<u8>> = pieces
        .into_iter()
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
        .collect();
    if !last.iter().all(u8::is_ascii_whitespace) {
        lines.push(last.to_vec());
    }
    lines
}

/// A straightforward reading of the SSE rules on the whole body: lines end in `\n`
/// (a `\r` before it dropped), a blank line dispatches the event if it has data,
/// `:` starts a comment, `data:` lines are joined with `\n`, one space after the
/// colon is dropped; at the end, a pending event with data is dispatched.
fn sse_reference(body: &[u8]) -> Vec<SseEvent> {
    let mut out = Vec::new();
    let mut data: Option<Vec<u8>> = None;
    let mut event: Option<String> = None;
    let mut dispatch = |data: &mut Option<Vec<u8>>, event: &mut Option<String>| {
        let name = event.take();
        if let Some(d) = data.take() {
            out.push(SseEvent {
                event: name,
                data: d,
            });
        }
    };
    for line in body.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            dispatch(&mut data, &mut event);
            continue;
        }
        if line[0] == b':' {
            continue;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &[][..]),
        };
        match name {
            b"data" => match &mut data {
                Some(d) => {
                    d.push(b'\n');
                    d.extend_from_slice(value);
                }
                None => data = Some(value.to_vec()),
            },
            b"event" => event = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
    }
    dispatch(&mut data, &mut event);
    out
}

fn cuts() -> impl Strategy<Value = Vec<prop::sample::Index>> {
    prop::collection::vec(any::<prop::sample::Index>(), 0..16)
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..300)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_give_the_same_lines_however_cut(body in bytes(), cuts in cuts()) {
        same_frames_however_cut::<LineBuffer>(&body, &cuts, ndjson_reference)?;
    }

    #[test]
    fn arbitrary_bytes_give_the_same_events_however_cut(body in bytes(), cuts in cuts()) {
        same_frames_however_cut::<SseBuffer>(&body, &cuts, sse_reference)?;
    }

    #[test]
    fn ndjson_bodies_give_the_same_lines_however_cut(body in ndjson_body(), cuts in cuts()) {
        same_frames_however_cut::<LineBuffer>(&body, &cuts, ndjson_reference)?;
    }

    #[test]
    fn sse_bodies_give_the_same_events_however_cut(body in sse_body(), cuts in cuts()) {
        same_frames_however_cut::<SseBuffer>(&body, &cuts, sse_reference)?;
    }

    #[test]
    fn lines_are_decoded_only_when_whole(text in "\\PC{0,40}", cuts in cuts()) {
        // A multi-byte character cut between chunks comes out whole.
        let body = format!("{text}\n{text}");
        let lines = all::<LineBuffer>(&split(body.as_bytes(), &cuts));
        let first = lines.first().map(|l| std::str::from_utf8(l).map(str::to_string));
        prop_assert_eq!(first, Some(Ok(text.strip_suffix('\r').unwrap_or(&text).to_string())));
        if !text.trim_matches(|c: char| c.is_ascii_whitespace()).is_empty() {
            prop_assert_eq!(lines.get(1), Some(&text.into_bytes()));
        }
    }

    #[test]
    fn under_the_cap_every_line_and_event_is_read(
        lines in ndjson_body(),
        events in sse_body(),
        cuts in cuts(),
    ) {
        under_the_cap::<LineBuffer>(&lines, &cuts)?;
        under_the_cap::<SseBuffer>(&events, &cuts)?;
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
        let lines = past_the_cap::<LineBuffer>(&body, chunk, limit, "a line")?;
        // The complete lines that fit are read before the error; none after it.
        prop_assert!(lines.len() <= short_lines_first);
        if complete + chunk <= limit {
            prop_assert_eq!(lines.len(), short_lines_first);
        }
    }

    #[test]
    fn an_event_past_the_cap_is_a_typed_error_not_growth(
        limit in 1usize..512,
        chunk in 1usize..64,
        line_break in any::<bool>(),
    ) {
        // An event that never ends: one endless data line, or endless data lines.
        let unit: &[u8] = if line_break { b"data: xx\n" } else { b"xxxxxxxx" };
        let body: Vec<u8> = unit.iter().copied().cycle().take(limit * 4 + 64).collect();
        let events = past_the_cap::<SseBuffer>(&body, chunk, limit, "an event")?;
        prop_assert!(events.is_empty());
    }
}
