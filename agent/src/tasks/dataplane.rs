//! The dataplane task: recomputes the desired kernel state whenever the cluster state or
//! the learned routes change and reconciles it when that changed what is wanted; it also
//! reconciles on every kernel route, link or permanent-neighbour event that its view of the
//! kernel lacks (drift is repaired at once, not at the next scan; the echoes of its own
//! route writes ask for nothing, those of its neighbour writes for one re-read of the
//! VXLAN devices' entries), on retries and on a slow timer.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::neighbour::NeighbourState;
use rtnetlink::{MulticastGroup, new_multicast_connection};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::calc::routes::{RouteInput, StateReads, desired_state, learned_changes};
use crate::calc::tunnels::pod_mtu;
use crate::calc::{Backend, LearnedRoutes};
use crate::dataplane::apply::{Dataplane, DataplaneHealth, Refresh};
use crate::dataplane::kernel::{Kernel, KernelEvent};
use crate::dataplane::types::DesiredState;
use crate::liveness::Heartbeat;
use crate::local::LocalNode;
use crate::state::ClusterState;
use crate::syncer::SyncStatus;

/// Extra desired state from another backend (flannel), merged in before applying.
pub type ExtraState = watch::Receiver<Arc<DesiredState>>;

/// Counters exported as Prometheus metrics.
#[derive(Debug, Default)]
pub struct DataplaneMetrics {
    pub passes: AtomicU64,
    pub routes_added: AtomicU64,
    pub routes_removed: AtomicU64,
    pub failures: AtomicU64,
    pub kernel_events: AtomicU64,
    /// Kernel events that told the dataplane nothing new (echoes of its own route writes,
    /// permanent neighbours of devices not its own).
    pub kernel_echoes: AtomicU64,
    /// Duration of the last pass, in microseconds.
    pub last_pass_micros: AtomicU64,
}

/// What the dataplane task publishes for status and readiness.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataplaneStatus {
    /// At least one pass completed since start.
    pub programmed: bool,
    /// The last pass applied everything it wanted (nothing left to retry).
    pub in_sync: bool,
    pub health: DataplaneHealth,
    pub last_failures: Vec<String>,
}

/// Inputs and settings of the dataplane task.
pub struct DataplaneTask<K: Kernel> {
    pub dataplane: Dataplane<K>,
    pub local: LocalNode,
    pub backend: Backend,
    pub state: watch::Receiver<Arc<ClusterState>>,
    /// The syncer's status: nothing is programmed before the first full listing (an empty
    /// state would flush a restarted node's routes).
    pub sync: watch::Receiver<SyncStatus>,
    pub learned: watch::Receiver<Arc<LearnedRoutes>>,
    /// False until BGP has re-learned the routes after a start: until then, routes in the
    /// kernel that nobody wants yet are kept (graceful restart of the dataplane).
    pub routes_converged: watch::Receiver<bool>,
    pub extra: Option<ExtraState>,
    pub status: watch::Sender<DataplaneStatus>,
    pub metrics: Arc<DataplaneMetrics>,
    pub resync_interval: Duration,
    /// Where the pod MTU is written for the CNI plugin.
    pub mtu_file: Option<PathBuf>,
    pub heartbeat: Heartbeat,
}

