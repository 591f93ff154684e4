//! Server-sent-events framing: the body fed whole and cut into chunks gives the same
//! events; an event over the cap is a typed error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use optillm_http::framing::SseBuffer;

mod common;

fuzz_target!(|data: &[u8]| {
    common::framing::<SseBuffer>(data);
});
