//! The approach-spec parser: no panic; an error points inside the input and shows it;
//! a parsed spec's display parses back to the same spec.
#![no_main]

use libfuzzer_sys::fuzz_target;
use optillm_core::spec::{self, MAX_SPEC_CHARS, SpecError};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    match spec::parse(input) {
        Ok(parsed) => {
            let shown = parsed.to_string();
            let again = spec::parse(&shown);
            assert_eq!(again.as_ref().ok(), Some(&parsed), "{input:?} -> {shown:?}");
        }
        Err(SpecError::BadSpec { position, message }) => {
            let chars = input.chars().count();
            if chars > MAX_SPEC_CHARS {
                assert_eq!(position, MAX_SPEC_CHARS);
            } else {
                assert!(position <= chars, "{input:?}: {position}");
                assert!(message.contains(input), "{input:?}: {message}");
            }
        }
        Err(other) => panic!("{input:?}: {other:?}"),
    }
});