/// Subscribes to route, link and neighbour changes in this network namespace. The
/// dataplane decides what each event makes it read again (nothing for the echo of its own
/// route writes or for pods' ARP entries). The receiver closes if the subscription ends.
fn kernel_events(ipv6: bool) -> Option<mpsc::UnboundedReceiver<KernelEvent>> {
    // IPv6 route changes matter only to a node with IPv6 (it programs none otherwise).
    let mut groups = vec![
        MulticastGroup::Link,
        MulticastGroup::Ipv4Route,
        MulticastGroup::Neigh,
    ];
    if ipv6 {
        groups.push(MulticastGroup::Ipv6Route);
    }
    let (conn, _handle, mut messages) = match new_multicast_connection(&groups) {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "cannot subscribe to kernel events; relying on the resync timer");
            return None;
        }
    };
    let (tx, rx) = mpsc::unbounded_channel();
    // The socket's I/O and the pump end together, and then the sender drops.
    tokio::spawn(async move {
        let pump = async move {
            while let Some((message, _)) = messages.next().await {
                let event = match message.payload {
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(msg)) => {
                        KernelEvent::Route {
                            msg,
                            removed: false,
                        }
                    }
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelRoute(msg)) => {
                        KernelEvent::Route { msg, removed: true }
                    }
                    NetlinkPayload::InnerMessage(
                        RouteNetlinkMessage::NewNeighbour(msg)
                        | RouteNetlinkMessage::DelNeighbour(msg),
                    ) => {
                        // calico-node's entries are permanent; pods' ARP entries, which
                        // come and go all the time, are not and wake nothing.
                        if msg.header.state != NeighbourState::Permanent {
                            continue;
                        }
                        KernelEvent::Neighbour {
                            ifindex: msg.header.ifindex,
                        }
                    }
                    _ => KernelEvent::Link,
                };
                if tx.send(event).is_err() {
                    return;
                }
            }
        };
        tokio::select! {
            () = conn => {}
            () = pump => {}
        }
    });
    Some(rx)
}

impl<K: Kernel> DataplaneTask<K> {
    /// Runs until the cluster state is no longer published (shutdown); fails when the
    /// kernel's event subscription ends (drift would go unnoticed).
    pub async fn run(mut self) -> anyhow::Result<()> {
        // Subscribe first so nothing that happens during the wait is missed.
        let mut events = kernel_events(self.local.ipv6.is_some());
        while *self.sync.borrow_and_update() == SyncStatus::WaitingForDatastore {
            tokio::select! {
                changed = self.sync.changed() => if changed.is_err() { return Ok(()) },
                () = self.heartbeat.tick() => {}
            }
        }
        let mut next_resync = Instant::now() + self.resync_interval;
        let mut retry_at: Option<Instant> = None;
        let mut last_mtu: Option<u32> = None;
        let mut converged: Option<bool> = None;
        let mut computed_from: Option<Inputs> = None;
        // A pass is due at start, on kernel events, retries and resyncs. A datastore or BGP
        // change makes one only when it changes what is wanted here: every node hears every
        // datastore write (IPAM handles, other nodes' blocks and endpoints), and a pass for
        // nothing would dump the kernel on every node of the cluster at once.
        let mut due = true;
        // What the next pass must read again; a pass for a desired-state change alone
        // reads nothing and only writes.
        let mut refresh = Refresh::ALL;
        loop {
            due |= self.recompute(&mut converged, &mut computed_from);
            // Kernel events already queued count for this pass (the select below may have
            // picked another input first).
            due |= self.take_queued_events(&mut events, &mut refresh);
            if std::mem::take(&mut due) {
                // Without the kernel's events nothing says when the view went stale.
                let read = match events {
                    Some(_) => std::mem::replace(&mut refresh, Refresh::NONE),
                    None => Refresh::ALL,
                };
                retry_at = self.pass(read).await;
                if retry_at.is_some() {
                    // Failures and grace periods are retried with a fresh look.
                    refresh = Refresh::ALL;
                }
            }
            self.write_mtu(&mut last_mtu).await;

            let deadline = retry_at.map_or(next_resync, |r| r.min(next_resync));
            let mut sleep = std::pin::pin!(tokio::time::sleep_until(deadline.into()));
            self.heartbeat.beat();
            // Waits for the next input; heartbeat ticks only prove the loop is not stuck.
            loop {
                tokio::select! {
                    () = self.heartbeat.tick() => continue,
                    changed = self.state.changed() => {
                        if changed.is_err() { return Ok(()) }
                        // The other nodes wait for this node's BGP update, not for its own
                        // blackhole: one yield lets the wiring and the speaker, woken by the
                        // same change, put the update on the wire before this pass runs
                        // (on the one-thread runtime a yielded task runs after every task
                        // already woken).
                        tokio::task::yield_now().await;
                    }
                    () = super::changed_or_pending(&mut self.learned) => {},
                    () = super::changed_or_pending(&mut self.routes_converged) => {},
                    () = wait_extra(&mut self.extra) => {},
                    event = wait_event(&mut events) => match event {
                        None => anyhow::bail!("the kernel's route, link and neighbour events stopped"),
                        Some(first) => {
                            // A burst is taken whole; only what our view lacks makes a pass.
                            due |= self.take_event(&first, &mut refresh);
                            due |= self.take_queued_events(&mut events, &mut refresh);
                            if !due {
                                continue;
                            }
                        }
                    },
                    () = &mut sleep => {
                        due = true;
                        refresh = Refresh::ALL;
                        if Instant::now() >= next_resync {
                            next_resync = Instant::now() + self.resync_interval;
                        }
                    }
                }
                break;
            }
        }
    }

