//! `calicoctl apply -f <file>`: create, or update what exists.

use datastore::Client;
use datastore::client::BatchOp;

use crate::cli::FileArgs;
use crate::error::CliResult;

/// Runs `apply`.
pub async fn run(client: &Client, args: FileArgs) -> CliResult {
    let docs = crate::input::load(&args.filename, args.namespace.as_deref())?;
    super::write::execute(client, docs, BatchOp::Apply).await
}
