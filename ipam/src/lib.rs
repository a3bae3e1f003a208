//! Calico IPAM on the [`datastore::Datastore`] (reference calico.md §3): IP pools cut into
//! blocks, blocks claimed by nodes (affinity, two-phase), addresses allocated by handle from
//! the node's own blocks first, borrowed from other nodes' blocks only when no block is
//! free, released by handle or address, every write a compare-and-swap retried on conflict.
//!
//! - [`Ipam`]: the entry point (`auto_assign`, `assign_ip`, `release_by_handle`,
//!   `release_ip`, tunnel addresses, `release_block_affinity`, read-side views, `check`);
//! - [`block`]: block arithmetic and the pure in-block operations;
//! - [`pool`]: the pool view and the choice of candidate pools.

pub mod assign;
pub mod block;
pub mod check;
pub mod claim;
pub mod client;
pub mod error;
pub mod handle;
pub mod notice;
pub mod pool;
pub mod query;
pub mod release;
pub mod store;
pub mod tunnel;
pub mod usage;

#[cfg(test)]
mod tests;

pub use assign::{AssignIpArgs, AssignReads, Assigned, AutoAssignArgs};
pub use check::{CheckReport, InUse, Usage};
pub use claim::StuckClaim;
pub use client::Ipam;
pub use datastore::model::ipam::{AffinityState, IpamConfig};
pub use error::{Error, Result};
pub use notice::{ClaimNotice, ClaimObserver, SocketNotifier};
pub use pool::{AllowedUse, Pool};
pub use query::{Affinity, Allocation, BlockInfo};
pub use release::LeakRelease;
pub use tunnel::TunnelKind;
