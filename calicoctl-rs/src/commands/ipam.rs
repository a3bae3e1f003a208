//! `calicoctl ipam show|check|release|configure` over the `ipam` crate, in Calico's
//! formats. Each sub-command renders to a string (tested against golden text); `run`
//! prints it.

mod check;
mod report;
mod show;
pub(crate) mod table;
#[cfg(test)]
mod tests;

use std::net::IpAddr;

use clap::{Args, Subcommand};
use datastore::Client;
use datastore::client::calico_text;
use datastore::model::IPAMConfiguration;
use datastore::model::ipam::IpamConfig;
use ipam::Ipam;

use crate::error::{CliError, CliResult};

/// `calicoctl ipam <command>`
#[derive(Debug, Args)]
pub struct IpamArgs {
    #[command(subcommand)]
    pub command: IpamCommand,
}

/// The `ipam` sub-commands.
#[derive(Debug, Subcommand)]
pub enum IpamCommand {
    /// Show details of Calico IP address usage.
    Show(ShowArgs),
    /// Check the integrity of the IPAM datastructures.
    Check(CheckArgs),
    /// Release a Calico assigned IP address.
    Release(ReleaseArgs),
    /// Configure IPAM.
    Configure(ConfigureArgs),
}

/// `show [--ip=<IP> | --show-blocks] [--show-borrowed] [--show-configuration]`
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Report whether this specific IP address is in use.
    #[arg(long = "ip", conflicts_with = "show_blocks")]
    pub ip: Option<String>,
    /// Show detailed information for IP blocks as well as pools.
    #[arg(long = "show-blocks")]
    pub show_blocks: bool,
    /// Show detailed information for "borrowed" IP addresses.
    #[arg(long = "show-borrowed")]
    pub show_borrowed: bool,
    /// Show current Calico IPAM configuration.
    #[arg(long = "show-configuration")]
    pub show_configuration: bool,
}

/// `check [--output=<report.json>] [--show-all-ips] [--show-problem-ips]`
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Path to output report file (Calico's JSON, for `release --from-report`).
    #[arg(short = 'o', long = "output")]
    pub output: Option<String>,
    /// Accepted for compatibility.
    #[arg(long = "show-all-ips")]
    pub show_all_ips: bool,
    /// Accepted for compatibility (problem IPs are always listed).
    #[arg(long = "show-problem-ips")]
    pub show_problem_ips: bool,
}

/// `release [--ip=<IP>] [--from-report=<REPORT>]... [--force]`
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["ip", "from_report"])))]
pub struct ReleaseArgs {
    /// IP address to release.
    #[arg(long = "ip")]
    pub ip: Option<String>,
    /// Release the leaked addresses of the report (`ipam check -o`). With several
    /// reports, only addresses leaked in all of them are released.
    #[arg(long = "from-report")]
    pub from_report: Vec<String>,
    /// Release although the data store is not locked or the report came from another
    /// calicoctl version.
    #[arg(long = "force")]
    pub force: bool,
}

/// `configure --strictaffinity=<true/false>`
#[derive(Debug, Args)]
pub struct ConfigureArgs {
    /// Set StrictAffinity to true/false.
    #[arg(long = "strictaffinity", required = true)]
    pub strict_affinity: String,
}

/// An IPAM failure as calicoctl's one-line error.
pub(crate) fn ipam_err(e: ipam::Error) -> CliError {
    CliError::new(e.to_string())
}

/// Renders the output of one `ipam` command (mutating the datastore for release and
/// configure).
pub async fn render(ipam: &Ipam, args: &IpamArgs) -> CliResult<String> {
    match &args.command {
        IpamCommand::Show(a) => show::show(ipam, a).await,
        IpamCommand::Check(a) => check::check(ipam, a.output.as_deref()).await,
        IpamCommand::Release(a) if !a.from_report.is_empty() => {
            report::release_from_reports(ipam, &a.from_report, a.force).await
        }
        IpamCommand::Release(a) => release(ipam, a.ip.as_deref().unwrap_or_default()).await,
        IpamCommand::Configure(a) => configure(ipam, &a.strict_affinity).await,
    }
}

/// Runs one `ipam` command against the datastore and prints its output.
pub async fn run(ds: std::sync::Arc<dyn datastore::Datastore>, args: IpamArgs) -> CliResult {
    let out = render(&Ipam::new(ds), &args).await?;
    print!("{out}");
    Ok(())
}

async fn release(ipam: &Ipam, text: &str) -> CliResult<String> {
    let ip: IpAddr = text
        .parse()
        .map_err(|_| CliError::new(format!("invalid IP address: {text}")))?;
    if ipam.release_ip(ip, None).await.map_err(ipam_err)? {
        Ok(format!("Successfully released IP address {ip}\n"))
    } else {
        Err(CliError::new(format!("IP address {ip} is not assigned")))
    }
}

async fn configure(ipam: &Ipam, value: &str) -> CliResult<String> {
    let strict = match value.to_ascii_lowercase().as_str() {
        "true" => true,
        "false" => false,
        _ => {
            return Err(CliError::new(
                "invalid value. Use true or false to set strictaffinity",
            ));
        }
    };
    let current = ipam.config().await.map_err(ipam_err)?;
    ipam.set_config(&IpamConfig {
        strict_affinity: strict,
        ..current
    })
    .await
    .map_err(ipam_err)?;
    // Keep the v3 IPAMConfiguration (what `calicoctl get ipamconfig` shows) in step.
    let client = Client::new(ipam.datastore().clone());
    let stored = client
        .try_get::<IPAMConfiguration>("default")
        .await
        .map_err(|e| CliError::new(calico_text(&e)))?;
    if let Some(mut cfg) = stored
        && cfg.spec.strict_affinity != strict
    {
        cfg.spec.strict_affinity = strict;
        cfg.metadata.resource_version = None;
        client
            .update(cfg)
            .await
            .map_err(|e| CliError::new(calico_text(&e)))?;
    }
    Ok(format!("Successfully set StrictAffinity to: {strict}\n"))
}
