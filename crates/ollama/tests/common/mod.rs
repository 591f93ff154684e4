//! The shared loopback test server (optillm-http, feature `test-server`).

pub use optillm_http::test_server::*;
