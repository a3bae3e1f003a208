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

use datastore::Client;
use datastore::client::calico_text;
use datastore::model::IPAMConfiguration;
use datastore::model::ipam::IpamConfig;
use ipam::Ipam;

use crate::cli::{IpamArgs, IpamCommand, ShowArgs};
use crate::error::{CliError, CliResult};

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
