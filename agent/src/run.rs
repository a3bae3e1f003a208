//! calico-node's life: start-up, the tasks of [`crate::tasks`], and a graceful exit that
//! leaves every route in the kernel (so a restart does not interrupt traffic).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use datastore::model::{AsNumber, NodeStatusReport, STATUS_SOCKET};
use datastore::{Client, Datastore};
use ipam::Ipam;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::calc::{Backend, LearnedRoutes};
use crate::config::{NodeConfig, parse_bool};
use crate::dataplane::apply::Dataplane;
use crate::dataplane::kernel::Kernel;
use crate::dataplane::nat::NatTable;
use crate::dataplane::netfilter::NetfilterTools;
use crate::dataplane::netlink::NetlinkKernel;
use crate::dataplane::ownership::OwnershipPolicy;
use crate::dataplane::route_table::RouteTable;
use crate::liveness::{Heartbeat, Liveness};
use crate::local::LocalNode;
use crate::startup::{autodetect, ensure_cluster_information, ensure_default_pools, register_node};
use crate::state::ClusterState;
use crate::syncer::{self, SyncStatus};
use crate::tasks::dataplane::{DataplaneMetrics, DataplaneStatus, DataplaneTask};
use crate::tasks::supervisor::Supervisor;
use crate::tasks::{bgp, blockgc, claims, health, leakgc, status, tunnels};

/// How long start-up waits for the datastore before giving up (a supervisor restarts us).
const DATASTORE_WAIT: Duration = Duration::from_secs(60);

/// The addresses this node's Node already has (`IP=none`, `IP6` unset or `none` keep
/// them).
async fn stored_addresses(client: &Client, name: &str) -> Result<datastore::model::NodeBgpSpec> {
    let node = client.try_get::<datastore::model::Node>(name).await?;
    Ok(node.and_then(|n| n.spec.bgp).unwrap_or_default())
}

/// The node name: `NODENAME`, else the hostname.
fn node_name(cfg: &NodeConfig) -> Result<String> {
    if let Some(name) = cfg.nodename.as_deref().filter(|n| !n.is_empty()) {
        return Ok(name.to_string());
    }
    let host = nix::unistd::gethostname().context("reading the hostname for NODENAME")?;
    Ok(host.to_string_lossy().into_owned())
}

