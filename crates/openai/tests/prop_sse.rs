//! Property tests of the server-sent-events framing that reads every streamed answer of
//! an OpenAI-compatible server: chunk boundaries do not change the events, arbitrary
//! bytes never panic, events follow the SSE rules, and an event that never ends is a
//! typed error once over the cap instead of a buffer that keeps growing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use optillm_core::BackendError;
use optillm_http::check_pending;
use optillm_openai::sse::{SseBuffer, SseEvent};
use proptest::prelude::*;

/// The events of `chunks` fed one by one, then `finish`, as the backend reads them.
fn events_of(chunks: &[&[u8]]) -> Vec<SseEvent> {
    let mut b = SseBuffer::new();
    let mut out = Vec::new();
    for c in chunks {
        b.push(c);
        while let Some(e) = b.next_event() {
            out.push(e);
        }
    }
    out.extend(b.finish());
    out
}

/// `body` cut at `cuts` (indices into it, any order, repeats allowed).
fn split<'a>(body: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(body.len() + 1)).collect();
    at.push(0);
    at.push(body.len());
    at.sort_unstable();
    at.windows(2).map(|w| &body[w[0]..w[1]]).collect()
}

/// A straightforward reading of the SSE rules on the whole body: lines end in `\n`
/// (a `\r` before it dropped), a blank line dispatches the event if it has data,
/// `:` starts a comment, `data:` lines are joined with `\n`, one space after the
/// colon is dropped; at the end, a pending event with data is dispatched.
fn reference(body: &[u8]) -> Vec<SseEvent> {
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

/// SSE-like lines: data (JSON, empty, without the space, multi-byte), event names,
/// comments, unknown fields, blank lines, bare `\r`, invalid UTF-8.
fn line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(
            &[
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
            ][..]
        )
        .prop_map(|s| s.as_bytes().to_vec()),
        "\\PC{0,12}".prop_map(|s| format!("data: {s}").into_bytes()),
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

fn sse_body() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(line(), 0..24),
        prop::collection::vec(any::<u8>(), 0..4),
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
/// events read and the error that stopped the reading, if any.
fn capped(chunks: &[&[u8]], limit: usize) -> (Vec<SseEvent>, Option<BackendError>) {
    let mut b = SseBuffer::new();
    let mut out = Vec::new();
    for c in chunks {
        b.push(c);
        while let Some(e) = b.next_event() {
            out.push(e);
        }
        if let Err(e) = check_pending(b.pending(), limit, "an event") {
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
    fn arbitrary_bytes_split_anywhere_give_the_same_events(
        body in prop::collection::vec(any::<u8>(), 0..300),
        cuts in cuts(),
    ) {
        let whole = events_of(&[&body]);
        prop_assert_eq!(events_of(&split(&body, &cuts)), whole.clone());
        prop_assert_eq!(whole, reference(&body));
    }

    #[test]
    fn sse_bodies_split_anywhere_give_the_same_events(body in sse_body(), cuts in cuts()) {
        let whole = events_of(&[&body]);
        prop_assert_eq!(events_of(&split(&body, &cuts)), whole.clone());
        // Byte by byte, the worst case for the buffering.
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        prop_assert_eq!(events_of(&bytes), whole.clone());
        prop_assert_eq!(whole, reference(&body));
    }

    #[test]
    fn under_the_cap_the_events_are_all_read(body in sse_body(), cuts in cuts()) {
        // Generated events stay far below this cap: none is refused.
        let (events, error) = capped(&split(&body, &cuts), 4096);
        prop_assert!(error.is_none(), "{error:?}");
        prop_assert_eq!(events, events_of(&[&body]));
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
        let chunks: Vec<&[u8]> = body.chunks(chunk).collect();
        let (events, error) = capped(&chunks, limit);
        prop_assert!(events.is_empty());
        match error {
            Some(BackendError::TooLarge { what, limit: l }) => {
                prop_assert_eq!(what, "an event");
                prop_assert_eq!(l, limit);
            }
            other => prop_assert!(false, "expected TooLarge, got {:?}", other),
        }
    }
}
