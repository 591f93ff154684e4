//! NDJSON line framing of the Ollama backend: the body fed whole and cut into chunks
//! gives the same lines; a line over the cap is a typed error; each line is then read
//! as JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use optillm_core::BackendError;
use optillm_http::check_pending;
use optillm_ollama::ndjson::LineBuffer;

fn read(chunks: &[&[u8]], limit: usize) -> (Vec<Vec<u8>>, bool) {
    let mut b = LineBuffer::new();
    let mut out = Vec::new();
    for c in chunks {
        b.push(c);
        while let Some(l) = b.next_line() {
            out.push(l);
        }
        match check_pending(b.pending(), limit, "a line") {
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
    for line in &whole {
        let _ = serde_json::from_slice::<serde_json::Value>(line);
    }
});
