//! Which recorded answers today's scoring judges otherwise than the verdict stored when
//! they ran (summaries count today's verdict, `ItemRecord::judged_correct`): one line per
//! such record, for every `results.jsonl` under the directories given.
//!
//! ```sh
//! cargo run --release -p optillm-bench --example rejudge -- docs/results
//! ```

use std::path::{Path, PathBuf};

use optillm_bench::eval::read_records;

fn results_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<(PathBuf, std::fs::FileType)> = std::fs::read_dir(dir)?
        .map(|e| e.and_then(|e| Ok((e.path(), e.file_type()?))))
        .collect::<Result<_, _>>()?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, kind) in entries {
        // Symbolic links are not followed: no loop can keep the walk going.
        if kind.is_dir() {
            results_files(&path, out)?;
        } else if kind.is_file() && path.file_name().is_some_and(|n| n == "results.jsonl") {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dirs: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    if dirs.is_empty() {
        return Err("usage: rejudge DIR...".into());
    }
    let mut files = Vec::new();
    for dir in &dirs {
        results_files(dir, &mut files)?;
    }
    let (mut records, mut changed) = (0, 0);
    for file in &files {
        for r in read_records(file)? {
            records += 1;
            let today = r.judged_correct();
            if today != r.correct {
                changed += 1;
                println!(
                    "{}\t{}\titem {}\tgold {:?}\tanswer {:?}\t{} -> {}",
                    file.display(),
                    r.approach,
                    r.item,
                    r.gold,
                    r.extracted.as_deref().unwrap_or(""),
                    if r.correct { "right" } else { "wrong" },
                    if today { "right" } else { "wrong" },
                );
            }
        }
    }
    println!(
        "{changed} of {records} records in {} files judged otherwise today",
        files.len()
    );
    Ok(())
}
