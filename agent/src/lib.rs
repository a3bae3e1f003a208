//! calico-node: registers the node, keeps the dataplane in sync with the datastore and the
//! embedded BGP speaker, serves local status.

pub mod backoff;
pub mod calc;
pub mod config;
pub mod dataplane;
pub mod flannel;
pub mod liveness;
pub mod local;
pub mod maps;
pub mod previews;
pub mod run;
pub mod startup;
pub mod state;
pub mod syncer;
pub mod tasks;
