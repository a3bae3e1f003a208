//! [`Client`]: typed access to v3 resources over any [`Datastore`]: get, list, create
//! (defaults, validation, uid, creation time), update (compare-and-swap on
//! `metadata.resourceVersion`, or get-merge-update retried on conflict as calicoctl does),
//! apply, delete and watch. Values in the store are exactly the v3 object as JSON
//! (`kind`, `apiVersion`, `metadata`, `spec`); `resourceVersion` is the key's
//! `mod_revision` and is not stored.

pub mod batch;
pub mod stamp;

use std::marker::PhantomData;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::kv::{Guard, KeyValue, Revision, WatchEvent};
use crate::model::resource::{Resource, ident_for, key_for};
use crate::store::{Datastore, Watch};

pub use batch::{BatchError, BatchOp, BatchPlan};

/// How many times an update without a resourceVersion retries after losing a race
/// (calicoctl's value).
const UPDATE_RETRIES: usize = 5;

/// Typed resource client. Cheap to clone; shares the store.
#[derive(Clone)]
pub struct Client {
    store: Arc<dyn Datastore>,
}

/// The items of one kind and the store revision they were read at (watch from
/// `revision + 1` to follow on).
#[derive(Debug, Clone)]
pub struct ResourceList<R> {
    pub items: Vec<R>,
    pub revision: Revision,
}

/// One change to a resource of a watched kind.
#[derive(Debug, Clone, PartialEq)]
pub enum ResourceEvent<R> {
    /// Created or updated (resourceVersion set).
    Put(R),
    /// Deleted at `revision`; `name` (and `namespace` for namespaced kinds) from the key.
    Delete {
        namespace: Option<String>,
        name: String,
        revision: Revision,
    },
}

/// A typed watch over one kind: undecodable values are reported as `Err` items.
pub struct ResourceWatch<R> {
    inner: Watch,
    prefix: String,
    _kind: PhantomData<R>,
}

impl<R: Resource> ResourceWatch<R> {
    /// The next event; `None` when the store ended the watch.
    pub async fn next(&mut self) -> Option<Result<ResourceEvent<R>>> {
        let ev = self.inner.next().await?;
        Some(ev.and_then(|ev| match ev {
            WatchEvent::Put(kv) => decode::<R>(&kv).map(ResourceEvent::Put),
            WatchEvent::Delete { key, revision } => {
                let rest = key.strip_prefix(&self.prefix).unwrap_or(&key);
                let (namespace, name) = match rest.split_once('/') {
                    Some((ns, n)) if R::NAMESPACED => (Some(ns.to_string()), n.to_string()),
                    _ => (None, rest.to_string()),
                };
                Ok(ResourceEvent::Delete {
                    namespace,
                    name,
                    revision,
                })
            }
        }))
    }
}

/// Decodes a stored value and sets `resourceVersion` from the key's revision.
pub fn decode<R: Resource>(kv: &KeyValue) -> Result<R> {
    let mut r: R = serde_json::from_slice(&kv.value).map_err(|e| Error::Decode {
        key: kv.key.clone(),
        reason: e.to_string(),
    })?;
    r.meta_mut().resource_version = Some(kv.mod_revision.to_string());
    Ok(r)
}

/// The JSON stored for a resource: the object without its resourceVersion.
pub fn encode<R: Resource>(r: &R) -> Result<Vec<u8>> {
    let mut r = r.clone();
    r.meta_mut().resource_version = None;
    serde_json::to_vec(&r).map_err(|e| Error::Decode {
        key: r.key(),
        reason: e.to_string(),
    })
}

fn parse_rv(rv: &str) -> Result<Revision> {
    rv.parse::<Revision>()
        .map_err(|_| Error::invalid("Metadata.ResourceVersion", rv, "invalid resource version"))
}

/// Calico's text for a client error, as calicoctl prints it:
/// `resource does not exist: IPPool(x) with error: <nil>`, `update conflict: IPPool(x)`
/// plus the out-of-date explanation, validation errors unchanged.
pub fn calico_text(e: &Error) -> String {
    match e {
        Error::NotFound { key } => format!("resource does not exist: {key} with error: <nil>"),
        Error::AlreadyExists { key } => format!("resource already exists: {key}"),
        Error::Conflict {
            key,
            expected,
            actual,
        } => format!(
            "update conflict: {key}: resource version '{expected}' is out of date (latest: \
             {actual}). Update the resource YAML/JSON in order to make changes"
        ),
        other => other.to_string(),
    }
}

