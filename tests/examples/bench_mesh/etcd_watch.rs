//! An etcd watcher inside node A's namespace that timestamps the moment a block affinity of
//! A becomes `confirmed` — the datastore notification A's calico-node acts on (it exports
//! confirmed affine blocks). It is the calico-rs counterpart of the kernel notification
//! BIRD's kernel protocol acts on, so "notification on A -> route in B's kernel" compares
//! the two speakers' paths from the same kind of starting point.

use std::fs::File;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use datastore::WatchEvent;
use datastore::config::DatastoreConfig;
use datastore::keys;
use datastore::model::ipam::{AffinityState, BlockAffinity};
use ipnet::{IpNet, Ipv4Net};
use lab::Netns;
use nix::sched::{CloneFlags, setns};

/// A confirmed affinity: when the watcher heard of it, and the block.
type Confirmed = (Instant, Ipv4Net);

/// The watcher thread; it stops when this drops.
pub struct AffinityWatcher {
    rx: mpsc::Receiver<Confirmed>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl AffinityWatcher {
    /// Watches `node`'s affinities in etcd at `endpoint`, from inside `ns`; returns once the
    /// watch is established.
    #[allow(dead_code)] // the scale lab watches every node's
    pub fn start(ns: &Netns, endpoint: &str, node: &str) -> Result<AffinityWatcher> {
        Self::start_under(
            ns,
            endpoint,
            format!("{}{node}/", keys::affinities_prefix()),
        )
    }

    /// Watches every node's affinities.
    #[allow(dead_code)] // the mesh benchmark watches one node's
    pub fn start_all(ns: &Netns, endpoint: &str) -> Result<AffinityWatcher> {
        Self::start_under(ns, endpoint, keys::affinities_prefix())
    }

    fn start_under(ns: &Netns, endpoint: &str, prefix: String) -> Result<AffinityWatcher> {
        let file = File::open(ns.path())?;
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let endpoint = endpoint.to_string();
        let thread = std::thread::Builder::new()
            .name("bench-etcd-watch".into())
            .spawn(move || {
                let runtime = setns(&file, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("setns: {e}"))
                    .and_then(|()| {
                        crate::monitor::realtime();
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
                    let watch = async {
                        let ds = datastore::config::connect(&config).await?;
                        let listing = ds.list(&prefix).await?;
                        ds.watch(&prefix, listing.revision + 1).await
                    };
                    let mut watch = match watch.await {
                        Ok(w) => w,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("etcd watch: {e}")));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    let mut stop = stop_rx;
                    loop {
                        tokio::select! {
                            _ = &mut stop => return,
                            event = watch.next() => {
                                let at = Instant::now();
                                match event {
                                    Some(Ok(WatchEvent::Put(kv))) => {
                                        let block = confirmed(&kv.key, &kv.value);
                                        if block.is_some_and(|b| tx.send((at, b)).is_err()) {
                                            return;
                                        }
                                    }
                                    Some(Ok(WatchEvent::Delete { .. })) => {}
                                    Some(Err(_)) | None => return,
                                }
                            }
                        }
                    }
                });
            })?;
        let watcher = AffinityWatcher {
            rx,
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(watcher),
            Ok(Err(e)) => Err(anyhow!("affinity watcher: {e}")),
            Err(_) => Err(anyhow!("affinity watcher did not connect")),
        }
    }

    /// When `block` was seen confirmed (already or within `timeout`); notifications of
    /// other blocks before it are dropped.
    pub fn wait(&mut self, block: Ipv4Net, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.rx.recv_timeout(left) {
                Ok((at, b)) if b == block => return Some(at),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}

impl Drop for AffinityWatcher {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The block of a confirmed, not deleted affinity key.
fn confirmed(key: &str, value: &[u8]) -> Option<Ipv4Net> {
    let (_, cidr) = keys::parse_affinity(key)?;
    let affinity: BlockAffinity = serde_json::from_slice(value).ok()?;
    if affinity.state != AffinityState::Confirmed || affinity.deleted {
        return None;
    }
    match cidr {
        IpNet::V4(net) => Some(net),
        IpNet::V6(_) => None,
    }
}
