//! `optillm pull`, `optillm verify` and `optillm models`.

use std::path::PathBuf;

use anyhow::bail;
use optillm_models::{
    Artifact, ArtifactKind, Cache, DownloadOptions, IndicatifProgress, LocalState, RemoteModel,
    RemotePulled, TrustOutcome,
};

use crate::backends::BackendArgs;

/// `optillm pull`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct PullArgs {
    /// Manifest names or aliases, `hf:OWNER/REPO[@REVISION]/FILE.gguf` (from
    /// `$HF_ENDPOINT`, default https://huggingface.co) or `https://.../FILE.gguf`.
    pub names: Vec<String>,
    /// Every model of the manifest.
    #[arg(long)]
    pub all_models: bool,
    /// Re-hash files already in the cache (not only unverified ones) and download
    /// damaged ones again.
    #[arg(long)]
    pub verify: bool,
    /// The SHA-256 the one `hf:` or URL file given must have. Without it, the hash of
    /// the first download is recorded in the cache's lock file and later pulls and uses
    /// are checked against it (trust on first use).
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
    /// Largest `hf:` or URL file accepted, in bytes or with a K/M/G suffix (powers of
    /// 1024), e.g. `8G` (default 64G).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_size: Option<u64>,
}

/// `--max-size`: bytes, or a number with a K, M, G or T suffix (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("`{s}`: unknown unit `{c}` (K, M, G or T)")),
            };
            (t.get(..i).unwrap_or_default(), shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a size such as 500M or 8G"))?;
    let bytes = n
        .checked_mul(1u64 << shift)
        .filter(|b| *b > 0)
        .ok_or_else(|| format!("`{s}` is out of range"))?;
    Ok(bytes)
}

/// The cache at the usual place, with `--max-size` applied.
fn remote_cache(max_size: Option<u64>) -> anyhow::Result<Cache> {
    let mut options = DownloadOptions::default();
    if let Some(max) = max_size {
        options = options.max_file_size(max);
    }
    Ok(Cache::from_env()?.with_options(options))
}

/// The checked local file of a GGUF file outside the manifest (`hf:` spec or URL),
/// pulled with a progress bar when needed; says on stderr which hash it was checked
/// against (or that it was recorded now, trust on first use).
pub async fn ensure_remote(model: &RemoteModel) -> anyhow::Result<PathBuf> {
    let cache = remote_cache(None)?;
    Ok(pull_remote(&cache, model, None).await?.path)
}

async fn pull_remote(
    cache: &Cache,
    model: &RemoteModel,
    sha256: Option<&str>,
) -> anyhow::Result<RemotePulled> {
    let progress = IndicatifProgress::new();
    let result = cache.ensure_remote(model, sha256, &progress).await;
    progress.finish();
    let pulled = result?;
    report_trust(model, &pulled);
    Ok(pulled)
}

fn report_trust(model: &RemoteModel, p: &RemotePulled) {
    if let Some(from) = p.resumed_from {
        eprintln!("{model}: resumed an interrupted download at byte {from}");
    }
    match p.trust {
        TrustOutcome::Recorded => eprintln!(
            "{model}: no --sha256 given: trusting this first download (trust on first use); \
             its SHA-256 {} is recorded in {} and every later pull and use is checked against it",
            p.sha256,
            p.lock.display()
        ),
        TrustOutcome::MatchedFirstUse => eprintln!(
            "{model}: SHA-256 {} matches the one recorded at its first download \
             (trust on first use, {})",
            p.sha256,
            p.lock.display()
        ),
        _ => eprintln!("{model}: SHA-256 {} matches the pinned hash", p.sha256),
    }
}

/// Whether `name` is pulled as a GGUF file outside the pinned manifest: a `hf:` spec, an
/// URL, or a manifest model trusted on first use.
fn is_remote_name(name: &str) -> bool {
    RemoteModel::looks_remote(name)
        || optillm_models::manifest().is_ok_and(|m| m.first_use(name).is_some())
}

