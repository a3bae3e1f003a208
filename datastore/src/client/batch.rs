//! Whole-input checks for calicoctl: every document of a file is defaulted, validated and
//! checked against the store (existence, immutable fields, pool overlap with the store
//! and with earlier documents of the same input) before anything is written, so a bad
//! document anywhere writes nothing. Then [`Client::write_any`] performs each write.

use std::collections::BTreeSet;

use crate::client::{Client, calico_text, decode};
use crate::error::{Error, Result};
use crate::model::any::{AnyResource, Kind};
use crate::model::ippool::IPPool;
use crate::model::resource::Resource;
use crate::with_any;

/// The calicoctl verb a batch is checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOp {
    /// `create`; with `skip_exists`, existing resources are skipped silently.
    Create { skip_exists: bool },
    /// `apply`: create or update.
    Apply,
    /// `replace`: update only.
    Replace,
    /// `delete`; with `skip_not_exists`, absent resources are skipped silently.
    Delete { skip_not_exists: bool },
}

impl BatchOp {
    /// The verb as calicoctl prints it (`apply`, `create`, ...).
    pub fn verb(self) -> &'static str {
        match self {
            BatchOp::Create { .. } => "create",
            BatchOp::Apply => "apply",
            BatchOp::Replace => "replace",
            BatchOp::Delete { .. } => "delete",
        }
    }
}

/// The first document that cannot be written, and why (Calico's text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchError {
    /// 0-based position in the input.
    pub index: usize,
    pub kind: Kind,
    /// `Kind(name)`.
    pub ident: String,
    /// The error in Calico's words.
    pub message: String,
}

/// The outcome of checking a batch: which documents are to be skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchPlan {
    /// `skip[i]` is true for documents `--skip-exists` / `--skip-not-exists` drop.
    pub skip: Vec<bool>,
}

impl BatchPlan {
    /// How many documents will be written.
    pub fn writes(&self) -> usize {
        self.skip.iter().filter(|s| !**s).count()
    }
}

enum Existence {
    Create,
    Update,
    Skip,
}

impl Client {
    /// Checks every document for `op` (applying defaults in place) without writing.
    pub async fn plan_batch(
        &self,
        docs: &mut [AnyResource],
        op: BatchOp,
    ) -> Result<BatchPlan, BatchError> {
        let mut plan = BatchPlan::default();
        let mut created = BTreeSet::new();
        let mut pools: Option<Vec<IPPool>> = None;
        for (index, doc) in docs.iter_mut().enumerate() {
            let fail = |doc: &AnyResource, message: String| BatchError {
                index,
                kind: doc.kind(),
                ident: doc.ident(),
                message,
            };
            if doc.kind() == Kind::ClusterInformation {
                return Err(fail(
                    doc,
                    format!(
                        "operation {} is not supported on ClusterInformation: resource is readonly",
                        op.verb()
                    ),
                ));
            }
            if !matches!(op, BatchOp::Delete { .. }) {
                doc.set_defaults();
                doc.validate().map_err(|e| fail(doc, calico_text(&e)))?;
            } else if doc.meta().name.is_empty() {
                return Err(fail(doc, "resource name may not be empty".to_string()));
            }
            let existence = with_any!(&*doc, r => self.existence(r, op).await)
                .map_err(|e| fail(doc, calico_text(&e)))?;
            if matches!(existence, Existence::Create) {
                if !created.insert(doc.key()) {
                    let e = Error::AlreadyExists { key: doc.ident() };
                    return Err(fail(doc, calico_text(&e)));
                }
                if let AnyResource::IPPool(pool) = &*doc {
                    if pools.is_none() {
                        let stored = self
                            .list::<IPPool>()
                            .await
                            .map_err(|e| fail(doc, calico_text(&e)))?;
                        pools = Some(stored.items);
                    }
                    let others = pools.get_or_insert_with(Vec::new);
                    pool.validate_create(others)
                        .map_err(|e| fail(doc, calico_text(&e)))?;
                    others.push(pool.clone());
                }
            }
            plan.skip.push(matches!(existence, Existence::Skip));
        }
        Ok(plan)
    }

