//! The flannel backend task: reads the network config, takes this node's lease, writes
//! subnet.env, follows every lease through the [watcher](super::watcher) and publishes the
//! [desired state](super::desired) for the dataplane task to program. It renews the lease
//! before it expires and takes one again when it is deleted or expires (flannel exits
//! instead and relies on its supervisor).
//!
//! ```text
//!   <prefix>/config ──get──▶ NetworkConfig
//!   <prefix>/subnets/ ──list+watch──▶ watcher ──LeaseSnapshot──▶ ┐
//!   LeaseManager (acquire, keep-alive) ◀──────────────────────▶ │ this task ──DesiredState──▶ dataplane
//!                                  subnet.env, pod MTU file ◀── ┘
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use datastore::Datastore;
use ipnet::Ipv4Net;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::config::NetworkConfig;
use super::desired::{FlannelInput, Identity, backend_mtu, desired_state, own_attrs};
use super::manager::{LeaseError, LeaseManager, LeaseTiming, OwnLease};
use super::subnet::config_key;
use super::subnet_env::SubnetEnv;
use super::watcher::{self, LeaseSnapshot};
use crate::dataplane::types::DesiredState;
use crate::liveness::Heartbeat;
use crate::tasks;

/// How often a missing or invalid network config is read again.
const CONFIG_POLL: Duration = Duration::from_secs(1);
/// While the network stays exhausted, the warning is repeated every this many attempts.
const EXHAUSTED_LOG_EVERY: u32 = 12;

/// Settings and outputs of the flannel backend task.
pub struct FlannelTask {
    pub store: Arc<dyn Datastore>,
    /// `FLANNELD_ETCD_PREFIX`.
    pub prefix: String,
    pub identity: Identity,
    /// `FLANNELD_SUBNET_FILE`.
    pub subnet_file: PathBuf,
    /// Where the pod MTU goes for the CNI plugin (Felix's MTU file).
    pub mtu_file: Option<PathBuf>,
    /// `FLANNELD_IP_MASQ`: written to subnet.env, and MASQUERADE for traffic leaving the
    /// network.
    pub ip_masq: bool,
    pub timing: LeaseTiming,
    /// The desired state, merged in by the dataplane task.
    pub tx: watch::Sender<Arc<DesiredState>>,
}

/// The lease loop's state.
struct Held {
    /// The lease we hold right now.
    own: Option<OwnLease>,
    /// The subnet last held: still programmed while a new lease is sought.
    subnet: Option<Ipv4Net>,
    next_try: Instant,
    renew_at: Option<Instant>,
    failures: u32,
    ignored: BTreeMap<Ipv4Net, String>,
}

impl FlannelTask {
    /// Runs until the dataplane task is gone; fails when the lease watcher stops.
    pub async fn run(self, mut heartbeat: Heartbeat) -> anyhow::Result<()> {
        let Some(config) = self.load_config(&mut heartbeat).await else {
            return Ok(());
        };
        let attrs = own_attrs(&config, &self.identity);
        let manager = LeaseManager::new(
            self.store.clone(),
            &self.prefix,
            config.clone(),
            attrs,
            self.timing,
        );
        let (snap_tx, mut snaps) = watch::channel(Arc::new(LeaseSnapshot::default()));
        let _watcher = tasks::spawn(watcher::run(
            self.store.clone(),
            self.prefix.clone(),
            snap_tx,
        ));
        let previous = SubnetEnv::read(&self.subnet_file).map(|e| e.subnet);
        if let Some(p) = previous {
            info!(subnet = %p, file = %self.subnet_file.display(), "subnet of the previous run");
        }
        let mut held = Held {
            own: None,
            subnet: None,
            next_try: Instant::now(),
            renew_at: None,
            failures: 0,
            ignored: BTreeMap::new(),
        };
        loop {
            heartbeat.beat();
            if held.own.is_none() && Instant::now() >= held.next_try {
                self.try_acquire(&manager, &config, held.subnet.or(previous), &mut held)
                    .await;
                self.publish(&config, &snaps.borrow().clone(), &mut held);
            }
            let deadline = match (&held.own, held.renew_at) {
                (None, _) => held.next_try,
                (Some(_), Some(at)) => at,
                (Some(_), None) => Instant::now() + Duration::from_secs(3600),
            };
            tokio::select! {
                () = heartbeat.tick() => {}
                changed = snaps.changed() => {
                    if changed.is_err() {
                        anyhow::bail!("the flannel lease watcher stopped");
                    }
                    let snap = snaps.borrow_and_update().clone();
                    self.on_snapshot(&snap, &mut held);
                    self.publish(&config, &snap, &mut held);
                }
                () = tokio::time::sleep_until(deadline) => {
                    self.maybe_renew(&manager, &mut held).await;
                }
                () = self.tx.closed() => return Ok(()),
            }
        }
    }

    /// Waits for a valid network config at `<prefix>/config`, saying what is wrong.
    async fn load_config(&self, heartbeat: &mut Heartbeat) -> Option<NetworkConfig> {
        let key = config_key(&self.prefix);
        let mut last = String::new();
        loop {
            let problem = match self.store.get(&key).await {
                Ok(Some(kv)) => match NetworkConfig::parse(&kv.value) {
                    Ok(c) => {
                        info!(
                            key,
                            network = %c.network,
                            subnet_len = c.subnet_len,
                            subnet_min = %c.subnet_min,
                            subnet_max = %c.subnet_max,
                            backend = %c.backend.kind,
                            "flannel network config"
                        );
                        return Some(c);
                    }
                    Err(e) => format!("{key}: {e}"),
                },
                Ok(None) => format!(
                    "no network config at {key} yet; put one, e.g. etcdctl put {key} '{{\"Network\": \"10.244.0.0/16\", \"Backend\": {{\"Type\": \"vxlan\"}}}}'"
                ),
                Err(e) => format!("cannot read {key}: {e}"),
            };
            if problem != last {
                error!("{problem}; waiting for it to be fixed");
                last = problem;
            }
            let mut poll = std::pin::pin!(tokio::time::sleep(CONFIG_POLL));
            loop {
                tokio::select! {
                    () = heartbeat.tick() => continue,
                    () = &mut poll => {}
                    () = self.tx.closed() => return None,
                }
                break;
            }
        }
    }