/// The GGUF file of a `hf:` spec, an URL or a manifest model trusted on first use.
fn remote_model(name: &str) -> anyhow::Result<RemoteModel> {
    if let Some(f) = optillm_models::manifest()?.first_use(name) {
        return Ok(f.remote.clone());
    }
    Ok(RemoteModel::parse(name)?)
}

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
/// re-hashed and a damaged one downloaded again. `hf:` specs and URLs are pulled as
/// GGUF files outside the manifest, checked against `--sha256` or the lock file.
pub async fn pull(args: PullArgs) -> anyhow::Result<()> {
    let (remote, names): (Vec<String>, Vec<String>) =
        args.names.iter().cloned().partition(|n| is_remote_name(n));
    let remote: Vec<RemoteModel> = remote
        .iter()
        .map(|n| remote_model(n))
        .collect::<Result<_, _>>()?;
    if args.sha256.is_some() && remote.len() != 1 {
        bail!(
            "--sha256 needs exactly one `hf:` spec or URL to check (got {})",
            remote.len()
        );
    }
    let pin = args
        .sha256
        .as_deref()
        .map(optillm_models::parse_sha256)
        .transpose()?;
    if !remote.is_empty() {
        let cache = remote_cache(args.max_size)?;
        for m in &remote {
            if args.verify {
                cache.unverify_remote(m)?;
            }
            let pulled = pull_remote(&cache, m, pin.as_deref()).await?;
            println!("{m}\t{}", pulled.path.display());
        }
        if names.is_empty() && !args.all_models {
            return Ok(());
        }
    }
    let (all_models, verify) = (args.all_models, args.verify);
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
    let (remote_names, names): (Vec<String>, Vec<String>) =
        names.into_iter().partition(|n| is_remote_name(n));
    let remote: Vec<RemoteModel> = if remote_names.is_empty() && names.is_empty() {
        cache
            .list_remote()?
            .into_iter()
            .filter(|r| r.state != LocalState::Missing)
            .map(|r| r.model)
            .collect()
    } else {
        remote_names
            .iter()
            .map(|n| remote_model(n))
            .collect::<Result<_, _>>()?
    };
    let mut failed = Vec::new();
    for m in &remote {
        let progress = IndicatifProgress::new();
        let checked = cache.verify_remote(m, &progress).await;
        progress.finish();
        match checked {
            Ok(path) => println!("{m}\tok\t{}", path.display()),
            Err(e) if repair => {
                eprintln!("{m}: {e}; pulling it again");
                match pull_remote(&cache, m, None).await {
                    Ok(p) => println!("{m}\tok\t{}", p.path.display()),
                    Err(e) => {
                        println!("{m}\tFAILED\t{e:#}");
                        failed.push(m.to_string());
                    }
                }
            }
            Err(e) => {
                println!("{m}\tFAILED\t{e}");
                failed.push(m.to_string());
            }
        }
    }
    if !remote_names.is_empty() && names.is_empty() {
        return verdict(&failed, remote.len());
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
    if wanted.is_empty() && remote.is_empty() {
        println!("nothing in the cache {} to verify", cache.root().display());
        return Ok(());
    }
    for a in &wanted {
        match check_and_repair(&cache, a, repair).await {
            Ok(path) => println!("{}\tok\t{}", a.name, path.display()),
            Err(e) => {
                println!("{}\tFAILED\t{e:#}", a.name);
                failed.push(a.name.clone());
            }
        }
    }
    verdict(&failed, wanted.len() + remote.len())
}

fn verdict(failed: &[String], total: usize) -> anyhow::Result<()> {
    if !failed.is_empty() {
        anyhow::bail!(
            "{} of {} failed verification: {} (`optillm verify --repair` pulls them again)",
            failed.len(),
            total,
            failed.join(", ")
        );
    }
    Ok(())
}

pub async fn list(backend: BackendArgs) -> anyhow::Result<()> {
    if let Some(remote) = crate::backends::remote_models(&backend).await? {
        println!("{}:", crate::backends::describe_server(&backend));
        if remote.is_empty() {
            println!("  (no models)");
        }
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
    let cache = Cache::from_env()?;
    // Manifest models without a pinned hash: the size is known once pulled.
    for f in optillm_models::manifest()?.first_use_models() {
        let entry = cache.remote_entry(&f.remote)?;
        let size = entry
            .as_ref()
            .map_or("?".to_string(), |e| format!("{:.1}", e.size as f64 / 1e6));
        let local = match cache.remote_state(&f.remote, entry.as_ref()) {
            LocalState::Verified => "yes",
            LocalState::Missing => "no",
            _ => "check",
        };
        println!(
            "{:<22} {:<8} {:>10}  {:<6} {} [{}; hash trusted on first use]",
            f.name,
            "model",
            size,
            local,
            f.description,
            f.remote.spec()
        );
    }
    let pulled = cache.list_remote()?;
    if !pulled.is_empty() {
        println!(
            "\nGGUF files pulled by hf: spec or URL (hashes in {}):",
            cache.remote_lock_path().display()
        );
        println!(
            "{:<10} {:<6} {:<10} {:<16} model",
            "size MB", "local", "trust", "sha256"
        );
        for row in pulled {
            let e = &row.entry;
            println!(
                "{:>10.1} {:<6} {:<10} {:<16} {}",
                e.size as f64 / 1e6,
                match row.state {
                    LocalState::Verified => "yes",
                    LocalState::Missing => "no",
                    _ => "check",
                },
                e.trust.to_string(),
                e.sha256.chars().take(16).collect::<String>(),
                e.spec
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("123"), Ok(123));
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("8g"), Ok(8 << 30));
        assert_eq!(parse_size(" 2K "), Ok(2048));
        for bad in ["", "M", "0", "1.5G", "5X", "-1", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
