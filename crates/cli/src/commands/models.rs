//! `optillm pull` and `optillm models`.

use std::path::PathBuf;

use optillm_models::{Artifact, ArtifactKind, IndicatifProgress, LocalState};

use crate::backends::BackendArgs;

/// The local file of one artifact, checked, or a pull, with a progress bar: a cached
/// file without its verification marker is re-hashed first (and pulled again if damaged).
pub async fn pull_one(artifact: &Artifact) -> anyhow::Result<PathBuf> {
    let progress = IndicatifProgress::new();
    let result = optillm_models::ensure(artifact, &progress).await;
    progress.finish();
    Ok(result?)
}

/// The artifacts named (manifest names or aliases), every model with `all_models`,
/// else the default model.
fn wanted(names: &[String], all_models: bool) -> anyhow::Result<Vec<&'static Artifact>> {
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
    for n in names {
        wanted.push(manifest.find(n)?);
    }
    if wanted.is_empty() && !all_models {
        wanted.push(optillm_models::default_model()?);
    }
    Ok(wanted)
}

/// `optillm pull`: missing artifacts are downloaded; files already in the cache are kept
/// when verified (re-hashed when they have no marker). With `verify`, every file is
/// re-hashed and a damaged one downloaded again.
pub async fn pull(names: Vec<String>, all_models: bool, verify: bool) -> anyhow::Result<()> {
    let wanted = wanted(&names, all_models)?;
    let cache = optillm_models::Cache::from_env()?;
    if verify {
        for a in &wanted {
            let path = check_and_repair(&cache, a, true).await?;
            println!("{}\t{}", a.name, path.display());
        }
        return Ok(());
    }
    let progress = IndicatifProgress::new();
    let result = cache.ensure_many(&wanted, &progress).await;
    progress.finish();
    for (a, path) in wanted.iter().zip(result?) {
        println!("{}\t{}", a.name, path.display());
    }
    Ok(())
}

/// Re-hashes one cached artifact; a damaged or missing file is pulled again when
/// `repair`, else an error.
async fn check_and_repair(
    cache: &optillm_models::Cache,
    a: &Artifact,
    repair: bool,
) -> anyhow::Result<PathBuf> {
    let problem = if cache.state(a) == LocalState::Missing {
        "missing".to_string()
    } else {
        let progress = IndicatifProgress::new();
        let checked = cache.verify(a, &progress).await;
        progress.finish();
        match checked {
            Ok(path) => {
                eprintln!("{}: ok (SHA-256 {})", a.name, a.sha256);
                return Ok(path);
            }
            Err(e) => format!("damaged: {e}"),
        }
    };
    if !repair {
        anyhow::bail!("{}: {problem}", a.name);
    }
    eprintln!("{}: {problem}; pulling it again", a.name);
    let progress = IndicatifProgress::new();
    let pulled = cache.pull(a, &progress).await;
    progress.finish();
    Ok(pulled?)
}

/// `optillm verify`: re-hashes the named artifacts (default: every one in the cache)
/// and reports each; damaged ones are pulled again with `repair`. Fails if any is
/// damaged (and not repaired) or missing.
pub async fn verify(names: Vec<String>, repair: bool) -> anyhow::Result<()> {
    let cache = optillm_models::Cache::from_env()?;
    let removed = cache.clean_partials();
    for p in &removed {
        eprintln!("removed {} (left by an interrupted pull)", p.display());
    }
    let wanted: Vec<&Artifact> = if names.is_empty() {
        optillm_models::manifest()?
            .artifacts()
            .iter()
            .filter(|a| cache.state(a) != LocalState::Missing)
            .collect()
    } else {
        let manifest = optillm_models::manifest()?;
        names
            .iter()
            .map(|n| manifest.find(n))
            .collect::<Result<_, _>>()?
    };
    if wanted.is_empty() {
        println!("nothing in the cache {} to verify", cache.root().display());
        return Ok(());
    }
    let mut failed = Vec::new();
    for a in &wanted {
        match check_and_repair(&cache, a, repair).await {
            Ok(path) => println!("{}\tok\t{}", a.name, path.display()),
            Err(e) => {
                println!("{}\tFAILED\t{e:#}", a.name);
                failed.push(a.name.clone());
            }
        }
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "{} of {} failed verification: {} (`optillm verify --repair` pulls them again)",
            failed.len(),
            wanted.len(),
            failed.join(", ")
        );
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
            match (row.local, row.verified) {
                (true, true) => "yes",
                (true, false) => "check",
                _ => "no",
            },
            a.description
        );
    }
    Ok(())
}
