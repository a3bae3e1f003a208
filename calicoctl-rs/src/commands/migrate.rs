//! `calicoctl datastore migrate lock|unlock`: marks the data store not ready
//! (ClusterInformation `datastoreReady: false`) for maintenance, as Calico does before a
//! migration or an `ipam release --from-report`, and ready again.

use datastore::Client;
use datastore::client::calico_text;
use datastore::model::ClusterInformation;

use crate::cli::{DatastoreArgs, DatastoreCommand, MigrateStep};
use crate::error::{CliError, CliResult};

/// Sets `datastoreReady` on ClusterInformation `default` (creating it if no calico-node
/// has yet), by compare-and-swap.
pub async fn run(client: &Client, args: DatastoreArgs) -> CliResult {
    let DatastoreCommand::Migrate(m) = args.command;
    let ready = matches!(m.step, MigrateStep::Unlock);
    for _ in 0..10 {
        let current = client
            .try_get::<ClusterInformation>("default")
            .await
            .map_err(|e| CliError::new(calico_text(&e)))?;
        let result = match current {
            Some(mut info) => {
                info.spec.datastore_ready = Some(ready);
                client.update(info).await.map(drop)
            }
            None => {
                let mut info = ClusterInformation::new("default", Default::default());
                info.spec.datastore_ready = Some(ready);
                client.create(info).await.map(drop)
            }
        };
        match result {
            Ok(()) => {
                println!("Datastore {}.", if ready { "unlocked" } else { "locked" });
                return Ok(());
            }
            Err(datastore::Error::Conflict { .. } | datastore::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(CliError::new(calico_text(&e))),
        }
    }
    Err(CliError::new("ClusterInformation kept changing; try again"))
}
