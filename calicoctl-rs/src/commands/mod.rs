//! One module per verb; [`run`] dispatches a parsed command line.

mod apply;
mod create;
mod delete;
pub(crate) mod flannel;
mod get;
pub(crate) mod ipam;
pub(crate) mod migrate;
pub(crate) mod node;
mod patch;
mod replace;
mod resources;
mod version;
mod write;

use datastore::Client;

use crate::cli::{Cli, Command};
use crate::error::CliResult;

/// Connects to the datastore named by `--config` / the environment.
async fn client(cli_config: Option<&str>) -> CliResult<Client> {
    Ok(Client::new(crate::config::connect(cli_config).await?))
}

/// Runs one command; the error (if any) is the line for stderr.
pub async fn run(cli: Cli) -> CliResult {
    let cfg = cli.config.as_deref();
    match cli.command {
        Command::Get(args) => get::run(&client(cfg).await?, args).await,
        Command::Apply(args) => apply::run(&client(cfg).await?, args).await,
        Command::Create(args) => create::run(&client(cfg).await?, args).await,
        Command::Replace(args) => replace::run(&client(cfg).await?, args).await,
        Command::Delete(args) => delete::run(&client(cfg).await?, args).await,
        Command::Patch(args) => patch::run(&client(cfg).await?, args).await,
        Command::Version(_) => version::run(cfg).await,
        Command::Datastore(args) => migrate::run(&client(cfg).await?, args).await,
        Command::Ipam(args) => ipam::run(crate::config::connect(cfg).await?, args).await,
        Command::Node(args) => node::run(args).await,
        Command::Flannel(args) => flannel::run(crate::config::connect(cfg).await?, args).await,
    }
}
