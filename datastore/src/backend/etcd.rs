//! [`EtcdStore`]: the etcd v3 backend, through etcd-client. Create-if-absent and
//! compare-and-swap are etcd transactions (`create_revision == 0`, `mod_revision ==
//! expected`), watches are etcd watches with a start revision, leases are etcd leases.
//!
//! Every call is bounded by [`EtcdOptions::request_timeout`]: with etcd down a call fails
//! with [`Error::Backend`] naming the endpoints instead of waiting for it to come back. A
//! watch whose stream breaks ends with an `Err`; the consumer relists and watches again.

mod options;
mod watch;

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, KvClient, PutOptions, Txn, TxnOp,
    TxnOpResponse, TxnResponse,
};

pub use self::options::EtcdOptions;
use crate::error::{Error, Result};
use crate::kv::{
    Expect, Guard, KeyValue, Lease, LeaseId, Listing, PrefixRead, Put, PutAll, Revision,
};
use crate::store::{Datastore, Watch};

/// Largest listing or watch response accepted (gRPC's default is 4 MiB, which a cluster's
/// workload endpoints or IPAM blocks can outgrow).
const MAX_RESPONSE_BYTES: usize = 256 << 20;

/// A connection to an etcd cluster: owns the etcd-client handle (one HTTP/2 channel balanced
/// over the endpoints, shared by every call and watch) and the endpoints for error messages.
pub struct EtcdStore {
    client: Client,
    /// The key-value client with [`MAX_RESPONSE_BYTES`], for listings.
    kv: KvClient,
    /// The endpoints, comma separated, as error messages name them.
    endpoints: String,
    request_timeout: Duration,
}

/// Converts etcd-client's key-value.
fn kv_from(kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    let key = kv.key_str().map_err(|e| Error::Decode {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        reason: e.to_string(),
    })?;
    Ok(KeyValue {
        key: key.to_string(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        lease: (kv.lease() != 0).then_some(kv.lease()),
    })
}

/// A one-line description of an etcd-client error: the gRPC message and the root cause
/// (`tcp connect error: Connection refused (os error 111)`) rather than tonic's debug dump.
fn describe(e: &etcd_client::Error) -> String {
    let etcd_client::Error::GRpcStatus(status) = e else {
        return e.to_string();
    };
    let mut msg = status.message().to_string();
    if msg.is_empty() {
        msg = format!("{:?}", status.code());
    }
    let mut root = None;
    let mut next = std::error::Error::source(status);
    while let Some(cause) = next {
        root = Some(cause);
        next = cause.source();
    }
    match root {
        Some(cause) if !msg.contains(&cause.to_string()) => format!("{msg}: {cause}"),
        _ => msg,
    }
}

/// The key-value a transaction's `or_else` get returned, if the key exists.
fn txn_get(resp: &TxnResponse) -> Result<Option<KeyValue>> {
    for op in resp.op_responses() {
        if let TxnOpResponse::Get(get) = op {
            return get.kvs().first().map(kv_from).transpose();
        }
    }
    Ok(None)
}

/// Every get of a failed transaction's `or_else`, in order.
fn txn_gets(resp: &TxnResponse) -> Result<Vec<Option<KeyValue>>> {
    resp.op_responses()
        .iter()
        .filter_map(|op| match op {
            TxnOpResponse::Get(get) => Some(get.kvs().first().map(kv_from).transpose()),
            _ => None,
        })
        .collect()
}

fn txn_revision(resp: &TxnResponse) -> Revision {
    resp.header().map(|h| h.revision()).unwrap_or_default()
}

// ===== impl EtcdStore =====

impl EtcdStore {
    /// Connects and checks that etcd answers (bounded by the timeouts), so a wrong endpoint,
    /// a refused certificate or a down cluster fails here with a message naming it.
    pub async fn connect(options: EtcdOptions) -> Result<EtcdStore> {
        let urls = options.urls()?;
        let connect_options = options.connect_options()?;
        let endpoints = urls.join(",");
        let client = tokio::time::timeout(
            options.request_timeout,
            Client::connect(&urls, Some(connect_options)),
        )
        .await
        .map_err(|_| {
            Error::Backend(format!(
                "etcd {endpoints}: no connection within {:?}",
                options.request_timeout
            ))
        })?
        .map_err(|e| Error::Backend(format!("etcd {endpoints}: {}", describe(&e))))?;
        let store = EtcdStore {
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_RESPONSE_BYTES),
            client,
            endpoints,
            request_timeout: options.request_timeout,
        };
        let revision = match store.revision().await {
            Ok(revision) => revision,
            // A refused handshake shows up as a closed connection: say where to look.
            Err(Error::Backend(msg)) if options.uses_tls() => {
                return Err(Error::Backend(format!(
                    "{msg} (TLS: check that ETCD_CA_CERT_FILE signed the server's certificate \
                     and that ETCD_CERT_FILE/ETCD_KEY_FILE are a client certificate it accepts)"
                )));
            }
            Err(e) => return Err(e),
        };
        tracing::debug!(endpoints = %store.endpoints, revision, "connected to etcd");
        Ok(store)
    }

    /// The endpoints, comma separated.
    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    /// Compacts etcd's history before `revision` (physically, waiting for it): watches
    /// starting earlier get [`Error::Compacted`]. A revision at or below the current
    /// compaction point does nothing.
    pub async fn compact(&self, revision: Revision) -> Result<()> {
        let mut client = self.client.clone();
        let options = etcd_client::CompactionOptions::new().with_physical();
        match self
            .call("compact", client.compact(revision, Some(options)))
            .await
        {
            Err(Error::Backend(msg)) if msg.contains("has been compacted") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Runs one etcd call, bounded by the request timeout, mapping its error.
    async fn call<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.request_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Error::Backend(format!(
                "etcd {}: {what}: {}",
                self.endpoints,
                describe(&e)
            ))),
            Err(_) => Err(Error::Backend(format!(
                "etcd {}: {what}: no answer within {:?} (is etcd running?)",
                self.endpoints, self.request_timeout
            ))),
        }
    }

    /// [`call`](Self::call) for calls that name a lease: etcd's "requested lease not found"
    /// (and etcd-client's "lease not found" on a keep-alive) becomes [`Error::LeaseNotFound`].
    async fn call_with_lease<T>(
        &self,
        what: &str,
        lease: Option<LeaseId>,
        fut: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        match self.call(what, fut).await {
            Err(Error::Backend(msg)) if msg.contains("lease not found") => {
                Err(Error::LeaseNotFound(lease.unwrap_or_default()))
            }
            other => other,
        }
    }

    fn put_options(lease: Option<LeaseId>) -> Option<PutOptions> {
        lease.map(|id| PutOptions::new().with_lease(id))
    }
}

