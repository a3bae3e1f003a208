//! [`Dataplane`]: applies a whole [`DesiredState`] (devices, neighbours, FDB entries,
//! routes, workload sysctls, natOutgoing) to the kernel in dependency order, and reports
//! what it did. Each kind of object is an owned table ([`OwnedTable`], [`RouteTable`],
//! [`NatTable`]); this module only orders them.

use std::collections::BTreeMap;
use std::time::Instant;

use ipnet::IpNet;
use tracing::warn;

use super::kernel::{Kernel, KernelError, KernelEvent, LinkInfo};
use super::nat::NatTable;
use super::netfilter::NetfilterError;
use super::objects::{Devices, Fdb, Neighbours, WorkloadSysctls};
use super::owned_table::{OwnedTable, TableFailure, TableOutcome};
use super::ownership::{IPIP_DEVICE, OwnershipPolicy, is_owned_vxlan_device};
use super::route_table::RouteTable;
use super::types::{DesiredState, Route};

/// What one pass did, for logs, metrics and the status endpoint.
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    pub routes_added: usize,
    pub routes_removed: usize,
    pub other_changes: usize,
    pub failures: Vec<String>,
    pub retry_at: Option<Instant>,
}

/// Health of the pieces the dataplane manages, shown in node status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataplaneHealth {
    /// Set when IPIP is wanted but the kernel cannot do it.
    pub ipip_unsupported: Option<String>,
    /// Set when a pool wants natOutgoing but the netfilter tools are missing.
    pub nat_unavailable: Option<String>,
}

/// What a pass reads from the kernel before acting. A pass triggered only by a change of
/// the desired state, with no kernel event since the last pass, trusts what it read then
/// (plus its own writes since): a new route costs its write, not a dump of every table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refresh {
    /// Dump devices and addresses (after link events: a device came or went).
    pub links: bool,
    /// Dump the route table (after route events: someone else changed it).
    pub routes: bool,
    /// Dump the neighbours and FDB entries of the VXLAN devices (after neighbour events
    /// on them).
    pub neighbours: bool,
}

impl Refresh {
    /// Read everything (the first pass, link events, retries, the resync timer).
    pub const ALL: Refresh = Refresh {
        links: true,
        routes: true,
        neighbours: true,
    };
    /// Read nothing that has not changed since the last pass.
    pub const NONE: Refresh = Refresh {
        links: false,
        routes: false,
        neighbours: false,
    };

    /// Both refreshes together.
    pub fn union(self, other: Refresh) -> Refresh {
        Refresh {
            links: self.links || other.links,
            routes: self.routes || other.routes,
            neighbours: self.neighbours || other.neighbours,
        }
    }
}

/// Owns the kernel state calico-node programs.
pub struct Dataplane<K: Kernel> {
    kernel: K,
    routes: RouteTable,
    /// Devices as last dumped; `None` when they must be read again.
    links: Option<Vec<LinkInfo>>,
    /// The desired state but its routes (which the route table holds).
    desired: DesiredState,
    devices: OwnedTable<Devices>,
    sysctls: OwnedTable<WorkloadSysctls>,
    neighbours: OwnedTable<Neighbours>,
    fdb: OwnedTable<Fdb>,
    health: DataplaneHealth,
    /// natOutgoing, one table per family attached with [`with_nat`](Self::with_nat).
    nat: Vec<NatTable>,
}

impl<K: Kernel> Dataplane<K> {
    /// A dataplane programming `kernel`.
    pub fn new(kernel: K, routes: RouteTable) -> Dataplane<K> {
        Dataplane {
            kernel,
            routes,
            links: None,
            desired: DesiredState::default(),
            devices: OwnedTable::default(),
            sysctls: OwnedTable::default(),
            neighbours: OwnedTable::default(),
            fdb: OwnedTable::default(),
            health: DataplaneHealth::default(),
            nat: Vec::new(),
        }
    }

    /// Also programs natOutgoing of `nat`'s family through it.
    pub fn with_nat(mut self, nat: NatTable) -> Dataplane<K> {
        self.nat.push(nat);
        self
    }

