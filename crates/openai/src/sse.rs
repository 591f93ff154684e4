//! Server-sent-events framing of the streamed answers: the shared
//! [`optillm_http::framing::SseBuffer`].

pub use optillm_http::framing::{SseBuffer, SseEvent};
