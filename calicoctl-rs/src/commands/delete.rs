//! `calicoctl delete (<KIND> <NAME>... | -f <file>) [--skip-not-exists]`.

use datastore::Client;
use datastore::client::BatchOp;

use crate::cli::DeleteArgs;
use crate::error::{CliError, CliResult};

/// Runs `delete`.
pub async fn run(client: &Client, args: DeleteArgs) -> CliResult {
    let op = BatchOp::Delete {
        skip_not_exists: args.skip_not_exists,
    };
    let docs = match (&args.filename, &args.kind) {
        (Some(f), None) => crate::input::load(f, args.namespace.as_deref())?,
        (None, Some(kind)) => {
            let kind = super::resources::kind(kind)?;
            if args.names.is_empty() {
                return Err(CliError::new("resource name may not be empty"));
            }
            args.names
                .iter()
                .map(|n| super::resources::skeleton(kind, args.namespace.as_deref(), n))
                .collect::<CliResult<Vec<_>>>()?
        }
        _ => {
            return Err(CliError::new(
                "Invalid option: 'calicoctl delete'. Use flag '--help' to read about a specific \
                 subcommand.",
            ));
        }
    };
    super::write::execute(client, docs, op).await
}
