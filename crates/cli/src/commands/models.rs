//! `optillm pull` and `optillm models`.

use std::path::PathBuf;

use optillm_models::{Artifact, ArtifactKind, IndicatifProgress};

use crate::backends::BackendArgs;

/// Pulls one artifact with a progress bar.
pub async fn pull_one(artifact: &Artifact) -> anyhow::Result<PathBuf> {
    let progress = IndicatifProgress::new();
    let result = optillm_models::pull(artifact, &progress).await;
    progress.finish();
    Ok(result?)
}

pub async fn pull(names: Vec<String>, all_models: bool) -> anyhow::Result<()> {
    let manifest = optillm_models::manifest()?;
    let mut wanted: Vec<&Artifact> = Vec::new();
    if all_models {
        wanted.extend(
            manifest
                .artifacts()
                .iter()
                .filter(|a| a.kind == ArtifactKind::Model),
        );
    }
    for n in &names {
        wanted.push(manifest.find(n)?);
    }
    if wanted.is_empty() {
        wanted.push(optillm_models::default_model()?);
    }
    let progress = IndicatifProgress::new();
    // Files already in the cache with the right size are kept (like `ollama pull`).
    let result = optillm_models::Cache::from_env()?
        .ensure_many(&wanted, &progress)
        .await;
    progress.finish();
    for (a, path) in wanted.iter().zip(result?) {
        println!("{}\t{}", a.name, path.display());
    }
    Ok(())
}

pub async fn list(backend: BackendArgs) -> anyhow::Result<()> {
    if let Some(remote) = crate::backends::remote_models(&backend).await? {
        let url = backend.url.as_deref().unwrap_or("(from the environment)");
        println!("{:?} server {url}:", backend.backend);
        for name in remote {
            println!("  {name}");
        }
        return Ok(());
    }
    println!("cache: {}", optillm_models::cache_dir()?.display());
    println!(
        "{:<22} {:<8} {:>10}  {:<6} description",
        "name", "kind", "size MB", "local"
    );
    for row in optillm_models::list()? {
        let a = row.artifact;
        let kind = match a.kind {
            ArtifactKind::Model => "model",
            _ => "dataset",
        };
        let name = if a.default {
            format!("{} *", a.name)
        } else {
            a.name.clone()
        };
        println!(
            "{:<22} {:<8} {:>10.1}  {:<6} {}",
            name,
            kind,
            a.size as f64 / 1e6,
            if row.local { "yes" } else { "no" },
            a.description
        );
    }
    Ok(())
}
