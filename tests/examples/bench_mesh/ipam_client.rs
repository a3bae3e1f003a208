//! calico-rs IPAM run in-process from inside a node namespace: the block claim the CNI
//! plugin makes, without the plugin's process start and veth work, so the benchmark can
//! time "a block becomes this node's in the datastore -> route in another kernel".

use std::fs::File;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use datastore::config::DatastoreConfig;
use ipam::{AutoAssignArgs, Ipam, IpamConfig};
use ipnet::IpNet;
use lab::Netns;
use nix::sched::{CloneFlags, setns};

/// One claim: when the call started and returned, and the block it took.
pub type Claim = Result<(Instant, Instant, IpNet), String>;

struct Request {
    handle: String,
    /// The node the block is for; the client's own when `None`.
    node: Option<String>,
    reply: mpsc::Sender<Claim>,
}

/// A thread in a node's namespace with an etcd connection and an [`Ipam`] client.
pub struct IpamClient {
    tx: Option<tokio::sync::mpsc::UnboundedSender<Request>>,
    thread: Option<JoinHandle<()>>,
}

impl IpamClient {
    /// Connects to etcd at `endpoint` from inside `ns`, assigning for node `node`, and sets
    /// the cluster's per-host block limit to `max_blocks_per_host`.
    pub fn start(
        ns: &Netns,
        endpoint: &str,
        node: &str,
        max_blocks_per_host: u32,
    ) -> Result<IpamClient> {
        let file = File::open(ns.path())?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Request>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let (endpoint, node) = (endpoint.to_string(), node.to_string());
        let thread = std::thread::Builder::new()
            .name("bench-ipam".into())
            .spawn(move || {
                // A current-thread runtime: every socket is made on this thread, inside the
                // node's namespace.
                let runtime = setns(&file, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("setns: {e}"))
                    .and_then(|()| {
                        tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .map_err(|e| format!("runtime: {e}"))
                    });
                let runtime = match runtime {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let config = DatastoreConfig {
                        etcd_endpoints: vec![endpoint],
                        ..DatastoreConfig::default()
                    };
                    let ipam = match datastore::config::connect(&config).await {
                        Ok(ds) => Ipam::new(Arc::clone(&ds)),
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("etcd: {e}")));
                            return;
                        }
                    };
                    // Every sample claims a new block: lift the per-host limit (20).
                    let limit = IpamConfig {
                        max_blocks_per_host,
                        ..IpamConfig::default()
                    };
                    if let Err(e) = ipam.set_config(&limit).await {
                        let _ = ready_tx.send(Err(format!("setting the block limit: {e}")));
                        return;
                    }
                    let _ = ready_tx.send(Ok(()));
                    while let Some(req) = rx.recv().await {
                        // Two addresses: a whole /31 block, so the next claim needs a new one.
                        let for_node = req.node.as_deref().unwrap_or(&node);
                        let mut args = AutoAssignArgs::one(&req.handle, for_node);
                        args.num = 2;
                        let started = Instant::now();
                        let result = ipam.auto_assign(&args).await;
                        let done = Instant::now();
                        let claim = match result {
                            Ok(got) => got
                                .first()
                                .map(|a| (started, done, a.block))
                                .ok_or_else(|| "no address assigned".to_string()),
                            Err(e) => Err(e.to_string()),
                        };
                        let _ = req.reply.send(claim);
                    }
                });
            })?;
        let client = IpamClient {
            tx: Some(tx),
            thread: Some(thread),
        };
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(client),
            Ok(Err(e)) => Err(anyhow!("IPAM client: {e}")),
            Err(_) => Err(anyhow!("IPAM client did not connect")),
        }
    }

    /// Claims a new block for the node (two addresses for `handle`).
    #[allow(dead_code)] // bench_scale claims for other nodes only
    pub fn claim(&self, handle: &str) -> Claim {
        self.request(handle, None)
    }

    /// Claims a new block for node `node` (two addresses for `handle`).
    #[allow(dead_code)] // bench_mesh claims for its own node only
    pub fn claim_for(&self, node: &str, handle: &str) -> Claim {
        self.request(handle, Some(node.to_string()))
    }

    fn request(&self, handle: &str, node: Option<String>) -> Claim {
        let (reply, rx) = mpsc::channel();
        let tx = self.tx.as_ref().ok_or("client stopped")?;
        tx.send(Request {
            handle: handle.to_string(),
            node,
            reply,
        })
        .map_err(|_| "IPAM thread gone".to_string())?;
        rx.recv_timeout(Duration::from_secs(30))
            .map_err(|_| "IPAM claim timed out".to_string())?
    }
}

impl Drop for IpamClient {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The IPv4 address of a block, for comparisons with kernel routes.
pub fn v4(net: IpNet) -> Option<ipnet::Ipv4Net> {
    match net {
        IpNet::V4(n) => Some(n),
        IpNet::V6(_) => None,
    }
}
