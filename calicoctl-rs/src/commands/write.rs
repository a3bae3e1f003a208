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

/// Checks and writes `docs` for `op`, printing what calicoctl prints on stdout.
pub async fn execute(client: &Client, docs: Vec<AnyResource>, op: BatchOp) -> CliResult {
    let mut out = String::new();
    let result = write_batch(client, docs, op, &mut out).await;
    print!("{out}");
    result
}

/// The batch itself: stdout text into `out`, the failure (for stderr) as the error. On a
/// failure after some documents were written (the store failed mid-way), `out` names each
/// written one, and nothing after the failing one is written.
pub async fn write_batch(
    client: &Client,
    mut docs: Vec<AnyResource>,
    op: BatchOp,
    out: &mut String,
) -> CliResult {
    use std::fmt::Write;
    if docs.is_empty() {
        return Err(CliError::new("No resources specified"));
    }
    let plan = client
        .plan_batch(&mut docs, op)
        .await
        .map_err(|e| failed(op, &docs, e.index, &e.message))?;
    let label = kind_label(&docs);
    let mut written = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        if plan.skip.get(i).copied().unwrap_or(false) {
            continue;
        }
        let result = match client.write_any(doc, op).await {
            Ok(stored) => sync_ipam_config(client, &stored, op).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            let message = calico_text(&e);
            if i == 0 {
                return Err(failed(op, &docs, i, &message));
            }
            let _ = writeln!(
                out,
                "Partial success: {} the first {i} out of {} {label}resources:",
                past(op),
                docs.len()
            );
            for d in &written {
                let _ = writeln!(out, "  {d}");
            }
            if matches!(e, datastore::Error::OutcomeUnknown { .. }) {
                let _ = writeln!(out, "  {} may or may not have been written", doc.ident());
            }
            let hit = if op == BatchOp::Apply {
                "Hit error(s)"
            } else {
                "Hit error"
            };
            return Err(CliError::new(format!("{hit}: [{message}]")));
        }
        written.push(doc.ident());
    }
    let _ = writeln!(
        out,
        "Successfully {} {} {label}resource(s)",
        past(op),
        docs.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datastore::model::parse_documents;
    use datastore::{Datastore, KeyValue, Lease, LeaseId, Listing, MemoryStore, Revision, Watch};

    use super::*;

    /// How a write of the failing key fails.
    #[derive(Clone, Copy, PartialEq)]
    enum Failure {
        /// Before it reaches the store.
        Before,
        /// After the store applied it (the reply is lost).
        After,
        /// After, and reading the key back fails too.
        AfterAndReads,
    }

    /// A store whose writes of keys containing `fail_on` time out as etcd going away would.
    struct FailingStore {
        inner: MemoryStore,
        fail_on: &'static str,
        failure: Failure,
        /// Set once the failing key was written (reads fail from then on, if asked).
        written: std::sync::atomic::AtomicBool,
    }

    fn timed_out() -> datastore::Error {
        datastore::Error::Backend("etcdserver: request timed out".into())
    }

    impl FailingStore {
        fn before(&self, key: &str) -> datastore::Result<()> {
            if key.contains(self.fail_on) && self.failure == Failure::Before {
                return Err(timed_out());
            }
            Ok(())
        }

        fn after<T>(&self, key: &str, r: datastore::Result<T>) -> datastore::Result<T> {
            if key.contains(self.fail_on) && self.failure != Failure::Before {
                self.written
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                return r.and(Err(timed_out()));
            }
            r
        }
    }

    #[async_trait::async_trait]
    impl Datastore for FailingStore {
        async fn get(&self, key: &str) -> datastore::Result<Option<KeyValue>> {
            if key.contains(self.fail_on)
                && self.failure == Failure::AfterAndReads
                && self.written.load(std::sync::atomic::Ordering::SeqCst)
            {
                return Err(timed_out());
            }
            self.inner.get(key).await
        }
        async fn list(&self, prefix: &str) -> datastore::Result<Listing> {
            self.inner.list(prefix).await
        }
        async fn create(
            &self,
            k: &str,
            v: Vec<u8>,
            l: Option<LeaseId>,
        ) -> datastore::Result<Revision> {
            self.before(k)?;
            let r = self.inner.create(k, v, l).await;
            self.after(k, r)
        }
        async fn create_all(&self, kvs: Vec<(String, Vec<u8>)>) -> datastore::Result<Revision> {
            let first = kvs.first().map(|(k, _)| k.clone()).unwrap_or_default();
            self.before(&first)?;
            let r = self.inner.create_all(kvs).await;
            self.after(&first, r)
        }
        async fn put_all(&self, puts: Vec<datastore::Put>) -> datastore::Result<datastore::PutAll> {
            let first = puts.first().map(|p| p.key.clone()).unwrap_or_default();
            self.before(&first)?;
            let r = self.inner.put_all(puts).await;
            self.after(&first, r)
        }
        async fn update(
            &self,
            k: &str,
            v: Vec<u8>,
            e: Revision,
            l: Option<LeaseId>,
        ) -> datastore::Result<Revision> {
            self.before(k)?;
            let r = self.inner.update(k, v, e, l).await;
            self.after(k, r)
        }
        async fn delete(&self, k: &str, e: Option<Revision>) -> datastore::Result<KeyValue> {
            self.before(k)?;
            let r = self.inner.delete(k, e).await;
            self.after(k, r)
        }
        async fn watch(&self, p: &str, from: Revision) -> datastore::Result<Watch> {
            self.inner.watch(p, from).await
        }
        async fn grant_lease(&self, ttl: std::time::Duration) -> datastore::Result<Lease> {
            self.inner.grant_lease(ttl).await
        }
        async fn keep_alive(&self, l: LeaseId) -> datastore::Result<()> {
            self.inner.keep_alive(l).await
        }
        async fn revoke_lease(&self, l: LeaseId) -> datastore::Result<()> {
            self.inner.revoke_lease(l).await
        }
        async fn revision(&self) -> datastore::Result<Revision> {
            self.inner.revision().await
        }
    }

    fn pools(names: &[(&str, &str)]) -> Vec<AnyResource> {
        let yaml: Vec<String> = names
            .iter()
            .map(|(n, cidr)| {
                format!("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: {n}}}\nspec: {{cidr: {cidr}}}\n")
            })
            .collect();
        parse_documents(&yaml.join("---\n")).expect("documents")
    }

    #[tokio::test]
    async fn a_store_failing_mid_batch_names_what_was_written_and_writes_nothing_after() {
        let inner = MemoryStore::new();
        let store = FailingStore {
            inner: inner.clone(),
            fail_on: "/ippools/b",
            failure: Failure::Before,
            written: Default::default(),
        };
        let client = Client::new(Arc::new(store));
        let docs = pools(&[
            ("a", "10.1.0.0/16"),
            ("b", "10.2.0.0/16"),
            ("c", "10.3.0.0/16"),
        ]);
        let mut out = String::new();
        let err = write_batch(&client, docs, BatchOp::Apply, &mut out)
            .await
            .expect_err("the second write fails");
        assert_eq!(
            out,
            "Partial success: applied the first 1 out of 3 'IPPool' resources:\n  IPPool(a)\n"
        );
        assert_eq!(
            err.message,
            "Hit error(s): [datastore error: etcdserver: request timed out]"
        );
        let stored: Vec<String> = inner
            .list("/calico/resources/v3/projectcalico.org/ippools/")
            .await
            .expect("list")
            .items
            .into_iter()
            .map(|kv| kv.key)
            .collect();
        assert_eq!(
            stored,
            vec!["/calico/resources/v3/projectcalico.org/ippools/a"]
        );
    }

    #[tokio::test]
    async fn a_write_whose_reply_was_lost_is_read_back_and_counts_as_written() {
        let inner = MemoryStore::new();
        let client = Client::new(Arc::new(FailingStore {
            inner: inner.clone(),
            fail_on: "/ippools/b",
            failure: Failure::After,
            written: Default::default(),
        }));
        let docs = pools(&[("a", "10.1.0.0/16"), ("b", "10.2.0.0/16")]);
        let mut out = String::new();
        write_batch(&client, docs, BatchOp::Apply, &mut out)
            .await
            .expect("the read-back shows b written");
        assert_eq!(out, "Successfully applied 2 'IPPool' resource(s)\n");
    }

    #[tokio::test]
    async fn a_write_that_cannot_be_read_back_is_reported_as_maybe_written() {
        let client = Client::new(Arc::new(FailingStore {
            inner: MemoryStore::new(),
            fail_on: "/ippools/b",
            failure: Failure::AfterAndReads,
            written: Default::default(),
        }));
        let docs = pools(&[
            ("a", "10.1.0.0/16"),
            ("b", "10.2.0.0/16"),
            ("c", "10.3.0.0/16"),
        ]);
        let mut out = String::new();
        let err = write_batch(&client, docs, BatchOp::Apply, &mut out)
            .await
            .expect_err("the outcome of b is unknown");
        assert_eq!(
            out,
            "Partial success: applied the first 1 out of 3 'IPPool' resources:\n  IPPool(a)\n  IPPool(b) may or may not have been written\n"
        );
        assert!(
            err.message.contains("may or may not have been applied"),
            "{}",
            err.message
        );
    }
}
