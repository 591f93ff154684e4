//! The GGUF readers that run before llama.cpp sees a file: `check_gguf` (the magic) and
//! `gguf_context_length` (a walk over the metadata header). Any bytes give a typed
//! error or `None`, never a panic or a loop driven by a count in the header.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use optillm_llama::{LlamaError, check_gguf, gguf_context_length};

fuzz_target!(|data: &[u8]| {
    let Ok(mut file) = tempfile::NamedTempFile::new() else {
        return;
    };
    if file.write_all(data).and_then(|()| file.flush()).is_err() {
        return;
    }
    match check_gguf(file.path()) {
        Ok(()) => assert!(data.starts_with(b"GGUF")),
        Err(LlamaError::NotGguf(_)) => assert!(!data.starts_with(b"GGUF")),
        Err(e) => panic!("{e:?}"),
    }
    let length = gguf_context_length(file.path());
    if !data.starts_with(b"GGUF") {
        assert_eq!(length, None);
    }
});
