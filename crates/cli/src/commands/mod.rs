pub mod bench;
pub mod models;
pub mod run;
pub mod serve;

use std::io::Write;

use optillm_core::strategies;

/// `optillm approaches`: slugs, descriptions, parameters with defaults.
pub fn approaches(json: bool) -> anyhow::Result<()> {
    let catalogue = strategies::catalogue();
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&catalogue)?)?;
        return Ok(());
    }
    for a in catalogue {
        writeln!(out, "{:<18} {}", a.slug, a.description)?;
        for (k, v) in &a.params {
            writeln!(out, "{:<18}   {k} = {v}", "")?;
        }
    }
    writeln!(
        out,
        "\nCombine with `a&b` (pipeline), `a|b` (parallel), parentheses, and per-stage parameters: `bon(n=5)&moa`."
    )?;
    Ok(())
}