    /// The kernel this dataplane programs.
    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    /// Replaces the desired state, which the next [`apply`](Self::apply) acts on; false
    /// when it is the one already held. The routes move to the route table (at scale they
    /// are most of the state: neither copied nor kept twice).
    pub fn set_desired(&mut self, mut desired: DesiredState) -> bool {
        let routes = std::mem::take(&mut desired.routes);
        if *self.routes.desired() == routes && self.desired == desired {
            return false;
        }
        self.routes.set_policy(OwnershipPolicy {
            managed_cidrs: desired.managed_cidrs.clone(),
        });
        self.routes.set_desired(routes);
        for nat in &mut self.nat {
            nat.set_desired(desired.nat_of(nat.family()).cloned());
        }
        self.devices.set_desired(Devices::wanted(&desired));
        self.neighbours.set_desired(Neighbours::wanted(&desired));
        self.fdb.set_desired(Fdb::wanted(&desired));
        self.desired = desired;
        true
    }

    /// Changes some desired routes, the rest of the desired state staying as it is; true
    /// when any changed.
    pub fn update_routes(&mut self, changes: Vec<(IpNet, Option<Route>)>) -> bool {
        self.routes.update_desired(changes)
    }

    /// The desired routes.
    pub fn desired_routes(&self) -> &BTreeMap<IpNet, Route> {
        self.routes.desired()
    }

    /// Holds (or releases) deletions of unwanted owned routes; see
    /// [`RouteTable::set_hold_deletions`].
    pub fn set_hold_deletions(&mut self, hold: bool) {
        self.routes.set_hold_deletions(hold);
    }

    /// Health for node status.
    pub fn health(&self) -> &DataplaneHealth {
        &self.health
    }

    /// What the next pass must read again after a kernel event: nothing for the echo of
    /// our own route writes or for neighbours of devices not ours, the route table for
    /// other route changes, the neighbours after a change on a VXLAN device, everything
    /// after a link event.
    pub fn refresh_for(&self, event: &KernelEvent) -> Refresh {
        match event {
            KernelEvent::Link => Refresh::ALL,
            KernelEvent::Route { msg, removed } => {
                let notice = self.kernel.read_route_notice(msg, *removed);
                if self.routes.already_knows(&notice) {
                    Refresh::NONE
                } else {
                    Refresh {
                        routes: true,
                        ..Refresh::NONE
                    }
                }
            }
            KernelEvent::Neighbour { ifindex } => {
                // Only the VXLAN devices' entries are ours (a permanent entry elsewhere was
                // set by hand or by other software).
                let not_ours = self.links.as_ref().is_some_and(|links| {
                    !links
                        .iter()
                        .any(|l| l.index == *ifindex && is_owned_vxlan_device(&l.name))
                });
                if not_ours {
                    Refresh::NONE
                } else {
                    Refresh {
                        neighbours: true,
                        ..Refresh::NONE
                    }
                }
            }
        }
    }

    /// One reconcile pass over everything, reading the kernel first.
    pub async fn apply(&mut self, now: Instant) -> Result<ApplyReport, KernelError> {
        self.apply_with(now, Refresh::ALL).await
    }

