//! Property tests of the manifest reader (`Manifest::parse`), which also reads manifest
//! files a user points it at: any text is a manifest or a typed error naming its
//! origin, never a panic; a manifest that parses holds what validation promises; deep
//! nesting and long inputs stay bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use optillm_models::{BUILTIN_MANIFEST, Manifest, ModelsError, Source};
use proptest::prelude::*;

const ORIGIN: &str = "prop.toml";

/// Parses `text` and checks the outcome's type; returns the manifest if it parsed.
fn check(text: &str) -> Option<Manifest> {
    match Manifest::parse(text, ORIGIN) {
        Ok(m) => {
            let mut names = HashSet::new();
            for a in m.artifacts() {
                for n in std::iter::once(&a.name).chain(&a.aliases) {
                    assert!(names.insert(n.clone()), "duplicate name {n} accepted");
                    assert!(m.get(n).is_some());
                }
                assert!(
                    a.sha256.len() == 64 && a.sha256.bytes().all(|b| b.is_ascii_hexdigit()),
                    "{a:?}"
                );
                assert!(!a.file.contains(['/', '\\']), "{a:?}");
                assert!(!a.sources.is_empty(), "{a:?}");
                assert!(a.size > 0, "{a:?}");
                for s in &a.sources {
                    let _ = s.label();
                    match s {
                        Source::Url { url } => assert!(url.starts_with("http"), "{a:?}"),
                        Source::Wheel { parts } => assert!(!parts.is_empty(), "{a:?}"),
                        _ => {}
                    }
                }
            }
            Some(m)
        }
        Err(ModelsError::ManifestParse { origin, source }) => {
            assert_eq!(origin, ORIGIN);
            let _ = source.to_string();
            None
        }
        Err(ModelsError::InvalidManifest { origin, message }) => {
            assert_eq!(origin, ORIGIN);
            assert!(!message.is_empty());
            None
        }
        Err(e) => panic!("unexpected error type: {e:?}"),
    }
}

/// Edits of the shipped manifest: a char deleted, inserted or replaced, a line dropped
/// or repeated, the text cut short.
#[derive(Debug, Clone)]
enum Edit {
    Delete(prop::sample::Index),
    Insert(prop::sample::Index, char),
    Replace(prop::sample::Index, char),
    DropLine(prop::sample::Index),
    RepeatLine(prop::sample::Index),
    Truncate(prop::sample::Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    let c = prop_oneof![
        prop::sample::select(
            &[
                '[',
                ']',
                '{',
                '}',
                '"',
                '\'',
                '=',
                ',',
                '.',
                '\n',
                '#',
                '\\',
                '0',
                'a',
                'é',
                '\u{1F600}'
            ][..]
        ),
        any::<char>(),
    ];
    let i = any::<prop::sample::Index>;
    prop_oneof![
        i().prop_map(Edit::Delete),
        (i(), c.clone()).prop_map(|(i, c)| Edit::Insert(i, c)),
        (i(), c).prop_map(|(i, c)| Edit::Replace(i, c)),
        i().prop_map(Edit::DropLine),
        i().prop_map(Edit::RepeatLine),
        i().prop_map(Edit::Truncate),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        match e {
            Edit::Delete(i) if !chars.is_empty() => {
                chars.remove(i.index(chars.len()));
            }
            Edit::Insert(i, c) => chars.insert(i.index(chars.len() + 1), *c),
            Edit::Replace(i, c) if !chars.is_empty() => {
                let at = i.index(chars.len());
                chars[at] = *c;
            }
            Edit::DropLine(i) | Edit::RepeatLine(i) => {
                let s: String = chars.iter().collect();
                let mut lines: Vec<&str> = s.lines().collect();
                if !lines.is_empty() {
                    let at = i.index(lines.len());
                    if matches!(e, Edit::DropLine(_)) {
                        lines.remove(at);
                    } else {
                        lines.insert(at, lines[at]);
                    }
                }
                chars = lines.join("\n").chars().collect();
            }
            Edit::Truncate(i) => {
                let at = i.index(chars.len() + 1);
                chars.truncate(at);
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}

/// Small TOML-like documents around the manifest's keys.
fn toml_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            prop::sample::select(
                &[
                    "version = 1\n",
                    "version = 2\n",
                    "version = -1\n",
                    "version = \"1\"\n",
                    "[[artifact]]\n",
                    "[[artifact.sources]]\n",
                    "[artifact]\n",
                    "name = \"m\"\n",
                    "name = \"M!\"\n",
                    "kind = \"model\"\n",
                    "kind = \"dataset\"\n",
                    "kind = \"other\"\n",
                    "default = true\n",
                    "aliases = [\"a\", \"m\"]\n",
                    "description = \"d\"\n",
                    "file = \"m.gguf\"\n",
                    "file = \"../m.gguf\"\n",
                    "size = 1\n",
                    "size = 0\n",
                    "size = 18446744073709551616\n",
                    "sha256 = \"b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53\"\n",
                    "sha256 = \"xyz\"\n",
                    "sources = [{ url = \"https://h/m.gguf\" }]\n",
                    "sources = [{ wheel = [] }]\n",
                    "sources = [{ url = \"ftp://h\", wheel = [] }]\n",
                    "url = \"https://h/m.gguf\"\n",
                    "wheel = [{ url = \"https://h/w.whl\", sha256 = \"00\", size = 1, member = \"m\" }]\n",
                    "unknown = 1\n",
                    "\n",
                    "# comment\n",
                ][..]
            )
            .prop_map(String::from),
            "\\PC{0,10}\n",
        ],
        0..24,
    )
    .prop_map(|parts| parts.concat())
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
    fn any_text_is_a_manifest_or_a_typed_error(text in "\\PC{0,200}") {
        check(&text);
    }

    #[test]
    fn toml_like_documents_are_a_manifest_or_a_typed_error(text in toml_soup()) {
        check(&text);
    }

    #[test]
    fn edited_builtin_manifests_are_a_manifest_or_a_typed_error(
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        check(&apply(BUILTIN_MANIFEST, &edits));
    }
}

#[test]
fn the_builtin_manifest_passes_the_checks() {
    let m = check(BUILTIN_MANIFEST).expect("the builtin manifest parses");
    assert!(!m.artifacts().is_empty());
}

/// Deep nesting and long documents: the TOML parser limits its recursion, and the work
/// is near-linear. The generous bound guards the complexity class, not the speed.
#[test]
fn deep_and_long_documents_are_bounded() {
    let inputs = [
        format!("version = {}", "[".repeat(100_000)),
        format!("version = {}1{}", "[".repeat(5_000), "]".repeat(5_000)),
        format!("a = {}", "{ b = ".repeat(50_000)),
        format!("a = {}1{}", "{ b = ".repeat(2_000), " }".repeat(2_000)),
        format!("{}version = 1", "[a.".repeat(30_000)),
        "[[artifact]]\n".repeat(10_000),
        format!(
            "version = 1\n{}",
            "[[artifact]]\nname = \"x\"\n".repeat(5_000)
        ),
        format!("version = \"{}\"", "\\u0041".repeat(20_000)),
        "\"".repeat(100_000),
        "#".repeat(100_000),
        "a.".repeat(50_000),
    ];
    for text in &inputs {
        let start = Instant::now();
        check(text);
        let took = start.elapsed();
        let head: String = text.chars().take(16).collect();
        assert!(took < Duration::from_secs(2), "{took:?} for {head:?}...");
    }
}
