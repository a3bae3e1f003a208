//! `calicoctl replace -f <file>`: update existing resources (CAS on resourceVersion when
//! the input carries one).

use datastore::Client;
use datastore::client::BatchOp;

use crate::cli::FileArgs;
use crate::error::CliResult;

/// Runs `replace`.
pub async fn run(client: &Client, args: FileArgs) -> CliResult {
    let docs = crate::input::load(&args.filename, args.namespace.as_deref())?;
    super::write::execute(client, docs, BatchOp::Replace).await
}