    /// One reconcile pass that reads from the kernel only what `refresh` asks for (and
    /// whatever it has never read).
    pub async fn apply_with(
        &mut self,
        now: Instant,
        refresh: Refresh,
    ) -> Result<ApplyReport, KernelError> {
        let mut report = ApplyReport::default();
        let (mut links, links_read) = match self.links.take() {
            Some(links) if !refresh.links => (links, false),
            _ => (self.kernel.links().await?, true),
        };
        let kernel = &self.kernel;

        let mut devices = TableOutcome::default();
        self.devices
            .read_if_stale(kernel, &links, links_read, &mut devices)
            .await;
        self.devices.add_missing(kernel, &mut devices).await;
        if devices.changed > 0 {
            // The neighbours below live on the devices as they are now.
            links = kernel.links().await?;
        }

        // Sysctl writes are not counted as changes: they raise no event to wait for.
        let mut sysctls = TableOutcome::default();
        self.sysctls.set_desired(WorkloadSysctls::wanted(&links));
        self.sysctls
            .read_if_stale(kernel, &links, links_read, &mut sysctls)
            .await;
        self.sysctls.add_missing(kernel, &mut sysctls).await;

        // Make before break: new neighbours and FDB entries go in before the routes that
        // need them; stale ones and unwanted devices go only once no route uses them (a
        // pool switching mode keeps its traffic flowing).
        let reread = refresh.neighbours || links_read || devices.changed > 0;
        let (mut neighbours, mut fdb) = (TableOutcome::default(), TableOutcome::default());
        self.neighbours
            .read_if_stale(kernel, &links, reread, &mut neighbours)
            .await;
        self.fdb
            .read_if_stale(kernel, &links, reread, &mut fdb)
            .await;
        self.neighbours.add_missing(kernel, &mut neighbours).await;
        self.fdb.add_missing(kernel, &mut fdb).await;
        // A device made again took its routes with it.
        let reread_routes = refresh.routes || refresh.links || devices.changed > 0;
        let routes = self
            .routes
            .reconcile_with(kernel, now, reread_routes)
            .await?;
        self.neighbours
            .remove_unwanted(kernel, &mut neighbours)
            .await;
        self.fdb.remove_unwanted(kernel, &mut fdb).await;
        self.devices.remove_unwanted(kernel, &mut devices).await;
        self.sysctls.remove_unwanted(kernel, &mut sysctls).await;

        self.note_ipip_health(&mut devices);
        report.other_changes = devices.changed + neighbours.changed + fdb.changed;
        collect_failures(&mut report, &sysctls);
        collect_failures(&mut report, &devices);
        collect_failures(&mut report, &neighbours);
        collect_failures(&mut report, &fdb);
        // After a change to the devices the next pass reads them again (the echoed link
        // events would ask for it anyway); otherwise this dump stays good until a link
        // event (neighbours and FDB entries change no device).
        if devices.changed == 0 {
            self.links = Some(links);
        }
        report.routes_added = routes.added;
        report.routes_removed = routes.removed;
        report.failures.extend(routes.failures);
        report.retry_at = routes.retry_at;
        self.apply_nat(now, &mut report).await;
        if !report.failures.is_empty() && report.retry_at.is_none() {
            report.retry_at = Some(now + std::time::Duration::from_secs(1));
        }
        Ok(report)
    }

    /// A kernel without the ipip module is a property of the node, shown in node status
    /// (and warned about once), not a failure to retry every second.
    fn note_ipip_health(&mut self, devices: &mut TableOutcome<String>) {
        let unsupported = |f: &TableFailure<String>| {
            f.key.as_deref() == Some(IPIP_DEVICE) && matches!(f.error, KernelError::Unsupported(_))
        };
        let before = devices.failures.len();
        devices.failures.retain(|f| !unsupported(f));
        if devices.failures.len() < before {
            if self.health.ipip_unsupported.is_none() {
                warn!(
                    "kernel has no ipip support: IPIP pools cannot be used on this node (tunl0 missing); routes through tunl0 stay unprogrammed"
                );
            }
            self.health.ipip_unsupported = Some("kernel has no ipip support".into());
        } else if self.desired.ipip.is_none() || self.devices.dataplane().contains_key(IPIP_DEVICE)
        {
            self.health.ipip_unsupported = None;
        }
    }

    /// natOutgoing, when a [`NatTable`] is attached (it reads the kernel only when the
    /// wanted state changed or its resync is due).
    async fn apply_nat(&mut self, now: Instant, report: &mut ApplyReport) {
        let mut unavailable = None;
        for nat in &mut self.nat {
            match nat.reconcile(now).await {
                Ok(r) => report.other_changes += usize::from(r.changed),
                Err(e @ NetfilterError::Missing(_)) => {
                    unavailable = Some(format!("natOutgoing not programmed: {e}"));
                }
                Err(e) => report
                    .failures
                    .push(format!("{} natOutgoing: {e}", nat.family())),
            }
        }
        if unavailable.is_some() && self.health.nat_unavailable.is_none() {
            warn!(error = ?unavailable, "natOutgoing pools cannot be programmed on this node");
        }
        self.health.nat_unavailable = unavailable;
    }
}

