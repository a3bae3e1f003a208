//! Calico's projectcalico.org/v3 resource model and the datastore it lives in.
//!
//! - [`Datastore`]: the revisioned key-value store (etcdv3 or the embedded SQLite file),
//! - [`keys`]: Calico's etcdv3 key layout.

pub mod backend;
pub mod client;
pub mod config;
pub mod error;
pub mod keys;
pub mod kv;
pub mod memory;
pub mod model;
pub mod selector;
pub mod store;

pub use client::{Client, ResourceEvent, ResourceList, ResourceWatch};
pub use error::{Error, Result};
pub use kv::{
    Expect, Guard, KeyValue, Lease, LeaseId, Listing, PrefixRead, Put, PutAll, Revision, WatchEvent,
};
pub use memory::MemoryStore;
pub use model::{AnyResource, Kind, Resource};
pub use selector::{Selector, SelectorError};
pub use store::{Datastore, Watch};
