//! The two [`Datastore`](crate::Datastore) backends: [`EtcdStore`] (etcd v3, the production
//! backend) and [`LocalStore`] (an embedded single-file store for one host), with the same
//! semantics; `tests/conformance.rs` runs one suite against both.

pub mod local;

pub use local::{LocalOptions, LocalStore};
