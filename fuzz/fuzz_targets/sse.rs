//! Server-sent-events framing: the body fed whole and cut into chunks gives the same
//! events; an event over the cap is a typed error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use optillm_core::BackendError;
use optillm_http::check_pending;
use optillm_openai::sse::{SseBuffer, SseEvent};

/// Feeds `chunks` as the backend does; the events and whether the cap stopped it.
fn read(chunks: &[&[u8]], limit: usize) -> (Vec<SseEvent>, bool) {
    let mut b = SseBuffer::new();
    let mut out = Vec::new();
    for c in chunks {
        b.push(c);
        while let Some(e) = b.next_event() {
            out.push(e);
        }
        match check_pending(b.pending(), limit, "an event") {
            Ok(()) => assert!(b.pending() <= limit),
            Err(BackendError::TooLarge { limit: l, .. }) if l == limit => return (out, true),
            Err(e) => panic!("{e:?}"),
        }
    }
    out.extend(b.finish());
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    // The first byte sets the chunk size, the second the cap; the rest is the body.
    let [size, cap, body @ ..] = data else {
        return;
    };
    let size = usize::from(*size).max(1);
    let limit = usize::from(*cap) * 16 + 1;
    let (whole, _) = read(&[body], usize::MAX);
    let chunks: Vec<&[u8]> = body.chunks(size).collect();
    let (cut, _) = read(&chunks, usize::MAX);
    assert_eq!(cut, whole);
    let (capped, stopped) = read(&chunks, limit);
    if !stopped {
        assert_eq!(capped, whole);
    }
});
