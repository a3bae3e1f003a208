//! The [`Resource`] trait every v3 kind implements (through its [`Spec`]), used by the
//! typed [`Client`](crate::Client) and by calicoctl.

use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::keys;
use crate::model::meta::{API_VERSION, Object, ObjectMeta};

/// What a kind's spec type declares: names, scope, defaults and validation rules.
/// Implemented once per kind (`IPPoolSpec`, `NodeSpec`, ...); the resource type is
/// `Object<Spec>` and gets [`Resource`] for free.
pub trait Spec:
    Serialize + DeserializeOwned + Default + Clone + Debug + PartialEq + Send + Sync + 'static
{
    /// Calico's kind name, e.g. `IPPool`.
    const KIND: &'static str;
    /// The plural used in datastore keys, e.g. `ippools`.
    const PLURAL: &'static str;
    /// Whether resources of the kind live in a namespace (workload endpoints).
    const NAMESPACED: bool = false;
    /// Whether calicoctl refuses to write it (ClusterInformation).
    const READ_ONLY: bool = false;
    /// Whether [`Spec::validate_create`] needs the other resources of the kind.
    const CHECKS_OTHERS_ON_CREATE: bool = false;

    /// Fills in Calico's defaults, as Calico persists them on write.
    fn set_defaults(&mut self, _meta: &ObjectMeta) {}

    /// Checks the resource on its own (after defaults). Errors carry Calico's field path.
    fn validate(&self, meta: &ObjectMeta) -> Result<()>;

    /// Checks a replacement against the stored version (immutable fields).
    fn validate_update(&self, _meta: &ObjectMeta, _old: &Self) -> Result<()> {
        Ok(())
    }

    /// Checks a new resource against the existing ones of its kind (pool overlap).
    fn validate_create(&self, _meta: &ObjectMeta, _others: &[Object<Self>]) -> Result<()> {
        Ok(())
    }
}

/// A typed v3 resource as stored at `/calico/resources/v3/projectcalico.org/<plural>/..`.
pub trait Resource:
    Serialize + DeserializeOwned + Clone + Debug + PartialEq + Send + Sync + 'static
{
    /// Calico's kind name, e.g. `IPPool`.
    const KIND: &'static str;
    /// The plural used in datastore keys.
    const PLURAL: &'static str;
    /// Whether the kind is namespaced.
    const NAMESPACED: bool;
    /// Whether calicoctl refuses to write it.
    const READ_ONLY: bool;
    /// Whether create checks the other resources of the kind.
    const CHECKS_OTHERS_ON_CREATE: bool;

    /// The metadata.
    fn meta(&self) -> &ObjectMeta;
    /// The metadata, mutably.
    fn meta_mut(&mut self) -> &mut ObjectMeta;
    /// Sets `apiVersion`/`kind` and Calico's spec defaults.
    fn set_defaults(&mut self);
    /// Validates name, type meta and spec.
    fn validate(&self) -> Result<()>;
    /// Validates a replacement of `old`.
    fn validate_update(&self, old: &Self) -> Result<()>;
    /// Validates a create against the existing resources of the kind.
    fn validate_create(&self, others: &[Self]) -> Result<()>;

    /// The datastore key.
    fn key(&self) -> String {
        let m = self.meta();
        key_for::<Self>(m.namespace.as_deref().unwrap_or(""), &m.name)
    }

    /// Calico's identifier text: `IPPool(name)` or `WorkloadEndpoint(ns/name)`.
    fn ident(&self) -> String {
        let m = self.meta();
        ident_for::<Self>(m.namespace.as_deref(), &m.name)
    }
}

/// The datastore key of resource `name` (in `namespace` for namespaced kinds).
pub fn key_for<R: Resource>(namespace: &str, name: &str) -> String {
    if R::NAMESPACED {
        keys::namespaced_resource(R::PLURAL, namespace, name)
    } else {
        keys::resource(R::PLURAL, name)
    }
}

/// Calico's identifier text for error messages: `Kind(name)` / `Kind(ns/name)`.
pub fn ident_for<R: Resource>(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if R::NAMESPACED && !ns.is_empty() => format!("{}({ns}/{name})", R::KIND),
        _ => format!("{}({name})", R::KIND),
    }
}

// ===== impl Resource for Object<S> =====

impl<S: Spec> Object<S> {
    /// A resource of this kind with `name` and `spec`, type meta filled in.
    pub fn new(name: impl Into<String>, spec: S) -> Object<S> {
        Object {
            kind: S::KIND.to_string(),
            api_version: API_VERSION.to_string(),
            metadata: ObjectMeta::named(name),
            spec,
            status: None,
        }
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.metadata.name
    }
}

impl<S: Spec> Resource for Object<S> {
    const KIND: &'static str = S::KIND;
    const PLURAL: &'static str = S::PLURAL;
    const NAMESPACED: bool = S::NAMESPACED;
    const READ_ONLY: bool = S::READ_ONLY;
    const CHECKS_OTHERS_ON_CREATE: bool = S::CHECKS_OTHERS_ON_CREATE;

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }

    fn set_defaults(&mut self) {
        if self.kind.is_empty() {
            self.kind = S::KIND.to_string();
        }
        if self.api_version.is_empty() {
            self.api_version = API_VERSION.to_string();
        }
        if S::NAMESPACED && self.metadata.namespace.as_deref().unwrap_or("").is_empty() {
            self.metadata.namespace = Some("default".to_string());
        }
        self.spec.set_defaults(&self.metadata);
    }

    fn validate(&self) -> Result<()> {
        crate::model::validation::validate_meta(S::KIND, S::NAMESPACED, &self.metadata)?;
        self.spec.validate(&self.metadata)
    }

    fn validate_update(&self, old: &Self) -> Result<()> {
        self.spec.validate_update(&self.metadata, &old.spec)
    }

    fn validate_create(&self, others: &[Self]) -> Result<()> {
        self.spec.validate_create(&self.metadata, others)
    }
}
