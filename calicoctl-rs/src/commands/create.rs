//! `calicoctl create -f <file> [--skip-exists]`.

use datastore::Client;
use datastore::client::BatchOp;

use crate::cli::CreateArgs;
use crate::error::CliResult;

/// Runs `create`.
pub async fn run(client: &Client, args: CreateArgs) -> CliResult {
    let docs = crate::input::load(&args.file.filename, args.file.namespace.as_deref())?;
    let op = BatchOp::Create {
        skip_exists: args.skip_exists,
    };
    super::write::execute(client, docs, op).await
}