    async fn existence<R: Resource>(&self, r: &R, op: BatchOp) -> Result<Existence> {
        let current = self.store().get(&r.key()).await?;
        let check_rv = |current_rev: i64| -> Result<()> {
            match r.meta().resource_version.as_deref() {
                Some(rv) if !rv.is_empty() => {
                    let want = rv.parse::<i64>().map_err(|_| {
                        Error::invalid("Metadata.ResourceVersion", rv, "invalid resource version")
                    })?;
                    if want != current_rev {
                        return Err(Error::Conflict {
                            key: r.ident(),
                            expected: want,
                            actual: current_rev,
                        });
                    }
                    Ok(())
                }
                _ => Ok(()),
            }
        };
        match (op, current) {
            (BatchOp::Create { skip_exists: true }, Some(_)) => Ok(Existence::Skip),
            (BatchOp::Create { .. }, Some(_)) => Err(Error::AlreadyExists { key: r.ident() }),
            (BatchOp::Create { .. } | BatchOp::Apply, None) => Ok(Existence::Create),
            (BatchOp::Replace, None) => Err(Error::NotFound { key: r.ident() }),
            (
                BatchOp::Delete {
                    skip_not_exists: true,
                },
                None,
            ) => Ok(Existence::Skip),
            (BatchOp::Delete { .. }, None) => Err(Error::NotFound { key: r.ident() }),
            (BatchOp::Delete { .. }, Some(kv)) => {
                check_rv(kv.mod_revision)?;
                Ok(Existence::Update)
            }
            (BatchOp::Apply | BatchOp::Replace, Some(kv)) => {
                check_rv(kv.mod_revision)?;
                let old: R = decode(&kv)?;
                r.validate_update(&old)?;
                Ok(Existence::Update)
            }
        }
    }

    /// Performs one write of a checked batch; returns the stored (or deleted) resource.
    pub async fn write_any(&self, doc: &AnyResource, op: BatchOp) -> Result<AnyResource> {
        Ok(match doc {
            AnyResource::Node(r) => AnyResource::Node(self.write_one(r, op).await?),
            AnyResource::IPPool(r) => AnyResource::IPPool(self.write_one(r, op).await?),
            AnyResource::BGPPeer(r) => AnyResource::BGPPeer(self.write_one(r, op).await?),
            AnyResource::BGPConfiguration(r) => {
                AnyResource::BGPConfiguration(self.write_one(r, op).await?)
            }
            AnyResource::FelixConfiguration(r) => {
                AnyResource::FelixConfiguration(self.write_one(r, op).await?)
            }
            AnyResource::IPAMConfiguration(r) => {
                AnyResource::IPAMConfiguration(self.write_one(r, op).await?)
            }
            AnyResource::WorkloadEndpoint(r) => {
                AnyResource::WorkloadEndpoint(self.write_one(r, op).await?)
            }
            AnyResource::ClusterInformation(r) => {
                AnyResource::ClusterInformation(self.write_one(r, op).await?)
            }
            AnyResource::BFDConfiguration(r) => {
                AnyResource::BFDConfiguration(self.write_one(r, op).await?)
            }
            AnyResource::BGPFilter(r) => AnyResource::BGPFilter(self.write_one(r, op).await?),
        })
    }

    async fn write_one<R: Resource>(&self, r: &R, op: BatchOp) -> Result<R> {
        match self.write_once(r, op).await {
            Err(e) if e.may_have_applied() => self.settle(r, op, e).await,
            other => other,
        }
    }

    /// After a write that failed without a definite answer, the stored resource says what
    /// happened: written as asked (or deleted) is success, anything else the write's own
    /// error, and a store that cannot be read says the outcome is unknown.
    async fn settle<R: Resource>(&self, r: &R, op: BatchOp, err: Error) -> Result<R> {
        let m = r.meta();
        let stored = match self
            .try_get_in::<R>(m.namespace.as_deref().unwrap_or(""), &m.name)
            .await
        {
            Ok(stored) => stored,
            Err(read) => {
                return Err(Error::OutcomeUnknown {
                    key: r.key(),
                    cause: err.to_string(),
                    read_back: read.to_string(),
                });
            }
        };
        match (op, stored) {
            (BatchOp::Delete { .. }, None) => Ok(r.clone()),
            (BatchOp::Delete { .. }, Some(_)) => Err(err),
            (_, Some(s)) if written_as(r, &s) => Ok(s),
            (_, _) => Err(err),
        }
    }

    async fn write_once<R: Resource>(&self, r: &R, op: BatchOp) -> Result<R> {
        match op {
            BatchOp::Create { .. } => self.create(r.clone()).await,
            BatchOp::Apply => self.apply(r.clone()).await,
            BatchOp::Replace => self.update(r.clone()).await,
            BatchOp::Delete { .. } => {
                let m = r.meta();
                self.delete_in::<R>(
                    m.namespace.as_deref().unwrap_or(""),
                    &m.name,
                    m.resource_version.as_deref(),
                )
                .await
            }
        }
    }
}

/// Whether `stored` is `wanted` as a write leaves it: the same content once the fields
/// the store stamps (uid, creation time, revision) are taken from `stored`.
fn written_as<R: Resource>(wanted: &R, stored: &R) -> bool {
    let mut w = wanted.clone();
    w.set_defaults();
    let (wm, sm) = (w.meta_mut(), stored.meta());
    wm.uid.clone_from(&sm.uid);
    wm.creation_timestamp.clone_from(&sm.creation_timestamp);
    wm.resource_version.clone_from(&sm.resource_version);
    w == *stored
}
