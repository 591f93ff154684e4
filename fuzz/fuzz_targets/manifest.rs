//! The manifest reader on any text: a manifest or a typed error naming its origin.
#![no_main]

use libfuzzer_sys::fuzz_target;
use optillm_models::{Manifest, ModelsError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Manifest::parse(text, "fuzz") {
        Ok(m) => {
            for a in m.artifacts() {
                assert!(m.get(&a.name).is_some());
                assert!(a.size > 0 && !a.sources.is_empty());
            }
        }
        Err(
            ModelsError::ManifestParse { origin, .. } | ModelsError::InvalidManifest { origin, .. },
        ) => {
            assert_eq!(origin, "fuzz");
        }
        Err(e) => panic!("{e:?}"),
    }
});
