//! How `auto` routes the questions of a pulled data set, by the kind of their gold answer:
//! the counts docs/results.md quotes for the `word_answer` route.
//!
//! ```sh
//! optillm pull asdiv
//! cargo run --release -p optillm-bench --example auto_routes -- asdiv [LIMIT]
//! ```

use std::collections::BTreeMap;

use optillm_bench::{Dataset, sample};
use optillm_core::strategies::auto::classify;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let name = args.next().ok_or("usage: auto_routes DATASET [LIMIT]")?;
    let limit = args.next().map(|l| l.parse::<usize>()).transpose()?;
    let dataset = Dataset::from_name(&name)?;
    let path = dataset
        .local_path()?
        .ok_or_else(|| format!("{name} is not pulled: run `optillm pull {name}`"))?;
    let items = sample(&dataset.load_file(&path)?, limit, None);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for item in &items {
        let key = format!("{:?}\tgold {:?}", classify(&item.prompt), item.kind);
        *counts.entry(key).or_default() += 1;
    }
    println!("{name}: {} questions", items.len());
    for (key, count) in counts {
        println!("{key}\t{count}");
    }
    Ok(())
}