    /// Adds what `event` makes the next pass read to `refresh`; true when it asks for a
    /// pass at all.
    fn take_event(&self, event: &KernelEvent, refresh: &mut Refresh) -> bool {
        self.metrics.kernel_events.fetch_add(1, Ordering::Relaxed);
        let wanted = self.dataplane.refresh_for(event);
        if wanted == Refresh::NONE {
            self.metrics.kernel_echoes.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        *refresh = refresh.union(wanted);
        true
    }

    /// [`take_event`](Self::take_event) for every event already queued.
    fn take_queued_events(
        &self,
        events: &mut Option<mpsc::UnboundedReceiver<KernelEvent>>,
        refresh: &mut Refresh,
    ) -> bool {
        let mut due = false;
        if let Some(rx) = events.as_mut() {
            while let Ok(event) = rx.try_recv() {
                due |= self.take_event(&event, refresh);
            }
        }
        due
    }

    /// One reconcile pass; returns when the next one is needed without any new event.
    async fn pass(&mut self, refresh: Refresh) -> Option<Instant> {
        let started = Instant::now();
        let report = match self.dataplane.apply_with(started, refresh).await {
            Ok(report) => report,
            Err(e) => {
                warn!(error = %e, "dataplane pass failed; retrying");
                self.status
                    .send_if_modified(|s| std::mem::replace(&mut s.in_sync, false));
                return Some(Instant::now() + Duration::from_millis(500));
            }
        };
        let m = &self.metrics;
        m.passes.fetch_add(1, Ordering::Relaxed);
        m.routes_added
            .fetch_add(report.routes_added as u64, Ordering::Relaxed);
        m.routes_removed
            .fetch_add(report.routes_removed as u64, Ordering::Relaxed);
        m.failures
            .fetch_add(report.failures.len() as u64, Ordering::Relaxed);
        m.last_pass_micros.store(
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        // A failure is a warning when it first appears, its retries are debug: one line
        // names what keeps failing, without one per second.
        {
            // (The status guard is dropped before the status is sent below.)
            let status = self.status.borrow();
            for f in &report.failures {
                if status.last_failures.contains(f) {
                    debug!(failure = %f, "dataplane operation to retry");
                } else {
                    warn!(failure = %f, "dataplane operation failed; retrying");
                }
            }
        }
        let status = DataplaneStatus {
            programmed: true,
            in_sync: report.failures.is_empty(),
            health: self.dataplane.health().clone(),
            last_failures: report.failures,
        };
        self.status.send_if_modified(|s| {
            let changed = *s != status;
            *s = status;
            changed
        });
        report.retry_at
    }

    /// Recomputes the desired state from the latest inputs, unless they are those it was
    /// last computed from (`computed_from`); true when it (or the hold on deletions,
    /// tracked in `converged`) changed, i.e. when the kernel may need work.
    fn recompute(
        &mut self,
        converged: &mut Option<bool>,
        computed_from: &mut Option<Inputs>,
    ) -> bool {
        let now_converged = *self.routes_converged.borrow_and_update();
        self.dataplane.set_hold_deletions(!now_converged);
        let hold_changed = converged.replace(now_converged) != Some(now_converged);
        let state = self.state.borrow_and_update().clone();
        let learned = self.learned.borrow_and_update().clone();
        let inputs = Inputs {
            reads: StateReads::of(&state, &self.local.name),
            learned: Arc::clone(&learned),
            extra: self.extra.as_mut().map(|e| e.borrow_and_update().clone()),
        };
        if computed_from
            .as_ref()
            .is_some_and(|last| last.same_as(&inputs))
        {
            return hold_changed;
        }
        let input = RouteInput {
            state: &state,
            local: &self.local,
            backend: self.backend,
            learned: &learned,
        };
        // Only the learned routes changed (a block elsewhere came or went): the routes of
        // the prefixes that changed, not the whole state again.
        let only_learned = computed_from.as_ref().is_some_and(|last| {
            last.reads == inputs.reads && last.extra.is_none() && inputs.extra.is_none()
        });
        let before = computed_from.replace(inputs).map(|last| last.learned);
        if let (true, Some(before)) = (only_learned, before)
            && let Some(changes) = learned_changes(&input, &before, self.dataplane.desired_routes())
        {
            return self.dataplane.update_routes(changes) || hold_changed;
        }
        let mut desired = desired_state(&input);
        if let Some(extra) = computed_from.as_ref().and_then(|i| i.extra.as_ref()) {
            desired.routes.extend(extra.routes.clone());
            desired
                .vxlan_devices
                .extend(extra.vxlan_devices.iter().cloned());
            desired.neighbours.extend(extra.neighbours.iter().cloned());
            desired.fdb.extend(extra.fdb.iter().cloned());
            desired
                .managed_cidrs
                .extend(extra.managed_cidrs.iter().copied());
            crate::calc::nat::merge(&mut desired.nat, extra.nat.as_ref());
        }
        self.dataplane.set_desired(desired) || hold_changed
    }

    /// Felix writes the pod MTU for the CNI plugin; only rewritten when it changes.
    async fn write_mtu(&self, last: &mut Option<u32>) {
        let Some(path) = &self.mtu_file else { return };
        let mtu = pod_mtu(&self.state.borrow(), &self.local.name, self.local.host_mtu);
        if *last == Some(mtu) {
            return;
        }
        if let Some(dir) = path.parent() {
            let _ = tokio::fs::create_dir_all(dir).await;
        }
        let tmp = path.with_extension("tmp");
        let written = async {
            tokio::fs::write(&tmp, format!("{mtu}\n")).await?;
            tokio::fs::rename(&tmp, path).await
        }
        .await;
        match written {
            Ok(()) => {
                info!(mtu, file = %path.display(), "wrote pod MTU");
                *last = Some(mtu);
            }
            Err(e) => warn!(error = %e, file = %path.display(), "cannot write pod MTU"),
        }
    }
}

/// What a desired state was computed from. The learned routes and the extra state are
/// new `Arc`s whenever they change, and held here, so comparing pointers is exact; the
/// cluster state is followed by the counters of the parts the calculation reads (holding
/// it would make the syncer copy it on every write).
struct Inputs {
    reads: StateReads,
    learned: Arc<LearnedRoutes>,
    extra: Option<Arc<DesiredState>>,
}

impl Inputs {
    fn same_as(&self, other: &Inputs) -> bool {
        self.reads == other.reads
            && Arc::ptr_eq(&self.learned, &other.learned)
            && match (&self.extra, &other.extra) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
    }
}

async fn wait_event(
    events: &mut Option<mpsc::UnboundedReceiver<KernelEvent>>,
) -> Option<KernelEvent> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn wait_extra(extra: &mut Option<ExtraState>) {
    match extra {
        Some(rx) => super::changed_or_pending(rx).await,
        None => std::future::pending().await,
    }
}
