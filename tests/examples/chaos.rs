//! The full chaos run (issue 12): `lab::chaos` with 1,500 pod operations or more and ten
//! rounds of faults, once against one etcd member (killed and restarted) and once against
//! three (the leader killed), printed side by side as the README's table.
//! Needs root: `cargo run -p lab --example chaos [-- --members 1|3]`.

use anyhow::{Context, Result, bail};
use lab::chaos::{ChaosReport, ChaosSpec, run};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let members: Vec<usize> = match args.as_slice() {
        [] => vec![1, 3],
        [flag, n] if flag == "--members" => vec![n.parse().context("--members takes 1 or 3")?],
        _ => bail!("usage: chaos [--members 1|3]"),
    };
    let mut reports = Vec::new();
    for m in members {
        eprintln!("chaos run against {m} etcd member(s)...");
        let report = run(&ChaosSpec::full(m)).with_context(|| format!("the run with {m} etcd"))?;
        eprintln!("{}", report.table());
        reports.push(report);
    }
    println!("{}", ChaosReport::table_of(&reports));
    Ok(())
}
