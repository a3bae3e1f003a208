//! Typed reads and writes of the IPAM objects on the [`Datastore`], and the bounded
//! compare-and-swap retry every racing write goes through.

use std::time::Duration;

use datastore::model::ipam::{AllocationBlock, BlockAffinity, IpamHandle};
use datastore::{Datastore, KeyValue, Revision, keys};
use ipnet::IpNet;
use rand::Rng;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// How many times a compare-and-swap is retried on conflict (Calico's `datastoreRetries`).
pub const RETRIES: usize = 100;

/// A decoded value and the revision it was read at (the compare-and-swap token).
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub value: T,
    pub revision: Revision,
}

/// Encodes a stored object as JSON.
pub fn encode<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

/// Decodes one stored object.
pub fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Result<Versioned<T>> {
    let value = serde_json::from_slice(&kv.value).map_err(|e| Error::Corrupt {
        key: kv.key.clone(),
        reason: e.to_string(),
    })?;
    Ok(Versioned {
        value,
        revision: kv.mod_revision,
    })
}

/// Reads and decodes `key`.
pub async fn get<T: DeserializeOwned>(
    ds: &dyn Datastore,
    key: &str,
) -> Result<Option<Versioned<T>>> {
    match ds.get(key).await? {
        Some(kv) => Ok(Some(decode(&kv)?)),
        None => Ok(None),
    }
}

/// Decodes a block and checks it is one the IPAM code can index safely
/// ([`AllocationBlock::validate`]): a corrupt block is an error naming it, not a panic.
pub fn decode_block(kv: &KeyValue) -> Result<Versioned<AllocationBlock>> {
    let block: Versioned<AllocationBlock> = decode(kv)?;
    block.value.validate().map_err(|reason| Error::Corrupt {
        key: kv.key.clone(),
        reason,
    })?;
    Ok(block)
}

/// Reads a block.
pub async fn get_block(
    ds: &dyn Datastore,
    cidr: &IpNet,
) -> Result<Option<Versioned<AllocationBlock>>> {
    match ds.get(&keys::block(cidr)).await? {
        Some(kv) => Ok(Some(decode_block(&kv)?)),
        None => Ok(None),
    }
}

/// Reads a host's affinity to a block.
pub async fn get_affinity(
    ds: &dyn Datastore,
    node: &str,
    cidr: &IpNet,
) -> Result<Option<Versioned<BlockAffinity>>> {
    get(ds, &keys::affinity(node, cidr)).await
}

/// Reads a handle.
pub async fn get_handle(ds: &dyn Datastore, id: &str) -> Result<Option<Versioned<IpamHandle>>> {
    get(ds, &keys::handle(id)).await
}

/// Counts attempts of one compare-and-swap loop: after a lost race it waits a short,
/// growing, jittered pause (so many processes hammering one block spread out), and gives
/// up with [`Error::Contention`] after [`RETRIES`].
pub struct Retry {
    key: String,
    attempt: usize,
}

impl Retry {
    /// A fresh loop over `key`.
    pub fn new(key: impl Into<String>) -> Retry {
        Retry {
            key: key.into(),
            attempt: 0,
        }
    }

    /// [`next`](Self::next) without the pause, for an attempt that lost no race for
    /// `key` (another key of the same write was not as expected).
    pub fn next_without_pause(&mut self) -> Result<()> {
        if self.attempt >= RETRIES {
            return Err(Error::Contention {
                key: self.key.clone(),
                attempts: self.attempt,
            });
        }
        self.attempt += 1;
        Ok(())
    }

    /// Call at the top of each iteration; fails once the budget is spent.
    pub async fn next(&mut self) -> Result<()> {
        if self.attempt > 0 && self.attempt < RETRIES {
            let cap_ms = (self.attempt as u64).min(20);
            let micros = rand::rng().random_range(0..=cap_ms * 1000);
            tokio::time::sleep(Duration::from_micros(micros)).await;
        }
        self.next_without_pause()
    }
}

/// True for the errors a compare-and-swap loop retries: the key moved, appeared or went.
pub fn is_race(e: &datastore::Error) -> bool {
    matches!(
        e,
        datastore::Error::Conflict { .. }
            | datastore::Error::AlreadyExists { .. }
            | datastore::Error::NotFound { .. }
    )
}

/// Whether a failed write may still have been applied ([`datastore::Error::may_have_applied`]):
/// such an outcome is resolved by reading back, never by guessing.
pub fn may_have_applied(e: &datastore::Error) -> bool {
    e.may_have_applied()
}

/// What a read-back after an ambiguous write found.
#[derive(Debug)]
pub enum ReadBack<T> {
    /// The state the write was to produce is there (`T` as read).
    Applied(T),
    /// It is not: the write did not happen (or was overtaken), retrying is safe.
    NotApplied,
    /// The store could not be read either: the outcome is unknown.
    Unknown(datastore::Error),
}

/// Pauses between the read-backs of one ambiguous write (the store may be restarting).
const READ_BACK_PAUSES: [Duration; 3] = [
    Duration::from_millis(50),
    Duration::from_millis(200),
    Duration::from_millis(750),
];

/// Reads `key` back (a few tries) after a write of unknown outcome and asks `applied`
/// whether the write's effect is there.
pub async fn read_back<T: DeserializeOwned>(
    ds: &dyn Datastore,
    key: &str,
    applied: impl Fn(Option<&Versioned<T>>) -> bool,
) -> ReadBack<Option<Versioned<T>>> {
    let mut last = None;
    for pause in READ_BACK_PAUSES {
        match ds.get(key).await {
            Ok(kv) => {
                let value = match kv.as_ref().map(decode::<T>).transpose() {
                    Ok(v) => v,
                    Err(e) => return ReadBack::Unknown(datastore::Error::Backend(e.to_string())),
                };
                return if applied(value.as_ref()) {
                    ReadBack::Applied(value)
                } else {
                    ReadBack::NotApplied
                };
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(pause).await;
    }
    ReadBack::Unknown(last.unwrap_or_else(|| datastore::Error::Backend("no read".into())))
}
