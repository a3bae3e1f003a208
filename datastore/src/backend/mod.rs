//! The two [`Datastore`](crate::Datastore) backends: [`EtcdStore`] (etcd v3, the production
//! backend) and [`LocalStore`] (an embedded single-file store for one host), with the same
//! semantics; `tests/conformance.rs` runs one suite against both.

#[cfg(feature = "etcd")]
pub mod etcd;
pub mod local;

#[cfg(feature = "etcd")]
pub use etcd::{EtcdOptions, EtcdStore};
pub use local::{LocalOptions, LocalStore};