    async fn try_acquire(
        &self,
        manager: &LeaseManager,
        config: &NetworkConfig,
        previous: Option<Ipv4Net>,
        held: &mut Held,
    ) {
        match manager.acquire(previous).await {
            Ok(own) => {
                if held.failures > 0 {
                    info!(subnet = %own.subnet, attempts = held.failures + 1, "got a subnet lease after waiting");
                }
                held.failures = 0;
                held.renew_at = own
                    .ttl
                    .map(|ttl| Instant::now() + self.timing.renew_after(ttl));
                self.write_files(config, own.subnet);
                held.subnet = Some(own.subnet);
                held.own = Some(own);
            }
            Err(e) => {
                if held.failures.is_multiple_of(EXHAUSTED_LOG_EVERY)
                    || !matches!(e, LeaseError::Exhausted { .. })
                {
                    manager.log_failure(&e, self.timing.retry);
                }
                held.failures += 1;
                held.next_try = Instant::now() + self.timing.retry;
            }
        }
    }

    /// Notices our own lease vanishing (deleted, expired, taken over) in the store.
    fn on_snapshot(&self, snap: &LeaseSnapshot, held: &mut Held) {
        match &held.own {
            Some(own) if snap.synced && snap.revision >= own.revision => {
                let ours = snap
                    .leases
                    .get(&own.subnet)
                    .is_some_and(|l| l.attrs.public_ip == self.identity.public_ip);
                if !ours {
                    warn!(subnet = %own.subnet, "this node's lease was deleted or expired; taking one again");
                    held.own = None;
                    held.renew_at = None;
                    held.next_try = Instant::now();
                }
            }
            Some(_) => {}
            // A lease may have been freed: try again now rather than at the next retry.
            None => held.next_try = Instant::now(),
        }
    }

    async fn maybe_renew(&self, manager: &LeaseManager, held: &mut Held) {
        let (Some(own), Some(at)) = (&held.own, held.renew_at) else {
            return;
        };
        if Instant::now() < at {
            return;
        }
        let ttl = own.ttl.unwrap_or(self.timing.ttl);
        match manager.renew(own).await {
            Ok(()) => held.renew_at = Some(Instant::now() + self.timing.renew_after(ttl)),
            Err(LeaseError::Lost(subnet)) => {
                warn!(%subnet, "this node's lease expired before it was renewed; taking one again");
                held.own = None;
                held.renew_at = None;
                held.next_try = Instant::now();
            }
            Err(e) => {
                let again = self.timing.retry.min(ttl / 3);
                warn!(error = %e, retry_in = ?again, "cannot renew this node's lease; retrying");
                held.renew_at = Some(Instant::now() + again);
            }
        }
    }

    /// Publishes the desired state once we hold a subnet and the leases are listed.
    fn publish(&self, config: &NetworkConfig, snap: &LeaseSnapshot, held: &mut Held) {
        let (Some(own), true) = (held.subnet, snap.synced) else {
            return;
        };
        let desired = desired_state(&FlannelInput {
            config,
            me: &self.identity,
            own,
            leases: &snap.leases,
            ip_masq: self.ip_masq,
        });
        for (subnet, reason) in &desired.ignored {
            if held.ignored.get(subnet) != Some(reason) {
                info!(%subnet, reason, "lease not programmed");
            }
        }
        held.ignored = desired.ignored;
        let state = desired.state;
        let changed = self.tx.send_if_modified(|current| {
            if **current == state {
                return false;
            }
            *current = Arc::new(state.clone());
            true
        });
        if changed {
            debug!(
                routes = state.routes.len(),
                neighbours = state.neighbours.len(),
                revision = snap.revision,
                "flannel desired state"
            );
        }
    }

    /// subnet.env and the pod MTU, after every (re)acquisition.
    fn write_files(&self, config: &NetworkConfig, subnet: Ipv4Net) {
        let mtu = backend_mtu(config, self.identity.iface_mtu);
        let env = SubnetEnv {
            network: config.network,
            subnet,
            mtu,
            ip_masq: self.ip_masq,
        };
        match env.write(&self.subnet_file) {
            Ok(()) => {
                info!(file = %self.subnet_file.display(), subnet = %subnet, mtu, "wrote subnet.env")
            }
            Err(e) => {
                error!(file = %self.subnet_file.display(), error = %e, "cannot write subnet.env; pods cannot get addresses")
            }
        }
        if let Some(path) = &self.mtu_file {
            let written = (|| {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let tmp = path.with_extension("flannel.tmp");
                std::fs::write(&tmp, format!("{mtu}\n"))?;
                std::fs::rename(&tmp, path)
            })();
            if let Err(e) = written {
                warn!(file = %path.display(), error = %e, "cannot write the pod MTU");
            }
        }
    }
}

#[cfg(test)]
#[path = "task_tests.rs"]
mod tests;
