//! Property tests of the two GGUF readers that run on any file a user names before
//! llama.cpp sees it: `check_gguf` (the magic) and `gguf_context_length` (a walk over the
//! metadata header). Arbitrary or corrupt bytes give a typed error or `None`, never a
//! panic, a huge allocation or a long loop; well-formed headers give the right length.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use optillm_llama::{LlamaError, check_gguf, gguf_context_length};
use proptest::prelude::*;

const STRING: u32 = 8;
const ARRAY: u32 = 9;

/// A metadata value as the generator builds it.
#[derive(Debug, Clone)]
enum Value {
    /// An integer of type 4 (u32), 5 (i32), 10 (u64) or 11 (i64), as its raw bits.
    Int(u32, u64),
    /// Another scalar type (0-3, 6, 7, 12) and its bytes.
    Scalar(u32, Vec<u8>),
    Str(Vec<u8>),
    /// An array of scalars: element type, count, element bytes.
    Array(u32, u64),
    StrArray(Vec<Vec<u8>>),
}

fn scalar_size(kind: u32) -> usize {
    match kind {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        _ => 8,
    }
}

fn encode_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s);
}

fn encode(version: u32, kvs: &[(String, Value)]) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend(version.to_le_bytes());
    out.extend(0u64.to_le_bytes());
    out.extend((kvs.len() as u64).to_le_bytes());
    for (key, value) in kvs {
        encode_str(&mut out, key.as_bytes());
        match value {
            Value::Int(kind, bits) => {
                out.extend(kind.to_le_bytes());
                match kind {
                    4 | 5 => out.extend((*bits as u32).to_le_bytes()),
                    _ => out.extend(bits.to_le_bytes()),
                }
            }
            Value::Scalar(kind, bytes) => {
                out.extend(kind.to_le_bytes());
                out.extend(bytes);
            }
            Value::Str(s) => {
                out.extend(STRING.to_le_bytes());
                encode_str(&mut out, s);
            }
            Value::Array(elem, count) => {
                out.extend(ARRAY.to_le_bytes());
                out.extend(elem.to_le_bytes());
                out.extend(count.to_le_bytes());
                out.extend(std::iter::repeat_n(
                    0xa5,
                    scalar_size(*elem) * *count as usize,
                ));
            }
            Value::StrArray(items) => {
                out.extend(ARRAY.to_le_bytes());
                out.extend(STRING.to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                for s in items {
                    encode_str(&mut out, s);
                }
            }
        }
    }
    out
}

/// What the header says: `<general.architecture>.context_length` as soon as both are
/// known (clamped to u32), negative lengths ignored.
fn expected(kvs: &[(String, Value)]) -> Option<u32> {
    let mut arch: Option<String> = None;
    let mut lengths: HashMap<String, u64> = HashMap::new();
    for (key, value) in kvs {
        match value {
            Value::Str(s) if key == "general.architecture" => {
                arch = Some(String::from_utf8_lossy(s).into_owned());
            }
            Value::Int(kind, bits) => {
                let v = match kind {
                    4 => Some(u64::from(*bits as u32)),
                    5 => u64::try_from(*bits as u32 as i32).ok(),
                    10 => Some(*bits),
                    _ => u64::try_from(*bits as i64).ok(),
                };
                if let (Some(v), Some(prefix)) = (v, key.strip_suffix(".context_length")) {
                    lengths.insert(prefix.to_string(), v);
                }
            }
            _ => {}
        }
        if let Some(v) = arch.as_ref().and_then(|a| lengths.get(a)) {
            return Some(u32::try_from(*v).unwrap_or(u32::MAX));
        }
    }
    None
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(
            &[
                "general.architecture",
                "general.name",
                "llama.context_length",
                "qwen2.context_length",
                "gemma3.context_length",
                ".context_length",
                "tokenizer.ggml.tokens",
            ][..]
        )
        .prop_map(String::from),
        "\\PC{0,12}",
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        (
            prop::sample::select(&[4u32, 5, 10, 11][..]),
            prop_oneof![0u64..200_000, any::<u64>()]
        )
            .prop_map(|(k, v)| Value::Int(k, v)),
        prop::sample::select(&[0u32, 1, 2, 3, 6, 7, 12][..]).prop_flat_map(|k| {
            prop::collection::vec(any::<u8>(), scalar_size(k))
                .prop_map(move |b| Value::Scalar(k, b))
        }),
        prop_oneof![
            prop::sample::select(&["llama", "qwen2", "gemma3", ""][..])
                .prop_map(|s| s.as_bytes().to_vec()),
            prop::collection::vec(any::<u8>(), 0..16),
        ]
        .prop_map(Value::Str),
        (
            prop::sample::select(&[0u32, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12][..]),
            0u64..40
        )
            .prop_map(|(e, n)| Value::Array(e, n)),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..8), 0..6)
            .prop_map(Value::StrArray),
    ]
}

fn header() -> impl Strategy<Value = Vec<(String, Value)>> {
    prop::collection::vec((key(), value()), 0..12)
}