/// Same resource content ignoring resourceVersion (an apply that changes nothing).
fn same_content<R: Resource>(a: &R, b: &R) -> bool {
    let mut a = a.clone();
    let mut b = b.clone();
    a.meta_mut().resource_version = None;
    b.meta_mut().resource_version = None;
    a == b
}

// ===== impl Client =====

impl Client {
    /// A client over `store`.
    pub fn new(store: Arc<dyn Datastore>) -> Client {
        Client { store }
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn Datastore> {
        &self.store
    }

    /// Reads a cluster-scoped resource; `Error::NotFound { key: "Kind(name)" }` if absent.
    pub async fn get<R: Resource>(&self, name: &str) -> Result<R> {
        self.get_in::<R>("", name).await
    }

    /// Reads a resource in `namespace` (ignored for cluster-scoped kinds).
    pub async fn get_in<R: Resource>(&self, namespace: &str, name: &str) -> Result<R> {
        match self.try_get_in::<R>(namespace, name).await? {
            Some(r) => Ok(r),
            None => Err(Error::NotFound {
                key: ident_for::<R>(Some(namespace), name),
            }),
        }
    }

    /// True while the datastore is locked: `ClusterInformation default` says
    /// `datastoreReady: false` (`calicoctl datastore migrate lock`). Without a
    /// ClusterInformation (no calico-node has started yet) it is not locked.
    pub async fn datastore_locked(&self) -> Result<bool> {
        let info = self
            .try_get::<crate::model::ClusterInformation>("default")
            .await?;
        Ok(info.is_some_and(|i| i.spec.datastore_ready == Some(false)))
    }

    /// Reads a cluster-scoped resource, `None` if absent.
    pub async fn try_get<R: Resource>(&self, name: &str) -> Result<Option<R>> {
        self.try_get_in::<R>("", name).await
    }

    /// Reads a resource in `namespace`, `None` if absent.
    pub async fn try_get_in<R: Resource>(&self, namespace: &str, name: &str) -> Result<Option<R>> {
        match self.store.get(&key_for::<R>(namespace, name)).await? {
            Some(kv) => decode(&kv).map(Some),
            None => Ok(None),
        }
    }

    /// Every resource of the kind (all namespaces), sorted by key, with the revision.
    pub async fn list<R: Resource>(&self) -> Result<ResourceList<R>> {
        self.list_prefix(crate::keys::resource_prefix(R::PLURAL))
            .await
    }

    /// The resources of a namespaced kind in one namespace.
    pub async fn list_in<R: Resource>(&self, namespace: &str) -> Result<ResourceList<R>> {
        let prefix = format!("{}{namespace}/", crate::keys::resource_prefix(R::PLURAL));
        self.list_prefix(prefix).await
    }

    async fn list_prefix<R: Resource>(&self, prefix: String) -> Result<ResourceList<R>> {
        let listing = self.store.list(&prefix).await?;
        let items = listing
            .items
            .iter()
            .map(decode::<R>)
            .collect::<Result<Vec<R>>>()?;
        Ok(ResourceList {
            items,
            revision: listing.revision,
        })
    }

    /// Creates a resource: defaults, validation (and, for pools, overlap with the other
    /// pools), a fresh uid and creationTimestamp. `Error::AlreadyExists` if the name is
    /// taken. Returns the stored resource with its resourceVersion.
    pub async fn create<R: Resource>(&self, r: R) -> Result<R> {
        self.create_with(r, None).await
    }

    /// [`create`](Self::create) made only while `guard` holds ([`Datastore::create_guarded`]):
    /// a resource that only makes sense while another key lives (a pod's endpoint while its
    /// address's IPAM handle does) is never written after that key went, however late the
    /// write reaches the store.
    pub async fn create_guarded<R: Resource>(&self, r: R, guard: &Guard) -> Result<R> {
        self.create_with(r, Some(guard)).await
    }

    async fn create_with<R: Resource>(&self, mut r: R, guard: Option<&Guard>) -> Result<R> {
        r.set_defaults();
        r.validate()?;
        if R::CHECKS_OTHERS_ON_CREATE {
            let others = self.list::<R>().await?.items;
            r.validate_create(&others)?;
        }
        let meta = r.meta_mut();
        meta.resource_version = None;
        meta.uid = Some(stamp::new_uid());
        meta.creation_timestamp = Some(stamp::now_rfc3339());
        let key = r.key();
        let created = match guard {
            Some(guard) => self.store.create_guarded(&key, encode(&r)?, guard).await,
            None => self.store.create(&key, encode(&r)?, None).await,
        };
        match created {
            Ok(rev) => {
                r.meta_mut().resource_version = Some(rev.to_string());
                Ok(r)
            }
            Err(Error::AlreadyExists { .. }) => Err(Error::AlreadyExists { key: r.ident() }),
            Err(e) => Err(e),
        }
    }

    /// Replaces a resource. With `metadata.resourceVersion`, only if it is still current
    /// (`Error::Conflict` otherwise); without, reads the current version, keeps its uid
    /// and creationTimestamp, and writes by compare-and-swap, retrying on conflict.
    /// Immutable fields (pool CIDR, block size) are checked against the stored version.
    /// Writing identical content is a no-op: nothing is written and the stored
    /// resourceVersion is returned.
    pub async fn update<R: Resource>(&self, mut r: R) -> Result<R> {
        r.set_defaults();
        r.validate()?;
        let key = r.key();
        let wanted_rv = match r.meta().resource_version.as_deref() {
            Some(rv) if !rv.is_empty() => Some(parse_rv(rv)?),
            _ => None,
        };
        let mut last = None;
        for _ in 0..UPDATE_RETRIES {
            let Some(current) = self.store.get(&key).await? else {
                return Err(Error::NotFound { key: r.ident() });
            };
            if let Some(rv) = wanted_rv
                && rv != current.mod_revision
            {
                return Err(Error::Conflict {
                    key: r.ident(),
                    expected: rv,
                    actual: current.mod_revision,
                });
            }
            let old: R = decode(&current)?;
            r.validate_update(&old)?;
            let mut new = r.clone();
            {
                let (om, nm) = (old.meta(), new.meta_mut());
                nm.uid = om.uid.clone();
                nm.creation_timestamp = om.creation_timestamp.clone();
                nm.resource_version = om.resource_version.clone();
            }
            if same_content(&new, &old) {
                return Ok(old);
            }
            match self
                .store
                .update(&key, encode(&new)?, current.mod_revision, None)
                .await
            {
                Ok(rev) => {
                    new.meta_mut().resource_version = Some(rev.to_string());
                    return Ok(new);
                }
                Err(Error::Conflict {
                    expected, actual, ..
                }) => {
                    let e = Error::Conflict {
                        key: r.ident(),
                        expected,
                        actual,
                    };
                    if wanted_rv.is_some() {
                        return Err(e);
                    }
                    last = Some(e);
                }
                Err(Error::NotFound { .. }) => return Err(Error::NotFound { key: r.ident() }),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(Error::NotFound { key: r.ident() }))
    }

    /// Creates the resource, or updates it if it exists (calicoctl apply).
    pub async fn apply<R: Resource>(&self, r: R) -> Result<R> {
        let ns = r.meta().namespace.clone().unwrap_or_default();
        if self.try_get_in::<R>(&ns, &r.meta().name).await?.is_some() {
            return self.update(r).await;
        }
        match self.create(r.clone()).await {
            Err(Error::AlreadyExists { .. }) => self.update(r).await,
            other => other,
        }
    }

    /// Deletes a cluster-scoped resource; with `resource_version`, only if still current.
    pub async fn delete<R: Resource>(
        &self,
        name: &str,
        resource_version: Option<&str>,
    ) -> Result<R> {
        self.delete_in::<R>("", name, resource_version).await
    }

    /// Deletes a resource in `namespace`; returns what was deleted.
    pub async fn delete_in<R: Resource>(
        &self,
        namespace: &str,
        name: &str,
        resource_version: Option<&str>,
    ) -> Result<R> {
        let ident = ident_for::<R>(Some(namespace), name);
        let expected = match resource_version {
            Some(rv) if !rv.is_empty() => Some(parse_rv(rv)?),
            _ => None,
        };
        match self
            .store
            .delete(&key_for::<R>(namespace, name), expected)
            .await
        {
            Ok(kv) => decode(&kv),
            Err(Error::NotFound { .. }) => Err(Error::NotFound { key: ident }),
            Err(Error::Conflict {
                expected, actual, ..
            }) => Err(Error::Conflict {
                key: ident,
                expected,
                actual,
            }),
            Err(e) => Err(e),
        }
    }

    /// Watches every resource of the kind from `from` (0 = from now; a listing's
    /// `revision + 1` to follow on without a gap).
    pub async fn watch<R: Resource>(&self, from: Revision) -> Result<ResourceWatch<R>> {
        let prefix = crate::keys::resource_prefix(R::PLURAL);
        let inner = self.store.watch(&prefix, from).await?;
        Ok(ResourceWatch {
            inner,
            prefix,
            _kind: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests;
