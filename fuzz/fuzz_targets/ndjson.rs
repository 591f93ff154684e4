//! NDJSON line framing of the Ollama backend: the body fed whole and cut into chunks
//! gives the same lines; a line over the cap is a typed error; each line is then read
//! as JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use optillm_http::framing::LineBuffer;

mod common;

fuzz_target!(|data: &[u8]| {
    for line in common::framing::<LineBuffer>(data) {
        let _ = serde_json::from_slice::<serde_json::Value>(&line);
    }
});