async fn connect_datastore(cfg: &NodeConfig) -> Result<Arc<dyn Datastore>> {
    let ds = cfg.datastore()?;
    let deadline = tokio::time::Instant::now() + DATASTORE_WAIT;
    loop {
        match datastore::config::connect(&ds).await {
            Ok(store) => {
                info!(datastore = %ds, "connected to the datastore");
                return Ok(store);
            }
            Err(e @ datastore::Error::Config(_)) => return Err(e.into()),
            Err(e) if tokio::time::Instant::now() < deadline => {
                warn!(datastore = %ds, error = %e, "datastore not reachable yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e).context(format!("connecting to the datastore {ds}")),
        }
    }
}

fn parse_as(text: Option<&str>) -> Result<Option<AsNumber>> {
    match text.filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => {
            let asn: AsNumber = serde_json::from_value(serde_json::Value::String(t.to_string()))
                .map_err(|_| {
                    anyhow::anyhow!("AS: '{t}' is not an AS number (1-4294967295 or dotted a.b)")
                })?;
            Ok(Some(asn))
        }
    }
}

/// Runs calico-node until SIGTERM or SIGINT.
pub async fn run(cfg: NodeConfig) -> Result<()> {
    let Some(backend) = Backend::parse(&cfg.networking_backend) else {
        bail!(
            "CALICO_NETWORKING_BACKEND: '{}' is not one of bird, vxlan, none, flannel",
            cfg.networking_backend
        );
    };
    let name = node_name(&cfg)?;
    let as_number = parse_as(cfg.as_number.as_deref())?;
    let (kernel, kernel_connection) = NetlinkKernel::open().context("opening netlink")?;
    // The connection ends when its last handle drops: this one keeps it open for the life
    // of the process, so the netlink task ends only on a fault of its own.
    let _netlink_open = kernel.clone();
    let failpoints =
        crate::tasks::supervisor::Failpoints::parse(cfg.failpoints.as_deref().unwrap_or_default())
            .map_err(|e| anyhow::anyhow!("CALICO_RS_FAILPOINTS: {e}"))?;
    let liveness = Liveness::new(Duration::from_secs(cfg.task_stuck_timeout.max(1)));
    let mut tasks = Supervisor::new(liveness.clone(), failpoints.clone());
    // Every netlink request below needs the connection running.
    tasks.spawn("netlink", kernel_connection);
    let links = kernel.links().await.context("listing interfaces")?;
    let mut local = autodetect::detect(&cfg.ip, &cfg.ip_autodetection_method, &links, &name)?;
    let ipv6 =
        parse_bool("FELIX_IPV6SUPPORT", &cfg.ipv6_support).map_err(|e| anyhow::anyhow!(e))?;
    if ipv6 {
        local.ipv6 = autodetect::detect_v6(&cfg.ip6, &cfg.ip6_autodetection_method, &links)?;
    }

    let store = connect_datastore(&cfg).await?;
    let client = Client::new(store.clone());
    let stored = stored_addresses(&client, &name).await?;
    if local.address.is_none()
        && let Some((address, link)) = stored
            .ipv4_address
            .as_deref()
            .and_then(|a| autodetect::stored_v4(a, &links))
    {
        local.address = Some(address);
        local.interface = link.name.clone();
        local.host_mtu = link.mtu;
    }
    if ipv6 && local.ipv6.is_none() {
        local.ipv6 = stored
            .ipv6_address
            .as_deref()
            .and_then(|a| autodetect::stored_v6(a, &links, &local.interface));
    }
    autodetect::settle_interface(&mut local, &links);
    if local.families().next().is_none() && backend != Backend::None {
        bail!("no IPv4 or IPv6 addresses configured or detected, required for Calico networking");
    }
    info!(node = %name, address = ?local.address, ipv6 = ?local.ipv6.as_ref().map(|v6| v6.address), interface = %local.interface, mtu = local.host_mtu, ?backend, "starting calico-node");
    register_node(&client, &local, as_number).await?;
    ensure_default_pools(&client, &cfg, &local).await?;
    ensure_cluster_information(&client, &cfg.cluster_type).await?;
    if let Err(e) = kernel.set_sysctl("net/ipv4/ip_forward", "1").await {
        warn!(error = %e, "cannot enable IPv4 forwarding");
    }
    if local.ipv6.is_some()
        && let Err(e) = kernel.set_sysctl("net/ipv6/conf/all/forwarding", "1").await
    {
        warn!(error = %e, "cannot enable IPv6 forwarding");
    }

    let (state_tx, state_rx) = watch::channel(Arc::new(ClusterState::default()));
    let (sync_tx, sync_rx) = watch::channel(SyncStatus::WaitingForDatastore);
    let (notices_tx, notices_rx) = tokio::sync::mpsc::channel(claims::QUEUE);
    tasks.spawn(
        "syncer",
        syncer::run(
            store.clone(),
            state_tx,
            sync_tx,
            notices_rx,
            liveness.heartbeat("syncer"),
        ),
    );
    // The CNI plugin's claims, told at once (flannel's IPAM claims no Calico blocks).
    if backend != Backend::Flannel {
        let path = cfg.run_dir.join(ipam::notice::CLAIMS_SOCKET);
        let socket = claims::bind(&path)
            .with_context(|| format!("binding the claims socket {}", path.display()))?;
        tasks.spawn(
            "claims",
            claims::serve(
                socket,
                path,
                name.clone(),
                notices_tx,
                liveness.heartbeat("claims"),
            ),
        );
    }

    let (learned_tx, learned_rx) = watch::channel(Arc::new(LearnedRoutes::new()));
    let (peers_tx, peers_rx) = watch::channel(bgp::BgpStatus::default());
    let (converged_tx, converged_rx) = watch::channel(backend != Backend::Bgp);
    let bfd_metrics = Arc::new(crate::tasks::bfd_link::BfdMetrics::default());
    let bfd_metrics_exit = bfd_metrics.clone();
    if backend == Backend::Bgp {
        let outputs = bgp::Outputs {
            learned: learned_tx,
            status: peers_tx,
            converged: converged_tx,
            bfd_metrics: bfd_metrics.clone(),
        };
        let wiring = bgp::start(&cfg, &local, state_rx.clone(), outputs).await?;
        tasks.spawn("bgp", wiring.run(liveness.heartbeat("bgp")));
    } else {
        drop((learned_tx, peers_tx, converged_tx));
    }

    if backend != Backend::Flannel {
        tasks.spawn(
            "leakgc",
            leakgc::run(
                Ipam::new(store.clone()),
                name.clone(),
                Duration::from_secs(cfg.ipam_leak_grace),
                state_rx.clone(),
                liveness.heartbeat("leakgc"),
            ),
        );
        tasks.spawn(
            "handlegc",
            crate::tasks::handlegc::run(
                Ipam::new(store.clone()),
                Duration::from_secs(cfg.ipam_leak_grace),
                liveness.heartbeat("handlegc"),
            ),
        );
        tasks.spawn(
            "blockgc",
            blockgc::run(
                Ipam::new(store.clone()),
                name.clone(),
                Duration::from_secs(cfg.empty_block_grace),
                state_rx.clone(),
                liveness.heartbeat("blockgc"),
            ),
        );
    }
    if matches!(backend, Backend::Bgp | Backend::Vxlan) {
        tasks.spawn(
            "tunnels",
            tunnels::run(
                client.clone(),
                Ipam::new(store.clone()),
                name.clone(),
                state_rx.clone(),
                liveness.heartbeat("tunnels"),
            ),
        );
    }

    let (dp_status_tx, dp_status_rx) = watch::channel(DataplaneStatus::default());
    let metrics = Arc::new(DataplaneMetrics::default());
    let extra =
        crate::flannel::start(&cfg, &local, &links, backend, store.clone(), &mut tasks).await?;
    let flannel_ready = crate::flannel::first_state(extra.clone());
    let resync_interval = Duration::from_secs(cfg.route_refresh_interval.max(1));
    let nat_table = |family| {
        NatTable::new(
            family,
            Box::new(NetfilterTools::new(family)),
            resync_interval,
        )
    };
    let mut dataplane = Dataplane::new(kernel, RouteTable::new(OwnershipPolicy::default()));
    // NAT in the families this node has: a host without IPv6 may have no ip6tables nat.
    for family in local.families() {
        dataplane = dataplane.with_nat(nat_table(family));
    }
    let mut dataplane = DataplaneTask {
        dataplane,
        local: local.clone(),
        backend,
        state: state_rx.clone(),
        sync: sync_rx.clone(),
        learned: learned_rx,
        routes_converged: converged_rx,
        extra,
        status: dp_status_tx,
        metrics: metrics.clone(),
        resync_interval,
        // In flannel mode the backend writes the pod MTU (FLANNEL_MTU) itself.
        mtu_file: (backend != Backend::Flannel).then(|| cfg.mtu_file.clone()),
        heartbeat: liveness.heartbeat("dataplane"),
    };
    tasks.spawn("dataplane", async move {
        // Waiting for the flannel lease is not being stuck: the heartbeat goes on.
        let mut ready = std::pin::pin!(flannel_ready);
        loop {
            tokio::select! {
                () = &mut ready => break,
                () = dataplane.heartbeat.tick() => {}
            }
        }
        dataplane.run().await
    });

    let (report_tx, report_rx) = watch::channel(NodeStatusReport::default());
    tasks.spawn(
        "report",
        assemble_report(
            local.clone(),
            cfg.networking_backend.clone(),
            sync_rx,
            dp_status_rx,
            peers_rx,
            report_tx,
            liveness.heartbeat("report"),
        ),
    );
    let socket_path = cfg.run_dir.join(STATUS_SOCKET);
    let listener = status::bind(&socket_path)
        .with_context(|| format!("binding the status socket {}", socket_path.display()))?;
    tasks.spawn(
        "status",
        status::serve(
            listener,
            socket_path.clone(),
            report_rx.clone(),
            liveness.clone(),
            liveness.heartbeat("status"),
        ),
    );
    let health = health::HealthState {
        report: report_rx,
        metrics,
        bfd: bfd_metrics,
        liveness: liveness.clone(),
    };
    if let Some(endpoints) = health::Endpoints::bind(&cfg, health).await? {
        tasks.spawn("health", endpoints.serve());
    }
    info!(
        tasks = %liveness.task_names().join(","),
        watched = %liveness.watched_names().join(","),
        "supervising tasks (watched: those with a heartbeat)"
    );
    let running = liveness.task_names();
    for unknown in failpoints.tasks().filter(|t| !running.contains(t)) {
        warn!(
            task = unknown,
            "CALICO_RS_FAILPOINTS names a task that does not run here"
        );
    }

    tokio::select! {
        () = wait_for_signal() => {
            // A stop is treated as a restart: no Cease is sent, so peers keep our routes as
            // graceful-restart helpers (RFC 4724), and our own routes stay in the kernel
            // for the next start to adopt. Traffic keeps flowing across the restart.
            info!("stopping; BGP peers keep our routes (graceful restart), kernel routes stay");
            crate::tasks::bfd_link::admin_down_before_exit(&bfd_metrics_exit).await;
            let _ = std::fs::remove_file(&socket_path);
            std::process::exit(0)
        }
        exits = tasks.next_exits() => {
            // Half alive is worse than a restart: the supervisor (systemd, the kubelet)
            // starts us again, and peers and the kernel keep our routes meanwhile.
            let exit = exits.cause;
            let then: Vec<String> = exits
                .consequences
                .iter()
                .map(|c| format!("{} ({})", c.task, c.reason))
                .collect();
            error!(task = %exit.task, reason = %exit.reason, then_ended = %then.join(", "), "a calico-node task ended; exiting so that calico-node is restarted");
            crate::tasks::bfd_link::admin_down_before_exit(&bfd_metrics_exit).await;
            let _ = std::fs::remove_file(&socket_path);
            std::process::exit(1)
        }
    }
}

/// Folds the task outputs into the one report the status socket and health serve.
async fn assemble_report(
    local: LocalNode,
    backend: String,
    mut sync: watch::Receiver<SyncStatus>,
    mut dataplane: watch::Receiver<DataplaneStatus>,
    mut peers: watch::Receiver<bgp::BgpStatus>,
    tx: watch::Sender<NodeStatusReport>,
    mut heartbeat: Heartbeat,
) {
    loop {
        let dp = dataplane.borrow_and_update().clone();
        let speaker = peers.borrow_and_update().clone();
        let (peers_v6, peers_v4) = speaker.peers.into_iter().partition(|p| p.family == "ipv6");
        let report = NodeStatusReport {
            node: local.name.clone(),
            backend: backend.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            router_id: speaker.router_id.map(|r| r.to_string()).unwrap_or_default(),
            as_number: speaker.as_number,
            peers_v4,
            peers_v6,
            warnings: dp
                .health
                .ipip_unsupported
                .iter()
                .chain(&dp.health.nat_unavailable)
                .cloned()
                .collect(),
            datastore: match *sync.borrow_and_update() {
                SyncStatus::InSync => "in-sync",
                SyncStatus::WaitingForDatastore => "waiting",
                SyncStatus::Reconnecting => "reconnecting",
            }
            .to_string(),
            dataplane_ready: dp.programmed && dp.in_sync,
        };
        tx.send_replace(report);
        loop {
            tokio::select! {
                () = heartbeat.tick() => continue,
                r = sync.changed() => if r.is_err() { return },
                r = dataplane.changed() => if r.is_err() { return },
                // Without BGP the peers channel is closed from the start.
                () = crate::tasks::changed_or_pending(&mut peers) => {}
            }
            break;
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
