//! calico-node: the per-host agent. See `calico-node --help` for its settings (Calico's
//! environment variables, each also a flag).

use clap::Parser;
use tracing_subscriber::EnvFilter;

use agent::config::NodeConfig;

// One thread: every task of the agent waits on I/O, and a second worker's wake-ups and
// stealing cost more CPU than they save (bench_scale, 50 nodes: a third of the CPU per
// claim). BFD runs on a thread of its own (tasks::bfd_link).
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cfg = NodeConfig::parse();
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: journald and `kubectl logs` would show the escapes.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    if let Err(e) = agent::run::run(cfg).await {
        tracing::error!("{e:#}");
        eprintln!("calico-node: {e:#}");
        std::process::exit(1);
    }
}
