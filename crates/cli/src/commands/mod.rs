pub mod bench;
pub mod models;
pub mod run;
pub mod serve;

use optillm_core::strategies;

/// `optillm approaches`: slugs, descriptions, parameters with defaults.
pub fn approaches(json: bool) -> anyhow::Result<()> {
    let catalogue = strategies::catalogue();
    if json {
        println!("{}", serde_json::to_string_pretty(&catalogue)?);
        return Ok(());
    }
    for a in catalogue {
        println!("{:<18} {}", a.slug, a.description);
        for (k, v) in &a.params {
            println!("{:<18}   {k} = {v}", "");
        }
    }
    println!(
        "\nCombine with `a&b` (pipeline), `a|b` (parallel), parentheses, and per-stage parameters: `bon(n=5)&moa`."
    );
    Ok(())
}