/// Adds a table's failures to the report.
fn collect_failures<Key>(report: &mut ApplyReport, outcome: &TableOutcome<Key>) {
    report
        .failures
        .extend(outcome.failures.iter().map(|f| f.text()));
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::net::Ipv4Addr;

    use super::super::fake::FakeKernel;
    use super::super::ownership::VXLAN_DEVICE;
    use super::super::types::{
        FdbEntry, IpipDevice, Neighbour, PROTO_CALICO, RouteTarget, VxlanDevice,
    };
    use super::*;

    fn dataplane(kernel: FakeKernel) -> Dataplane<FakeKernel> {
        Dataplane::new(kernel, RouteTable::new(OwnershipPolicy::default()))
    }

    fn vxlan(address: &str) -> VxlanDevice {
        VxlanDevice {
            name: VXLAN_DEVICE.into(),
            vni: 4096,
            port: 4789,
            parent: "eth0".into(),
            local: "10.0.0.1".parse().expect("ip"),
            mac: [0x66, 1, 2, 3, 4, 5],
            mtu: 1450,
            address: Some(address.parse().expect("ip")),
        }
    }

    /// VXLAN towards one remote node: the device, the remote VTEP's neighbour and FDB
    /// entry, the onlink route to its block.
    fn vxlan_state(vni: u32) -> DesiredState {
        let remote_vtep: Ipv4Addr = "10.244.2.0".parse().expect("ip");
        let mac = [0x66, 9, 9, 9, 9, 9];
        let route = Route {
            dst: "10.244.2.0/26".parse().expect("cidr"),
            target: RouteTarget::Gateway {
                via: remote_vtep.into(),
                dev: Some(VXLAN_DEVICE.into()),
                onlink: true,
            },
            protocol: PROTO_CALICO,
        };
        DesiredState {
            routes: BTreeMap::from([(route.dst, route)]),
            vxlan_devices: vec![VxlanDevice {
                vni,
                ..vxlan("10.244.1.0")
            }],
            neighbours: BTreeSet::from([Neighbour {
                dev: VXLAN_DEVICE.into(),
                ip: remote_vtep.into(),
                mac,
            }]),
            fdb: BTreeSet::from([FdbEntry {
                dev: VXLAN_DEVICE.into(),
                mac,
                dst: "10.0.0.2".parse().expect("ip"),
            }]),
            ..DesiredState::default()
        }
    }

    #[tokio::test]
    async fn vxlan_mode_creates_device_neighbour_fdb_and_onlink_route_then_removes_them() {
        let mut dp = dataplane(FakeKernel::with_links(&["eth0"]));
        dp.set_desired(vxlan_state(4096));
        let report = dp.apply(Instant::now()).await.expect("pass");
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        let k = dp.kernel();
        assert_eq!(k.device(VXLAN_DEVICE).map(|l| l.mtu), Some(1450));
        assert_eq!(k.neighbours().len(), 1);
        assert_eq!(k.fdb().len(), 1);
        assert_eq!(
            k.route_strings(),
            vec!["10.244.2.0/26 via 10.244.2.0 dev vxlan.calico onlink proto 80"]
        );

        dp.set_desired(DesiredState::default());
        dp.apply(Instant::now()).await.expect("pass");
        let k = dp.kernel();
        assert!(k.device(VXLAN_DEVICE).is_none());
        assert!(k.neighbours().is_empty() && k.fdb().is_empty());
        assert!(k.route_strings().is_empty());
    }

    #[tokio::test]
    async fn ipip_on_a_kernel_without_ipip_is_reported_and_the_rest_still_works() {
        let mut dp = dataplane(FakeKernel::with_links(&["eth0"]).without_ipip());
        let blackhole = Route {
            dst: "10.244.1.0/26".parse().expect("cidr"),
            target: RouteTarget::Blackhole,
            protocol: super::super::types::PROTO_BIRD,
        };
        dp.set_desired(DesiredState {
            routes: BTreeMap::from([(blackhole.dst, blackhole)]),
            ipip: Some(IpipDevice {
                mtu: 1480,
                address: None,
            }),
            ..DesiredState::default()
        });
        dp.apply(Instant::now()).await.expect("pass");
        assert_eq!(
            dp.health().ipip_unsupported.as_deref(),
            Some("kernel has no ipip support")
        );
        assert_eq!(
            dp.kernel().route_strings(),
            vec!["blackhole 10.244.1.0/26 proto bird"]
        );
    }

    #[tokio::test]
    async fn a_pass_without_refresh_writes_new_routes_and_trusts_the_last_dump() {
        let mut dp = dataplane(FakeKernel::with_links(&["eth0"]));
        let route = |dst: &str| Route {
            dst: dst.parse().expect("cidr"),
            target: RouteTarget::Gateway {
                via: "10.0.0.2".parse().expect("ip"),
                dev: Some("eth0".into()),
                onlink: false,
            },
            protocol: super::super::types::PROTO_BIRD,
        };
        let (a, b) = (route("10.244.2.0/26"), route("10.244.3.0/26"));
        // The first pass reads the kernel even when asked not to: it has never read it.
        dp.set_desired(DesiredState {
            routes: BTreeMap::from([(a.dst, a.clone())]),
            ..DesiredState::default()
        });
        dp.apply_with(Instant::now(), Refresh::NONE)
            .await
            .expect("pass");
        dp.kernel().remove_route(&a.dst);
        // A new desired route is written without a dump; the deletion is not seen...
        dp.set_desired(DesiredState {
            routes: BTreeMap::from([(a.dst, a.clone()), (b.dst, b.clone())]),
            ..DesiredState::default()
        });
        let report = dp
            .apply_with(Instant::now(), Refresh::NONE)
            .await
            .expect("pass");
        assert_eq!(report.routes_added, 1);
        assert_eq!(dp.kernel().route_strings(), vec![b.to_string()]);
        // ...until the route event it caused asks for the table again.
        let refresh = Refresh {
            routes: true,
            ..Refresh::NONE
        };
        let report = dp.apply_with(Instant::now(), refresh).await.expect("pass");
        assert_eq!(report.routes_added, 1);
        assert_eq!(dp.kernel().route_strings().len(), 2);
    }

    #[tokio::test]
    async fn a_changed_vni_reconfigures_the_device() {
        let mut dp = dataplane(FakeKernel::with_links(&["eth0"]));
        dp.set_desired(vxlan_state(4096));
        dp.apply(Instant::now()).await.expect("pass");
        dp.set_desired(vxlan_state(4097));
        let report = dp
            .apply_with(Instant::now(), Refresh::NONE)
            .await
            .expect("pass");
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        let vni = dp
            .kernel()
            .device(VXLAN_DEVICE)
            .and_then(|l| l.vxlan)
            .map(|v| v.vni);
        assert_eq!(vni, Some(4097));
        // Once done, the same desired state changes nothing.
        let report = dp.apply(Instant::now()).await.expect("pass");
        assert_eq!(report.other_changes, 0);
    }

    #[tokio::test]
    async fn a_neighbour_deleted_by_hand_is_restored_on_its_event_and_only_then_read() {
        let mut dp = dataplane(FakeKernel::with_links(&["eth0"]));
        dp.set_desired(vxlan_state(4096));
        dp.apply(Instant::now()).await.expect("pass");
        let report = dp.apply(Instant::now()).await.expect("pass");
        assert_eq!(
            report.other_changes, 0,
            "the second pass finds all in place"
        );
        dp.kernel().flush_neighbours();

        // A pass for something else trusts the last dump: no neighbour is listed.
        let dumps = dp.kernel().neighbour_dumps();
        dp.apply_with(Instant::now(), Refresh::NONE)
            .await
            .expect("pass");
        assert_eq!(dp.kernel().neighbour_dumps(), dumps);
        assert!(dp.kernel().neighbours().is_empty());

        // A pod's ARP entry changing asks for nothing; the VXLAN device's entry does.
        let index = |name: &str| dp.kernel().device(name).map(|l| l.index).expect("device");
        let pod_arp = KernelEvent::Neighbour {
            ifindex: index("eth0"),
        };
        assert_eq!(dp.refresh_for(&pod_arp), Refresh::NONE);
        let vtep = KernelEvent::Neighbour {
            ifindex: index(VXLAN_DEVICE),
        };
        let refresh = dp.refresh_for(&vtep);
        assert!(refresh.neighbours && !refresh.routes && !refresh.links);
        let report = dp.apply_with(Instant::now(), refresh).await.expect("pass");
        assert_eq!(report.other_changes, 1);
        assert_eq!(
            dp.kernel().neighbours(),
            vxlan_state(4096).neighbours.into_iter().collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn tunl0_keeps_only_its_address_and_loses_it_when_ipip_is_switched_off() {
        let mut dp = dataplane(FakeKernel::with_links(&["eth0"]));
        dp.set_desired(DesiredState {
            ipip: Some(IpipDevice {
                mtu: 1480,
                address: Some("10.244.1.1".parse().expect("ip")),
            }),
            ..DesiredState::default()
        });
        dp.apply(Instant::now()).await.expect("pass");
        let tunl0 = dp.kernel().device(IPIP_DEVICE).expect("tunl0");
        assert_eq!(
            tunl0.addresses,
            vec![("10.244.1.1".parse().expect("ip"), 32)]
        );
        assert_eq!(tunl0.mtu, 1480);

        dp.set_desired(DesiredState::default());
        let report = dp.apply(Instant::now()).await.expect("pass");
        assert_eq!(report.other_changes, 1);
        let tunl0 = dp
            .kernel()
            .device(IPIP_DEVICE)
            .expect("tunl0 stays: the module owns it");
        assert!(tunl0.addresses.is_empty());
        let report = dp.apply(Instant::now()).await.expect("pass");
        assert_eq!(report.other_changes, 0);
    }

    #[tokio::test]
    async fn two_remotes_wanted_for_one_mac_are_one_entry_written_once() {
        let mut dp = dataplane(FakeKernel::with_links(&["eth0"]));
        let mut state = vxlan_state(4096);
        let mac = state.fdb.iter().next().map(|e| e.mac).expect("entry");
        state.fdb.insert(FdbEntry {
            dev: VXLAN_DEVICE.into(),
            mac,
            dst: "10.0.0.3".parse().expect("ip"),
        });
        dp.set_desired(state);
        dp.apply(Instant::now()).await.expect("pass");
        assert_eq!(dp.kernel().fdb().len(), 1);
        let report = dp.apply(Instant::now()).await.expect("pass");
        assert_eq!(report.other_changes, 0, "no pass rewrites the entry");
    }

    #[tokio::test]
    async fn a_flannel_device_of_another_vni_is_kept_in_sync_its_stale_entries_go_then_it_goes() {
        let mut dp = dataplane(FakeKernel::with_links(&["eth0"]));
        let dev = super::super::ownership::flannel_device(5);
        let retarget = |mut state: DesiredState| {
            state.routes.clear();
            state.vxlan_devices[0].name = dev.clone();
            state.neighbours = std::mem::take(&mut state.neighbours)
                .into_iter()
                .map(|n| Neighbour {
                    dev: dev.clone(),
                    ..n
                })
                .collect();
            state.fdb = std::mem::take(&mut state.fdb)
                .into_iter()
                .map(|e| FdbEntry {
                    dev: dev.clone(),
                    ..e
                })
                .collect();
            state
        };
        dp.set_desired(retarget(vxlan_state(5)));
        dp.apply(Instant::now()).await.expect("pass");
        let report = dp.apply(Instant::now()).await.expect("pass");
        assert_eq!(
            report.other_changes, 0,
            "the device is not rewritten every pass"
        );
        // The remote left: its neighbour and FDB entry go, the device stays.
        let mut state = retarget(vxlan_state(5));
        state.neighbours.clear();
        state.fdb.clear();
        dp.set_desired(state);
        dp.apply(Instant::now()).await.expect("pass");
        let k = dp.kernel();
        assert!(k.neighbours().is_empty() && k.fdb().is_empty());
        assert!(k.device(&dev).is_some());
        // Switched to host-gw: the device goes too.
        dp.set_desired(DesiredState::default());
        dp.apply(Instant::now()).await.expect("pass");
        assert!(dp.kernel().device(&dev).is_none());
    }

    #[tokio::test]
    async fn workload_devices_get_calico_sysctls_once() {
        let mut dp = dataplane(FakeKernel::with_links(&["eth0", "cali0123456789a"]));
        dp.apply(Instant::now()).await.expect("pass");
        let k = dp.kernel();
        assert_eq!(
            k.sysctl("net/ipv4/conf/cali0123456789a/proxy_arp")
                .as_deref(),
            Some("1")
        );
        assert_eq!(k.sysctl("net/ipv4/conf/eth0/proxy_arp"), None);
    }
}