/// Edits of a well-formed file: truncation, a changed byte, a huge count or length
/// written over 8 bytes.
#[derive(Debug, Clone)]
enum Edit {
    Truncate(prop::sample::Index),
    Byte(prop::sample::Index, u8),
    Huge(prop::sample::Index, u64),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Edit::Truncate),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Byte(i, b)),
        (
            any::<prop::sample::Index>(),
            prop_oneof![
                Just(u64::MAX),
                Just(1 << 24),
                Just((1 << 24) + 1),
                Just(1 << 40),
                any::<u64>()
            ]
        )
            .prop_map(|(i, v)| Edit::Huge(i, v)),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        if bytes.is_empty() {
            break;
        }
        match e {
            Edit::Truncate(i) => bytes.truncate(i.index(bytes.len())),
            Edit::Byte(i, b) => {
                let at = i.index(bytes.len());
                bytes[at] = *b;
            }
            Edit::Huge(i, v) => {
                let at = i.index(bytes.len());
                for (slot, b) in bytes.iter_mut().skip(at).zip(v.to_le_bytes()) {
                    *slot = b;
                }
            }
        }
    }
    bytes
}

/// Writes `bytes` to a temporary file and runs both readers on it, checking the
/// outcome types; returns the context length read.
fn read(bytes: &[u8]) -> Option<u32> {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(bytes).unwrap();
    file.flush().unwrap();
    let path = file.path();
    match check_gguf(path) {
        Ok(()) => assert!(bytes.starts_with(b"GGUF"), "{bytes:?}"),
        Err(LlamaError::NotGguf(p)) => {
            assert_eq!(p, path);
            assert!(!bytes.starts_with(b"GGUF"), "{bytes:?}");
        }
        Err(e) => panic!("unexpected error {e:?}"),
    }
    let start = Instant::now();
    let n = gguf_context_length(path);
    // Microseconds for these few bytes; the bound guards against a loop driven by a
    // count in the header instead of by the bytes present.
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    if !bytes.starts_with(b"GGUF") {
        assert_eq!(n, None);
    }
    n
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_bytes_are_an_error_or_none(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        read(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_the_magic_are_none_or_a_length(
        version in prop_oneof![Just(2u32), Just(3), any::<u32>()],
        rest in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend(version.to_le_bytes());
        bytes.extend(rest);
        read(&bytes);
    }

    #[test]
    fn well_formed_headers_give_the_architecture_length(
        version in prop_oneof![Just(2u32), Just(3)],
        kvs in header(),
    ) {
        prop_assert_eq!(read(&encode(version, &kvs)), expected(&kvs));
    }

    #[test]
    fn other_versions_give_none(version in any::<u32>(), kvs in header()) {
        prop_assume!(!(2..=3).contains(&version));
        prop_assert_eq!(read(&encode(version, &kvs)), None);
    }

    #[test]
    fn corrupt_headers_are_none_or_a_length(
        kvs in header(),
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        read(&apply(encode(3, &kvs), &edits));
    }
}

#[test]
fn missing_files_and_directories_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.gguf");
    assert!(matches!(check_gguf(&missing), Err(LlamaError::FileNotFound(p)) if p == missing));
    assert_eq!(gguf_context_length(&missing), None);
    assert!(matches!(
        check_gguf(dir.path()),
        Err(LlamaError::Io { .. } | LlamaError::NotGguf(_))
    ));
    assert_eq!(gguf_context_length(dir.path()), None);
    assert_eq!(gguf_context_length(Path::new("")), None);
}

/// Counts and lengths at their maximum over a file of a few megabytes: the walk is
/// bounded by the bytes present (each step reads some), not by the counts it is told.
#[test]
fn huge_counts_over_a_large_file_stay_bounded() {
    let mut max_kvs = b"GGUF".to_vec();
    max_kvs.extend(3u32.to_le_bytes());
    max_kvs.extend(0u64.to_le_bytes());
    max_kvs.extend(u64::MAX.to_le_bytes());
    // Then 4 MiB of zeros: u64::MAX keys, each an empty key of type 0 (u8 = 0).
    let mut empty_keys = max_kvs.clone();
    empty_keys.extend(std::iter::repeat_n(0u8, 4 << 20));
    // One array of u64::MAX empty strings over 4 MiB of zeros.
    let mut strings = max_kvs.clone();
    encode_str(&mut strings, b"tokenizer.ggml.tokens");
    strings.extend(ARRAY.to_le_bytes());
    strings.extend(STRING.to_le_bytes());
    strings.extend(u64::MAX.to_le_bytes());
    strings.extend(std::iter::repeat_n(0u8, 4 << 20));
    // A key as long as allowed (16 MiB) that is not there.
    let mut long_key = max_kvs.clone();
    long_key.extend((1u64 << 24).to_le_bytes());
    long_key.extend(std::iter::repeat_n(b'k', 1 << 20));
    for bytes in [max_kvs, empty_keys, strings, long_key] {
        let start = Instant::now();
        assert_eq!(read(&bytes), None);
        let took = start.elapsed();
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
}
