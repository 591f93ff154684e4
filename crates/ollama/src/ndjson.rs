//! NDJSON line framing of Ollama's streamed answers: the shared
//! [`optillm_http::framing::LineBuffer`].

pub use optillm_http::framing::LineBuffer;
