//! The crate's one error type.

use std::net::IpAddr;

use datastore::model::IpFamily;
use ipnet::IpNet;
use thiserror::Error;

use datastore::model::ippool::AllowedUse;

/// Everything an IPAM operation can fail with. Messages follow Calico's wording where a
/// Calico user would recognise it.
#[derive(Debug, Error)]
pub enum Error {
    /// The datastore failed or was unreachable.
    #[error(transparent)]
    Datastore(#[from] datastore::Error),
    /// A requested pool (CNI `ipam.ipv4_pools`) names no pool, by name or CIDR.
    #[error("the requested IP pool {pool:?} does not exist")]
    UnknownPool { pool: String },
    /// No pool is enabled, selects the node and allows the use.
    #[error(
        "no {family} pool usable for {usage} addresses on node {node:?} (considered: [{}]; a pool must be {family}, enabled, select the node with its nodeSelector and allow {usage} in allowedUses)",
        considered.join(" ")
    )]
    NoUsablePools {
        family: IpFamily,
        node: String,
        usage: AllowedUse,
        considered: Vec<String>,
    },
    /// Every candidate pool is full (or strictAffinity forbids borrowing).
    #[error(
        "failed to request {requested} {family} addresses. IPAM allocated only {allocated} (No IPs available in pools: [{}])",
        pools.join(" ")
    )]
    Exhausted {
        family: IpFamily,
        requested: usize,
        allocated: usize,
        pools: Vec<String>,
    },
    /// The node already holds `maxBlocksPerHost` blocks and they are full.
    #[error("cannot allocate new block due to per host block limit")]
    BlockLimit,
    /// A handle id that cannot be a datastore key.
    #[error("invalid IPAM handle {0:?}: must be non-empty, without '/' or whitespace")]
    InvalidHandle(String),
    /// A node name that cannot be a datastore key.
    #[error("invalid node name {0:?}: must be non-empty, without '/' or whitespace")]
    InvalidNode(String),
    /// What uses addresses cannot be known: a record of it does not decode.
    #[error("cannot tell which addresses are in use: {0} does not decode; fix or delete it")]
    UsageUnknown(String),
    /// An address outside every IP pool.
    #[error("{0} is not in any configured IP pool")]
    NotInPool(IpAddr),
    /// A specific address asked for is taken.
    #[error("{0} is already assigned")]
    AlreadyAssigned(IpAddr),
    /// A release found the allocation re-stamped: it was released and handed out again.
    #[error("{ip} was reallocated since it was read (sequence number {expected}, now {actual})")]
    BadSequenceNumber {
        ip: IpAddr,
        expected: u64,
        actual: u64,
    },
    /// A block affinity release was asked for a block still holding addresses.
    #[error("block {0} is not empty")]
    BlockNotEmpty(IpNet),
    /// A block affinity release would leave the node with no block.
    #[error("block {block} is the last block of node {node}; not releasing it")]
    LastBlock { node: String, block: IpNet },
    /// No such affinity.
    #[error("node {node} has no affinity to block {block}")]
    NoAffinity { node: String, block: IpNet },
    /// A compare-and-swap lost too many times in a row.
    #[error("too much contention on {key}: gave up after {attempts} attempts")]
    Contention { key: String, attempts: usize },
    /// A write whose outcome could not be told (the store failed after the request and
    /// could not be read back). Nothing was undone, so that a release by the handle frees
    /// whatever the write may have taken.
    #[error(
        "could not tell whether the write of {key} was saved ({write}), and reading it back failed ({read}); nothing was undone: releasing the handle frees whatever was taken"
    )]
    Ambiguous {
        key: String,
        write: String,
        read: String,
    },
    /// A stored object that does not decode.
    #[error("corrupt IPAM data at {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// An invalid IPAM configuration.
    #[error("invalid IPAM configuration: {0}")]
    InvalidConfig(String),
}

impl Error {
    /// True when retrying later may succeed (the datastore was unreachable or busy).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Datastore(e) => e.is_transient(),
            Error::Contention { .. } | Error::Ambiguous { .. } => true,
            _ => false,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
