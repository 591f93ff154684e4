//! The server's model-name splitters: a split name is the spec's prefix, `-`
//! and the rest; names over the server's cap are refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use optillm_core::spec;
use optillm_server::ModelInfo;
use optillm_server::approach::{MAX_MODEL_NAME_BYTES, split_model, split_model_name};

fuzz_target!(|data: &[u8]| {
    let Ok(name) = std::str::from_utf8(data) else {
        return;
    };
    let (parsed, rest) = split_model_name(name);
    if rest == name {
        assert!(parsed.is_none(), "{name:?}");
    } else {
        let prefix = name
            .len()
            .checked_sub(rest.len() + 1)
            .and_then(|n| name.get(..n))
            .unwrap_or_else(|| panic!("{name:?}: rest {rest:?}"));
        assert_eq!(format!("{prefix}-{rest}"), name);
        assert_eq!(spec::parse(prefix).ok(), Some(parsed));
    }
    let known = [ModelInfo::new("smollm2-135m"), ModelInfo::new("moa-x")];
    match split_model(name, &known) {
        Ok((_, model)) => {
            assert!(name.len() <= MAX_MODEL_NAME_BYTES, "{} bytes", name.len());
            let untagged = name.strip_suffix(":latest").unwrap_or(name);
            assert!(
                name.ends_with(&model) || untagged.ends_with(&model),
                "{name:?}"
            );
        }
        Err(e) => assert!(name.len() > MAX_MODEL_NAME_BYTES, "{name:?}: {}", e.message),
    }
});