#[async_trait]
impl Datastore for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let mut client = self.client.clone();
        let resp = self.call("get", client.get(key, None)).await?;
        resp.kvs().first().map(kv_from).transpose()
    }

    async fn list(&self, prefix: &str) -> Result<Listing> {
        let mut kv = self.kv.clone();
        let resp = self
            .call(
                "list",
                kv.get(prefix, Some(GetOptions::new().with_prefix())),
            )
            .await?;
        Ok(Listing {
            items: resp.kvs().iter().map(kv_from).collect::<Result<_>>()?,
            revision: resp.header().map(|h| h.revision()).unwrap_or_default(),
        })
    }

    async fn list_at_once(&self, reads: &[PrefixRead<'_>]) -> Result<Vec<Listing>> {
        // One transaction of range reads: every listing at its revision.
        let ops: Vec<TxnOp> = reads
            .iter()
            .map(|r| {
                let options = GetOptions::new().with_prefix();
                let options = if r.keys_only {
                    options.with_keys_only()
                } else {
                    options
                };
                TxnOp::get(r.prefix, Some(options))
            })
            .collect();
        let mut kv = self.kv.clone();
        let resp = self.call("list", kv.txn(Txn::new().and_then(ops))).await?;
        let revision = txn_revision(&resp);
        let listings: Vec<Listing> = resp
            .op_responses()
            .iter()
            .filter_map(|op| match op {
                TxnOpResponse::Get(get) => Some(get.kvs().iter().map(kv_from).collect()),
                _ => None,
            })
            .map(|items: Result<Vec<KeyValue>>| {
                Ok(Listing {
                    items: items?,
                    revision,
                })
            })
            .collect::<Result<_>>()?;
        if listings.len() != reads.len() {
            return Err(Error::Backend(format!(
                "etcd answered {} of {} listings",
                listings.len(),
                reads.len()
            )));
        }
        Ok(listings)
    }

    async fn create(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<Revision> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, Self::put_options(lease))]);
        let mut client = self.client.clone();
        let resp = self
            .call_with_lease("create", lease, client.txn(txn))
            .await?;
        if resp.succeeded() {
            Ok(txn_revision(&resp))
        } else {
            Err(Error::AlreadyExists {
                key: key.to_string(),
            })
        }
    }

    async fn put_all(&self, puts: Vec<Put>) -> Result<PutAll> {
        Put::check_distinct(&puts)?;
        let compares: Vec<Compare> = puts
            .iter()
            .map(|p| match p.expect {
                Expect::Absent => Compare::create_revision(p.key.as_str(), CompareOp::Equal, 0),
                Expect::At(rev) => Compare::mod_revision(p.key.as_str(), CompareOp::Equal, rev),
            })
            .collect();
        let gets: Vec<TxnOp> = puts
            .iter()
            .map(|p| TxnOp::get(p.key.as_str(), None))
            .collect();
        let count = puts.len();
        let mut writes: Vec<Put> = puts;
        // In key order: a watch sees one revision's events in the order of the puts.
        writes.sort_by(|a, b| a.key.cmp(&b.key));
        let txn = Txn::new()
            .when(compares)
            .and_then(
                writes
                    .into_iter()
                    .map(|p| TxnOp::put(p.key, p.value, None))
                    .collect::<Vec<_>>(),
            )
            .or_else(gets);
        let mut client = self.client.clone();
        let resp = self.call("put", client.txn(txn)).await?;
        if resp.succeeded() {
            return Ok(PutAll::Written(txn_revision(&resp)));
        }
        let current = txn_gets(&resp)?;
        if current.len() != count {
            return Err(Error::Backend(format!(
                "{} keys read back for a write of {count}",
                current.len()
            )));
        }
        Ok(PutAll::Refused(current))
    }

    async fn create_guarded(&self, key: &str, value: Vec<u8>, guard: &Guard) -> Result<Revision> {
        let txn = Txn::new()
            .when([
                Compare::create_revision(key, CompareOp::Equal, 0),
                Compare::create_revision(
                    guard.key.as_str(),
                    CompareOp::Equal,
                    guard.create_revision,
                ),
            ])
            .and_then([TxnOp::put(key, value, None)])
            .or_else([TxnOp::get(key, None), TxnOp::get(guard.key.as_str(), None)]);
        let mut client = self.client.clone();
        let resp = self.call("create", client.txn(txn)).await?;
        if resp.succeeded() {
            return Ok(txn_revision(&resp));
        }
        let gets = txn_gets(&resp)?;
        let guard_now = gets.get(1).cloned().flatten();
        match guard_now {
            Some(g) if g.create_revision == guard.create_revision => Err(Error::AlreadyExists {
                key: key.to_string(),
            }),
            other => Err(guard.failed(other.map_or(0, |g| g.create_revision))),
        }
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
        lease: Option<LeaseId>,
    ) -> Result<Revision> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::put(key, value, Self::put_options(lease))])
            .or_else([TxnOp::get(key, None)]);
        let mut client = self.client.clone();
        let resp = self
            .call_with_lease("update", lease, client.txn(txn))
            .await?;
        if resp.succeeded() {
            return Ok(txn_revision(&resp));
        }
        match txn_get(&resp)? {
            Some(current) => Err(Error::Conflict {
                key: key.to_string(),
                expected,
                actual: current.mod_revision,
            }),
            None => Err(Error::NotFound {
                key: key.to_string(),
            }),
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let mut client = self.client.clone();
        let not_found = || Error::NotFound {
            key: key.to_string(),
        };
        let Some(expected) = expected else {
            let resp = self
                .call(
                    "delete",
                    client.delete(key, Some(DeleteOptions::new().with_prev_key())),
                )
                .await?;
            return resp
                .prev_kvs()
                .first()
                .map(kv_from)
                .transpose()?
                .ok_or_else(not_found);
        };
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.call("delete", client.txn(txn)).await?;
        if !resp.succeeded() {
            return match txn_get(&resp)? {
                Some(current) => Err(Error::Conflict {
                    key: key.to_string(),
                    expected,
                    actual: current.mod_revision,
                }),
                None => Err(not_found()),
            };
        }
        for op in resp.op_responses() {
            if let TxnOpResponse::Delete(del) = op
                && let Some(kv) = del.prev_kvs().first()
            {
                return kv_from(kv);
            }
        }
        Err(not_found())
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch> {
        watch::start(self, prefix, from).await
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<Lease> {
        // etcd counts in whole seconds; round up so a lease never lives shorter than asked.
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let secs = i64::try_from(secs.max(1)).unwrap_or(i64::MAX);
        let mut client = self.client.clone();
        let resp = self
            .call("grant lease", client.lease_grant(secs, None))
            .await?;
        if !resp.error().is_empty() {
            return Err(Error::Backend(format!(
                "etcd {}: grant lease: {}",
                self.endpoints,
                resp.error()
            )));
        }
        Ok(Lease {
            id: resp.id(),
            ttl: Duration::from_secs(u64::try_from(resp.ttl()).unwrap_or(0)),
        })
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<()> {
        let mut client = self.client.clone();
        let ttl = self
            .call_with_lease("keep lease alive", Some(lease), async move {
                let (mut keeper, mut stream) = client.lease_keep_alive(lease).await?;
                keeper.keep_alive().await?;
                Ok(stream.message().await?.map(|r| r.ttl()))
            })
            .await?;
        match ttl {
            Some(ttl) if ttl > 0 => Ok(()),
            _ => Err(Error::LeaseNotFound(lease)),
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<()> {
        let mut client = self.client.clone();
        self.call_with_lease("revoke lease", Some(lease), client.lease_revoke(lease))
            .await
            .map(|_| ())
    }

    async fn lease_time_to_live(&self, lease: LeaseId) -> Result<Option<Duration>> {
        let mut client = self.client.clone();
        let resp = self
            .call_with_lease(
                "lease time to live",
                Some(lease),
                client.lease_time_to_live(lease, None),
            )
            .await?;
        match u64::try_from(resp.ttl()) {
            Ok(secs) => Ok(Some(Duration::from_secs(secs))),
            // etcd answers -1 for an expired or unknown lease.
            Err(_) => Err(Error::LeaseNotFound(lease)),
        }
    }

    async fn revision(&self) -> Result<Revision> {
        let mut client = self.client.clone();
        let resp = self
            .call(
                "revision",
                client.get("/", Some(GetOptions::new().with_count_only())),
            )
            .await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or_default())
    }
}
