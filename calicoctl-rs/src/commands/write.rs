//! The shared flow of create/apply/replace/delete: parse every document, check the whole
//! batch against the store (nothing written if any document is bad), then write in order,
//! with Calico's success, partial-success and failure messages.

use std::collections::BTreeSet;

use datastore::Client;
use datastore::client::{BatchOp, calico_text};
use datastore::model::AnyResource;

use crate::error::{CliError, CliResult};

fn past(op: BatchOp) -> &'static str {
    match op {
        BatchOp::Create { .. } => "created",
        BatchOp::Apply => "applied",
        BatchOp::Replace => "replaced",
        BatchOp::Delete { .. } => "deleted",
    }
}

/// `'IPPool' ` when every document has one kind, else empty.
fn kind_label(docs: &[AnyResource]) -> String {
    let kinds: BTreeSet<_> = docs.iter().map(|d| d.kind()).collect();
    match kinds.iter().next() {
        Some(k) if kinds.len() == 1 => format!("'{k}' "),
        _ => String::new(),
    }
}

/// Calico's failure line when nothing was written.
fn failed(op: BatchOp, docs: &[AnyResource], index: usize, message: &str) -> CliError {
    let label = kind_label(docs);
    if docs.len() == 1 {
        let kind = docs.get(index).map(|d| d.kind().name()).unwrap_or("");
        CliError::new(format!(
            "Failed to {} '{kind}' resource: [{message}]",
            op.verb()
        ))
    } else {
        CliError::new(format!(
            "Failed to {} any {label}resources: [{message}]",
            op.verb()
        ))
    }
}

/// Keeps IPAM's own copy of the configuration (`/calico/ipam/v2/config`, which the
/// allocator reads) in step with the v3 IPAMConfiguration resource.
async fn sync_ipam_config(
    client: &Client,
    stored: &AnyResource,
    op: BatchOp,
) -> datastore::Result<()> {
    let AnyResource::IPAMConfiguration(cfg) = stored else {
        return Ok(());
    };
    let key = datastore::keys::ipam_config();
    if let BatchOp::Delete { .. } = op {
        return match client.store().delete(&key, None).await {
            Ok(_) | Err(datastore::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        };
    }
    let config = datastore::model::ipam::IpamConfig {
        strict_affinity: cfg.spec.strict_affinity,
        auto_allocate_blocks: cfg.spec.auto_allocate_blocks,
        max_blocks_per_host: cfg.spec.max_blocks_per_host.max(0).unsigned_abs(),
    };
    ipam::client::Ipam::new(client.store().clone())
        .set_config(&config)
        .await
        .map_err(|e| datastore::Error::Backend(e.to_string()))
}

/// Checks and writes `docs` for `op`.
pub async fn execute(client: &Client, mut docs: Vec<AnyResource>, op: BatchOp) -> CliResult {
    if docs.is_empty() {
        return Err(CliError::new("No resources specified"));
    }
    let plan = client
        .plan_batch(&mut docs, op)
        .await
        .map_err(|e| failed(op, &docs, e.index, &e.message))?;
    let label = kind_label(&docs);
    for (i, doc) in docs.iter().enumerate() {
        if plan.skip.get(i).copied().unwrap_or(false) {
            continue;
        }
        let written = match client.write_any(doc, op).await {
            Ok(stored) => sync_ipam_config(client, &stored, op).await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            let message = calico_text(&e);
            if i == 0 {
                return Err(failed(op, &docs, i, &message));
            }
            println!(
                "Partial success: {} the first {i} out of {} {label}resources:",
                past(op),
                docs.len()
            );
            let hit = if op == BatchOp::Apply {
                "Hit error(s)"
            } else {
                "Hit error"
            };
            return Err(CliError::new(format!("{hit}: [{message}]")));
        }
    }
    println!(
        "Successfully {} {} {label}resource(s)",
        past(op),
        docs.len()
    );
    Ok(())
}
